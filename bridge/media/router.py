"""One SFU router per live meeting: who publishes what, and who receives it.

Each participant has two peer connections, so offers never collide (no glare):

- the *publish* connection, offered by the client: ``answer = await media.publish(offer,
  sources={mid: "camera" | "microphone" | "screen"})``, again whenever the client adds or
  removes a track (screen share on/off);
- the *receive* connection, offered by the server through the ``send_offer`` callback
  whenever tracks come and go; the client answers with ``await
  media.accept_answer(answer)``. One offer is outstanding at a time; changes made
  meanwhile go out in one offer after the answer.

Media is forwarded encoded. A local publisher's tracks go to subscribers packet by
packet, straight from the publisher's packet handler (:mod:`bridge.media.rtp_forward`,
:attr:`MediaSettings.packet_forwarding`); tracks that came over a trunk, and whatever a
trunk or an in-process listener takes, go as frames through a bounded subscription
(:mod:`bridge.media.passthrough`). Each forwarded track
appears in the server's offer as ``a=msid:<publisher participant id> <participant
id>.<source>``: the stream id says whose track it is, the track id also which source
(``camera``, ``microphone``, ``screen``), and no two tracks share a track id. An
m-line whose track ended turns ``inactive`` and is reused later.

Codecs: publishers may send Opus audio and VP8 or H.264 (packetization-mode 1,
constrained baseline) video; the answer keeps one codec per section (VP8 first, see
:attr:`MediaSettings.video_codecs`), and subscribers are offered exactly the publisher's
codec, which they must support.

Clients put all their ICE candidates in the SDP (no trickle ICE), bundle every section
(``a=group:BUNDLE``), multiplex RTCP and label every sending section of a publish offer.
Simulcast (RFC 8853, as livekit-client sends it): on the packet path the answer takes
every layer the offer's ``a=simulcast:send`` lists, and each subscriber is forwarded one
(:meth:`ParticipantMedia.set_layer`, the best by default), moving at that layer's next
keyframe; on the frame path the answer takes none and one layer is sent. Data channels:
a publish offer may open some, which are ignored.

A *trunk* (:mod:`bridge.media.trunk`) joins the meeting to its twin on another agency's
bridge over one connection: every track published here, except those that came over that
trunk, crosses it once, and the people behind it are participants of the router without
a connection of their own (``trunk.add_remote``): their tracks reach everyone here and
the other trunks.

The active speaker comes from the RFC 6464 audio level header extension that browsers put
on every microphone packet (see :mod:`bridge.media.speaker`); no audio is decoded.

Public API::

    router = Router(meeting_id, MediaSettings(...), on_event=callback)
    media = router.add_participant(participant_id, send_offer=async_callback)
    answer_sdp = await media.publish(offer_sdp, sources={"0": "microphone", "1": "camera"})
    await media.accept_answer(answer_sdp)
    await media.close()
    trunk = router.add_trunk(trunk_id, listener, TrunkLimits())  # see bridge.media.trunk
    router.stats()
    await router.close()

``on_event`` receives :data:`~bridge.media.events.MediaEvent` values (``TrackPublished``,
``TrackUnpublished``, ``ActiveSpeaker``, ``ParticipantMediaClosed``). Everything a
participant held is released when they close, when either connection fails or is closed
by the peer, when they do not answer an offer in time, and when the router closes;
a trunk's when it closes, fails or the router closes. :meth:`Router.stats` shows what is
still held.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine, Mapping
from dataclasses import dataclass
from typing import Any

from ..meeting.media import FrameHandler, MediaFrame, MediaSink, TrunkLimits, TrunkListener
from .clock import Clock, LoopClock
from .counters import MediaCounters
from .errors import MediaError
from .events import (
    ActiveSpeaker,
    Connection,
    MediaEvent,
    ParticipantMediaClosed,
    TrackPublished,
    TrackUnpublished,
)
from .publisher import PARTICIPANT_ID, PublishedTrack, Publisher
from .sdp_rules import trickled_candidate
from .settings import MediaSettings
from .speaker import ActiveSpeakerDetector
from .subscriber import SendOffer, Subscriber
from .subscription import Subscription, SubscriptionClosed
from .trunk import MAX_SLOTS_PER_KIND, RemoteParticipant, Trunk


@dataclass(frozen=True, slots=True)
class RouterStats:
    """What a router holds right now (counters cover live tracks only)."""

    participants: int
    peer_connections: int
    published_tracks: int
    subscriptions: int
    #: The router's own asyncio tasks still running (negotiations, PLIs, closes).
    tasks: int
    #: Frames received from publishers on live tracks.
    frames_received: int
    #: Frames handed to subscribers' senders on live subscriptions.
    frames_forwarded: int
    #: Frames dropped by live subscriptions (slow subscriber, waiting for a keyframe).
    frames_dropped: int
    #: PLIs sent to publishers of live tracks.
    keyframe_requests: int
    #: Trunks to other bridges (their connections count in ``peer_connections``, the
    #: subscriptions of the tracks they carry out in ``subscriptions``).
    trunks: int = 0
    #: Tracks published here that a trunk does not carry (no free slot, or its codec).
    untrunked_tracks: int = 0
    #: On the packet path: RTP packets fanned out from publishers of live tracks, packets
    #: sent to subscribers, and packets not sent (skipped to a keyframe, paused, lost to a
    #: full socket buffer), over live forwards.
    packets_received: int = 0
    packets_forwarded: int = 0
    packets_dropped: int = 0


class ParticipantMedia:
    """One participant's media in a meeting; made by :meth:`Router.add_participant`."""

    def __init__(
        self, router: Router, participant_id: str, send_offer: SendOffer, clock: Clock
    ) -> None:
        self.participant_id = participant_id
        self._router = router
        self._closed = False
        self._closing: asyncio.Future[None] | None = None
        self.publisher = Publisher(
            participant_id,
            router.settings,
            clock,
            router._spawn,
            _PublisherEvents(self),
            router._log,
            router.counters,
        )
        self.subscriber = Subscriber(
            participant_id,
            router.settings,
            clock,
            router._spawn,
            send_offer,
            self._lost,
            router._log,
            router.counters,
        )

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def tracks(self) -> tuple[PublishedTrack, ...]:
        """The tracks this participant publishes now."""
        return self.publisher.tracks

    @property
    def connections(self) -> int:
        """The peer connections this participant holds (0 to 2)."""
        return self.publisher.has_connection + self.subscriber.has_connection

    async def publish(
        self, offer_sdp: str, sources: Mapping[str, str], data_channels: bool = False
    ) -> str:
        """Answer an offer on the publish connection; returns the answer SDP.

        ``sources`` labels each sending m-line by its mid: ``"camera"``,
        ``"microphone"`` or ``"screen"``. With ``data_channels`` the offer may hold
        an SCTP section, whose channels are accepted and ignored. Raises
        :class:`MediaError` on a bad offer.
        """
        if self._closed:
            raise MediaError("This participant's media is closed.")
        return await self.publisher.publish(offer_sdp, sources, data_channels)

    def set_receiving(self, track_id: str, receiving: bool) -> None:
        """Pause (or resume) forwarding the track ``"<participant id>/<source>"`` to this
        participant, who does not show it now; resuming starts at a keyframe."""
        if not self._closed:
            self.subscriber.set_receiving(track_id, receiving)

    def set_layer(self, track_id: str, layer: int) -> None:
        """Which simulcast layer of the track this participant receives (0 the lowest;
        the change waits for that layer's next keyframe, asked for at once)."""
        if not self._closed:
            self.subscriber.set_layer(track_id, layer)

    async def add_candidate(self, connection: Connection, candidate: str) -> bool:
        """A candidate the client trickled (``candidate:...``) for its ``"publish"`` or
        ``"receive"`` connection. False when it was dropped: an address the server may
        not send checks to (see :mod:`bridge.media.sdp_rules`). Raises
        :class:`MediaError` when it is not a candidate."""
        if self._closed:
            raise MediaError("This participant's media is closed.")
        checked = trickled_candidate(candidate, self._router.settings.allow_private_candidates)
        if checked is None:
            return False
        if connection == "publish":
            await self.publisher.add_candidate(checked)
        elif connection == "receive":
            await self.subscriber.add_candidate(checked)
        else:
            raise MediaError("A candidate is for the publish or the receive connection.")
        return True

    async def accept_answer(self, answer_sdp: str) -> None:
        """Apply the client's answer to the last offer sent through ``send_offer``."""
        if self._closed:
            raise MediaError("This participant's media is closed.")
        await self.subscriber.accept_answer(answer_sdp)

    async def close(self, reason: str = "left") -> None:
        """Release everything this participant holds; safe to call more than once."""
        if self._closing is not None:
            await asyncio.shield(self._closing)
            return
        self._closing = asyncio.get_running_loop().create_future()
        self._closed = True
        try:
            self._router._forget(self)
            await self.subscriber.close()
            await self.publisher.close()
        finally:
            self._router._left(self)
            self._closing.set_result(None)
            self._router._emit(ParticipantMediaClosed(self.participant_id, reason))

    def _lost(self, reason: str) -> None:
        if not self._closed:
            self._router._spawn(self.close(reason))


class _PublisherEvents:
    def __init__(self, media: ParticipantMedia) -> None:
        self._media = media

    def track_published(self, track: PublishedTrack) -> None:
        self._media._router._track_published(track)

    def track_unpublished(self, track: PublishedTrack) -> None:
        self._media._router._track_unpublished(track)

    def audio_level(self, participant_id: str, level: int) -> None:
        self._media._router._audio_level(participant_id, level)

    def connection_lost(self, reason: str) -> None:
        self._media._lost(reason)


class _TrunkEvents:
    """What a trunk tells the router (see :class:`bridge.media.trunk.TrunkHost`)."""

    def __init__(self, router: Router) -> None:
        self._router = router

    def join_remote(self, remote: RemoteParticipant) -> None:
        self._router._join(remote)

    def forget_remote(self, remote: RemoteParticipant) -> None:
        self._router._forget(remote)

    def remote_left(self, remote: RemoteParticipant, reason: str) -> None:
        self._router._left(remote)
        self._router._emit(ParticipantMediaClosed(remote.participant_id, reason))

    def track_published(self, track: PublishedTrack) -> None:
        self._router._track_published(track)

    def track_unpublished(self, track: PublishedTrack) -> None:
        self._router._track_unpublished(track)

    def audio_level(self, participant_id: str, level: int, packets: int) -> None:
        self._router._audio_level(participant_id, level, packets)

    def trunk_closed(self, trunk: Trunk) -> None:
        if self._router._trunks.get(trunk.trunk_id) is trunk:
            del self._router._trunks[trunk.trunk_id]


#: Who takes part in a meeting: people with their own connections, or behind a trunk.
Member = ParticipantMedia | RemoteParticipant


def _published(track: PublishedTrack) -> TrackPublished:
    return TrackPublished(
        track.participant_id, track.track_id, track.kind, track.source, track.codec.mimeType
    )


class Router:
    """The SFU of one meeting. See the module docstring for the whole API."""

    def __init__(
        self,
        meeting_id: str,
        settings: MediaSettings,
        on_event: Callable[[MediaEvent], None],
        *,
        clock: Clock | None = None,
        counters: MediaCounters | None = None,
    ) -> None:
        self.meeting_id = meeting_id
        #: Totals that outlive this router (shared by an SFU's routers, for metrics).
        self.counters = counters or MediaCounters()
        self.settings = settings
        self._on_event = on_event
        self._clock = clock or LoopClock()
        self._participants: dict[str, Member] = {}
        # Participants whose close() is still releasing their connections.
        self._leaving: set[Member] = set()
        # Trunks, until their close() is done.
        self._trunks: dict[str, Trunk] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._announced: set[PublishedTrack] = set()
        # In-process listeners, and what each takes of each track.
        self._sinks: dict[MediaSink, dict[PublishedTrack, Subscription]] = {}
        self._closed = False
        self._log = logging.getLogger("visio.media.router").getChild(meeting_id)
        self._speakers = ActiveSpeakerDetector(
            lambda participant_id: self._emit(ActiveSpeaker(participant_id)),
            self._clock,
            speaking_level=settings.speaking_level_dbov,
            switch_delay=settings.speaker_switch_delay,
        )

    def add_participant(self, participant_id: str, send_offer: SendOffer) -> ParticipantMedia:
        """Add a participant; ``send_offer(sdp)`` carries server offers to their client.

        ``participant_id`` must be 1 to 64 characters, none of them spaces or
        ``"(),/:;<=>?@[\\]``: it is the msid stream id of the participant's tracks.
        """
        self._check_id(participant_id)
        media = ParticipantMedia(self, participant_id, send_offer, self._clock)
        self._join(media)
        for other in self._participants.values():
            if other is not media:
                for track in other.tracks:
                    media.subscriber.add(track)
        return media

    def add_trunk(self, trunk_id: str, listener: TrunkListener, limits: TrunkLimits) -> Trunk:
        """A trunk to another bridge (see :mod:`bridge.media.trunk`); it carries every
        track published so far, and from now on, except those published behind it.

        ``limits`` sets its slots: 0 to :data:`~bridge.media.trunk.MAX_SLOTS_PER_KIND`
        of each kind, one at least.
        """
        if self._closed:
            raise MediaError("This meeting's media is closed.")
        if not isinstance(trunk_id, str) or not 0 < len(trunk_id) <= 255:
            raise MediaError("A trunk id must be 1 to 255 characters.")
        if trunk_id in self._trunks:
            raise MediaError(f"Trunk {trunk_id} is open already.")
        counts = (limits.audio, limits.video)
        if not all(type(n) is int and 0 <= n <= MAX_SLOTS_PER_KIND for n in counts) or not any(
            counts
        ):
            raise MediaError(
                f"A trunk has 0 to {MAX_SLOTS_PER_KIND} audio and video slots, one at least."
            )
        trunk = Trunk(
            trunk_id,
            listener,
            limits,
            self.settings,
            self._clock,
            self._spawn,
            _TrunkEvents(self),
            self._log,
            self.counters,
        )
        self._trunks[trunk_id] = trunk
        for media in self._participants.values():
            for track in media.tracks:
                trunk.add_track(track)
        self._log.info("trunk %s opens", trunk_id)
        return trunk

    def add_sink(self, sink: MediaSink) -> None:
        """Attach an in-process listener (see :class:`bridge.meeting.media.MediaSink`):
        it is offered every announced track, now and as they come."""
        if self._closed:
            raise MediaError("This meeting's media is closed.")
        if sink in self._sinks:
            return
        self._sinks[sink] = {}
        self._log.info("listener %s attached", type(sink).__name__)
        for track in list(self._announced):
            self._offer(sink, track)

    def remove_sink(self, sink: MediaSink) -> None:
        """Detach a listener; every track it took ends for it. Safe to call twice."""
        taps = self._sinks.pop(sink, None)
        if taps is None:
            return
        for track in list(taps):
            self._end_tap(sink, track, taps)
        self._log.info("listener %s detached", type(sink).__name__)

    def _offer(self, sink: MediaSink, track: PublishedTrack) -> None:
        try:
            handler = sink.track_started(_published(track))
        except Exception:
            self._log.exception("listener %s failed on %s", type(sink).__name__, track.track_id)
            return
        if handler is None:
            return
        # Its own bounded subscription, like a subscriber's: video starts at a keyframe,
        # and a listener that falls behind loses frames alone.
        subscription = track.subscribe()
        self._sinks[sink][track] = subscription
        self._spawn(self._pump(sink, track, subscription, handler))

    async def _pump(
        self,
        sink: MediaSink,
        track: PublishedTrack,
        subscription: Subscription,
        handler: FrameHandler,
    ) -> None:
        while True:
            try:
                frame = await subscription.get()
            except SubscriptionClosed:
                return
            try:
                handler(MediaFrame(frame.data, frame.timestamp, frame.keyframe, self._clock.now()))
            except Exception:
                self._log.exception(
                    "listener %s failed on %s; it gets no more of it",
                    type(sink).__name__,
                    track.track_id,
                )
                taps = self._sinks.get(sink)
                if taps is not None and taps.get(track) is subscription:
                    self._end_tap(sink, track, taps)
                return

    def _end_tap(
        self, sink: MediaSink, track: PublishedTrack, taps: dict[PublishedTrack, Subscription]
    ) -> None:
        track.unsubscribe(taps.pop(track))
        try:
            sink.track_ended(track.track_id)
        except Exception:
            self._log.exception("listener %s failed on %s", type(sink).__name__, track.track_id)

    def participant(self, participant_id: str) -> Member | None:
        """The media of a participant still in the meeting, if any."""
        return self._participants.get(participant_id)

    def trunk(self, trunk_id: str) -> Trunk | None:
        """A trunk still open (or closing), if any."""
        return self._trunks.get(trunk_id)

    def stats(self) -> RouterStats:
        """Counts of what the router holds, for tests, metrics and benchmarks."""
        media = [*self._participants.values(), *self._leaving]
        trunks = list(self._trunks.values())
        tracks = [t for m in media for t in m.tracks]
        subscriptions = [s for t in tracks for s in t.subscriptions]
        forwards = [f for t in tracks for f in t.forwards]
        return RouterStats(
            participants=len(self._participants),
            peer_connections=sum(m.connections for m in media)
            + sum(int(t.has_connection) for t in trunks),
            published_tracks=len(tracks),
            subscriptions=len(subscriptions) + len(forwards),
            tasks=sum(not t.done() for t in self._tasks),
            frames_received=sum(t.frames for t in tracks),
            frames_forwarded=sum(s.delivered for s in subscriptions)
            + sum(f.frames for f in forwards),
            frames_dropped=sum(s.dropped for s in subscriptions),
            keyframe_requests=sum(t.keyframes.sent for t in tracks),
            trunks=len(trunks),
            untrunked_tracks=sum(t.untrunked for t in trunks),
            packets_received=sum(t.packets for t in tracks),
            packets_forwarded=sum(f.packets for f in forwards),
            packets_dropped=sum(f.dropped for f in forwards),
        )

    async def close(self) -> None:
        """Close every trunk, release every participant's media and stop the router's
        tasks."""
        self._closed = True
        for sink in list(self._sinks):
            self.remove_sink(sink)
        for trunk in list(self._trunks.values()):
            await trunk.close("router closed")
        for media in [*self._participants.values(), *self._leaving]:
            # A participant already leaving is awaited, not cut short by a cancel.
            await media.close("router closed")
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)

    def _check_id(self, participant_id: str) -> None:
        if self._closed:
            raise MediaError("This meeting's media is closed.")
        if not isinstance(participant_id, str) or not PARTICIPANT_ID.fullmatch(participant_id):
            raise MediaError(
                "A participant id must be 1 to 64 letters, digits or !#$%&'*+-.^_`{|}~."
            )
        if participant_id in self._participants:
            raise MediaError(f"Participant {participant_id} already has media here.")

    def _join(self, media: Member) -> None:
        self._check_id(media.participant_id)
        self._participants[media.participant_id] = media
        behind = " behind a trunk" if isinstance(media, RemoteParticipant) else ""
        self._log.info("%s joins%s", media.participant_id, behind)

    def _forget(self, media: Member) -> None:
        if self._participants.get(media.participant_id) is media:
            del self._participants[media.participant_id]
            self._leaving.add(media)
            self._speakers.remove(media.participant_id)
            self._log.info("%s leaves", media.participant_id)

    def _left(self, media: Member) -> None:
        self._leaving.discard(media)

    def _track_published(self, track: PublishedTrack) -> None:
        if track.participant_id not in self._participants:
            return  # published while leaving: never announced, never forwarded
        self._announced.add(track)
        for media in self._participants.values():
            if (
                isinstance(media, ParticipantMedia)
                and media.participant_id != track.participant_id
            ):
                media.subscriber.add(track)
        for trunk in self._trunks.values():
            trunk.add_track(track)  # not if it came over that trunk
        for sink in list(self._sinks):
            self._offer(sink, track)
        self._emit(_published(track))

    def _track_unpublished(self, track: PublishedTrack) -> None:
        for media in self._participants.values():
            if isinstance(media, ParticipantMedia):
                media.subscriber.remove(track)
        for trunk in self._trunks.values():
            trunk.remove_track(track)
        for sink, taps in list(self._sinks.items()):
            if track in taps:
                self._end_tap(sink, track, taps)
        if track.source == "microphone":
            self._speakers.remove(track.participant_id)
        if track not in self._announced:
            return
        self._announced.discard(track)
        self._emit(
            TrackUnpublished(track.participant_id, track.track_id, track.kind, track.source)
        )

    def _audio_level(self, participant_id: str, level: int, packets: int = 1) -> None:
        self._speakers.add_level(participant_id, level, packets)
        for trunk in self._trunks.values():
            trunk.audio_level(participant_id, level)

    def _emit(self, event: MediaEvent) -> None:
        try:
            self._on_event(event)
        except Exception:
            self._log.exception("on_event failed for %s", event)

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)
        return task

    def _task_done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            self._log.error("task failed", exc_info=task.exception())
