"""What a WebSocket session sends: queued, written in order by one task, bounded.

Both signaling doors (ours and LiveKit's) use it: a meeting event must never wait for a
slow client, and a client that stops reading is disconnected rather than let its queue
grow without bound.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, Generic, TypeVar

from aiohttp import web

T = TypeVar("T")

#: Runs background work its door waits for at shutdown.
Spawn = Callable[[Coroutine[Any, Any, None]], object]


class Outbox(Generic[T]):
    """A session's outgoing messages; ``write`` puts one on the socket."""

    def __init__(
        self,
        ws: web.WebSocketResponse,
        write: Callable[[T], Awaitable[None]],
        limit: int,
        spawn: Spawn,
        log: logging.Logger,
    ) -> None:
        self.ws = ws
        self._write = write
        self._limit = limit
        self._spawn = spawn
        self._log = log
        self._queue: asyncio.Queue[T | None] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None
        #: Set once the session is ending: later messages are dropped.
        self.closing = False

    def start(self, name: str) -> None:
        self._task = asyncio.create_task(self._run(), name=name)

    def send(self, message: T) -> None:
        """Queue a message; a client that does not keep up is disconnected."""
        if self.closing:
            return
        if self._queue.qsize() >= self._limit:
            self._log.warning("Disconnecting a client that does not read its messages")
            self.closing = True
            self._spawn(self.close())
            return
        self._queue.put_nowait(message)

    async def _run(self) -> None:
        while True:
            message = await self._queue.get()
            if message is None or self.ws.closed:
                return
            try:
                await self._write(message)
            except (ConnectionError, RuntimeError):
                return

    async def close(self) -> None:
        """Send what is queued (the last words: why the session ends), then close."""
        self.closing = True
        self._queue.put_nowait(None)
        if self._task is not None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(self._task), 5)
            self._task.cancel()
        await self.ws.close()
