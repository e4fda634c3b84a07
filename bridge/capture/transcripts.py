"""Transcription of live meetings: live captions on every door, the transcript in the
room as a thread (one message per speaker turn), and the transcript files at the end.

The transcriber (:mod:`bridge.transcription`) attaches to the meeting as an in-process
listener that only receives, and hears each participant's own microphone track: every
line is attributed to its speaker without diarization. Nothing it hears or writes leaves
this machine, except to this bridge's homeserver.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from ..clock import Clock
from ..meeting.media import MediaSink
from ..meeting.meeting import Meeting
from ..meeting.meetings import Change, Meetings
from .background import Background
from .clear import ClearMediaOnly
from .posting import CapturePoster, FilePosting, file_stamp
from .recordings import CaptureError

log = logging.getLogger("visio.capture.transcripts")

#: A pause longer than this between one speaker's segments starts a new turn.
TURN_GAP = 3.0
#: A turn nobody adds to for this long is posted.
TURN_IDLE = 4.0
#: How long a stop waits for the segments still being decoded.
STOP_TIMEOUT = 20.0
#: The longest turn posted as one message, in characters.
MAX_TURN = 4000


class Heard(Protocol):
    """One finished segment of one participant's speech (a transcriber's ``Segment``).
    ``start`` and ``end`` are on the event loop's clock (seconds)."""

    @property
    def participant_id(self) -> str: ...

    @property
    def text(self) -> str: ...

    @property
    def start(self) -> float: ...

    @property
    def end(self) -> float: ...


class TranscriberSink(MediaSink, Protocol):
    """What the service needs of a transcriber (:class:`bridge.transcription.Transcriber`)."""

    async def stop(self) -> None:
        """Finish what is being decoded (reporting it), then stop."""
        ...


#: Makes a meeting's transcriber: (on each segment, on limited(limited, message)).
TranscriberFactory = Callable[
    [Callable[[Heard], None], Callable[[bool, str], None]], TranscriberSink
]


@dataclass
class Line:
    """One segment in the transcript; times in ms from the meeting's start."""

    start_ms: int
    end_ms: int
    name: str
    text: str


@dataclass
class _Turn:
    participant_id: str
    name: str
    texts: list[str]
    end: float


@dataclass
class _Running:
    transcriber: TranscriberSink
    #: What is attached to the meeting: the transcriber, for media it can hear.
    sink: ClearMediaOnly
    thread_root: str | None
    #: The loop clock and the wall clock when it started, to place segments in time.
    loop_origin: float
    wall_origin_ms: int
    lines: list[Line] = field(default_factory=list)
    turn: _Turn | None = None
    idle: asyncio.TimerHandle | None = None
    posting: asyncio.Lock = field(default_factory=asyncio.Lock)


class Transcriptions:
    """Starts and stops transcription, and posts what it heard."""

    def __init__(
        self,
        meetings: Meetings,
        poster: CapturePoster,
        posting: FilePosting,
        clock: Clock,
        *,
        transcriber: TranscriberFactory | None,
        path: Path,
        unavailable: str = "Transcription is not set up on this bridge.",
    ) -> None:
        self.meetings = meetings
        self.poster = poster
        self.posting = posting
        self.clock = clock
        self.path = path
        self.unavailable = unavailable
        self._make = transcriber
        self._running: dict[str, _Running] = {}
        self._background = Background(log, "transcription")
        meetings.listeners.append(self._meeting_changed)

    @property
    def available(self) -> bool:
        return self._make is not None

    def running(self, meeting_id: str) -> bool:
        return meeting_id in self._running

    # Commands --------------------------------------------------------------------

    async def start(self, meeting: Meeting, by: str) -> None:
        if self._make is None:
            raise CaptureError(self.unavailable)
        if not meeting.is_live:
            raise CaptureError("This meeting has ended.")
        if meeting.id in self._running:
            raise CaptureError("This meeting is already being transcribed.", "conflict")
        self._attach(meeting)
        try:
            await self.meetings.set_capture(meeting, transcribing=True)
        except BaseException:
            self._detach(meeting)
            raise
        where = "the thread of the meeting's notice" if meeting.notice_event else "this thread"
        await self._open_thread(
            meeting,
            f"Transcription started by {by}. Everyone in the meeting is told while it runs; "
            f"live captions show on the meeting page, and the transcript follows in {where}.",
        )

    async def stop(self, meeting: Meeting, by: str) -> None:
        if meeting.id not in self._running:
            raise CaptureError("This meeting is not being transcribed.", "conflict")
        running = self._detach(meeting)
        if meeting.is_live:
            await self.meetings.set_capture(meeting, transcribing=False)
        await self._notice(meeting, f"Transcription stopped by {by}.", running)
        if running is not None:
            self._background.spawn(self._finish(meeting.id, meeting, running))

    # Lifecycle -------------------------------------------------------------------

    async def resume(self) -> None:
        """After a start: transcribe again the live meetings that were, and post what
        earlier runs left."""
        for meeting in self.meetings.all_live():
            if meeting.transcribing and meeting.id not in self._running:
                if self._make is None:
                    await self.meetings.set_capture(meeting, transcribing=False)
                    continue
                self._attach(meeting)
                await self._open_thread(
                    meeting, "Transcription goes on after a restart of the bridge."
                )

    async def close(self) -> None:
        """Shutdown: write what was heard to the transcript files (posted at the next
        start); meetings stay marked, so transcription resumes."""
        for meeting_id, running in list(self._running.items()):
            meeting = self.meetings.live(meeting_id)
            del self._running[meeting_id]
            if meeting is not None:
                self.meetings.remove_sink(meeting, running.sink)
            try:
                async with asyncio.timeout(STOP_TIMEOUT / 2):
                    await running.transcriber.stop()
            except TimeoutError:
                log.warning("Transcription of %s: segments left undecoded at shutdown", meeting_id)
            self._take_turn(running)
            await self._register(meeting_id, meeting, running)
        await self._background.cancel()

    async def _meeting_changed(self, meeting: Meeting, change: Change) -> None:
        if change == Change.ENDED and meeting.id in self._running:
            running = self._detach(meeting)
            if running is not None:
                await self._notice(meeting, "Transcription stopped: the meeting ended.", running)
                self._background.spawn(self._finish(meeting.id, meeting, running))

    # Hearing ---------------------------------------------------------------------

    def _attach(self, meeting: Meeting) -> None:
        assert self._make is not None
        running: _Running | None = None

        def heard(segment: Heard) -> None:
            if running is not None and self._running.get(meeting.id) is running:
                self._heard(meeting, running, segment)

        def limited(is_limited: bool, message: str) -> None:
            if running is not None and self._running.get(meeting.id) is running:
                self.meetings.captions_status(meeting, is_limited, message)

        transcriber = self._make(heard, limited)
        sink = ClearMediaOnly(meeting, transcriber, "Transcription")
        running = _Running(transcriber, sink, None, self.clock.monotonic(), self.clock.now_ms())
        self._running[meeting.id] = running
        self.meetings.add_sink(meeting, sink)
        log.info("Transcribing meeting %s", meeting.id)

    def _detach(self, meeting: Meeting) -> _Running | None:
        running = self._running.pop(meeting.id, None)
        if running is not None:
            self.meetings.remove_sink(meeting, running.sink)
            if meeting.captions_limited is not None:
                self.meetings.captions_status(meeting, False, "")
        return running

    def _heard(self, meeting: Meeting, running: _Running, segment: Heard) -> None:
        text = " ".join(segment.text.split())
        if not text:
            return
        self.meetings.caption(meeting, segment.participant_id, text)
        participant = meeting.participants.get(segment.participant_id)
        name = participant.display_name if participant is not None else segment.participant_id
        offset = running.wall_origin_ms - meeting.started_at
        running.lines.append(
            Line(
                max(0, offset + int((segment.start - running.loop_origin) * 1000)),
                max(0, offset + int((segment.end - running.loop_origin) * 1000)),
                name,
                text,
            )
        )
        turn = running.turn
        if (
            turn is not None
            and turn.participant_id == segment.participant_id
            and segment.start - turn.end <= TURN_GAP
        ):
            turn.texts.append(text)
            turn.end = segment.end
        else:
            self._post_turn(meeting, running)
            running.turn = _Turn(segment.participant_id, name, [text], segment.end)
        if running.idle is not None:
            running.idle.cancel()
        running.idle = asyncio.get_running_loop().call_later(
            TURN_IDLE, self._post_turn, meeting, running
        )

    def _take_turn(self, running: _Running) -> _Turn | None:
        turn, running.turn = running.turn, None
        if running.idle is not None:
            running.idle.cancel()
            running.idle = None
        return turn

    def _post_turn(self, meeting: Meeting, running: _Running) -> None:
        turn = self._take_turn(running)
        if turn is None:
            return
        text = f"{turn.name}: {' '.join(turn.texts)}"
        if len(text) > MAX_TURN:
            text = text[: MAX_TURN - 1] + "…"

        async def post() -> None:
            async with running.posting:  # turns keep their order
                await self._notice(meeting, text, running)

        self._background.spawn(post())

    # Files -----------------------------------------------------------------------

    async def _finish(self, meeting_id: str, meeting: Meeting, running: _Running) -> None:
        try:
            async with asyncio.timeout(STOP_TIMEOUT):
                await running.transcriber.stop()
        except TimeoutError:
            log.warning("Transcription of %s: the last segments took too long", meeting_id)
        self._post_turn(meeting, running)
        async with running.posting:  # after the last turn
            pass
        await self._register(meeting_id, meeting, running)
        await self.posting.post_unposted()

    async def _register(self, meeting_id: str, meeting: Meeting | None, running: _Running) -> None:
        if not running.lines:
            return
        stored = meeting or await self.meetings.get(meeting_id)
        title = stored.title if stored is not None else meeting_id
        room_id = stored.room_id if stored is not None else ""
        stamp = file_stamp(running.wall_origin_ms)
        folder = self.path / meeting_id
        texts = {
            f"transcript-{stamp}.txt": ("text/plain", plain_text(title, running.lines)),
            f"transcript-{stamp}.vtt": ("text/vtt", web_vtt(running.lines)),
        }
        duration = max(line.end_ms for line in running.lines)
        for name, (mime_type, text) in texts.items():
            path = folder / name
            data = text.encode()
            await asyncio.to_thread(_write, path, data)
            await self.posting.register(
                meeting_id, room_id, "transcript", path, mime_type, len(data), duration
            )
        if running.thread_root is not None:
            self.posting.threads[(meeting_id, "transcript")] = running.thread_root
        log.info("Transcript of %s written: %d line(s)", meeting_id, len(running.lines))

    # Room ------------------------------------------------------------------------

    async def _open_thread(self, meeting: Meeting, text: str) -> None:
        """Tell the room (in its timeline: everyone must see it), and choose the thread
        the transcript goes in: under the meeting's notice, or under this one when the
        meeting had none here."""
        running = self._running.get(meeting.id)
        try:
            said = await self.poster.notice(meeting.room_id, text)
        except Exception:
            log.exception("Telling %s about its transcription failed", meeting.room_id)
            return
        if running is not None:
            running.thread_root = meeting.notice_event or said

    async def _notice(self, meeting: Meeting, text: str, running: _Running | None) -> None:
        root = running.thread_root if running is not None else None
        try:
            await self.poster.notice(meeting.room_id, text, thread_root=root)
        except Exception:
            log.exception("Posting to %s's transcript failed", meeting.room_id)


def _write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o750)
    path.write_bytes(data)


def _clock_time(ms: int, separator: str = ".") -> str:
    hours, rest = divmod(ms, 3_600_000)
    minutes, rest = divmod(rest, 60_000)
    seconds, millis = divmod(rest, 1000)
    return f"{hours:02d}:{minutes:02d}:{seconds:02d}{separator}{millis:03d}"


def plain_text(title: str, lines: list[Line]) -> str:
    """The transcript to read: ``[00:01:05] Name: text``, one line per segment."""
    body = [f"Transcript of {title}", ""]
    for line in lines:
        body.append(f"[{_clock_time(line.start_ms)[:8]}] {line.name}: {line.text}")
    return "\n".join(body) + "\n"


def _vtt_text(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def web_vtt(lines: list[Line]) -> str:
    """The transcript as WebVTT captions, each cue voiced by its speaker."""
    cues = ["WEBVTT", ""]
    for n, line in enumerate(lines, 1):
        end = max(line.end_ms, line.start_ms + 1)
        name = _vtt_text(line.name).replace("\n", " ")
        cues += [
            str(n),
            f"{_clock_time(line.start_ms)} --> {_clock_time(end)}",
            f"<v {name}>{_vtt_text(line.text)}",
            "",
        ]
    return "\n".join(cues)
