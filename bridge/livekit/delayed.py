"""Delegated delayed leave: the bridge sends a caller's "left the call" event for them.

Element Call writes its call membership with a *delayed* leave event (MSC4140): the
homeserver sends the leave by itself unless the client keeps restarting its timer. With
delegation (lk-jwt-service's ``delay_id``/``delay_timeout``), the client hands that job
to the SFU side, which sees the connection itself:

- while the participant is connected to the bridge's LiveKit door, the bridge restarts
  the timer at once and then every 80 % of ``delay_timeout``;
- when their connection ends (hang-up, crash, network loss, a dismissal), the bridge
  asks the homeserver to send the leave now;
- if they never connect within the timeout, the bridge gives up and the homeserver
  sends the leave when the timer runs out.

The requests are ``POST <cs api>/_matrix/client/unstable/org.matrix.msc4140/
delayed_events/<delay_id>/restart|send`` with ``{}`` and no credentials: the delay id is
the capability. The bridge only makes them to the homeserver it was configured with
(``homeserver.address``), for that homeserver's own users, so a request can never make
it call out to an address a client chose.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any

import aiohttp
from yarl import URL

log = logging.getLogger("visio.livekit.delayed")

#: What a delay id may look like: it goes into a URL path.
DELAY_ID = re.compile(r"^[A-Za-z0-9._~-]{1,255}$")
#: Longest delay the bridge keeps restarting (Synapse's own limit is a config value).
MAX_DELAY_MS = 24 * 3600 * 1000
MIN_DELAY_MS = 1000
#: Most delegations held at once (each one is one small task).
MAX_DELEGATIONS = 10_000
#: Longest wait for the participant to connect (lk-jwt-service: one hour).
CONNECT_WAIT_S = 3600.0
REQUEST_TIMEOUT_S = 5.0
RETRIES = 3

Key = tuple[str, str]  # (Matrix room id, LiveKit identity)


@dataclass(frozen=True)
class DelayedLeave:
    """A delayed leave event to keep alive while its owner is connected."""

    delay_id: str
    timeout_ms: int


class DelayedLeaves:
    """Keeps the delegated delayed leave events of the bridge's LiveKit callers."""

    def __init__(
        self,
        cs_api_url: str,
        session: Callable[[], aiohttp.ClientSession],
        *,
        connect_wait_s: float = CONNECT_WAIT_S,
    ) -> None:
        self._base = URL(cs_api_url.rstrip("/"))
        self._session = session
        self._connect_wait_s = connect_wait_s
        self._leaves: dict[Key, DelayedLeave] = {}
        #: Live connections per key: a full reconnect overlaps the old one briefly.
        self._connected: dict[Key, int] = {}
        self._jobs: dict[Key, asyncio.Task[None]] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        #: Requests made, by action and outcome ("restart ok", "send failed", ...).
        self.requests: dict[str, int] = {}

    def __len__(self) -> int:
        return len(self._leaves)

    def delegate(self, room_id: str, identity: str, leave: DelayedLeave) -> bool:
        """Take over ``leave`` for ``identity`` in ``room_id`` (replacing an older one);
        False when the bridge holds too many already."""
        key = (room_id, identity)
        if key not in self._leaves and len(self._leaves) >= MAX_DELEGATIONS:
            return False
        self._leaves[key] = leave
        self._restart_job(key)
        return True

    def connected(self, room_id: str, identity: str) -> None:
        """The participant's connection to the door is up."""
        key = (room_id, identity)
        self._connected[key] = self._connected.get(key, 0) + 1
        if key in self._leaves and self._connected[key] == 1:
            self._restart_job(key)

    def disconnected(self, room_id: str, identity: str) -> None:
        """A connection of the participant ended: when it was their last one (a
        reconnect that replaced it does not count as leaving), their leave is sent now."""
        key = (room_id, identity)
        left = self._connected.get(key, 0) - 1
        if left > 0:
            self._connected[key] = left
            return
        self._connected.pop(key, None)
        leave = self._leaves.pop(key, None)
        job = self._jobs.pop(key, None)
        if job is not None:
            job.cancel()
        if leave is not None:
            self._spawn(self._post(leave, "send"))

    async def close(self) -> None:
        """Stop every job and wait for requests under way (a shutdown sends the leaves
        of those still connected through :meth:`disconnected`, as their doors close)."""
        for job in self._jobs.values():
            job.cancel()
        self._jobs.clear()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)

    def _restart_job(self, key: Key) -> None:
        old = self._jobs.pop(key, None)
        if old is not None:
            old.cancel()
        task = asyncio.ensure_future(self._keep(key))
        self._jobs[key] = task

        def forget(done: asyncio.Task[None]) -> None:
            if self._jobs.get(key) is done:
                del self._jobs[key]

        task.add_done_callback(forget)

    async def _keep(self, key: Key) -> None:
        """Restart the timer while connected; give up when they never connect."""
        leave = self._leaves[key]
        if key not in self._connected:
            await asyncio.sleep(min(self._connect_wait_s, leave.timeout_ms / 1000))
            if key not in self._connected and self._leaves.get(key) is leave:
                # Never came: the homeserver sends the leave when its timer runs out.
                del self._leaves[key]
            return
        while self._leaves.get(key) is leave and key in self._connected:
            if not await self._post(leave, "restart"):
                # The homeserver no longer knows the event (sent, cancelled, expired).
                self._leaves.pop(key, None)
                return
            await asyncio.sleep(leave.timeout_ms / 1000 * 0.8)

    async def _post(self, leave: DelayedLeave, action: str) -> bool:
        """One request, retried on 429 and 5xx; False when the event is unknown (404)."""
        url = self._base / "_matrix/client/unstable/org.matrix.msc4140/delayed_events"
        url = url / leave.delay_id / action
        for attempt in range(RETRIES):
            try:
                timeout = aiohttp.ClientTimeout(total=REQUEST_TIMEOUT_S)
                async with self._session().post(
                    url, json={}, timeout=timeout, allow_redirects=False
                ) as response:
                    if response.status == 200:
                        self._count(f"{action} ok")
                        return True
                    if response.status == 404:
                        self._count(f"{action} unknown")
                        return False
                    if response.status != 429 and response.status < 500:
                        break
            except (aiohttp.ClientError, TimeoutError) as error:
                log.debug("Delayed event %s failed: %r", action, error)
            await asyncio.sleep(0.5 * 2**attempt)
        self._count(f"{action} failed")
        log.warning("Could not %s a delegated delayed leave event", action)
        return True  # keep trying on the next round

    def _count(self, outcome: str) -> None:
        self.requests[outcome] = self.requests.get(outcome, 0) + 1

    def _spawn(self, coro: Coroutine[Any, Any, Any]) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
