"""LiveKit's signaling protocol at ``/livekit/rtc``: the door Element Call comes through.

livekit-client (which Element Call and Element X run) connects a WebSocket to
``<url>/rtc?access_token=<JWT>&...`` and speaks protobuf ``SignalRequest`` /
``SignalResponse`` messages (:mod:`livekit.protocol.rtc`). Like the bridge's own
signaling door, this one only translates: a valid access token (signed by the token
service, :mod:`bridge.livekit.service`) becomes a join of the Matrix room's meeting, and
LiveKit requests become meeting operations; meeting events become LiveKit responses.

What it speaks (docs/livekit-protocol-notes.md has the client's side, message by
message):

- the legacy two-connection path: the client offers its *publisher* connection (first
  with its data channels, then again whenever it adds or removes a track) and the server
  offers the *subscriber* connection whenever tracks come and go. ``/rtc/v1`` (one
  connection) answers 404, and its ``/validate`` says so, which makes the client fall
  back to ``/rtc``.
- ``join`` first, then ``add_track`` / ``track_published`` matched by ``cid``, offers and
  answers with echoed ids and ``mid_to_track_id``, trickle from the client (the server's
  candidates are in its SDP), participant updates, speakers, mute, ping / pong, leave.
- refusals the protocol's way: HTTP 401/403 on the upgrade (and the same on
  ``/rtc/validate``, which the client asks to learn why), ``request_response`` for a
  refused request, ``leave`` with a reason when the server ends the session.
- resume is switched off (``resume_connection: DISABLED``): aiortc cannot restart ICE,
  so a client that loses its connection rejoins in full, and replaces its old self.
"""

from __future__ import annotations

import asyncio
import json
import logging
import secrets
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from dataclasses import dataclass
from typing import Any

from aiohttp import WSMsgType, web
from google.protobuf import json_format
from google.protobuf.message import DecodeError
from livekit.protocol import models, rtc

from ..auth.signin import SignIn
from ..clock import Clock
from ..meeting.attendee import RESTARTING, Dismissal
from ..meeting.events import (
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
from ..meeting.identity import Identity
from ..meeting.live import Participant
from ..meeting.meeting import Meeting
from ..meeting.meetings import Meetings
from ..refusal import Refusal
from ..web.outbox import Outbox
from ..web.signaling import IceServers, OpenSockets, RateLimit
from .delayed import DelayedLeaves
from .messages import (
    PROTOCOL_VERSION,
    SERVER_VERSION,
    SOURCES,
    Person,
    ice_servers,
    mid_to_track_id,
    participant_info,
    room_sid,
    section_msids,
    track_info,
    track_sid,
)
from .naming import room_name
from .tokens import AccessTokens, TokenError

log = logging.getLogger("visio.livekit.rtc")

#: Largest signaling message taken from a client (an offer with a few sections is ~10 KiB).
MAX_MESSAGE_BYTES = 128 * 1024
OUTBOX_LIMIT = 512
#: Seconds between the client's pings, and without any message before it gives up.
PING_INTERVAL_S = 10
PING_TIMEOUT_S = 30
#: Bad frames (undecodable, or of the wrong kind) a session may send before it is closed.
MAX_BAD_FRAMES = 20

#: Starts the room's meeting for a call made from Element (or returns the live one).
StartCall = Callable[[str, str], Awaitable[Meeting]]

_CORS = {"Access-Control-Allow-Origin": "*"}
_DISMISSALS: dict[str, tuple[int, int]] = {
    # Dismissal code: (DisconnectReason, LeaveRequest.Action).
    "meeting_ended": (models.DisconnectReason.ROOM_DELETED, rtc.LeaveRequest.DISCONNECT),
    "replaced": (models.DisconnectReason.DUPLICATE_IDENTITY, rtc.LeaveRequest.DISCONNECT),
    "reconnect": (models.DisconnectReason.SERVER_SHUTDOWN, rtc.LeaveRequest.RECONNECT),
    "unauthorized": (models.DisconnectReason.PARTICIPANT_REMOVED, rtc.LeaveRequest.DISCONNECT),
}


@dataclass(frozen=True)
class Admission:
    """A checked connection request: who, into which meeting, as which LiveKit identity."""

    identity: str
    meeting: Meeting
    user: Identity
    room_id: str


class LiveKitDoor:
    """Serves ``/livekit/rtc`` and keeps the LiveKit sessions of every meeting."""

    def __init__(
        self,
        meetings: Meetings,
        signin: SignIn,
        tokens: AccessTokens,
        ice: IceServers,
        sockets: OpenSockets,
        start_call: StartCall,
        clock: Clock,
        delayed: DelayedLeaves | None = None,
    ) -> None:
        self.meetings = meetings
        self.signin = signin
        self.tokens = tokens
        self.ice = ice
        self.sockets = sockets
        self.start_call = start_call
        self.clock = clock
        #: Delayed leave events handed over with the token (sent when a session ends).
        self.delayed = delayed
        #: Seconds between fresh access tokens sent to each session (half their life).
        self.token_refresh_s = tokens.lifetime_s / 2
        self.sessions: set[LiveKitSession] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._version = 0
        #: The simulcast layers each video track's publisher declared (add_track), by
        #: track sid: what a subscriber's requested size is matched against.
        self.video_layers: dict[str, list[models.VideoLayer]] = {}

    def spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        """Run background work that :meth:`close` waits for."""
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def next_version(self) -> int:
        """ParticipantInfo versions only grow, across every session of the bridge."""
        self._version += 1
        return self._version

    @staticmethod
    def identity_of(participant: Participant) -> str:
        """Their LiveKit identity: that of their MatrixRTC membership, so that Element
        Call lists them; their user id when nobody publishes one."""
        return participant.rtc_identity or participant.user_id

    def routes(self, app: web.Application, prefix: str = "/livekit") -> None:
        app.router.add_get(f"{prefix}/rtc", self.handle)
        app.router.add_get(f"{prefix}/rtc/validate", self.validate)
        # The one-connection protocol (v1) is not spoken: these 404s (with CORS, or the
        # browser hides them) make livekit-client fall back to /rtc.
        app.router.add_get(f"{prefix}/rtc/v1", self.no_v1)
        app.router.add_get(f"{prefix}/rtc/v1/validate", self.no_v1)

    async def no_v1(self, _: web.Request) -> web.Response:
        return web.Response(status=404, text="v1 not supported", headers=_CORS)

    async def validate(self, request: web.Request) -> web.Response:
        """Why a WebSocket was refused (browsers cannot read the upgrade's status)."""
        try:
            await self._admit(request)
        except Refusal as e:
            return _refusal_response(e)
        return web.Response(text="success", headers=_CORS)

    async def _admit(self, request: web.Request) -> Admission:
        token = request.query.get("access_token")
        header = request.headers.get("Authorization", "")
        if token is None and header.startswith("Bearer "):
            token = header.removeprefix("Bearer ")
        grant = self.tokens.check(token, self.clock.now_ms() // 1000)
        if (
            grant.user_id is None
            or grant.room_id is None
            or room_name(grant.room_id) != grant.room
        ):
            raise TokenError("unauthorized", "The access token was not made for this server.")
        if not grant.can_publish or not grant.can_subscribe:
            raise TokenError(
                "unauthorized", "The access token must allow publishing and subscribing."
            )
        identity = await self.signin.readmit_to_room(grant.user_id, grant.room_id)
        meeting = await self.start_call(grant.room_id, identity.user_id)
        return Admission(grant.identity, meeting, identity, grant.room_id)

    async def handle(self, request: web.Request) -> web.StreamResponse:
        try:
            admission = await self._admit(request)
        except Refusal as e:
            log.info("LiveKit connection refused (%s): %s", e.code, e)
            return _refusal_response(e)
        address = request.remote or ""
        meeting_id = admission.meeting.id
        if self.sockets.full(address, meeting_id) is not None:
            return web.Response(status=503, text="The meeting server is busy.", headers=_CORS)
        self.sockets.take(address, meeting_id)
        try:
            ws = web.WebSocketResponse(heartbeat=20, max_msg_size=MAX_MESSAGE_BYTES)
            await ws.prepare(request)
            session = LiveKitSession(self, ws, admission)
            self.sessions.add(session)
            try:
                await session.run()
            finally:
                self.sessions.discard(session)
        finally:
            self.sockets.release(address, meeting_id)
        return ws

    async def close(self) -> None:
        for session in list(self.sessions):
            await session.dismiss(RESTARTING)
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)


def _refusal_response(error: Refusal) -> web.Response:
    """LiveKit's answers: 401 for a token, 403 for a user who may not join, plain text
    (livekit-client shows it), CORS so that the page can read it."""
    status = {"unauthorized": 401, "internal": 500}.get(error.code, 403)
    return web.Response(status=status, text=str(error), headers=_CORS)


class LiveKitSession:
    """One LiveKit client in one meeting. Implements :class:`~bridge.meeting.attendee.Attendee`."""

    def __init__(self, door: LiveKitDoor, ws: web.WebSocketResponse, admission: Admission) -> None:
        self.door = door
        self.ws = ws
        self.admission = admission
        self.participant: Participant | None = None
        self.people: dict[str, Person] = {}
        #: Tracks this client announced with add_track, by cid: the source each is.
        self.pending: dict[str, str] = {}
        self.log = log.getChild(str(id(self)))
        self.outbox: Outbox[rtc.SignalResponse] = Outbox(
            ws,
            lambda response: ws.send_bytes(response.SerializeToString()),
            OUTBOX_LIMIT,
            door.spawn,
            self.log,
        )
        self._offer_id = 0
        self._bad_frames = 0

    # Sending -------------------------------------------------------------------------

    def send(self, response: rtc.SignalResponse) -> None:
        """Queue a response; a client that does not keep up is disconnected."""
        self.outbox.send(response)

    def _update(self, *people: Person, left: Any = None) -> None:
        infos = [
            participant_info(person, self.door.next_version(), left=left) for person in people
        ]
        self.send(rtc.SignalResponse(update=rtc.ParticipantUpdate(participants=infos)))

    # The meeting's side (Attendee) ---------------------------------------------------

    def deliver(self, event: MeetingEvent) -> None:
        if isinstance(event, Welcome):
            self._welcome(event)
        elif isinstance(event, ParticipantJoined):
            person = self._person(event.participant)
            self._update(person)
        elif isinstance(event, ParticipantUpdated):
            known = self.people.get(event.participant.id)
            if known is not None:
                known.participant = event.participant
                self._update(known)
        elif isinstance(event, ParticipantLeft):
            gone = self.people.pop(event.participant_id, None)
            if gone is not None:
                self._update(gone, left=models.DisconnectReason.CLIENT_INITIATED)
        elif isinstance(event, TrackAdded | TrackRemoved):
            owner = self.people.get(event.track.participant_id)
            if owner is None:
                return
            if isinstance(event, TrackAdded):
                owner.tracks[event.track.source] = event.track
            else:
                owner.tracks.pop(event.track.source, None)
            self._update(owner)
        elif isinstance(event, SpeakerChanged):
            self._speakers(event.participant_id)
        elif isinstance(event, CaptureChanged):
            # livekit-client raises RecordingStatusChanged; Element Call can show it.
            room = self._room(event.meeting)
            room.active_recording = event.recording or event.transcribing
            update = rtc.RoomUpdate(room=room)
            self.send(rtc.SignalResponse(room_update=update))

    def _room(self, meeting: Meeting) -> models.Room:
        return models.Room(
            sid=room_sid(meeting.id),
            name=room_name(meeting.room_id),
            creation_time=meeting.started_at // 1000,
            creation_time_ms=meeting.started_at,
            num_participants=len(self.people),
            # Transcription is capture too: people are told either way.
            active_recording=meeting.recorded or meeting.transcribed,
        )

    def _person(self, participant: Participant) -> Person:
        person = Person(participant, self.door.identity_of(participant), {})
        self.people[participant.id] = person
        return person

    def _welcome(self, welcome: Welcome) -> None:
        me = self._person(welcome.participant)
        for other in welcome.others:
            self._person(other)
        for track in welcome.tracks:
            owner = self.people.get(track.participant_id)
            if owner is not None:
                owner.tracks[track.source] = track
        meeting = welcome.meeting
        version = self.door.next_version
        join = rtc.JoinResponse(
            room=self._room(meeting),
            participant=participant_info(me, version()),
            other_participants=[
                participant_info(person, version())
                for pid, person in self.people.items()
                if pid != me.participant.id
            ],
            server_version=SERVER_VERSION,
            server_info=models.ServerInfo(
                edition=models.ServerInfo.Standard,
                version=SERVER_VERSION,
                protocol=PROTOCOL_VERSION,
                node_id="visio-bridge",
            ),
            ice_servers=ice_servers(self.door.ice(me.participant.user_id)),
            # The client offers its publisher connection first; the server offers the
            # subscriber connection once there is something to receive.
            subscriber_primary=False,
            client_configuration=models.ClientConfiguration(
                resume_connection=models.ClientConfigSetting.DISABLED
            ),
            ping_interval=PING_INTERVAL_S,
            ping_timeout=PING_TIMEOUT_S,
        )
        self.send(rtc.SignalResponse(join=join))
        if welcome.active_speaker is not None:
            self._speakers(welcome.active_speaker)

    def _speakers(self, participant_id: str | None) -> None:
        speakers = [
            models.SpeakerInfo(
                sid=pid, level=1.0 if pid == participant_id else 0.0, active=pid == participant_id
            )
            for pid in self.people
        ]
        self.send(rtc.SignalResponse(speakers_changed=rtc.SpeakersChanged(speakers=speakers)))

    async def send_offer(self, sdp: str) -> None:
        """The router's offer for the subscriber connection."""
        self._offer_id += 1
        self.send(
            rtc.SignalResponse(
                offer=rtc.SessionDescription(
                    type="offer", sdp=sdp, id=self._offer_id, mid_to_track_id=mid_to_track_id(sdp)
                )
            )
        )

    async def dismiss(self, dismissal: Dismissal) -> None:
        if self.outbox.closing:
            return
        reason, action = _DISMISSALS.get(
            dismissal.code, (models.DisconnectReason.UNKNOWN_REASON, rtc.LeaveRequest.DISCONNECT)
        )
        self.send(rtc.SignalResponse(leave=rtc.LeaveRequest(reason=reason, action=action)))  # type: ignore[arg-type]
        await self.outbox.close()

    # Lifecycle -----------------------------------------------------------------------

    async def run(self) -> None:
        self.outbox.start("livekit-writer")
        delayed, key = self.door.delayed, (self.admission.room_id, self.admission.identity)
        joined = False
        refresher: asyncio.Task[None] | None = None
        try:
            joined = await self._join()
            if joined:
                if delayed is not None:
                    delayed.connected(*key)
                refresher = asyncio.create_task(self._refresh_token())
                await self._serve()
        finally:
            self.outbox.closing = True
            if refresher is not None:
                refresher.cancel()
            if joined and delayed is not None:
                delayed.disconnected(*key)
            if self.participant is not None:
                self.door.video_layers.pop(track_sid(self.participant.id, "camera"), None)
                await self.participant.leave()
            await self.outbox.close()

    async def _refresh_token(self) -> None:
        """A fresh access token before the last one expires, as a LiveKit server sends
        it: livekit-client rejoins with the newest one after losing its connection, and
        the token service's tokens last an hour, shorter than many meetings."""
        admission = self.admission
        while True:
            await asyncio.sleep(self.door.token_refresh_s)
            token = self.door.tokens.mint(
                admission.identity,
                room_name(admission.room_id),
                self.door.clock.now_ms() // 1000,
                user_id=admission.user.user_id,
                room_id=admission.room_id,
            )
            self.send(rtc.SignalResponse(refresh_token=token))

    async def _join(self) -> bool:
        admission = self.admission
        identity = admission.user
        participant_id = "PA_" + secrets.token_hex(6)
        try:
            self.participant = await self.door.meetings.join(
                admission.meeting,
                identity,
                identity.fallback_name,
                self,
                participant_id=participant_id,
                rtc_identity=admission.identity,
            )
        except Refusal as e:
            self.log.info("LiveKit join refused (%s): %s", e.code, e)
            self.send(
                rtc.SignalResponse(
                    leave=rtc.LeaveRequest(
                        reason=models.DisconnectReason.JOIN_FAILURE,
                        action=rtc.LeaveRequest.DISCONNECT,
                    )
                )
            )
            return False
        self.log = log.getChild(participant_id)
        return True

    # Serving -------------------------------------------------------------------------

    async def _serve(self) -> None:
        loop = asyncio.get_running_loop()
        limit = RateLimit(loop.time())
        async for msg in self.ws:
            if msg.type not in (WSMsgType.TEXT, WSMsgType.BINARY):
                break
            if not limit.allow(loop.time()):
                continue  # LiveKit has no "slow down": a flood is dropped unread
            request = self._decode(msg)
            if request is None:
                if self._bad_frames > MAX_BAD_FRAMES:
                    self.log.info("Closing a LiveKit session that sends garbage")
                    return
                continue
            kind = request.WhichOneof("message")
            if kind == "leave":
                return
            try:
                await self._handle(kind, request)
            except Refusal as e:
                self.log.info("LiveKit %s refused (%s): %s", kind, e.code, e)
                self._refuse(kind, request, str(e))
            except Exception:
                self.log.exception("Failed to handle a LiveKit %s", kind)
                self._refuse(kind, request, "The server could not handle that request.")

    def _decode(self, msg: Any) -> rtc.SignalRequest | None:
        request = rtc.SignalRequest()
        try:
            if msg.type == WSMsgType.BINARY:
                request.ParseFromString(msg.data)
            else:
                json_format.Parse(msg.data, request, ignore_unknown_fields=True)
        except (DecodeError, json_format.ParseError, ValueError, RecursionError):
            self._bad_frames += 1
            self.log.debug("Dropped an undecodable LiveKit frame")
            return None
        return request

    def _refuse(self, kind: str | None, request: rtc.SignalRequest, message: str) -> None:
        """Tell the client a request failed, where the protocol has a way to."""
        response = rtc.RequestResponse(
            reason=rtc.RequestResponse.NOT_ALLOWED, message=message[:200]
        )
        if kind == "add_track":
            response.add_track.CopyFrom(request.add_track)
        elif kind == "mute":
            response.mute.CopyFrom(request.mute)
        elif kind == "trickle":
            response.trickle.CopyFrom(request.trickle)
        elif kind == "update_metadata":
            response.request_id = request.update_metadata.request_id
            response.update_metadata.CopyFrom(request.update_metadata)
        else:
            return  # offers, answers and the rest have no refusal in the protocol
        self.send(rtc.SignalResponse(request_response=response))

    async def _handle(self, kind: str | None, request: rtc.SignalRequest) -> None:
        participant = self.participant
        assert participant is not None
        if kind == "offer":
            await self._publish(participant, request.offer)
        elif kind == "answer":
            if request.answer.id in (0, self._offer_id):
                await participant.accept_answer(request.answer.sdp)
        elif kind == "trickle":
            await self._trickle(participant, request.trickle)
        elif kind == "add_track":
            await self._add_track(participant, request.add_track)
        elif kind == "mute":
            await self._mute(participant, request.mute)
        elif kind == "ping":
            self.send(rtc.SignalResponse(pong=self.door.clock.now_ms()))
        elif kind == "ping_req":
            self.send(
                rtc.SignalResponse(
                    pong_resp=rtc.Pong(
                        last_ping_timestamp=request.ping_req.timestamp,
                        timestamp=self.door.clock.now_ms(),
                    )
                )
            )
        elif kind == "update_metadata":
            raise Refusal("not_allowed", "Names come from Matrix; they cannot be changed here.")
        elif kind == "track_setting":
            setting = request.track_setting
            self._receive(participant, setting.track_sids, not setting.disabled)
            if not setting.disabled:
                self._choose_layer(participant, setting)
        elif kind == "subscription":
            update = request.subscription
            sids = [
                *update.track_sids,
                *(s for p in update.participant_tracks for s in p.track_sids),
            ]
            self._receive(participant, sids, update.subscribe)
        elif kind in ("sync_state", "update_layers"):
            # There is one layer, and no resume to sync state for.
            return
        # Anything else is dropped, as a LiveKit server drops what it does not know.

    def _receive(self, participant: Participant, sids: Sequence[str], receiving: bool) -> None:
        """Start or stop forwarding tracks to this client: a track it does not show
        (track settings ``disabled``, from adaptive stream: a hidden or tiny video) or
        one it unsubscribed from. Stopped tracks restart at a keyframe. Everyone is
        subscribed to everything at first (auto-subscribe); quality, size and frame
        rate are not acted on (one layer)."""
        for sid in sids[:64]:
            for pid, person in self.people.items():
                for source in person.tracks:
                    if track_sid(pid, source) == sid and pid != participant.id:
                        participant.set_receiving(pid, source, receiving)

    def _choose_layer(self, participant: Participant, setting: rtc.UpdateTrackSettings) -> None:
        """The simulcast layer a client asks for: by size (adaptive stream: the smallest
        layer at least as wide as the video element), else by quality (low, medium,
        high). Forwarded from that layer's next keyframe on."""
        for sid in setting.track_sids[:64]:
            for pid, person in self.people.items():
                if pid == participant.id or track_sid(pid, "camera") != sid:
                    continue
                if "camera" not in person.tracks:
                    continue
                layer = _layer_for(self.door.video_layers.get(sid, []), setting)
                if layer is not None:
                    participant.set_layer(pid, "camera", layer)

    async def _publish(self, participant: Participant, offer: rtc.SessionDescription) -> None:
        sources = {
            mid: self.pending[track_id]
            for mid, (_, track_id) in section_msids(offer.sdp).items()
            if track_id in self.pending
        }
        answer = await participant.publish(offer.sdp, sources, data_channels=True)
        self.send(
            rtc.SignalResponse(
                answer=rtc.SessionDescription(type="answer", sdp=answer, id=offer.id)
            )
        )

    async def _trickle(self, participant: Participant, trickle: rtc.TrickleRequest) -> None:
        try:
            init = json.loads(trickle.candidateInit)
        except ValueError:
            raise Refusal("bad_candidate", "The candidate is not JSON.") from None
        candidate = init.get("candidate") if isinstance(init, dict) else None
        if not candidate:
            return  # end of candidates: aioice goes on answering checks anyway
        if trickle.target == rtc.SignalTarget.SUBSCRIBER:
            await participant.add_candidate("receive", candidate)
        else:
            await participant.add_candidate("publish", candidate)

    async def _add_track(self, participant: Participant, request: rtc.AddTrackRequest) -> None:
        known = SOURCES.get(request.source)
        if known is None or known[1] != request.type:
            raise Refusal(
                "unsupported", "Only camera, microphone and screen share tracks are supported."
            )
        if not request.cid or len(request.cid) > 256:
            raise Refusal("bad_request", "A track needs a client id (cid).")
        source, _ = known
        # One track per source: a new camera replaces the old one's cid.
        self.pending = {cid: s for cid, s in self.pending.items() if s != source}
        self.pending[request.cid] = source
        me = self.people.get(participant.id)
        muted = me.muted(source) if me is not None else False
        if request.muted != muted and source != "screen":
            await self._set_muted(participant, source, request.muted)
        if request.encryption not in (models.Encryption.NONE, models.Encryption.GCM):
            raise Refusal("unsupported", "Only AES-GCM end-to-end encryption is supported.")
        # The SFU forwards encrypted frames untouched; the clients hold the keys. The
        # meeting says so to every door (the web client shows it cannot play them).
        encrypted = request.encryption != models.Encryption.NONE
        if encrypted != participant.encrypted:
            await participant.set_encrypted(encrypted)
        info = track_info(
            participant.id,
            Track(participant.id, source, "audio" if source == "microphone" else "video"),
            request.muted,
            request.encryption,
        )
        info.width, info.height = request.width, request.height
        info.layers.extend(request.layers)
        if source == "camera":
            self.door.video_layers[track_sid(participant.id, source)] = list(
                request.layers[:MAX_LAYERS]
            )
        self.send(
            rtc.SignalResponse(
                track_published=rtc.TrackPublishedResponse(cid=request.cid, track=info)
            )
        )

    async def _mute(self, participant: Participant, request: rtc.MuteTrackRequest) -> None:
        for source in ("camera", "microphone", "screen"):
            if request.sid == track_sid(participant.id, source):
                if source != "screen":
                    await self._set_muted(participant, source, request.muted)
                return
        raise Refusal("not_found", "There is no such track.")

    async def _set_muted(self, participant: Participant, source: str, muted: bool) -> None:
        audio = muted if source == "microphone" else participant.audio_muted
        video = muted if source == "camera" else participant.video_muted
        await participant.set_muted(audio=audio, video=video)


#: Layers kept per published camera (livekit-client declares three at most).
MAX_LAYERS = 4
#: LiveKit's qualities, as simulcast layers counted from the lowest.
_QUALITY_LAYERS = {
    models.VideoQuality.LOW: 0,
    models.VideoQuality.MEDIUM: 1,
    models.VideoQuality.HIGH: 2,
}


def _layer_for(
    layers: Sequence[models.VideoLayer], setting: rtc.UpdateTrackSettings
) -> int | None:
    """The layer (0 the lowest) for a subscriber's track settings; None: none asked."""
    qualities = sorted({layer.quality for layer in layers if layer.quality in _QUALITY_LAYERS})
    if setting.width > 0 and layers:
        fitting = sorted(
            (layer for layer in layers if layer.quality in _QUALITY_LAYERS),
            key=lambda layer: layer.width,
        )
        chosen = next((x for x in fitting if x.width >= setting.width), None)
        chosen = chosen or (fitting[-1] if fitting else None)
        if chosen is not None and qualities:
            return qualities.index(chosen.quality)
    return _QUALITY_LAYERS.get(setting.quality)
