"""Rate-limited keyframe requests towards one published track."""

from __future__ import annotations

from collections.abc import Callable

from .clock import Clock, Timer


class KeyframeRequester:
    """Turns any number of keyframe wishes into at most one PLI per ``interval``.

    A request inside the interval is not lost: one trailing request goes out when the
    interval ends. It is skipped if by then nobody needs it any more (``still_needed``
    says whether a subscription still waits for a keyframe), unless a subscriber asked
    explicitly (its own PLI/FIR), because we cannot tell whether it has recovered.
    Thirty-two subscribers joining at once thus cause two PLIs, not thirty-two, and none
    of them waits for the publisher's next periodic keyframe.
    """

    def __init__(
        self,
        send: Callable[[], None],
        clock: Clock,
        interval: float,
        still_needed: Callable[[], bool] = lambda: True,
    ) -> None:
        self._send = send
        self._clock = clock
        self._interval = interval
        self._still_needed = still_needed
        self._last: float | None = None
        self._trailing: Timer | None = None
        self._explicit_pending = False
        self._closed = False
        #: PLIs sent so far.
        self.sent = 0

    def request(self, *, explicit: bool = False) -> None:
        """Ask for a keyframe; ``explicit`` marks a subscriber's own PLI/FIR."""
        if self._closed:
            return
        now = self._clock.now()
        if self._last is None or now - self._last >= self._interval:
            self._fire(now)
            return
        self._explicit_pending = self._explicit_pending or explicit
        if self._trailing is None:
            delay = self._last + self._interval - now
            self._trailing = self._clock.call_later(delay, self._on_trailing)

    def close(self) -> None:
        """Cancel a pending trailing request; later requests are ignored."""
        self._closed = True
        if self._trailing is not None:
            self._trailing.cancel()
            self._trailing = None

    def _on_trailing(self) -> None:
        self._trailing = None
        explicit, self._explicit_pending = self._explicit_pending, False
        if not self._closed and (explicit or self._still_needed()):
            self._fire(self._clock.now())

    def _fire(self, now: float) -> None:
        self._last = now
        self.sent += 1
        self._send()
