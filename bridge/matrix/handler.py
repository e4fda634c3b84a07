"""Routing Matrix events: invites, members coming and going, commands."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any, cast

from mautrix.errors import MatrixRequestError
from mautrix.types import (
    Event,
    EventType,
    Format,
    Membership,
    MemberStateEventContent,
    MessageEvent,
    MessageType,
    RoomCreatePreset,
    RoomID,
    StateEvent,
    TextMessageEventContent,
    UserID,
)

from ..meeting.meeting import Meeting
from ..meeting.meetings import Change
from ..meeting.roles import Level, Role, meeting_role
from .commands import CommandEvent, CommandUsageError
from .commands.handlers import COMMANDS
from .commands.parser import CommandSyntaxError, parse_command
from .meeting_room import MeetingRoom

if TYPE_CHECKING:
    from ..context import Bridge

log = logging.getLogger("visio.matrix")


class MatrixHandler:
    """Receives the appservice's events and acts on them, one room at a time."""

    def __init__(self, bridge: Bridge) -> None:
        self.bridge = bridge
        self.config = bridge.config
        self.meeting_room = MeetingRoom(bridge)
        bridge.az.matrix_event_handler(self._enqueue)
        bridge.meetings.listeners.append(self._meeting_changed)

    async def start(self) -> None:
        bot = self.bridge.bot
        await bot.ensure_registered()
        try:
            await bot.set_displayname(self.config["appservice.bot_displayname"])
        except MatrixRequestError as e:
            log.warning("Could not set the bot's display name: %s", e.message)

    async def stop(self) -> None:
        try:
            await self.bridge.queues.drain()
        except TimeoutError:
            log.warning("Stopping with events still queued; the homeserver will not resend them")

    async def _enqueue(self, event: Event) -> None:
        room_id = getattr(event, "room_id", None)
        if not room_id:
            return
        self.bridge.queues.submit(room_id, lambda: self.handle_event(event))

    async def handle_event(self, event: Event) -> None:
        if isinstance(event, StateEvent) and event.type == EventType.ROOM_MEMBER:
            await self._handle_member(event)
        elif isinstance(event, MessageEvent) and event.type == EventType.ROOM_MESSAGE:
            await self._handle_message(event)

    # Members -------------------------------------------------------------------------

    async def _handle_member(self, event: StateEvent) -> None:
        membership = cast(MemberStateEventContent, event.content).membership
        target = UserID(event.state_key)
        if membership == Membership.INVITE and target == self.bridge.bot.mxid:
            await self._handle_bot_invite(event.room_id, event.sender)
        elif membership == Membership.INVITE and self.config.is_ghost(target):
            await self._decline_ghost_invite(event.room_id, target)
        elif membership in (Membership.LEAVE, Membership.BAN):
            if target == self.bridge.bot.mxid:
                await self._bot_removed(event.room_id)
            elif not self.config.is_bridge_user(target):
                await self._leave_if_alone(event.room_id)

    async def _handle_bot_invite(self, room_id: RoomID, inviter: UserID) -> None:
        bot = self.bridge.bot
        level = self.config.permission_level(inviter)
        await bot.join_room_by_id(room_id)
        await self.bridge.state_store.joined(room_id, bot.mxid)
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
        await self.bridge.state_store.set_members(
            room_id, cast(dict[UserID, Any], members), only_membership=Membership.JOIN
        )
        prefix = self.config["bridge.command_prefix"]
        await self._notice(
            room_id,
            f"Hello! I run video meetings in this room. Type {prefix} start [title] to start "
            f"one, or {prefix} help for all commands.",
        )

    async def _decline_ghost_invite(self, room_id: RoomID, ghost: UserID) -> None:
        intent = self.bridge.az.intent.user(ghost)
        try:
            await intent.leave_room(room_id, reason="Meeting users join rooms by themselves")
        except MatrixRequestError as e:
            log.debug("Could not decline the invite of %s: %s", ghost, e.message)

    async def _real_members(self, room_id: RoomID) -> list[UserID]:
        members = await self.bridge.state_store.get_members(
            room_id, memberships=(Membership.JOIN,)
        )
        return [user for user in members if not self.config.is_bridge_user(user)]

    async def _leave_if_alone(self, room_id: RoomID) -> None:
        if not await self.bridge.state_store.is_joined(room_id, self.bridge.bot.mxid):
            return
        if await self._real_members(room_id):
            return
        meeting = self.bridge.meetings.live_in_room(room_id)
        if meeting is not None:
            await self.bridge.meetings.end(meeting, self.bridge.bot.mxid)
            try:
                await self.meeting_room.retract(meeting)
            except MatrixRequestError as e:
                log.warning("Could not take the meeting out of %s: %s", room_id, e.message)
        log.info("Leaving %s: no real user is left", room_id)
        try:
            await self.bridge.bot.leave_room(room_id, reason="Nobody is left")
        except MatrixRequestError as e:
            log.warning("Could not leave %s: %s", room_id, e.message)

    async def _bot_removed(self, room_id: RoomID) -> None:
        meeting = self.bridge.meetings.live_in_room(room_id)
        if meeting is not None:
            log.info("Removed from %s: ending its meeting %s", room_id, meeting.id)
            await self.bridge.meetings.end(meeting, self.bridge.bot.mxid)

    # Commands ------------------------------------------------------------------------

    async def _handle_message(self, event: MessageEvent) -> None:
        if self.config.is_bridge_user(event.sender):
            return
        content = event.content
        if not isinstance(content, TextMessageEventContent) or content.msgtype != MessageType.TEXT:
            return
        if not isinstance(content.body, str):
            return
        is_direct = await self._is_direct(event.room_id, event.sender)
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
            bridge=self.bridge,
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
        await self.run_command(evt)

    async def run_command(self, evt: CommandEvent) -> None:
        if evt.level < Level.USER:
            await evt.reply(
                "Sorry, you may not use Visio Bridge. Ask your administrator for access."
            )
            return
        command = COMMANDS.get(evt.name)
        if command is None:
            await evt.reply(
                f"Unknown command {evt.name!r}. Type {evt.example('help')} for the list."
            )
            return
        if evt.level < command.min_level:
            await evt.reply(f"Sorry, you may not use {evt.name}.")
            return
        log.info("%s runs %s in %s", evt.sender, evt.name, evt.room_id)
        try:
            await command.handler(evt)
        except CommandUsageError as e:
            await evt.reply(
                f"{e} Usage: {evt.example(command.usage)} (see {evt.example('help')})."
            )

    async def role_in_room(
        self, room_id: RoomID, user_id: UserID, level: Level
    ) -> tuple[int, Role | None]:
        """The user's power in the room and the meeting role it gives them."""
        levels = await self.bridge.state_store.get_power_levels(room_id)
        if levels is None:
            levels = await self.bridge.bot.get_power_levels(room_id, ensure_joined=False)
        create = await self.bridge.state_store.get_create(room_id)
        if create is None:
            try:
                fetched = await self.bridge.bot.get_state_event(
                    room_id, EventType.ROOM_CREATE, format="event"
                )
            except MatrixRequestError:
                fetched = None
            if isinstance(fetched, StateEvent):
                create = fetched
                await self.bridge.state_store.set_create(create)
        power = levels.get_user_level(user_id, create)
        return power, meeting_role(level, power, levels.kick)

    async def _is_direct(self, room_id: RoomID, sender: UserID) -> bool:
        """A room where the sender and the bot are the only members."""
        state_store = self.bridge.state_store
        if not await state_store.has_full_member_list(room_id):
            members = await self.bridge.bot.get_joined_members(room_id)
            await state_store.set_members(
                room_id, cast(dict[UserID, Any], members), only_membership=Membership.JOIN
            )
        joined = await state_store.get_members(room_id, memberships=(Membership.JOIN,))
        return set(joined) == {sender, self.bridge.bot.mxid}

    async def direct_room(self, user_id: UserID) -> RoomID:
        """The bot's one-to-one room with the user, made (and remembered) when needed."""
        bridge = self.bridge
        known = await bridge.storage.direct_rooms.get(user_id)
        if known is not None:
            room_id = RoomID(known)
            user_in = await bridge.state_store.get_membership(room_id, user_id)
            if await bridge.state_store.is_joined(room_id, bridge.bot.mxid) and user_in in (
                Membership.JOIN,
                Membership.INVITE,
            ):
                return room_id
        room_id = await bridge.bot.create_room(
            preset=RoomCreatePreset.TRUSTED_PRIVATE,
            is_direct=True,
            invitees=[user_id],
            name="Visio",
            topic="Your personal meeting links",
        )
        await bridge.state_store.joined(room_id, bridge.bot.mxid)
        await bridge.state_store.invited(room_id, user_id)
        await bridge.storage.direct_rooms.set(user_id, room_id)
        return room_id

    async def send_notice(self, room_id: RoomID, text: str, html: str | None = None) -> None:
        content = TextMessageEventContent(msgtype=MessageType.NOTICE, body=text)
        if html is not None:
            content.format = Format.HTML
            content.formatted_body = html
        await self.bridge.bot.send_message(room_id, content)

    async def _notice(
        self, room_id: RoomID, text: str, reply_to: MessageEvent | None = None
    ) -> None:
        content = TextMessageEventContent(msgtype=MessageType.NOTICE, body=text)
        if reply_to is not None:
            content.set_reply(reply_to)
        await self.bridge.bot.send_message(room_id, content)

    # Meeting changes -------------------------------------------------------------------

    async def _meeting_changed(self, meeting: Meeting, change: Change) -> None:
        """Keep the room's state event in step with who is in the meeting."""
        if change in (Change.JOINED, Change.LEFT) and meeting.is_live:
            self.bridge.queues.submit(
                meeting.room_id, lambda: self.meeting_room.update_state(meeting)
            )
