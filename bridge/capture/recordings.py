"""Recording of live meetings, from the moderator's command to the files in the room.

The recorder (:mod:`bridge.recording`) attaches to the meeting as an in-process
listener that only receives; this module decides when it runs and what happens to what
it wrote. Whenever it runs, the meeting says so on every door (``Meetings.set_capture``)
and the room is told. Files are registered in the database before anything is posted,
so that a file written just before a crash or a shutdown is posted at the next start,
and retention can always find it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from ..clock import Clock
from ..meeting.media import MediaSink
from ..meeting.meeting import Meeting
from ..meeting.meetings import Change, Meetings
from ..meeting.store import CaptureFileStore
from ..refusal import Refusal
from .background import Background
from .clear import ClearMediaOnly
from .posting import CapturePoster, FilePosting, file_stamp

log = logging.getLogger("visio.capture")

#: How long a shutdown waits for recordings to be finished on disk.
FINISH_TIMEOUT = 8.0


class CaptureError(Refusal):
    """A capture request that cannot be done; the message says why, to the user."""

    def __init__(self, message: str, code: str = "capture_refused") -> None:
        super().__init__(code, message)


class Recording(Protocol):
    """What the service needs of a recorder (:class:`bridge.recording.Recorder`)."""

    @property
    def dropped(self) -> int: ...

    async def stop(self) -> list[Any]:
        """Finish every file; returns ``RecordedFile`` values."""
        ...


class RecordingSink(Recording, MediaSink, Protocol):
    pass


#: Makes the recorder of one meeting: (folder, display name of a participant id).
RecorderFactory = Callable[[Path, Callable[[str], str]], RecordingSink]


@dataclass
class _Running:
    recorder: RecordingSink
    #: What is attached to the meeting: the recorder, for media it can hear.
    sink: ClearMediaOnly


class Recordings:
    """Starts and stops recordings, and posts what they produced."""

    def __init__(
        self,
        meetings: Meetings,
        files: CaptureFileStore,
        poster: CapturePoster,
        clock: Clock,
        *,
        enabled: bool,
        path: Path,
        recorder: RecorderFactory,
    ) -> None:
        self.meetings = meetings
        self.poster = poster
        self.clock = clock
        self.enabled = enabled
        self.path = path
        self._make_recorder = recorder
        self._running: dict[str, _Running] = {}
        self._background = Background(log, "recording")
        self.posting = FilePosting(meetings, files, poster, clock)
        meetings.listeners.append(self._meeting_changed)

    def running(self, meeting_id: str) -> bool:
        return meeting_id in self._running

    # Commands --------------------------------------------------------------------

    async def start(self, meeting: Meeting, by: str) -> None:
        """Start recording a live meeting (the caller checked ``by`` may)."""
        if not self.enabled:
            raise CaptureError("Recording is turned off on this bridge (recording.enabled).")
        if not meeting.is_live:
            raise CaptureError("This meeting has ended.")
        if meeting.id in self._running:
            raise CaptureError("This meeting is already being recorded.", "conflict")
        self._attach(meeting)
        try:
            await self.meetings.set_capture(meeting, recording=True)
        except BaseException:
            self._detach(meeting)
            raise
        await self._tell(
            meeting,
            f"Recording started by {by}. Everyone in the meeting is told while it runs.",
        )

    async def stop(self, meeting: Meeting, by: str) -> None:
        """Stop recording; the files are posted in the room when they are finished."""
        if meeting.id not in self._running:
            raise CaptureError("This meeting is not being recorded.", "conflict")
        running = self._detach(meeting)
        if meeting.is_live:
            await self.meetings.set_capture(meeting, recording=False)
        await self._tell(meeting, f"Recording stopped by {by}. The files follow when ready.")
        if running is not None:
            self._background.spawn(self._finish(meeting, running))

    # Lifecycle -------------------------------------------------------------------

    async def resume(self) -> None:
        """After a start: record again the live meetings that were recorded (in new
        files), and post what earlier runs finished but did not post."""
        for meeting in self.meetings.all_live():
            if meeting.recording and meeting.id not in self._running:
                if not self.enabled:
                    await self.meetings.set_capture(meeting, recording=False)
                    continue
                self._attach(meeting)
                await self._tell(meeting, "Recording goes on after a restart of the bridge.")
        self._background.spawn(self.posting.post_unposted())

    async def close(self) -> None:
        """Shutdown: finish every recording on disk and register its files (posted at
        the next start); meetings stay marked as recorded, so recording resumes."""
        for meeting_id, running in list(self._running.items()):
            del self._running[meeting_id]
            meeting = self.meetings.live(meeting_id)
            if meeting is not None:
                self.meetings.remove_sink(meeting, running.sink)
            try:
                async with asyncio.timeout(FINISH_TIMEOUT):
                    await self._register(meeting_id, meeting, running)
            except TimeoutError:
                log.warning("Recording of %s not finished within the shutdown", meeting_id)
        await self._background.cancel()

    async def _meeting_changed(self, meeting: Meeting, change: Change) -> None:
        if change == Change.ENDED and meeting.id in self._running:
            running = self._detach(meeting)
            if running is not None:
                await self._tell(meeting, "Recording stopped: the meeting ended.")
                self._background.spawn(self._finish(meeting, running))

    # Inside ----------------------------------------------------------------------

    def _attach(self, meeting: Meeting) -> None:
        stamp = file_stamp(self.clock.now_ms())
        folder = self.path / meeting.id / stamp
        n = 1
        while folder.exists():
            n += 1
            folder = self.path / meeting.id / f"{stamp}-{n}"
        folder.mkdir(parents=True, mode=0o750)

        def name_of(participant_id: str) -> str:
            participant = meeting.participants.get(participant_id)
            return participant.display_name if participant is not None else participant_id

        recorder = self._make_recorder(folder, name_of)
        sink = ClearMediaOnly(meeting, recorder, "Recording")
        self._running[meeting.id] = _Running(recorder, sink)
        self.meetings.add_sink(meeting, sink)
        log.info("Recording meeting %s into %s", meeting.id, folder)

    def _detach(self, meeting: Meeting) -> _Running | None:
        running = self._running.pop(meeting.id, None)
        if running is not None:
            self.meetings.remove_sink(meeting, running.sink)
        return running

    async def _finish(self, meeting: Meeting, running: _Running) -> None:
        await self._register(meeting.id, meeting, running)
        await self.posting.post_unposted()

    async def _register(self, meeting_id: str, meeting: Meeting | None, running: _Running) -> None:
        """Finish the files on disk and store them, unposted."""
        recorded = await running.recorder.stop()
        if running.recorder.dropped:
            log.warning(
                "Recording of %s lost %d frames (the disk did not keep up)",
                meeting_id,
                running.recorder.dropped,
            )
        room_id = meeting.room_id if meeting is not None else ""
        if not room_id:
            stored = await self.meetings.get(meeting_id)
            room_id = stored.room_id if stored is not None else ""
        for item in recorded:
            await self.posting.register(
                meeting_id,
                room_id,
                "recording",
                Path(item.path),
                item.mime_type,
                int(item.size),
                int(item.duration_ms),
            )
        log.info("Recording of %s finished: %d file(s)", meeting_id, len(recorded))

    async def _tell(self, meeting: Meeting, text: str) -> None:
        try:
            await self.poster.notice(meeting.room_id, text)
        except Exception:
            log.exception("Telling %s about its recording failed", meeting.room_id)
