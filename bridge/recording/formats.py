"""How each codec a publisher may send is stored: the container, and the check that
keeps bytes that cannot be a frame of it out of the file."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from ..meeting.media import Kind
from . import h264, opus, vp8


@dataclass(frozen=True, slots=True)
class Format:
    """A codec as the recorder stores it."""

    #: ffmpeg's name of the codec.
    codec: str
    kind: Kind
    #: ffmpeg's name of the container format, and the file's suffix and type.
    container: str
    suffix: str
    mime_type: str
    #: The codec's RTP clock, the unit of the frames' timestamps.
    rate: int
    #: Whether bytes can be a frame of this codec (a structural check, no decoding).
    is_frame: Callable[[bytes], bool]


VP8 = Format("vp8", "video", "webm", ".webm", "video/webm", 90000, vp8.is_frame)
# WebM allows VP8, VP9, AV1, Vorbis and Opus only; Matroska takes H.264 as it is.
H264 = Format("h264", "video", "matroska", ".mkv", "video/x-matroska", 90000, h264.is_access_unit)
OPUS = Format(
    "opus",
    "audio",
    "webm",
    ".webm",
    "audio/webm",
    opus.SAMPLE_RATE,
    lambda data: opus.frame_count(data) is not None,
)

_BY_MIME_TYPE = {"video/vp8": VP8, "video/h264": H264, "audio/opus": OPUS}


def format_of(mime_type: str, kind: Kind) -> Format | None:
    """The format for a track's codec (``"video/VP8"``...), None when it is not one the
    recorder stores. An audio track without a codec is Opus, the only audio codec the
    router takes."""
    if not mime_type and kind == "audio":
        return OPUS
    found = _BY_MIME_TYPE.get(mime_type.lower())
    return found if found is not None and found.kind == kind else None
