"""Helpers for the media tests: a fake clock and real aiortc clients over loopback."""

from __future__ import annotations

import asyncio
import functools
import heapq
import itertools
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from aiortc import RTCPeerConnection, RTCRtpTransceiver, RTCSessionDescription, sdp

from bridge.media import MediaSettings, ParticipantMedia, Router, aiortc_hooks
from bridge.media.frames import EncodedFrame
from bridge.media.passthrough import tap_encoded_frames
from bridge.media.peer import close_peer_connection, new_peer_connection, set_local_description
from bridge.meeting.media import msid_source
from tests.harness.synthetic import (
    LoopedOpusTrack,
    SyntheticVideoTrack,
    ToneTrack,
    encode_opus_loop,
)

LOOPBACK = ("127.0.0.1",)


@functools.cache
def opus_loop() -> tuple[bytes, ...]:
    return encode_opus_loop()


def loopback_settings(**overrides: Any) -> MediaSettings:
    """Settings for tests: no ICE servers, loopback only (clients' loopback candidates
    used, as on one machine), short timers.

    The subscription queues are deep, so that a test process starved of CPU by a busy
    machine never skips frames (tests compare frames one for one); the skipping itself is
    tested in ``test_subscription.py``.
    """
    values: dict[str, Any] = {
        "ice_servers": [],
        "host_addresses": LOOPBACK,
        "allow_private_candidates": True,
        "subscription_queue_frames": 300,
        "keyframe_request_interval": 0.3,
        "speaker_switch_delay": 0.2,
        "answer_timeout": 10.0,
    }
    values.update(overrides)
    return MediaSettings(**values)


async def wait_for(predicate: Callable[[], object], within: float = 10.0) -> None:
    """Poll ``predicate`` until it is true; fail after ``within`` seconds."""
    deadline = time.monotonic() + within
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {within} s waiting for {predicate}")
        await asyncio.sleep(0.01)


class FakeTimer:
    def __init__(self) -> None:
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True


@dataclass
class FakeClock:
    """A clock that only moves when told to; runs due callbacks on :meth:`advance`."""

    time: float = 1000.0
    _calls: list[tuple[float, int, FakeTimer, Callable[[], None]]] = field(default_factory=list)
    _order: itertools.count[int] = field(default_factory=itertools.count)

    def now(self) -> float:
        return self.time

    def call_later(self, delay: float, callback: Callable[[], None]) -> FakeTimer:
        timer = FakeTimer()
        heapq.heappush(self._calls, (self.time + delay, next(self._order), timer, callback))
        return timer

    @property
    def pending(self) -> int:
        return sum(not timer.cancelled for _, _, timer, _ in self._calls)

    def advance(self, seconds: float) -> None:
        end = self.time + seconds
        while self._calls and self._calls[0][0] <= end:
            when, _, timer, callback = heapq.heappop(self._calls)
            self.time = when
            if not timer.cancelled:
                callback()
        self.time = end


class FrameReceiver:
    """The receiving end of a test client: answers server offers as a browser would and
    keeps the encoded frames each track delivers, by (publisher, source)."""

    def __init__(self) -> None:
        self.msids: dict[str, tuple[str, str]] = {}
        self.received: dict[tuple[str, str], list[EncodedFrame]] = {}
        self._tapped: set[str] = set()

    async def answer_on(self, pc: RTCPeerConnection, offer_sdp: str) -> str:
        """Note each section's msid (whose track, which source), tap new receivers'
        encoded frames, and return the answer SDP."""
        for media in sdp.SessionDescription.parse(offer_sdp).media:
            if media.msid:
                stream_id, track_id = media.msid.split()
                self.msids[str(media.rtp.muxId)] = (stream_id, msid_source(stream_id, track_id))
        await pc.setRemoteDescription(RTCSessionDescription(offer_sdp, "offer"))
        for transceiver in pc.getTransceivers():
            mid = transceiver.mid
            if mid is not None and mid not in self._tapped:
                self._tapped.add(mid)
                tap_encoded_frames(transceiver.receiver, self._recorder(mid))
        await set_local_description(pc, await pc.createAnswer(), LOOPBACK)
        return str(pc.localDescription.sdp)

    def _recorder(self, mid: str) -> Callable[[EncodedFrame], None]:
        def record(frame: EncodedFrame) -> None:
            self.received.setdefault(self.msids[mid], []).append(frame)

        return record

    def frames_from(self, participant_id: str, source: str) -> list[EncodedFrame]:
        return self.received.get((participant_id, source), [])


class Client(FrameReceiver):
    """A participant's client: a publish connection and a receive connection, in aiortc.

    Publishing uses :class:`SyntheticVideoTrack` (VP8 encoded by the track itself, so the
    frames sent are known) and :class:`ToneTrack`. Received media is tapped before
    decoding, like the server does, and recorded per ``(stream id, track id)`` of the
    m-line's msid.
    """

    def __init__(self, router: Router, participant_id: str) -> None:
        super().__init__()
        self.participant_id = participant_id
        self.media: ParticipantMedia = router.add_participant(participant_id, self.on_offer)
        self.publish_pc: RTCPeerConnection | None = None
        self.receive_pc: RTCPeerConnection | None = None
        self.camera: SyntheticVideoTrack | None = None
        self.screen: SyntheticVideoTrack | None = None
        self.microphone: ToneTrack | None = None
        self.opus: LoopedOpusTrack | None = None
        self.sources: dict[RTCRtpTransceiver, str] = {}
        self.offers: list[str] = []
        self.joined = time.monotonic()
        self.auto_answer = True

    # Publishing

    async def publish(
        self, camera: bool = True, microphone: bool = True, levels: bool = False
    ) -> None:
        """Publish a camera and/or microphone on a new publish connection.

        The microphone plays pre-encoded Opus, unless ``levels`` asks for a
        :class:`ToneTrack` that aiortc encodes and marks with RFC 6464 audio levels
        (aiortc encodes audio in a thread, slow on a loaded machine).
        """
        self.publish_pc = new_peer_connection([])
        if microphone:
            if levels:
                self.microphone = ToneTrack()
            else:
                self.opus = LoopedOpusTrack(opus_loop())
            self._add(self.microphone or self.opus, "microphone")
        if camera:
            self.camera = SyntheticVideoTrack()
            self._add(self.camera, "camera")
        await self.renegotiate_publish()

    async def share_screen(self) -> None:
        self.screen = SyntheticVideoTrack()
        self._add(self.screen, "screen")
        await self.renegotiate_publish()

    async def stop_screen(self) -> None:
        transceiver = self._transceiver_of("screen")
        transceiver.direction = "inactive"
        await self.renegotiate_publish()

    async def renegotiate_publish(self) -> None:
        pc = self.publish_pc
        assert pc is not None
        offer = await pc.createOffer()
        await set_local_description(pc, offer, LOOPBACK)
        sources = {t.mid: self.sources[t] for t in pc.getTransceivers() if t.mid}
        answer = await self.media.publish(pc.localDescription.sdp, sources)
        await pc.setRemoteDescription(RTCSessionDescription(answer, "answer"))

    def _add(self, track: Any, source: str) -> None:
        assert self.publish_pc is not None
        transceiver = self.publish_pc.addTransceiver(track, direction="sendonly")
        if hasattr(track, "request_keyframe"):
            aiortc_hooks.on_keyframe_request(transceiver.sender, track.request_keyframe)
        self.sources[transceiver] = source

    def _transceiver_of(self, source: str) -> RTCRtpTransceiver:
        assert self.publish_pc is not None
        return next(t for t, s in self.sources.items() if s == source)

    async def publish_offer(self) -> tuple[str, dict[str, str]]:
        """A fresh offer of a new publish connection (not sent), and its sources."""
        pc = new_peer_connection([])
        pc.addTransceiver(LoopedOpusTrack(opus_loop()), direction="sendonly")
        pc.addTransceiver(SyntheticVideoTrack(), direction="sendonly")
        await set_local_description(pc, await pc.createOffer(), LOOPBACK)
        sources = {"0": "microphone", "1": "camera"}
        offer = pc.localDescription.sdp
        await close_peer_connection(pc)
        return offer, sources

    # Receiving

    async def on_offer(self, offer_sdp: str) -> None:
        """The router's ``send_offer``: answer at once, as a browser would, unless
        ``auto_answer`` is off (then :meth:`answer` does it later)."""
        self.offers.append(offer_sdp)
        if self.auto_answer:
            await self.answer(offer_sdp)

    async def answer(self, offer_sdp: str | None = None) -> None:
        """Answer ``offer_sdp`` (by default the last offer received)."""
        offer_sdp = offer_sdp or self.offers[-1]
        if self.receive_pc is None:
            self.receive_pc = new_peer_connection([])
        await self.media.accept_answer(await self.answer_on(self.receive_pc, offer_sdp))

    def receiver_for(self, participant_id: str, source: str) -> tuple[Any, int]:
        """The receive-side RTCRtpReceiver and the server's SSRC for a forwarded track."""
        assert self.receive_pc is not None
        mid = next(m for m, msid in self.msids.items() if msid == (participant_id, source))
        description = sdp.SessionDescription.parse(self.offers[-1])
        media = next(m for m in description.media if m.rtp.muxId == mid)
        transceiver = next(t for t in self.receive_pc.getTransceivers() if t.mid == mid)
        return transceiver.receiver, media.ssrc[0].ssrc

    async def close(self) -> None:
        for pc in (self.publish_pc, self.receive_pc):
            if pc is not None:
                await close_peer_connection(pc)


class Meeting:
    """A router under test, its events and its clients."""

    def __init__(self, settings: MediaSettings | None = None, clock: Any = None) -> None:
        self.events: list[Any] = []
        self.router = Router(
            "meeting", settings or loopback_settings(), self.events.append, clock=clock
        )
        self.clients: list[Client] = []

    def join(self, participant_id: str) -> Client:
        client = Client(self.router, participant_id)
        self.clients.append(client)
        return client

    def events_of(self, kind: type) -> list[Any]:
        return [e for e in self.events if isinstance(e, kind)]

    async def close(self) -> None:
        for client in self.clients:
            await client.close()
        await self.router.close()
