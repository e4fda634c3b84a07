"""Two agencies, two homeservers federating over TLS on loopback, two bridges in one
process: a user of agency B joins agency A's meeting directly, signed in with an OpenID
token from B's homeserver that A's bridge checks at B over federation."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.harness.synapse import LocalCA, LocalSynapse, free_ports, member_event
from tests.integration.conftest import (
    Stack,
    eventually,
    generate_registration,
    write_bridge_config,
)
from tests.integration.signaling_client import SignalingClient


@dataclass
class Agencies:
    a: Stack
    b: Stack


@pytest.fixture
async def agencies(tmp_path: Path) -> AsyncIterator[Agencies]:
    ca = LocalCA.create(tmp_path / "ca")
    hs_a, fed_a, as_a, web_a, hs_b, fed_b, as_b, web_b = free_ports(8)
    name_a, name_b = f"127.0.0.1:{fed_a}", f"127.0.0.1:{fed_b}"
    stacks = []
    for label, hs, fed, as_port, web, own, other in (
        ("a", hs_a, fed_a, as_a, web_a, name_a, name_b),
        ("b", hs_b, fed_b, as_b, web_b, name_b, name_a),
    ):
        directory = tmp_path / label
        directory.mkdir()
        config_path = write_bridge_config(
            directory,
            hs,
            as_port,
            web,
            f"sqlite:{directory}/bridge.db",
            server_name=own,
            overrides={
                "federation.allowed_servers": [other],
                "federation.server_urls": {
                    other: f"https://127.0.0.1:{fed_b if label == 'a' else fed_a}"
                },
                "federation.ca_file": str(ca.cert_path),
                "bridge.permissions": {"*": "none", own: "user", other: "user"},
            },
        )
        homeserver = LocalSynapse.federating(
            directory / "synapse",
            hs,
            fed,
            ca,
            appservice_registrations=[generate_registration(config_path)],
            federation_whitelist=[name_a, name_b],
        )
        stacks.append(Stack(directory, homeserver, config_path))
    await asyncio.gather(*(stack.homeserver.start() for stack in stacks))
    try:
        for stack in stacks:
            await stack.start_bridge()
        yield Agencies(*stacks)
    finally:
        for stack in stacks:
            for client in stack.users:
                await client.close()
            await stack.stop_bridge()
        await asyncio.gather(*(stack.homeserver.stop() for stack in stacks))


async def test_user_of_another_agency_joins_directly_with_openid_over_federation(
    agencies: Agencies,
) -> None:
    a, b = agencies.a, agencies.b
    assert a.bridge is not None and b.bridge is not None
    alice = await a.user("alice")
    bob = await b.user("bob")
    room_id = await a.room_with_bot(alice)
    await alice.invite(room_id, bob.user_id)
    await bob.wait_for_invite(lambda invited, _state: invited == room_id)
    await bob.join(room_id, via=[a.homeserver.server_name])
    await alice.wait_for_event(room_id, member_event(bob.user_id, membership="join"))
    await alice.send_text(room_id, "!visio start Inter-agency")
    await alice.wait_for_message(room_id, lambda e: "started" in e["content"].get("body", ""))
    meeting = a.bridge.meetings.live_in_room(room_id)
    assert meeting is not None
    # The meeting is agency A's; agency B's bridge, running in the same process, has
    # its own state and knows nothing of it.
    assert b.bridge.meetings.live(meeting.id) is None

    base = str(a.config["web.public_url"])
    a_client, b_client = SignalingClient(base, meeting.id), SignalingClient(base, meeting.id)
    try:
        a_token = await alice.request_openid_token()
        joined_a = await a_client.join(
            {
                "kind": "openid",
                "server": a_token["matrix_server_name"],
                "token": a_token["access_token"],
            }
        )
        assert joined_a["type"] == "joined", joined_a
        b_token = await bob.request_openid_token()
        assert b_token["matrix_server_name"] == b.homeserver.server_name
        joined_b = await b_client.join(
            {
                "kind": "openid",
                "server": b_token["matrix_server_name"],
                "token": b_token["access_token"],
            }
        )
        assert joined_b["type"] == "joined", joined_b
        assert joined_b["user_id"] == bob.user_id and joined_b["role"] == "participant"
        assert [p["user_id"] for p in joined_b["participants"]] == [alice.user_id]

        await a_client.publish()
        await b_client.publish()
        a_id, b_id = joined_a["participant_id"], joined_b["participant_id"]

        async def both_receive() -> bool:
            return (
                len(b_client.frames_from(a_id, "camera")) >= 10
                and bool(b_client.frames_from(a_id, "microphone"))
                and len(a_client.frames_from(b_id, "camera")) >= 10
                and bool(a_client.frames_from(b_id, "microphone"))
            )

        await eventually(both_receive, within=20)
        assert a_client.camera is not None and b_client.camera is not None
        assert all(
            f.data in set(a_client.camera.sent) for f in b_client.frames_from(a_id, "camera")
        )
        assert all(
            f.data in set(b_client.camera.sent) for f in a_client.frames_from(b_id, "camera")
        )

        # A forged token naming B's server is refused by B itself, through A's bridge.
        forged = SignalingClient(base, meeting.id)
        try:
            reply = await forged.join(
                {"kind": "openid", "server": b.homeserver.server_name, "token": "forged"}
            )
        finally:
            await forged.close()
        assert (reply["type"], reply["code"]) == ("error", "unauthorized")
        assert "not accepted by your homeserver" in reply["message"]  # B answered, and said no

        # The room's state event, as B's user sees it over federation, counts both.
        state = await bob.wait_for_state(
            room_id,
            "io.visiobridge.meeting",
            predicate=lambda c: bool(c) and c.get("participant_count") == 2,
        )
        assert state is not None and state["host"] == a.bot
    finally:
        await a_client.close()
        await b_client.close()
