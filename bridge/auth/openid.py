"""Who is this? OpenID tokens checked at the user's own homeserver.

A browser proves its Matrix identity with an OpenID token from its client. The bridge
asks the token's homeserver (``/_matrix/federation/v1/openid/userinfo``) whose it is;
that works across federation, so users of other agencies sign in the same way. The
server is checked against the allowlist before anything is sent to it.
"""

from __future__ import annotations

import asyncio
import logging
import re
import ssl
from typing import Any

import aiohttp
from yarl import URL

from ..config import is_valid_server_name, server_of
from ..refusal import Refusal

log = logging.getLogger("visio.auth.openid")

_TOKEN = re.compile(r"^[A-Za-z0-9._~+/=-]{1,1024}$")
_USERINFO = "/_matrix/federation/v1/openid/userinfo"
TIMEOUT_S = 10


class OpenIDError(Refusal):
    """A sign-in that failed."""


class OpenIDVerifier:
    """Checks OpenID tokens against the allowlist and the user's homeserver."""

    def __init__(
        self,
        own_server: str,
        own_address: str,
        allowed_servers: set[str],
        server_urls: dict[str, str],
        ca_file: str = "",
    ) -> None:
        self.own_server = own_server
        self.allowed_servers = allowed_servers
        self.server_urls = {own_server: own_address, **server_urls}
        self.ca_file = ca_file
        self._session: aiohttp.ClientSession | None = None
        self._discovered: dict[str, str] = {}

    @property
    def session(self) -> aiohttp.ClientSession:
        """The HTTP client, made on first use (inside the running event loop)."""
        if self._session is None:
            ssl_context = ssl.create_default_context()
            if self.ca_file:
                ssl_context.load_verify_locations(cafile=self.ca_file)
            self._session = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=15),
                connector=aiohttp.TCPConnector(ssl=ssl_context),
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
        try:
            async with (
                asyncio.timeout(TIMEOUT_S),
                self.session.get(
                    f"{base.rstrip('/')}{_USERINFO}", params={"access_token": token}
                ) as response,
            ):
                status = response.status
                body = await response.json(content_type=None) if status == 200 else None
        except (aiohttp.ClientError, TimeoutError, ValueError) as e:
            log.warning("Could not check a sign-in with %s: %s", server_name, e)
            raise OpenIDError(
                "unauthorized", f"Your homeserver ({server_name}) could not be asked who you are."
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
        if server_name in self._discovered:
            return self._discovered[server_name]
        base = await self._discover(server_name)
        self._discovered[server_name] = base
        return base

    async def _discover(self, server_name: str) -> str:
        host_has_port = re.search(r":\d+$", server_name) is not None
        is_ip = re.match(r"^[\d.]+(:\d+)?$|^\[", server_name) is not None
        if host_has_port or is_ip:
            return f"https://{server_name}"
        try:
            async with (
                asyncio.timeout(TIMEOUT_S),
                self.session.get(f"https://{server_name}/.well-known/matrix/server") as response,
            ):
                data = await response.json(content_type=None) if response.status == 200 else {}
            delegated = data.get("m.server") if isinstance(data, dict) else None
            if isinstance(delegated, str) and is_valid_server_name(delegated):
                url = URL(f"https://{delegated}")
                port = url.explicit_port or 8448
                return f"https://{url.host}:{port}"
        except (aiohttp.ClientError, TimeoutError, ValueError) as e:
            log.debug("No .well-known delegation for %s: %s", server_name, e)
        return f"https://{server_name}:8448"
