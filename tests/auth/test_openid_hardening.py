"""OpenID verification that a server name cannot steer: no redirect followed, answers
read only up to a cap, discovered servers on public addresses only, discovery cached for
a while, and a homeserver that cannot be reached told apart from one that refuses.

The stand-in homeservers are real HTTP(S) servers on 127.0.0.1. Names such as
``wk.test`` reach them through a fixed resolver table (the verifier's ``resolve`` hook,
standing in for DNS and the port); TLS is real, with a throwaway CA.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from bridge.auth import openid
from bridge.auth.openid import OpenIDError, OpenIDVerifier, Resolve, is_public_address
from bridge.clock import ManualClock
from tests.harness.synapse import LocalCA, free_ports

USERINFO = "/_matrix/federation/v1/openid/userinfo"
WELL_KNOWN = "/.well-known/matrix/server"
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass
class StandIn:
    """A stand-in homeserver: its port, and the paths it was asked for."""

    port: int
    hits: list[str] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def asked(self, path: str) -> int:
        return self.hits.count(path)


@dataclass
class Servers:
    """Starts stand-ins (plain HTTP, or HTTPS with a certificate from ``ca``)."""

    ca: LocalCA
    tls: ssl.SSLContext
    running: list[TestServer] = field(default_factory=list)

    async def start(self, routes: dict[str, Handler], *, https: bool = False) -> StandIn:
        stand_in = StandIn(0)

        @web.middleware
        async def record(request: web.Request, handler: Handler) -> web.StreamResponse:
            stand_in.hits.append(request.path)
            return await handler(request)

        app = web.Application(middlewares=[record])
        for path, handler in routes.items():
            app.router.add_get(path, handler)
        server = TestServer(app, host="127.0.0.1")
        await server.start_server(ssl=self.tls if https else None)
        self.running.append(server)
        assert server.port is not None
        stand_in.port = server.port
        return stand_in


@pytest.fixture
async def servers(tmp_path: Path) -> AsyncIterator[Servers]:
    ca = LocalCA.create(tmp_path / "ca")
    files = ca.issue_certificate(
        tmp_path / "tls",
        dns_names=("localhost", "wk.test", "evil.test", "down.test"),
        ip_addresses=("127.0.0.1",),
    )
    tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    tls.load_cert_chain(files.cert_path, files.key_path)
    made = Servers(ca, tls)
    yield made
    for server in made.running:
        await server.close()


def table(entries: dict[tuple[str, int], int]) -> Resolve:
    """A resolver for the listed (name, port) pairs, each to a port on 127.0.0.1."""

    async def resolve(host: str, port: int) -> list[tuple[str, int]]:
        if (host, port) not in entries:
            raise socket.gaierror(socket.EAI_NONAME, f"{host} is not in the test's table")
        return [("127.0.0.1", entries[(host, port)])]

    return resolve


def answer(data: Any, status: int = 200) -> Handler:
    async def handler(request: web.Request) -> web.Response:
        return web.json_response(data, status=status)

    return handler


def userinfo_for(user_id: str) -> Handler:
    return answer({"sub": user_id})


async def refusal(verifier: OpenIDVerifier, server: str, token: str = "good") -> OpenIDError:
    with pytest.raises(OpenIDError) as error:
        await verifier.verify(server, token)
    return error.value


@pytest.mark.parametrize(
    ("address", "public"),
    [
        ("127.0.0.1", False),
        ("10.1.2.3", False),
        ("172.16.0.1", False),
        ("192.168.1.1", False),
        ("100.64.0.1", False),  # shared address space (carrier NAT)
        ("169.254.169.254", False),  # link-local: cloud metadata services live here
        ("0.0.0.0", False),
        ("224.0.0.1", False),
        ("240.0.0.1", False),
        ("::1", False),
        ("::", False),
        ("fe80::1", False),
        ("fd00::1", False),
        ("ff02::1", False),
        ("::ffff:127.0.0.1", False),
        ("::ffff:10.0.0.1", False),
        ("not an address", False),
        ("8.8.8.8", True),
        ("2001:4860:4860::8888", True),
        ("::ffff:8.8.8.8", True),
    ],
)
def test_which_addresses_are_public(address: str, public: bool) -> None:
    assert is_public_address(address) is public


async def test_a_redirect_from_userinfo_is_not_followed(servers: Servers) -> None:
    target = await servers.start({USERINFO: userinfo_for("@alice:agency.test")})

    async def elsewhere(request: web.Request) -> web.Response:
        raise web.HTTPFound(f"{target.url}{USERINFO}?{request.query_string}")

    redirecting = await servers.start({USERINFO: elsewhere})
    # Private addresses allowed, so that only the redirect rule stands in the way.
    verifier = OpenIDVerifier(
        "agency.test",
        redirecting.url,
        {"agency.test"},
        {},
        allow_private_addresses=True,
    )
    try:
        error = await refusal(verifier, "agency.test")
        assert error.code == "unavailable"
        assert redirecting.asked(USERINFO) == 1
        assert target.hits == []
    finally:
        await verifier.close()


async def test_a_redirect_from_well_known_is_not_followed(servers: Servers) -> None:
    evil = await servers.start(
        {WELL_KNOWN: answer({"m.server": "evil.test:443"}), USERINFO: userinfo_for("@a:wk.test")},
        https=True,
    )

    async def elsewhere(request: web.Request) -> web.Response:
        raise web.HTTPFound(f"https://evil.test{WELL_KNOWN}")

    home = await servers.start(
        {WELL_KNOWN: elsewhere, USERINFO: userinfo_for("@alice:wk.test")}, https=True
    )
    verifier = OpenIDVerifier(
        "own.test",
        "http://127.0.0.1:9",
        {"wk.test"},
        {},
        ca_file=str(servers.ca.cert_path),
        allow_private_addresses=True,
        resolve=table(
            {
                ("wk.test", 443): home.port,
                ("wk.test", 8448): home.port,
                ("evil.test", 443): evil.port,
            }
        ),
    )
    try:
        # The redirect counts as no delegation: the default port, on the name's own host.
        assert await verifier.verify("wk.test", "good") == "@alice:wk.test"
        assert await verifier.federation_base("wk.test") == "https://wk.test:8448"
        assert home.hits == [WELL_KNOWN, USERINFO]
        assert evil.hits == []
    finally:
        await verifier.close()


async def test_an_oversized_userinfo_is_refused_without_reading_it_all(
    servers: Servers,
) -> None:
    total = 64 * 1024 * 1024
    chunk = b"x" * (256 * 1024)
    sent = 0
    stopped = asyncio.Event()

    async def endless(request: web.Request) -> web.StreamResponse:
        # Valid JSON naming the right user: only the size is wrong with it.
        nonlocal sent
        response = web.StreamResponse(headers={"Content-Type": "application/json"})
        await response.prepare(request)
        try:
            await response.write(b'{"sub": "@alice:agency.test", "padding": "')
            while sent < total:
                await response.write(chunk)
                sent += len(chunk)
            await response.write(b'"}')
        except (ConnectionError, RuntimeError):
            pass  # the verifier hung up: what this test wants
        finally:
            stopped.set()
        return response

    stand_in = await servers.start({USERINFO: endless})
    verifier = OpenIDVerifier("agency.test", stand_in.url, {"agency.test"}, {})
    try:
        error = await refusal(verifier, "agency.test")
        assert error.code == "unavailable"
        await asyncio.wait_for(stopped.wait(), 10)
        # The verifier stopped after the cap: what got out is the cap plus what the
        # sockets' buffers held, far from the whole body.
        assert sent < total // 2
    finally:
        await verifier.close()


async def test_an_oversized_answer_with_its_length_announced_is_refused(
    servers: Servers,
) -> None:
    big = {"sub": "@alice:agency.test", "padding": "x" * (openid.MAX_BODY + 1)}
    stand_in = await servers.start({USERINFO: answer(big)})
    verifier = OpenIDVerifier("agency.test", stand_in.url, {"agency.test"}, {})
    try:
        error = await refusal(verifier, "agency.test")
        assert error.code == "unavailable"
    finally:
        await verifier.close()


async def test_an_oversized_well_known_is_not_used(servers: Servers) -> None:
    big = {"m.server": "elsewhere.test:9000", "padding": "x" * (openid.MAX_BODY + 1)}
    home = await servers.start({WELL_KNOWN: answer(big)}, https=True)
    verifier = OpenIDVerifier(
        "own.test",
        "http://127.0.0.1:9",
        {"wk.test"},
        {},
        ca_file=str(servers.ca.cert_path),
        allow_private_addresses=True,
        resolve=table({("wk.test", 443): home.port}),
    )
    try:
        assert await verifier.federation_base("wk.test") == "https://wk.test:8448"
        assert home.asked(WELL_KNOWN) == 1
    finally:
        await verifier.close()


@pytest.mark.parametrize("name", ["localhost", "127.0.0.1"])
async def test_a_server_on_a_private_address_is_refused_unless_allowed(
    servers: Servers, name: str
) -> None:
    """``localhost:<port>`` goes through the system's resolver, ``127.0.0.1:<port>`` is
    checked as it stands; both are loopback."""

    async def userinfo(request: web.Request) -> web.Response:
        # The stand-in answers for whatever name it was asked by.
        return web.json_response({"sub": f"@alice:{request.host}"})

    stand_in = await servers.start({USERINFO: userinfo}, https=True)
    server = f"{name}:{stand_in.port}"

    def verifier(allow: bool, configured: dict[str, str] | None = None) -> OpenIDVerifier:
        return OpenIDVerifier(
            "own.test",
            "http://127.0.0.1:9",
            {server},
            configured or {},
            ca_file=str(servers.ca.cert_path),
            allow_private_addresses=allow,
        )

    strict, lenient = verifier(False), verifier(True)
    operator_listed = verifier(False, {server: f"https://{server}"})
    try:
        error = await refusal(strict, server)
        assert error.code == "unavailable"
        assert f"({server}) could not be reached" in str(error)
        assert stand_in.hits == []
        assert await lenient.verify(server, "good") == f"@alice:{server}"
        # What the operator configured is used whatever its address.
        assert await operator_listed.verify(server, "good") == f"@alice:{server}"
        assert stand_in.asked(USERINFO) == 2
    finally:
        for each in (strict, lenient, operator_listed):
            await each.close()


async def test_a_name_that_resolves_to_a_private_address_is_refused(servers: Servers) -> None:
    """Discovery through .well-known: the name resolves to loopback, so neither the
    .well-known nor the port 8448 fallback is asked."""
    home = await servers.start(
        {WELL_KNOWN: answer({"m.server": "wk.test:8448"}), USERINFO: userinfo_for("@a:wk.test")},
        https=True,
    )
    resolve = table({("wk.test", 443): home.port, ("wk.test", 8448): home.port})

    def verifier(allow: bool) -> OpenIDVerifier:
        return OpenIDVerifier(
            "own.test",
            "http://127.0.0.1:9",
            {"wk.test"},
            {},
            ca_file=str(servers.ca.cert_path),
            allow_private_addresses=allow,
            resolve=resolve,
        )

    strict, lenient = verifier(False), verifier(True)
    try:
        error = await refusal(strict, "wk.test")
        assert error.code == "unavailable"
        assert home.hits == []
        assert await lenient.verify("wk.test", "good") == "@a:wk.test"
        assert home.hits == [WELL_KNOWN, USERINFO]
    finally:
        await strict.close()
        await lenient.close()


async def test_discovery_is_cached_for_an_hour_and_a_failure_for_minutes(
    servers: Servers,
) -> None:
    delegation = {"wk.test": "hs.test:9448"}
    down = {"now": True}

    async def well_known(request: web.Request) -> web.Response:
        return web.json_response({"m.server": delegation["wk.test"]})

    async def flaky_well_known(request: web.Request) -> web.Response:
        if down["now"]:
            return web.json_response({"errcode": "M_UNKNOWN"}, status=503)
        return web.json_response({"m.server": "hs.down.test:9449"})

    home = await servers.start({WELL_KNOWN: well_known}, https=True)
    flaky = await servers.start({WELL_KNOWN: flaky_well_known}, https=True)
    clock = ManualClock()
    verifier = OpenIDVerifier(
        "own.test",
        "http://127.0.0.1:9",
        {"wk.test", "down.test"},
        {},
        ca_file=str(servers.ca.cert_path),
        allow_private_addresses=True,
        clock=clock,
        resolve=table({("wk.test", 443): home.port, ("down.test", 443): flaky.port}),
    )
    try:
        assert await verifier.federation_base("wk.test") == "https://hs.test:9448"
        assert await verifier.federation_base("down.test") == "https://down.test:8448"
        delegation["wk.test"] = "hs2.test:9450"
        down["now"] = False

        clock.advance(299)
        assert await verifier.federation_base("down.test") == "https://down.test:8448"
        assert flaky.asked(WELL_KNOWN) == 1
        clock.advance(2)  # a failed discovery is asked again after five minutes
        assert await verifier.federation_base("down.test") == "https://hs.down.test:9449"
        assert flaky.asked(WELL_KNOWN) == 2

        assert await verifier.federation_base("wk.test") == "https://hs.test:9448"
        clock.advance(3600 - 301 - 1)
        assert await verifier.federation_base("wk.test") == "https://hs.test:9448"
        assert home.asked(WELL_KNOWN) == 1
        clock.advance(2)  # a found server is asked again after an hour
        assert await verifier.federation_base("wk.test") == "https://hs2.test:9450"
        assert home.asked(WELL_KNOWN) == 2
    finally:
        await verifier.close()


async def test_an_unreachable_homeserver_is_unavailable_and_a_refusal_unauthorized(
    servers: Servers, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    async def userinfo(request: web.Request) -> web.StreamResponse:
        token = request.query["access_token"]
        if token == "slow-token":
            await asyncio.sleep(5)
        statuses = {"expired-token": 401, "forbidden-token": 403, "odd-token": 404}
        statuses |= {"broken-token": 500, "busy-token": 429, "down-token": 503}
        if token in statuses:
            return web.json_response({"errcode": "M_UNKNOWN"}, status=statuses[token])
        if token == "garbage-token":
            return web.Response(text="<html>not json</html>")
        if token == "liar-token":
            return web.json_response({"sub": "@alice:other.test"})
        return web.json_response({"sub": "@alice:agency.test"})

    stand_in = await servers.start({USERINFO: userinfo})
    (closed_port,) = free_ports(1)
    verifier = OpenIDVerifier(
        "agency.test",
        stand_in.url,
        {"agency.test", "gone.test"},
        {"gone.test": f"http://127.0.0.1:{closed_port}"},
    )
    monkeypatch.setattr(openid, "TIMEOUT_S", 0.5)
    caplog.set_level(logging.DEBUG, logger="visio.auth.openid")
    tokens = []

    async def code(server: str, token: str) -> str:
        tokens.append(token)
        return (await refusal(verifier, server, token)).code

    try:
        assert await verifier.verify("agency.test", "good-token") == "@alice:agency.test"
        # The server could not be asked, or gave no usable answer: worth trying again.
        assert await code("gone.test", "any-token") == "unavailable"
        assert await code("agency.test", "slow-token") == "unavailable"
        assert await code("agency.test", "broken-token") == "unavailable"
        assert await code("agency.test", "down-token") == "unavailable"
        assert await code("agency.test", "busy-token") == "unavailable"
        assert await code("agency.test", "garbage-token") == "unavailable"
        # The server answered and said no: final.
        assert await code("agency.test", "expired-token") == "unauthorized"
        assert await code("agency.test", "forbidden-token") == "unauthorized"
        assert await code("agency.test", "odd-token") == "unauthorized"
        assert await code("agency.test", "liar-token") == "unauthorized"
        # Why it failed is logged, the tokens never are.
        assert "HTTP 500" in caplog.text
        for token in tokens:
            assert token not in caplog.text
    finally:
        await verifier.close()
