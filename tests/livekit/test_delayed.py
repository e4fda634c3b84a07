"""Delegated delayed leave against a stand-in homeserver that records what it is asked
(the real Synapse is in tests/integration/test_livekit_rtc.py)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import aiohttp
import pytest
from aiohttp import web

from bridge.livekit.delayed import DelayedLeave, DelayedLeaves
from bridge.livekit.service import BadRequest, parse_get_token, parse_sfu_get
from tests.harness.synapse import free_port


@dataclass
class Homeserver:
    """Answers MSC4140's delayed event actions; ``unknown`` ids answer 404."""

    url: str = ""
    calls: list[tuple[str, str]] = field(default_factory=list)
    unknown: set[str] = field(default_factory=set)
    failures: int = 0

    async def handle(self, request: web.Request) -> web.Response:
        delay_id, action = request.match_info["delay_id"], request.match_info["action"]
        assert await request.json() == {} and "Authorization" not in request.headers
        self.calls.append((delay_id, action))
        if self.failures:
            self.failures -= 1
            return web.json_response({"errcode": "M_UNKNOWN"}, status=502)
        if delay_id in self.unknown:
            return web.json_response({"errcode": "M_NOT_FOUND"}, status=404)
        return web.json_response({})


@pytest.fixture
async def homeserver() -> AsyncIterator[tuple[Homeserver, DelayedLeaves]]:
    server = Homeserver()
    app = web.Application()
    app.router.add_post(
        "/_matrix/client/unstable/org.matrix.msc4140/delayed_events/{delay_id}/{action}",
        server.handle,
    )
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    server.url = f"http://127.0.0.1:{port}"
    async with aiohttp.ClientSession() as http:
        leaves = DelayedLeaves(server.url, lambda: http, connect_wait_s=0.3)
        yield server, leaves
        await leaves.close()
    await runner.cleanup()


async def until(check: object, within: float = 5) -> None:
    async with asyncio.timeout(within):
        while not check():  # type: ignore[operator]  # noqa: ASYNC110 - HTTP, no event
            await asyncio.sleep(0.01)


async def test_restarted_while_connected_and_sent_when_the_connection_ends(
    homeserver: tuple[Homeserver, DelayedLeaves],
) -> None:
    server, leaves = homeserver
    assert leaves.delegate("!room", "alice-id", DelayedLeave("d1", 1000))
    await asyncio.sleep(0.1)
    assert server.calls == []  # not connected yet: nothing to keep alive
    leaves.connected("!room", "alice-id")
    await until(lambda: server.calls == [("d1", "restart")])
    await until(lambda: server.calls.count(("d1", "restart")) == 2)  # every 0.8 s
    leaves.disconnected("!room", "alice-id")
    await until(lambda: server.calls[-1] == ("d1", "send"))
    assert len(leaves) == 0


async def test_a_reconnect_that_overlaps_is_not_a_leave(
    homeserver: tuple[Homeserver, DelayedLeaves],
) -> None:
    server, leaves = homeserver
    leaves.delegate("!room", "bob-id", DelayedLeave("d2", 60_000))
    leaves.connected("!room", "bob-id")
    leaves.connected("!room", "bob-id")  # the new connection replaces the old one
    leaves.disconnected("!room", "bob-id")
    await asyncio.sleep(0.2)
    assert ("d2", "send") not in server.calls
    leaves.disconnected("!room", "bob-id")
    await until(lambda: ("d2", "send") in server.calls)


async def test_never_connecting_gives_up_and_unknown_events_stop_the_job(
    homeserver: tuple[Homeserver, DelayedLeaves],
) -> None:
    server, leaves = homeserver
    leaves.delegate("!room", "carol-id", DelayedLeave("d3", 60_000))
    await until(lambda: len(leaves) == 0)  # connect_wait_s passed: dropped, nothing sent
    assert server.calls == []

    server.unknown.add("d4")
    leaves.delegate("!room", "dave-id", DelayedLeave("d4", 1000))
    leaves.connected("!room", "dave-id")
    await until(lambda: len(leaves) == 0)  # the homeserver no longer knows it
    leaves.disconnected("!room", "dave-id")
    await asyncio.sleep(0.1)
    assert server.calls == [("d4", "restart")]


async def test_server_errors_are_retried(homeserver: tuple[Homeserver, DelayedLeaves]) -> None:
    server, leaves = homeserver
    server.failures = 2
    leaves.delegate("!room", "erin-id", DelayedLeave("d5", 60_000))
    leaves.connected("!room", "erin-id")
    await until(lambda: len(server.calls) == 3)
    assert leaves.requests == {"restart ok": 1}


OPENID = {"access_token": "t", "matrix_server_name": "localhost"}
MEMBER = {"id": "m", "claimed_user_id": "@a:localhost", "claimed_device_id": "D"}


@pytest.mark.parametrize(
    ("delay", "message"),
    [
        ({"delay_id": "d"}, "delay_timeout"),
        ({"delay_timeout": 5000}, "delay_id"),
        ({"delay_id": "../../admin", "delay_timeout": 5000}, "delay_id"),
        ({"delay_id": "d", "delay_timeout": "5000"}, "delay_timeout"),
        ({"delay_id": "d", "delay_timeout": True}, "delay_timeout"),
        ({"delay_id": "d", "delay_timeout": 10}, "delay_timeout"),
        ({"delay_id": "d", "delay_timeout": 10**12}, "delay_timeout"),
    ],
)
def test_bad_delay_fields_are_refused(delay: dict[str, object], message: str) -> None:
    body = {"room_id": "!r", "slot_id": "m.call#ROOM", "openid_token": OPENID, "member": MEMBER}
    with pytest.raises(BadRequest, match=message):
        parse_get_token({**body, **delay})
    with pytest.raises(BadRequest, match=message):
        parse_sfu_get({"room": "!r", "openid_token": OPENID, "device_id": "D", **delay})


def test_the_delay_is_taken_and_the_cs_api_url_ignored() -> None:
    body = {"room_id": "!r", "slot_id": "m.call#ROOM", "openid_token": OPENID, "member": MEMBER}
    request = parse_get_token(
        {**body, "delay_id": "syd_abc", "delay_timeout": 8000, "delay_cs_api_url": "http://evil"}
    )
    assert request.delayed_leave == DelayedLeave("syd_abc", 8000)
