"""The appservice listener: token rules and transactions handled once, across restarts."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer
from mautrix.appservice.state_store.asyncpg import PgASStateStore
from mautrix.util.async_db import Database

from bridge.clock import ManualClock
from bridge.db import InboxEntry, Storage, upgrade_table
from bridge.matrix.appservice import BridgeAppService

HS_TOKEN = "hs-secret-token"


def message(event_id: str, body: str = "hi") -> dict[str, Any]:
    return {
        "type": "m.room.message",
        "event_id": event_id,
        "room_id": "!room:agency.test",
        "sender": "@alice:agency.test",
        "origin_server_ts": 1,
        "content": {"msgtype": "m.text", "body": body},
    }


Factory = Callable[[], Any]


@pytest.fixture
async def make_client(database_url: str) -> AsyncIterator[Callable[[], Any]]:
    """Builds a fresh appservice over the same database: each call is a 'restart'."""
    db = Database.create(database_url, upgrade_table=upgrade_table)
    await db.start()
    clients: list[TestClient] = []
    received: list[str] = []

    async def factory() -> TestClient:
        az = BridgeAppService(
            server="http://127.0.0.1:1",
            domain="agency.test",
            as_token="as",
            hs_token=HS_TOKEN,
            bot_localpart="visio",
            id="visio",
            state_store=PgASStateStore(db),
        )
        az.synchronous_handlers = True
        az.attach_storage(Storage(db).inbox, ManualClock())

        def record(entry: InboxEntry) -> None:
            received.append(entry.event["event_id"])

        az.on_event = record
        client = TestClient(TestServer(az.app))
        await client.start_server()
        client.received = received  # type: ignore[attr-defined]
        clients.append(client)
        return client

    yield factory
    for client in clients:
        await client.close()
    await db.stop()


async def put(client: TestClient, txn: str, events: list[Any], **kwargs: Any) -> Any:
    return await client.put(
        f"/_matrix/app/v1/transactions/{txn}", json={"events": events}, **kwargs
    )


BEARER = {"Authorization": f"Bearer {HS_TOKEN}"}


async def test_valid_transaction_is_handled_once_even_after_restart(make_client: Any) -> None:
    client = await make_client()
    response = await put(client, "7", [message("$a"), message("$b")], headers=BEARER)
    assert response.status == 200 and await response.json() == {}
    assert client.received == ["$a", "$b"]
    again = await put(client, "7", [message("$a"), message("$b")], headers=BEARER)
    assert again.status == 200
    assert client.received == ["$a", "$b"]
    restarted = await make_client()
    replay = await put(restarted, "7", [message("$a"), message("$b")], headers=BEARER)
    assert replay.status == 200
    assert restarted.received == ["$a", "$b"]


async def test_reused_txn_id_with_new_events_is_a_new_transaction(make_client: Any) -> None:
    client = await make_client()
    await put(client, "1", [message("$old")], headers=BEARER)
    await put(client, "1", [message("$new")], headers=BEARER)
    assert client.received == ["$old", "$new"]


@pytest.mark.parametrize(
    ("headers", "query"),
    [
        ({}, ""),
        ({"Authorization": "Bearer wrong"}, ""),
        ({"Authorization": HS_TOKEN}, ""),
        ({}, "?access_token=wrong"),
        (BEARER, "?access_token=wrong"),
        ({"Authorization": "Bearer wrong"}, f"?access_token={HS_TOKEN}"),
    ],
)
async def test_wrong_token_is_forbidden_and_has_no_effect(
    make_client: Any, headers: dict[str, str], query: str
) -> None:
    client = await make_client()
    response = await client.put(
        f"/_matrix/app/v1/transactions/9{query}", json={"events": [message("$x")]}, headers=headers
    )
    assert response.status == 403
    assert (await response.json())["errcode"] == "M_FORBIDDEN"
    assert client.received == []
    # Nothing was recorded either: the real delivery still goes through.
    ok = await put(client, "9", [message("$x")], headers=BEARER)
    assert ok.status == 200 and client.received == ["$x"]


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/_matrix/app/v1/users/@visio_x:agency.test"),
        ("GET", "/_matrix/app/v1/rooms/%23alias:agency.test"),
        ("POST", "/_matrix/app/v1/ping"),
    ],
)
async def test_other_endpoints_also_forbid_a_wrong_token(
    make_client: Any, method: str, path: str
) -> None:
    client = await make_client()
    response = await client.request(
        method, path, json={}, headers={"Authorization": "Bearer wrong"}
    )
    assert response.status == 403
    assert (await response.json())["errcode"] == "M_FORBIDDEN"
    ok = await client.request(method, path, json={}, headers=BEARER)
    assert ok.status in (200, 404)


async def test_legacy_query_token_alone_is_accepted(make_client: Any) -> None:
    client = await make_client()
    response = await client.put(
        f"/_matrix/app/v1/transactions/3?access_token={HS_TOKEN}", json={"events": [message("$q")]}
    )
    assert response.status == 200 and client.received == ["$q"]


async def test_malformed_bodies_get_clear_errors(make_client: Any) -> None:
    client = await make_client()
    response = await client.put(
        "/_matrix/app/v1/transactions/4", data=b"{not json", headers=BEARER
    )
    assert response.status == 400 and (await response.json())["errcode"] == "M_NOT_JSON"
    response = await client.put(
        "/_matrix/app/v1/transactions/4", json={"events": "nope"}, headers=BEARER
    )
    assert response.status == 400 and (await response.json())["errcode"] == "M_BAD_JSON"
    # A malformed event inside a good transaction is dropped; the others still run.
    response = await put(client, "5", [{"type": 5}, message("$fine")], headers=BEARER)
    assert response.status == 200 and client.received == ["$fine"]


async def test_a_transaction_of_many_large_events_is_taken(make_client: Any) -> None:
    # 100 events of 20 KiB each: mautrix's default 1 MiB body limit refused this with
    # 413, and Synapse would then retry it forever, deaf to everything after it.
    client = await make_client()
    events = [message(f"$big{i}", "x" * 20_000) for i in range(100)]
    response = await put(client, "big", events, headers=BEARER)
    assert response.status == 200
    assert client.received == [f"$big{i}" for i in range(100)]


async def test_events_are_stored_before_the_answer_until_handled(database_url: str) -> None:
    db = Database.create(database_url, upgrade_table=upgrade_table)
    await db.start()
    try:
        inbox = Storage(db).inbox
        stored = await inbox.receive("1", "d1", 10, [("!r", message("$a")), ("!s", message("$b"))])
        assert stored is not None and [e.event["event_id"] for e in stored] == ["$a", "$b"]
        assert await inbox.receive("1", "d1", 11, [("!r", message("$a"))]) is None  # a retry
        more = await inbox.receive("2", "d2", 12, [("!r", message("$c"))])
        assert more is not None and more[0].seq > stored[1].seq
        # A crash now: the next run finds everything, in order, and handles it.
        after_restart = Storage(db).inbox
        pending = await after_restart.pending()
        assert [e.event["event_id"] for e in pending] == ["$a", "$b", "$c"]
        for entry in pending[:2]:
            await after_restart.done(entry.seq)
        assert [e.event["event_id"] for e in await after_restart.pending()] == ["$c"]
        # New events after a restart come after the pending one.
        newer = await after_restart.receive("3", "d3", 13, [("!r", message("$d"))])
        assert newer is not None and newer[0].seq > pending[2].seq
    finally:
        await db.stop()
