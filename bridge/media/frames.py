"""Encoded media frames as the router forwards them, and keyframe detection."""

from __future__ import annotations

from dataclasses import dataclass

_VP8_START_CODE = b"\x9d\x01\x2a"
_H264_IDR = 5


@dataclass(frozen=True, slots=True)
class EncodedFrame:
    """One complete encoded frame of a published track.

    ``data`` is the codec bitstream as it left the publisher's encoder (VP8 frame, H.264
    Annex B access unit, Opus packet); ``timestamp`` is in the codec's clock rate, counted
    from the track's first frame. Audio frames are always ``keyframe``.
    """

    data: bytes
    timestamp: int
    keyframe: bool


def is_vp8_keyframe(data: bytes) -> bool:
    """Whether a VP8 frame is a key frame (RFC 6386 section 9.1)."""
    # The frame tag's lowest bit is 0 for key frames, which carry a start code.
    return len(data) >= 10 and not data[0] & 0x01 and data[3:6] == _VP8_START_CODE


def is_h264_keyframe(data: bytes) -> bool:
    """Whether an H.264 Annex B access unit holds an IDR slice."""
    start = data.find(b"\x00\x00\x01")
    while start != -1 and start + 3 < len(data):
        if data[start + 3] & 0x1F == _H264_IDR:
            return True
        start = data.find(b"\x00\x00\x01", start + 3)
    return False


def is_keyframe(codec_name: str, data: bytes) -> bool:
    """Whether a frame of ``codec_name`` (aiortc's codec name) can start decoding."""
    name = codec_name.upper()
    if name == "VP8":
        return is_vp8_keyframe(data)
    if name == "H264":
        return is_h264_keyframe(data)
    return True
