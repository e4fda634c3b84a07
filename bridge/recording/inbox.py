"""The queue between the event loop and a recorder's writer thread.

Frames are bounded (a writer that falls behind must cost frames, not memory) and the
event loop never waits to put one. Track ends and the stop are never refused: they
are few, and losing one would leave a file open.
"""

from __future__ import annotations

import threading
from collections import deque
from typing import Generic, TypeVar

T = TypeVar("T")


class Inbox(Generic[T]):
    """A FIFO of items, at most ``capacity`` of them frames."""

    def __init__(self, capacity: int) -> None:
        assert capacity > 0
        self._capacity = capacity
        self._items: deque[tuple[T, bool]] = deque()
        self._frames = 0
        self._ready = threading.Condition(threading.Lock())

    @property
    def capacity(self) -> int:
        """The most frames it holds."""
        return self._capacity

    def __len__(self) -> int:
        """Items waiting (frames or not)."""
        with self._ready:
            return len(self._items)

    def offer(self, frame: T) -> bool:
        """Queue a frame unless the queue holds ``capacity`` frames; never waits."""
        with self._ready:
            if self._frames >= self._capacity:
                return False
            self._frames += 1
            self._items.append((frame, True))
            self._ready.notify()
        return True

    def put(self, item: T) -> None:
        """Queue an item that is not a frame, whatever the queue holds."""
        with self._ready:
            self._items.append((item, False))
            self._ready.notify()

    def take(self, timeout: float) -> T | None:
        """The next item, waiting at most ``timeout`` seconds (None when none came)."""
        with self._ready:
            if not self._ready.wait_for(lambda: self._items, timeout):
                return None
            item, is_frame = self._items.popleft()
            if is_frame:
                self._frames -= 1
            return item
