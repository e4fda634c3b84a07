"""The media interface the meeting drives, and the events media reports back.

The meeting domain owns this interface; :mod:`bridge.media` (the SFU on aiortc)
implements it. Nothing here knows how media moves: a router per live meeting takes
participants, answers their publish offers, sends them offers for what they receive, and
reports what happens as :data:`MediaEvent` values.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Literal, Protocol

from ..refusal import Refusal

Source = Literal["camera", "microphone", "screen"]
Kind = Literal["audio", "video"]
#: A participant's two connections: what they send, and what they receive.
Connection = Literal["publish", "receive"]

#: Carries a server offer (for what the participant receives) to the participant.
SendOffer = Callable[[str], Awaitable[None]]


class MediaError(Refusal, ValueError):
    """A participant's media request was refused.

    Raised for input a client controls (SDP offers and answers, source labels,
    participant ids) and for requests that make no sense in the current state.
    ``str(error)`` is a plain sentence that can be shown to the user as is.
    """

    def __init__(self, message: str, code: str = "bad_sdp") -> None:
        super().__init__(code, message)


def msid_track_id(participant_id: str, source: str) -> str:
    """The msid track id of a forwarded track: ``<participant id>.<source>``, so that no
    two tracks a subscriber receives share one (a browser's ``MediaStreamTrack.id``,
    which livekit-client's end-to-end decryption keys its decryptors on)."""
    return f"{participant_id}.{source}"


def msid_source(stream_id: str, track_id: str) -> str:
    """The source named by a forwarded track's msid (see :func:`msid_track_id`)."""
    prefix = f"{stream_id}."
    return track_id[len(prefix) :] if track_id.startswith(prefix) else track_id


@dataclass(frozen=True, slots=True)
class TrackPublished:
    """A participant's track is live and is being forwarded to the others.

    ``track_id`` is ``"<participant_id>/<source>"``; a subscriber sees the track in SDP
    as ``a=msid:<participant_id> <participant_id>.<source>`` (:func:`msid_track_id`).
    """

    participant_id: str
    track_id: str
    kind: Kind
    source: Source
    #: The codec the publisher sends (``"video/VP8"``, ``"audio/opus"``), as received.
    mime_type: str = ""


@dataclass(frozen=True, slots=True)
class TrackUnpublished:
    """A participant's track ended (renegotiated away, or the participant left)."""

    participant_id: str
    track_id: str
    kind: Kind
    source: Source


@dataclass(frozen=True, slots=True)
class ActiveSpeaker:
    """The participant who now speaks loudest (after hysteresis)."""

    participant_id: str


@dataclass(frozen=True, slots=True)
class ParticipantMediaClosed:
    """Everything a participant held was released.

    ``reason`` is one of ``"left"`` (``ParticipantMedia.close()``), ``"connection lost"``
    (either connection failed, timed out on ICE consent, or the peer closed it),
    ``"no answer"`` (the client did not answer an offer in time), ``"never connected"``
    (a connection was not up ``connect_timeout`` after it was made), ``"signaling failed"``
    (``send_offer`` raised) or ``"router closed"``.
    """

    participant_id: str
    reason: str


MediaEvent = TrackPublished | TrackUnpublished | ActiveSpeaker | ParticipantMediaClosed


@dataclass(frozen=True, slots=True)
class MediaFrame:
    """One complete encoded frame of a published track, as an in-process listener gets
    it: the codec's bitstream as the publisher sent it (a VP8 frame, an H.264 Annex B
    access unit, an Opus packet), never decoded by the router."""

    data: bytes
    #: In the codec's clock rate (48000 for Opus, 90000 for video), counted from the
    #: track's first frame.
    timestamp: int
    #: Whether decoding can start here (always True for audio).
    keyframe: bool
    #: When the router handed it on, in seconds of the event loop's clock.
    arrival: float


#: What takes one track's frames for a :class:`MediaSink`; called on the event loop, so
#: it must not block (queue the work).
FrameHandler = Callable[[MediaFrame], None]


class MediaSink(Protocol):
    """An in-process listener that only receives (the recorder, the transcriber). It is
    offered every track published in the meeting while attached, from any door or trunk,
    and gets the frames of the tracks it takes. A video track starts at a keyframe (one
    is asked for); a sink that falls behind loses frames, never the meeting."""

    def track_started(self, track: TrackPublished) -> FrameHandler | None:
        """A track is live: return what takes its frames, or None to leave it."""
        ...

    def track_ended(self, track_id: str) -> None:
        """A track taken with :meth:`track_started` ended; no more of its frames come."""
        ...


class ParticipantMedia(Protocol):
    """One participant's media in one meeting."""

    async def publish(
        self, offer_sdp: str, sources: Mapping[str, str], data_channels: bool = False
    ) -> str:
        """Answer an offer on the publish connection (raises :class:`MediaError`).
        ``data_channels``: the offer may open data channels (accepted, and ignored)."""
        ...

    def set_receiving(self, track_id: str, receiving: bool) -> None:
        """Pause or resume forwarding one track (``"<participant id>/<source>"``) to this
        participant (a client that does not show it asks for this)."""
        ...

    def set_layer(self, track_id: str, layer: int) -> None:
        """Which simulcast layer of a track this participant receives: 0 the lowest,
        higher ones better (clipped to what the publisher sends)."""
        ...

    async def add_candidate(self, connection: Connection, candidate: str) -> bool:
        """An ICE candidate the client trickled for one of its connections; False when
        the server may not use it (raises :class:`MediaError` when it is no candidate)."""
        ...

    async def accept_answer(self, answer_sdp: str) -> None:
        """Apply the participant's answer to the last server offer."""
        ...

    async def close(self, reason: str = "left") -> None:
        """Release everything the participant holds; safe to call more than once."""
        ...


class TrunkListener(Protocol):
    """What a trunk tells the door that owns it (the federation door)."""

    def trunk_open(self) -> None:
        """The connection and its state channel are up; :meth:`TrunkMedia.send_state`
        works from now on."""
        ...

    def trunk_state(self, message: str) -> None:
        """A message the other bridge sent on the state channel (unchecked text)."""
        ...

    def trunk_closed(self, reason: str) -> None:
        """The trunk is gone: ``"left"`` (closed here), ``"connection lost"``, ``"never
        connected"`` or ``"router closed"``. Its remote participants' tracks are
        unpublished; the door takes the participants out of the meeting."""
        ...


#: The largest message a trunk's state channel carries, in bytes of UTF-8.
MAX_TRUNK_STATE_BYTES = 65536
#: The most tracks of a kind a bridge may configure for one trunk
#: (``federation.trunk_tracks``): its offer, with that many audio and video sections
#: and the H.264 ones, must fit in one Matrix event (64 KiB with its envelope).
MAX_TRUNK_TRACKS = 16


@dataclass(frozen=True, slots=True)
class TrunkLimits:
    """How many tracks one trunk carries each way, per kind (the sections of its one
    offer: a trunk is negotiated once and never renegotiated). ``video`` is for the
    bridge's first video codec; each other codec gets :meth:`secondary_video` more."""

    audio: int = 16
    video: int = 16

    @property
    def secondary_video(self) -> int:
        """Video slots for each codec after the first (H.264 cameras are rare: a quarter,
        so that the offer stays within a Matrix event)."""
        return max(1, self.video // 4)

    def video_sections(self, codecs: int) -> int:
        """The video sections of an offer for ``codecs`` video codecs."""
        return self.video + (codecs - 1) * self.secondary_video


class TrunkMedia(Protocol):
    """The one WebRTC connection between this bridge and another agency's bridge for one
    meeting. It carries every track published on this side to the other (each track
    crosses once, whoever receives it there), the other side's tracks in, as tracks of
    the remote participants registered with :meth:`add_remote`, and a state channel
    (a data channel) for the door's meeting state messages."""

    async def offer(self) -> str:
        """The satellite's side: the offer to send to the host bridge."""
        ...

    async def answer(self, offer_sdp: str) -> str:
        """The host's side: answer the satellite's offer (raises :class:`MediaError`
        when it is not a trunk offer within the limits)."""
        ...

    async def accept_answer(self, answer_sdp: str) -> None:
        """The satellite's side: apply the host's answer."""
        ...

    def add_remote(self, participant_id: str) -> ParticipantMedia:
        """Media for a participant behind this trunk: their tracks arrive over it (as
        the other bridge maps them), and they receive through it, so they have no
        connection of their own. Raises :class:`MediaError` for a taken or bad id."""
        ...

    def send_state(self, message: str) -> None:
        """Send a message on the state channel (raises :class:`MediaError` when it is
        not open or the message is over the size limit)."""
        ...

    async def close(self, reason: str = "left") -> None:
        """Close the connection; remote participants' tracks are unpublished. Safe to
        call more than once."""
        ...


class MediaRouter(Protocol):
    """The media of one live meeting."""

    def add_trunk(self, trunk_id: str, listener: TrunkListener, limits: TrunkLimits) -> TrunkMedia:
        """A trunk to another bridge; it receives every track not published behind it."""
        ...

    def add_participant(self, participant_id: str, send_offer: SendOffer) -> ParticipantMedia:
        """Add a participant; they receive every track published so far."""
        ...

    def add_sink(self, sink: MediaSink) -> None:
        """Attach an in-process listener; it is offered every track published so far."""
        ...

    def remove_sink(self, sink: MediaSink) -> None:
        """Detach a listener: each track it took ends for it (``track_ended``)."""
        ...

    async def close(self) -> None:
        """Release every participant's media."""
        ...

    def stats(self) -> object:
        """What the router holds (for tests, metrics and benchmarks)."""
        ...


class MediaService(Protocol):
    """Opens one router per live meeting."""

    def open_router(
        self, meeting_id: str, on_event: Callable[[MediaEvent], None]
    ) -> MediaRouter: ...
