"""Running totals of what the SFU forwarded, for metrics: they only grow, across the
routers that open and close as meetings come and go."""

from __future__ import annotations

import bisect
from dataclasses import dataclass, field

#: Upper bounds (seconds) of the join-to-first-frame histogram's buckets.
FIRST_FRAME_BOUNDS = (0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0, 10.0)


@dataclass
class Histogram:
    """Counts of observations per bucket (``counts[i]``: at most ``bounds[i]`` and more
    than the bound before; ``total`` includes those above the last bound)."""

    bounds: tuple[float, ...] = FIRST_FRAME_BOUNDS
    counts: list[int] = field(default_factory=lambda: [0] * len(FIRST_FRAME_BOUNDS))
    total: int = 0
    sum_seconds: float = 0.0

    def observe(self, seconds: float) -> None:
        index = bisect.bisect_left(self.bounds, seconds)
        if index < len(self.counts):
            self.counts[index] += 1
        self.total += 1
        self.sum_seconds += seconds


@dataclass
class MediaCounters:
    """Totals over every router of one SFU."""

    frames_received: int = 0
    frames_forwarded: int = 0
    frames_dropped: int = 0
    keyframe_requests: int = 0
    #: RTP packets fanned out on the packet path (counted once, however many receive).
    packets_received: int = 0
    #: From a subscription's start to its first forwarded frame.
    first_frame: Histogram = field(default_factory=Histogram)
