"""Keyframe detection on encoded frames."""

from __future__ import annotations

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
