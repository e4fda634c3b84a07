"""Recording from the moderator's command to the files in the room, with a stand-in
recorder and room (the real recorder is tested in tests/recording, the real room in
tests/integration): who is told, what is stored before it is posted, uploads within
the homeserver's limit, files kept when over it, resumption after a restart, and
retention."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from bridge.capture.posting import FileToPost
from bridge.capture.recordings import CaptureError, Recordings
from bridge.capture.retention import DAY_MS, Retention
from bridge.db import Storage
from bridge.meeting.events import CaptureChanged
from bridge.meeting.media import FrameHandler, TrackPublished
from tests.meeting.fakes import RecordingAttendee
from tests.meeting.test_meetings import World, identity, until


@dataclass
class Recorded:
    path: Path
    mime_type: str
    size: int
    duration_ms: int


class FakeRecorder:
    """Writes one small file per track it was offered, and the mix."""

    def __init__(self, folder: Path, name_of: Any) -> None:
        self.folder = folder
        self.name_of = name_of
        self.tracks: list[str] = []
        self.stopped = False
        self.dropped = 0

    def track_started(self, track: TrackPublished) -> FrameHandler | None:
        self.tracks.append(track.track_id)
        return lambda frame: None

    def track_ended(self, track_id: str) -> None:
        pass

    async def stop(self) -> list[Recorded]:
        self.stopped = True
        made = []
        for n, size in enumerate((1000, 5000)):
            path = self.folder / f"{self.name_of('x')}-{n}.webm"
            path.write_bytes(b"w" * size)
            made.append(Recorded(path, "video/webm", size, 1500))
        return made


@dataclass
class FakeRoom:
    limit: int | None = 2000
    may_delete_media: bool = False
    notices: list[tuple[str, str]] = field(default_factory=list)
    #: The thread each notice went in (None: the room's main timeline).
    threads: list[str | None] = field(default_factory=list)
    files: list[tuple[str, FileToPost, str]] = field(default_factory=list)
    redacted: list[str] = field(default_factory=list)
    deleted: list[str] = field(default_factory=list)
    fail_uploads: bool = False

    async def notice(
        self, room_id: str, text: str, html: str | None = None, thread_root: str | None = None
    ) -> str:
        self.notices.append((room_id, text))
        self.threads.append(thread_root)
        return f"$notice{len(self.notices)}"

    async def upload_limit(self) -> int | None:
        return self.limit

    async def post_file(self, room_id: str, file: FileToPost, thread_root: str) -> tuple[str, str]:
        if self.fail_uploads:
            raise RuntimeError("homeserver down")
        self.files.append((room_id, file, thread_root))
        return f"mxc://x/{file.name}", f"$file{len(self.files)}"

    async def redact(self, room_id: str, event_id: str, reason: str) -> bool:
        self.redacted.append(event_id)
        return True

    async def delete_media(self, mxc: str) -> bool:
        if self.may_delete_media:
            self.deleted.append(mxc)
        return self.may_delete_media


class Setup:
    def __init__(self, storage: Storage, path: Path) -> None:
        self.world = World(storage)
        self.room = FakeRoom()
        self.recorders: list[FakeRecorder] = []
        self.path = path
        self.recordings = self.make(self.world.meetings)

    def make(self, meetings: Any, enabled: bool = True) -> Recordings:
        def recorder(folder: Path, name_of: Any) -> FakeRecorder:
            made = FakeRecorder(folder, name_of)
            self.recorders.append(made)
            return made

        return Recordings(
            meetings,
            self.world.storage.capture_files,
            self.room,
            self.world.clock,
            enabled=enabled,
            path=self.path,
            recorder=recorder,
        )


@pytest.fixture
def setup(storage: Storage, tmp_path: Path) -> Setup:
    return Setup(storage, tmp_path / "recordings")


async def test_a_recording_is_told_then_posted_in_a_thread_or_kept(setup: Setup) -> None:
    meetings, room = setup.world.meetings, setup.room
    meeting, _ = await meetings.start("!room:x", "Board", "@alice:x")
    door = RecordingAttendee()
    await meetings.join(meeting, identity("alice"), "Alice", door)
    await setup.recordings.start(meeting, "@alice:x")
    assert meeting.recording and setup.recordings.running(meeting.id)
    assert [e.recording for e in door.events if isinstance(e, CaptureChanged)] == [True]
    assert "Recording started by @alice:x" in room.notices[-1][1]
    recorder = setup.recorders[0]
    [sink] = setup.world.media.routers[-1].sinks
    assert sink.inner is recorder  # type: ignore[attr-defined]
    assert recorder.folder.parent == setup.path / meeting.id
    with pytest.raises(CaptureError, match="already"):
        await setup.recordings.start(meeting, "@alice:x")

    await setup.recordings.stop(meeting, "@alice:x")
    assert not meeting.recording and setup.world.media.routers[-1].sinks == []
    await until(lambda: len(room.notices) >= 4)
    texts = [text for _, text in room.notices]
    assert "Recording stopped by @alice:x" in texts[1]
    assert texts[2].startswith('Recording of "Board": 2 file(s)')
    # The small one is uploaded in the thread; the big one is over the limit, kept.
    [(room_id, posted, root)] = room.files
    assert (room_id, posted.size, root) == ("!room:x", 1000, "$notice3")
    assert "upload limit (2.0 kB), so kept on the bridge's server" in texts[3]
    assert "-1.webm (5.0 kB)" in texts[3]
    stored = await setup.world.storage.capture_files.unposted()
    assert stored == []
    with pytest.raises(CaptureError, match="not being recorded"):
        await setup.recordings.stop(meeting, "@alice:x")


async def test_the_end_stops_the_recording_and_a_failed_upload_is_retried(setup: Setup) -> None:
    meetings, room = setup.world.meetings, setup.room
    room.fail_uploads = True
    room.limit = None
    meeting, _ = await meetings.start("!room:x", "Crisis", "@alice:x")
    await setup.recordings.start(meeting, "@alice:x")
    await meetings.end(meeting, "@alice:x")
    await until(lambda: setup.recorders[0].stopped)
    await until(lambda: any("the meeting ended" in text for _, text in room.notices))
    await asyncio.sleep(0.1)
    assert len(await setup.world.storage.capture_files.unposted()) == 2  # kept for later
    room.fail_uploads = False
    await setup.recordings.resume()  # as at the next start
    await until(lambda: len(room.files) == 2)
    assert await setup.world.storage.capture_files.unposted() == []


async def test_a_restart_resumes_the_recording_in_new_files(setup: Setup) -> None:
    meetings = setup.world.meetings
    meeting, _ = await meetings.start("!room:x", "Long", "@alice:x")
    await setup.recordings.start(meeting, "@alice:x")
    await setup.recordings.close()  # the shutdown: files finished and stored
    assert setup.recorders[0].stopped
    assert len(await setup.world.storage.capture_files.unposted()) == 2

    restarted = setup.world.make()
    await restarted.load()
    again = setup.make(restarted)
    await again.resume()
    live = restarted.live(meeting.id)
    assert live is not None and live.recording and again.running(meeting.id)
    assert setup.recorders[1].folder != setup.recorders[0].folder
    assert any("after a restart" in text for _, text in setup.room.notices)
    await until(lambda: len(setup.room.files) == 1)  # the earlier part, posted

    # A bridge that may no longer record says so and stops telling people it does.
    third = setup.make(setup.world.make(), enabled=False)
    await third.meetings.load()
    await third.resume()
    assert not third.meetings.live(meeting.id).recording  # type: ignore[union-attr]
    with pytest.raises(CaptureError, match="turned off"):
        await third.start(third.meetings.live(meeting.id), "@alice:x")  # type: ignore[arg-type]


async def test_retention_deletes_files_and_messages_and_says_what_is_left(setup: Setup) -> None:
    meetings, room = setup.world.meetings, setup.room
    room.limit = None
    meeting, _ = await meetings.start("!room:x", "Old", "@alice:x")
    await setup.recordings.start(meeting, "@alice:x")
    await setup.recordings.stop(meeting, "@alice:x")
    await until(lambda: len(room.files) == 2)
    files = [Path(f.path) for _, f, _ in room.files]
    assert all(path.exists() for path in files)

    retention = Retention(
        setup.world.storage.capture_files,
        room,
        setup.world.clock,
        days={"recording": 30, "transcript": 0},
    )
    assert (await retention.run()).deleted == 0  # not old enough
    setup.world.clock.advance(31 * DAY_MS / 1000)
    report = await retention.run()
    assert report.deleted == 2
    assert not any(path.exists() for path in files)
    assert not (setup.path / meeting.id).exists()  # empty folders go too
    assert sorted(room.redacted) == ["$file1", "$file2"]
    assert len(report.left) == 2 and "mxc://x/" in report.left[0]  # uploads the bot may not delete
    assert (await retention.run()).deleted == 0  # done once


async def test_retention_deletes_uploads_when_the_bot_may(setup: Setup) -> None:
    meetings, room = setup.world.meetings, setup.room
    room.limit, room.may_delete_media = None, True
    meeting, _ = await meetings.start("!room:x", "Old", "@alice:x")
    await setup.recordings.start(meeting, "@alice:x")
    await setup.recordings.stop(meeting, "@alice:x")
    await until(lambda: len(room.files) == 2)
    retention = Retention(
        setup.world.storage.capture_files,
        room,
        setup.world.clock,
        days={"recording": 1, "transcript": 1},
    )
    setup.world.clock.advance(2 * DAY_MS / 1000)
    report = await retention.run()
    assert (report.deleted, report.left) == (2, [])
    assert sorted(room.deleted) == sorted(f"mxc://x/{f.name}" for _, f, _ in room.files)


async def test_end_to_end_encrypted_media_is_left_out(setup: Setup) -> None:
    """Element Call's encrypted media would be ciphertext in the files: not recorded."""
    meetings = setup.world.meetings
    meeting, _ = await meetings.start("!room:x", "Mixed", "@alice:x")
    alice = await meetings.join(meeting, identity("alice"), "Alice", RecordingAttendee())
    bob = await meetings.join(meeting, identity("bob"), "Bob", RecordingAttendee())
    await meetings.update(bob, encrypted=True)
    await setup.recordings.start(meeting, "@alice:x")
    [sink] = setup.world.media.routers[-1].sinks
    for who in (alice, bob):
        track = TrackPublished(who.id, f"{who.id}/camera", "video", "camera", "video/VP8")
        sink.track_started(track)
    assert setup.recorders[0].tracks == [f"{alice.id}/camera"]
