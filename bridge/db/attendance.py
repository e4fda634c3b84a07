"""The attendance table: who was in which meeting, from when to when."""

from __future__ import annotations

from mautrix.util.async_db import Database

from ..meeting.meeting import AttendeeSummary, Stay


class AttendanceTable:
    """Queries on the attendance table (implements
    :class:`bridge.meeting.store.AttendanceStore`)."""

    def __init__(self, db: Database) -> None:
        self.db = db

    async def record_join(self, stay: Stay) -> None:
        await self.db.execute(
            "INSERT INTO attendance (meeting_id, user_id, display_name, joined_at, left_at)"
            " VALUES ($1, $2, $3, $4, $5)",
            stay.meeting_id,
            stay.user_id,
            stay.display_name,
            stay.joined_at,
            stay.left_at,
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

    async def for_meeting(self, meeting_id: str) -> list[Stay]:
        rows = await self.db.fetch(
            "SELECT meeting_id, user_id, display_name, joined_at, left_at FROM attendance"
            " WHERE meeting_id=$1 ORDER BY joined_at, user_id",
            meeting_id,
        )
        return [
            Stay(
                meeting_id=row["meeting_id"],
                user_id=row["user_id"],
                display_name=row["display_name"],
                joined_at=row["joined_at"],
                left_at=row["left_at"],
            )
            for row in rows
        ]

    # People behind trunks: their time only, until the meeting ends.

    async def add_remote_time(
        self, meeting_id: str, user_id: str, display_name: str, ms: int
    ) -> None:
        await self.db.execute(
            "INSERT INTO remote_time (meeting_id, user_id, display_name, total_ms)"
            " VALUES ($1, $2, $3, $4) ON CONFLICT (meeting_id, user_id) DO UPDATE"
            " SET total_ms=remote_time.total_ms + excluded.total_ms,"
            " display_name=excluded.display_name",
            meeting_id,
            user_id,
            display_name,
            ms,
        )

    async def remote_times(self, meeting_id: str) -> list[AttendeeSummary]:
        rows = await self.db.fetch(
            "SELECT user_id, display_name, total_ms FROM remote_time WHERE meeting_id=$1"
            " ORDER BY user_id",
            meeting_id,
        )
        return [AttendeeSummary(r["user_id"], r["display_name"], r["total_ms"]) for r in rows]

    async def forget_remote_times(self, meeting_id: str) -> None:
        await self.db.execute("DELETE FROM remote_time WHERE meeting_id=$1", meeting_id)
