"""What the meeting domain keeps in the database, as interfaces :mod:`bridge.db`
implements (so the domain loads no database driver)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Protocol

from .meeting import AttendeeSummary, Meeting, Stay

#: What a meeting's capture produced.
CaptureKind = Literal["recording", "transcript"]


@dataclass
class CaptureFile:
    """One file a meeting's capture produced (a recording, a transcript), kept until
    retention deletes it. Times are milliseconds since the epoch."""

    id: str
    meeting_id: str
    room_id: str
    kind: CaptureKind
    #: The file's name as people see it.
    name: str
    mime_type: str
    size: int
    duration_ms: int
    created_at: int
    #: Where it is on this machine (None once deleted from disk, or never kept here).
    path: str | None = None
    #: Its upload in the homeserver's media repository, if uploaded.
    mxc: str | None = None
    #: The room message that links it (None until posted).
    event_id: str | None = None
    deleted_at: int | None = None


class CaptureFileStore(Protocol):
    """The files meetings' captures produced, for posting and retention."""

    async def insert(self, file: CaptureFile) -> None: ...

    async def save(self, file: CaptureFile) -> None: ...

    async def unposted(self) -> list[CaptureFile]:
        """Files not linked in their room yet (and not deleted)."""
        ...

    async def expired(self, kind: CaptureKind, before: int) -> list[CaptureFile]:
        """Files of ``kind`` created before ``before`` and not deleted yet."""
        ...


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

    async def add_remote_time(
        self, meeting_id: str, user_id: str, display_name: str, ms: int
    ) -> None:
        """Add to the time someone behind a trunk (another agency's) spent in a meeting
        this bridge hosts: kept only until :meth:`forget_remote_times`."""
        ...

    async def remote_times(self, meeting_id: str) -> list[AttendeeSummary]: ...

    async def forget_remote_times(self, meeting_id: str) -> None: ...
