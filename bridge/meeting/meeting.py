"""A meeting and the people in it."""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING

from .roles import Role

if TYPE_CHECKING:
    from .live import Participant

_ID_ALPHABET = "abcdefghijkmnpqrstuvwxyz23456789"


def new_meeting_id() -> str:
    """A short, unguessable id that is also a valid Matrix localpart piece."""
    return "".join(secrets.choice(_ID_ALPHABET) for _ in range(12))


class MeetingState(StrEnum):
    LIVE = "live"
    ENDED = "ended"


@dataclass
class Stay:
    """One stay of one person in one meeting (attendance). Times are milliseconds since
    the epoch; ``left_at`` is None while they are in."""

    meeting_id: str
    user_id: str
    display_name: str
    joined_at: int
    left_at: int | None = None


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
    #: The bridge bot that hosts this meeting when another agency's bridge does (the
    #: meeting is then this bridge's side of it: this bridge's people join here, and a
    #: trunk links them to the host); None when this bridge hosts it.
    host: str | None = None
    #: Whether this bridge records the meeting now (everyone is told, on every door).
    recording: bool = False
    #: Whether this bridge transcribes the meeting now (everyone is told, on every door).
    transcribing: bool = False
    #: The room message that announced the meeting (the transcript goes in its thread);
    #: None when there was none (a call started from Element, another bridge's meeting).
    notice_event: str | None = None
    #: What other agencies' bridges in the meeting capture, as each trunk last said:
    #: (recording, transcribing) by trunk id. Not stored: a trunk says it again when it
    #: comes back.
    capture_elsewhere: dict[str, tuple[bool, bool]] = field(default_factory=dict)
    #: Why live captions are limited now (the transcriber cannot keep up with everyone
    #: who speaks), in plain words; None when they are not. Not stored.
    captions_limited: str | None = None
    #: Who is in the live meeting right now, by participant id.
    participants: dict[str, Participant] = field(default_factory=dict)

    @property
    def recorded(self) -> bool:
        """Whether any bridge in the meeting records it: what people are told."""
        return self.capture_except(None)[0]

    @property
    def transcribed(self) -> bool:
        """Whether any bridge in the meeting transcribes it: what people are told."""
        return self.capture_except(None)[1]

    def capture_except(self, trunk_id: str | None) -> tuple[bool, bool]:
        """(recording, transcribing) anywhere but behind ``trunk_id``: what that trunk's
        other side must be told, besides what it captures itself."""
        recording, transcribing = self.recording, self.transcribing
        for other, (rec, trans) in self.capture_elsewhere.items():
            if other != trunk_id:
                recording, transcribing = recording or rec, transcribing or trans
        return recording, transcribing

    @property
    def is_live(self) -> bool:
        return self.state == MeetingState.LIVE

    @property
    def hosted_elsewhere(self) -> bool:
        """Another agency's bridge hosts it; this is this bridge's side of it."""
        return self.host is not None

    def participant_of(self, user_id: str) -> Participant | None:
        """The participant a user is in this meeting as, if they are in it."""
        for participant in self.participants.values():
            if participant.user_id == user_id:
                return participant
        return None

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
