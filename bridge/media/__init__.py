"""The SFU: one :class:`Router` per meeting, forwarding encoded media between peers.

See :mod:`bridge.media.router` for the API and the SDP conventions clients follow, and
:mod:`bridge.media.trunk` for the trunk between two bridges.
"""

from __future__ import annotations

from .errors import MediaError
from .events import (
    ActiveSpeaker,
    MediaEvent,
    ParticipantMediaClosed,
    TrackPublished,
    TrackUnpublished,
)
from .router import ParticipantMedia, Router, RouterStats
from .settings import MediaSettings
from .sfu import SFU
from .trunk import RemoteParticipant, Trunk

__all__ = [
    "SFU",
    "ActiveSpeaker",
    "MediaError",
    "MediaEvent",
    "MediaSettings",
    "ParticipantMedia",
    "ParticipantMediaClosed",
    "RemoteParticipant",
    "Router",
    "RouterStats",
    "TrackPublished",
    "TrackUnpublished",
    "Trunk",
]
