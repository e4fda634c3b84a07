"""The bot's view of Matrix rooms: what other parts ask of Matrix, over mautrix.

Sign-in asks who is in a room and with what power (:class:`bridge.auth.RoomDirectory`);
commands send notices, read names and invite. Both go through :class:`MatrixRooms`,
so neither needs mautrix, and tests can put a recording stand-in in its place.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3

import asyncpg
from mautrix.appservice import AppService, IntentAPI
from mautrix.appservice.state_store.asyncpg import PgASStateStore
from mautrix.errors import MatrixRequestError
from mautrix.types import (
    EventID,
    EventType,
    Format,
    InReplyTo,
    Member,
    Membership,
    MessageType,
    PowerLevelStateEventContent,
    RelatesTo,
    RoomCreatePreset,
    RoomID,
    StateEvent,
    TextMessageEventContent,
    UserID,
)

from ..auth.signin import MemberProfile, RoomPower, RoomUnavailable
from ..db import DirectRoomTable

log = logging.getLogger("visio.matrix.rooms")

#: A row that a concurrent write stored first (PostgreSQL, SQLite).
_DUPLICATE_ROW = (asyncpg.UniqueViolationError, sqlite3.IntegrityError)


class MatrixActionError(Exception):
    """The homeserver refused or failed an action; the message says why."""


class MatrixRooms:
    """Rooms as the bot sees them: members, power, names, notices, direct chats."""

    def __init__(
        self, az: AppService, state_store: PgASStateStore, direct_rooms: DirectRoomTable
    ) -> None:
        self.az = az
        self.state_store = state_store
        self.direct_rooms = direct_rooms
        #: One per room the bot has read the members of (rooms it is in).
        self._member_locks: dict[str, asyncio.Lock] = {}

    @property
    def bot(self) -> IntentAPI:
        """The bot's intent (it exists while the appservice runs)."""
        return self.az.intent

    async def joined_members(self, room_id: str) -> dict[UserID, Member]:
        """The room's joined members, from the homeserver; the state store keeps them.

        One read per room at a time: mautrix replaces a room's member list in the state
        store in one transaction, and on PostgreSQL two at once for the same room clash
        (a unique violation), as when someone signs in while the bot joins; so does a
        member event stored in the middle of a read, which is then read again."""
        async with self._member_locks.setdefault(room_id, asyncio.Lock()):
            for _ in range(2):
                try:
                    return await self.bot.get_joined_members(RoomID(room_id))
                except _DUPLICATE_ROW:
                    # A member event stored between mautrix's delete and insert of the
                    # list: its transaction rolled back; the next read sees that row.
                    continue
            return await self.bot.get_joined_members(RoomID(room_id))

    # RoomDirectory (sign-in) ------------------------------------------------------

    async def member_profile(self, room_id: str, user_id: str) -> MemberProfile | None:
        try:
            members = await self.joined_members(room_id)
        except MatrixRequestError as e:
            log.warning("Could not read the members of %s: %s", room_id, e.message)
            raise RoomUnavailable(e.message) from e
        member = members.get(UserID(user_id))
        if member is None:
            return None
        return MemberProfile(member.displayname or "", member.avatar_url or None)

    async def power(self, room_id: str, user_id: str) -> RoomPower:
        try:
            levels = await self.power_levels(RoomID(room_id))
            create = await self._create_event(RoomID(room_id))
        except MatrixRequestError as e:
            raise RoomUnavailable(e.message) from e
        return RoomPower(levels.get_user_level(UserID(user_id), create), levels.kick)

    async def power_levels(self, room_id: RoomID) -> PowerLevelStateEventContent:
        levels = await self.state_store.get_power_levels(room_id)
        if levels is None:
            levels = await self.bot.get_power_levels(room_id, ensure_joined=False)
        return levels

    async def _create_event(self, room_id: RoomID) -> StateEvent | None:
        create = await self.state_store.get_create(room_id)
        if create is not None:
            return create
        try:
            fetched = await self.bot.get_state_event(
                room_id, EventType.ROOM_CREATE, format="event"
            )
        except MatrixRequestError:
            return None
        if not isinstance(fetched, StateEvent):
            return None
        await self.state_store.set_create(fetched)
        return fetched

    # What commands do -------------------------------------------------------------

    async def send_notice(
        self,
        room_id: str,
        text: str,
        html: str | None = None,
        reply_to: str | None = None,
    ) -> str:
        content = TextMessageEventContent(msgtype=MessageType.NOTICE, body=text)
        if html is not None:
            content.format = Format.HTML
            content.formatted_body = html
        if reply_to is not None:
            content.relates_to = RelatesTo(in_reply_to=InReplyTo(event_id=EventID(reply_to)))
        return str(await self.bot.send_message(RoomID(room_id), content))

    async def room_name(self, room_id: str) -> str | None:
        try:
            content = await self.bot.get_state_event(RoomID(room_id), EventType.ROOM_NAME)
        except MatrixRequestError:
            return None
        name = getattr(content, "name", None)
        return name if isinstance(name, str) and name else None

    async def display_name(self, room_id: str, user_id: str) -> str | None:
        member = await self.state_store.get_member(RoomID(room_id), UserID(user_id))
        return member.displayname if member is not None else None

    async def invite_levels(self, room_id: str) -> tuple[int, int]:
        """(the power the room asks to invite, the bot's power)."""
        levels = await self.bot.get_power_levels(RoomID(room_id))
        create = await self._create_event(RoomID(room_id))
        return levels.invite, levels.get_user_level(self.bot.mxid, create)

    async def bot_joined(self, room_id: str) -> bool:
        return await self.is_joined(room_id, self.bot.mxid)

    async def is_joined(self, room_id: str, user_id: str) -> bool:
        return bool(await self.state_store.is_joined(RoomID(room_id), UserID(user_id)))

    async def invite(self, room_id: str, user_id: str) -> None:
        try:
            await self.bot.invite_user(RoomID(room_id), UserID(user_id))
        except MatrixRequestError as e:
            raise MatrixActionError(e.message) from e

    async def is_direct(self, room_id: RoomID, sender: UserID) -> bool:
        """A room where the sender and the bot are the only members."""
        if not await self.state_store.has_full_member_list(room_id):
            await self.joined_members(room_id)
        joined = await self.state_store.get_members(room_id, memberships=(Membership.JOIN,))
        return set(joined) == {sender, self.bot.mxid}

    async def direct_room(self, user_id: str) -> str:
        """The bot's one-to-one room with the user, made (and remembered) when needed."""
        user = UserID(user_id)
        known = await self.direct_rooms.get(user)
        if known is not None:
            room_id = RoomID(known)
            user_in = await self.state_store.get_membership(room_id, user)
            if await self.state_store.is_joined(room_id, self.bot.mxid) and user_in in (
                Membership.JOIN,
                Membership.INVITE,
            ):
                return room_id
        room_id = await self.bot.create_room(
            preset=RoomCreatePreset.TRUSTED_PRIVATE,
            is_direct=True,
            invitees=[user],
            name="Visio",
            topic="Your personal meeting links",
        )
        await self.state_store.joined(room_id, self.bot.mxid)
        await self.state_store.invited(room_id, user)
        await self.direct_rooms.set(user, room_id)
        return room_id
