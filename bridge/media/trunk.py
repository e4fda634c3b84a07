"""The trunk: the one WebRTC connection between two agencies' bridges for one meeting.

The satellite bridge offers and the host answers, once: a trunk is never renegotiated.
Its offer holds fixed *slots* (:class:`~bridge.meeting.media.TrunkLimits`), ``sendrecv``
audio sections (Opus) and, for each of :attr:`MediaSettings.video_codecs`, as many video
sections asking for that codec (the host keeps it when it has it, else the next one the
section offers), each one *out* slot (our sender) and one *in* slot (our receiver) under
one mid, and two data channels: ``state``, which carries the door's messages, and
``media``, which this module keeps to itself.

Out: the router hands the trunk every track published on this side that did not come
over this trunk. Each takes a free out slot of its kind and codec at once, as a
:class:`~bridge.media.subscription.Subscription` that the slot's
:class:`~bridge.media.passthrough.ForwardedTrack` plays, so a track crosses once however
many receive it on the other side. A track that finds no free slot waits for one; a video
track in a codec no slot has (the host has not got it) is not carried. A PLI or FIR on an out slot
becomes a keyframe request to the track's publisher.

In: the ``media`` channel says what each slot carries, in JSON:

- ``{"slot": "<mid>", "track": "<participant id>/<source>", "kind": "audio"|"video"}``,
  and ``{"slot": "<mid>", "track": null}`` once it carries nothing; the whole map is sent
  again when the channel opens (nothing is sent before);
- ``{"levels": {"<mid>": <0..127>}}`` every 100 ms while out audio slots' tracks report
  RFC 6464 levels (the loudest of the interval): aiortc's sender puts no level on the
  packets it forwards, and the active speaker is decided from levels.

A slot mapped to a participant behind the trunk (:meth:`Trunk.add_remote`) becomes their
:class:`~bridge.media.publisher.PublishedTrack` in the router; a mapping that comes before
the participant does waits for them. Whatever arrives on the data channels is checked,
and what is wrong or over :data:`~bridge.meeting.media.MAX_TRUNK_STATE_BYTES` is dropped
with a log line.

Public API (a :class:`Trunk` comes from :meth:`bridge.media.router.Router.add_trunk`)::

    trunk = router.add_trunk(trunk_id, listener, TrunkLimits(audio=16, video=16))
    offer_sdp = await trunk.offer()             # the satellite
    answer_sdp = await trunk.answer(offer_sdp)  # the host
    await trunk.accept_answer(answer_sdp)       # the satellite
    media = trunk.add_remote(participant_id)    # someone behind the trunk
    trunk.send_state(text)                      # once listener.trunk_open() was called
    await trunk.close()
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import partial
from typing import Literal, NoReturn, Protocol, cast

from aiortc import RTCDataChannel, RTCPeerConnection, RTCRtpTransceiver, RTCSessionDescription, sdp
from aiortc.rtcrtpparameters import RTCRtpCodecParameters

from ..meeting.media import MAX_TRUNK_STATE_BYTES, TrunkLimits, TrunkListener
from . import aiortc_hooks
from .clock import Clock, Timer
from .counters import MediaCounters
from .errors import MediaError
from .events import Connection, Kind, Source
from .frames import EncodedFrame
from .passthrough import ForwardedTrack, tap_encoded_frames
from .peer import (
    close_peer_connection,
    new_peer_connection,
    on_connection_lost,
    on_never_connected,
    set_local_description,
)
from .publisher import PARTICIPANT_ID, SOURCE_KINDS, PublishedTrack, Spawn
from .sdp_rules import (
    SdpSection,
    check_trunk_answer,
    check_trunk_offer,
    same_codec,
    trunk_codec_preferences,
)
from .settings import SUPPORTED_VIDEO_CODECS, MediaSettings
from .subscription import Subscription

#: The most sections of one kind a trunk may have.
MAX_SLOTS_PER_KIND = 64
#: How often the levels of out audio slots are sent, in seconds.
LEVELS_INTERVAL = 0.1
# One level sent stands for this many 20 ms audio packets.
_PACKETS_PER_LEVEL = round(LEVELS_INTERVAL / 0.02)
# Dropped messages logged one by one, then one in this many.
_LOG_DROPS = 20
_LOG_DROPS_EVERY = 1000

STATE_CHANNEL = "state"
MEDIA_CHANNEL = "media"

_Phase = Literal["new", "offering", "offered", "accepting", "answering", "open"]


class TrunkHost(Protocol):
    """What a :class:`Trunk` tells its router."""

    def join_remote(self, remote: RemoteParticipant) -> None:
        """Make ``remote`` a participant (raises :class:`MediaError` for a bad or
        taken id)."""
        ...

    def forget_remote(self, remote: RemoteParticipant) -> None: ...

    def remote_left(self, remote: RemoteParticipant, reason: str) -> None: ...

    def track_published(self, track: PublishedTrack) -> None: ...

    def track_unpublished(self, track: PublishedTrack) -> None: ...

    def audio_level(self, participant_id: str, level: int, packets: int) -> None: ...

    def trunk_closed(self, trunk: Trunk) -> None: ...


@dataclass(eq=False)
class _Slot:
    """One section of the trunk: an out slot (its sender) and an in slot (its receiver)."""

    transceiver: RTCRtpTransceiver
    kind: Kind
    #: What the sender plays: the subscription of the out track.
    track: ForwardedTrack
    mid: str = ""
    #: The codec negotiated for the section (both ways).
    codec: RTCRtpCodecParameters | None = None
    #: The other side's SSRC in this section, for keyframe requests.
    remote_ssrc: int | None = None
    out: PublishedTrack | None = None
    subscription: Subscription | None = None
    #: The loudest level of the out track since the last levels message.
    level: int | None = None
    #: What the other side says the in slot carries (``"<participant>/<source>"``).
    in_track_id: str | None = None
    #: That track here, once its participant was added.
    incoming: PublishedTrack | None = None


class _Dropped(Exception):
    """A data channel message that is dropped (the reason is the message)."""


class RemoteParticipant:
    """A participant behind a trunk (implements
    :class:`bridge.meeting.media.ParticipantMedia`); made by :meth:`Trunk.add_remote`.

    Their tracks arrive over the trunk and they receive through it, so they have no
    connection of their own: what would negotiate one is refused.
    """

    def __init__(self, trunk: Trunk, participant_id: str) -> None:
        self.participant_id = participant_id
        self._trunk = trunk
        self._closed = False

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def connections(self) -> int:
        """Always 0: they have no connection here (the trunk's is counted once)."""
        return 0

    @property
    def tracks(self) -> tuple[PublishedTrack, ...]:
        """Their tracks that the trunk carries in now."""
        return self._trunk._tracks_of(self.participant_id)

    async def publish(
        self, offer_sdp: str, sources: Mapping[str, str], data_channels: bool = False
    ) -> str:
        """Refused: their tracks come as the other bridge maps them to the trunk."""
        raise MediaError(self._over_the_trunk())

    def set_receiving(self, track_id: str, receiving: bool) -> None:
        """Nothing to do: what they receive crosses the trunk once for everyone there."""

    def set_layer(self, track_id: str, layer: int) -> None:
        """Nothing to do: the trunk carries one layer for everyone there."""

    async def add_candidate(self, connection: Connection, candidate: str) -> bool:
        """Refused: they have no connection here."""
        raise MediaError(self._over_the_trunk())

    async def accept_answer(self, answer_sdp: str) -> None:
        """Refused: they are sent no offer; the trunk carries what they receive."""
        raise MediaError(self._over_the_trunk())

    async def close(self, reason: str = "left") -> None:
        """Unpublish their tracks and take them out of the router; safe to call again."""
        if not self._closed:
            self._closed = True
            self._trunk._remote_closed(self, reason)

    def _over_the_trunk(self) -> str:
        return f"The media of {self.participant_id} comes over the trunk."


class Trunk:
    """The trunk of one meeting to another bridge (implements
    :class:`bridge.meeting.media.TrunkMedia`). See the module docstring."""

    def __init__(
        self,
        trunk_id: str,
        listener: TrunkListener,
        limits: TrunkLimits,
        settings: MediaSettings,
        clock: Clock,
        spawn: Spawn,
        host: TrunkHost,
        log: logging.Logger,
        counters: MediaCounters | None = None,
    ) -> None:
        self.trunk_id = trunk_id
        self._listener = listener
        self._limits = limits
        self._settings = settings
        self._clock = clock
        self._spawn = spawn
        self._host = host
        self._counters = counters or MediaCounters()
        # The meeting's logger: one logger per trunk would never be freed.
        self._log = log
        self._phase: _Phase = "new"
        self._pc: RTCPeerConnection | None = None
        self._slots: list[_Slot] = []
        self._by_mid: dict[str, _Slot] = {}
        self._state: RTCDataChannel | None = None
        self._media: RTCDataChannel | None = None
        self._remotes: dict[str, RemoteParticipant] = {}
        #: Tracks to carry that have no slot: before negotiation, or all slots taken.
        self._waiting: list[PublishedTrack] = []
        #: Tracks in a codec no slot has: never carried.
        self._refused: set[PublishedTrack] = set()
        #: The out audio slot of each publisher, for their levels.
        self._out_audio: dict[str, _Slot] = {}
        self._levels_timer: Timer | None = None
        self._closing: asyncio.Future[None] | None = None
        self._closed = False
        #: Data channel messages dropped so far.
        self.messages_dropped = 0

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def has_connection(self) -> bool:
        return self._pc is not None

    @property
    def untrunked(self) -> int:
        """Tracks of this side the trunk does not carry now (no free slot, or a codec
        the trunk does not have)."""
        return len(self._waiting) + len(self._refused)

    # Negotiation

    async def offer(self) -> str:
        """The satellite's side: make the connection and return its one offer."""
        self._begin("new", "offering")
        pc = self._connection()
        try:
            # Audio slots, then video slots for each video codec a publisher may use
            # here: the host keeps the codec each asks for when it has it.
            codecs = self._settings.video_codecs
            wanted = (
                [("audio", None)] * self._limits.audio
                + [("video", codecs[0])] * self._limits.video
                + [("video", c) for c in codecs[1:] for _ in range(self._limits.secondary_video)]
            )
            for kind, codec in wanted:
                slot = self._add_slot(pc, cast(Kind, kind))
                slot.transceiver.setCodecPreferences(
                    trunk_codec_preferences(kind, self._settings, codec)
                )
            # aiortc puts the SCTP section in an offer only when a channel exists.
            self._take_channel(pc.createDataChannel(STATE_CHANNEL))
            self._take_channel(pc.createDataChannel(MEDIA_CHANNEL))
            await self._set_local_description(pc, await pc.createOffer())
        except Exception as error:
            await self._failed(error, "offering")
        if self._closed:
            raise MediaError("This trunk is closed.")
        self._phase = "offered"
        return str(pc.localDescription.sdp)

    async def answer(self, offer_sdp: str) -> str:
        """The host's side: answer the satellite's offer (raises :class:`MediaError` when
        it is not a trunk offer within the limits; the trunk is then as it was)."""
        self._begin("new", "answering")
        try:
            checked = check_trunk_offer(
                offer_sdp,
                self._settings,
                self._limits.audio,
                self._limits.video_sections(len(SUPPORTED_VIDEO_CODECS)),
            )
        except MediaError:
            self._phase = "new"
            raise
        pc = self._connection()
        try:
            # Made before the offer is applied, aiortc gives them its sections in order.
            for section in checked.sections:
                self._add_slot(pc, cast(Kind, section.kind))
            await pc.setRemoteDescription(RTCSessionDescription(checked.sdp, "offer"))
        except Exception as error:
            await self._failed(MediaError(f"The trunk offer was refused: {error}"), "answering")
        try:
            await self._set_local_description(pc, await pc.createAnswer())
        except ValueError as error:  # aiortc's word on what the offer asks
            await self._failed(
                MediaError(f"The trunk offer could not be answered: {error}"), "answering"
            )
        except Exception as error:
            await self._failed(error, "answering")
        if self._closed:
            raise MediaError("This trunk is closed.")
        self._opened(checked.sections)
        return str(pc.localDescription.sdp)

    async def accept_answer(self, answer_sdp: str) -> None:
        """The satellite's side: apply the host's answer to :meth:`offer`."""
        if self._closed:
            raise MediaError("This trunk is closed.")
        if self._phase != "offered" or self._pc is None:
            raise MediaError("There is no trunk offer waiting for an answer.")
        pc = self._pc
        offered = [
            (str(m.rtp.muxId), m.kind)
            for m in sdp.SessionDescription.parse(pc.localDescription.sdp).media
        ]
        checked = check_trunk_answer(answer_sdp, self._settings, offered)
        self._phase = "accepting"
        try:
            await pc.setRemoteDescription(RTCSessionDescription(checked.sdp, "answer"))
        except Exception as error:
            self._phase = "offered"
            if self._closed:
                raise MediaError("This trunk is closed.") from error
            raise MediaError(f"The trunk answer was refused: {error}") from error
        if self._closed:
            raise MediaError("This trunk is closed.")
        self._opened(checked.sections)

    def _begin(self, expected: _Phase, phase: _Phase) -> None:
        if self._closed:
            raise MediaError("This trunk is closed.")
        if self._phase != expected:
            raise MediaError("This trunk was negotiated already; it is negotiated once.")
        self._phase = phase

    async def _set_local_description(
        self, pc: RTCPeerConnection, description: RTCSessionDescription
    ) -> None:
        await set_local_description(
            pc,
            description,
            self._settings.host_addresses,
            self._settings.ice_gathering_timeout,
            self._settings.udp_ports,
        )

    async def _failed(self, error: Exception, doing: str) -> NoReturn:
        """Drop the connection being made, so that the trunk is as it was, and raise."""
        slots, self._slots = self._slots, []
        self._by_mid.clear()
        for slot in slots:
            slot.track.stop()
        self._state = self._media = None
        pc, self._pc = self._pc, None
        if pc is not None:
            await close_peer_connection(pc)
        if self._closed:
            raise MediaError("This trunk is closed.") from error
        self._phase = "new"
        if isinstance(error, MediaError):
            raise error
        # Not the other bridge's fault (sockets, gathering, a bug): say so, and log it.
        self._log.error("trunk %s failed while %s", self.trunk_id, doing, exc_info=error)
        raise MediaError(
            "The server could not set up the trunk. Try again in a moment.", code="internal"
        ) from error

    def _connection(self) -> RTCPeerConnection:
        assert self._pc is None
        pc = new_peer_connection(self._settings.ice_servers)
        on_connection_lost(pc, lambda: self._pc is pc, lambda: self._lost("connection lost"))
        on_never_connected(
            pc,
            self._clock,
            self._settings.connect_timeout,
            lambda: self._pc is pc,
            lambda: self._lost("never connected"),
        )
        pc.on("datachannel", self._guarded(self._take_channel))
        self._pc = pc
        return pc

    def _add_slot(self, pc: RTCPeerConnection, kind: Kind) -> _Slot:
        track = ForwardedTrack(kind, f"{kind}-{len(self._slots)}")
        transceiver = pc.addTransceiver(track, direction="sendrecv")
        slot = _Slot(transceiver, kind, track)
        aiortc_hooks.on_keyframe_request(transceiver.sender, partial(self._on_pli, slot))
        # Before the receiver starts: it starts once both descriptions are in. No audio
        # level is read off its packets: a passthrough sender puts none on them.
        tap_encoded_frames(transceiver.receiver, partial(self._on_frame, slot))
        self._slots.append(slot)
        return slot

    def _opened(self, sections: tuple[SdpSection, ...]) -> None:
        """Both descriptions are in: the slots have their mids and codecs."""
        by_mid = {s.mid: s for s in sections}
        for slot in self._slots:
            slot.mid = str(slot.transceiver.mid)
            section = by_mid[slot.mid]
            slot.codec, slot.remote_ssrc = section.codec, section.ssrc
            self._by_mid[slot.mid] = slot
        self._phase = "open"
        self._log.info(
            "trunk %s negotiated: %d audio and %d video slots",
            self.trunk_id,
            sum(s.kind == "audio" for s in self._slots),
            sum(s.kind == "video" for s in self._slots),
        )
        waiting, self._waiting = self._waiting, []
        for track in waiting:
            self._carry(track)

    # Out: tracks of this side

    def add_track(self, published: PublishedTrack) -> None:
        """Carry ``published`` to the other side (the router calls this for every track
        not published behind this trunk)."""
        if (
            self._closed
            or published.participant_id in self._remotes
            or published in self._waiting
            or published in self._refused
            or any(s.out is published for s in self._slots)
        ):
            return
        if self._phase != "open":
            self._waiting.append(published)
        else:
            self._carry(published)

    def remove_track(self, published: PublishedTrack) -> None:
        """Stop carrying ``published``; its slot goes to the next track waiting."""
        if published in self._waiting:
            self._waiting.remove(published)
            return
        self._refused.discard(published)
        slot = next((s for s in self._slots if s.out is published), None)
        if slot is None:
            return
        self._release(slot)
        self._send_media({"slot": slot.mid, "track": None})
        assert slot.codec is not None
        codec = slot.codec
        following = next(
            (t for t in self._waiting if t.kind == slot.kind and same_codec(t.codec, codec)),
            None,
        )
        if following is not None:
            self._waiting.remove(following)
            self._assign(slot, following)

    def audio_level(self, participant_id: str, level: int) -> None:
        """One RFC 6464 level of a publisher's microphone (sent on if it is carried)."""
        slot = self._out_audio.get(participant_id)
        if slot is None:
            return
        slot.level = level if slot.level is None else min(slot.level, level)
        if self._levels_timer is None and not self._closed:
            self._levels_timer = self._clock.call_later(LEVELS_INTERVAL, self._send_levels)

    def _carry(self, published: PublishedTrack) -> None:
        fitting = [
            s
            for s in self._slots
            if s.kind == published.kind
            and s.codec is not None
            and same_codec(published.codec, s.codec)
        ]
        if not fitting:
            self._refused.add(published)
            self._log.warning(
                "trunk %s does not carry %s: it is %s, which the trunk has no slot for",
                self.trunk_id,
                published.track_id,
                published.codec.mimeType,
            )
            return
        slot = next((s for s in fitting if s.out is None), None)
        if slot is None:
            self._waiting.append(published)
            self._log.warning(
                "trunk %s has no free %s slot: %s waits for one",
                self.trunk_id,
                published.kind,
                published.track_id,
            )
            return
        self._assign(slot, published)

    def _assign(self, slot: _Slot, published: PublishedTrack) -> None:
        slot.out = published
        slot.subscription = published.subscribe()
        # Plays once the connection is up; video starts at a keyframe it asks for then.
        slot.track.attach(slot.subscription, published.track_id)
        if published.kind == "audio":
            self._out_audio[published.participant_id] = slot
        self._send_media(self._slot_message(slot))

    def _release(self, slot: _Slot) -> None:
        published, subscription = slot.out, slot.subscription
        slot.track.detach()
        slot.out = slot.subscription = slot.level = None
        if published is not None:
            if self._out_audio.get(published.participant_id) is slot:
                del self._out_audio[published.participant_id]
            if subscription is not None:
                published.unsubscribe(subscription)

    def _on_pli(self, slot: _Slot) -> None:
        if slot.out is not None:
            slot.out.keyframes.request(explicit=True)

    def _send_levels(self) -> None:
        self._levels_timer = None
        levels: dict[str, int] = {}
        for slot in self._slots:
            if slot.level is not None:
                levels[slot.mid], slot.level = slot.level, None
        if levels:
            self._send_media({"levels": levels})

    @staticmethod
    def _slot_message(slot: _Slot) -> dict[str, object]:
        assert slot.out is not None
        return {"slot": slot.mid, "track": slot.out.track_id, "kind": slot.kind}

    def _send_media(self, message: dict[str, object]) -> None:
        channel = self._media
        if channel is not None and channel.readyState == "open" and not self._closed:
            channel.send(json.dumps(message, separators=(",", ":")))

    # In: tracks of the other side

    def add_remote(self, participant_id: str) -> RemoteParticipant:
        """A participant behind this trunk; their tracks are published as the other side
        maps them to slots. Raises :class:`MediaError` for a taken or bad id."""
        if self._closed:
            raise MediaError("This trunk is closed.")
        remote = RemoteParticipant(self, participant_id)
        self._host.join_remote(remote)
        self._remotes[participant_id] = remote
        for slot in self._slots:
            if slot.in_track_id is not None and _owner(slot.in_track_id) == participant_id:
                self._publish_in(slot)
        return remote

    def _tracks_of(self, participant_id: str) -> tuple[PublishedTrack, ...]:
        return tuple(
            s.incoming
            for s in self._slots
            if s.incoming is not None and s.incoming.participant_id == participant_id
        )

    def _remote_closed(self, remote: RemoteParticipant, reason: str) -> None:
        self._host.forget_remote(remote)
        if self._remotes.get(remote.participant_id) is remote:
            del self._remotes[remote.participant_id]
        for slot in self._slots:
            if slot.incoming is not None and slot.incoming.participant_id == remote.participant_id:
                # The mapping stays: it applies again if they are added again.
                self._unpublish_in(slot)
        self._host.remote_left(remote, reason)

    def _map(self, slot: _Slot, track_id: str | None) -> None:
        if slot.in_track_id == track_id:
            return
        self._unmap(slot)
        if track_id is None:
            return
        for other in self._slots:
            if other.in_track_id == track_id:
                self._unmap(other)  # the track moved to another slot
        slot.in_track_id = track_id
        self._publish_in(slot)

    def _unmap(self, slot: _Slot) -> None:
        slot.in_track_id = None
        self._unpublish_in(slot)

    def _publish_in(self, slot: _Slot) -> None:
        assert slot.in_track_id is not None and slot.codec is not None
        participant_id, source = slot.in_track_id.split("/")
        remote = self._remotes.get(participant_id)
        if remote is None or remote.closed or slot.incoming is not None:
            return
        track = PublishedTrack(
            participant_id,
            cast(Source, source),
            slot.codec,
            slot.transceiver.receiver,
            slot.remote_ssrc,
            self._settings,
            self._clock,
            self._spawn,
            self._counters,
        )
        slot.incoming = track
        self._log.info("%s publishes %s over trunk %s", participant_id, source, self.trunk_id)
        self._host.track_published(track)

    def _unpublish_in(self, slot: _Slot) -> None:
        track, slot.incoming = slot.incoming, None
        if track is not None:
            self._log.info(
                "%s unpublishes %s over trunk %s",
                track.participant_id,
                track.source,
                self.trunk_id,
            )
            self._host.track_unpublished(track)
            track.close()

    def _on_frame(self, slot: _Slot, frame: EncodedFrame) -> None:
        if slot.incoming is not None:
            slot.incoming.push(frame)

    # The data channels

    def send_state(self, message: str) -> None:
        """Send ``message`` on the state channel (raises :class:`MediaError` when it is
        not open, or the message is over :data:`MAX_TRUNK_STATE_BYTES` in UTF-8)."""
        if not isinstance(message, str):
            raise MediaError("A trunk state message is text.")
        try:
            size = len(message.encode("utf-8"))
        except UnicodeEncodeError as error:
            raise MediaError("A trunk state message must be valid Unicode text.") from error
        if size > MAX_TRUNK_STATE_BYTES:
            raise MediaError(
                f"A trunk state message is at most {MAX_TRUNK_STATE_BYTES // 1024} KiB."
            )
        channel = self._state
        if self._closed or channel is None or channel.readyState != "open":
            raise MediaError("The trunk's state channel is not open.")
        channel.send(message)

    def _take_channel(self, channel: RTCDataChannel) -> None:
        """Keep one of our two channels (ours, or opened by the other side)."""
        if channel.label == STATE_CHANNEL and self._state is None:
            self._state = channel
            on_message, on_open = self._on_state_message, self._on_state_open
        elif channel.label == MEDIA_CHANNEL and self._media is None:
            self._media = channel
            on_message, on_open = self._on_media_message, self._on_media_open
        else:
            self._log.warning("trunk %s: data channel %r refused", self.trunk_id, channel.label)
            channel.close()
            return
        channel.on("message", self._guarded(on_message))
        if channel.readyState == "open":  # the other side's channels come open
            self._guarded(on_open)()
        else:
            channel.on("open", self._guarded(on_open))

    def _on_state_open(self) -> None:
        if not self._closed:
            self._log.info("trunk %s is open", self.trunk_id)
            self._listener.trunk_open()

    def _on_media_open(self) -> None:
        for slot in self._slots:
            if slot.out is not None:
                self._send_media(self._slot_message(slot))

    def _on_state_message(self, data: str | bytes) -> None:
        if not isinstance(data, str):
            self._dropped("state", "binary")
        elif len(data.encode("utf-8")) > MAX_TRUNK_STATE_BYTES:
            self._dropped("state", f"over {MAX_TRUNK_STATE_BYTES} bytes")
        elif not self._closed:
            self._listener.trunk_state(data)

    def _on_media_message(self, data: str | bytes) -> None:
        if self._closed:
            return  # the last messages of a trunk being closed: nothing to map any more
        try:
            message = _read(data)
            if "levels" in message:
                self._on_levels(message)
            else:
                self._on_slot_message(message)
        except _Dropped as error:
            self._dropped("media", str(error))

    def _on_slot_message(self, message: dict[str, object]) -> None:
        if message.keys() not in ({"slot", "track"}, {"slot", "track", "kind"}):
            raise _Dropped("not a slot or levels message")
        slot = self._slot(message["slot"])
        track_id = message["track"]
        if track_id is not None:
            if not isinstance(track_id, str) or track_id.count("/") != 1:
                raise _Dropped("the track is not <participant>/<source>")
            participant_id, source = track_id.split("/")
            if not PARTICIPANT_ID.fullmatch(participant_id):
                raise _Dropped("bad participant id")
            if message.get("kind") != slot.kind or SOURCE_KINDS.get(source) != slot.kind:
                raise _Dropped(f"a {message.get('kind')} {source} in {slot.kind} slot")
        self._map(slot, track_id)

    def _on_levels(self, message: dict[str, object]) -> None:
        levels = message["levels"]
        if message.keys() != {"levels"} or not isinstance(levels, dict):
            raise _Dropped("levels must map slots to levels")
        checked: list[tuple[_Slot, int]] = []
        for mid, level in levels.items():
            slot = self._slot(mid)
            if slot.kind != "audio" or type(level) is not int or not 0 <= level <= 127:
                raise _Dropped("a level is 0 to 127, for an audio slot")
            checked.append((slot, level))
        for slot, level in checked:
            if slot.incoming is not None:
                self._host.audio_level(slot.incoming.participant_id, level, _PACKETS_PER_LEVEL)

    def _slot(self, mid: object) -> _Slot:
        slot = self._by_mid.get(mid) if isinstance(mid, str) else None
        if slot is None:
            raise _Dropped(f"no slot {str(mid)[:16]!r}")
        return slot

    def _dropped(self, channel: str, reason: str) -> None:
        self.messages_dropped += 1
        count = self.messages_dropped
        if count <= _LOG_DROPS or count % _LOG_DROPS_EVERY == 0:
            self._log.warning(
                "trunk %s: %s message dropped (%s; %d so far)",
                self.trunk_id,
                channel,
                reason,
                count,
            )

    def _guarded(self, handler: Callable[..., None]) -> Callable[..., None]:
        """``handler`` for aiortc's events: an exception is logged, never raised there."""

        def run(*args: object) -> None:
            try:
                handler(*args)
            except Exception:
                self._log.exception("trunk %s: %s failed", self.trunk_id, handler.__name__)

        return run

    # The end

    async def close(self, reason: str = "left") -> None:
        """Close the connection and unpublish the remote participants' tracks (they stay
        participants until closed themselves); safe to call more than once."""
        if self._closing is not None:
            await asyncio.shield(self._closing)
            return
        self._closing = asyncio.get_running_loop().create_future()
        self._closed = True
        try:
            if self._levels_timer is not None:
                self._levels_timer.cancel()
                self._levels_timer = None
            for slot in self._slots:
                self._release(slot)
                self._unpublish_in(slot)
                slot.track.stop()
            self._slots.clear()
            self._by_mid.clear()
            self._waiting.clear()
            self._refused.clear()
            pc, self._pc = self._pc, None
            if pc is not None:
                self._log.debug("trunk %s: closing its connection", self.trunk_id)
                await close_peer_connection(pc)
        finally:
            self._host.trunk_closed(self)
            self._closing.set_result(None)
            self._log.info("trunk %s closed: %s", self.trunk_id, reason)
            try:
                self._listener.trunk_closed(reason)
            except Exception:
                self._log.exception("trunk %s: trunk_closed failed", self.trunk_id)

    def _lost(self, reason: str) -> None:
        if not self._closed:
            self._spawn(self.close(reason))


def _owner(track_id: str) -> str:
    return track_id.split("/")[0]


def _read(data: object) -> dict[str, object]:
    """A media channel message as a JSON object (raises :class:`_Dropped`)."""
    if not isinstance(data, str):
        raise _Dropped("binary")
    if len(data.encode("utf-8")) > MAX_TRUNK_STATE_BYTES:
        raise _Dropped(f"over {MAX_TRUNK_STATE_BYTES} bytes")
    try:
        message = json.loads(data)
    except (ValueError, RecursionError):
        raise _Dropped("not JSON") from None
    if not isinstance(message, dict):
        raise _Dropped("not a JSON object")
    return message
