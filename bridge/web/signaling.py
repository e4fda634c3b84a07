"""The signaling WebSocket door (docs/protocol.md): one Session per connected browser.

A door only translates: frames in become meeting operations (sign in and join, publish,
answer, mute, hand, leave) on :class:`~bridge.meeting.meetings.Meetings`, and meeting
events out become frames. It decides nothing about the meeting itself.
"""

from __future__ import annotations

import asyncio
import logging
import math
import re
from collections import Counter
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any

from aiohttp import WSMsgType, web
from yarl import URL

from ..auth.signin import Credential, LinkCredential, OpenIDCredential, SignIn
from ..meeting.attendee import RESTARTING, Dismissal
from ..meeting.events import (
    Caption,
    CaptionsStatus,
    CaptureChanged,
    MeetingEvent,
    ParticipantJoined,
    ParticipantLeft,
    ParticipantUpdated,
    SpeakerChanged,
    Track,
    TrackAdded,
    TrackRemoved,
    Welcome,
)
from ..meeting.live import Participant
from ..meeting.meeting import Meeting
from ..meeting.meetings import Meetings
from ..refusal import Refusal
from .avatars import MediaTokens
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
from .outbox import Outbox

log = logging.getLogger("visio.web.signaling")

OUTBOX_LIMIT = 256
# Inbound messages a session may send: a burst, refilled at a steady rate per second.
RATE_BURST = 40
RATE_PER_SECOND = 20.0
# A flood past the rate limit hears ``too_many`` at most this often, however long it is.
TOO_MANY_NOTICE_INTERVAL_S = 1.0
# A full socket cap is logged at most this often (a flood of refusals must not flood logs).
CAP_LOG_INTERVAL_S = 60.0

#: What may be a meeting id in a URL (``new_meeting_id`` makes 12 such characters);
#: anything else is not looked up at all.
MEETING_ID = re.compile(r"^[a-z0-9]{1,64}$")

#: The ICE servers (with fresh TURN credentials) handed to a user's browser.
IceServers = Callable[[str], list[dict[str, Any]]]


def origin_of(text: str) -> str | None:
    """The normalised origin (``https://host[:port]``) of a URL or Origin header, or None
    for anything that is not an http(s) origin (``null``, ``file://``, garbage)."""
    try:
        url = URL(text)
    except ValueError:
        return None
    if url.scheme not in ("http", "https") or not url.host:
        return None
    return str(url.origin())


@dataclass(frozen=True)
class SocketLimits:
    """What a meeting WebSocket must meet to open, and how long it has to sign in (the
    ``web.*`` settings of the same names; see bridge/example-config.yaml)."""

    #: ``web.public_url``: the page's own origin may always open sockets.
    public_url: str
    #: ``web.allowed_origins``: other pages that may open sockets.
    allowed_origins: tuple[str, ...] = ()
    max_sockets: int = 2000
    max_sockets_per_address: int = 50
    max_sockets_per_meeting: int = 500
    #: Seconds from the upgrade to the ``join`` message.
    signin_timeout: float = 10.0

    def origins(self) -> frozenset[str]:
        """Every origin whose pages may open a meeting socket."""
        found = (origin_of(text) for text in (self.public_url, *self.allowed_origins))
        return frozenset(origin for origin in found if origin is not None)


class OpenSockets:
    """The meeting sockets open now: overall, by client address, by meeting.

    Checking and taking a place happen with no await in between, so concurrent upgrades
    cannot all slip under a cap.
    """

    def __init__(self, limits: SocketLimits) -> None:
        self.limits = limits
        self.total = 0
        self.by_address: Counter[str] = Counter()
        self.by_meeting: Counter[str] = Counter()

    def full(self, address: str, meeting_id: str) -> str | None:
        """Which cap a new socket would pass (its config key), or None when it fits."""
        if self.total >= self.limits.max_sockets:
            return "web.max_sockets"
        if self.by_address[address] >= self.limits.max_sockets_per_address:
            return "web.max_sockets_per_address"
        if self.by_meeting[meeting_id] >= self.limits.max_sockets_per_meeting:
            return "web.max_sockets_per_meeting"
        return None

    def take(self, address: str, meeting_id: str) -> None:
        self.total += 1
        self.by_address[address] += 1
        self.by_meeting[meeting_id] += 1

    def release(self, address: str, meeting_id: str) -> None:
        self.total -= 1
        _decrement(self.by_address, address)
        _decrement(self.by_meeting, meeting_id)


def _decrement(counts: Counter[str], key: str) -> None:
    """One fewer; a key at zero goes, so the maps hold only addresses and meetings with
    sockets open (not every address ever seen)."""
    counts[key] -= 1
    if counts[key] <= 0:
        del counts[key]


class RateLimit:
    """A token bucket for inbound messages, and when to say that some were dropped."""

    def __init__(self, now: float) -> None:
        self.tokens = float(RATE_BURST)
        self.last = now
        self.last_notice = -math.inf

    def allow(self, now: float) -> bool:
        self.tokens = min(RATE_BURST, self.tokens + (now - self.last) * RATE_PER_SECOND)
        self.last = now
        if self.tokens < 1:
            return False
        self.tokens -= 1
        return True

    def notice_due(self, now: float) -> bool:
        """Whether to answer a dropped message with ``too_many``: once per interval, so a
        flood is not answered message for message."""
        if now - self.last_notice < TOO_MANY_NOTICE_INTERVAL_S:
            return False
        self.last_notice = now
        return True


def track_json(track: Track) -> dict[str, Any]:
    return {"participant_id": track.participant_id, "source": track.source, "kind": track.kind}


def capture_json(meeting: Meeting) -> dict[str, Any]:
    """What runs on the meeting that everyone must be told about."""
    return {"recording": meeting.recorded, "transcribing": meeting.transcribed}


def credential_of(join: Join) -> Credential:
    if join.auth_kind == "link":
        return LinkCredential(join.token)
    return OpenIDCredential(join.server or "", join.token)


class SignalingDoor:
    """Serves ``WS /meet/{meeting_id}/ws``: signs browsers in and keeps their sessions.

    Before a socket opens it checks the meeting, the page's origin and the socket caps
    (:class:`SocketLimits`), answering plain HTTP when one fails; an open socket has
    ``signin_timeout`` seconds to send ``join``.
    """

    def __init__(
        self,
        meetings: Meetings,
        signin: SignIn,
        ice_servers: IceServers,
        limits: SocketLimits,
        ice_renewal: float | None = None,
    ) -> None:
        self.meetings = meetings
        self.signin = signin
        self.ice_servers = ice_servers
        #: Seconds between fresh ICE server credentials sent to each participant (TURN
        #: credentials are short-lived); None when there is nothing to renew.
        self.ice_renewal = ice_renewal
        self.limits = limits
        self.origins = limits.origins()
        #: Who may fetch avatars (read by :class:`~bridge.web.avatars.AvatarProxy`).
        self.media_tokens = MediaTokens()
        self.sessions: set[Session] = set()
        self.open = OpenSockets(limits)
        self._tasks: set[asyncio.Task[None]] = set()
        self._cap_logged: dict[str, float] = {}

    def spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        """Run background work that :meth:`close` waits for."""
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def handle(self, request: web.Request) -> web.StreamResponse:
        """Check the request, then upgrade it and serve the session until it ends."""
        meeting_id = request.match_info["meeting_id"]
        refused = await self._refusal(request, meeting_id)
        if refused is not None:
            return refused
        # Behind a reverse proxy this is the proxy's address: the per-address cap is
        # then per proxy (docs/protocol.md says so; size the cap, or cap at the proxy).
        address = request.remote or ""
        full = self.open.full(address, meeting_id)
        if full is not None:
            self._log_cap(full)
            return _json_error(503, "The meeting server is busy. Try again in a moment.")
        self.open.take(address, meeting_id)
        try:
            ws = web.WebSocketResponse(heartbeat=20, max_msg_size=4 * MAX_MESSAGE_BYTES)
            await ws.prepare(request)
            session = Session(self, ws, meeting_id)
            self.sessions.add(session)
            try:
                await session.run()
            finally:
                self.sessions.discard(session)
        finally:
            self.open.release(address, meeting_id)
        return ws

    async def _refusal(self, request: web.Request, meeting_id: str) -> web.Response | None:
        """The HTTP answer for a request that gets no socket, or None when it may open.

        The origin is checked first: a page that may not open sockets learns nothing,
        not even whether the meeting exists.
        """
        origin = request.headers.get("Origin")
        # Browsers always send Origin on a WebSocket upgrade, so a request without one is
        # not a page's (a hostile page cannot drop the header): programs such as the
        # aiortc test client and other bridges may connect, and still have to sign in.
        if origin is not None and origin_of(origin) not in self.origins:
            log.debug("Refused a meeting socket from another origin")
            return _json_error(403, "This page may not open meeting connections.")
        if not MEETING_ID.match(meeting_id) or await self.meetings.get(meeting_id) is None:
            return _json_error(404, "This meeting does not exist.")
        return None

    def _log_cap(self, key: str) -> None:
        """Warn that a cap is full, once per interval per cap, so the operator hears of
        it without a flood of refusals flooding the log."""
        now = asyncio.get_running_loop().time()
        if now - self._cap_logged.get(key, -math.inf) >= CAP_LOG_INTERVAL_S:
            self._cap_logged[key] = now
            log.warning("Refusing meeting sockets: %s is reached", key)

    async def close(self) -> None:
        """Close every socket (those still signing in too) and wait for the rest."""
        for session in list(self.sessions):
            await session.dismiss(RESTARTING)
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)


def _json_error(status: int, message: str) -> web.Response:
    return web.json_response({"error": message}, status=status)


class Session:
    """One browser in one meeting: its socket, and the participant it joined as.

    Implements :class:`bridge.meeting.attendee.Attendee`.
    """

    def __init__(self, door: SignalingDoor, ws: web.WebSocketResponse, meeting_id: str) -> None:
        self.door = door
        self.ws = ws
        self.meeting_id = meeting_id
        self.participant: Participant | None = None
        #: Lets this participant's page fetch avatars; issued with ``joined``.
        self.media_token: str | None = None
        self.log = log.getChild(str(id(self)))
        self.outbox: Outbox[dict[str, Any]] = Outbox(
            ws, ws.send_json, OUTBOX_LIMIT, door.spawn, self.log
        )

    # Sending ---------------------------------------------------------------------

    def send(self, message: dict[str, Any]) -> None:
        """Queue a message; a browser that does not keep up is disconnected."""
        self.outbox.send(message)

    def error(self, code: str, message: str, in_reply_to: str | None = None) -> None:
        payload: dict[str, Any] = {"type": "error", "code": code, "message": message}
        if in_reply_to:
            payload["in_reply_to"] = in_reply_to
        self.send(payload)

    # The meeting's side (Attendee) -------------------------------------------------

    def deliver(self, event: MeetingEvent) -> None:
        if isinstance(event, Welcome):
            self.send(self._joined(event))
            if event.meeting.captions_limited is not None:
                self.send(
                    {
                        "type": "captions_status",
                        "limited": True,
                        "message": event.meeting.captions_limited,
                    }
                )
        elif isinstance(event, ParticipantJoined):
            self.send({"type": "participant_joined", "participant": event.participant.describe()})
        elif isinstance(event, ParticipantUpdated):
            self.send({"type": "participant_updated", "participant": event.participant.describe()})
        elif isinstance(event, ParticipantLeft):
            self.send({"type": "participant_left", "participant_id": event.participant_id})
        elif isinstance(event, TrackAdded):
            self.send({"type": "track_added", **track_json(event.track)})
        elif isinstance(event, TrackRemoved):
            self.send({"type": "track_removed", **track_json(event.track)})
        elif isinstance(event, SpeakerChanged):
            self.send({"type": "active_speaker", "participant_id": event.participant_id})
        elif isinstance(event, Caption):
            self.send(
                {"type": "caption", "participant_id": event.participant_id, "text": event.text}
            )
        elif isinstance(event, CaptionsStatus):
            self.send(
                {"type": "captions_status", "limited": event.limited, "message": event.message}
            )
        elif isinstance(event, CaptureChanged):
            self.send(
                {
                    "type": "capture_changed",
                    "recording": event.recording,
                    "transcribing": event.transcribing,
                }
            )

    def _joined(self, welcome: Welcome) -> dict[str, Any]:
        me, meeting = welcome.participant, welcome.meeting
        self.door.media_tokens.revoke(self.media_token)
        self.media_token = self.door.media_tokens.issue(me)
        return {
            "type": "joined",
            "version": PROTOCOL_VERSION,
            "participant_id": me.id,
            "user_id": me.user_id,
            "display_name": me.display_name,
            "avatar_url": me.avatar_url,
            "role": me.role.name.lower(),
            "meeting": {
                "meeting_id": meeting.id,
                "title": meeting.title,
                "state": meeting.state.value,
                **capture_json(meeting),
            },
            "participants": [other.describe() for other in welcome.others],
            "tracks": [track_json(track) for track in welcome.tracks],
            "active_speaker": welcome.active_speaker,
            "ice_servers": self.door.ice_servers(me.user_id),
            "media_token": self.media_token,
        }

    async def send_offer(self, sdp: str) -> None:
        """The router's offer for the receive connection."""
        self.send({"type": "offer", "sdp": sdp})

    async def dismiss(self, dismissal: Dismissal) -> None:
        """End the session from the server side, telling the browser why."""
        if self.outbox.closing:
            return
        if dismissal.code == "meeting_ended":
            self.send({"type": "meeting_ended"})
        else:
            self.error(dismissal.code, dismissal.message)
        await self.outbox.close()

    # Lifecycle -------------------------------------------------------------------

    async def run(self) -> None:
        self.outbox.start("ws-writer")
        renewal: asyncio.Task[None] | None = None
        try:
            if await self._await_join():
                if self.door.ice_renewal is not None:
                    renewal = asyncio.create_task(self._renew_ice(self.door.ice_renewal))
                await self._serve()
        finally:
            if renewal is not None:
                renewal.cancel()
            self.outbox.closing = True
            self.door.media_tokens.revoke(self.media_token)
            if self.participant is not None:
                await self.participant.leave()
            await self.outbox.close()

    async def _renew_ice(self, every: float) -> None:
        """Fresh TURN credentials before the last ones expire: they are short-lived, so
        someone removed from the meeting keeps them only briefly."""
        while self.participant is not None and self.participant.present:
            await asyncio.sleep(every)
            if self.participant.present:
                ice_servers = self.door.ice_servers(self.participant.user_id)
                self.send({"type": "ice_servers", "ice_servers": ice_servers})

    # Joining ---------------------------------------------------------------------

    async def _await_join(self) -> bool:
        try:
            # A deadline for the whole wait: receive(timeout=) restarts its timer on every
            # control frame, so a client sending pings could hold the socket for ever.
            async with asyncio.timeout(self.door.limits.signin_timeout):
                msg = await self.ws.receive()
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
        meetings = self.door.meetings
        meeting = await meetings.get(self.meeting_id)
        if meeting is None:
            raise ProtocolError("meeting_not_found", "This meeting does not exist.")
        identity = await self.door.signin.admit(credential_of(join), meeting)
        # The name typed on the pre-join screen (prefilled with the Matrix one) is this
        # meeting's name; the user id travels with it, so nobody can pass as another.
        display_name = join.display_name or identity.fallback_name
        self.participant = await meetings.join(meeting, identity, display_name, self)
        self.log = log.getChild(self.participant.id)

    # Serving ---------------------------------------------------------------------

    async def _serve(self) -> None:
        loop = asyncio.get_running_loop()
        limit = RateLimit(loop.time())
        async for msg in self.ws:
            if msg.type not in (WSMsgType.TEXT, WSMsgType.BINARY):
                break
            now = loop.time()
            if not limit.allow(now):
                # Dropped unread (parsing it, even to name its type, is the work a flood
                # wants to cause), and the flood hears of it once, not per message.
                if limit.notice_due(now):
                    self.error("too_many", "Too many messages; slow down.")
                continue
            if msg.type == WSMsgType.BINARY:
                self.error("bad_message", "Messages must be JSON text.")
                continue
            try:
                message = parse_message(msg.data)
                if isinstance(message, Leave):
                    return
                await self._handle(message)
            except Refusal as e:
                self.error(e.code, str(e), message_type(msg.data))
            except Exception:
                self.log.exception("Failed to handle a %s message", message_type(msg.data))
                self.error("internal", "The server could not handle that message.")

    async def _handle(self, message: Any) -> None:
        participant = self.participant
        assert participant is not None
        if isinstance(message, Publish):
            answer = await participant.publish(message.sdp, sources=message.sources)
            self.send({"type": "publish_answer", "sdp": answer})
        elif isinstance(message, Answer):
            await participant.accept_answer(message.sdp)
        elif isinstance(message, Mute):
            await participant.set_muted(audio=message.audio, video=message.video)
        elif isinstance(message, Hand):
            await participant.raise_hand(message.raised)
        elif isinstance(message, Ping):
            self.send({"type": "pong"})
        elif isinstance(message, Join):
            raise ProtocolError("bad_message", "You have already joined.")
