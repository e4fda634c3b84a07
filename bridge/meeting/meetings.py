"""All meetings of one bridge: start, end, join, leave, persisted as they change."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from enum import Enum

from ..clock import Clock
from ..db import AttendanceRow, MeetingRow, Storage
from .meeting import (
    AttendeeSummary,
    Meeting,
    MeetingState,
    MeetingSummary,
    Participant,
    new_meeting_id,
)
from .roles import Role


class Change(Enum):
    """What happened to a meeting, as told to listeners."""

    STARTED = "started"
    ENDED = "ended"
    JOINED = "joined"
    LEFT = "left"


MeetingListener = Callable[[Meeting, Change], Awaitable[None]]

log = logging.getLogger("visio.meeting")


class MeetingError(Exception):
    """Something a user asked that the meeting cannot do; the message says why."""


class Meetings:
    """The live meetings of one bridge, kept in memory and in the database.

    Listeners hear about every change (start, end, join, leave) so the Matrix side can
    keep room state in step; they run after the change is stored.
    """

    def __init__(self, storage: Storage, clock: Clock) -> None:
        self.storage = storage
        self.clock = clock
        self._live_by_room: dict[str, Meeting] = {}
        self._live_by_id: dict[str, Meeting] = {}
        self._room_locks: dict[str, asyncio.Lock] = {}
        self.listeners: list[MeetingListener] = []

    async def load(self) -> None:
        """Restore the live meetings after a restart. Nobody is in them yet: media
        sessions do not survive a restart, so open stays are closed now."""
        now = self.clock.now_ms()
        for row in await self.storage.meetings.all_live():
            meeting = _from_row(row)
            await self.storage.attendance.close_all(meeting.id, now)
            self._remember(meeting)
        log.info("Restored %d live meeting(s)", len(self._live_by_id))

    def _lock(self, room_id: str) -> asyncio.Lock:
        return self._room_locks.setdefault(room_id, asyncio.Lock())

    def _remember(self, meeting: Meeting) -> None:
        self._live_by_room[meeting.room_id] = meeting
        self._live_by_id[meeting.id] = meeting

    def _forget(self, meeting: Meeting) -> None:
        self._live_by_room.pop(meeting.room_id, None)
        self._live_by_id.pop(meeting.id, None)

    def live_in_room(self, room_id: str) -> Meeting | None:
        return self._live_by_room.get(room_id)

    def live(self, meeting_id: str) -> Meeting | None:
        return self._live_by_id.get(meeting_id)

    def all_live(self) -> list[Meeting]:
        return list(self._live_by_id.values())

    async def get(self, meeting_id: str) -> Meeting | None:
        """A live meeting, or an ended one from the database."""
        live = self._live_by_id.get(meeting_id)
        if live is not None:
            return live
        row = await self.storage.meetings.get(meeting_id)
        return _from_row(row) if row else None

    async def start(self, room_id: str, title: str, started_by: str) -> tuple[Meeting, bool]:
        """Start the room's meeting; (meeting, False) when one is already live."""
        async with self._lock(room_id):
            existing = self._live_by_room.get(room_id)
            if existing is not None:
                return existing, False
            meeting_id = new_meeting_id()
            meeting = Meeting(
                id=meeting_id,
                room_id=room_id,
                title=title,
                started_by=started_by,
                started_at=self.clock.now_ms(),
                widget_id=f"visio_{meeting_id}",
            )
            await self.storage.meetings.insert(_to_row(meeting))
            self._remember(meeting)
        log.info("Meeting %s started in %s by %s", meeting.id, room_id, started_by)
        await self._notify(meeting, Change.STARTED)
        return meeting, True

    async def end(self, meeting: Meeting, ended_by: str) -> MeetingSummary:
        """End a live meeting: everyone leaves, the row is closed, a summary is made."""
        async with self._lock(meeting.room_id):
            if not meeting.is_live:
                raise MeetingError("This meeting has already ended.")
            now = self.clock.now_ms()
            meeting.state = MeetingState.ENDED
            meeting.ended_at = now
            meeting.ended_by = ended_by
            meeting.participants.clear()
            await self.storage.attendance.close_all(meeting.id, now)
            await self.storage.meetings.save(_to_row(meeting))
            self._forget(meeting)
        log.info("Meeting %s ended by %s", meeting.id, ended_by)
        await self._notify(meeting, Change.ENDED)
        return await self.summary(meeting)

    async def summary(self, meeting: Meeting) -> MeetingSummary:
        now = self.clock.now_ms()
        totals: dict[str, AttendeeSummary] = {}
        for stay in await self.storage.attendance.for_meeting(meeting.id):
            stay_ms = (stay.left_at if stay.left_at is not None else now) - stay.joined_at
            before = totals.get(stay.user_id)
            totals[stay.user_id] = AttendeeSummary(
                user_id=stay.user_id,
                display_name=stay.display_name,
                total_ms=(before.total_ms if before else 0) + max(0, stay_ms),
            )
        return MeetingSummary(
            meeting_id=meeting.id,
            title=meeting.title,
            duration_ms=meeting.duration_ms(now),
            attendees=list(totals.values()),
        )

    async def join(
        self,
        meeting: Meeting,
        user_id: str,
        display_name: str,
        role: Role,
        avatar_url: str | None = None,
    ) -> Participant:
        """Someone enters a live meeting; a second join of the same user replaces the
        first (a reconnect), keeping one open stay."""
        if not meeting.is_live:
            raise MeetingError("This meeting has ended.")
        now = self.clock.now_ms()
        participant = Participant(
            user_id=user_id,
            display_name=display_name,
            role=role,
            joined_at=now,
            avatar_url=avatar_url,
        )
        if user_id in meeting.participants:
            await self.storage.attendance.record_leave(meeting.id, user_id, now)
        meeting.participants[user_id] = participant
        await self.storage.attendance.record_join(
            AttendanceRow(
                meeting_id=meeting.id, user_id=user_id, display_name=display_name, joined_at=now
            )
        )
        await self._notify(meeting, Change.JOINED)
        return participant

    async def leave(self, meeting: Meeting, user_id: str) -> None:
        if meeting.participants.pop(user_id, None) is None:
            return
        await self.storage.attendance.record_leave(meeting.id, user_id, self.clock.now_ms())
        await self._notify(meeting, Change.LEFT)

    async def _notify(self, meeting: Meeting, change: Change) -> None:
        for listener in self.listeners:
            try:
                await listener(meeting, change)
            except Exception:
                log.exception("Meeting listener failed for %s", meeting.id)


def _from_row(row: MeetingRow) -> Meeting:
    return Meeting(
        id=row.id,
        room_id=row.room_id,
        title=row.title,
        started_by=row.started_by,
        started_at=row.started_at,
        widget_id=row.widget_id,
        state=MeetingState(row.state),
        ended_at=row.ended_at,
        ended_by=row.ended_by,
    )


def _to_row(meeting: Meeting) -> MeetingRow:
    return MeetingRow(
        id=meeting.id,
        room_id=meeting.room_id,
        title=meeting.title,
        state=meeting.state.value,
        started_by=meeting.started_by,
        started_at=meeting.started_at,
        widget_id=meeting.widget_id,
        ended_at=meeting.ended_at,
        ended_by=meeting.ended_by,
    )
