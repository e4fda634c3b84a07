"""Transcription from the moderator's command to the transcript in the room, with a
stand-in transcriber (the real one is tested in tests/transcription): live captions to
every door, one thread message per speaker turn, the files at the end (plain text and
WebVTT), the limited state, and resumption after a restart."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from bridge.capture import transcripts
from bridge.capture.posting import FilePosting
from bridge.capture.recordings import CaptureError
from bridge.capture.transcripts import Line, Transcriptions, plain_text, web_vtt
from bridge.db import Storage
from bridge.meeting.events import Caption, CaptionsStatus, CaptureChanged
from bridge.meeting.media import FrameHandler, TrackPublished
from tests.capture.test_recordings import FakeRoom
from tests.meeting.fakes import RecordingAttendee
from tests.meeting.test_meetings import World, identity, until


@dataclass(frozen=True)
class Segment:
    participant_id: str
    text: str
    start: float
    end: float


class FakeTranscriber:
    def __init__(self, on_segment: Any, on_limited: Any) -> None:
        self.on_segment = on_segment
        self.on_limited = on_limited
        self.stopped = False

    def track_started(self, track: TrackPublished) -> FrameHandler | None:
        return None

    def track_ended(self, track_id: str) -> None:
        pass

    async def stop(self) -> None:
        self.stopped = True


class Setup:
    def __init__(self, storage: Storage, path: Path) -> None:
        self.world = World(storage)
        self.room = FakeRoom(limit=None)
        self.path = path
        self.transcribers: list[FakeTranscriber] = []
        self.transcriptions = self.make(self.world.meetings)

    def make(self, meetings: Any, available: bool = True) -> Transcriptions:
        def transcriber(on_segment: Any, on_limited: Any) -> FakeTranscriber:
            made = FakeTranscriber(on_segment, on_limited)
            self.transcribers.append(made)
            return made

        files = self.world.storage.capture_files
        return Transcriptions(
            meetings,
            self.room,
            FilePosting(meetings, files, self.room, self.world.clock),
            self.world.clock,
            transcriber=transcriber if available else None,
            path=self.path,
            unavailable="Transcription is not set up on this bridge.",
        )

    def say(self, who: str, text: str, start: float, end: float) -> None:
        origin = self.world.clock.monotonic()
        self.transcribers[-1].on_segment(Segment(who, text, origin + start, origin + end))


@pytest.fixture
def setup(storage: Storage, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Setup:
    monkeypatch.setattr(transcripts, "TURN_IDLE", 0.05)
    return Setup(storage, tmp_path / "transcripts")


async def test_captions_turns_in_a_thread_and_the_files(setup: Setup) -> None:
    meetings, room = setup.world.meetings, setup.room
    meeting, _ = await meetings.start("!room:x", "Budget", "@alice:x")
    alice_door, bob_door = RecordingAttendee(), RecordingAttendee()
    alice = await meetings.join(meeting, identity("alice"), "Alice", alice_door)
    bob = await meetings.join(meeting, identity("bob"), "Bob", bob_door)
    await setup.transcriptions.start(meeting, "@alice:x")
    assert meeting.transcribing
    assert [e.transcribing for e in bob_door.events if isinstance(e, CaptureChanged)] == [True]
    root_id = "$notice1"
    assert "Transcription started by @alice:x" in room.notices[0][1]

    setup.say(alice.id, "Bonjour à tous.", 1.0, 2.0)
    setup.say(alice.id, "  On commence\n le budget. ", 2.5, 4.0)  # the same turn
    setup.say(bob.id, "D'accord.", 4.5, 5.0)  # a new turn: Alice's is posted
    setup.say(bob.id, "<b>Après</b> la pause", 9.0, 10.0)  # too long a pause: new turn
    captions = [(e.participant_id, e.text) for e in bob_door.events if isinstance(e, Caption)]
    assert captions[0] == (alice.id, "Bonjour à tous.") and len(captions) == 4
    await until(lambda: len(room.notices) == 4)
    assert room.threads[1:] == [root_id] * 3
    assert [text for _, text in room.notices[1:]] == [
        "Alice: Bonjour à tous. On commence le budget.",
        "Bob: D'accord.",
        "Bob: <b>Après</b> la pause",
    ]

    setup.transcribers[-1].on_limited(True, "Captions are limited: 5 people speak, 2 at most.")
    [status] = [e for e in alice_door.events if isinstance(e, CaptionsStatus)]
    assert status.limited and "2 at most" in status.message
    assert meeting.captions_limited == status.message  # for whoever joins now

    await setup.transcriptions.stop(meeting, "@alice:x")
    assert not meeting.transcribing and meeting.captions_limited is None
    await until(lambda: setup.transcribers[-1].stopped)
    await until(lambda: len(room.files) == 2)
    assert {root for _, _, root in room.files} == {root_id}  # in the transcript's thread
    text_file, vtt_file = sorted((f for _, f, _ in room.files), key=lambda f: f.name)
    assert text_file.mime_type == "text/plain" and vtt_file.mime_type == "text/vtt"
    text = text_file.path.read_text()
    assert text.startswith("Transcript of Budget\n")
    assert "] Alice: Bonjour à tous." in text and "] Bob: D'accord." in text
    vtt = vtt_file.path.read_text()
    assert vtt.startswith("WEBVTT\n") and "<v Bob>&lt;b&gt;Après&lt;/b&gt; la pause" in vtt
    assert await setup.world.storage.capture_files.unposted() == []


async def test_refusals_the_end_and_a_restart(setup: Setup) -> None:
    meetings = setup.world.meetings
    meeting, _ = await meetings.start("!room:x", "Board", "@alice:x")
    with pytest.raises(CaptureError, match="not being transcribed"):
        await setup.transcriptions.stop(meeting, "@alice:x")
    await setup.transcriptions.start(meeting, "@alice:x")
    with pytest.raises(CaptureError, match="already"):
        await setup.transcriptions.start(meeting, "@alice:x")
    alice = await meetings.join(meeting, identity("alice"), "Alice", RecordingAttendee())
    setup.say(alice.id, "Before the restart.", 0.5, 1.5)
    await setup.transcriptions.close()  # shutdown: the transcript so far is kept
    assert len(await setup.world.storage.capture_files.unposted()) == 2

    restarted = setup.world.make()
    await restarted.load()
    again = setup.make(restarted)
    await again.resume()
    live = restarted.live(meeting.id)
    assert live is not None and live.transcribing and again.running(meeting.id)
    assert any("after a restart" in text for _, text in setup.room.notices)
    await restarted.end(live, "@alice:x")
    await until(lambda: setup.transcribers[-1].stopped)
    await until(lambda: any("the meeting ended" in text for _, text in setup.room.notices))

    unavailable = setup.make(setup.world.make(), available=False)
    second, _ = await unavailable.meetings.start("!other:x", "Other", "@alice:x")
    with pytest.raises(CaptureError, match="not set up"):
        await unavailable.start(second, "@alice:x")


def test_the_files_say_who_said_what_when() -> None:
    lines = [
        Line(61_500, 63_000, "Alice", "Hello & welcome"),
        Line(3_723_004, 3_723_004, "Bob > Carol", "Bye"),
    ]
    assert plain_text("Weekly", lines) == (
        "Transcript of Weekly\n\n[00:01:01] Alice: Hello & welcome\n[01:02:03] Bob > Carol: Bye\n"
    )
    assert web_vtt(lines) == (
        "WEBVTT\n\n1\n00:01:01.500 --> 00:01:03.000\n<v Alice>Hello &amp; welcome\n\n"
        "2\n01:02:03.004 --> 01:02:03.005\n<v Bob &gt; Carol>Bye\n"
    )


async def test_the_transcript_goes_under_the_meetings_notice(setup: Setup) -> None:
    meetings, room = setup.world.meetings, setup.room
    meeting, _ = await meetings.start("!room:x", "Weekly", "@alice:x")
    await meetings.set_notice(meeting, "$meeting-notice")
    alice = await meetings.join(meeting, identity("alice"), "Alice", RecordingAttendee())
    await setup.transcriptions.start(meeting, "@alice:x")
    assert room.threads[0] is None  # the room is told in its timeline
    assert "follows in the thread of the meeting's notice" in room.notices[0][1]
    setup.say(alice.id, "Hello.", 0.5, 1.0)
    await until(lambda: len(room.notices) == 2)
    assert room.threads[1] == "$meeting-notice"
    restarted = setup.world.make()
    await restarted.load()
    assert restarted.live(meeting.id).notice_event == "$meeting-notice"  # type: ignore[union-attr]
