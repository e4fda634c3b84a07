"""The public listener's guards, in-process: the page's Content-Security-Policy, the
checks before a meeting socket opens (meeting, origin, caps), the sign-in deadline, the
flood limit, and avatars only for signed-in participants, cached.

The web server is real (aiohttp on loopback) and so are the meetings (``Meetings`` on
SQLite); sign-in, media and the homeserver's media API are stand-ins. The same guards
against a real Synapse are in tests/integration/test_signaling.py.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any, cast

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from mautrix.util.async_db import Database

from bridge.auth.signin import Credential, LinkCredential, SignIn
from bridge.clock import ManualClock
from bridge.db import Storage, upgrade_table
from bridge.meeting.identity import Identity
from bridge.meeting.meeting import Meeting
from bridge.meeting.meetings import Meetings
from bridge.meeting.roles import Role
from bridge.web.avatars import AvatarProxy, Thumbnail, ThumbnailCache
from bridge.web.server import STATIC, WebServer
from bridge.web.signaling import RATE_BURST, RATE_PER_SECOND, SignalingDoor, SocketLimits
from tests.harness.synapse import free_port
from tests.integration.conftest import png_image
from tests.meeting.fakes import FakeMedia

JSON = dict[str, Any]
PUBLIC = "http://visio.test:8080"
AS_TOKEN = "as-secret-token"
UPGRADE = {
    "Connection": "Upgrade",
    "Upgrade": "websocket",
    "Sec-WebSocket-Version": "13",
    "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==",
}


async def until(condition: Callable[[], bool], within: float = 5) -> None:
    """Wait for the server's side of a socket to catch up (it runs in this loop)."""
    async with asyncio.timeout(within):
        while not condition():  # noqa: ASYNC110 - the server's own tasks, no event to await
            await asyncio.sleep(0.01)


class TrustingSignIn:
    """Signs in whoever the link token names: ``alice`` is ``@alice:x``. Each user's
    avatar is ``mxc://x/<name>``; ``nobody`` has none."""

    async def admit(self, credential: Credential, meeting: Meeting) -> Identity:
        assert isinstance(credential, LinkCredential)
        name = credential.token
        avatar = None if name == "nobody" else f"mxc://x/{name}"
        return Identity(f"@{name}:x", "x", name.title(), avatar, Role.PARTICIPANT)


class MediaRepository:
    """The homeserver's thumbnail endpoint: counts requests, checks the bridge's token;
    ``flaky`` fails once, ``huge`` is too big, ``chunked`` comes in pieces."""

    def __init__(self) -> None:
        self.requests: list[str] = []
        self.image = png_image()
        self.runner: web.AppRunner | None = None
        self.port = free_port()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def thumbnail(self, request: web.Request) -> web.StreamResponse:
        media_id = request.match_info["media_id"]
        self.requests.append(media_id)
        if request.headers.get("Authorization") != f"Bearer {AS_TOKEN}":
            return web.json_response({"errcode": "M_MISSING_TOKEN"}, status=401)
        if media_id == "flaky" and self.requests.count("flaky") == 1:
            return web.json_response({"errcode": "M_UNKNOWN"}, status=502)
        if media_id == "huge":
            return web.Response(body=b"\x89PNG" + b"\0" * 600_000, content_type="image/png")
        if media_id == "chunked":
            response = web.StreamResponse(headers={"Content-Type": "image/png"})
            await response.prepare(request)
            for _ in range(8):
                await response.write(b"\x89PNG" + b"\1" * 20_000)
                await asyncio.sleep(0.01)  # separate chunks on the wire
            await response.write_eof()
            return response
        return web.Response(body=self.image, content_type="image/png")

    async def start(self) -> None:
        app = web.Application()
        app.router.add_get(
            "/_matrix/client/v1/media/thumbnail/{server}/{media_id}", self.thumbnail
        )
        self.runner = web.AppRunner(app, access_log=None)
        await self.runner.setup()
        await web.TCPSite(self.runner, "127.0.0.1", self.port).start()

    async def stop(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()


class Site:
    """A WebServer over real Meetings, with a test client; meeting ``self.meeting`` is
    live."""

    def __init__(self, meetings: Meetings, client: TestClient[Any, Any], server: WebServer):
        self.meetings = meetings
        self.client = client
        self.server = server
        self.meeting: Meeting
        self.sockets: list[aiohttp.ClientWebSocketResponse] = []

    @property
    def door(self) -> SignalingDoor:
        return self.server.signaling

    def ws_path(self, meeting_id: str | None = None) -> str:
        return f"/meet/{meeting_id or self.meeting.id}/ws"

    async def attempt(self, path: str, origin: str | None = None) -> tuple[int, JSON]:
        """An upgrade request that is expected to be refused: its status and JSON."""
        headers = dict(UPGRADE, **({"Origin": origin} if origin else {}))
        async with self.client.get(path, headers=headers) as response:
            assert response.status != 101
            return response.status, await response.json()

    async def open(
        self, path: str | None = None, *, origin: str | None = None, local: str | None = None
    ) -> aiohttp.ClientWebSocketResponse:
        """An open socket (closed at the end of the test); ``local``: the client's
        address (another loopback address is another client address)."""
        if local is None:
            ws = await self.client.ws_connect(path or self.ws_path(), origin=origin)
        else:
            session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(local_addr=(local, 0)),
            )
            url = self.client.make_url(path or self.ws_path())
            try:
                ws = await session.ws_connect(url, origin=origin)
            except BaseException:
                await session.close()
                raise
            ws_close = ws.close

            async def close_both(**kwargs: Any) -> bool:
                closed = await ws_close(**kwargs)
                await session.close()
                return closed

            ws.close = close_both  # type: ignore[method-assign]
        self.sockets.append(ws)
        return ws

    async def join(self, name: str, meeting_id: str | None = None) -> tuple[Any, JSON]:
        ws = await self.open(self.ws_path(meeting_id))
        auth = {"kind": "link", "token": name}
        await ws.send_json({"type": "join", "version": 1, "auth": auth})
        joined = await next_message(ws)
        assert joined["type"] == "joined", joined
        return ws, joined


async def next_message(ws: aiohttp.ClientWebSocketResponse, within: float = 5) -> JSON:
    # A deadline for the whole wait (receive(timeout=) restarts at every pong).
    async with asyncio.timeout(within):
        msg = await ws.receive()
    assert msg.type == aiohttp.WSMsgType.TEXT, msg
    data: JSON = json.loads(msg.data)
    return data


@pytest.fixture
async def meetings(tmp_path: Path) -> AsyncIterator[Meetings]:
    db = Database.create(f"sqlite:{tmp_path}/bridge.db", upgrade_table=upgrade_table)
    await db.start()
    storage = Storage(db)
    try:
        yield Meetings(storage.meetings, storage.attendance, FakeMedia(), ManualClock())
    finally:
        await db.stop()


@pytest.fixture
async def repository() -> AsyncIterator[MediaRepository]:
    repository = MediaRepository()
    await repository.start()
    try:
        yield repository
    finally:
        await repository.stop()


SiteFactory = Callable[..., Awaitable[Site]]


@pytest.fixture
async def make_site(meetings: Meetings, repository: MediaRepository) -> AsyncIterator[SiteFactory]:
    """Builds a site with the given SocketLimits fields and WebServer keywords."""
    sites: list[Site] = []

    async def make(
        element_origins: tuple[str, ...] = (), doors: dict[str, str] | None = None, **limits: Any
    ) -> Site:
        door = SignalingDoor(
            meetings,
            cast(SignIn, TrustingSignIn()),
            lambda user_id: [],
            SocketLimits(public_url=PUBLIC, **limits),
        )
        avatars = AvatarProxy(repository.url, AS_TOKEN, {"x"}, door.media_tokens)

        async def readiness() -> dict[str, bool]:
            return {}

        peer_doors = doors or {}

        async def peer_door(room_id: str, server: str) -> str | None:
            return peer_doors.get(server)

        async def room_doors(room_id: str) -> list[str]:
            return list(peer_doors.values())

        server = WebServer(
            "127.0.0.1",
            0,
            meetings.get,
            door,
            avatars,
            readiness,
            public_url=PUBLIC,
            element_origins=element_origins,
            peer_door=peer_door,
            room_doors=room_doors,
            own_server="x",
        )
        client: TestClient[Any, Any] = TestClient(TestServer(server.app, host="127.0.0.1"))
        await client.start_server()
        site = Site(meetings, client, server)
        site.meeting, _ = await meetings.start(f"!room{len(sites)}", "Weekly", "@alice:x")
        sites.append(site)
        return site

    yield make
    for site in sites:
        for ws in site.sockets:
            await ws.close()
        await site.door.close()
        await site.client.close()
        await site.server.avatars.close()


# The page's Content-Security-Policy ---------------------------------------------------


def directives(policy: str) -> dict[str, str]:
    parts = (part.strip().split(" ", 1) for part in policy.split(";"))
    return {part[0]: part[1] if len(part) > 1 else "" for part in parts}


async def test_the_page_sends_a_strict_policy(make_site: SiteFactory) -> None:
    site = await make_site()
    async with site.client.get(f"/meet/{site.meeting.id}") as response:
        assert response.status == 200
        policy = directives(response.headers["Content-Security-Policy"])
    assert policy["default-src"] == "'self'"
    assert policy["script-src"] == "'self'" and policy["style-src"] == "'self'"
    assert policy["img-src"] == "'self' data: blob:"
    assert policy["media-src"] == "'self' blob:"
    assert policy["connect-src"] == "'self' ws://visio.test:8080"
    assert policy["object-src"] == "'none'" and policy["base-uri"] == "'none'"
    # No Element deployments named: any site may frame the page.
    assert policy["frame-ancestors"] == "*"
    # The not-found page, the page under /static/ and JSON answers carry it too.
    for path in ("/meet/nosuchmeeting", "/static/meeting.html", "/meet/nosuchmeeting/info"):
        async with site.client.get(path) as response:
            assert "frame-ancestors *" in response.headers["Content-Security-Policy"], path


async def test_frame_ancestors_are_the_element_origins(make_site: SiteFactory) -> None:
    site = await make_site(
        element_origins=("https://element.agency.test", "https://chat.other.test")
    )
    for path in (f"/meet/{site.meeting.id}", "/meet/nosuchmeeting"):
        async with site.client.get(path) as response:
            policy = directives(response.headers["Content-Security-Policy"])
        assert policy["frame-ancestors"] == "https://element.agency.test https://chat.other.test"


async def test_a_page_may_frame_and_be_framed_by_the_rooms_peer_bridges(
    make_site: SiteFactory,
) -> None:
    site = await make_site(
        element_origins=("https://element.agency.test",),
        doors={"b.test": "https://visio.b.test/bridge"},
    )
    async with site.client.get(f"/meet/{site.meeting.id}") as response:
        policy = directives(response.headers["Content-Security-Policy"])
        permissions = response.headers["Permissions-Policy"]
    assert policy["frame-src"] == "'self' https://visio.b.test"
    assert policy["frame-ancestors"] == "https://element.agency.test https://visio.b.test"
    assert 'camera=(self "https://visio.b.test")' in permissions
    assert 'microphone=(self "https://visio.b.test")' in permissions
    # Without peers the page frames nothing but itself, and gives nobody its camera.
    plain = await make_site()
    async with plain.client.get(f"/meet/{plain.meeting.id}") as response:
        assert directives(response.headers["Content-Security-Policy"])["frame-src"] == "'self'"
        assert response.headers["Permissions-Policy"].startswith("camera=(self),")


async def test_the_door_sends_a_peer_bridges_people_there(make_site: SiteFactory) -> None:
    site = await make_site(doors={"b.test": "https://visio.b.test/bridge/"})
    meeting = site.meeting

    async def door(server: str) -> JSON:
        async with site.client.get(f"/meet/{meeting.id}/door", params={"server": server}) as r:
            assert r.status == 200 and r.headers["Cache-Control"] == "no-store"
            return cast(JSON, await r.json())

    assert await door("b.test") == {"url": f"https://visio.b.test/bridge/meet/{meeting.id}"}
    # Own people, servers without a peer bridge here, and garbage: met here.
    for server in ("x", "c.test", "", "not a server/..", "b.test/../evil"):
        assert await door(server) == {}, server
    async with site.client.get("/meet/nosuchmeeting/door?server=b.test") as response:
        assert response.status == 404
    # A meeting this bridge keeps only its side of is never sent elsewhere from here.
    elsewhere = await site.meetings.start_hosted_elsewhere(
        "!other", "elsewhere1", "Theirs", "@carol:b.test", 1, "@visio:b.test"
    )
    assert elsewhere is not None
    async with site.client.get("/meet/elsewhere1/door?server=b.test") as response:
        assert await response.json() == {}


def test_the_page_has_no_inline_code_the_policy_would_block() -> None:
    html = (STATIC / "meeting.html").read_text()
    assert re.findall(r"<script(?![^>]*\bsrc=)[^>]*>", html) == []
    assert "<style" not in html
    assert re.findall(r"\s(?:style|on[a-z]+)\s*=", html) == []
    for script in STATIC.glob("*.js"):
        code = script.read_text()
        # What 'unsafe-inline'/'unsafe-eval' would be needed for (element.style is fine).
        for banned in ("innerHTML", "outerHTML", 'setAttribute("style"', "eval(", "Function("):
            assert banned not in code, f"{script.name} uses {banned}"


# Before the upgrade: the meeting, the origin, the caps --------------------------------


async def test_unknown_meetings_get_404_before_any_socket(make_site: SiteFactory) -> None:
    site = await make_site()
    for meeting_id in ("nosuchmeeting", "NOT-AN-ID", "a" * 65):
        status, body = await site.attempt(site.ws_path(meeting_id))
        assert status == 404 and body == {"error": "This meeting does not exist."}
    assert not site.door.sessions and site.door.open.total == 0


async def test_only_the_page_and_allowed_origins_may_open_sockets(
    make_site: SiteFactory,
) -> None:
    site = await make_site(allowed_origins=("https://partner.test",))
    for origin in ("https://evil.test", "http://visio.test:9999", "null", "file://"):
        status, body = await site.attempt(site.ws_path(), origin)
        assert status == 403 and "may not open" in body["error"], origin
    # Refused before the meeting is looked up: a hostile page learns nothing.
    status, _ = await site.attempt(site.ws_path("nosuchmeeting"), "https://evil.test")
    assert status == 403
    # The page's own origin (as browsers spell it), an allowed one, and none at all.
    for origin in ("http://visio.test:8080", "https://partner.test", None):
        ws = await site.open(origin=origin)
        await ws.send_json({"type": "ping"})
        assert (await next_message(ws))["code"] == "not_joined"


async def test_sockets_per_address_are_capped(make_site: SiteFactory) -> None:
    site = await make_site(max_sockets_per_address=2)
    first = await site.open()
    await site.open()
    status, body = await site.attempt(site.ws_path())
    assert status == 503 and "busy" in body["error"]
    # Another client address is not held back by this one.
    other = await site.open(local="127.0.0.2")
    assert not other.closed
    # A closed socket frees its place.
    await first.close()
    await until(lambda: site.door.open.by_address["127.0.0.1"] == 1)
    await site.open()
    assert site.door.open.by_address == {"127.0.0.1": 2, "127.0.0.2": 1}


async def test_sockets_overall_and_per_meeting_are_capped(make_site: SiteFactory) -> None:
    site = await make_site(max_sockets_per_meeting=1)
    other, _ = await site.meetings.start("!elsewhere", "Other", "@bob:x")
    await site.open()
    assert (await site.attempt(site.ws_path()))[0] == 503
    await site.open(site.ws_path(other.id))  # another meeting has room

    overall = await make_site(max_sockets=2)
    await overall.open()
    await overall.open(overall.ws_path(other.id))
    assert (await overall.attempt(overall.ws_path()))[0] == 503


# After the upgrade: the sign-in deadline and floods ------------------------------------


async def test_a_socket_that_does_not_sign_in_is_closed_at_the_deadline(
    make_site: SiteFactory,
) -> None:
    site = await make_site(signin_timeout=0.5)
    ws = await site.open()
    opened = time.monotonic()

    async def keep_pinging() -> None:
        # Control frames do not count as signing in, nor do they push the deadline.
        while not ws.closed:
            await ws.ping()
            await asyncio.sleep(0.1)

    pinger = asyncio.create_task(keep_pinging())
    try:
        error = await next_message(ws, within=3)
        assert error["code"] == "not_joined"
        async with asyncio.timeout(3):
            closing = await ws.receive()
        assert closing.type in (
            aiohttp.WSMsgType.CLOSE,
            aiohttp.WSMsgType.CLOSED,
        )
    finally:
        pinger.cancel()
    assert 0.4 < time.monotonic() - opened < 2.5
    await until(lambda: site.door.open.total == 0)


async def test_a_flood_is_dropped_unread_and_answered_once(make_site: SiteFactory) -> None:
    site = await make_site()
    ws, _ = await site.join("alice")
    sent = 150
    started = time.monotonic()
    for _ in range(sent):
        await ws.send_str('{"type": "mute"}')  # well-formed JSON, a bad mute
    for _ in range(20):
        await ws.send_bytes(b"\0")
    # The bucket refills with time: wait for one more message to be let in.
    await asyncio.sleep(2 / RATE_PER_SECOND)
    await ws.send_json({"type": "ping"})
    replies: list[JSON] = []
    while not replies or replies[-1]["type"] != "pong":
        replies.append(await next_message(ws))
    elapsed = time.monotonic() - started
    bad = [r for r in replies if r.get("code") == "bad_message"]
    too_many = [r for r in replies if r.get("code") == "too_many"]
    # Only what the bucket let in was read and answered...
    assert RATE_BURST <= len(bad) <= RATE_BURST + RATE_PER_SECOND * elapsed + 1
    assert all(r["in_reply_to"] == "mute" for r in bad)
    # ...and the rest of the flood heard of it at most once a second, without being read.
    assert 1 <= len(too_many) <= 1 + elapsed
    assert all("in_reply_to" not in r for r in too_many)
    assert len(replies) == len(bad) + len(too_many) + 1


# Avatars: media tokens and the cache ---------------------------------------------------


async def test_avatars_only_for_people_in_the_meeting_of_the_token(
    make_site: SiteFactory, repository: MediaRepository
) -> None:
    site = await make_site()
    alice_ws, alice = await site.join("alice")
    _, bob = await site.join("bob")
    token = alice["media_token"]
    assert isinstance(token, str) and len(token) >= 32 and token != bob["media_token"]

    async def status(path: str) -> int:
        async with site.client.get(path) as response:
            if response.status == 200:
                assert await response.read() == repository.image
                assert response.headers["Content-Security-Policy"] == "default-src 'none'"
            return response.status

    assert await status("/avatar/x/alice") == 403
    assert await status("/avatar/x/alice?token=forged") == 403
    assert repository.requests == []
    assert await status(f"/avatar/x/alice?token={token}") == 200
    assert await status(f"/avatar/x/bob?token={token}") == 200  # another participant's
    assert await status(f"/avatar/x/bob?token={bob['media_token']}") == 200
    # Media that is nobody's avatar here, and servers whose users may not join.
    assert await status(f"/avatar/x/somethingelse?token={token}") == 403
    assert await status(f"/avatar/elsewhere.test/alice?token={token}") == 404
    # Someone in another meeting may not see this meeting's avatars.
    other, _ = await site.meetings.start("!other", "Other", "@carol:x")
    _, carol = await site.join("carol", other.id)
    assert await status(f"/avatar/x/alice?token={carol['media_token']}") == 403
    assert await status(f"/avatar/x/carol?token={carol['media_token']}") == 200

    # Fetched once each, then from the cache.
    assert sorted(repository.requests) == ["alice", "bob", "carol"]

    # Gone with the participant: alice leaves, her token stops working at once.
    await alice_ws.send_json({"type": "leave"})
    await until(lambda: site.meeting.participant_of("@alice:x") is None)
    assert await status(f"/avatar/x/bob?token={token}") == 403
    await until(lambda: len(site.door.media_tokens) == 2)  # bob's and carol's


async def test_failed_fetches_are_not_cached_and_big_images_are_refused(
    make_site: SiteFactory, repository: MediaRepository
) -> None:
    site = await make_site()
    tokens = {}
    for name in ("flaky", "huge", "chunked"):
        _, joined = await site.join(name)
        tokens[name] = joined["media_token"]

    async def get(name: str) -> tuple[int, bytes]:
        async with site.client.get(f"/avatar/x/{name}?token={tokens[name]}") as response:
            return response.status, await response.read()

    assert (await get("flaky"))[0] == 404
    assert (await get("flaky"))[0] == 200  # the failure was not kept
    assert (await get("huge"))[0] == 404
    status, body = await get("chunked")
    assert status == 200 and len(body) == 8 * 20_004  # every chunk, not the first
    assert await get("chunked") == (200, body)
    assert repository.requests.count("chunked") == 1
    assert len(site.server.avatars.cache) == 2


def test_the_thumbnail_cache_is_bounded_and_keeps_the_recently_used() -> None:
    cache = ThumbnailCache(max_entries=3, max_bytes=100)
    for name in ("a", "b", "c"):
        cache.put(("x", name), Thumbnail(b"1" * 10, "image/png"))
    assert cache.get(("x", "a")) is not None  # a is now the most recent
    cache.put(("x", "d"), Thumbnail(b"1" * 10, "image/png"))
    assert cache.get(("x", "b")) is None and len(cache) == 3
    cache.put(("x", "big"), Thumbnail(b"1" * 90, "image/png"))
    assert len(cache) == 2 and cache.size <= 100
    assert cache.get(("x", "big")) is not None and cache.get(("x", "d")) is not None
