"""What the meeting domain keeps in the database, as interfaces :mod:`bridge.db`
implements (so the domain loads no database driver)."""

from __future__ import annotations

from typing import Protocol

from .meeting import Meeting, Stay


class MeetingStore(Protocol):
    """Meetings, live and ended (the participants are not stored)."""

    async def insert(self, meeting: Meeting) -> None: ...

    async def save(self, meeting: Meeting) -> None: ...

    async def get(self, meeting_id: str) -> Meeting | None: ...

    async def all_live(self) -> list[Meeting]: ...


class AttendanceStore(Protocol):
    """Who was in which meeting, from when to when."""

    async def record_join(self, stay: Stay) -> None: ...

    async def record_leave(self, meeting_id: str, user_id: str, left_at: int) -> None:
        """Close the user's open stays in the meeting."""
        ...

    async def close_all(self, meeting_id: str, left_at: int) -> None: ...

    async def for_meeting(self, meeting_id: str) -> list[Stay]: ...
