"""The public web listener: health checks and meeting pages.

Never serves the appservice API; that lives on its own private listener.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from pathlib import Path

from aiohttp import web
from yarl import URL

from ..config import is_valid_server_name
from ..meeting.meeting import Meeting
from .avatars import AvatarProxy
from .signaling import MEETING_ID, SignalingDoor

STATIC = Path(__file__).resolve().parent / "static"

# The page runs in Element's widget iframe too, so framing by Element is allowed (the
# policy's frame-ancestors); it needs camera, microphone and screen capture there.

log = logging.getLogger("visio.web")

_SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}


def content_security_policy(
    public_url: str, element_origins: Sequence[str], peer_origins: Sequence[str] = ()
) -> str:
    """The meeting page's policy: its own scripts, styles and connections only (no
    inline code, so injected markup cannot run), framed only by the Element deployments
    in ``web.element_origins`` (by any site when that list is empty).

    ``peer_origins``: the trusted peer bridges that serve the meeting's room. The page
    may frame them (it hands their people over to them inside Element's widget) and be
    framed by them."""
    origin = URL(public_url).origin()
    peers = " ".join(peer_origins)
    ancestors = " ".join((*element_origins, *peer_origins)) if element_origins else "*"
    # 'self' covers same-origin WebSockets in current browsers; older ones needed the
    # ws(s) origin spelled out, and it costs nothing to name it.
    socket = origin.with_scheme("wss" if origin.scheme == "https" else "ws")
    return "; ".join(
        (
            "default-src 'self'",
            "script-src 'self'",
            "style-src 'self'",
            "img-src 'self' data: blob:",
            "media-src 'self' blob:",
            f"connect-src 'self' {socket}",
            f"frame-src 'self' {peers}".rstrip(),
            "object-src 'none'",
            "base-uri 'none'",
            "form-action 'self'",
            f"frame-ancestors {ancestors}",
        )
    )


def permissions_policy(peer_origins: Sequence[str] = ()) -> str:
    """Camera, microphone and screen capture for the page itself, and for the trusted
    peer bridges it may frame."""
    allowed = " ".join(("self", *(f'"{origin}"' for origin in peer_origins)))
    return ", ".join(
        f"{feature}=({allowed})" for feature in ("camera", "microphone", "display-capture")
    )


def _security_headers(defaults: Mapping[str, str]) -> Callable[..., Awaitable[web.StreamResponse]]:
    """Middleware that gives every response these headers, unless it set its own (the
    avatars set a stricter policy)."""

    @web.middleware
    async def middleware(request: web.Request, handler: object) -> web.StreamResponse:
        response = await handler(request)  # type: ignore[operator]
        for name, value in defaults.items():
            response.headers.setdefault(name, value)
        return response

    return middleware


ReadinessChecks = Callable[[], Awaitable[dict[str, bool]]]
MeetingLookup = Callable[[str], Awaitable[Meeting | None]]
#: The address of the trusted peer bridge that serves a server's people in a room.
PeerDoorLookup = Callable[[str, str], Awaitable[str | None]]
#: The addresses of every trusted peer bridge that serves a room.
RoomDoorsLookup = Callable[[str], Awaitable[list[str]]]


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
        *,
        public_url: str,
        element_origins: Sequence[str] = (),
        peer_door: PeerDoorLookup | None = None,
        room_doors: RoomDoorsLookup | None = None,
        own_server: str = "",
    ) -> None:
        self.hostname = hostname
        self.port = port
        self.find_meeting = find_meeting
        self.signaling = signaling
        self.avatars = avatars
        self.readiness = readiness
        self.peer_door = peer_door
        self.room_doors = room_doors
        self.own_server = own_server
        self.public_url = public_url
        self.element_origins = tuple(element_origins)
        self.policy = content_security_policy(public_url, element_origins)
        self.page_headers = {
            "Permissions-Policy": permissions_policy(),
            "Content-Security-Policy": self.policy,
        }
        # Every response carries the policy too: /static/meeting.html is the page
        # without the /meet/ path, and must not be a way around it.
        defaults = {**_SECURITY_HEADERS, "Content-Security-Policy": self.policy}
        self.app = web.Application(
            middlewares=[_security_headers(defaults)], client_max_size=64 * 1024
        )
        self.app.router.add_get("/health", self.health)
        self.app.router.add_get("/ready", self.ready)
        self.app.router.add_get("/meet/{meeting_id}", self.meeting_page)
        self.app.router.add_get("/meet/{meeting_id}/info", self.meeting_info)
        self.app.router.add_get("/meet/{meeting_id}/door", self.meeting_door)
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
        if not MEETING_ID.match(meeting_id):
            return None
        return await self.find_meeting(meeting_id)

    async def meeting_page(self, request: web.Request) -> web.StreamResponse:
        """The browser client; it asks /info and the WebSocket for the rest."""
        meeting = await self._meeting(request)
        if meeting is None:
            return web.Response(
                status=404,
                content_type="text/html",
                text=_not_found_page(),
                headers=self.page_headers,
            )
        headers = self.page_headers
        peers = await self.room_doors(meeting.room_id) if self.room_doors is not None else []
        if peers:
            origins = sorted({str(URL(url).origin()) for url in peers})
            headers = {
                "Permissions-Policy": permissions_policy(origins),
                "Content-Security-Policy": content_security_policy(
                    self.public_url, self.element_origins, origins
                ),
            }
        return web.FileResponse(
            STATIC / "meeting.html", headers={"Cache-Control": "no-store", **headers}
        )

    async def meeting_info(self, request: web.Request) -> web.Response:
        meeting = await self._meeting(request)
        if meeting is None:
            return web.json_response({"error": "This meeting does not exist."}, status=404)
        return web.json_response(
            {
                "meeting_id": meeting.id,
                "title": meeting.title,
                "state": meeting.state.value,
                # Shown on the pre-join screen: nobody joins unaware of either.
                "recording": meeting.recorded and meeting.is_live,
                "transcribing": meeting.transcribed and meeting.is_live,
            },
            headers={"Cache-Control": "no-store"},
        )

    async def meeting_door(self, request: web.Request) -> web.Response:
        """Where the people of ``?server=`` join this meeting: on their own agency's
        bridge when a trusted peer bridge of their server serves the room (``{"url":
        ...}``), here otherwise (``{}``). The page asks before signing in, so no token
        of another agency's user ever reaches this server on the way."""
        meeting = await self._meeting(request)
        if meeting is None:
            return web.json_response({"error": "This meeting does not exist."}, status=404)
        server = request.query.get("server", "")
        headers = {"Cache-Control": "no-store"}
        if (
            not is_valid_server_name(server)
            or server == self.own_server
            or self.peer_door is None
            or not meeting.is_live
            or meeting.hosted_elsewhere
        ):
            return web.json_response({}, headers=headers)
        base = await self.peer_door(meeting.room_id, server)
        if base is None:
            return web.json_response({}, headers=headers)
        return web.json_response({"url": f"{base.rstrip('/')}/meet/{meeting.id}"}, headers=headers)


def _not_found_page() -> str:
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        "<title>Meeting not found · Visio</title></head><body><main>"
        "<h1>Meeting not found</h1><p>This meeting does not exist. Check the link.</p>"
        "</main></body></html>"
    )
