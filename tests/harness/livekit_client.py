"""A LiveKit-protocol participant as a program: livekit-client's signaling, aiortc media.

It speaks to ``/livekit/rtc`` the way livekit-client 2.22 does on its two-connection
path: it announces each track with ``add_track`` and waits for ``track_published``
(matched by ``cid``, the track id), offers its publisher connection with a
``_reliable`` data channel in it, sends its ICE candidates by trickle (its offers carry
none, like a browser's), and answers the server's subscriber offers, mapping each
section to a track sid through ``mid_to_track_id``. Tests and bench/ use it where a
browser would be too heavy; the real livekit-client is tested in Chromium.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
from collections.abc import Callable
from typing import Any

import aiohttp
from aiortc import RTCPeerConnection, RTCSessionDescription
from livekit.protocol import models, rtc

from bridge.media import aiortc_hooks
from bridge.media.frames import EncodedFrame
from bridge.media.passthrough import tap_encoded_frames
from bridge.media.peer import close_peer_connection, new_peer_connection, set_local_description
from tests.harness.synthetic import SyntheticVideoTrack, ToneTrack

LOOPBACK = ["127.0.0.1"]
_CANDIDATE = re.compile(r"^a=candidate:(.*)$")


def strip_candidates(sdp: str) -> tuple[str, list[str]]:
    """The SDP without its candidates, and the candidates (as ``candidate:...``)."""
    kept, candidates = [], []
    for line in sdp.splitlines():
        match = _CANDIDATE.match(line)
        if match is not None:
            candidates.append("candidate:" + match.group(1))
        elif line != "a=end-of-candidates":
            kept.append(line)
    return "\r\n".join(kept) + "\r\n", candidates


class LiveKitClient:
    """One LiveKit participant: a signaling socket plus publisher and subscriber PCs."""

    def __init__(self, livekit_url: str, token: str) -> None:
        self.url = f"{livekit_url}/rtc"
        self.token = token
        self.http = aiohttp.ClientSession()
        self.ws: aiohttp.ClientWebSocketResponse | None = None
        self.join: rtc.JoinResponse | None = None
        self.responses: list[rtc.SignalResponse] = []
        #: Every participant as last updated, by sid.
        self.participants: dict[str, models.ParticipantInfo] = {}
        self.leave: rtc.LeaveRequest | None = None
        self.publisher: RTCPeerConnection | None = None
        self.subscriber: RTCPeerConnection | None = None
        self.camera: SyntheticVideoTrack | None = None
        #: Encoded frames received, by track sid.
        self.received: dict[str, list[EncodedFrame]] = {}
        self._mid_tracks: dict[str, str] = {}
        self._tapped: set[str] = set()
        self._published: dict[str, asyncio.Future[rtc.TrackPublishedResponse]] = {}
        self._answers: dict[int, asyncio.Future[str]] = {}
        self._offer_id = 0
        self._changed = asyncio.Event()
        self._reader: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self.trickle_publisher = True
        #: Called with (track sid, frame) for each frame received, instead of keeping it.
        self.on_frame: Callable[[str, EncodedFrame], None] | None = None
        #: Off, the client never answers the server's offers (a client that hangs).
        self.answers_offers = True
        #: What the client's own background work raised (tests check it stays empty).
        self.errors: list[BaseException | None] = []

    # Connecting ---------------------------------------------------------------------

    async def connect(self, within: float = 15) -> rtc.JoinResponse:
        params = {"access_token": self.token, "auto_subscribe": "1", "protocol": "17"}
        self.ws = await self.http.ws_connect(self.url, params=params, max_msg_size=0)
        self._reader = asyncio.create_task(self._read())
        await self.wait_for(lambda: self.join is not None or self.leave is not None, within)
        if self.join is None:
            raise ConnectionError(f"refused with leave {self.leave}")
        if not self.join.subscriber_primary:
            # As livekit-client: the publisher connection first carries the data channels.
            self.publisher = new_peer_connection([])
            self.publisher.createDataChannel("_reliable")
            self.publisher.createDataChannel("_lossy", ordered=False, maxRetransmits=0)
            await self.negotiate()
        return self.join

    async def send(self, request: rtc.SignalRequest) -> None:
        assert self.ws is not None
        await self.ws.send_bytes(request.SerializeToString())

    async def _read(self) -> None:
        assert self.ws is not None
        async for msg in self.ws:
            if msg.type != aiohttp.WSMsgType.BINARY:
                continue
            response = rtc.SignalResponse()
            response.ParseFromString(msg.data)
            self.responses.append(response)
            self._on(response)
            self._changed.set()
        self._changed.set()

    def _on(self, response: rtc.SignalResponse) -> None:
        kind = response.WhichOneof("message")
        if kind == "join":
            self.join = response.join
            for info in [response.join.participant, *response.join.other_participants]:
                self.participants[info.sid] = info
        elif kind == "update":
            for info in response.update.participants:
                self.participants[info.sid] = info
        elif kind == "offer":
            if self.answers_offers:
                self._spawn(self._answer(response.offer))
        elif kind == "answer":
            future = self._answers.pop(response.answer.id, None)
            if future is not None and not future.done():
                future.set_result(response.answer.sdp)
        elif kind == "track_published":
            waiting = self._published.pop(response.track_published.cid, None)
            if waiting is not None and not waiting.done():
                waiting.set_result(response.track_published)
        elif kind == "leave":
            self.leave = response.leave

    def _spawn(self, coro: Any) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            self.errors.append(task.exception())

    async def wait_for(self, check: Callable[[], bool], within: float = 15) -> None:
        async with asyncio.timeout(within):
            while not check():
                self._changed.clear()
                if self.ws is not None and self.ws.closed and not check():
                    raise ConnectionError("the signaling socket closed")
                # Media arrives without a message: look again every 50 ms too.
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._changed.wait(), 0.05)

    @property
    def sid(self) -> str:
        assert self.join is not None
        return self.join.participant.sid

    def others(self) -> list[models.ParticipantInfo]:
        return [
            p
            for sid, p in self.participants.items()
            if sid != self.sid and p.state != models.ParticipantInfo.DISCONNECTED
        ]

    # Publishing ---------------------------------------------------------------------

    async def add_track(
        self, cid: str, source: int, kind: int, muted: bool = False, encryption: int = 0
    ) -> rtc.TrackPublishedResponse:
        future = asyncio.get_running_loop().create_future()
        self._published[cid] = future
        await self.send(
            rtc.SignalRequest(
                add_track=rtc.AddTrackRequest(
                    cid=cid,
                    name=cid,
                    type=kind,
                    source=source,
                    muted=muted,
                    encryption=encryption,  # type: ignore[arg-type]
                )
            )
        )
        async with asyncio.timeout(10):
            return await future

    async def publish(
        self,
        camera: bool = True,
        microphone: bool = True,
        *,
        video: Any = None,
        audio: Any = None,
        encryption: int = 0,
    ) -> None:
        """Announce and publish a camera and a microphone, as livekit-client does: a
        synthetic camera and a tone, or the given ``video`` and ``audio`` tracks."""
        pc = self.publisher
        assert pc is not None, "connect() first"
        tracks: list[tuple[Any, int, int]] = []
        if microphone:
            audio = audio or ToneTrack(loud=True)
            tracks.append((audio, models.TrackSource.MICROPHONE, models.TrackType.AUDIO))
        if camera:
            if video is None:
                video = self.camera = SyntheticVideoTrack()
            tracks.append((video, models.TrackSource.CAMERA, models.TrackType.VIDEO))
        for track, source, kind in tracks:
            await self.add_track(track.id, source, kind, encryption=encryption)
            transceiver = pc.addTransceiver(track, direction="sendonly")
            if track is video:
                aiortc_hooks.on_keyframe_request(transceiver.sender, video.request_keyframe)
        await self.negotiate()

    async def negotiate(self) -> None:
        pc = self.publisher
        assert pc is not None
        await set_local_description(pc, await pc.createOffer(), LOOPBACK)
        sdp, candidates = strip_candidates(pc.localDescription.sdp)
        if not self.trickle_publisher:
            sdp, candidates = pc.localDescription.sdp, []
        self._offer_id += 1
        future = asyncio.get_running_loop().create_future()
        self._answers[self._offer_id] = future
        await self.send(
            rtc.SignalRequest(
                offer=rtc.SessionDescription(type="offer", sdp=sdp, id=self._offer_id)
            )
        )
        await self._trickle(candidates, rtc.SignalTarget.PUBLISHER)
        async with asyncio.timeout(15):
            answer = await future
        await pc.setRemoteDescription(RTCSessionDescription(answer, "answer"))

    # Receiving ----------------------------------------------------------------------

    async def _answer(self, offer: rtc.SessionDescription) -> None:
        if self.subscriber is None:
            self.subscriber = new_peer_connection([])
        pc = self.subscriber
        self._mid_tracks.update(offer.mid_to_track_id)
        await pc.setRemoteDescription(RTCSessionDescription(offer.sdp, "offer"))
        for transceiver in pc.getTransceivers():
            mid = transceiver.mid
            if mid is not None and mid not in self._tapped:
                self._tapped.add(mid)
                tap_encoded_frames(transceiver.receiver, self._recorder(mid))
        await set_local_description(pc, await pc.createAnswer(), LOOPBACK)
        sdp, candidates = strip_candidates(pc.localDescription.sdp)
        await self.send(
            rtc.SignalRequest(answer=rtc.SessionDescription(type="answer", sdp=sdp, id=offer.id))
        )
        await self._trickle(candidates, rtc.SignalTarget.SUBSCRIBER)

    async def _trickle(self, candidates: list[str], target: int) -> None:
        """Send candidates one by one, as a browser's onicecandidate does."""
        for candidate in candidates:
            init = {"candidate": candidate, "sdpMid": "0", "sdpMLineIndex": 0}
            trickle = rtc.TrickleRequest(candidateInit=json.dumps(init), target=target)  # type: ignore[arg-type]
            await self.send(rtc.SignalRequest(trickle=trickle))

    def _recorder(self, mid: str) -> Callable[[EncodedFrame], None]:
        def record(frame: EncodedFrame) -> None:
            sid = self._mid_tracks.get(mid, f"?{mid}")
            if self.on_frame is not None:
                self.on_frame(sid, frame)
            else:
                self.received.setdefault(sid, []).append(frame)

        return record

    def frames_of(self, track_sid: str) -> list[EncodedFrame]:
        return self.received.get(track_sid, [])

    # Leaving ------------------------------------------------------------------------

    async def close(self, say_leave: bool = True) -> None:
        if say_leave and self.ws is not None and not self.ws.closed:
            with contextlib.suppress(ConnectionError, RuntimeError):
                await self.send(
                    rtc.SignalRequest(
                        leave=rtc.LeaveRequest(reason=models.DisconnectReason.CLIENT_INITIATED)
                    )
                )
        for pc in (self.publisher, self.subscriber):
            if pc is not None:
                await close_peer_connection(pc)
        if self.ws is not None:
            await self.ws.close()
        if self._reader is not None:
            self._reader.cancel()
        for task in list(self._tasks):
            task.cancel()
        await self.http.close()
