"""Events a :class:`~bridge.media.router.Router` reports to the meeting domain."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Source = Literal["camera", "microphone", "screen"]
Kind = Literal["audio", "video"]


@dataclass(frozen=True, slots=True)
class TrackPublished:
    """A participant's track is live and is being forwarded to the others.

    ``track_id`` is ``"<participant_id>/<source>"``; a subscriber sees the track in SDP
    as ``a=msid:<participant_id> <source>``.
    """

    participant_id: str
    track_id: str
    kind: Kind
    source: Source


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
    ``"no answer"`` (the client did not answer an offer in time), ``"signaling failed"``
    (``send_offer`` raised) or ``"router closed"``.
    """

    participant_id: str
    reason: str


MediaEvent = TrackPublished | TrackUnpublished | ActiveSpeaker | ParticipantMediaClosed
