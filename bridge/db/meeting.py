"""The meeting table: one row per meeting, live or ended."""

from __future__ import annotations

from typing import Any

from mautrix.util.async_db import Database

from ..meeting.meeting import Meeting, MeetingState

_COLUMNS = (
    "id, room_id, title, state, started_by, started_at, ended_at, ended_by, widget_id, host,"
    " recording, transcribing, notice_event"
)


def _from_row(row: Any) -> Meeting:
    return Meeting(
        id=row["id"],
        room_id=row["room_id"],
        title=row["title"],
        state=MeetingState(row["state"]),
        started_by=row["started_by"],
        started_at=row["started_at"],
        widget_id=row["widget_id"],
        ended_at=row["ended_at"],
        ended_by=row["ended_by"],
        host=row["host"],
        recording=bool(row["recording"]),
        transcribing=bool(row["transcribing"]),
        notice_event=row["notice_event"],
    )


class MeetingTable:
    """Queries on the meeting table (implements :class:`bridge.meeting.store.MeetingStore`).
    Times are milliseconds since the epoch."""

    def __init__(self, db: Database) -> None:
        self.db = db

    async def insert(self, meeting: Meeting) -> None:
        await self.db.execute(
            f"INSERT INTO meeting ({_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10,"
            " $11, $12, $13)",
            meeting.id,
            meeting.room_id,
            meeting.title,
            meeting.state.value,
            meeting.started_by,
            meeting.started_at,
            meeting.ended_at,
            meeting.ended_by,
            meeting.widget_id,
            meeting.host,
            meeting.recording,
            meeting.transcribing,
            meeting.notice_event,
        )

    async def save(self, meeting: Meeting) -> None:
        await self.db.execute(
            "UPDATE meeting SET title=$2, state=$3, ended_at=$4, ended_by=$5, room_id=$6,"
            " recording=$7, transcribing=$8, notice_event=$9 WHERE id=$1",
            meeting.id,
            meeting.title,
            meeting.state.value,
            meeting.ended_at,
            meeting.ended_by,
            meeting.room_id,
            meeting.recording,
            meeting.transcribing,
            meeting.notice_event,
        )

    async def get(self, meeting_id: str) -> Meeting | None:
        row = await self.db.fetchrow(f"SELECT {_COLUMNS} FROM meeting WHERE id=$1", meeting_id)
        return _from_row(row) if row else None

    async def get_live_in_room(self, room_id: str) -> Meeting | None:
        row = await self.db.fetchrow(
            f"SELECT {_COLUMNS} FROM meeting WHERE room_id=$1 AND state='live'", room_id
        )
        return _from_row(row) if row else None

    async def all_live(self) -> list[Meeting]:
        rows = await self.db.fetch(f"SELECT {_COLUMNS} FROM meeting WHERE state='live'")
        return [_from_row(row) for row in rows]
