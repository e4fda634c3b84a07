"""Sign-in: a credential and a meeting in, a verified identity or a refusal out.

Every door asks here: our WebSocket today, the LiveKit token service and trunks later.
A credential is a personal link (signed by this bridge) or an OpenID token (checked at
the user's own homeserver, on the allowlist). Then the room checks: the bridge
permission (``bridge.permissions``), membership of the meeting's room, and the power
that makes a room moderator a meeting moderator. The Matrix side answers the room
questions through :class:`RoomDirectory`, which :mod:`bridge.matrix` implements.
"""

from __future__ import annotations

import contextlib
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Protocol

from ..clock import Clock
from ..config import server_of
from ..meeting.identity import Identity
from ..meeting.meeting import Meeting
from ..meeting.roles import Level, Role, meeting_role
from ..refusal import Refusal
from .links import PersonalLinks


@dataclass(frozen=True)
class LinkCredential:
    """A personal link's token (``!visio link``)."""

    token: str


@dataclass(frozen=True)
class OpenIDCredential:
    """An OpenID token from the user's Matrix client, and the server that issued it."""

    server: str
    token: str


Credential = LinkCredential | OpenIDCredential


@dataclass(frozen=True)
class MemberProfile:
    """A joined member of a room as the room shows them."""

    display_name: str
    avatar_url: str | None


@dataclass(frozen=True)
class RoomPower:
    """A user's power in a room, and the power the room asks to kick (its moderators)."""

    user: int
    moderator: int


class RoomUnavailable(Exception):
    """The room could not be asked (the homeserver failed or refused)."""


class RoomDirectory(Protocol):
    """What sign-in asks the Matrix side about a room."""

    async def member_profile(self, room_id: str, user_id: str) -> MemberProfile | None:
        """The user's profile if they are a joined member, else None; raises
        :class:`RoomUnavailable`."""
        ...

    async def power(self, room_id: str, user_id: str) -> RoomPower: ...

    async def bot_joined(self, room_id: str) -> bool:
        """Whether the bridge's bot is in the room (so membership can be checked)."""
        ...


class OpenIDCheck(Protocol):
    """Whose an OpenID token is (see :class:`bridge.auth.openid.OpenIDVerifier`)."""

    async def verify(self, server_name: object, token: object) -> str: ...


class SignIn:
    """Turns credentials into identities for one bridge's meetings."""

    def __init__(
        self,
        links: PersonalLinks,
        openid: OpenIDCheck,
        rooms: RoomDirectory,
        permission_level: Callable[[str], Level],
        clock: Clock,
    ) -> None:
        self.links = links
        self.openid = openid
        self.rooms = rooms
        self.permission_level = permission_level
        self.clock = clock
        #: Refusals by code since start (for metrics).
        self.refusals: Counter[str] = Counter()

    async def user_of(self, credential: Credential, meeting_id: str) -> str:
        """The Matrix user id the credential proves, or a refusal saying why not."""
        if isinstance(credential, LinkCredential):
            now_s = self.clock.now_ms() // 1000
            return (await self.links.check(credential.token, meeting_id, now_s)).user_id
        return await self.openid.verify(credential.server, credential.token)

    async def admit(self, credential: Credential, meeting: Meeting) -> Identity:
        """The identity of whoever holds ``credential``, if they may join ``meeting``.

        Raises :class:`~bridge.refusal.Refusal` with the signaling error code and a
        sentence for the user.
        """
        with self._counted():
            user_id = await self.user_of(credential, meeting.id)
            if not meeting.is_live:
                raise Refusal("meeting_ended", "This meeting has ended.")
            return await self._member(user_id, meeting.room_id)

    async def admit_to_room(self, credential: OpenIDCredential, room_id: str) -> Identity:
        """The identity of an OpenID token's holder, if they may use the bridge and are a
        member of ``room_id`` (a call's room, with or without a meeting).

        In a room the bot is not in, membership cannot be checked: the holder is admitted
        on their token and bridge level alone, as lk-jwt-service admits callers, as a
        participant (see :meth:`_caller`)."""
        with self._counted():
            user_id = await self.openid.verify(credential.server, credential.token)
            return await self._member_or_caller(user_id, room_id)

    async def readmit_to_room(self, user_id: str, room_id: str) -> Identity:
        """The identity of a user the bridge itself vouched for earlier (a LiveKit access
        token it signed after :meth:`admit_to_room`), checked again now: they may still
        use the bridge and are still a member of the room."""
        with self._counted():
            return await self._member_or_caller(user_id, room_id)

    async def _member_or_caller(self, user_id: str, room_id: str) -> Identity:
        try:
            bot_joined = await self.rooms.bot_joined(room_id)
        except RoomUnavailable as e:
            raise Refusal("internal", "The call's room could not be checked.") from e
        if bot_joined:
            return await self._member(user_id, room_id)
        return self._caller(user_id)

    def _caller(self, user_id: str) -> Identity:
        """Someone calling in a room without the bot: who they are is verified, whether
        they are in the room is not (nobody here can see it), so they get no role beyond
        participant and no Matrix profile."""
        if self.permission_level(user_id) < Level.USER:
            raise Refusal("unauthorized", "You are not allowed to use Visio Bridge.")
        server = server_of(user_id)
        assert server is not None, "verified user ids name their server"
        return Identity(user_id, server, "", None, Role.PARTICIPANT)

    @contextlib.contextmanager
    def _counted(self) -> Iterator[None]:
        """Count the refusal that leaves the block, by code, for the metrics."""
        try:
            yield
        except Refusal as e:
            self.refusals[e.code] += 1
            raise

    async def _member(self, user_id: str, room_id: str) -> Identity:
        """The identity of a verified user, if the bridge serves them and they are a
        joined member of the room."""
        level = self.permission_level(user_id)
        if level < Level.USER:
            raise Refusal("unauthorized", "You are not allowed to use Visio Bridge.")
        try:
            profile = await self.rooms.member_profile(room_id, user_id)
            if profile is None:
                raise Refusal(
                    "unauthorized", "Only members of the meeting's room may join this meeting."
                )
            power = await self.rooms.power(room_id, user_id)
        except RoomUnavailable as e:
            raise Refusal("internal", "The meeting's room could not be checked.") from e
        role = meeting_role(level, power.user, power.moderator)
        assert role is not None, "a user level always has a role"
        server = server_of(user_id)
        assert server is not None, "verified user ids name their server"
        return Identity(user_id, server, profile.display_name, profile.avatar_url, role)
