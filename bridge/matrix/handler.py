"""Routing Matrix events: invites, members coming and going, commands."""

from __future__ import annotations

import logging
from functools import partial
from typing import Any, cast

from mautrix.appservice import IntentAPI
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

from ..config import Config, server_of
from ..db import InboxEntry, InboxTable
from ..federation import TRUNK_ANSWER, TRUNK_OFFER, Trunks
from ..meeting.attendee import NOT_A_MEMBER
from ..meeting.meeting import Meeting
from ..meeting.meetings import Change, MeetingError, Meetings
from ..meeting.roles import Level, Role, meeting_role
from .appservice import BridgeAppService, parse_event
from .commands import CommandContext, CommandEvent
from .commands.handlers import run_command
from .commands.parser import CommandSyntaxError, parse_command
from .dispatch import RoomQueues
from .federation import BRIDGE_ANNOUNCE, MatrixFederation
from .meeting_room import MEETING_STATE, MeetingRoom, StateUpdates
from .rooms import MatrixRooms

log = logging.getLogger("visio.matrix")


class MatrixHandler:
    """Receives the appservice's events and acts on them, one room at a time."""

    def __init__(
        self,
        config: Config,
        az: BridgeAppService,
        state_store: PgASStateStore,
        queues: RoomQueues,
        inbox: InboxTable,
        meetings: Meetings,
        rooms: MatrixRooms,
        meeting_room: MeetingRoom,
        commands: CommandContext,
        federation: MatrixFederation | None = None,
        trunks: Trunks | None = None,
    ) -> None:
        self.config = config
        self.az = az
        self.state_store = state_store
        self.queues = queues
        self.inbox = inbox
        self.meetings = meetings
        self.rooms = rooms
        self.meeting_room = meeting_room
        self.commands = commands
        self.federation = federation
        self.trunks = trunks
        self.state_updates = StateUpdates(queues, meeting_room)
        #: Events handled since start (for metrics).
        self.events_handled = 0
        az.on_event = self._received
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
        federation = self.federation
        if federation is not None:
            # A meeting hosted elsewhere may have ended while this bridge was down: read
            # each such room's state again (in the room's turn, after older events).
            for meeting in self.meetings.all_live():
                if meeting.hosted_elsewhere:
                    self.queues.submit(
                        meeting.room_id, partial(federation.catch_up, meeting.room_id)
                    )

    async def stop(self) -> None:
        try:
            await self.queues.drain()
        except TimeoutError:
            log.warning("Stopping with events still queued; the next start handles them")

    async def replay(self) -> None:
        """Queue what a previous run received but did not handle, oldest first (before
        anything new arrives)."""
        pending = await self.inbox.pending()
        if pending:
            log.info("Handling %d event(s) received before the last stop", len(pending))
        for entry in pending:
            self._received(entry)

    def _received(self, entry: InboxEntry) -> None:
        self.queues.submit(entry.room_id, lambda: self._handle_entry(entry))

    async def _handle_entry(self, entry: InboxEntry) -> None:
        """Handle one stored event, then take it out of the inbox, even when handling
        failed (the failure is logged): a poisonous event must not return forever."""
        try:
            event = parse_event(entry.event)
        except Exception:
            log.warning("Dropping a malformed event %s in %s", entry.seq, entry.room_id)
            await self.inbox.done(entry.seq)
            return
        try:
            await self.state_store.update_state(event)
            await self.handle_event(event, entry.event)
        finally:
            self.events_handled += 1
            await self.inbox.done(entry.seq)

    async def handle_event(self, event: Event, raw: dict[str, Any] | None = None) -> None:
        if raw is not None and raw.get("sender") != self.bot.mxid:
            if await self._handle_federation(event, raw):
                return
        if isinstance(event, StateEvent) and event.type == EventType.ROOM_MEMBER:
            await self._handle_member(event)
        elif isinstance(event, MessageEvent) and event.type == EventType.ROOM_MESSAGE:
            await self._handle_message(event)
        elif isinstance(event, StateEvent) and event.type == EventType.ROOM_TOMBSTONE:
            await self._handle_tombstone(event)

    # Other agencies' bridges --------------------------------------------------------

    async def _handle_federation(self, event: Event, raw: dict[str, Any]) -> bool:
        """Trunk negotiation and peer bridges' meeting state; True when handled."""
        event_type = raw.get("type")
        room_id, sender = str(event.room_id), str(raw.get("sender"))
        content = raw.get("content")
        unsigned = raw.get("unsigned")
        age = unsigned.get("age") if isinstance(unsigned, dict) else None
        age_ms = age if isinstance(age, int) else 0
        if self.trunks is not None and event_type == TRUNK_OFFER:
            await self.trunks.offer_received(room_id, sender, content, age_ms)
            return True
        if self.trunks is not None and event_type == TRUNK_ANSWER:
            await self.trunks.answer_received(room_id, sender, content, age_ms)
            return True
        if self.federation is None:
            return False
        if event_type == str(MEETING_STATE) and raw.get("state_key") == "":
            await self.federation.meeting_state(room_id, sender, content)
            return True
        if event_type == BRIDGE_ANNOUNCE and raw.get("state_key") is None:
            await self.federation.door_announced(room_id, sender, content)
            return True
        return False

    # Room upgrades -------------------------------------------------------------------

    async def _handle_tombstone(self, event: StateEvent) -> None:
        """The room was upgraded: its live meeting moves to the new room (the bot
        joins it and shows the meeting there), or ends with a notice saying where to go."""
        meeting = self.meetings.live_in_room(event.room_id)
        new_room = getattr(event.content, "replacement_room", None)
        if meeting is None or not isinstance(new_room, str) or not new_room:
            return
        via = [server] if (server := server_of(event.sender)) else None
        try:
            await self.bot.join_room(RoomID(new_room), servers=via, max_retries=1)
            await self.state_store.joined(RoomID(new_room), self.bot.mxid)
            await self.meetings.move(meeting, new_room)
        except (MatrixRequestError, MeetingError) as e:
            reason = getattr(e, "message", None) or str(e)
            log.warning("Could not move meeting %s to %s: %s", meeting.id, new_room, reason)
            summary = await self.meetings.end(meeting, self.bot.mxid)
            await self._retract(meeting, RoomID(event.room_id))
            await self._notice(
                RoomID(event.room_id),
                f"This room was replaced by a new one, where I could not follow "
                f'({reason}), so the meeting "{summary.title}" has ended. Start a new '
                f"meeting in the new room: https://matrix.to/#/{new_room}",
            )
            return
        old_room = RoomID(event.room_id)
        await self._retract(meeting, old_room, ended=False)
        missing = await self.meeting_room.publish(meeting)
        url = self.meeting_room.join_url(meeting)
        await self._notice(
            RoomID(new_room),
            f'The meeting "{meeting.title}" moved here with the room upgrade; it goes on. '
            f"Join: {url}"
            + (f" (I may not show it as a widget here: {', '.join(missing)})" if missing else ""),
        )
        await self._notice(old_room, f"The meeting continues in the new room. Join: {url}")

    async def _retract(self, meeting: Meeting, room_id: RoomID, ended: bool = True) -> None:
        if meeting.hosted_elsewhere:
            return  # the host bridge shows it in the room
        try:
            await self.meeting_room.retract(meeting, room_id=room_id, ended=ended)
        except MatrixRequestError as e:
            log.warning("Could not take the meeting out of %s: %s", room_id, e.message)

    # Members -------------------------------------------------------------------------

    async def _handle_member(self, event: StateEvent) -> None:
        membership = cast(MemberStateEventContent, event.content).membership
        target = UserID(event.state_key)
        if membership == Membership.INVITE and target == self.bot.mxid:
            await self._handle_bot_invite(event.room_id, event.sender)
        elif (
            membership == Membership.INVITE
            and self.config.is_ghost(target)
            and event.sender != self.bot.mxid
        ):
            # The bot invites its ghosts where they show people to Element Call
            # (RtcPresence); nobody else may bring them into a room.
            await self._decline_ghost_invite(event.room_id, target)
        elif membership in (Membership.LEAVE, Membership.BAN):
            if target == self.bot.mxid:
                await self._bot_removed(event.room_id)
            elif not self.config.is_bridge_user(target):
                await self.meetings.dismiss_user(event.room_id, target, NOT_A_MEMBER)
                await self._leave_if_alone(event.room_id)

    async def _handle_bot_invite(self, room_id: RoomID, inviter: UserID) -> None:
        bot = self.bot
        if self.config.permission_level(inviter) < Level.USER:
            # Refused without joining: joining first would let anyone make the bot
            # enter, speak in and leave rooms. The reason travels with the rejection.
            log.info("Rejecting the invite of %s to %s: not allowed", inviter, room_id)
            try:
                await bot.leave_room(
                    room_id,
                    reason=f"{inviter} may not use Visio Bridge; ask your administrator.",
                )
            except MatrixRequestError as e:
                log.warning("Could not reject the invite to %s: %s", room_id, e.message)
            return
        # Join through the inviter's server: in a room of several servers, another one
        # may not have heard of the invite yet and would refuse the join.
        via = [server] if (server := server_of(inviter)) else None
        await bot.join_room(room_id, servers=via, max_retries=2)
        await self.state_store.joined(room_id, bot.mxid)
        await self.rooms.joined_members(room_id)  # kept in the state store
        if self.federation is not None:
            await self.federation.catch_up(room_id)
            if self.federation.peer_bridges:
                await self.federation.announce(room_id)
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
        peers = self.federation.peer_bridges if self.federation is not None else frozenset()
        return [u for u in members if not self.config.is_bridge_user(u) and u not in peers]

    async def _leave_if_alone(self, room_id: RoomID) -> None:
        if not await self.state_store.is_joined(room_id, self.bot.mxid):
            return
        if await self._real_members(room_id):
            return
        meeting = self.meetings.live_in_room(room_id)
        if meeting is not None:
            await self.meetings.end(meeting, self.bot.mxid)
            await self._retract(meeting, room_id)
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
        server = server_of(event.sender)
        if (
            self.federation is not None
            and server is not None
            and server != self.config["homeserver.domain"]
            and await self.federation.peer_serves(event.room_id, server)
        ):
            return  # their own agency's bridge is in the room and answers them
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
        if meeting.hosted_elsewhere:
            return  # the host bridge keeps the room's state
        if change in (Change.JOINED, Change.LEFT) and meeting.is_live:
            # A call in a room without the bot (Element Call) has no state to keep.
            if await self.rooms.bot_joined(meeting.room_id):
                self.state_updates.request(meeting)
