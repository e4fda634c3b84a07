"""Events handled in order per room, off the transaction's answer path.

Synapse sends one transaction at a time and waits for the answer, so a slow handler
would stall every room. Each room gets its own queue and worker: events of one room
keep their order, rooms never wait on each other, and the answer goes out at once.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

Job = Callable[[], Awaitable[None]]

# How long shutdown waits for the rooms' queued events.
DRAIN_TIMEOUT = 10.0

log = logging.getLogger("visio.matrix.dispatch")


class RoomQueues:
    """One ordered queue of jobs per room; workers exit when their queue drains."""

    def __init__(self) -> None:
        self._queues: dict[str, asyncio.Queue[Job]] = {}
        self._workers: dict[str, asyncio.Task[None]] = {}
        self._paused = False

    def pause(self) -> None:
        """Keep jobs queued without running them (while the bridge starts)."""
        self._paused = True

    def resume(self) -> None:
        self._paused = False
        for room_id, queue in list(self._queues.items()):
            self._start(room_id, queue)

    def submit(self, room_id: str, job: Job) -> None:
        queue = self._queues.get(room_id)
        if queue is None:
            queue = self._queues[room_id] = asyncio.Queue()
        queue.put_nowait(job)
        if not self._paused:
            self._start(room_id, queue)

    def _start(self, room_id: str, queue: asyncio.Queue[Job]) -> None:
        if room_id not in self._workers:
            self._workers[room_id] = asyncio.create_task(
                self._drain(room_id, queue), name=f"room-queue:{room_id}"
            )

    async def _drain(self, room_id: str, queue: asyncio.Queue[Job]) -> None:
        try:
            while not queue.empty():
                job = queue.get_nowait()
                try:
                    await job()
                except Exception:
                    log.exception("Handling an event in %s failed", room_id)
        finally:
            self._workers.pop(room_id, None)
            if queue.empty():
                self._queues.pop(room_id, None)
            else:  # a job arrived between the last check and this cleanup
                self._workers[room_id] = asyncio.create_task(self._drain(room_id, queue))

    async def drain(self) -> None:
        """Wait until every queued job has run (shutdown, tests)."""
        async with asyncio.timeout(DRAIN_TIMEOUT):
            while self._workers:
                await asyncio.gather(*list(self._workers.values()), return_exceptions=True)

    async def close(self) -> None:
        for task in list(self._workers.values()):
            task.cancel()
        await asyncio.gather(*self._workers.values(), return_exceptions=True)
        self._workers.clear()
        self._queues.clear()
