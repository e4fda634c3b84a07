"""Bot commands: what each one needs and does. The parser is in parser.py."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from html import escape
from typing import TYPE_CHECKING

from mautrix.types import (
    EventID,
    Format,
    InReplyTo,
    MessageType,
    RelatesTo,
    RoomID,
    TextMessageEventContent,
    UserID,
)

from ...meeting.roles import Level, Role

if TYPE_CHECKING:
    from ...context import Bridge


class CommandUsageError(Exception):
    """Bad arguments; the message says what was expected."""


@dataclass
class CommandEvent:
    """One command as received: who sent it where, and what they may do there."""

    bridge: Bridge
    room_id: RoomID
    sender: UserID
    event_id: EventID
    name: str
    args: str
    level: Level
    role: Role | None
    room_power: int
    is_direct: bool

    @property
    def prefix(self) -> str:
        return str(self.bridge.config["bridge.command_prefix"])

    def example(self, usage: str) -> str:
        """How to type a command here: the prefix is optional only in a direct chat."""
        return usage if self.is_direct else f"{self.prefix} {usage}"

    async def reply(self, text: str, html: str | None = None) -> None:
        content = TextMessageEventContent(msgtype=MessageType.NOTICE, body=text)
        if html is not None:
            content.format = Format.HTML
            content.formatted_body = html
        content.relates_to = RelatesTo(in_reply_to=InReplyTo(event_id=self.event_id))
        await self.bridge.bot.send_message(self.room_id, content)


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
