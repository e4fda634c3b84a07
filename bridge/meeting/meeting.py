"""A meeting and the people in it."""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from enum import StrEnum

from .roles import Role

_ID_ALPHABET = "abcdefghijkmnpqrstuvwxyz23456789"


def new_meeting_id() -> str:
    """A short, unguessable id that is also a valid Matrix localpart piece."""
    return "".join(secrets.choice(_ID_ALPHABET) for _ in range(12))


class MeetingState(StrEnum):
    LIVE = "live"
    ENDED = "ended"


@dataclass
class Participant:
    """Someone in a live meeting right now."""

    user_id: str
    display_name: str
    role: Role
    joined_at: int
    avatar_url: str | None = None
    audio_muted: bool = False
    video_muted: bool = False
    hand_raised: bool = False


@dataclass
class Meeting:
    """One meeting of one room. Times are milliseconds since the epoch."""

    id: str
    room_id: str
    title: str
    started_by: str
    started_at: int
    widget_id: str
    state: MeetingState = MeetingState.LIVE
    ended_at: int | None = None
    ended_by: str | None = None
    participants: dict[str, Participant] = field(default_factory=dict)

    @property
    def is_live(self) -> bool:
        return self.state == MeetingState.LIVE

    def duration_ms(self, now_ms: int) -> int:
        end = self.ended_at if self.ended_at is not None else now_ms
        return max(0, end - self.started_at)

    def may_end(self, user_id: str, role: Role | None) -> bool:
        """Moderators end any meeting; whoever started it may end their own."""
        return role == Role.MODERATOR or (role is not None and user_id == self.started_by)


@dataclass(frozen=True)
class AttendeeSummary:
    """How long one person was in a meeting, over all their stays."""

    user_id: str
    display_name: str
    total_ms: int


@dataclass(frozen=True)
class MeetingSummary:
    """What the room is told when a meeting ends."""

    meeting_id: str
    title: str
    duration_ms: int
    attendees: list[AttendeeSummary]


def format_duration(ms: int) -> str:
    """'1 h 05 min', '12 min', '40 s'."""
    seconds = ms // 1000
    hours, rest = divmod(seconds, 3600)
    minutes, seconds = divmod(rest, 60)
    if hours:
        return f"{hours} h {minutes:02d} min"
    if minutes:
        return f"{minutes} min"
    return f"{seconds} s"
