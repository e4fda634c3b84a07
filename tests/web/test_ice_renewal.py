"""Short-lived TURN credentials are renewed over the meeting socket while someone stays,
and never after they are out."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestClient

from bridge.meeting.attendee import NOT_A_MEMBER
from bridge.meeting.meetings import Meetings
from tests.web.inprocess import in_process_site


class Credentials:
    """Counts what it hands out: each call is a fresh credential."""

    def __init__(self) -> None:
        self.made = 0

    def __call__(self, user_id: str) -> list[dict[str, Any]]:
        self.made += 1
        return [{"urls": ["turn:turn.test:3478"], "username": f"{self.made}:{user_id}"}]


@pytest.fixture
async def site() -> AsyncIterator[tuple[TestClient[Any, Any], Meetings, Credentials]]:
    credentials = Credentials()
    async with in_process_site(credentials, ice_renewal=0.05) as site:
        yield site.client, site.meetings, credentials


async def receive(ws: aiohttp.ClientWebSocketResponse) -> dict[str, Any]:
    async with asyncio.timeout(5):
        msg = await ws.receive()
    assert msg.type == aiohttp.WSMsgType.TEXT, msg
    data: dict[str, Any] = json.loads(msg.data)
    return data


async def test_credentials_are_renewed_while_in_and_stop_when_out(
    site: tuple[TestClient[Any, Any], Meetings, Credentials],
) -> None:
    client, meetings, credentials = site
    meeting, _ = await meetings.start("!room", "T", "@alice:x")
    ws = await client.ws_connect(f"/meet/{meeting.id}/ws")
    await ws.send_json({"type": "join", "version": 1, "auth": {"kind": "link", "token": "bob"}})
    joined = await receive(ws)
    assert joined["ice_servers"][0]["username"] == "1:@bob:x"
    renewed = [await receive(ws) for _ in range(2)]
    assert [m["type"] for m in renewed] == ["ice_servers", "ice_servers"]
    assert [m["ice_servers"][0]["username"] for m in renewed] == ["2:@bob:x", "3:@bob:x"]
    # Removed from the room: the session ends and no credential is made after that.
    await meetings.dismiss_user("!room", "@bob:x", NOT_A_MEMBER)
    rest = []
    async with asyncio.timeout(5):
        async for msg in ws:
            rest.append(json.loads(msg.data))
    assert rest[-1]["code"] == "unauthorized"
    made = credentials.made
    await asyncio.sleep(0.2)
    assert credentials.made == made
