"""Calls started from Element (MatrixRTC) are the room's meeting.

When the first Element Call or Element X participant of a room connects to the bridge's
LiveKit door and no meeting is live there, the call starts the room's meeting, as
``!visio start`` would: the room gets the meeting's state event and widget, and a
notice says who started it and how to join from elsewhere.

In a room without the bot the bridge serves the call as lk-jwt-service and LiveKit
would: the meeting runs, nothing is posted to the room (the bot cannot, and was not
asked in), and it ends when its last caller leaves.
"""

from __future__ import annotations

import logging
from html import escape

from ..meeting.meeting import Meeting
from ..meeting.meetings import Change, Meetings
from .meeting_room import MeetingRoom
from .rooms import MatrixRooms

log = logging.getLogger("visio.matrix.calls")


class CallMeetings:
    """Finds or starts the meeting of a room a call is made in."""

    def __init__(self, meetings: Meetings, rooms: MatrixRooms, meeting_room: MeetingRoom) -> None:
        self.meetings = meetings
        self.rooms = rooms
        self.meeting_room = meeting_room
        meetings.listeners.append(self._changed)

    async def meeting_for_call(self, room_id: str, user_id: str) -> Meeting:
        live = self.meetings.live_in_room(room_id)
        if live is not None:
            return live
        if not await self.rooms.bot_joined(room_id):
            meeting, created = await self.meetings.start(room_id, "Call", user_id)
            if created:
                log.info(
                    "A call by %s started meeting %s in %s (no bot there)",
                    user_id,
                    meeting.id,
                    room_id,
                )
            return meeting
        name = await self.rooms.room_name(room_id)
        title = f"{name} call" if name else "Call"
        meeting, created = await self.meetings.start(room_id, title, user_id)
        if created:
            log.info("A call by %s started meeting %s in %s", user_id, meeting.id, room_id)
            try:
                await self.meeting_room.publish(meeting)
                url = self.meeting_room.join_url(meeting)
                who = await self.rooms.display_name(room_id, user_id) or user_id
                await self.rooms.send_notice(
                    room_id,
                    f"{who} started a call; it is this room's meeting. Join: {url}",
                    f"{escape(who)} started a call; it is this room's meeting. "
                    f'<a href="{escape(url)}">Join the meeting</a>',
                )
            except Exception:
                # The call goes on; only the room's view of it is missing.
                log.exception("Could not announce the call's meeting in %s", room_id)
        return meeting

    async def _changed(self, meeting: Meeting, change: Change) -> None:
        """A call in a room without the bot ends with its last caller: nobody there can
        end it, and nothing in the room shows it."""
        if (
            change is Change.LEFT
            and meeting.is_live
            and not meeting.participants
            and not await self.rooms.bot_joined(meeting.room_id)
        ):
            await self.meetings.end(meeting, meeting.started_by)
            log.info("Call %s in %s ended with its last caller", meeting.id, meeting.room_id)
