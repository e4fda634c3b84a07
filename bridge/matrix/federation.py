"""The Matrix side of meetings across agencies.

Sends the trunk door's negotiation events (:class:`bridge.federation.TrunkSignals`),
shows in the room a meeting a peer bridge's moderator ended (:class:`bridge.federation.
PeerEnds`), and keeps this bridge's side of meetings that a trusted peer bridge hosts in
step with that bridge's ``io.visiobridge.meeting`` state event.
"""

from __future__ import annotations

import logging
from typing import Any

from mautrix.appservice import AppService
from mautrix.errors import MatrixRequestError
from mautrix.types import EventType, RoomID
from yarl import URL

from ..db import PeerDoorTable
from ..meeting.attendee import Dismissal
from ..meeting.meeting import Meeting, MeetingSummary
from ..meeting.meetings import Meetings
from .commands.handlers import summary_text
from .meeting_room import MEETING_STATE, MeetingRoom
from .rooms import MatrixRooms

log = logging.getLogger("visio.matrix.federation")

_MAX_TITLE = 512
_MAX_URL = 512
#: A bridge's bot says, in each room it serves, where its people join.
BRIDGE_ANNOUNCE = "io.visiobridge.bridge"


#: Told to the people of a meeting that gave way to one started first elsewhere.
MOVED_TO_PEER = Dismissal(
    "meeting_ended",
    "Another agency started this room's meeting at the same moment; join it again from the room.",
)


def _first(a: tuple[int, str], b: tuple[int, str]) -> bool:
    """Whether the meeting started at ``a`` (time, host bot) comes before ``b``: the
    earlier start, and between equal times the host that sorts first. Every bridge in
    the room decides the same."""
    return a < b


class MatrixFederation:
    """What trunks need of Matrix, and meetings hosted by a peer bridge."""

    def __init__(
        self,
        az: AppService,
        meetings: Meetings,
        rooms: MatrixRooms,
        meeting_room: MeetingRoom,
        peer_bridges: frozenset[str],
        doors: PeerDoorTable,
        public_url: str,
    ) -> None:
        self.az = az
        self.doors = doors
        self.public_url = public_url.rstrip("/")
        self.meetings = meetings
        self.rooms = rooms
        self.meeting_room = meeting_room
        self.peer_bridges = peer_bridges

    def is_peer(self, user_id: str) -> bool:
        return user_id in self.peer_bridges and user_id != self.az.intent.mxid

    async def peer_serves(self, room_id: str, server: str) -> str | None:
        """The trusted peer bridge of ``server`` that is in the room, if any: that
        bridge serves its own server's people there (their commands, their meeting)."""
        for peer in self.peer_bridges:
            if peer.split(":", 1)[1] == server and await self.rooms.is_joined(room_id, peer):
                return peer
        return None

    # Where each bridge serves its people ---------------------------------------------

    async def announce(self, room_id: str) -> None:
        """Tell the room's other bridges where this one serves its people."""
        content = {"version": 1, "url": self.public_url}
        try:
            await self.send_trunk_event(room_id, BRIDGE_ANNOUNCE, content)
        except MatrixRequestError as e:
            log.warning("Could not announce this bridge in %s: %s", room_id, e.message)

    async def door_announced(self, room_id: str, sender: str, content: object) -> None:
        """A bridge said where it serves its people; kept for trusted peers only."""
        if not self.is_peer(sender) or not isinstance(content, dict):
            return
        url = content.get("url")
        parsed = URL(url) if isinstance(url, str) and len(url) <= _MAX_URL else None
        if parsed is None or parsed.scheme not in ("http", "https") or not parsed.host:
            log.warning("Ignoring %s's address in %s: not an http(s) URL", sender, room_id)
            return
        if parsed.query_string or parsed.fragment:
            log.warning("Ignoring %s's address in %s: it has a query", sender, room_id)
            return
        await self.doors.set(room_id, sender, str(parsed).rstrip("/"))
        log.info("%s serves its people in %s at %s", sender, room_id, parsed)

    async def peer_door(self, room_id: str, server: str) -> str | None:
        """The address of the trusted peer bridge that serves ``server``'s people in
        the room, if one is there and said where."""
        peer = await self.peer_serves(room_id, server)
        return await self.doors.get(room_id, peer) if peer is not None else None

    async def room_doors(self, room_id: str) -> list[str]:
        """The addresses of every trusted peer bridge in the room that said where it
        serves its people."""
        doors = []
        for peer in sorted(self.peer_bridges):
            if await self.rooms.is_joined(room_id, peer):
                url = await self.doors.get(room_id, peer)
                if url is not None:
                    doors.append(url)
        return doors

    # TrunkSignals ------------------------------------------------------------------------

    async def send_trunk_event(
        self, room_id: str, event_type: str, content: dict[str, Any]
    ) -> None:
        await self.az.intent.send_message_event(
            RoomID(room_id),
            EventType.find(event_type, EventType.Class.MESSAGE),
            content,  # type: ignore[arg-type]  # mautrix sends plain dicts as they are
        )

    # PeerEnds ----------------------------------------------------------------------------

    async def ended_by_peer(self, meeting: Meeting, summary: MeetingSummary) -> None:
        try:
            await self.meeting_room.retract(meeting)
        except MatrixRequestError as e:
            log.warning("Could not take meeting %s out of its room: %s", meeting.id, e.message)
        text, html = summary_text(summary)
        await self.rooms.send_notice(meeting.room_id, text, html)

    # Meetings hosted elsewhere ---------------------------------------------------------

    async def meeting_state(self, room_id: str, sender: str, content: object) -> None:
        """A peer bridge's ``io.visiobridge.meeting`` state event: keep (or end) this
        bridge's side of the meeting it hosts."""
        if not self.is_peer(sender) or not isinstance(content, dict):
            return
        meeting_id = content.get("meeting_id")
        state = content.get("state")
        if not isinstance(meeting_id, str) or content.get("host") != sender:
            return
        local = self.meetings.live_in_room(room_id)
        if state == "live":
            title = content.get("title")
            started_by = content.get("started_by")
            started_at = content.get("started_at")
            if (
                not isinstance(title, str)
                or not isinstance(started_by, str)
                or not isinstance(started_at, int)
            ):
                log.warning("Ignoring %s's meeting state in %s: malformed", sender, room_id)
                return
            if local is not None and local.id != meeting_id and local.host != sender:
                if _first(
                    (local.started_at, local.host or self.az.intent.mxid), (started_at, sender)
                ) and (local.hosted_elsewhere or await self._can_show(room_id)):
                    await self._keep(local, sender, meeting_id)
                    return
                if not await self._room_shows(room_id, meeting_id):
                    # A late or replayed event: the room's meeting is not that one (now).
                    log.warning(
                        "Ignoring %s's meeting %s in %s: the room does not show it",
                        sender,
                        meeting_id,
                        room_id,
                    )
                    return
                await self._give_way(local, sender, meeting_id)
                local = None
            elif local is not None and local.id != meeting_id and started_at >= local.started_at:
                # Its host moved on to a new meeting: our side of the old one goes.
                await self.meetings.end(local, sender)
                local = None
            known = local is not None and local.id == meeting_id
            kept = await self.meetings.start_hosted_elsewhere(
                room_id, meeting_id, title[:_MAX_TITLE], started_by, started_at, sender
            )
            if kept is not None and not known:
                await self.announce(room_id)
            if kept is None:
                log.warning(
                    "%s hosts meeting %s in %s, but this bridge has another one there",
                    sender,
                    meeting_id,
                    room_id,
                )
        elif local is not None and local.id == meeting_id and local.host == sender:
            log.info("%s ended meeting %s in %s", sender, meeting_id, room_id)
            await self.meetings.end(local, sender)

    # Two meetings started in the same instant --------------------------------------

    async def _keep(self, local: Meeting, sender: str, other_id: str) -> None:
        """Another bridge hosts meeting ``other_id`` in the room where ``local`` (ours,
        or our side of a third bridge's) started first: ``local`` stays the room's
        meeting. Every bridge there decides the same from the same two starts; the one
        that hosts it says so in the room again, in case the other's event came last."""
        log.info(
            "%s started meeting %s in %s after meeting %s: %s stays the room's",
            sender,
            other_id,
            local.room_id,
            local.id,
            local.id,
        )
        if not local.hosted_elsewhere:
            try:
                await self.meeting_room.publish(local)
            except MatrixRequestError as e:
                log.warning("Could not show meeting %s again: %s", local.id, e.message)

    async def _can_show(self, room_id: str) -> bool:
        """Whether this bridge may write the room's meeting state event: a meeting the
        room cannot show, nobody else knows of, so it gives way even when first."""
        return MEETING_STATE not in await self.meeting_room.missing_power(RoomID(room_id))

    async def _room_shows(self, room_id: str, meeting_id: str) -> bool:
        """Whether the room's state event now shows ``meeting_id`` live. In a race, the
        bridge that started first writes it again once it sees the other's, so the
        one that gives way sees it then."""
        try:
            content = await self.az.intent.get_state_event(RoomID(room_id), MEETING_STATE)
        except MatrixRequestError:
            return False
        data = content.serialize() if hasattr(content, "serialize") else content
        return (
            isinstance(data, dict)
            and data.get("meeting_id") == meeting_id
            and data.get("state") == "live"
        )

    async def _give_way(self, local: Meeting, sender: str, other_id: str) -> None:
        """``sender``'s meeting ``other_id`` started first (two people started one in
        the same instant, on two bridges): ``local`` ends, its people are told to join
        again from the room, and this bridge keeps its side of the other meeting."""
        log.warning(
            "Meetings %s and %s started in %s at the same time; %s hosts the room's: ending %s",
            local.id,
            other_id,
            local.room_id,
            sender,
            local.id,
        )
        await self.meetings.end(local, sender, MOVED_TO_PEER)
        if local.hosted_elsewhere:
            return  # the bridge that hosted it gives way too, and says so
        try:
            # Only the widget: the room's state event is the other bridge's now.
            await self.meeting_room.retract(local, state=False)
        except MatrixRequestError as e:
            log.warning("Could not take meeting %s out of its room: %s", local.id, e.message)
        await self.rooms.send_notice(
            local.room_id,
            f'Another agency started a meeting here at the same moment as "{local.title}". '
            "They are one meeting now, the one that started first: join it from the room.",
        )

    async def catch_up(self, room_id: str) -> None:
        """After the bot joins a room: a meeting a peer hosts there may already be live."""
        try:
            events = await self.az.intent.get_state(RoomID(room_id))
        except MatrixRequestError as e:
            log.warning("Could not read the state of %s: %s", room_id, e.message)
            return
        for event in events:
            if event.type == MEETING_STATE and event.state_key == "":
                content = event.content.serialize()
                await self.meeting_state(room_id, event.sender, content)
