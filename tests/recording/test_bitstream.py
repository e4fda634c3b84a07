"""The recorder's readings of VP8, H.264 and Opus bytes, against real encoders' output
and the rules of the RFCs."""

from __future__ import annotations

import struct

import pytest

from bridge.recording import h264, opus, vp8

from .media import h264_frames, opus_packets, tone, vp8_frames


@pytest.mark.parametrize(("width", "height"), [(176, 144), (322, 182), (1280, 720)])
def test_vp8_keyframe_size_is_read_from_the_frame_header(width: int, height: int) -> None:
    frames = vp8_frames(2, width, height)
    assert frames[0].keyframe and not frames[1].keyframe
    assert vp8.keyframe_size(frames[0].data) == (width, height)
    assert vp8.keyframe_size(frames[1].data) is None
    assert all(vp8.is_frame(f.data) for f in frames)


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"\x00\x00",
        b"\x00\x00\x00\x9d\x01\x2a\x10",  # a key frame cut short
        b"\x50\x00\x00\x9d\x01\x2a\x00\x00\x00\x00",  # size 0x0
        b"\x10\x00\x00\x00\x01\x2a\x10\x00\x10\x00",  # no start code
        b"\x0f\x00\x00" + bytes(20),  # version 7
        b"\xf1\xff\xff" + bytes(20),  # first partition beyond the end
    ],
)
def test_vp8_garbage_is_no_frame(data: bytes) -> None:
    assert not vp8.is_frame(data)


@pytest.mark.parametrize("profile", ["baseline", "main", "high"])
@pytest.mark.parametrize(("width", "height"), [(320, 240), (322, 182), (1920, 1080)])
def test_h264_size_is_read_from_the_sps(profile: str, width: int, height: int) -> None:
    frames = h264_frames(2, width, height, profile)
    assert h264.picture_size(frames[0].data) == (width, height)
    assert h264.picture_size(frames[1].data) is None  # no SPS in a P frame
    sets = h264.parameter_sets(frames[0].data)
    assert [u[0] & 0x1F for u in h264.nal_units(sets)] == [7, 8]
    assert h264.parameter_sets(frames[1].data) == b""
    assert all(h264.is_access_unit(f.data) for f in frames)


def test_h264_reads_emulation_prevention_and_scaling_lists() -> None:
    # A High profile SPS written bit by bit: 4:2:0, a scaling list, cropping to
    # 1918x1078. Level 0 and a large id put 00 00 02 in it, which the encoder escapes.
    bits = _Bits()
    bits.u(100, 8).u(0, 8).u(0, 8).ue(63)  # profile, constraints, level, sps id
    bits.ue(1).ue(0).ue(0).u(0, 1)  # chroma 4:2:0, bit depths, bypass
    bits.u(1, 1).u(1, 1)  # scaling matrix present; list 0 present
    for _ in range(16):
        bits.se(0)  # deltas of 0 (the list keeps 8s)
    bits.u(0, 7)  # lists 1-7 absent
    bits.ue(0).ue(0).ue(4)  # frame num, order type 0, order lsb
    bits.ue(1).u(0, 1)  # reference frames, gaps
    bits.ue(119).ue(67)  # 120x68 macroblocks: 1920x1088
    bits.u(1, 1).u(1, 1)  # frame_mbs_only, direct_8x8
    bits.u(1, 1).ue(0).ue(1).ue(0).ue(5)  # crop 2 px right, 10 px bottom
    bits.u(0, 1).u(1, 1)  # no VUI, stop bit
    payload = bits.bytes()
    escaped = _escape(payload)
    assert escaped != payload
    unit = b"\x00\x00\x00\x01\x67" + escaped + b"\x00\x00\x01\x68\xce\x06\xe2"
    assert h264.picture_size(unit) == (1918, 1078)
    assert h264._unescape(escaped) == payload


def _escape(payload: bytes) -> bytes:
    """Emulation prevention as an encoder does it (H.264 §7.4.1)."""
    out, zeros = bytearray(), 0
    for byte in payload:
        if zeros == 2 and byte <= 3:
            out.append(3)
            zeros = 0
        out.append(byte)
        zeros = zeros + 1 if byte == 0 else 0
    return bytes(out)


def test_h264_garbage_is_no_access_unit() -> None:
    assert not h264.is_access_unit(b"")
    assert not h264.is_access_unit(b"no start code")
    assert not h264.is_access_unit(b"\x00\x00\x01\xe5")  # forbidden bit
    assert not h264.is_access_unit(b"\x00\x00\x01\x00")  # type 0
    assert h264.picture_size(b"\x00\x00\x01\x67\x42") is None  # SPS cut short


class _Bits:
    def __init__(self) -> None:
        self.bits: list[int] = []

    def u(self, value: int, count: int) -> _Bits:
        self.bits += [value >> (count - 1 - i) & 1 for i in range(count)]
        return self

    def ue(self, value: int) -> _Bits:
        code = value + 1
        return self.u(0, code.bit_length() - 1).u(code, code.bit_length())

    def se(self, value: int) -> _Bits:
        return self.ue(2 * value - 1 if value > 0 else -2 * value)

    def bytes(self) -> bytes:
        padded = self.bits + [0] * (-len(self.bits) % 8)
        return bytes(
            int("".join(map(str, padded[i : i + 8])), 2) for i in range(0, len(padded), 8)
        )


def test_opus_packets_from_libopus_are_valid_and_timed() -> None:
    packets = opus_packets(tone(0.2, 440))
    assert all(opus.frame_count(p) == 1 for p in packets)
    assert all(opus.packet_samples(p) == 960 for p in packets)
    assert {opus.channels(p) for p in packets} == {1}
    stereo = opus_packets(tone(0.2, 440), stereo=True)
    assert {opus.channels(p) for p in stereo} == {2}


@pytest.mark.parametrize(
    ("packet", "frames"),
    [
        (b"\xf8", 1),  # code 0, a zero-length frame (DTX)
        (b"\xf9\x01\x02", 2),  # code 1, two frames of 1 byte
        (b"\xfa\x01\xaa\xbb\xcc", 2),  # code 2: 1 byte, then 2 bytes
        (b"\xfb\x03" + bytes(6), 3),  # code 3 CBR: 3 frames of 2 bytes
        (b"\xfb\x43\x02" + bytes(6) + bytes(2), 3),  # with 2 bytes of padding
        (b"\xfb\x82\x02" + bytes(5), 2),  # VBR: 2 bytes then 3
        (b"\xfb\xc2\xff\x00\x01" + bytes(254 + 1), 2),  # VBR, 254 bytes of padding
    ],
)
def test_opus_structure_rules_accept_real_shapes(packet: bytes, frames: int) -> None:
    assert opus.frame_count(packet) == frames


@pytest.mark.parametrize(
    "packet",
    [
        b"",  # R1
        b"\xf8" + bytes(1276),  # R2: a frame over 1275 bytes
        b"\xf9\x01\x02\x03",  # R3: odd length
        b"\xfa\xfc",  # R4: two-byte length cut off
        b"\xfa\x05\x01",  # R4: the first frame longer than the packet
        b"\xfb",  # code 3 without its count
        b"\xfb\x00",  # R5: no frames
        b"\x1b\x03",  # R5: 3 x 60 ms SILK frames is over 120 ms
        b"\xfb\x03" + bytes(5),  # R6: 5 bytes do not split into 3 frames
        b"\xfb\x41",  # padding length missing
        b"\xfb\x41\x05\x00",  # padding longer than the packet
        b"\xfb\x82\x09\x00",  # R7: first frame longer than what is left
    ],
)
def test_opus_structure_rules_reject_garbage(packet: bytes) -> None:
    assert opus.frame_count(packet) is None
    assert opus.packet_samples(packet) is None


def test_opus_frame_durations_follow_the_toc() -> None:
    assert [opus.frame_samples(c << 3) for c in (0, 1, 2, 3)] == [480, 960, 1920, 2880]
    assert [opus.frame_samples(c << 3) for c in (12, 13)] == [480, 960]
    assert [opus.frame_samples(c << 3) for c in (16, 17, 18, 19)] == [120, 240, 480, 960]
    assert opus.packet_samples(b"\xfb\x03" + bytes(6)) == 3 * 960


def test_opus_head_is_rfc_7845() -> None:
    head = opus.opus_head(2)
    assert len(head) == 19
    magic, version, channels, pre_skip, rate, gain, family = struct.unpack("<8sBBHIhB", head)
    assert (magic, version, channels, pre_skip, rate, gain, family) == (
        b"OpusHead",
        1,
        2,
        0,
        48000,
        0,
        0,
    )
    assert opus.opus_head(1)[9] == 1
