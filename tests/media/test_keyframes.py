"""The keyframe request rate limiter."""

from __future__ import annotations

import itertools

from bridge.media.keyframes import KeyframeRequester

from .helpers import FakeClock


def make(still_needed: bool = True) -> tuple[KeyframeRequester, FakeClock, list[float]]:
    clock = FakeClock()
    sent: list[float] = []
    requester = KeyframeRequester(
        lambda: sent.append(clock.now()), clock, 0.3, still_needed=lambda: still_needed
    )
    return requester, clock, sent


def test_first_request_goes_out_at_once() -> None:
    requester, clock, sent = make()
    requester.request()
    assert sent == [clock.now()]
    assert requester.sent == 1


def test_burst_becomes_one_immediate_and_one_trailing_request() -> None:
    requester, clock, sent = make()
    start = clock.now()
    for _ in range(32):
        requester.request()
        clock.advance(0.005)
    assert sent == [start]
    clock.advance(0.3)
    assert sent == [start, start + 0.3]
    clock.advance(5)
    assert len(sent) == 2


def test_requests_never_closer_than_the_interval() -> None:
    requester, clock, sent = make()
    for _ in range(200):
        requester.request()
        clock.advance(0.05)
    gaps = [b - a for a, b in itertools.pairwise(sent)]
    assert min(gaps) >= 0.3 - 1e-9
    assert len(sent) >= 30  # about one per 300 ms over 10 s


def test_trailing_request_skipped_when_nobody_waits_any_more() -> None:
    requester, clock, sent = make(still_needed=False)
    requester.request()
    requester.request()
    clock.advance(1)
    assert len(sent) == 1


def test_explicit_request_always_gets_its_trailing_request() -> None:
    requester, clock, sent = make(still_needed=False)
    requester.request()
    requester.request(explicit=True)
    clock.advance(1)
    assert len(sent) == 2


def test_request_after_the_interval_goes_out_at_once() -> None:
    requester, clock, sent = make()
    requester.request()
    clock.advance(0.31)
    requester.request()
    assert len(sent) == 2


def test_close_cancels_the_trailing_request() -> None:
    requester, clock, sent = make()
    requester.request()
    requester.request()
    requester.close()
    clock.advance(1)
    requester.request()
    assert len(sent) == 1
    assert clock.pending == 0
