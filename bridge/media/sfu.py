"""The SFU as the meeting domain sees it: one router per live meeting."""

from __future__ import annotations

from collections.abc import Callable

from .counters import MediaCounters
from .events import MediaEvent
from .router import Router
from .settings import MediaSettings


class SFU:
    """Opens a :class:`Router` per live meeting, all with the same settings
    (implements :class:`bridge.meeting.media.MediaService`)."""

    def __init__(self, settings: MediaSettings) -> None:
        self.settings = settings
        self.counters = MediaCounters()

    def open_router(self, meeting_id: str, on_event: Callable[[MediaEvent], None]) -> Router:
        return Router(meeting_id, self.settings, on_event=on_event, counters=self.counters)
