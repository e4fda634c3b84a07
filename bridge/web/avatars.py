"""Participants' Matrix avatars, served through the bridge (authenticated media).

Only to pages signed in to a live meeting, and only the avatars of the people in it:
the bridge fetches with its own appservice token, so an open ``/avatar`` would be a
proxy onto any media of the allowed servers.
"""

from __future__ import annotations

import asyncio
import re
import secrets
from collections import OrderedDict
from dataclasses import dataclass
from typing import TYPE_CHECKING

import aiohttp
from aiohttp import web

from ..config import is_valid_server_name

if TYPE_CHECKING:
    from ..meeting.live import Participant

_MEDIA_ID = re.compile(r"^[A-Za-z0-9_-]{1,255}$")
_AVATAR_TYPES = frozenset({"image/png", "image/jpeg", "image/gif", "image/webp"})
MAX_AVATAR_BYTES = 512 * 1024
CACHE_ENTRIES = 256
CACHE_BYTES = 8 * 1024 * 1024


class MediaTokens:
    """The tokens that let a meeting page fetch avatars: one per signed-in participant
    (sent in ``joined``), good while that participant is in a live meeting, and only for
    the avatars of the people in that meeting.

    Random and in memory only: a restart signs everyone in again, and so issues new
    ones. Tokens are secrets: never log them.
    """

    def __init__(self) -> None:
        self._holders: dict[str, Participant] = {}

    def __len__(self) -> int:
        return len(self._holders)

    def issue(self, participant: Participant) -> str:
        token = secrets.token_urlsafe(24)
        self._holders[token] = participant
        return token

    def revoke(self, token: str | None) -> None:
        if token is not None:
            self._holders.pop(token, None)

    def allows(self, token: str, avatar_url: str) -> bool:
        """Whether ``token``'s holder may see the avatar ``mxc://server/media_id``."""
        holder = self._holders.get(token)
        # Present is checked now, not at issue: a participant who left, was replaced or
        # dismissed, or whose meeting ended, loses access at once.
        if holder is None or not holder.present or not holder.meeting.is_live:
            return False
        return any(p.avatar_url == avatar_url for p in holder.meeting.participants.values())


@dataclass(frozen=True)
class Thumbnail:
    body: bytes
    content_type: str


class ThumbnailCache:
    """The most recently used thumbnails, bounded in entries and in bytes.

    An ``mxc://`` URI names content that never changes, so an entry never goes stale;
    only successful images are kept, so a miss is retried next time.
    """

    def __init__(self, max_entries: int = CACHE_ENTRIES, max_bytes: int = CACHE_BYTES) -> None:
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self.size = 0
        self._entries: OrderedDict[tuple[str, str], Thumbnail] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, key: tuple[str, str]) -> Thumbnail | None:
        thumbnail = self._entries.get(key)
        if thumbnail is not None:
            self._entries.move_to_end(key)
        return thumbnail

    def put(self, key: tuple[str, str], thumbnail: Thumbnail) -> None:
        old = self._entries.pop(key, None)
        if old is not None:
            self.size -= len(old.body)
        self._entries[key] = thumbnail
        self.size += len(thumbnail.body)
        while len(self._entries) > self.max_entries or self.size > self.max_bytes:
            _, evicted = self._entries.popitem(last=False)
            self.size -= len(evicted.body)


class AvatarProxy:
    """``GET /avatar/{server}/{media_id}?token=<media token>``: an avatar
    (``mxc://server/media_id``) as a small thumbnail, fetched through the bridge's
    homeserver with the bridge's token, only from servers whose users may join meetings
    here, and only for a page whose media token allows it (:class:`MediaTokens`)."""

    def __init__(
        self,
        homeserver_address: str,
        as_token: str,
        allowed_servers: set[str],
        tokens: MediaTokens,
        cache: ThumbnailCache | None = None,
    ) -> None:
        self.base = homeserver_address.rstrip("/")
        self._as_token = as_token
        self.allowed_servers = allowed_servers
        self.tokens = tokens
        self.cache = cache or ThumbnailCache()
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
        if not self.tokens.allows(request.query.get("token", ""), f"mxc://{server}/{media_id}"):
            raise web.HTTPForbidden()
        key = (server, media_id)
        thumbnail = self.cache.get(key)
        if thumbnail is None:
            thumbnail = await self._fetch(server, media_id)
            self.cache.put(key, thumbnail)
        return web.Response(
            body=thumbnail.body,
            content_type=thumbnail.content_type,
            headers={
                "Cache-Control": "private, max-age=3600",
                "Content-Security-Policy": "default-src 'none'",
            },
        )

    async def _fetch(self, server: str, media_id: str) -> Thumbnail:
        """The thumbnail from the homeserver, or HTTPNotFound for anything but a small
        image."""
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
                # The whole body (read(n) may stop at a chunk: a cut image would be
                # cached), and no more than the limit.
                body = bytearray()
                async for chunk in response.content.iter_any():
                    body += chunk
                    if len(body) > MAX_AVATAR_BYTES:
                        raise web.HTTPNotFound()
        except (aiohttp.ClientError, TimeoutError):
            raise web.HTTPNotFound() from None
        return Thumbnail(bytes(body), kind)
