"""What the recorder reads of a VP8 frame: whether it is one, and a key frame's size.

The recorder never decodes video; it only needs the picture size for the file's header
(a player sizes its window from it before the first frame is decoded) and a check that
rejects bytes that cannot be a VP8 frame, so garbage does not end up in a recording.
"""

from __future__ import annotations

_START_CODE = b"\x9d\x01\x2a"
#: The frame tag (3 bytes), then for key frames the start code and the size (7 bytes).
_TAG = 3
_KEY_HEADER = 10


def _tag(data: bytes) -> tuple[bool, int, int] | None:
    """(key frame, version, first partition size) from the frame tag (RFC 6386 §9.1)."""
    if len(data) < _TAG:
        return None
    raw = data[0] | data[1] << 8 | data[2] << 16
    return not raw & 0x01, raw >> 1 & 0x07, raw >> 5


def is_frame(data: bytes) -> bool:
    """Whether ``data`` has the structure of a VP8 frame: a frame tag with a known
    version, a first partition that fits, and for a key frame the start code."""
    tag = _tag(data)
    if tag is None:
        return False
    key, version, first_partition = tag
    header = _KEY_HEADER if key else _TAG
    if version > 3 or len(data) < header or first_partition > len(data) - header:
        return False
    return not key or (data[3:6] == _START_CODE and keyframe_size(data) is not None)


def keyframe_size(data: bytes) -> tuple[int, int] | None:
    """(width, height) of a key frame, None for anything else (RFC 6386 §9.1: 14 bits
    of size and 2 of upscaling, which is the decoder's business, not the file's)."""
    tag = _tag(data)
    if tag is None or not tag[0] or len(data) < _KEY_HEADER or data[3:6] != _START_CODE:
        return None
    width = int.from_bytes(data[6:8], "little") & 0x3FFF
    height = int.from_bytes(data[8:10], "little") & 0x3FFF
    if not width or not height:
        return None
    return width, height
