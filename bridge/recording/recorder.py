"""The meeting recorder: every published track into its own file, and an audio mix.

A :class:`Recorder` is an in-process listener of one meeting's media (a
:class:`~bridge.meeting.media.MediaSink`). Tracks are stored as they were sent, never
transcoded: VP8 and Opus in WebM, H.264 in Matroska, one file per published track
instance (a camera turned off and on again makes two files), named
``<display name>-<source>-<n>.<ext>``. All files count time from the moment the
recording started, so they line up. Every audio track is also decoded and mixed into
``mix.webm`` (see :mod:`bridge.recording.mix`).

Frames arrive on the event loop, which must never wait for a disk: the frame handlers
only queue, and one writer thread per recorder does all muxing, decoding and file I/O.
When the writer falls behind, the queue (``queue_frames`` frames) fills and further
frames are dropped and counted (:attr:`Recorder.dropped`); a video track that lost a
frame then skips to its next key frame, so its file stays decodable. The sink interface
cannot ask the publisher for that key frame: it comes when the encoder sends one
(another subscriber's request, or the encoder's own schedule).

A frame that is not a frame of its codec (garbage from a buggy or hostile client) is
left out and logged; it never stops the writer or touches other tracks.

Usage::

    recorder = Recorder(folder, name_of=lambda participant_id: display_name)
    meetings.add_sink(meeting, recorder)
    ...
    meetings.remove_sink(meeting, recorder)
    files = await recorder.stop()
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

from ..meeting.media import FrameHandler, MediaFrame, TrackPublished
from .formats import OPUS, Format, format_of
from .inbox import Inbox
from .logs import TrackLog, log
from .mix import Mix, MixInput
from .names import safe_name
from .recorded import RecordedFile
from .timeline import TrackTimeline
from .track_file import TrackFile

__all__ = ["RecordedFile", "Recorder"]

#: How often an idle writer moves the mix on (seconds), so that a long stretch in which
#: nobody sends anything is encoded as it passes rather than all at once later.
_TICK = 1.0


@dataclass(eq=False)
class _Track:
    """One published track instance. The event loop owns the first group of fields,
    the writer thread the second."""

    published: TrackPublished
    form: Format
    name: str
    stem: str
    log: TrackLog
    # Event loop side.
    ended: bool = False
    #: A frame of this (video) track was dropped: skip to its next key frame.
    skipping: bool = False
    # Writer side.
    timeline: TrackTimeline | None = None
    file: TrackFile | None = None
    mix_input: MixInput | None = None
    bad_frames: int = 0
    failed_frames: int = 0
    finished: bool = False
    recorded: RecordedFile | None = None


@dataclass(frozen=True, slots=True)
class _Frame:
    track: _Track
    frame: MediaFrame


@dataclass(frozen=True, slots=True)
class _End:
    track: _Track


@dataclass(frozen=True, slots=True)
class _Stop:
    done: concurrent.futures.Future[list[RecordedFile]] = field(
        default_factory=concurrent.futures.Future
    )


_Item = _Frame | _End | _Stop


class Recorder:
    """Records one meeting into ``directory`` (see the module docstring).

    ``name_of`` gives a participant's display name (for file names), asked on the event
    loop when their track starts. ``clock`` is the clock of the frames' ``arrival``
    (the event loop's by default); it is also read from the writer thread.
    """

    def __init__(
        self,
        directory: Path,
        *,
        name_of: Callable[[str], str],
        clock: Callable[[], float] | None = None,
        queue_frames: int = 2000,
    ) -> None:
        self._directory = directory
        self._name_of = name_of
        self._clock = clock or _event_loop_clock()
        #: The recording's time origin, on the clock of the frames' arrival.
        self._start = self._clock()
        self._inbox: Inbox[_Item] = Inbox(queue_frames)
        # Event loop side.
        self._tracks: dict[str, _Track] = {}
        self._dropped = 0
        self._overflowing = False
        self._stop: _Stop | None = None
        # Writer side.
        self._seen: list[_Track] = []
        self._mix = Mix(directory, log)
        self._latest = self._start
        self._thread = threading.Thread(
            target=self._run, name=f"recorder {directory.name}", daemon=True
        )
        self._thread.start()

    @property
    def dropped(self) -> int:
        """Frames lost because the writer fell behind (those that found the queue full,
        and the video frames skipped after them up to the next key frame)."""
        return self._dropped

    # The sink, on the event loop --------------------------------------------------

    def track_started(self, track: TrackPublished) -> FrameHandler | None:
        """Take every track whose codec the recorder stores."""
        if self._stop is not None:
            return None
        form = format_of(track.mime_type, track.kind)
        if form is None:
            log.warning("not recording %s: %r is not stored", track.track_id, track.mime_type)
            return None
        previous = self._tracks.pop(track.track_id, None)
        if previous is not None:
            self._end(previous)
        name = self._display_name(track.participant_id)
        stem = f"{safe_name(name or track.participant_id)}-{safe_name(track.source)}"
        instance = _Track(track, form, name, stem, TrackLog(track.track_id))
        self._tracks[track.track_id] = instance
        return partial(self._take, instance)

    def track_ended(self, track_id: str) -> None:
        """Finish the track's file (after the frames queued before)."""
        instance = self._tracks.pop(track_id, None)
        if instance is not None:
            self._end(instance)

    def _end(self, instance: _Track) -> None:
        instance.ended = True
        self._inbox.put(_End(instance))

    def _display_name(self, participant_id: str) -> str:
        try:
            return self._name_of(participant_id)
        except Exception:
            log.exception("no display name for %s", participant_id)
            return participant_id

    def _take(self, track: _Track, frame: MediaFrame) -> None:
        """A track's frame handler: queue, or drop and count."""
        if track.ended:
            return
        if track.skipping and not frame.keyframe:
            self._dropped += 1
            return
        if self._inbox.offer(_Frame(track, frame)):
            track.skipping = False
            self._overflowing = False
            return
        self._dropped += 1
        track.skipping = track.form.kind == "video"
        if not self._overflowing:
            self._overflowing = True
            log.warning(
                "the writer fell behind (%d frames queued): dropping frames, %d so far",
                self._inbox.capacity,
                self._dropped,
            )

    async def stop(self) -> list[RecordedFile]:
        """Finish every file and the mix; returns those that hold at least one frame
        (the others are deleted). Frames queued before are written first. Calling it
        again returns the same files."""
        if self._stop is None:
            self._stop = _Stop()
            for instance in self._tracks.values():
                self._end(instance)
            self._tracks.clear()
            self._inbox.put(self._stop)
        # Shielded: a caller that gives up waiting must not cancel the result for others.
        files: list[RecordedFile] = await asyncio.shield(asyncio.wrap_future(self._stop.done))
        if self._thread.is_alive():
            await asyncio.to_thread(self._thread.join)  # it only has to return
        return list(files)

    # The writer thread -----------------------------------------------------------

    def _run(self) -> None:
        while True:
            item = self._inbox.take(_TICK)
            if isinstance(item, _Stop):
                self._stopped(item.done)
                return
            try:
                if item is None:
                    self._advance(self._clock())
                elif isinstance(item, _Frame):
                    self._write(item.track, item.frame)
                else:
                    self._finish_track(item.track)
            except Exception:
                what = "a tick" if item is None else f"{item.track.published.track_id}"
                log.exception("the writer failed on %s; it goes on", what)

    def _stopped(self, done: concurrent.futures.Future[list[RecordedFile]]) -> None:
        try:
            files = self._finish()
        except BaseException as error:
            done.set_exception(error)
            raise
        done.set_result(files)

    def _write(self, track: _Track, frame: MediaFrame) -> None:
        if not track.form.is_frame(frame.data):
            track.bad_frames += 1
            if track.bad_frames == 1:
                track.log.warning("left out a frame that is not %s", track.form.codec)
            return
        if track.timeline is None:
            track.timeline = TrackTimeline(self._start, track.form.rate, track.log)
            self._seen.append(track)
        position = track.timeline.place(frame.timestamp, frame.arrival)
        self._write_file(track, frame, position)
        if track.form is OPUS:
            self._write_mix(track, frame, position)
        self._advance(frame.arrival)

    def _write_file(self, track: _Track, frame: MediaFrame, position: int) -> None:
        if track.file is None:
            published = track.published
            track.file = TrackFile(
                self._directory,
                track.stem,
                track.form,
                published.participant_id,
                track.name,
                published.source,
                track.log,
            )
        try:
            track.file.write(frame.data, position, frame.keyframe)
        except Exception:
            track.failed_frames += 1
            if track.failed_frames == 1:
                track.log.exception("writing a frame failed")

    def _write_mix(self, track: _Track, frame: MediaFrame, position: int) -> None:
        if track.mix_input is None:
            track.mix_input = self._mix.add_input(track.published.track_id)
        try:
            self._mix.add(track.mix_input, frame.data, position)
        except Exception:
            track.failed_frames += 1
            if track.failed_frames == 1:
                track.log.exception("decoding a frame for the mix failed")

    def _advance(self, now: float) -> None:
        self._latest = max(self._latest, now)
        self._mix.advance(max(0, round((self._latest - self._start) * OPUS.rate)))

    def _finish_track(self, track: _Track) -> None:
        """Close the track's file as soon as it ends: the file is then final on disk,
        whatever happens to the bridge before the recording stops."""
        if track.finished:
            return
        track.finished = True
        if track.mix_input is not None:
            self._mix.end_input(track.mix_input)
        if track.file is not None:
            track.recorded = track.file.finish()
        if track.bad_frames:
            track.log.warning(
                "%d frame(s) were not %s: left out", track.bad_frames, track.form.codec
            )
        if track.failed_frames:
            track.log.warning("%d frame(s) could not be written", track.failed_frames)

    def _finish(self) -> list[RecordedFile]:
        files: list[RecordedFile] = []
        for track in self._seen:
            try:
                self._finish_track(track)
            except Exception:
                track.log.exception("finishing the file failed")
            if track.recorded is not None:
                files.append(track.recorded)
        try:
            mixed = self._mix.finish()
        except Exception:
            log.exception("finishing the mix failed")
            mixed = None
        if mixed is not None:
            files.append(mixed)
        log.info("recording finished: %d file(s), %d frame(s) dropped", len(files), self._dropped)
        return files


def _event_loop_clock() -> Callable[[], float]:
    """The running loop's clock, which stamps the frames; a monotonic clock that agrees
    with it (the default loop's time is ``time.monotonic``) when none is running."""
    try:
        return asyncio.get_running_loop().time
    except RuntimeError:
        return time.monotonic
