"""Bot commands: what each one needs and does. The parser is in parser.py.

Commands get what they use in a :class:`CommandContext`: the meetings, the room's
Matrix side (:class:`CommandRooms`, :class:`MeetingPresence`), the link signer and the
clock. Unit tests hand them recording stand-ins; the bridge hands them the real parts.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from html import escape
from typing import Protocol

from ...auth.links import PersonalLinks
from ...capture.recordings import Recordings
from ...capture.transcripts import Transcriptions
from ...clock import Clock
from ...meeting.meeting import Meeting
from ...meeting.meetings import Meetings
from ...meeting.roles import Level, Role


class CommandUsageError(Exception):
    """Bad arguments; the message says what was expected."""


class CommandRooms(Protocol):
    """What commands do and ask in Matrix rooms (see :class:`bridge.matrix.rooms.MatrixRooms`)."""

    async def send_notice(
        self, room_id: str, text: str, html: str | None = None, reply_to: str | None = None
    ) -> str:
        """Returns the notice's event id."""
        ...

    async def room_name(self, room_id: str) -> str | None: ...

    async def display_name(self, room_id: str, user_id: str) -> str | None: ...

    async def invite_levels(self, room_id: str) -> tuple[int, int]:
        """(the power the room asks to invite, the bot's power)."""
        ...

    async def is_joined(self, room_id: str, user_id: str) -> bool: ...

    async def invite(self, room_id: str, user_id: str) -> None:
        """Raises :class:`bridge.matrix.rooms.MatrixActionError` when refused."""
        ...

    async def direct_room(self, user_id: str) -> str: ...


class MeetingPresence(Protocol):
    """How a meeting shows in its room (see :class:`bridge.matrix.meeting_room.MeetingRoom`)."""

    def join_url(self, meeting: Meeting) -> str: ...

    async def publish(self, meeting: Meeting) -> list[str]:
        """Show a started meeting; returns the event types the bot lacked power for."""
        ...

    async def retract(self, meeting: Meeting) -> None: ...


class RefusalLimit:
    """Answers a refusal to each user at most once per interval, so a user the bridge
    does not serve cannot make the bot speak once per message they send."""

    def __init__(self, interval_s: float = 600.0, max_users: int = 10_000) -> None:
        self.interval_s = interval_s
        self.max_users = max_users
        self._last: dict[str, float] = {}

    def allow(self, user_id: str, now_s: float) -> bool:
        last = self._last.get(user_id)
        if last is not None and now_s - last < self.interval_s:
            return False
        if len(self._last) >= self.max_users:
            self._last = {u: t for u, t in self._last.items() if now_s - t < self.interval_s}
            if len(self._last) >= self.max_users:
                return False
        self._last[user_id] = now_s
        return True


@dataclass
class CommandContext:
    """Everything commands use."""

    meetings: Meetings
    rooms: CommandRooms
    meeting_room: MeetingPresence
    links: PersonalLinks
    clock: Clock
    prefix: str
    bot_mxid: str
    refusals: RefusalLimit = field(default_factory=RefusalLimit)
    #: Tells the bridge that hosts a meeting (another agency's) that a moderator here
    #: ended it; False when it could not be told.
    end_elsewhere: Callable[[Meeting, str], Awaitable[bool]] | None = None
    #: Starts and stops recordings (None: this bridge does not record).
    recordings: Recordings | None = None
    #: Starts and stops transcription (None: this bridge does not transcribe).
    transcriptions: Transcriptions | None = None


@dataclass
class CommandEvent:
    """One command as received: who sent it where, and what they may do there."""

    ctx: CommandContext
    room_id: str
    sender: str
    event_id: str
    name: str
    args: str
    level: Level
    role: Role | None
    room_power: int
    is_direct: bool

    @property
    def prefix(self) -> str:
        return self.ctx.prefix

    def example(self, usage: str) -> str:
        """How to type a command here: the prefix is optional only in a direct chat."""
        return usage if self.is_direct else f"{self.prefix} {usage}"

    async def reply(self, text: str, html: str | None = None) -> str:
        return await self.ctx.rooms.send_notice(self.room_id, text, html, reply_to=self.event_id)


Handler = Callable[[CommandEvent], Awaitable[None]]


@dataclass(frozen=True)
class Command:
    """A command: its usage line, who may use it, and what it does."""

    usage: str
    summary: str
    min_level: Level
    handler: Handler

    @property
    def name(self) -> str:
        return self.usage.split(" ", 1)[0]


def html_list(lines: list[str]) -> str:
    return "<ul>" + "".join(f"<li>{line}</li>" for line in lines) + "</ul>"


def code(text: str) -> str:
    return f"<code>{escape(text)}</code>"
