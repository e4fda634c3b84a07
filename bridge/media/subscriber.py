"""A participant's receive connection: the server offers everyone else's tracks on it."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

from aiortc import (
    RTCIceCandidate,
    RTCPeerConnection,
    RTCRtpTransceiver,
    RTCSessionDescription,
)

from ..meeting.media import SendOffer, msid_track_id
from . import aiortc_hooks
from .clock import Clock, Timer
from .counters import MediaCounters
from .errors import MediaError
from .passthrough import ForwardedTrack
from .peer import (
    TrickledCandidates,
    close_peer_connection,
    new_peer_connection,
    on_connection_lost,
    on_never_connected,
    set_local_description,
)
from .publisher import BEST_LAYER, PublishedTrack, Spawn
from .rtp_forward import PacketForward
from .sdp_rules import check_answer, codec_preferences
from .settings import MediaSettings
from .subscription import Subscription

#: Paused track ids remembered per participant (tracks not yet published included).
MAX_PAUSED = 256


@dataclass(eq=False)
class _Slot:
    """One m-line of the receive connection, reused by tracks of the same kind and codec."""

    transceiver: RTCRtpTransceiver
    track: ForwardedTrack
    codec_key: tuple[str, str, bool]
    published: PublishedTrack | None = None
    subscription: Subscription | None = None
    #: On the packet path, the forward that feeds the sender instead of ``track``.
    forward: PacketForward | None = None
    #: What this slot carries now (the subscription, or a token on the packet path) and
    #: what the outstanding offer carries in it: it plays once an answer carries it.
    assignment: object | None = None
    offered: object | None = None


def _codec_key(track: PublishedTrack) -> tuple[str, str, bool]:
    # A slot's sender is fed frames or packets for its whole life: each keeps its own
    # sequence numbers, so one m-line never mixes them.
    return (
        track.codec.mimeType.lower(),
        repr(sorted(track.codec.parameters.items())),
        track.packet_source,
    )


class Subscriber:
    """Forwards published tracks to one participant over a server-offered connection.

    Every change (a track added or removed) leads to a new server offer, sent through
    ``send_offer``. Offers are serialized: while one waits for its answer, further
    changes only mark the connection dirty, and one offer covering all of them follows
    the answer. A subscription starts playing once the answer that carries it is in.
    """

    def __init__(
        self,
        participant_id: str,
        settings: MediaSettings,
        clock: Clock,
        spawn: Spawn,
        send_offer: SendOffer,
        on_lost: Callable[[str], None],
        log: logging.Logger,
        counters: MediaCounters | None = None,
    ) -> None:
        self.participant_id = participant_id
        self._counters = counters or MediaCounters()
        self._settings = settings
        self._clock = clock
        self._spawn = spawn
        self._send_offer = send_offer
        self._on_lost = on_lost
        self._pc: RTCPeerConnection | None = None
        self._slots: list[_Slot] = []
        self._dirty = False
        self._negotiation: asyncio.Task[None] | None = None
        self._negotiating = False
        self._offer_pending = False
        self._offered_sections = 0
        self._answer_timer: Timer | None = None
        self._trickled = TrickledCandidates()
        #: Tracks the participant asked not to receive for now, by track id.
        self._paused: set[str] = set()
        #: The simulcast layer the participant asked for, by track id (default: best).
        self._layers: dict[str, int] = {}
        self._closed = False
        self._log = log
        #: Offers sent so far.
        self.offers_sent = 0

    @property
    def has_connection(self) -> bool:
        return self._pc is not None

    @property
    def subscriptions(self) -> tuple[Subscription, ...]:
        return tuple(s.subscription for s in self._slots if s.subscription is not None)

    @property
    def forwards(self) -> tuple[PacketForward, ...]:
        """The packet forwards playing now."""
        return tuple(s.forward for s in self._slots if s.forward and s.forward.attached)

    def add(self, published: PublishedTrack) -> None:
        """Start forwarding ``published`` (after the next offer/answer)."""
        if self._closed or any(s.published is published for s in self._slots):
            return
        slot = self._free_slot(published) or self._new_slot(published)
        slot.published = published
        if slot.forward is not None:
            slot.assignment = object()
            if published.track_id in self._paused:
                slot.forward.pause()
            else:
                slot.forward.paused = False
        else:
            slot.subscription = published.subscribe()
            slot.assignment = slot.subscription
            if published.track_id in self._paused:
                slot.subscription.pause()
        aiortc_hooks.set_msid(
            slot.transceiver.sender,
            published.participant_id,
            msid_track_id(published.participant_id, published.source),
        )
        slot.transceiver.direction = "sendonly"
        self._changed()

    def remove(self, published: PublishedTrack) -> None:
        """Stop forwarding ``published``; its m-line goes inactive, free for reuse."""
        for slot in self._slots:
            if slot.published is published:
                self._free(slot)
                slot.transceiver.direction = "inactive"
                self._changed()

    async def accept_answer(self, answer_sdp: object) -> None:
        """Apply the client's answer to the outstanding offer."""
        if self._closed or self._pc is None:
            raise MediaError("There is no media connection to answer for.")
        if not self._offer_pending:
            raise MediaError("There is no server offer waiting for an answer.")
        checked = check_answer(answer_sdp, self._settings, self._offered_sections)
        try:
            await self._pc.setRemoteDescription(RTCSessionDescription(checked.sdp, "answer"))
        except Exception as error:
            raise MediaError(f"The answer was refused: {error}") from error
        self._offer_pending = False
        if self._answer_timer is not None:
            self._answer_timer.cancel()
            self._answer_timer = None
        await self._trickled.flush(self._pc)
        for slot in self._slots:
            if slot.assignment is None or slot.assignment is not slot.offered:
                continue
            published = slot.published
            assert published is not None
            if slot.forward is not None:
                if not slot.forward.attached:
                    published.attach_forward(
                        slot.forward, self._layers.get(published.track_id, BEST_LAYER)
                    )
            elif slot.subscription is not None:
                slot.track.attach(slot.subscription, published.source)
        self._kick()

    def set_receiving(self, track_id: str, receiving: bool) -> None:
        """Pause or resume forwarding one track (``"<participant>/<source>"``), for
        example while the client does not show it; the m-line stays, so no offer."""
        if receiving:
            self._paused.discard(track_id)
        elif len(self._paused) < MAX_PAUSED:
            self._paused.add(track_id)
        for slot in self._slots:
            if slot.published is not None and slot.published.track_id == track_id:
                flow = slot.forward or slot.subscription
                assert flow is not None
                if receiving:
                    flow.resume()
                else:
                    flow.pause()

    def set_layer(self, track_id: str, layer: int) -> None:
        """Which simulcast layer of one track to forward (0 the lowest)."""
        self._layers.pop(track_id, None)
        if len(self._layers) < MAX_PAUSED:
            self._layers[track_id] = layer
        for slot in self._slots:
            published = slot.published
            if published is not None and published.track_id == track_id and slot.forward:
                published.set_layer(slot.forward, layer)

    async def add_candidate(self, candidate: RTCIceCandidate) -> None:
        """A candidate the client trickled for this connection; kept until its answer."""
        if not self._closed:
            await self._trickled.add(self._pc, candidate)

    async def close(self) -> None:
        """Close every subscription and the connection."""
        self._closed = True
        if self._answer_timer is not None:
            self._answer_timer.cancel()
            self._answer_timer = None
        negotiation = self._negotiation
        if negotiation is not None and negotiation is not asyncio.current_task():
            # It may be stuck in send_offer() towards a client that is gone.
            negotiation.cancel()
        for slot in self._slots:
            self._free(slot)
            slot.track.stop()
        self._slots.clear()
        pc, self._pc = self._pc, None
        if pc is not None:
            await close_peer_connection(pc)

    def _connection(self) -> RTCPeerConnection:
        if self._pc is None:
            pc = new_peer_connection(self._settings.ice_servers)
            on_connection_lost(
                pc, lambda: self._pc is pc, lambda: self._on_lost("connection lost")
            )
            on_never_connected(
                pc,
                self._clock,
                self._settings.connect_timeout,
                lambda: self._pc is pc,
                lambda: self._on_lost("never connected"),
            )
            self._pc = pc
        return self._pc

    def _free_slot(self, published: PublishedTrack) -> _Slot | None:
        # The sender keeps the codec it started with, so only reuse a matching slot.
        key = _codec_key(published)
        return next((s for s in self._slots if s.published is None and s.codec_key == key), None)

    def _new_slot(self, published: PublishedTrack) -> _Slot:
        track = ForwardedTrack(published.kind, published.source)
        transceiver = self._connection().addTransceiver(track, direction="sendonly")
        transceiver.setCodecPreferences(codec_preferences(published.codec))
        slot = _Slot(transceiver, track, _codec_key(published))
        if published.packet_source:
            sender = transceiver.sender
            forward = PacketForward(aiortc_hooks.RtpOutput(sender), published.kind, self._counters)
            aiortc_hooks.take_over_sender(sender, forward.started, forward.retransmit)
            slot.forward = forward
        aiortc_hooks.on_keyframe_request(transceiver.sender, partial(self._on_pli, slot))
        self._slots.append(slot)
        return slot

    def _free(self, slot: _Slot) -> None:
        slot.track.detach()
        if slot.published is not None and slot.subscription is not None:
            slot.published.unsubscribe(slot.subscription)
        if slot.published is not None and slot.forward is not None:
            slot.published.remove_forward(slot.forward)
            slot.forward.detach()
        slot.published = slot.subscription = slot.assignment = slot.offered = None

    def _on_pli(self, slot: _Slot) -> None:
        if slot.published is not None:
            slot.published.request_keyframe(slot.forward, explicit=True)

    def _changed(self) -> None:
        self._dirty = True
        self._kick()

    def _kick(self) -> None:
        if self._dirty and not self._negotiating and not self._offer_pending and not self._closed:
            self._negotiating = True
            self._negotiation = self._spawn(self._negotiate())

    async def _negotiate(self) -> None:
        try:
            while self._dirty and not self._offer_pending and not self._closed:
                self._dirty = False
                await self._offer()
        except Exception as error:
            if not self._closed:
                self._log.warning("could not send an offer to %s: %r", self.participant_id, error)
                self._on_lost("signaling failed")
        finally:
            self._negotiating = False

    async def _offer(self) -> None:
        pc = self._connection()
        # createOffer() does not yield, so this is exactly what the offer carries; a
        # change made while gathering below waits for the next offer.
        carried = [(slot, slot.assignment) for slot in self._slots]
        offer = await pc.createOffer()
        await set_local_description(
            pc,
            offer,
            self._settings.host_addresses,
            self._settings.ice_gathering_timeout,
            self._settings.udp_ports,
        )
        if self._closed:
            return
        if self._settings.packet_forwarding:
            # Subscribers' RTCP (receiver reports, NACKs, PLIs) is handled as it arrives.
            aiortc_hooks.take_over_rtp_input(pc)
        for slot, assignment in carried:
            slot.offered = assignment
        self._offered_sections = offer.sdp.count("\r\nm=")
        self._offer_pending = True
        self._answer_timer = self._clock.call_later(
            self._settings.answer_timeout, self._on_answer_timeout
        )
        self.offers_sent += 1
        await self._send_offer(str(pc.localDescription.sdp))

    def _on_answer_timeout(self) -> None:
        self._answer_timer = None
        if self._offer_pending and not self._closed:
            self._log.warning(
                "%s did not answer within %.0f s",
                self.participant_id,
                self._settings.answer_timeout,
            )
            self._on_lost("no answer")
