"""One subscriber's bounded queue of one published track's frames."""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable

from .counters import MediaCounters
from .frames import EncodedFrame


class SubscriptionClosed(Exception):
    """The subscription ended; its consumer gets no more frames."""


class Subscription:
    """A bounded queue between a published track and one subscriber's sender.

    The publisher pushes and never waits: a subscriber that does not keep up falls behind
    alone. When the queue is full it is emptied; video then skips every frame up to the
    next keyframe and asks for one (audio simply goes on with the newest packet), so
    memory stays bounded by ``capacity`` frames.

    A video subscription starts waiting for a keyframe. Its first keyframe request is made
    when its consumer first asks for a frame (the subscriber's connection is up), so a
    keyframe produced before that is not wasted; if one arrives meanwhile anyway, it is
    kept and no request is made. While its consumer waits for a frame, every skipped frame
    asks again, which the track's requester turns into one PLI per interval at most: a
    PLI or a keyframe lost on the way does not leave the subscriber without picture (a
    consumer that does not read asks only when its queue overflows).
    """

    def __init__(
        self,
        capacity: int,
        *,
        video: bool,
        request_keyframe: Callable[[], None],
        counters: MediaCounters | None = None,
    ) -> None:
        assert capacity > 0
        self._counters = counters or MediaCounters()
        self._started = time.monotonic()
        self._capacity = capacity
        self._video = video
        self._request_keyframe = request_keyframe
        self._queue: deque[EncodedFrame] = deque()
        self._waiter: asyncio.Future[None] | None = None
        self._consumer_ready = False
        self._closed = False
        #: Whether frames are being skipped until the next keyframe.
        self.waiting_for_keyframe = video
        #: Frames handed to the consumer.
        self.delivered = 0
        #: Frames thrown away (queue overflow, or skipped while waiting for a keyframe).
        self.dropped = 0
        #: Times the queue overflowed.
        self.overflows = 0
        #: Whether the subscriber asked not to receive this track for now.
        self.paused = False
        #: Frames not forwarded because the subscription was paused.
        self.skipped_paused = 0

    @property
    def closed(self) -> bool:
        return self._closed

    def __len__(self) -> int:
        return len(self._queue)

    def push(self, frame: EncodedFrame) -> None:
        """Queue a frame from the publisher; never blocks."""
        if self._closed:
            return
        if self.paused:
            self.skipped_paused += 1
            return
        if self.waiting_for_keyframe and not frame.keyframe:
            self._drop(1)
            if self._waiter is not None:
                # The consumer starves: ask again (the requester sends one PLI per
                # interval at most), as the last request or its keyframe may be lost.
                self._request_keyframe()
            return
        if frame.keyframe and self._video and not self._consumer_ready:
            # Nobody reads yet: only the newest keyframe and what follows it matter.
            self._drop(len(self._queue))
            self._queue.clear()
        self.waiting_for_keyframe = False
        if len(self._queue) >= self._capacity:
            self._overflow(frame)
        else:
            self._queue.append(frame)
        self._wake()

    async def get(self) -> EncodedFrame:
        """The next frame; raises :class:`SubscriptionClosed` once closed."""
        if not self._consumer_ready:
            self._consumer_ready = True
            if self.waiting_for_keyframe:
                self._request_keyframe()
        while not self._queue:
            if self._closed:
                raise SubscriptionClosed
            assert self._waiter is None, "a subscription has one consumer"
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None
        if self.delivered == 0:
            self._counters.first_frame.observe(time.monotonic() - self._started)
        self.delivered += 1
        self._counters.frames_forwarded += 1
        return self._queue.popleft()

    def pause(self) -> None:
        """Stop forwarding (the subscriber does not show the track now); what is queued
        is dropped, and nothing is decoded or sent until :meth:`resume`."""
        if self.paused or self._closed:
            return
        self.paused = True
        self._drop(len(self._queue))
        self._queue.clear()

    def resume(self) -> None:
        """Forward again; video starts over at a keyframe, asked for at once when the
        consumer is waiting for frames."""
        if not self.paused or self._closed:
            return
        self.paused = False
        if self._video:
            self.waiting_for_keyframe = True
            if self._consumer_ready:
                self._request_keyframe()

    def close(self) -> None:
        """End the subscription and drop its frames; a waiting consumer is woken."""
        self._closed = True
        self._queue.clear()
        self._wake()

    def _overflow(self, frame: EncodedFrame) -> None:
        self.overflows += 1
        self._drop(len(self._queue))
        self._queue.clear()
        if frame.keyframe:
            # A keyframe (or any audio packet) is a clean point to start again from.
            self._queue.append(frame)
            return
        self._drop(1)
        self.waiting_for_keyframe = True
        if self._consumer_ready:
            self._request_keyframe()

    def _drop(self, count: int) -> None:
        self.dropped += count
        self._counters.frames_dropped += count

    def _wake(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)
