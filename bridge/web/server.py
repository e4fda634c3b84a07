"""The public web listener: health checks and meeting pages.

Never serves the appservice API; that lives on its own private listener.
"""

from __future__ import annotations

import asyncio
import logging
import re
from html import escape
from importlib import resources
from typing import TYPE_CHECKING

import aiohttp
from aiohttp import web

if TYPE_CHECKING:
    from ..context import Bridge

log = logging.getLogger("visio.web")

_MEETING_ID = re.compile(r"^[a-z0-9]{1,64}$")

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


def _template(name: str) -> str:
    return resources.files("bridge.web").joinpath("templates", name).read_text("utf-8")


class WebServer:
    """The aiohttp application on web.hostname:web.port."""

    def __init__(self, bridge: Bridge) -> None:
        self.bridge = bridge
        self.app = web.Application(middlewares=[_security_headers], client_max_size=64 * 1024)
        self.app.router.add_get("/health", self.health)
        self.app.router.add_get("/ready", self.ready)
        self.app.router.add_get("/meet/{meeting_id}", self.meeting_page)
        self.runner: web.AppRunner | None = None
        self._page = _template("meeting.html")

    async def start(self) -> None:
        self.runner = web.AppRunner(self.app, access_log=None)
        await self.runner.setup()
        site = web.TCPSite(
            self.runner, self.bridge.config["web.hostname"], self.bridge.config["web.port"]
        )
        await site.start()

    async def stop(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()
            self.runner = None

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
                return await self.bridge.db.fetchval("SELECT 1") == 1
        except Exception as e:
            log.warning("Readiness: the database does not answer: %s", e)
            return False

    async def _homeserver_ok(self) -> bool:
        url = str(self.bridge.config["homeserver.address"]).rstrip("/")
        try:
            async with asyncio.timeout(5):
                session = self.bridge.az.http_session
                async with session.get(f"{url}/_matrix/client/versions") as response:
                    return response.status == 200
        except (aiohttp.ClientError, TimeoutError, AttributeError) as e:
            log.warning("Readiness: the homeserver does not answer: %s", e)
            return False

    async def meeting_page(self, request: web.Request) -> web.Response:
        meeting_id = request.match_info["meeting_id"]
        meeting = None
        if _MEETING_ID.match(meeting_id):
            meeting = await self.bridge.meetings.get(meeting_id)
        if meeting is None:
            return web.Response(
                status=404,
                content_type="text/html",
                text=self._page.replace("{{title}}", "Meeting not found").replace(
                    "{{state}}", "This meeting does not exist. Check the link."
                ),
            )
        state = "The meeting is live." if meeting.is_live else "This meeting has ended."
        return web.Response(
            content_type="text/html",
            text=self._page.replace("{{title}}", escape(meeting.title)).replace(
                "{{state}}", state
            ),
        )
