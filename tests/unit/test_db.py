"""Migrations and tables, on SQLite and on the real PostgreSQL."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from mautrix.util.async_db import Database

from bridge.clock import ManualClock
from bridge.db import AttendanceRow, MeetingRow, Storage, upgrade_table
from bridge.meeting.meetings import Change, MeetingError, Meetings
from bridge.meeting.roles import Role


@pytest.fixture
async def storage(database_url: str) -> AsyncIterator[Storage]:
    db = Database.create(database_url, upgrade_table=upgrade_table)
    await db.start()
    try:
        yield Storage(db)
    finally:
        await db.stop()


async def test_migrations_create_the_tables_and_are_idempotent(database_url: str) -> None:
    for _ in range(2):  # a second start finds the schema current and changes nothing
        db = Database.create(database_url, upgrade_table=upgrade_table)
        await db.start()
        for table in ("meeting", "attendance", "handled_transaction", "direct_room"):
            assert await db.table_exists(table)
        assert await db.fetchval("SELECT version FROM version") == len(upgrade_table.upgrades)
        await db.stop()


async def test_one_live_meeting_per_room_is_enforced_by_the_database(storage: Storage) -> None:
    row = MeetingRow("m1", "!room", "Budget", "live", "@a:x", 1, "visio_m1")
    await storage.meetings.insert(row)
    with pytest.raises(Exception):  # noqa: B017 - asyncpg and sqlite3 raise different types
        await storage.meetings.insert(
            MeetingRow("m2", "!room", "Other", "live", "@a:x", 2, "visio_m2")
        )
    row.state, row.ended_at, row.ended_by = "ended", 5, "@a:x"
    await storage.meetings.save(row)
    await storage.meetings.insert(MeetingRow("m3", "!room", "Next", "live", "@a:x", 6, "w"))
    assert (await storage.meetings.get_live_in_room("!room")).id == "m3"  # type: ignore[union-attr]
    assert (await storage.meetings.get("m1")) == row


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
    await storage.meetings.insert(MeetingRow("m1", "!r", "T", "live", "@a:x", 0, "w"))
    await storage.attendance.record_join(AttendanceRow("m1", "@a:x", "Alice", 100))
    await storage.attendance.record_join(AttendanceRow("m1", "@b:x", "Bob", 200))
    await storage.attendance.record_leave("m1", "@a:x", 300)
    await storage.attendance.close_all("m1", 400)
    rows = await storage.attendance.for_meeting("m1")
    assert [(r.user_id, r.joined_at, r.left_at) for r in rows] == [
        ("@a:x", 100, 300),
        ("@b:x", 200, 400),
    ]


async def test_meetings_lifecycle_survives_a_restart(storage: Storage) -> None:
    clock = ManualClock()
    meetings = Meetings(storage, clock)
    changes: list[tuple[str, Change]] = []

    async def listen(meeting: object, change: Change) -> None:
        changes.append((meeting.id, change))  # type: ignore[attr-defined]

    meetings.listeners.append(listen)
    meeting, created = await meetings.start("!room", "Budget review", "@alice:x")
    assert created
    again, created = await meetings.start("!room", "Other", "@bob:x")
    assert not created and again is meeting
    await meetings.join(meeting, "@alice:x", "Alice", Role.MODERATOR)
    clock.advance(60)
    await meetings.join(meeting, "@bob:x", "Bob", Role.PARTICIPANT)
    clock.advance(120)
    await meetings.leave(meeting, "@bob:x")

    # A restart: a new Meetings over the same database knows the live meeting.
    restarted = Meetings(storage, clock)
    await restarted.load()
    restored = restarted.live_in_room("!room")
    assert restored is not None and restored.id == meeting.id
    assert restored.title == "Budget review" and restored.participants == {}

    clock.advance(60)
    summary = await restarted.end(restored, "@alice:x")
    assert summary.duration_ms == 240_000
    totals = {a.user_id: a.total_ms for a in summary.attendees}
    assert totals == {"@alice:x": 180_000, "@bob:x": 120_000}
    assert restarted.live_in_room("!room") is None
    with pytest.raises(MeetingError):
        await restarted.end(restored, "@alice:x")
    ended = await restarted.get(meeting.id)
    assert ended is not None and not ended.is_live and ended.ended_by == "@alice:x"
    assert [c for _, c in changes] == [Change.STARTED, Change.JOINED, Change.JOINED, Change.LEFT]


async def test_only_moderators_and_the_starter_may_end(storage: Storage) -> None:
    meetings = Meetings(storage, ManualClock())
    meeting, _ = await meetings.start("!room", "T", "@alice:x")
    assert meeting.may_end("@alice:x", Role.PARTICIPANT)
    assert meeting.may_end("@mod:x", Role.MODERATOR)
    assert not meeting.may_end("@bob:x", Role.PARTICIPANT)
    assert not meeting.may_end("@alice:x", None)
