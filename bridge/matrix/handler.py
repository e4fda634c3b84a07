"""Routing Matrix events: invites, members coming and going, commands."""

from __future__ import annotations

import logging
from typing import Any, cast

from mautrix.appservice import AppService, IntentAPI
from mautrix.appservice.state_store.asyncpg import PgASStateStore
from mautrix.errors import MatrixRequestError
from mautrix.types import (
    Event,
    EventType,
    Membership,
    MemberStateEventContent,
    MessageEvent,
    MessageType,
    RoomID,
    StateEvent,
    TextMessageEventContent,
    UserID,
)

from ..config import Config
from ..meeting.meeting import Meeting
from ..meeting.meetings import Change, Meetings
from ..meeting.roles import Level, Role, meeting_role
from .commands import CommandContext, CommandEvent
from .commands.handlers import run_command
from .commands.parser import CommandSyntaxError, parse_command
from .dispatch import RoomQueues
from .meeting_room import MeetingRoom
from .rooms import MatrixRooms

log = logging.getLogger("visio.matrix")


class MatrixHandler:
    """Receives the appservice's events and acts on them, one room at a time."""

    def __init__(
        self,
        config: Config,
        az: AppService,
        state_store: PgASStateStore,
        queues: RoomQueues,
        meetings: Meetings,
        rooms: MatrixRooms,
        meeting_room: MeetingRoom,
        commands: CommandContext,
    ) -> None:
        self.config = config
        self.az = az
        self.state_store = state_store
        self.queues = queues
        self.meetings = meetings
        self.rooms = rooms
        self.meeting_room = meeting_room
        self.commands = commands
        az.matrix_event_handler(self._enqueue)
        meetings.listeners.append(self._meeting_changed)

    @property
    def bot(self) -> IntentAPI:
        return self.az.intent

    async def start(self) -> None:
        bot = self.bot
        await bot.ensure_registered()
        try:
            await bot.set_displayname(self.config["appservice.bot_displayname"])
        except MatrixRequestError as e:
            log.warning("Could not set the bot's display name: %s", e.message)

    async def stop(self) -> None:
        try:
            await self.queues.drain()
        except TimeoutError:
            log.warning("Stopping with events still queued; the homeserver will not resend them")

    async def _enqueue(self, event: Event) -> None:
        room_id = getattr(event, "room_id", None)
        if not room_id:
            return
        self.queues.submit(room_id, lambda: self.handle_event(event))

    async def handle_event(self, event: Event) -> None:
        if isinstance(event, StateEvent) and event.type == EventType.ROOM_MEMBER:
            await self._handle_member(event)
        elif isinstance(event, MessageEvent) and event.type == EventType.ROOM_MESSAGE:
            await self._handle_message(event)

    # Members -------------------------------------------------------------------------

    async def _handle_member(self, event: StateEvent) -> None:
        membership = cast(MemberStateEventContent, event.content).membership
        target = UserID(event.state_key)
        if membership == Membership.INVITE and target == self.bot.mxid:
            await self._handle_bot_invite(event.room_id, event.sender)
        elif membership == Membership.INVITE and self.config.is_ghost(target):
            await self._decline_ghost_invite(event.room_id, target)
        elif membership in (Membership.LEAVE, Membership.BAN):
            if target == self.bot.mxid:
                await self._bot_removed(event.room_id)
            elif not self.config.is_bridge_user(target):
                await self._leave_if_alone(event.room_id)

    async def _handle_bot_invite(self, room_id: RoomID, inviter: UserID) -> None:
        bot = self.bot
        level = self.config.permission_level(inviter)
        await bot.join_room_by_id(room_id)
        await self.state_store.joined(room_id, bot.mxid)
        if level < Level.USER:
            log.info("Refusing the invite of %s to %s: not allowed", inviter, room_id)
            await self._notice(
                room_id,
                f"Sorry, {inviter} may not use Visio Bridge, so I am leaving. "
                "Ask your administrator for access.",
            )
            await bot.leave_room(room_id, reason="The inviter may not use Visio Bridge")
            return
        members = await bot.get_joined_members(room_id)
        await self.state_store.set_members(
            room_id, cast(dict[UserID, Any], members), only_membership=Membership.JOIN
        )
        prefix = self.config["bridge.command_prefix"]
        await self._notice(
            room_id,
            f"Hello! I run video meetings in this room. Type {prefix} start [title] to start "
            f"one, or {prefix} help for all commands.",
        )

    async def _decline_ghost_invite(self, room_id: RoomID, ghost: UserID) -> None:
        intent = self.bot.user(ghost)
        try:
            await intent.leave_room(room_id, reason="Meeting users join rooms by themselves")
        except MatrixRequestError as e:
            log.debug("Could not decline the invite of %s: %s", ghost, e.message)

    async def _real_members(self, room_id: RoomID) -> list[UserID]:
        members = await self.state_store.get_members(room_id, memberships=(Membership.JOIN,))
        return [user for user in members if not self.config.is_bridge_user(user)]

    async def _leave_if_alone(self, room_id: RoomID) -> None:
        if not await self.state_store.is_joined(room_id, self.bot.mxid):
            return
        if await self._real_members(room_id):
            return
        meeting = self.meetings.live_in_room(room_id)
        if meeting is not None:
            await self.meetings.end(meeting, self.bot.mxid)
            try:
                await self.meeting_room.retract(meeting)
            except MatrixRequestError as e:
                log.warning("Could not take the meeting out of %s: %s", room_id, e.message)
        log.info("Leaving %s: no real user is left", room_id)
        try:
            await self.bot.leave_room(room_id, reason="Nobody is left")
        except MatrixRequestError as e:
            log.warning("Could not leave %s: %s", room_id, e.message)

    async def _bot_removed(self, room_id: RoomID) -> None:
        meeting = self.meetings.live_in_room(room_id)
        if meeting is not None:
            log.info("Removed from %s: ending its meeting %s", room_id, meeting.id)
            await self.meetings.end(meeting, self.bot.mxid)

    # Commands ------------------------------------------------------------------------

    async def _handle_message(self, event: MessageEvent) -> None:
        if self.config.is_bridge_user(event.sender):
            return
        content = event.content
        if not isinstance(content, TextMessageEventContent) or content.msgtype != MessageType.TEXT:
            return
        if not isinstance(content.body, str):
            return
        is_direct = await self.rooms.is_direct(event.room_id, event.sender)
        try:
            parsed = parse_command(
                content.body, self.config["bridge.command_prefix"], prefix_optional=is_direct
            )
        except CommandSyntaxError as e:
            await self._notice(event.room_id, str(e), reply_to=event)
            return
        if parsed is None:
            return
        level = self.config.permission_level(event.sender)
        room_power, role = await self.role_in_room(event.room_id, event.sender, level)
        evt = CommandEvent(
            ctx=self.commands,
            room_id=event.room_id,
            sender=event.sender,
            event_id=event.event_id,
            name=parsed.name,
            args=parsed.args,
            level=level,
            role=role,
            room_power=room_power,
            is_direct=is_direct,
        )
        await run_command(evt)

    async def role_in_room(
        self, room_id: RoomID, user_id: UserID, level: Level
    ) -> tuple[int, Role | None]:
        """The user's power in the room and the meeting role it gives them."""
        power = await self.rooms.power(room_id, user_id)
        return power.user, meeting_role(level, power.user, power.moderator)

    async def _notice(
        self, room_id: RoomID, text: str, reply_to: MessageEvent | None = None
    ) -> None:
        content = TextMessageEventContent(msgtype=MessageType.NOTICE, body=text)
        if reply_to is not None:
            content.set_reply(reply_to)
        await self.bot.send_message(room_id, content)

    # Meeting changes -------------------------------------------------------------------

    async def _meeting_changed(self, meeting: Meeting, change: Change) -> None:
        """Keep the room's state event in step with who is in the meeting."""
        if change in (Change.JOINED, Change.LEFT) and meeting.is_live:
            self.queues.submit(meeting.room_id, lambda: self.meeting_room.update_state(meeting))
