"""Keyframe detection on encoded frames."""

from __future__ import annotations

import random

from bridge.media.frames import is_h264_keyframe, is_keyframe, is_vp8_keyframe
from tests.harness.synthetic import SyntheticVideoTrack


async def test_vp8_keyframes_are_recognised_in_real_encoder_output() -> None:
    track = SyntheticVideoTrack(fps=1000)
    for _ in range(5):
        await track.recv()
    track.request_keyframe()
    await track.recv()
    assert [is_vp8_keyframe(f) for f in track.sent] == [True, False, False, False, False, True]
    track.stop()


def test_vp8_needs_the_start_code() -> None:
    assert not is_vp8_keyframe(b"\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00")
    assert not is_vp8_keyframe(b"\x10\x02\x00")


def test_h264_idr_in_annex_b() -> None:
    sps, pps, idr, slice_ = b"\x67\x42", b"\x68\xce", b"\x65\x88", b"\x41\x9a"
    start = b"\x00\x00\x00\x01"
    assert is_h264_keyframe(start + sps + start + pps + start + idr)
    assert not is_h264_keyframe(start + slice_)
    assert not is_h264_keyframe(b"")
    assert is_keyframe("H264", b"\x00\x00\x01" + idr)


def test_audio_is_always_a_keyframe() -> None:
    assert is_keyframe("opus", b"\x01")


def _encrypted(clear: bytes, rest: int, seed: int) -> bytes:
    """A frame as LiveKit's frame cryptor leaves it: the clear prefix, then ciphertext
    (random bytes, escaped like the cryptor's output so no start code appears) and the
    trailer (12-byte IV, its length, the key index)."""
    rng = random.Random(seed)
    body = bytearray()
    for _ in range(rest):
        byte = rng.randrange(256)
        if len(body) >= 2 and body[-1] == 0 and body[-2] == 0 and byte <= 3:
            body.append(3)  # emulation prevention, as writeRbsp does
        body.append(byte)
    return clear + bytes(body) + bytes(rng.randrange(1, 256) for _ in range(12)) + b"\x0c\x00"


async def test_keyframes_are_still_found_in_end_to_end_encrypted_frames() -> None:
    # Element Call encrypts frames before packetising; VP8 keeps 10 bytes of a keyframe
    # and 3 of a delta frame in the clear, H.264 its NAL headers up to the first slice.
    track = SyntheticVideoTrack(fps=1000)
    for _ in range(3):
        await track.recv()
    track.stop()
    key, delta = track.sent[0], track.sent[1]
    for seed in range(50):
        assert is_keyframe("VP8", _encrypted(key[:10], 400, seed))
        assert not is_keyframe("VP8", _encrypted(delta[:3], 400, seed))
    start = b"\x00\x00\x00\x01"
    sps, pps = b"\x67\x42\xc0\x1f\x8c\x8d\x40", b"\x68\xce\x3c\x80"
    for seed in range(50):
        idr = start + sps + start + pps + start + _encrypted(b"\x65\x88", 400, seed)
        assert is_keyframe("H264", idr)
        assert not is_keyframe("H264", start + _encrypted(b"\x41\x9a", 400, seed))
