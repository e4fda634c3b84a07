"""This bridge's people of other doors, in Element Call's roster.

Element Call lists a call's people from their MatrixRTC memberships
(``org.matrix.msc3401.call.member`` state events), and shows a LiveKit participant only
when its identity is one membership's ``<sender>:<device_id>``. People who joined the
room's meeting through the bridge's web client, the widget or a personal link have no
membership of their own: the bridge cannot send one as them. So it publishes one for
each of them, sent by a ghost user of its own (one per person, from
``bridge.username_template``, in the appservice's namespace), named and pictured as the
person is in the meeting, and the LiveKit door gives that person the identity
``<ghost>:VISIOBRIDGE`` (:meth:`RtcPresence.identity_for`). Element Call then lists them
beside its own callers, and plays their media, which is not end-to-end encrypted (the
LiveKit door says so in their ``TrackInfo``).

A membership goes when its person leaves, when the meeting ends and when the bridge
stops; one a crashed bridge left behind is withdrawn at the next change of that room's
meeting (the ghosts' memberships are read from the room's state first), and expires
anyway four hours after it was last renewed (Element Call's default), and renewed every
hour while its person stays. Only this bridge's own people get one: people behind a
trunk get theirs from their own agency's bridge, whose identity for them comes over the
trunk.

Needs the room's power levels to let members send call memberships, as Element Web sets
them when Element Call is enabled in a room; where they do not, the bridge says so in its
log once per meeting and the web client's people stay off Element Call's roster.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from mautrix.api import ClientPath, Method
from mautrix.appservice import AppService, IntentAPI
from mautrix.errors import IntentError, MatrixRequestError, MForbidden
from mautrix.types import EventType, RoomID, UserID

from ..clock import Clock
from ..meeting.live import Participant
from ..meeting.meeting import Meeting
from ..meeting.meetings import Change, Meetings
from .rooms import MatrixRooms

log = logging.getLogger("visio.matrix.rtc_presence")

CALL_MEMBER = EventType.find("org.matrix.msc3401.call.member", EventType.Class.STATE)
#: The device id of every ghost's membership (ghosts have no device of their own).
DEVICE_ID = "VISIOBRIDGE"
#: How long a membership counts after it was (re)sent, as Element Call's own.
EXPIRES_MS = 4 * 3600 * 1000
#: How often memberships are renewed while their person stays.
RENEW_S = 3600.0


@dataclass
class _Published:
    display_name: str
    avatar_url: str | None
    #: When the membership was first sent (its ``created_ts``) and last renewed.
    created_ts: int
    renewed_at: int


def _cannot_list(room_id: str, why: str) -> None:
    log.warning(
        "Element Call will not list the web client's people in %s: the room does not let "
        "members send %s (%s)",
        room_id,
        CALL_MEMBER,
        why,
    )


class RtcPresence:
    """Publishes call memberships for this bridge's people of other doors."""

    def __init__(
        self,
        az: AppService,
        meetings: Meetings,
        rooms: MatrixRooms,
        clock: Clock,
        *,
        ghost_localpart: Callable[[str], str],
        is_ghost: Callable[[str], bool],
        domain: str,
        service_url: str,
    ) -> None:
        self.az = az
        self.meetings = meetings
        self.rooms = rooms
        self.clock = clock
        self._ghost_localpart = ghost_localpart
        self._is_ghost = is_ghost
        self._domain = domain
        #: The bridge's token service, as the homeserver's MatrixRTC transport names it.
        self.service_url = service_url.rstrip("/")
        #: Memberships sent, by room and ghost; a room is in it once its state was read.
        self._published: dict[str, dict[str, _Published]] = {}
        #: Meetings to bring in step, by room, and the task doing it.
        self._dirty: dict[str, Meeting] = {}
        self._workers: dict[str, asyncio.Task[None]] = {}
        #: Meetings whose room refuses call memberships (said once in the log).
        self._refused: set[str] = set()
        self._renewer: asyncio.Task[None] | None = None
        self._closed = False
        meetings.listeners.append(self._changed)

    # Identities ------------------------------------------------------------------------

    def ghost_of(self, user_id: str) -> str:
        """The ghost that carries ``user_id``'s membership (the same in every room)."""
        digest = hashlib.sha256(user_id.encode("utf-8")).hexdigest()[:24]
        return f"@{self._ghost_localpart('rtc' + digest)}:{self._domain}"

    def identity_for(self, user_id: str) -> str:
        """The LiveKit identity Element Call looks for: ``<sender>:<device_id>``."""
        return f"{self.ghost_of(user_id)}:{DEVICE_ID}"

    @staticmethod
    def state_key(ghost: str) -> str:
        """Element Call's state key for a membership of the room's call (the leading
        underscore lets rooms without MSC3757 accept it)."""
        return f"_{ghost}_{DEVICE_ID}_m.call"

    def content(self, room_id: str, ghost: str, created_ts: int, now: int) -> dict[str, Any]:
        """A legacy (state event) session membership, as Element Call sends its own."""
        return {
            "application": "m.call",
            "call_id": "",
            "scope": "m.room",
            "device_id": DEVICE_ID,
            "membershipID": f"{ghost}:{DEVICE_ID}",
            "created_ts": created_ts,
            # Counted from created_ts: renewing pushes the end out.
            "expires": now - created_ts + EXPIRES_MS,
            "m.call.intent": "video",
            "focus_active": {"type": "livekit", "focus_selection": "oldest_membership"},
            "foci_preferred": [
                {
                    "type": "livekit",
                    "livekit_service_url": self.service_url,
                    "livekit_alias": room_id,
                }
            ],
        }

    # Keeping rooms in step -------------------------------------------------------------

    def start(self, live: list[Meeting]) -> None:
        """Bring the rooms of the ``live`` meetings in step (a crash may have left
        memberships behind), and renew memberships while their people stay."""
        for meeting in live:
            self._schedule(meeting)
        self._renewer = asyncio.ensure_future(self._renew_every_hour())

    async def _changed(self, meeting: Meeting, change: Change) -> None:
        if change is Change.ENDED:
            self._refused.discard(meeting.id)  # its memberships are withdrawn regardless
        if change is not Change.CAPTURE:
            self._schedule(meeting)

    def _schedule(self, meeting: Meeting) -> None:
        if self._closed:
            return
        room_id = meeting.room_id
        self._dirty[room_id] = meeting
        if room_id not in self._workers:
            self._workers[room_id] = asyncio.ensure_future(self._work(room_id))

    async def _work(self, room_id: str) -> None:
        try:
            while room_id in self._dirty:
                meeting = self._dirty.pop(room_id)
                try:
                    await self._bring_in_step(meeting)
                except Exception:
                    log.exception("Could not show %s's people to Element Call", meeting.id)
        finally:
            del self._workers[room_id]

    def _wanted(self, meeting: Meeting) -> dict[str, Participant]:
        """The ghosts the room should show now, with the person each stands for."""
        if not meeting.is_live or self._closed:
            return {}
        return {
            self.ghost_of(p.user_id): p
            for p in meeting.participants.values()
            if p.via is None and p.rtc_identity == self.identity_for(p.user_id)
        }

    async def _bring_in_step(self, meeting: Meeting) -> None:
        room_id = meeting.room_id
        if not await self.rooms.bot_joined(room_id):
            return  # a call in a room without the bot: the bridge posts nothing there
        published = await self._read(room_id)
        wanted = self._wanted(meeting)
        for ghost in [g for g in published if g not in wanted]:
            await self._withdraw(room_id, ghost, published)
        new = {g: p for g, p in wanted.items() if g not in published}
        if new and not await self._may_call(room_id, next(iter(new)), meeting.id):
            new = {}
        for ghost, person in new.items():
            if not await self._publish(room_id, ghost, person, published):
                return
        for ghost, person in wanted.items():
            sent = published.get(ghost)
            if sent is not None and (sent.display_name, sent.avatar_url) != (
                person.display_name,
                person.avatar_url,
            ):
                await self._profile(self._intent(ghost), person)
                sent.display_name, sent.avatar_url = person.display_name, person.avatar_url

    async def _may_call(self, room_id: str, ghost: str, meeting_id: str) -> bool:
        """Whether the room lets ghosts send call memberships, read afresh (the power
        levels may have changed since the last meeting); said once per meeting."""
        levels = await self.az.intent.get_power_levels(
            RoomID(room_id), ignore_cache=True, ensure_joined=False
        )
        if levels.get_user_level(UserID(ghost)) >= levels.get_event_level(CALL_MEMBER):
            return True
        if meeting_id not in self._refused:
            self._refused.add(meeting_id)
            _cannot_list(room_id, "its power levels")
        return False

    async def _read(self, room_id: str) -> dict[str, _Published]:
        """The ghosts' memberships in the room: read from its state the first time (a
        crashed bridge may have left some)."""
        published = self._published.get(room_id)
        if published is not None:
            return published
        published = {}
        # Read as it is, not through mautrix's state store (which would store every
        # member event again, racing the member list reads of sign-in).
        events: Any = await self.az.intent.api.request(
            Method.GET, ClientPath.v3.rooms[room_id].state
        )
        for event in events if isinstance(events, list) else []:
            if not isinstance(event, dict):
                continue
            sender, content = event.get("sender"), event.get("content")
            if (
                event.get("type") != str(CALL_MEMBER)
                or not isinstance(sender, str)
                or not self._is_ghost(sender)
                or event.get("state_key") != self.state_key(sender)
                or not isinstance(content, dict)
                or not content
            ):
                continue
            created = content.get("created_ts")
            created = created if isinstance(created, int) else self.clock.now_ms()
            published[sender] = _Published("", None, created, created)
        self._published[room_id] = published
        return published

    def _intent(self, ghost: str) -> IntentAPI:
        return self.az.intent.user(UserID(ghost))

    async def _profile(self, intent: IntentAPI, person: Participant) -> None:
        """The ghost's name and picture: those the person has in the meeting (Element
        Call shows a member's room name and avatar)."""
        await intent.set_displayname(person.display_name)
        if person.avatar_url:
            await intent.set_avatar_url(person.avatar_url)  # type: ignore[arg-type]

    async def _publish(
        self, room_id: str, ghost: str, person: Participant, published: dict[str, _Published]
    ) -> bool:
        intent = self._intent(ghost)
        await intent.ensure_registered()
        await self._profile(intent, person)
        # Invited by the bot when the room is not public; the bot's own invites of its
        # ghosts are not declined (MatrixHandler).
        await intent.ensure_joined(RoomID(room_id), ignore_cache=True)
        now = self.clock.now_ms()
        try:
            await intent.send_state_event(
                RoomID(room_id),
                CALL_MEMBER,
                self.content(room_id, ghost, now, now),
                state_key=self.state_key(ghost),
            )
        except (MForbidden, IntentError) as e:
            _cannot_list(room_id, str(e))
            await self._leave(intent, room_id)
            return False
        published[ghost] = _Published(person.display_name, person.avatar_url, now, now)
        log.info("Showing %s to Element Call in %s as %s", person.user_id, room_id, ghost)
        return True

    async def _withdraw(self, room_id: str, ghost: str, published: dict[str, _Published]) -> None:
        intent = self._intent(ghost)
        await intent.send_state_event(
            RoomID(room_id), CALL_MEMBER, {}, state_key=self.state_key(ghost)
        )
        del published[ghost]
        await self._leave(intent, room_id)

    @staticmethod
    async def _leave(intent: IntentAPI, room_id: str) -> None:
        try:
            await intent.leave_room(RoomID(room_id))
        except MatrixRequestError as e:
            log.debug("%s could not leave %s: %s", intent.mxid, room_id, e.message)

    async def _renew_every_hour(self) -> None:
        while True:
            await asyncio.sleep(RENEW_S / 4)
            await self.renew()

    async def renew(self) -> None:
        """Renew the memberships sent more than an hour ago, so none expires while its
        person stays."""
        now = self.clock.now_ms()
        for room_id, published in list(self._published.items()):
            for ghost, sent in list(published.items()):
                if now - sent.renewed_at < RENEW_S * 1000:
                    continue
                try:
                    await self._intent(ghost).send_state_event(
                        RoomID(room_id),
                        CALL_MEMBER,
                        self.content(room_id, ghost, sent.created_ts, now),
                        state_key=self.state_key(ghost),
                    )
                    sent.renewed_at = now
                except MatrixRequestError as e:
                    log.warning("Could not renew %s's membership in %s: %s", ghost, room_id, e)

    async def close(self) -> None:
        """The bridge stops: its people are no longer in any call."""
        self._closed = True
        if self._renewer is not None:
            self._renewer.cancel()
        for task in list(self._workers.values()):
            await asyncio.gather(task, return_exceptions=True)
        for room_id, published in list(self._published.items()):
            for ghost in list(published):
                try:
                    await self._withdraw(room_id, ghost, published)
                except MatrixRequestError as e:
                    log.warning("Could not withdraw %s's membership in %s: %s", ghost, room_id, e)
