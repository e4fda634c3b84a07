"""Migrations and tables, on SQLite and on the real PostgreSQL."""

from __future__ import annotations

import pytest
from mautrix.util.async_db import Database

from bridge.db import Storage, upgrade_table
from bridge.meeting.meeting import Meeting, MeetingState, Stay
from bridge.meeting.store import CaptureFile


def meeting_row(meeting_id: str, room_id: str, title: str, started_at: int) -> Meeting:
    return Meeting(meeting_id, room_id, title, "@a:x", started_at, f"visio_{meeting_id}")


async def test_migrations_create_the_tables_and_are_idempotent(database_url: str) -> None:
    for _ in range(2):  # a second start finds the schema current and changes nothing
        db = Database.create(database_url, upgrade_table=upgrade_table)
        await db.start()
        for table in (
            "meeting",
            "attendance",
            "handled_transaction",
            "direct_room",
            "inbox",
            "personal_link",
            "peer_door",
            "capture_file",
        ):
            assert await db.table_exists(table)
        assert await db.fetchval("SELECT version FROM version") == len(upgrade_table.upgrades)
        await db.stop()


async def test_one_live_meeting_per_room_is_enforced_by_the_database(storage: Storage) -> None:
    row = meeting_row("m1", "!room", "Budget", 1)
    await storage.meetings.insert(row)
    with pytest.raises(Exception):  # noqa: B017 - asyncpg and sqlite3 raise different types
        await storage.meetings.insert(meeting_row("m2", "!room", "Other", 2))
    row.state, row.ended_at, row.ended_by = MeetingState.ENDED, 5, "@a:x"
    await storage.meetings.save(row)
    await storage.meetings.insert(meeting_row("m3", "!room", "Next", 6))
    assert (await storage.meetings.get_live_in_room("!room")).id == "m3"  # type: ignore[union-attr]
    assert (await storage.meetings.get("m1")) == row


async def test_meetings_hosted_elsewhere_keep_their_host(storage: Storage) -> None:
    row = meeting_row("m1", "!room", "Inter-agency", 1)
    row.host = "@visio:agency-b.test"
    await storage.meetings.insert(row)
    assert (await storage.meetings.get("m1")) == row
    assert [m.host for m in await storage.meetings.all_live()] == ["@visio:agency-b.test"]


async def test_peer_doors_are_kept_per_room_and_bot(storage: Storage) -> None:
    doors = storage.peer_doors
    assert await doors.get("!r", "@visio:b") is None
    await doors.set("!r", "@visio:b", "https://visio.b/one")
    await doors.set("!r", "@visio:b", "https://visio.b/two")
    await doors.set("!s", "@visio:b", "https://visio.b/other")
    assert await doors.get("!r", "@visio:b") == "https://visio.b/two"
    await doors.forget("!r", "@visio:b")
    assert await doors.get("!r", "@visio:b") is None
    assert await doors.get("!s", "@visio:b") == "https://visio.b/other"


async def test_transactions_are_recorded_once_per_digest(storage: Storage) -> None:
    table = storage.transactions
    assert await table.mark_handled("1", "digest-a", 1000)
    assert not await table.mark_handled("1", "digest-a", 2000)
    assert await table.is_handled("1", "digest-a")
    # A reset homeserver reusing txn id 1 with other events is a new transaction.
    assert await table.mark_handled("1", "digest-b", 3000)
    assert not await table.is_handled("1", "digest-a")
    await table.prune(now_ms=3000 + 8 * 24 * 3600 * 1000)
    assert not await table.is_handled("1", "digest-b")


async def test_attendance_stays(storage: Storage) -> None:
    await storage.meetings.insert(meeting_row("m1", "!r", "T", 0))
    await storage.attendance.record_join(Stay("m1", "@a:x", "Alice", 100))
    await storage.attendance.record_join(Stay("m1", "@b:x", "Bob", 200))
    await storage.attendance.record_leave("m1", "@a:x", 300)
    await storage.attendance.close_all("m1", 400)
    rows = await storage.attendance.for_meeting("m1")
    assert [(r.user_id, r.joined_at, r.left_at) for r in rows] == [
        ("@a:x", 100, 300),
        ("@b:x", 200, 400),
    ]


async def test_time_of_people_behind_trunks_adds_up_until_forgotten(storage: Storage) -> None:
    attendance = storage.attendance
    await attendance.add_remote_time("m1", "@b:y", "Bob", 1000)
    await attendance.add_remote_time("m1", "@b:y", "Bobby", 500)
    await attendance.add_remote_time("m1", "@c:y", "Carol", 200)
    await attendance.add_remote_time("m2", "@b:y", "Bob", 7)
    assert [
        (t.user_id, t.display_name, t.total_ms) for t in await attendance.remote_times("m1")
    ] == [
        ("@b:y", "Bobby", 1500),
        ("@c:y", "Carol", 200),
    ]
    await attendance.forget_remote_times("m1")
    assert await attendance.remote_times("m1") == []
    assert [t.total_ms for t in await attendance.remote_times("m2")] == [7]


async def test_capture_flags_and_files_are_kept(storage: Storage) -> None:
    meeting = meeting_row("m1", "!r:x", "Recorded", 1000)
    await storage.meetings.insert(meeting)
    meeting.recording = True
    await storage.meetings.save(meeting)
    stored = await storage.meetings.get("m1")
    assert stored is not None and (stored.recording, stored.transcribing) == (True, False)

    def file(file_id: str, kind: str, created_at: int) -> CaptureFile:
        return CaptureFile(
            file_id,
            "m1",
            "!r:x",
            kind,
            f"{file_id}.webm",
            "video/webm",
            10,
            500,
            created_at,  # type: ignore[arg-type]
        )

    for made in (
        file("a", "recording", 100),
        file("b", "transcript", 200),
        file("c", "recording", 300),
    ):
        await storage.capture_files.insert(made)
    assert [f.id for f in await storage.capture_files.unposted()] == ["a", "b", "c"]
    posted = file("a", "recording", 100)
    posted.event_id, posted.mxc = "$e", "mxc://x/a"
    await storage.capture_files.save(posted)
    assert [f.id for f in await storage.capture_files.unposted()] == ["b", "c"]
    assert [f.id for f in await storage.capture_files.expired("recording", 301)] == ["a", "c"]
    assert [f.id for f in await storage.capture_files.expired("recording", 300)] == ["a"]
    posted.deleted_at = 400
    await storage.capture_files.save(posted)
    assert await storage.capture_files.expired("recording", 200) == []
