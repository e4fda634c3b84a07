"""The attendance table: who was in which meeting, from when to when."""

from __future__ import annotations

from dataclasses import dataclass

from mautrix.util.async_db import Database


@dataclass
class AttendanceRow:
    """One stay of one user in one meeting. Times are milliseconds since the epoch."""

    meeting_id: str
    user_id: str
    display_name: str
    joined_at: int
    left_at: int | None = None


class AttendanceTable:
    """Queries on the attendance table."""

    def __init__(self, db: Database) -> None:
        self.db = db

    async def record_join(self, row: AttendanceRow) -> None:
        await self.db.execute(
            "INSERT INTO attendance (meeting_id, user_id, display_name, joined_at, left_at)"
            " VALUES ($1, $2, $3, $4, $5)",
            row.meeting_id,
            row.user_id,
            row.display_name,
            row.joined_at,
            row.left_at,
        )

    async def record_leave(self, meeting_id: str, user_id: str, left_at: int) -> None:
        """Close the user's open stays in the meeting."""
        await self.db.execute(
            "UPDATE attendance SET left_at=$3"
            " WHERE meeting_id=$1 AND user_id=$2 AND left_at IS NULL",
            meeting_id,
            user_id,
            left_at,
        )

    async def close_all(self, meeting_id: str, left_at: int) -> None:
        await self.db.execute(
            "UPDATE attendance SET left_at=$2 WHERE meeting_id=$1 AND left_at IS NULL",
            meeting_id,
            left_at,
        )

    async def for_meeting(self, meeting_id: str) -> list[AttendanceRow]:
        rows = await self.db.fetch(
            "SELECT meeting_id, user_id, display_name, joined_at, left_at FROM attendance"
            " WHERE meeting_id=$1 ORDER BY joined_at, user_id",
            meeting_id,
        )
        return [
            AttendanceRow(
                meeting_id=row["meeting_id"],
                user_id=row["user_id"],
                display_name=row["display_name"],
                joined_at=row["joined_at"],
                left_at=row["left_at"],
            )
            for row in rows
        ]
