"""Who is this? OpenID tokens checked at the user's own homeserver.

A browser proves its Matrix identity with an OpenID token from its client. The bridge
asks the token's homeserver (``/_matrix/federation/v1/openid/userinfo``) whose it is;
that works across federation, so users of other agencies sign in the same way. The
server is checked against the allowlist before anything is sent to it.

What the server name steers is kept narrow: no redirect is followed, every answer is
read up to a small cap, and a server found by discovery (``.well-known``, or the default
port 8448) must be on a public address unless ``allow_private_addresses`` says
otherwise. Servers the operator configured (``server_urls``, this bridge's own) are
always used as they are.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import logging
import re
import socket
import ssl
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult
from yarl import URL

from ..clock import Clock, SystemClock
from ..config import is_valid_server_name, server_of
from ..refusal import Refusal

log = logging.getLogger("visio.auth.openid")

_TOKEN = re.compile(r"^[A-Za-z0-9._~+/=-]{1,1024}$")
_USERINFO = "/_matrix/federation/v1/openid/userinfo"
TIMEOUT_S = 10
# Both answers are a few hundred bytes; anything near the cap is not a homeserver's.
MAX_BODY = 64 * 1024
# A found server is asked again after this long; a failed discovery (which falls back
# to port 8448) sooner, so that a server that fixes its .well-known is seen soon.
DISCOVERY_TTL_S = 3600.0
FAILED_DISCOVERY_TTL_S = 300.0

Resolve = Callable[[str, int], Awaitable[Sequence[tuple[str, int]]]]
"""A name resolver: ``(host, port)`` to the ``(address, port)`` pairs to connect to."""


class OpenIDError(Refusal):
    """A sign-in that failed."""


class AddressRefused(OSError):
    """A discovered homeserver is on an address this bridge may not call."""


class _Unreachable(Exception):
    """The homeserver could not be asked, or gave no usable answer (words for the log)."""


def is_public_address(address: str) -> bool:
    """Whether ``address`` (an IP address) is on the public internet: not loopback,
    private, link-local, multicast, reserved or unspecified."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    # ::ffff:127.0.0.1 reaches 127.0.0.1; judge the address it maps to.
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_global and not (
        ip.is_loopback
        or ip.is_private
        or ip.is_link_local
        or ip.is_multicast
        or ip.is_reserved
        or ip.is_unspecified
    )


def _is_ip_literal(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


async def system_resolve(host: str, port: int) -> list[tuple[str, int]]:
    """The addresses the system's resolver gives for ``host``."""
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return [(str(info[4][0]), int(info[4][1])) for info in infos]


class _CheckingResolver(AbstractResolver):
    """aiohttp's resolver for the verifier: refuses non-public addresses for hosts that
    must be public. aiohttp connects to exactly the addresses returned here, so the
    connection is pinned to the addresses checked (no DNS rebinding in between)."""

    def __init__(self, resolve: Resolve, must_be_public: Callable[[str, int], bool]) -> None:
        self._resolve = resolve
        self._must_be_public = must_be_public

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        pairs = await self._resolve(host, port)
        if not pairs:
            raise OSError(f"{host} has no address")
        if self._must_be_public(host, port):
            for address, _ in pairs:
                if not is_public_address(address):
                    raise AddressRefused(f"{host} is on a non-public address ({address})")
        return [
            {
                "hostname": host,
                "host": address,
                "port": resolved_port,
                "family": socket.AF_INET6 if ":" in address else socket.AF_INET,
                "proto": 0,
                "flags": socket.AI_NUMERICHOST | socket.AI_NUMERICSERV,
            }
            for address, resolved_port in pairs
        ]

    async def close(self) -> None:
        pass


class OpenIDVerifier:
    """Checks OpenID tokens against the allowlist and the user's homeserver.

    ``resolve`` turns host names into addresses (the system's resolver by default; tests
    pass a fixed table). ``clock`` times the discovery cache.
    """

    def __init__(
        self,
        own_server: str,
        own_address: str,
        allowed_servers: set[str],
        server_urls: dict[str, str],
        ca_file: str = "",
        allow_private_addresses: bool = False,
        clock: Clock | None = None,
        resolve: Resolve = system_resolve,
    ) -> None:
        self.own_server = own_server
        self.allowed_servers = allowed_servers
        self.server_urls = {own_server: own_address, **server_urls}
        self.ca_file = ca_file
        self.allow_private_addresses = allow_private_addresses
        self.clock: Clock = clock or SystemClock()
        self.resolve = resolve
        # Operator-configured endpoints, by (host, port): used whatever their address.
        self._configured = {_endpoint(URL(url)) for url in self.server_urls.values()}
        self._session: aiohttp.ClientSession | None = None
        # server name -> (base URL, monotonic time it expires); only allowlisted names
        # get here, so the cache stays as small as the allowlist.
        self._discovered: dict[str, tuple[str, float]] = {}

    @property
    def session(self) -> aiohttp.ClientSession:
        """The HTTP client, made on first use (inside the running event loop)."""
        if self._session is None:
            ssl_context = ssl.create_default_context()
            if self.ca_file:
                ssl_context.load_verify_locations(cafile=self.ca_file)
            resolver = _CheckingResolver(self.resolve, self._must_be_public)
            self._session = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=15),
                connector=aiohttp.TCPConnector(ssl=ssl_context, resolver=resolver),
            )
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def verify(self, server_name: Any, token: Any) -> str:
        """The user id the token belongs to, or OpenIDError."""
        if not isinstance(server_name, str) or not is_valid_server_name(server_name):
            raise OpenIDError("unauthorized", "The sign-in names no valid Matrix server.")
        if not isinstance(token, str) or not _TOKEN.match(token):
            raise OpenIDError("unauthorized", "The sign-in token is not valid.")
        if server_name not in self.allowed_servers:
            raise OpenIDError(
                "server_not_allowed",
                f"Users of {server_name} may not join meetings on this bridge.",
            )
        base = await self.federation_base(server_name)
        url = URL(f"{base.rstrip('/')}{_USERINFO}").with_query(access_token=token)
        try:
            status, body = await self._get_json(url)
        except _Unreachable as e:
            log.warning("Could not check a sign-in with %s: %s", server_name, e)
            raise OpenIDError(
                "unavailable",
                f"Your homeserver ({server_name}) could not be reached to check who you "
                "are; trying again…",
            ) from None
        if status != 200:
            raise OpenIDError(
                "unauthorized",
                "Your Matrix sign-in was not accepted by your homeserver (it may have expired).",
            )
        user_id = body.get("sub") if isinstance(body, dict) else None
        if not isinstance(user_id, str) or server_of(user_id) != server_name:
            raise OpenIDError("unauthorized", "Your homeserver answered for another server.")
        return user_id

    async def federation_base(self, server_name: str) -> str:
        """Where the server's federation API is: configured, discovered, or the default."""
        if server_name in self.server_urls:
            return self.server_urls[server_name]
        now = self.clock.monotonic()
        cached = self._discovered.get(server_name)
        if cached is not None and now < cached[1]:
            return cached[0]
        base, found = await self._discover(server_name)
        ttl = DISCOVERY_TTL_S if found else FAILED_DISCOVERY_TTL_S
        self._discovered[server_name] = (base, now + ttl)
        return base

    async def _discover(self, server_name: str) -> tuple[str, bool]:
        """The base URL, and whether it was found (False: the port 8448 fallback)."""
        host_has_port = re.search(r":\d+$", server_name) is not None
        is_ip = re.match(r"^[\d.]+(:\d+)?$|^\[", server_name) is not None
        if host_has_port or is_ip:
            return f"https://{server_name}", True
        try:
            status, data = await self._get_json(
                URL(f"https://{server_name}/.well-known/matrix/server")
            )
        except _Unreachable as e:
            log.debug("No .well-known delegation for %s: %s", server_name, e)
        else:
            delegated = data.get("m.server") if status == 200 and isinstance(data, dict) else None
            if isinstance(delegated, str) and is_valid_server_name(delegated):
                url = URL(f"https://{delegated}")
                port = url.explicit_port or 8448
                return f"https://{url.host}:{port}", True
            log.debug("No .well-known delegation for %s (HTTP %s)", server_name, status)
        return f"https://{server_name}:8448", False

    async def _get_json(self, url: URL) -> tuple[int, Any]:
        """GET ``url``: the status, and the JSON body when it is 200 (else None).

        Raises :class:`_Unreachable` when there is no usable answer: no connection, a
        refused address, a timeout, a redirect (never followed), a server error or rate
        limit, a body over :data:`MAX_BODY`, or a 200 that is not JSON.
        """
        self._check_literal_address(url)
        try:
            async with (
                asyncio.timeout(TIMEOUT_S),
                self.session.get(url, allow_redirects=False) as response,
            ):
                status = response.status
                if 300 <= status < 400:
                    raise _Unreachable(f"it redirects (HTTP {status}); redirects are not followed")
                if status >= 500 or status == 429:
                    raise _Unreachable(f"it answered HTTP {status}")
                if status != 200:
                    return status, None
                raw = await _read_capped(response, MAX_BODY)
        except aiohttp.ClientConnectorError as e:
            raise _Unreachable(_connect_failure(e)) from None
        except aiohttp.ClientError as e:
            # The type only: some client errors quote the URL, which holds the token.
            raise _Unreachable(f"the connection failed ({type(e).__name__})") from None
        except TimeoutError:
            raise _Unreachable(f"no answer within {TIMEOUT_S} seconds") from None
        try:
            return status, json.loads(raw)
        except ValueError:
            raise _Unreachable("its answer is not JSON") from None

    def _check_literal_address(self, url: URL) -> None:
        """An IP address in the URL is checked here: aiohttp resolves only names."""
        host = url.host or ""
        if (
            _is_ip_literal(host)
            and self._must_be_public(host, url.port or 0)
            and not is_public_address(host)
        ):
            raise _Unreachable(f"{host} is a non-public address")

    def _must_be_public(self, host: str, port: int) -> bool:
        return not self.allow_private_addresses and (host, port) not in self._configured


def _endpoint(url: URL) -> tuple[str, int]:
    return (url.host or "", url.port or 0)


def _connect_failure(error: aiohttp.ClientConnectorError) -> str:
    if isinstance(error.os_error, AddressRefused):
        return f"{error.os_error} (federation.allow_private_addresses is off)"
    return f"cannot connect to {error.host}:{error.port} ({error.os_error})"


async def _read_capped(response: aiohttp.ClientResponse, limit: int) -> bytes:
    """The body, read only up to ``limit`` bytes; more than that is :class:`_Unreachable`."""
    if response.content_length is not None and response.content_length > limit:
        raise _Unreachable(f"its answer is over {limit} bytes")
    body = bytearray()
    while chunk := await response.content.read(limit + 1 - len(body)):
        body += chunk
        if len(body) > limit:
            raise _Unreachable(f"its answer is over {limit} bytes")
    return bytes(body)
