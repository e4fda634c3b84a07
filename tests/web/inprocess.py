"""A meeting web server in this process: the real WebServer, SignalingDoor and
Meetings (SQLite in a temporary folder), with stand-ins for sign-in and media."""

from __future__ import annotations

import contextlib
import tempfile
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any, cast

from aiohttp.test_utils import TestClient, TestServer
from mautrix.util.async_db import Database

from bridge.auth.signin import SignIn
from bridge.clock import ManualClock
from bridge.db import Storage, upgrade_table
from bridge.meeting.meetings import Meetings
from bridge.web.avatars import AvatarProxy
from bridge.web.server import WebServer
from bridge.web.signaling import IceServers, SignalingDoor, SocketLimits
from tests.meeting.fakes import FakeMedia
from tests.web.test_server import PUBLIC, TrustingSignIn


@dataclass
class InProcessSite:
    client: TestClient[Any, Any]
    meetings: Meetings
    door: SignalingDoor


@contextlib.asynccontextmanager
async def in_process_site(
    ice_servers: IceServers = lambda user_id: [], ice_renewal: float | None = None
) -> AsyncIterator[InProcessSite]:
    with tempfile.TemporaryDirectory() as directory:
        db = Database.create(f"sqlite:{directory}/bridge.db", upgrade_table=upgrade_table)
        await db.start()
        storage = Storage(db)
        meetings = Meetings(storage.meetings, storage.attendance, FakeMedia(), ManualClock())
        door = SignalingDoor(
            meetings,
            cast(SignIn, TrustingSignIn()),
            ice_servers,
            SocketLimits(public_url=PUBLIC),
            ice_renewal=ice_renewal,
        )

        async def readiness() -> dict[str, bool]:
            return {}

        avatars = AvatarProxy("http://127.0.0.1:1", "token", {"x"}, door.media_tokens)
        server = WebServer(
            "127.0.0.1", 0, meetings.get, door, avatars, readiness, public_url=PUBLIC
        )
        client: TestClient[Any, Any] = TestClient(TestServer(server.app, host="127.0.0.1"))
        await client.start_server()
        try:
            yield InProcessSite(client, meetings, door)
        finally:
            await door.close()
            await client.close()
            await avatars.close()
            await db.stop()
