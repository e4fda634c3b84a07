"""A participant's publish connection and the tracks it publishes."""

from __future__ import annotations

import asyncio
import logging
import random
import re
import time
from collections.abc import Callable, Coroutine, Mapping, Sequence
from functools import partial
from typing import Any, Protocol

from aiortc import RTCIceCandidate, RTCPeerConnection, RTCRtpReceiver, RTCSessionDescription
from aiortc.rtcrtpparameters import RTCRtpCodecParameters
from aiortc.rtp import RtpPacket

from . import aiortc_hooks
from .clock import Clock
from .counters import MediaCounters
from .errors import MediaError
from .events import Kind, Source
from .frames import EncodedFrame, is_keyframe
from .keyframes import KeyframeRequester
from .passthrough import tap_encoded_frames
from .peer import (
    TrickledCandidates,
    close_peer_connection,
    new_peer_connection,
    on_connection_lost,
    on_never_connected,
    set_local_description,
)
from .rtp_forward import PacketForward, keyframe_start, ntp_abs_send_time
from .sdp_rules import SdpSection, add_simulcast_recv, check_publish_offer
from .settings import MediaSettings
from .subscription import Subscription

SOURCE_KINDS: dict[str, str] = {"camera": "video", "microphone": "audio", "screen": "video"}
# Participant ids become msid stream ids: RFC 8830 allows 1 to 64 token characters.
PARTICIPANT_ID = re.compile(r"[!#$%&'*+\-.0-9A-Z^_`a-z{|}~]{1,64}")

Spawn = Callable[[Coroutine[Any, Any, None]], "asyncio.Task[None]"]

#: How recent a keyframe a subscriber whose connection just came up may start from
#: (instead of asking for one more), and the most packets kept for that.
CATCH_UP_SECONDS = 0.5
CATCH_UP_PACKETS = 256
_NTP_SECOND = 1 << 32  # in NTP time's units
#: A subscriber's simulcast layer unless it asks for another: the best one sent.
BEST_LAYER = 255
#: A simulcast layer with no packet for this long is taken as stopped (a browser drops
#: its upper layers when its bandwidth or CPU falls short).
LAYER_TIMEOUT = 1.0


class PublishedTrack:
    """One live track of a participant, fanned out, still encoded, to its subscriptions."""

    def __init__(
        self,
        participant_id: str,
        source: Source,
        codec: RTCRtpCodecParameters,
        receiver: RTCRtpReceiver,
        media_ssrc: int | None,
        settings: MediaSettings,
        clock: Clock,
        spawn: Spawn,
        counters: MediaCounters | None = None,
        rids: tuple[str, ...] = (),
    ) -> None:
        self.participant_id = participant_id
        self._counters = counters or MediaCounters()
        self.source: Source = source
        self.kind: Kind = "audio" if SOURCE_KINDS[source] == "audio" else "video"
        self.codec = codec
        self.track_id = f"{participant_id}/{source}"
        #: Frames received: pushed (the frame path), or ended by a packet (packet path:
        #: a video packet with the marker bit, every audio packet), assembled or not.
        self.frames = 0
        self._receiver = receiver
        self._media_ssrc = media_ssrc
        self._queue_frames = settings.subscription_queue_frames
        self._spawn = spawn
        self._subscriptions: list[Subscription] = []
        self._forwards: list[PacketForward] = []
        #: When the forwards' next sender reports are due (NTP time).
        self._reports_due = 0
        #: Whether packets come in through :meth:`on_packet`, so subscribers may take
        #: them one by one (a track of a local publisher, with packet forwarding on).
        self.packet_source = False
        #: Packets received with a payload (on the packet path).
        self.packets = 0
        #: The publisher's latest RTCP sender report: (NTP time, RTP timestamp).
        self.sender_report: tuple[int, int] | None = None
        self._keyframe_start = keyframe_start(codec.name)
        self._video = self.kind == "video"
        self._seen_ssrc = media_ssrc
        self._since_keyframe: list[RtpPacket] = []
        self._keyframe_at = 0.0
        # Frames from our own packets (packet_source), only while subscriptions want them.
        self._assembler = aiortc_hooks.FrameAssembler(codec, self._video, self._on_assembled)
        self.keyframes = KeyframeRequester(
            self._send_pli,
            clock,
            settings.keyframe_request_interval,
            still_needed=self._keyframe_needed,
        )
        self._clock = clock
        self._keyframe_interval = settings.keyframe_request_interval
        #: Simulcast (packet path only): the layers' rids, lowest first, each layer's
        #: SSRC (learned from the rid its packets carry), when each was last seen, its
        #: sender report, and who asks it for keyframes.
        self.rids = rids
        self._rank_of: dict[int, int] = {}
        self._ssrc_of: dict[int, int] = {}
        self._layer_seen = [-LAYER_TIMEOUT] * len(rids)
        self._reports: dict[int, tuple[int, int]] = {}
        self._layer_keyframes: dict[int, KeyframeRequester] = {}
        #: The layer frames are assembled from (the best one sent).
        self._frame_layer = len(rids) - 1

    @property
    def subscriptions(self) -> tuple[Subscription, ...]:
        return tuple(self._subscriptions)

    @property
    def forwards(self) -> tuple[PacketForward, ...]:
        return tuple(self._forwards)

    def add_forward(self, forward: PacketForward) -> None:
        """Send this track's packets through ``forward`` too (see :meth:`on_packet`)."""
        if forward not in self._forwards:
            self._forwards.append(forward)

    def attach_forward(self, forward: PacketForward, layer: int = BEST_LAYER) -> None:
        """Play this track on ``forward`` from its next keyframe; with simulcast, the
        ``layer`` it asks for (0 the lowest), or the nearest one sent."""
        if not self.rids:
            forward.attach(self.keyframes.request, lambda: self.sender_report, self.recent)
        else:
            forward.want = layer
            forward.attach(
                lambda: self.request_keyframe(forward),
                lambda: self._reports.get(self._ssrc_of.get(forward.layer, -1)),
            )
        self.add_forward(forward)

    def set_layer(self, forward: PacketForward, layer: int) -> None:
        """Move ``forward`` to another simulcast layer, at that layer's next keyframe
        (asked for now)."""
        if self.rids and forward.want != layer:
            forward.want = layer
            if forward.attached:
                self.request_keyframe(forward)

    def request_keyframe(self, forward: PacketForward | None, explicit: bool = False) -> None:
        """A keyframe for ``forward`` (the layer it plays or waits for), or for frame
        consumers."""
        if not self.rids:
            self.keyframes.request(explicit=explicit)
            return
        if forward is None:
            rank = self._frame_layer
        else:
            rank = self._target(forward.want, time.monotonic())
        requester = self._layer_keyframes.get(rank)
        if requester is None:
            requester = self._layer_keyframes[rank] = KeyframeRequester(
                lambda: self._send_pli_to(self._ssrc_of.get(rank)),
                self._clock,
                self._keyframe_interval,
            )
        requester.request(explicit=explicit)

    def _target(self, want: int, now: float) -> int:
        """The layer a subscriber that wants ``want`` gets: the best one sent at or below
        it, else the lowest one sent; ``want`` itself (clipped) while none is."""
        seen = self._layer_seen
        best = -1
        lowest = -1
        for rank in range(len(seen)):
            if now - seen[rank] < LAYER_TIMEOUT:
                if lowest < 0:
                    lowest = rank
                if rank <= want:
                    best = rank
        if best >= 0:
            return best
        return lowest if lowest >= 0 else min(want, len(seen) - 1)

    def _on_layer_packet(self, packet: RtpPacket) -> None:
        """A packet of a simulcast track: each forward plays one layer, and moves to the
        layer it should play at that layer's next keyframe."""
        rank = self._rank_of.get(packet.ssrc)
        if rank is None:
            rid = packet.extensions.rtp_stream_id
            if rid is None or rid not in self.rids:
                return  # no layer known for it yet (its first packets say which)
            rank = self.rids.index(rid)
            self._rank_of.pop(self._ssrc_of.get(rank, -1), None)
            self._rank_of[packet.ssrc] = rank
            self._ssrc_of[rank] = packet.ssrc
        now = time.monotonic()
        self._layer_seen[rank] = now
        payload = packet.payload
        if not payload:
            return  # padding only (a bandwidth probe)
        keyframe = self._keyframe_start(payload)
        self.packets += 1
        self._counters.packets_received += 1
        frame_layer = self._target(BEST_LAYER, now)
        if packet.marker and rank == frame_layer:
            self.frames += 1
            self._counters.frames_received += 1
        forwards = self._forwards
        if forwards:
            ntp = aiortc_hooks.ntp_time()
            abs_send_time = ntp_abs_send_time(ntp)
            shared: dict[bytes, bytes] = {}
            targets: dict[int, int] = {}
            for forward in forwards:
                want = forward.want
                target = targets.get(want)
                if target is None:
                    target = targets[want] = self._target(want, now)
                if forward.layer != rank:
                    if rank != target:
                        continue
                    if not keyframe:
                        if not forward.paused:
                            self.request_keyframe(forward)  # it waits for this layer's
                        continue
                    forward.switch_layer(rank)
                elif rank != target and not forward.paused:
                    self.request_keyframe(forward)  # for the layer it moves to
                forward.forward(packet, keyframe, ntp, abs_send_time, None, shared)
            if ntp >= self._reports_due:
                self._send_reports(ntp)
        if self._assembler.active:
            if frame_layer != self._frame_layer:
                self._frame_layer = frame_layer
                self._assembler.start()  # from that layer's next keyframe
                self.request_keyframe(None)
            if rank == frame_layer and self._assembler.add(packet, keyframe):
                self.request_keyframe(None)

    def remove_forward(self, forward: PacketForward) -> None:
        if forward in self._forwards:
            self._forwards.remove(forward)

    def on_packet(self, packet: RtpPacket) -> None:
        """Fan one decrypted RTP packet (RTX already unwrapped) out to every forward, on
        the packet handler; assemble frames from it too while anyone wants them."""
        if self.rids:
            self._on_layer_packet(packet)
            return
        if self._seen_ssrc is None:
            self._seen_ssrc = packet.ssrc
        payload = packet.payload
        video = self._video
        keyframe = self._keyframe_start(payload) if video else True
        if payload:  # none: padding only (a bandwidth probe), which still takes a number
            self.packets += 1
            self._counters.packets_received += 1
            if packet.marker or not video:
                self.frames += 1
                self._counters.frames_received += 1
        forwards = self._forwards
        if forwards and payload:
            level = packet.extensions.audio_level
            audio_level = bytes([level[0] << 7 | level[1]]) if level is not None else None
            ntp = aiortc_hooks.ntp_time()
            abs_send_time = ntp_abs_send_time(ntp)
            shared: dict[bytes, bytes] = {}
            for forward in forwards:
                forward.forward(packet, keyframe, ntp, abs_send_time, audio_level, shared)
            if ntp >= self._reports_due:
                self._send_reports(ntp)
        if video and payload:
            self._keep_since_keyframe(packet, keyframe)
        if self._assembler.active and self._assembler.add(packet, keyframe):
            self.keyframes.request()

    def _send_reports(self, ntp: int) -> None:
        """Each forward's RTCP sender report, in the turn of the loop a packet came in:
        about once a second, at 0.5 to 1.5 s as RFC 3550 asks (aiortc's own interval),
        with no timer per subscriber to wake the process in between."""
        self._reports_due = ntp + int((0.5 + random.random()) * _NTP_SECOND)
        for forward in self._forwards:
            forward.report()

    def _keep_since_keyframe(self, packet: RtpPacket, keyframe: bool) -> None:
        # The packets since the latest keyframe, while it is recent (see recent()).
        if keyframe:
            self._since_keyframe = [packet]
            self._keyframe_at = time.monotonic()
        elif self._since_keyframe:
            if len(self._since_keyframe) < CATCH_UP_PACKETS:
                self._since_keyframe.append(packet)
            else:
                self._since_keyframe = []

    def recent(self) -> Sequence[RtpPacket]:
        """The packets since the latest keyframe, if it came at most
        :data:`CATCH_UP_SECONDS` ago (for a subscriber whose connection just came up)."""
        if self._since_keyframe and time.monotonic() - self._keyframe_at <= CATCH_UP_SECONDS:
            return self._since_keyframe
        return ()

    def on_sender_report(self, ssrc: int, ntp: int, rtp: int) -> None:
        """The publisher's RTCP SR: keep the media stream's clock pair (lip sync); each
        simulcast layer's own."""
        if self.rids:
            if ssrc in self._rank_of:
                self._reports[ssrc] = (ntp, rtp)
        elif ssrc == self._seen_ssrc:
            self.sender_report = (ntp, rtp)

    def _keyframe_needed(self) -> bool:
        return any(s.waiting_for_keyframe for s in self._subscriptions) or any(
            f.waiting_for_keyframe and not f.paused for f in self._forwards
        )

    def subscribe(self) -> Subscription:
        """A new subscription; it waits for (and asks for) a keyframe if this is video."""
        subscription = Subscription(
            self._queue_frames,
            video=self.kind == "video",
            request_keyframe=self.keyframes.request,
            counters=self._counters,
        )
        self._subscriptions.append(subscription)
        if self.packet_source and not self._assembler.active:
            # The subscription waits for a keyframe and asks for one when it is read.
            self._assembler.start()
        return subscription

    def unsubscribe(self, subscription: Subscription) -> None:
        subscription.close()
        if subscription in self._subscriptions:
            self._subscriptions.remove(subscription)
        if not self._subscriptions:
            self._assembler.stop()

    @property
    def frames_assembled(self) -> int:
        """Frames assembled from this track's packets (for frame consumers) so far."""
        return self._assembler.frames

    def _on_assembled(self, data: bytes, timestamp: int) -> None:
        # Counted as received in on_packet already.
        self._fan_out(EncodedFrame(data, timestamp, is_keyframe(self.codec.name, data)))

    def push(self, frame: EncodedFrame) -> None:
        """Fan a frame out; a full subscription drops it and only hurts its subscriber."""
        self.frames += 1
        self._counters.frames_received += 1
        self._fan_out(frame)

    def _fan_out(self, frame: EncodedFrame) -> None:
        for subscription in self._subscriptions:
            subscription.push(frame)

    def close(self) -> None:
        self.keyframes.close()
        for requester in self._layer_keyframes.values():
            requester.close()
        for subscription in self._subscriptions:
            subscription.close()
        self._subscriptions.clear()
        self._forwards.clear()
        self._assembler.stop()

    def _send_pli_to(self, ssrc: int | None) -> None:
        if ssrc is not None:
            self._counters.keyframe_requests += 1
            self._spawn(aiortc_hooks.send_pli(self._receiver, ssrc))

    def _send_pli(self) -> None:
        if self.rids:
            # Frame consumers (subscriptions) take the layer frames are assembled from.
            self._send_pli_to(self._ssrc_of.get(self._frame_layer))
            return
        ssrc = self._media_ssrc or self._seen_ssrc
        if ssrc is None:
            # The offer declared no SSRC: the first one seen is the media (RTX comes later).
            sources = self._receiver.getSynchronizationSources()
            if not sources:
                return
            ssrc = sources[0].source
        self._counters.keyframe_requests += 1
        self._spawn(aiortc_hooks.send_pli(self._receiver, ssrc))


class PublisherListener(Protocol):
    """What a :class:`Publisher` tells its router."""

    def track_published(self, track: PublishedTrack) -> None: ...

    def track_unpublished(self, track: PublishedTrack) -> None: ...

    def audio_level(self, participant_id: str, level: int) -> None: ...

    def connection_lost(self, reason: str) -> None: ...


class Publisher:
    """The connection a participant's client offers to send its camera, mic and screen."""

    def __init__(
        self,
        participant_id: str,
        settings: MediaSettings,
        clock: Clock,
        spawn: Spawn,
        listener: PublisherListener,
        log: logging.Logger,
        counters: MediaCounters | None = None,
    ) -> None:
        self.participant_id = participant_id
        self._counters = counters or MediaCounters()
        self._settings = settings
        self._clock = clock
        self._spawn = spawn
        self._listener = listener
        self._pc: RTCPeerConnection | None = None
        self._lock = asyncio.Lock()
        self._tapped: set[str] = set()
        self._tracks: dict[str, PublishedTrack] = {}
        self._trickled = TrickledCandidates()
        self._closed = False
        # The meeting's logger: one logger per participant would never be freed.
        self._log = log

    @property
    def tracks(self) -> tuple[PublishedTrack, ...]:
        return tuple(self._tracks.values())

    @property
    def has_connection(self) -> bool:
        return self._pc is not None

    async def publish(
        self, offer_sdp: object, sources: Mapping[str, str], data_channels: bool = False
    ) -> str:
        """Answer the client's offer; publish and unpublish tracks to match it.

        With ``data_channels`` the offer may open SCTP data channels; they are accepted
        and what arrives on them is dropped (the meeting has no use for it).
        """
        checked = check_publish_offer(offer_sdp, self._settings, data_channels)
        labels = _label_sections(checked.sections, sources)
        async with self._lock:
            if self._closed:
                raise MediaError("This participant's media is closed.")
            pc = self._connection()
            try:
                await pc.setRemoteDescription(RTCSessionDescription(checked.sdp, "offer"))
            except Exception as error:
                raise MediaError(f"The offer was refused: {error}") from error
            self._tap_new_receivers(pc)
            await self._trickled.flush(pc)
            try:
                await set_local_description(
                    pc,
                    await pc.createAnswer(),
                    self._settings.host_addresses,
                    self._settings.ice_gathering_timeout,
                    self._settings.udp_ports,
                )
            except ValueError as error:  # aiortc's word on what the offer asks
                raise MediaError(f"The offer could not be answered: {error}") from error
            except Exception as error:
                # Not the client's fault (sockets, gathering, a bug): say so, and log it.
                self._log.exception("Answering %s's offer failed", self.participant_id)
                raise MediaError(
                    "The server could not set up your media. Try again in a moment.",
                    code="internal",
                ) from error
            if self._settings.packet_forwarding:
                aiortc_hooks.take_over_rtp_input(pc)
            self._update_tracks(pc, checked.sections, labels)
            layers = {s.mid: self._layers(s) for s in checked.sections if self._layers(s)}
            return add_simulcast_recv(str(pc.localDescription.sdp), layers)

    async def add_candidate(self, candidate: RTCIceCandidate) -> None:
        """A candidate the client trickled; kept until the offer it belongs to is in."""
        async with self._lock:
            if not self._closed:
                await self._trickled.add(self._pc, candidate)

    async def close(self) -> None:
        """Unpublish every track and close the connection."""
        self._closed = True
        for mid in list(self._tracks):
            self._unpublish(mid)
        pc, self._pc = self._pc, None
        if pc is not None:
            await close_peer_connection(pc)

    def _connection(self) -> RTCPeerConnection:
        if self._pc is None:
            pc = new_peer_connection(self._settings.ice_servers)
            on_connection_lost(
                pc,
                lambda: self._pc is pc,
                lambda: self._listener.connection_lost("connection lost"),
            )
            on_never_connected(
                pc,
                self._clock,
                self._settings.connect_timeout,
                lambda: self._pc is pc,
                lambda: self._listener.connection_lost("never connected"),
            )
            self._pc = pc
        return self._pc

    def _tap_new_receivers(self, pc: RTCPeerConnection) -> None:
        for transceiver in pc.getTransceivers():
            mid = transceiver.mid
            if mid is None or mid in self._tapped:
                continue
            self._tapped.add(mid)
            if self._settings.packet_forwarding:
                # Packets only: the track assembles frames itself while anyone wants them.
                aiortc_hooks.take_over_receiver(
                    transceiver.receiver, partial(self._on_packet, mid)
                )
                aiortc_hooks.observe_sender_reports(
                    transceiver.receiver, partial(self._on_sender_report, mid)
                )
                continue
            tap_encoded_frames(transceiver.receiver, partial(self._on_frame, mid))
            if transceiver.kind == "audio":
                aiortc_hooks.observe_rtp(transceiver.receiver, partial(self._on_rtp, mid))

    def _update_tracks(
        self, pc: RTCPeerConnection, sections: tuple[SdpSection, ...], labels: dict[str, Source]
    ) -> None:
        by_mid = {s.mid: s for s in sections}
        for mid, track in list(self._tracks.items()):
            section = by_mid.get(mid)
            if (
                labels.get(mid) != track.source
                or section is None
                or section.codec != track.codec
                or self._layers(section) != track.rids
            ):
                self._unpublish(mid)
        receivers = {t.mid: t.receiver for t in pc.getTransceivers()}
        for mid, source in labels.items():
            if mid in self._tracks:
                continue
            section = by_mid[mid]
            track = PublishedTrack(
                self.participant_id,
                source,
                section.codec,
                receivers[mid],
                section.ssrc,
                self._settings,
                self._clock,
                self._spawn,
                self._counters,
                rids=self._layers(section),
            )
            track.packet_source = self._settings.packet_forwarding
            self._tracks[mid] = track
            self._log.info(
                "%s publishes %s (%s)", self.participant_id, source, section.codec.mimeType
            )
            self._listener.track_published(track)

    def _layers(self, section: SdpSection) -> tuple[str, ...]:
        """The simulcast layers taken from a section: all it sends on the packet path;
        none on the frame path, whose receiver takes one stream (the first layer)."""
        return section.rids if self._settings.packet_forwarding else ()

    def _unpublish(self, mid: str) -> None:
        track = self._tracks.pop(mid)
        self._log.info("%s unpublishes %s", self.participant_id, track.source)
        self._listener.track_unpublished(track)
        track.close()

    def _on_frame(self, mid: str, frame: EncodedFrame) -> None:
        track = self._tracks.get(mid)
        if track is not None:
            track.push(frame)

    def _on_packet(self, mid: str, packet: RtpPacket) -> None:
        track = self._tracks.get(mid)
        if track is not None:
            track.on_packet(packet)
            if track.source == "microphone":
                level = packet.extensions.audio_level
                if level is not None:
                    self._listener.audio_level(self.participant_id, level[1])

    def _on_sender_report(self, mid: str, ssrc: int, ntp: int, rtp: int) -> None:
        track = self._tracks.get(mid)
        if track is not None:
            track.on_sender_report(ssrc, ntp, rtp)

    def _on_rtp(self, mid: str, packet: RtpPacket) -> None:
        level = packet.extensions.audio_level
        if level is not None:
            track = self._tracks.get(mid)
            if track is not None and track.source == "microphone":
                self._listener.audio_level(self.participant_id, level[1])


def _label_sections(
    sections: tuple[SdpSection, ...], sources: Mapping[str, str]
) -> dict[str, Source]:
    """Map each sending section's mid to its source, checking the client's labels."""
    if not isinstance(sources, Mapping):
        raise MediaError("Sources must map each sending section's mid to a source.")
    mids = {s.mid: s for s in sections}
    labels: dict[str, Source] = {}
    for mid, source in sources.items():
        if mid not in mids:
            raise MediaError(f"Sources name mid {mid!r}, which is not in the offer.")
        if source not in SOURCE_KINDS:
            raise MediaError(f"Unknown source {source!r}; use camera, microphone or screen.")
        section = mids[mid]
        if SOURCE_KINDS[source] != section.kind:
            raise MediaError(f"Source {source!r} cannot be sent in a {section.kind} section.")
        if section.sending:
            if source in labels.values():
                raise MediaError(f"Only one section may send the {source}.")
            labels[mid] = source  # type: ignore[assignment]
    unlabelled = [s.mid for s in sections if s.sending and s.mid not in labels]
    if unlabelled:
        raise MediaError(
            f"Sending sections {', '.join(map(repr, unlabelled))} have no source; "
            "label each as camera, microphone or screen."
        )
    return labels
