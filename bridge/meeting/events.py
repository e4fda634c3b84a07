"""What a meeting tells each participant's door, whatever the door's protocol is.

A door (our WebSocket, the LiveKit protocol, a trunk, an in-process listener) gets these
through :meth:`bridge.meeting.attendee.Attendee.deliver` and translates them into its
own messages.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from .media import Kind, Source

if TYPE_CHECKING:
    from .live import Participant
    from .meeting import Meeting


@dataclass(frozen=True, slots=True)
class Track:
    """A track someone publishes in the meeting."""

    participant_id: str
    source: Source
    kind: Kind
    #: The codec it is sent in (``"video/VP8"``); empty when not known yet.
    mime_type: str = ""


@dataclass(frozen=True, slots=True)
class Welcome:
    """The first event a participant gets: the meeting as it is when they come in.

    Sent before any server offer and before the others hear of them.
    """

    participant: Participant
    meeting: Meeting
    others: tuple[Participant, ...]
    tracks: tuple[Track, ...]
    active_speaker: str | None


@dataclass(frozen=True, slots=True)
class ParticipantJoined:
    participant: Participant


@dataclass(frozen=True, slots=True)
class ParticipantUpdated:
    """Mute, hand or encryption changed (the participant object holds the new state)."""

    participant: Participant


@dataclass(frozen=True, slots=True)
class ParticipantLeft:
    participant_id: str


@dataclass(frozen=True, slots=True)
class TrackAdded:
    track: Track


@dataclass(frozen=True, slots=True)
class TrackRemoved:
    track: Track


@dataclass(frozen=True, slots=True)
class SpeakerChanged:
    participant_id: str | None


@dataclass(frozen=True, slots=True)
class CaptureChanged:
    """Recording or transcription started or stopped, on this bridge or on another
    agency's bridge in the meeting: what people are told now. Every door must show it:
    people have a right to know they are recorded."""

    meeting: Meeting
    recording: bool
    transcribing: bool


@dataclass(frozen=True, slots=True)
class Caption:
    """What one participant just said, as the transcriber heard it (one finished
    segment of their speech): a live caption."""

    participant_id: str
    text: str
    #: The trunk it came over, when another agency's bridge transcribed it (so that it
    #: is not sent back there).
    via: str | None = None


@dataclass(frozen=True, slots=True)
class CaptionsStatus:
    """Whether captions are limited now (the machine cannot transcribe everyone who
    speaks), with a sentence to show."""

    limited: bool
    message: str


@dataclass(frozen=True, slots=True)
class MeetingEnded:
    """The meeting ends now. Told to watchers only (trunks), before anyone's media is
    released; participants are dismissed instead."""

    ended_by: str


MeetingEvent = (
    Welcome
    | ParticipantJoined
    | ParticipantUpdated
    | ParticipantLeft
    | TrackAdded
    | TrackRemoved
    | SpeakerChanged
    | CaptureChanged
    | Caption
    | CaptionsStatus
    | MeetingEnded
)
