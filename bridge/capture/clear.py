"""Only media the bridge can hear goes to its listeners.

Element Call encrypts each participant's media end to end with keys only the call's
clients hold: the SFU forwards it untouched, and a recorder or a transcriber would get
ciphertext (an unplayable file, garbage to decode). Such tracks are left out, and logged.
"""

from __future__ import annotations

import logging

from ..meeting.media import FrameHandler, MediaSink, TrackPublished
from ..meeting.meeting import Meeting

log = logging.getLogger("visio.capture")


class ClearMediaOnly:
    """A media sink that hands ``inner`` only the tracks of people whose media is not
    end-to-end encrypted."""

    def __init__(self, meeting: Meeting, inner: MediaSink, what: str) -> None:
        self.meeting = meeting
        self.inner = inner
        self.what = what

    def track_started(self, track: TrackPublished) -> FrameHandler | None:
        participant = self.meeting.participants.get(track.participant_id)
        if participant is not None and participant.encrypted:
            log.info(
                "%s of %s leaves out %s: end-to-end encrypted",
                self.what,
                self.meeting.id,
                track.track_id,
            )
            return None
        return self.inner.track_started(track)

    def track_ended(self, track_id: str) -> None:
        self.inner.track_ended(track_id)
