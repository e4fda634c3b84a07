"""Where a track's frames sit on the recording's timeline.

Every file of one recording counts time from the same origin, the moment the recording
started, so the files line up when played together or mixed. A track's frames carry
RTP timestamps counted from the track's first frame (in the codec's clock); the track is
placed by when its first frame arrived, and then follows its own timestamps, which are
steadier than arrival times (network jitter) and keep gaps where the sender sent
nothing.

A sender's timestamps can jump (a restarted encoder, a buggy or hostile client): a frame
that lands more than :data:`RESYNC_SECONDS` away from its arrival is placed by its
arrival again. Positions never go backwards, as muxers require.
"""

from __future__ import annotations

from .logs import Log

#: How far a frame's timestamp may place it from its arrival before the track is placed
#: by arrival again: well above network jitter and clock drift over hours, well below
#: what would leave a file with a long false gap or hold much of the mix in memory.
RESYNC_SECONDS = 5.0


class TrackTimeline:
    """The positions of one track instance's frames, in its codec's clock ticks."""

    def __init__(self, start: float, rate: int, log: Log) -> None:
        self._start = start
        self._rate = rate
        self._log = log
        self._offset: int | None = None
        self._last: int | None = None

    def arrival_position(self, arrival: float) -> int:
        """Ticks from the recording's start to ``arrival`` (never negative)."""
        return max(0, round((arrival - self._start) * self._rate))

    def place(self, timestamp: int, arrival: float) -> int:
        """The position of a frame: its timestamp on the track's anchor, re-anchored on
        a jump, and never before the previous frame's."""
        arrived = self.arrival_position(arrival)
        if self._offset is None:
            self._offset = arrived - timestamp
        elif abs(self._offset + timestamp - arrived) > RESYNC_SECONDS * self._rate:
            self._log.warning(
                "timestamps jumped by %.1f s; placing by arrival",
                (self._offset + timestamp - arrived) / self._rate,
            )
            self._offset = arrived - timestamp
        position = self._offset + timestamp
        if self._last is not None and position < self._last:
            position = self._last
        self._last = position
        return position
