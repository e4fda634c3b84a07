"""The signaling WebSocket: one Session per connected browser (docs/protocol.md)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from typing import TYPE_CHECKING, Any

from aiohttp import WSMsgType, web
from mautrix.errors import MatrixRequestError
from mautrix.types import RoomID, UserID

from ..media.errors import MediaError
from ..media.router import ParticipantMedia
from ..meeting.meeting import Meeting, Participant
from ..meeting.meetings import MeetingError
from ..meeting.roles import Level
from ..refusal import Refusal
from .ice import browser_ice_servers
from .live import LiveMeeting, participant_json
from .messages import (
    MAX_MESSAGE_BYTES,
    PROTOCOL_VERSION,
    Answer,
    Hand,
    Join,
    Leave,
    Mute,
    Ping,
    ProtocolError,
    Publish,
    message_type,
    parse_message,
)

if TYPE_CHECKING:
    from ..context import Bridge

log = logging.getLogger("visio.web.signaling")

JOIN_TIMEOUT_S = 30
OUTBOX_LIMIT = 256
# Inbound messages a session may send: a burst, refilled at a steady rate per second.
RATE_BURST = 40
RATE_PER_SECOND = 20.0


class _RateLimit:
    def __init__(self, now: float) -> None:
        self.tokens = float(RATE_BURST)
        self.last = now

    def allow(self, now: float) -> bool:
        self.tokens = min(RATE_BURST, self.tokens + (now - self.last) * RATE_PER_SECOND)
        self.last = now
        if self.tokens < 1:
            return False
        self.tokens -= 1
        return True


class Session:
    """One browser in one meeting: its socket, identity, media and participant."""

    def __init__(self, bridge: Bridge, ws: web.WebSocketResponse, meeting_id: str) -> None:
        self.bridge = bridge
        self.ws = ws
        self.meeting_id = meeting_id
        self.participant_id = "p" + secrets.token_hex(6)
        self.participant: Participant | None = None
        self.meeting: Meeting | None = None
        self.live: LiveMeeting | None = None
        self.media: ParticipantMedia | None = None
        self.log = log.getChild(self.participant_id)
        self._outbox: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue()
        self._writer_task: asyncio.Task[None] | None = None
        self._closing = False
        self._replaced = False

    # Sending ---------------------------------------------------------------------

    def send(self, message: dict[str, Any]) -> None:
        """Queue a message; a browser that does not keep up is disconnected."""
        if self._closing:
            return
        if self._outbox.qsize() >= OUTBOX_LIMIT:
            self.log.warning("Disconnecting a session that does not read its messages")
            self.bridge.web.spawn(self.close(None, None))
            return
        self._outbox.put_nowait(message)

    def error(self, code: str, message: str, in_reply_to: str | None = None) -> None:
        payload: dict[str, Any] = {"type": "error", "code": code, "message": message}
        if in_reply_to:
            payload["in_reply_to"] = in_reply_to
        self.send(payload)

    async def _writer(self) -> None:
        while True:
            message = await self._outbox.get()
            if message is None or self.ws.closed:
                return
            try:
                await self.ws.send_json(message)
            except (ConnectionError, RuntimeError):
                return

    async def send_offer(self, sdp: str) -> None:
        """The router's offer for the receive connection."""
        self.send({"type": "offer", "sdp": sdp})

    # Lifecycle -------------------------------------------------------------------

    async def run(self) -> None:
        self._writer_task = asyncio.create_task(
            self._writer(), name=f"ws-writer:{self.participant_id}"
        )
        try:
            if await self._await_join():
                await self._serve()
        finally:
            await self._cleanup()
            await self._flush_and_close()

    async def _flush_and_close(self) -> None:
        """Send what is queued (the last words: why the session ends), then close."""
        self._outbox.put_nowait(None)
        if self._writer_task is not None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(self._writer_task), 5)
            self._writer_task.cancel()
        await self.ws.close()

    async def close(self, code: str | None, message: str | None) -> None:
        """End the session from the server side, telling the browser why."""
        if self._closing:
            return
        if code == "meeting_ended":
            self.send({"type": "meeting_ended"})
        elif code is not None and message is not None:
            self.error(code, message)
        if code == "replaced":
            self._replaced = True
        self._closing = True
        await self._flush_and_close()

    async def _cleanup(self) -> None:
        self._closing = True
        if self.media is not None:
            await self.media.close()
        if self.live is not None:
            self.live.remove(self)
            if self.meeting is not None and self.participant is not None and not self._replaced:
                with contextlib.suppress(MeetingError):
                    await self.bridge.meetings.leave(self.meeting, self.participant.user_id)
            await self.bridge.web.live.release_if_empty(self.live)
        if self.participant is not None:
            self.log.info("%s left meeting %s", self.participant.user_id, self.meeting_id)

    # Joining ---------------------------------------------------------------------

    async def _await_join(self) -> bool:
        try:
            msg = await self.ws.receive(timeout=JOIN_TIMEOUT_S)
        except TimeoutError:
            self.error("not_joined", "No join message came in time.")
            return False
        if msg.type != WSMsgType.TEXT:
            if msg.type == WSMsgType.BINARY:
                self.error("bad_message", "Messages must be JSON text.")
            return False
        try:
            message = parse_message(msg.data)
            if not isinstance(message, Join):
                raise ProtocolError("not_joined", "Join the meeting first.")
            await self._join(message)
        except Refusal as e:
            self.log.info("Join refused (%s): %s", e.code, e)
            self.error(e.code, str(e), message_type(msg.data))
            return False
        return True

    async def _join(self, join: Join) -> None:
        meeting = await self.bridge.meetings.get(self.meeting_id)
        if meeting is None:
            raise ProtocolError("meeting_not_found", "This meeting does not exist.")
        user_id = await self._authenticate(join)
        if not meeting.is_live:
            raise ProtocolError("meeting_ended", "This meeting has ended.")
        level = self.bridge.config.permission_level(user_id)
        if level < Level.USER:
            raise ProtocolError("unauthorized", "You are not allowed to use Visio Bridge.")
        profile = await self._room_profile(meeting.room_id, user_id)
        if profile is None:
            raise ProtocolError(
                "unauthorized", "Only members of the meeting's room may join this meeting."
            )
        power, role = await self.bridge.matrix.role_in_room(
            RoomID(meeting.room_id), UserID(user_id), level
        )
        assert role is not None
        name, avatar = profile
        # The name typed on the pre-join screen (prefilled with the Matrix one) is this
        # meeting's name; the user id travels with it, so nobody can pass as another.
        display_name = join.display_name or name or user_id.split(":", 1)[0].lstrip("@")
        live = self.bridge.web.live.get_or_create(meeting)
        live.reserve(self.participant_id)
        self.meeting, self.live = meeting, live
        previous = live.session_of(user_id)
        if previous is not None:
            await previous.close(
                "replaced", "You joined this meeting again from another window or device."
            )
        self.participant = await self.bridge.meetings.join(
            meeting, user_id, display_name, role, avatar
        )
        self.media = live.router.add_participant(self.participant_id, send_offer=self.send_offer)
        now_s = self.bridge.clock.now_ms() // 1000
        self.send(
            {
                "type": "joined",
                "version": PROTOCOL_VERSION,
                "participant_id": self.participant_id,
                "user_id": user_id,
                "display_name": display_name,
                "avatar_url": avatar,
                "role": role.name.lower(),
                "meeting": {
                    "meeting_id": meeting.id,
                    "title": meeting.title,
                    "state": meeting.state.value,
                },
                "participants": live.others(self.participant_id),
                "tracks": list(live.tracks.values()),
                "active_speaker": live.active_speaker,
                "ice_servers": browser_ice_servers(self.bridge.config, user_id, now_s),
            }
        )
        live.admit(self)
        self.log.info("%s joined meeting %s (power %s)", user_id, meeting.id, power)

    async def _authenticate(self, join: Join) -> str:
        if join.auth_kind == "link":
            grant = self.bridge.web.links.check(
                join.token, self.meeting_id, self.bridge.clock.now_ms() // 1000
            )
            return grant.user_id
        return await self.bridge.web.openid.verify(join.server, join.token)

    async def _room_profile(self, room_id: str, user_id: str) -> tuple[str, str | None] | None:
        """(display name, avatar) of a joined member of the room, or None."""
        try:
            members = await self.bridge.bot.get_joined_members(RoomID(room_id))
        except MatrixRequestError as e:
            self.log.warning("Could not read the members of %s: %s", room_id, e.message)
            raise ProtocolError("internal", "The meeting's room could not be checked.") from e
        member = members.get(user_id)  # type: ignore[call-overload]
        if member is None:
            return None
        return member.displayname or "", member.avatar_url or None

    # Serving ---------------------------------------------------------------------

    async def _serve(self) -> None:
        loop = asyncio.get_running_loop()
        limit = _RateLimit(loop.time())
        async for msg in self.ws:
            if msg.type == WSMsgType.BINARY:
                self.error("bad_message", "Messages must be JSON text.")
                continue
            if msg.type != WSMsgType.TEXT:
                break
            if not limit.allow(loop.time()):
                self.error("too_many", "Too many messages; slow down.", message_type(msg.data))
                continue
            try:
                message = parse_message(msg.data)
                if isinstance(message, Leave):
                    return
                await self._handle(message)
            except ProtocolError as e:
                self.error(e.code, str(e), message_type(msg.data))
            except MediaError as e:
                self.error("bad_sdp", str(e), message_type(msg.data))
            except Exception:
                self.log.exception("Failed to handle a %s message", message_type(msg.data))
                self.error("internal", "The server could not handle that message.")

    async def _handle(self, message: Any) -> None:
        assert self.media is not None and self.participant is not None and self.live
        if isinstance(message, Publish):
            answer = await self.media.publish(message.sdp, sources=message.sources)
            self.send({"type": "publish_answer", "sdp": answer})
        elif isinstance(message, Answer):
            await self.media.accept_answer(message.sdp)
        elif isinstance(message, Mute):
            self.participant.audio_muted = message.audio
            self.participant.video_muted = message.video
            self.live.updated(self)
        elif isinstance(message, Hand):
            self.participant.hand_raised = message.raised
            self.live.updated(self)
        elif isinstance(message, Ping):
            self.send({"type": "pong"})
        elif isinstance(message, Join):
            raise ProtocolError("bad_message", "You have already joined.")


async def signaling_handler(bridge: Bridge, request: web.Request) -> web.StreamResponse:
    """``WS /meet/{meeting_id}/ws``."""
    ws = web.WebSocketResponse(heartbeat=20, max_msg_size=4 * MAX_MESSAGE_BYTES)
    await ws.prepare(request)
    session = Session(bridge, ws, request.match_info["meeting_id"])
    bridge.web.sessions.add(session)
    try:
        await session.run()
    finally:
        bridge.web.sessions.discard(session)
    return ws


__all__ = ["Session", "participant_json", "signaling_handler"]
