"""The recorder's logger, and the per-track view of it."""

from __future__ import annotations

import logging
from typing import Any

log = logging.getLogger("visio.recording")


class TrackLog(logging.LoggerAdapter[logging.Logger]):
    """The recorder's logger with the track in every line. (A child logger per track
    would stay registered for the life of the process.)"""

    def __init__(self, track: str) -> None:
        super().__init__(log, {"track": track})
        self.track = track

    def process(self, msg: Any, kwargs: Any) -> tuple[Any, Any]:
        return f"{self.track}: {msg}", kwargs


#: What the recorder's parts log to.
Log = logging.Logger | TrackLog
