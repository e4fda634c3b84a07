"""The meeting table: one row per meeting, live or ended."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from mautrix.util.async_db import Database

_COLUMNS = "id, room_id, title, state, started_by, started_at, ended_at, ended_by, widget_id"


@dataclass
class MeetingRow:
    """A stored meeting. Times are milliseconds since the epoch."""

    id: str
    room_id: str
    title: str
    state: str
    started_by: str
    started_at: int
    widget_id: str
    ended_at: int | None = None
    ended_by: str | None = None

    @classmethod
    def _from_row(cls, row: Any) -> MeetingRow:
        return cls(
            id=row["id"],
            room_id=row["room_id"],
            title=row["title"],
            state=row["state"],
            started_by=row["started_by"],
            started_at=row["started_at"],
            widget_id=row["widget_id"],
            ended_at=row["ended_at"],
            ended_by=row["ended_by"],
        )


class MeetingTable:
    """Queries on the meeting table."""

    def __init__(self, db: Database) -> None:
        self.db = db

    async def insert(self, row: MeetingRow) -> None:
        await self.db.execute(
            f"INSERT INTO meeting ({_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
            row.id,
            row.room_id,
            row.title,
            row.state,
            row.started_by,
            row.started_at,
            row.ended_at,
            row.ended_by,
            row.widget_id,
        )

    async def save(self, row: MeetingRow) -> None:
        await self.db.execute(
            "UPDATE meeting SET title=$2, state=$3, ended_at=$4, ended_by=$5 WHERE id=$1",
            row.id,
            row.title,
            row.state,
            row.ended_at,
            row.ended_by,
        )

    async def get(self, meeting_id: str) -> MeetingRow | None:
        row = await self.db.fetchrow(f"SELECT {_COLUMNS} FROM meeting WHERE id=$1", meeting_id)
        return MeetingRow._from_row(row) if row else None

    async def get_live_in_room(self, room_id: str) -> MeetingRow | None:
        row = await self.db.fetchrow(
            f"SELECT {_COLUMNS} FROM meeting WHERE room_id=$1 AND state='live'", room_id
        )
        return MeetingRow._from_row(row) if row else None

    async def all_live(self) -> list[MeetingRow]:
        rows = await self.db.fetch(f"SELECT {_COLUMNS} FROM meeting WHERE state='live'")
        return [MeetingRow._from_row(row) for row in rows]
