"""Prometheus metrics of one bridge, served on the appservice listener only.

Parts keep plain counts of what they do (the media counters, the appservice's
transactions, sign-in refusals, the inbox); one collector reads them at scrape time, so
no part depends on prometheus_client and two bridges in one process keep two registries.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from aiohttp import web
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from .media.counters import MediaCounters

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class BridgeCollector(Collector):
    """Reads the bridge's counts when Prometheus scrapes."""

    def __init__(
        self,
        meeting_counts: Callable[[], dict[str, int]],
        media: MediaCounters,
        matrix_counts: Callable[[], dict[str, int]],
        refusals: Callable[[], dict[str, int]],
    ) -> None:
        self.meeting_counts = meeting_counts
        self.media = media
        self.matrix_counts = matrix_counts
        self.refusals = refusals

    def collect(self) -> Iterator[Metric]:
        for name, value in self.meeting_counts().items():
            yield GaugeMetricFamily(f"visio_{name}", _HELP[name], value=value)
        media = self.media
        for name, value in (
            ("frames_received", media.frames_received),
            ("frames_forwarded", media.frames_forwarded),
            ("frames_dropped", media.frames_dropped),
            ("keyframe_requests", media.keyframe_requests),
        ):
            yield CounterMetricFamily(f"visio_{name}", _HELP[name], value=value)
        yield self._first_frame_histogram()
        counts = self.matrix_counts()
        yield CounterMetricFamily(
            "visio_transactions", _HELP["transactions"], value=counts["transactions"]
        )
        yield CounterMetricFamily(
            "visio_events_handled", _HELP["events_handled"], value=counts["events_handled"]
        )
        yield GaugeMetricFamily(
            "visio_inbox_pending", _HELP["inbox_pending"], value=counts["inbox_pending"]
        )
        refusals = CounterMetricFamily(
            "visio_signin_refusals", _HELP["signin_refusals"], labels=["reason"]
        )
        for reason, count in sorted(self.refusals().items()):
            refusals.add_metric([reason], count)
        yield refusals

    def _first_frame_histogram(self) -> Metric:
        histogram = self.media.first_frame
        buckets: list[tuple[str, float]] = []
        cumulative = 0
        for bound, count in zip(histogram.bounds, histogram.counts, strict=True):
            cumulative += count
            buckets.append((_bound_label(bound), cumulative))
        buckets.append(("+Inf", histogram.total))
        return HistogramMetricFamily(
            "visio_join_to_first_frame_seconds",
            _HELP["first_frame"],
            buckets=buckets,
            sum_value=histogram.sum_seconds,
        )


def _bound_label(bound: float) -> str:
    return repr(float(bound))


_HELP = {
    "meetings_live": "Live meetings.",
    "participants": "People in live meetings, through every door.",
    "routers": "Media routers open (meetings with people in them).",
    "published_tracks": "Tracks being published.",
    "subscriptions": "Tracks being forwarded to someone.",
    "peer_connections": "WebRTC peer connections held.",
    "frames_received": "Frames received from publishers.",
    "frames_forwarded": "Frames handed to subscribers.",
    "frames_dropped": "Frames skipped for slow or new subscribers.",
    "keyframe_requests": "Keyframe requests (PLI) sent to publishers.",
    "first_frame": "Time from a new subscription to its first forwarded frame.",
    "transactions": "Appservice transactions received (retries not counted).",
    "events_handled": "Matrix events handled.",
    "inbox_pending": "Events received and not yet handled.",
    "signin_refusals": "Refused sign-ins, by reason.",
}


def meeting_counts(meetings: Any) -> dict[str, int]:
    """The gauges of :class:`~bridge.meeting.meetings.Meetings` and its routers."""
    live = meetings.all_live()
    counts = {
        "meetings_live": len(live),
        "participants": sum(len(m.participants) for m in live),
        "routers": 0,
        "published_tracks": 0,
        "subscriptions": 0,
        "peer_connections": 0,
    }
    for entry in meetings.stats().values():
        router = entry["router"]
        if router is None:
            continue
        counts["routers"] += 1
        counts["published_tracks"] += router.published_tracks
        counts["subscriptions"] += router.subscriptions
        counts["peer_connections"] += router.peer_connections
    return counts


class MetricsEndpoint:
    """``GET /metrics`` for one bridge's registry."""

    def __init__(self, collector: BridgeCollector) -> None:
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(collector)

    async def handle(self, _: web.Request) -> web.Response:
        return web.Response(
            body=generate_latest(self.registry), headers={"Content-Type": CONTENT_TYPE}
        )
