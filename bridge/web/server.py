"""The public web listener: health checks and meeting pages.

Never serves the appservice API; that lives on its own private listener.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Coroutine
from pathlib import Path
from typing import TYPE_CHECKING, Any

import aiohttp
from aiohttp import web

from ..config import is_valid_server_name
from ..federation.openid import OpenIDVerifier
from ..meeting.meeting import Meeting
from .links import LinkSigner
from .live import LiveMeetings
from .signaling import Session, signaling_handler

if TYPE_CHECKING:
    from ..context import Bridge

STATIC = Path(__file__).resolve().parent / "static"

# The page runs in Element's widget iframe too, so framing is allowed; it needs camera,
# microphone and screen capture there.
_PAGE_HEADERS = {
    "Permissions-Policy": "camera=(self), microphone=(self), display-capture=(self)",
}

log = logging.getLogger("visio.web")

_MEETING_ID = re.compile(r"^[a-z0-9]{1,64}$")
_MEDIA_ID = re.compile(r"^[A-Za-z0-9_-]{1,255}$")
_AVATAR_TYPES = frozenset({"image/png", "image/jpeg", "image/gif", "image/webp"})
MAX_AVATAR_BYTES = 512 * 1024

_SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}


@web.middleware
async def _security_headers(request: web.Request, handler: object) -> web.StreamResponse:
    response = await handler(request)  # type: ignore[operator]
    for name, value in _SECURITY_HEADERS.items():
        response.headers.setdefault(name, value)
    return response


class WebServer:
    """The aiohttp application on web.hostname:web.port."""

    def __init__(self, bridge: Bridge) -> None:
        self.bridge = bridge
        config = bridge.config
        self.app = web.Application(middlewares=[_security_headers], client_max_size=64 * 1024)
        self.app.router.add_get("/health", self.health)
        self.app.router.add_get("/ready", self.ready)
        self.app.router.add_get("/meet/{meeting_id}", self.meeting_page)
        self.app.router.add_get("/meet/{meeting_id}/info", self.meeting_info)
        self.app.router.add_get("/meet/{meeting_id}/ws", self.signaling)
        self.app.router.add_get("/avatar/{server}/{media_id}", self.avatar)
        self.app.router.add_static("/static/", STATIC, show_index=False, follow_symlinks=False)
        self.runner: web.AppRunner | None = None
        self.links = LinkSigner(config["web.link_secret"], config["web.link_lifetime"])
        self.live = LiveMeetings(bridge)
        self.sessions: set[Session] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._http: aiohttp.ClientSession | None = None
        self._openid: OpenIDVerifier | None = None

    @property
    def openid(self) -> OpenIDVerifier:
        assert self._openid is not None, "the web server is not started"
        return self._openid

    def spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        """Run background work that the server waits for when it stops."""
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def start(self) -> None:
        config = self.bridge.config
        self._http = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=15))
        self._openid = OpenIDVerifier(
            own_server=config["homeserver.domain"],
            own_address=config["homeserver.address"],
            allowed_servers=config.allowed_servers(),
            server_urls=dict(config["federation.server_urls"]),
            session=self._http,
        )
        self.runner = web.AppRunner(self.app, access_log=None, shutdown_timeout=5)
        await self.runner.setup()
        site = web.TCPSite(self.runner, config["web.hostname"], config["web.port"])
        await site.start()

    async def stop(self) -> None:
        await self.live.close()
        for session in list(self.sessions):
            await session.close("reconnect", "The meeting server is restarting.")
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        if self.runner is not None:
            await self.runner.cleanup()
            self.runner = None
        if self._http is not None:
            await self._http.close()
            self._http = None

    async def health(self, _: web.Request) -> web.Response:
        """Alive: the process answers."""
        return web.json_response({"status": "ok"})

    async def ready(self, _: web.Request) -> web.Response:
        """Ready: the database answers and the homeserver is reachable."""
        checks = {"database": await self._database_ok(), "homeserver": await self._homeserver_ok()}
        ok = all(checks.values())
        return web.json_response(
            {"status": "ok" if ok else "unavailable", "checks": checks}, status=200 if ok else 503
        )

    async def _database_ok(self) -> bool:
        try:
            async with asyncio.timeout(5):
                return bool(await self.bridge.db.fetchval("SELECT 1") == 1)
        except Exception as e:
            log.warning("Readiness: the database does not answer: %s", e)
            return False

    async def _homeserver_ok(self) -> bool:
        url = str(self.bridge.config["homeserver.address"]).rstrip("/")
        if self._http is None:
            return False
        try:
            async with (
                asyncio.timeout(5),
                self._http.get(f"{url}/_matrix/client/versions") as response,
            ):
                return response.status == 200
        except (aiohttp.ClientError, TimeoutError) as e:
            log.warning("Readiness: the homeserver does not answer: %s", e)
            return False

    async def _meeting(self, request: web.Request) -> Meeting | None:
        meeting_id = request.match_info["meeting_id"]
        if not _MEETING_ID.match(meeting_id):
            return None
        return await self.bridge.meetings.get(meeting_id)

    async def meeting_page(self, request: web.Request) -> web.StreamResponse:
        """The browser client; it asks /info and the WebSocket for the rest."""
        if await self._meeting(request) is None:
            return web.Response(status=404, content_type="text/html", text=_not_found_page())
        return web.FileResponse(
            STATIC / "meeting.html", headers={"Cache-Control": "no-store", **_PAGE_HEADERS}
        )

    async def avatar(self, request: web.Request) -> web.Response:
        """A participant's Matrix avatar (``mxc://server/media_id``) as a small thumbnail,
        fetched through the bridge's homeserver (authenticated media), only from servers
        whose users may join meetings here."""
        server, media_id = request.match_info["server"], request.match_info["media_id"]
        config = self.bridge.config
        if (
            not is_valid_server_name(server)
            or server not in config.allowed_servers()
            or not _MEDIA_ID.match(media_id)
            or self._http is None
        ):
            raise web.HTTPNotFound()
        base = str(config["homeserver.address"]).rstrip("/")
        url = f"{base}/_matrix/client/v1/media/thumbnail/{server}/{media_id}"
        params = {"width": "96", "height": "96", "method": "crop"}
        headers = {"Authorization": f"Bearer {config['appservice.as_token']}"}
        try:
            async with (
                asyncio.timeout(10),
                self._http.get(url, params=params, headers=headers) as response,
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

    async def signaling(self, request: web.Request) -> web.StreamResponse:
        return await signaling_handler(self.bridge, request)

    async def meeting_info(self, request: web.Request) -> web.Response:
        meeting = await self._meeting(request)
        if meeting is None:
            return web.json_response({"error": "This meeting does not exist."}, status=404)
        return web.json_response(
            {"meeting_id": meeting.id, "title": meeting.title, "state": meeting.state.value},
            headers={"Cache-Control": "no-store"},
        )


def _not_found_page() -> str:
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        "<title>Meeting not found · Visio</title></head><body><main>"
        "<h1>Meeting not found</h1><p>This meeting does not exist. Check the link.</p>"
        "</main></body></html>"
    )
