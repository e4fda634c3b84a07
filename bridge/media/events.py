"""Events a :class:`~bridge.media.router.Router` reports to the meeting domain.

They are part of the media interface the domain owns (:mod:`bridge.meeting.media`);
this module names them for the media layer's own code.
"""

from __future__ import annotations

from ..meeting.media import (
    ActiveSpeaker,
    Connection,
    Kind,
    MediaEvent,
    ParticipantMediaClosed,
    Source,
    TrackPublished,
    TrackUnpublished,
)

__all__ = [
    "ActiveSpeaker",
    "Connection",
    "Kind",
    "MediaEvent",
    "ParticipantMediaClosed",
    "Source",
    "TrackPublished",
    "TrackUnpublished",
]
