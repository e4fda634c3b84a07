"""Random mutations of every signaling message type, thrown at a joined session
(property-based, Hypothesis): no exception escapes (no ``internal`` error), every frame
the protocol refuses gets exactly one error frame, and the meeting goes on for the
others.

The web server, the door and the meetings are real (SQLite); sign-in and media are
stand-ins (tests/web/test_server.py has the same set-up).
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import aiohttp
from aiohttp.test_utils import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bridge.web.messages import Join, Ping, ProtocolError, Publish, parse_message
from tests.web.inprocess import in_process_site

JSON = dict[str, Any]

VALID: dict[str, JSON] = {
    "join": {"type": "join", "version": 1, "auth": {"kind": "link", "token": "mallory"}},
    "publish": {"type": "publish", "sdp": "v=0\r\n", "sources": {"0": "microphone"}},
    "answer": {"type": "answer", "sdp": "v=0\r\n"},
    "mute": {"type": "mute", "audio": True, "video": False},
    "hand": {"type": "hand", "raised": True},
    "ping": {"type": "ping"},
}

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=24),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=8), children, max_size=3)
    ),
    max_leaves=6,
)


def _mutations(kind: str) -> st.SearchStrategy[str | bytes]:
    base = VALID[kind]
    keys = sorted(base)

    def dropped(key: str) -> str:
        return json.dumps({k: v for k, v in base.items() if k != key})

    def replaced(item: tuple[str, Any]) -> str:
        return json.dumps({**base, item[0]: item[1]})

    def added(item: tuple[str, Any]) -> str:
        return json.dumps({**base, item[0]: item[1]})

    def cut(length: int) -> str:
        return json.dumps(base)[:length]

    return st.one_of(
        st.sampled_from(keys).map(dropped),
        st.tuples(st.sampled_from(keys), json_values).map(replaced),
        st.tuples(st.text(max_size=8), json_values).map(added),
        st.integers(min_value=0, max_value=len(json.dumps(base))).map(cut),
    )


frames = st.one_of(
    st.sampled_from(sorted(VALID)).flatmap(_mutations),
    json_values.map(json.dumps),
    st.text(max_size=120),
    st.binary(max_size=64),
)


def expected_error(frame: str | bytes) -> bool:
    """Whether the protocol refuses the frame (the oracle is the edge parser, plus what a
    joined session refuses: a second join, and the media stand-in's bad offer)."""
    if isinstance(frame, bytes):
        return True
    try:
        message = parse_message(frame)
    except ProtocolError:
        return True
    return isinstance(message, Join) or (isinstance(message, Publish) and message.sdp == "bad")


def is_ping(frame: str | bytes) -> bool:
    try:
        return isinstance(frame, str) and isinstance(parse_message(frame), Ping)
    except ProtocolError:
        return False


async def until_pong(ws: aiohttp.ClientWebSocketResponse, pongs: int = 1) -> list[JSON]:
    """Everything the server sent up to its ``pongs``-th pong (pings in the batch are
    answered too; ours is the last)."""
    seen: list[JSON] = []
    async with asyncio.timeout(10):
        while pongs:
            msg = await ws.receive()
            assert msg.type == aiohttp.WSMsgType.TEXT, msg
            data: JSON = json.loads(msg.data)
            if data.get("type") == "pong":
                pongs -= 1
            else:
                seen.append(data)
    return seen


async def joined(client: TestClient[Any, Any], path: str, name: str) -> Any:
    ws = await client.ws_connect(path)
    await ws.send_json({"type": "join", "version": 1, "auth": {"kind": "link", "token": name}})
    async with asyncio.timeout(5):
        reply = json.loads((await ws.receive()).data)
    assert reply["type"] == "joined", reply
    return ws


async def scenario(batch: list[str | bytes]) -> None:
    async with in_process_site() as site:
        meeting, _ = await site.meetings.start("!room", "Fuzz", "@alice:x")
        path = f"/meet/{meeting.id}/ws"
        bob = await joined(site.client, path, "bob")
        mallory = await joined(site.client, path, "mallory")
        for frame in batch:
            if isinstance(frame, bytes):
                await mallory.send_bytes(frame)
            else:
                await mallory.send_str(frame)
        await mallory.send_json({"type": "ping"})
        answers = await until_pong(mallory, 1 + sum(is_ping(frame) for frame in batch))
        errors = [a for a in answers if a.get("type") == "error"]
        assert [e for e in errors if e["code"] == "internal"] == []
        assert all(isinstance(e.get("message"), str) and e["message"] for e in errors)
        assert len(errors) == sum(expected_error(frame) for frame in batch)
        # The meeting goes on: bob is still in and answered; both are still present.
        await bob.send_json({"type": "ping"})
        await until_pong(bob)
        assert sorted(p.user_id for p in meeting.participants.values()) == [
            "@bob:x",
            "@mallory:x",
        ]
        await mallory.close()
        await bob.close()


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(batch=st.lists(frames, min_size=1, max_size=12))
def test_mutated_messages_get_error_frames_and_disturb_nobody(batch: list[str | bytes]) -> None:
    asyncio.run(scenario(batch))
