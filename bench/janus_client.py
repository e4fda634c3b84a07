"""Janus (Debian ``janus``, VideoRoom plugin) as the other SFU of ``bench/sfu.py --against
janus``: start it from the configuration in ``bench/janus/``, and play the same aiortc
clients through its HTTP API as through the bridge.

Janus (libnice) gathers no candidate on loopback: it offers this machine's own addresses,
and the clients of the Janus round gather on those too (:func:`host_addresses`); what
they send each other stays inside the machine all the same.

Janus is started with the folder ``bench/janus/`` copied to a temporary folder, its HTTP
port and RTP port range filled in. ``event_loops = 2``: handles share two loops instead of
a thread each, the configuration the bridge is measured against.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp
import aioice.ice
from aiortc import RTCPeerConnection, RTCSessionDescription

from bridge.media.peer import new_peer_connection, set_local_description

CONFIG = Path(__file__).resolve().parent / "janus"
ROOM = 1234


def host_addresses() -> list[str]:
    """Where the clients of the Janus round gather: libnice never gathers on loopback,
    so Janus offers this machine's own IPv4 addresses, and the clients use the same.
    Datagrams between two addresses of this machine never leave it (Linux delivers them
    through the loopback device)."""
    return aioice.ice.get_host_addresses(use_ipv4=True, use_ipv6=False)


async def start_janus(http_port: int, rtp_ports: str) -> tuple[asyncio.subprocess.Process, str]:
    """Run Janus on loopback; returns it and its API URL once it answers."""
    binary = shutil.which("janus")
    if binary is None:
        raise RuntimeError("Janus is not installed: apt-get install janus")
    folder = Path(tempfile.mkdtemp(prefix="bench-janus-"))
    for source in CONFIG.glob("*.jcfg"):
        text = source.read_text()
        text = text.replace("@HTTP_PORT@", str(http_port)).replace("@RTP_PORTS@", rtp_ports)
        (folder / source.name).write_text(text.replace("@CONFIGS@", str(folder)))
    process = await asyncio.create_subprocess_exec(
        binary,
        "--config",
        str(folder / "janus.jcfg"),
        "--configs-folder",
        str(folder),
        "--disable-colors",
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{http_port}/janus"
    async with aiohttp.ClientSession() as session:
        for _ in range(100):
            with contextlib.suppress(aiohttp.ClientError):
                async with session.get(f"{base}/info") as response:
                    if response.status == 200:
                        return process, base
            await asyncio.sleep(0.1)
    process.kill()
    await process.wait()
    raise RuntimeError("Janus did not start within 10 s")


async def stop_janus(process: asyncio.subprocess.Process) -> None:
    process.terminate()
    try:
        await asyncio.wait_for(process.wait(), timeout=10)
    except TimeoutError:
        process.kill()
        await process.wait()


class JanusSession:
    """One Janus API session over HTTP, with its long poll for events, by handle."""

    def __init__(self, http: aiohttp.ClientSession, base: str) -> None:
        self._http = http
        self._base = base
        self._transactions = (f"t{i}" for i in itertools.count())
        self._events: dict[int, asyncio.Queue[dict[str, Any]]] = {}
        self._poll: asyncio.Task[None] | None = None
        self.url = ""

    async def _post(self, url: str, body: dict[str, Any]) -> dict[str, Any]:
        body = {**body, "transaction": next(self._transactions)}
        async with self._http.post(url, json=body) as response:
            reply = dict(await response.json(content_type=None))
        if reply.get("janus") == "error":
            raise RuntimeError(f"Janus: {reply['error']}")
        return reply

    async def create(self) -> None:
        reply = await self._post(self._base, {"janus": "create"})
        self.url = f"{self._base}/{reply['data']['id']}"
        self._poll = asyncio.ensure_future(self._long_poll())

    async def attach(self) -> int:
        reply = await self._post(self.url, {"janus": "attach", "plugin": "janus.plugin.videoroom"})
        handle = int(reply["data"]["id"])
        self._events[handle] = asyncio.Queue()
        return handle

    async def message(
        self, handle: int, body: dict[str, Any], jsep: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        """Send a plugin request; returns the first event that answers it."""
        request: dict[str, Any] = {"janus": "message", "body": body}
        if jsep is not None:
            request["jsep"] = jsep
        reply = await self._post(f"{self.url}/{handle}", request)
        if reply.get("janus") == "success":
            return reply
        while True:
            event = await asyncio.wait_for(self._events[handle].get(), timeout=20)
            if event.get("janus") == "event":
                data = event.get("plugindata", {}).get("data", {})
                if "error" in data:
                    raise RuntimeError(f"Janus VideoRoom: {data['error']}")
                return event

    async def _long_poll(self) -> None:
        while True:
            try:
                async with self._http.get(f"{self.url}?maxev=10") as response:
                    events = await response.json(content_type=None)
            except RuntimeError:  # the HTTP session closed: the round is over
                return
            except (TimeoutError, aiohttp.ClientError):
                await asyncio.sleep(0.1)
                continue
            for event in events if isinstance(events, list) else [events]:
                queue = self._events.get(int(event.get("sender", 0)))
                if queue is not None:
                    queue.put_nowait(event)

    async def close(self) -> None:
        if self._poll is not None:
            self._poll.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._poll
        with contextlib.suppress(Exception):
            await self._post(self.url, {"janus": "destroy"})


async def publish(session: JanusSession, pc: RTCPeerConnection) -> int:
    """Join the room as its publisher and publish what ``pc`` sends; returns its feed id."""
    handle = await session.attach()
    joined = await session.message(
        handle, {"request": "join", "room": ROOM, "ptype": "publisher", "display": "publisher"}
    )
    feed = int(joined["plugindata"]["data"]["id"])
    await set_local_description(pc, await pc.createOffer(), host_addresses())
    offer = {"type": "offer", "sdp": pc.localDescription.sdp, "trickle": False}
    event = await session.message(
        handle, {"request": "publish", "audio": True, "video": True}, jsep=offer
    )
    await pc.setRemoteDescription(RTCSessionDescription(event["jsep"]["sdp"], "answer"))
    return feed


async def subscribe(
    session: JanusSession, feed: int, on_offer: Callable[[RTCPeerConnection, str], Any]
) -> RTCPeerConnection:
    """Subscribe to ``feed``: ``on_offer(pc, sdp)`` sets Janus's offer on a new peer
    connection (and taps its receivers); the answer goes back and media starts."""
    handle = await session.attach()
    event = await session.message(
        handle,
        {"request": "join", "room": ROOM, "ptype": "subscriber", "streams": [{"feed": feed}]},
    )
    pc = new_peer_connection([])
    await on_offer(pc, event["jsep"]["sdp"])
    await set_local_description(pc, await pc.createAnswer(), host_addresses())
    answer = {"type": "answer", "sdp": pc.localDescription.sdp, "trickle": False}
    await session.message(handle, {"request": "start", "room": ROOM}, jsep=answer)
    return pc
