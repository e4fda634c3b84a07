"""One track instance's file: its frames muxed as received, never transcoded.

Runs in the recorder's writer thread only. The file is created at the first frame that
can start it (a key frame whose size can be read, for video), so a track that sent
nothing leaves no file behind.
"""

from __future__ import annotations

import io
from fractions import Fraction
from pathlib import Path

import av
from av.audio.codeccontext import AudioCodecContext
from av.container import OutputContainer
from av.stream import Stream
from av.video.codeccontext import VideoCodecContext

from . import h264, opus, vp8
from .formats import H264, OPUS, VP8, Format
from .logs import Log
from .names import abandon, create_file, printable
from .recorded import RecordedFile

#: The longest a video's last frame is taken to last (for the file's duration).
_MAX_LAST_FRAME_SECONDS = 1.0


class TrackFile:
    """The file of one published track instance (see the module docstring)."""

    def __init__(
        self,
        directory: Path,
        stem: str,
        form: Format,
        participant_id: str,
        name: str,
        source: str,
        log: Log,
    ) -> None:
        self._directory = directory
        self._stem = stem
        self._format = form
        self._participant_id = participant_id
        self._name = name
        self._source = source
        self._log = log
        self._path: Path | None = None
        self._container: OutputContainer | None = None
        self._stream: Stream | None = None
        #: Set when the file could not be created: it is not tried again.
        self._broken = False
        self._time_base = Fraction(1, form.rate)
        self._first: int | None = None
        self._last: int | None = None
        self._last_length = 0
        #: Frames written.
        self.frames = 0

    @property
    def path(self) -> Path | None:
        return self._path

    def write(self, data: bytes, position: int, keyframe: bool) -> bool:
        """Mux one frame at ``position`` (ticks of the codec's clock on the recording's
        timeline); False when it was skipped (before the first usable key frame, or the
        file could not be created). Raises what the muxer raises."""
        if self._container is None and not self._open(data, keyframe):
            return False
        assert self._stream is not None and self._container is not None
        pts = position if self._last is None else max(position, self._last + 1)
        packet = av.Packet(data)
        packet.pts = packet.dts = pts
        packet.time_base = self._time_base
        packet.stream = self._stream
        packet.is_keyframe = keyframe
        if self._format is OPUS:
            packet.duration = opus.packet_samples(data) or 0
            self._last_length = packet.duration
        elif self._last is not None:
            self._last_length = min(
                pts - self._last, int(self._format.rate * _MAX_LAST_FRAME_SECONDS)
            )
        self._container.mux(packet)
        if self._first is None:
            self._first = pts
        self._last = pts
        self.frames += 1
        return True

    def _open(self, data: bytes, keyframe: bool) -> bool:
        if self._broken or not keyframe:
            return False
        size: tuple[int, int] | None = None
        private = b""
        channels = 0
        if self._format is VP8:
            size = vp8.keyframe_size(data)
            if size is None:
                return False  # a frame flagged key that is not: wait for the next
        elif self._format is H264:
            # Without an SPS (browsers send one with every IDR) the file has no size and
            # no avcC, and the access units stay in Annex B: ffmpeg reads that.
            size = h264.picture_size(data)
            private = h264.parameter_sets(data)
        elif self._format is OPUS:
            channels = opus.channels(data)
            private = opus.opus_head(channels)
        try:
            self._path = create_file(
                self._directory, self._stem, self._format.suffix, numbered=True
            )
            self._container = av.open(str(self._path), "w", format=self._format.container)
            self._stream = _copy_stream(self._container, self._format.codec)
            self._set_up(self._stream, size, channels, private)
            self._container.metadata["title"] = printable(f"{self._name} ({self._source})")
        except Exception:
            self._broken = True
            self._log.exception("could not create the file of this track; it is not recorded")
            self._discard()
            return False
        self._log.info("recording into %s", self._path.name)
        return True

    def _set_up(
        self, stream: Stream, size: tuple[int, int] | None, channels: int, private: bytes
    ) -> None:
        context = stream.codec_context
        if isinstance(context, VideoCodecContext) and size is not None:
            context.width, context.height = size
        if isinstance(context, AudioCodecContext):
            context.sample_rate = opus.SAMPLE_RATE
            context.layout = "stereo" if channels == 2 else "mono"
        if private:
            context.extradata = private
        stream.time_base = self._time_base

    def finish(self) -> RecordedFile | None:
        """Close the file; its description, or None (and no file) when it holds no
        frame."""
        if self._container is not None:
            try:
                self._container.close()
            except Exception:
                self._log.exception("closing %s failed", self._path)
            self._container = None
        if not self.frames:
            self._discard()
            return None
        assert self._path is not None and self._first is not None and self._last is not None
        rate = self._format.rate
        try:
            size = self._path.stat().st_size
        except OSError:
            self._log.exception("%s is gone", self._path)
            return None
        return RecordedFile(
            path=self._path,
            kind="track",
            participant_id=self._participant_id,
            name=self._name,
            source=self._source,
            mime_type=self._format.mime_type,
            size=size,
            duration_ms=(self._last + self._last_length - self._first) * 1000 // rate,
            start_ms=self._first * 1000 // rate,
        )

    def _discard(self) -> None:
        abandon(self._container, self._path)
        self._container, self._path = None, None


def _copy_stream(container: OutputContainer, codec: str) -> Stream:
    """A stream for muxing ``codec`` packets as they are, whose parameters (size,
    private data) can still be set.

    A stream made with ``add_stream`` has an encoder that PyAV opens when it writes the
    header: it would set up an encoder never used (and rewrite the private data). A
    stream copied from a template is marked as set up already, so its parameters go to
    the muxer as they are; the template is a stream of a container never written.
    """
    with av.open(io.BytesIO(), "w", format="matroska") as scratch:
        template = scratch.add_stream(codec)
        return container.add_stream_from_template(template, opaque=True)
