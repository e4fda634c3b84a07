"""Participants' Matrix avatars, served through the bridge (authenticated media)."""

from __future__ import annotations

import asyncio
import re

import aiohttp
from aiohttp import web

from ..config import is_valid_server_name

_MEDIA_ID = re.compile(r"^[A-Za-z0-9_-]{1,255}$")
_AVATAR_TYPES = frozenset({"image/png", "image/jpeg", "image/gif", "image/webp"})
MAX_AVATAR_BYTES = 512 * 1024


class AvatarProxy:
    """``GET /avatar/{server}/{media_id}``: an avatar (``mxc://server/media_id``) as a
    small thumbnail, fetched through the bridge's homeserver with the bridge's token,
    only from servers whose users may join meetings here."""

    def __init__(self, homeserver_address: str, as_token: str, allowed_servers: set[str]) -> None:
        self.base = homeserver_address.rstrip("/")
        self._as_token = as_token
        self.allowed_servers = allowed_servers
        self._session: aiohttp.ClientSession | None = None

    def _http(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=15))
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def handle(self, request: web.Request) -> web.Response:
        server, media_id = request.match_info["server"], request.match_info["media_id"]
        if (
            not is_valid_server_name(server)
            or server not in self.allowed_servers
            or not _MEDIA_ID.match(media_id)
        ):
            raise web.HTTPNotFound()
        url = f"{self.base}/_matrix/client/v1/media/thumbnail/{server}/{media_id}"
        params = {"width": "96", "height": "96", "method": "crop"}
        headers = {"Authorization": f"Bearer {self._as_token}"}
        try:
            async with (
                asyncio.timeout(10),
                self._http().get(url, params=params, headers=headers) as response,
            ):
                kind = response.content_type
                if response.status != 200 or kind not in _AVATAR_TYPES:
                    raise web.HTTPNotFound()
                body = await response.content.read(MAX_AVATAR_BYTES + 1)
        except (aiohttp.ClientError, TimeoutError):
            raise web.HTTPNotFound() from None
        if len(body) > MAX_AVATAR_BYTES:
            raise web.HTTPNotFound()
        return web.Response(
            body=body,
            content_type=kind,
            headers={
                "Cache-Control": "private, max-age=3600",
                "Content-Security-Policy": "default-src 'none'",
            },
        )
