"""The public web listener: health checks and meeting pages.

Never serves the appservice API; that lives on its own private listener.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Awaitable, Callable
from pathlib import Path

from aiohttp import web

from ..meeting.meeting import Meeting
from .avatars import AvatarProxy
from .signaling import SignalingDoor

STATIC = Path(__file__).resolve().parent / "static"

# The page runs in Element's widget iframe too, so framing is allowed; it needs camera,
# microphone and screen capture there.
_PAGE_HEADERS = {
    "Permissions-Policy": "camera=(self), microphone=(self), display-capture=(self)",
}

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


ReadinessChecks = Callable[[], Awaitable[dict[str, bool]]]
MeetingLookup = Callable[[str], Awaitable[Meeting | None]]


class WebServer:
    """The aiohttp application on web.hostname:web.port."""

    def __init__(
        self,
        hostname: str,
        port: int,
        find_meeting: MeetingLookup,
        signaling: SignalingDoor,
        avatars: AvatarProxy,
        readiness: ReadinessChecks,
    ) -> None:
        self.hostname = hostname
        self.port = port
        self.find_meeting = find_meeting
        self.signaling = signaling
        self.avatars = avatars
        self.readiness = readiness
        self.app = web.Application(middlewares=[_security_headers], client_max_size=64 * 1024)
        self.app.router.add_get("/health", self.health)
        self.app.router.add_get("/ready", self.ready)
        self.app.router.add_get("/meet/{meeting_id}", self.meeting_page)
        self.app.router.add_get("/meet/{meeting_id}/info", self.meeting_info)
        self.app.router.add_get("/meet/{meeting_id}/ws", signaling.handle)
        self.app.router.add_get("/avatar/{server}/{media_id}", avatars.handle)
        self.app.router.add_static("/static/", STATIC, show_index=False, follow_symlinks=False)
        self.runner: web.AppRunner | None = None

    async def start(self) -> None:
        self.runner = web.AppRunner(self.app, access_log=None, shutdown_timeout=5)
        await self.runner.setup()
        site = web.TCPSite(self.runner, self.hostname, self.port)
        await site.start()

    async def stop(self) -> None:
        await self.signaling.close()
        if self.runner is not None:
            await self.runner.cleanup()
            self.runner = None
        await self.avatars.close()

    async def health(self, _: web.Request) -> web.Response:
        """Alive: the process answers."""
        return web.json_response({"status": "ok"})

    async def ready(self, _: web.Request) -> web.Response:
        """Ready: every readiness check (the database, the homeserver) passes."""
        checks = await self.readiness()
        ok = all(checks.values())
        return web.json_response(
            {"status": "ok" if ok else "unavailable", "checks": checks}, status=200 if ok else 503
        )

    async def _meeting(self, request: web.Request) -> Meeting | None:
        meeting_id = request.match_info["meeting_id"]
        if not _MEETING_ID.match(meeting_id):
            return None
        return await self.find_meeting(meeting_id)

    async def meeting_page(self, request: web.Request) -> web.StreamResponse:
        """The browser client; it asks /info and the WebSocket for the rest."""
        if await self._meeting(request) is None:
            return web.Response(status=404, content_type="text/html", text=_not_found_page())
        return web.FileResponse(
            STATIC / "meeting.html", headers={"Cache-Control": "no-store", **_PAGE_HEADERS}
        )

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
