"""Meetings across agencies: trunks between agencies' bridges (see :mod:`.trunks`)."""

from __future__ import annotations

from .messages import TRUNK_ANSWER, TRUNK_OFFER
from .trunks import PeerEnds, TrunkLink, TrunkPolicy, Trunks, TrunkSignals

__all__ = [
    "TRUNK_ANSWER",
    "TRUNK_OFFER",
    "PeerEnds",
    "TrunkLink",
    "TrunkPolicy",
    "TrunkSignals",
    "Trunks",
]
