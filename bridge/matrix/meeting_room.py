"""What a meeting looks like in its Matrix room: the widget, its layout, the state event.

The state event (``io.visiobridge.meeting``, state key "") describes the meeting for
clients and for other agencies' bridges; the widget (``im.vector.modular.widgets``)
shows it in Element, pinned above the timeline by ``io.element.widgets.layout``.
"""

from __future__ import annotations

import logging
from typing import Any, Protocol
from urllib.parse import quote

from mautrix.appservice import AppService, IntentAPI
from mautrix.appservice.state_store.asyncpg import PgASStateStore
from mautrix.errors import MatrixRequestError
from mautrix.types import EventType, RoomID

from ..meeting.meeting import Meeting
from .dispatch import RoomQueues
from .rooms import MatrixRooms

MEETING_STATE = EventType.find("io.visiobridge.meeting", EventType.Class.STATE)
WIDGET_STATE = EventType.find("im.vector.modular.widgets", EventType.Class.STATE)
LAYOUT_STATE = EventType.find("io.element.widgets.layout", EventType.Class.STATE)

# Element fills these in when it loads the widget.
_WIDGET_VARIABLES = (
    "userId=$matrix_user_id&roomId=$matrix_room_id&widgetId=$matrix_widget_id"
    "&displayName=$matrix_display_name&avatarUrl=$matrix_avatar_url&theme=$theme"
)

log = logging.getLogger("visio.matrix.room")


class MeetingRoom:
    """Publishes a meeting's widget, layout and state event in its room."""

    def __init__(
        self, az: AppService, state_store: PgASStateStore, rooms: MatrixRooms, public_url: str
    ) -> None:
        self.az = az
        self.state_store = state_store
        self.rooms = rooms
        self.public_url = public_url.rstrip("/")
        # The meeting state content last sent to each room, so repeats are not sent.
        self._written: dict[str, dict[str, Any]] = {}

    @property
    def bot(self) -> IntentAPI:
        return self.az.intent

    def join_url(self, meeting: Meeting) -> str:
        return f"{self.public_url}/meet/{quote(meeting.id)}"

    def widget_url(self, meeting: Meeting) -> str:
        return f"{self.join_url(meeting)}?widget=1&{_WIDGET_VARIABLES}"

    def state_content(self, meeting: Meeting) -> dict[str, Any]:
        content: dict[str, Any] = {
            "meeting_id": meeting.id,
            "title": meeting.title,
            "state": meeting.state.value,
            "host": self.bot.mxid,
            "join_url": self.join_url(meeting),
            "started_by": meeting.started_by,
            "started_at": meeting.started_at,
            "participant_count": len(meeting.participants),
        }
        if meeting.ended_at is not None:
            content["ended_at"] = meeting.ended_at
        return content

    def widget_content(self, meeting: Meeting) -> dict[str, Any]:
        return {
            "type": "m.custom",
            "url": self.widget_url(meeting),
            "name": meeting.title,
            "creatorUserId": self.bot.mxid,
            "data": {"title": meeting.title, "meeting_id": meeting.id},
        }

    async def missing_power(self, room_id: RoomID) -> list[EventType]:
        """The state event types the bot may not send in this room."""
        levels = await self.rooms.power_levels(room_id)
        create = await self.state_store.get_create(room_id)
        bot_level = levels.get_user_level(self.bot.mxid, create)
        return [
            event_type
            for event_type in (MEETING_STATE, WIDGET_STATE, LAYOUT_STATE)
            if bot_level < levels.get_event_level(event_type)
        ]

    async def publish(self, meeting: Meeting) -> list[str]:
        """Show a started meeting in its room; returns the event types the bot lacked
        the power to send (nothing else is left undone)."""
        room_id = RoomID(meeting.room_id)
        missing = await self.missing_power(room_id)
        if MEETING_STATE not in missing:
            await self._send(room_id, MEETING_STATE, "", self.state_content(meeting))
        if WIDGET_STATE not in missing:
            await self._send(
                room_id, WIDGET_STATE, meeting.widget_id, self.widget_content(meeting)
            )
            if LAYOUT_STATE not in missing:
                await self._pin(room_id, meeting.widget_id)
        return [str(event_type) for event_type in missing]

    async def update_state(self, meeting: Meeting) -> None:
        """Refresh the state event (participants come and go); nothing is sent when
        the room already shows this content."""
        room_id = RoomID(meeting.room_id)
        content = self.state_content(meeting)
        if self._written.get(room_id) == content:
            return
        if MEETING_STATE in await self.missing_power(room_id):
            return
        await self._send(room_id, MEETING_STATE, "", content)

    async def retract(
        self,
        meeting: Meeting,
        room_id: RoomID | None = None,
        ended: bool = True,
        state: bool = True,
    ) -> None:
        """Take the meeting out of a room (its own by default): the widget goes, and the
        state event says it ended there, or, when it moved on (``ended=False``), that
        it moved. ``state=False`` leaves the state event alone (another bridge's meeting
        is the room's now)."""
        room_id = room_id or RoomID(meeting.room_id)
        missing = await self.missing_power(room_id)
        if state and MEETING_STATE not in missing:
            content = self.state_content(meeting)
            if not ended:
                content = {**content, "state": "moved", "room_id": meeting.room_id}
            await self._send(room_id, MEETING_STATE, "", content)
        if WIDGET_STATE not in missing:
            await self._send(room_id, WIDGET_STATE, meeting.widget_id, {})
        if LAYOUT_STATE not in missing:
            await self._unpin(room_id, meeting.widget_id)

    async def _layout(self, room_id: RoomID) -> dict[str, Any]:
        try:
            content = await self.bot.get_state_event(room_id, LAYOUT_STATE)
        except MatrixRequestError:
            return {}
        data: Any = content.serialize() if hasattr(content, "serialize") else content
        return dict(data) if isinstance(data, dict) else {}

    async def _pin(self, room_id: RoomID, widget_id: str) -> None:
        layout = await self._layout(room_id)
        widgets = layout.get("widgets")
        widgets = dict(widgets) if isinstance(widgets, dict) else {}
        widgets[widget_id] = {"container": "top", "index": 0, "width": 100, "height": 40}
        await self._send(room_id, LAYOUT_STATE, "", {**layout, "widgets": widgets})

    async def _unpin(self, room_id: RoomID, widget_id: str) -> None:
        layout = await self._layout(room_id)
        widgets = layout.get("widgets")
        if not isinstance(widgets, dict) or widget_id not in widgets:
            return
        widgets = {key: value for key, value in widgets.items() if key != widget_id}
        await self._send(room_id, LAYOUT_STATE, "", {**layout, "widgets": widgets})

    async def _send(
        self, room_id: RoomID, event_type: EventType, state_key: str, content: dict[str, Any]
    ) -> None:
        await self.bot.send_state_event(room_id, event_type, content, state_key=state_key)
        if event_type == MEETING_STATE:
            self._written[room_id] = content


class StatePublisher(Protocol):
    async def update_state(self, meeting: Meeting) -> None: ...


class StateUpdates:
    """Coalesces state event updates per room: however many joins and leaves happen
    while one update waits in the room's queue, one update runs, with the state as it
    is then (so the final state is always written, and bursts write once)."""

    def __init__(self, queues: RoomQueues, publisher: StatePublisher) -> None:
        self.queues = queues
        self.publisher = publisher
        self._pending: set[str] = set()

    def request(self, meeting: Meeting) -> None:
        room_id = meeting.room_id
        if room_id in self._pending:
            return
        self._pending.add(room_id)

        async def update() -> None:
            self._pending.discard(room_id)
            if meeting.is_live:
                await self.publisher.update_state(meeting)

        self.queues.submit(room_id, update)
