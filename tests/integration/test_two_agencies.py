"""Two agencies, two homeservers federating over TLS on loopback, two bridges in one
process: a user of agency B joins agency A's meeting directly, signed in with an OpenID
token from B's homeserver that A's bridge checks at B over federation."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from playwright.async_api import Browser, Frame, Page

from tests.harness.synapse import (
    JSON,
    LocalCA,
    LocalSynapse,
    MatrixUser,
    free_ports,
    member_event,
)
from tests.integration.browser import (
    FakeElement,
    browser,  # noqa: F401 - fixture
    fake_element,  # noqa: F401 - fixture
    join_from_prejoin,
    new_participant,
    wait_for_remote_media,
)
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
                "federation.peer_bridges": [f"@visio:{other}"],
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


async def openid_credential(user: MatrixUser) -> dict[str, str]:
    token = await user.request_openid_token()
    return {
        "kind": "openid",
        "server": token["matrix_server_name"],
        "token": token["access_token"],
    }


async def shared_room(a: Stack, b: Stack, alice: MatrixUser, bob: MatrixUser) -> str:
    """A room of agency A with both agencies' bots and one person of each."""
    room_id = await a.room_with_bot(alice)
    for invitee in (bob.user_id, b.bot):
        await alice.invite(room_id, invitee)
    await bob.wait_for_invite(lambda invited, _state: invited == room_id)
    await bob.join(room_id, via=[a.homeserver.server_name])
    for member in (bob.user_id, b.bot):
        await alice.wait_for_event(room_id, member_event(member, membership="join"))
    return room_id


async def test_each_agency_serves_its_own_people_and_one_trunk_links_the_bridges(
    agencies: Agencies,
) -> None:
    a, b = agencies.a, agencies.b
    assert a.bridge is not None and b.bridge is not None
    alice = await a.user("alice")
    bob = await b.user("bob")
    room_id = await shared_room(a, b, alice, bob)
    await alice.send_text(room_id, "!visio start Inter-agency")
    await alice.wait_for_message(room_id, lambda e: "started" in e["content"].get("body", ""))
    meeting_a = a.bridge.meetings.live_in_room(room_id)
    assert meeting_a is not None

    # B's bridge keeps its side of A's meeting, under the same id, from A's state event.
    async def b_has_its_side() -> bool:
        return b.bridge is not None and b.bridge.meetings.live(meeting_a.id) is not None

    await eventually(b_has_its_side)
    meeting_b = b.bridge.meetings.live(meeting_a.id)
    assert meeting_b is not None and meeting_b.host == a.bot

    # Each person joins on their own agency's bridge.
    a_client = SignalingClient(str(a.config["web.public_url"]), meeting_a.id)
    b_client = SignalingClient(str(b.config["web.public_url"]), meeting_a.id)
    try:
        joined_a = await a_client.join(await openid_credential(alice))
        assert joined_a["type"] == "joined", joined_a
        joined_b = await b_client.join(await openid_credential(bob))
        assert joined_b["type"] == "joined", joined_b
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

        await eventually(both_receive, within=30)
        assert a_client.camera is not None and b_client.camera is not None
        assert all(
            f.data in set(a_client.camera.sent) for f in b_client.frames_from(a_id, "camera")
        )
        assert all(
            f.data in set(b_client.camera.sent) for f in a_client.frames_from(b_id, "camera")
        )

        # One meeting with both in it, on both bridges; each person's media is served by
        # their own bridge only, and exactly one connection links the two bridges.
        assert {p.user_id for p in meeting_a.participants.values()} == {
            alice.user_id,
            bob.user_id,
        }
        assert {p.user_id for p in meeting_b.participants.values()} == {
            alice.user_id,
            bob.user_id,
        }
        assert meeting_a.participants[b_id].via is not None
        assert meeting_b.participants[a_id].via is not None
        for bridge in (a.bridge, b.bridge):
            live = bridge.meetings.media_of(meeting_a.id)
            assert live is not None and live.router is not None
            stats = live.router.stats()
            # The own person's two connections, plus the trunk.
            assert (stats.trunks, stats.peer_connections) == (1, 3), stats
        assert len(a.bridge.trunks.links) == len(b.bridge.trunks.links) == 1

        # The room's state event, kept by the host, counts both.
        state = await bob.wait_for_state(
            room_id,
            "io.visiobridge.meeting",
            predicate=lambda c: bool(c) and c.get("participant_count") == 2,
        )
        assert state is not None and state["host"] == a.bot

        # The host's moderator ends it: it ends on both bridges, for both people.
        await alice.send_text(room_id, "!visio end")
        ended = await alice.wait_for_message(
            room_id, lambda e: "ended after" in e["content"].get("body", "")
        )
        assert bob.user_id in ended["content"]["body"]

        for client in (a_client, b_client):
            await client.expect("meeting_ended")
        assert not meeting_b.is_live
        assert a.bridge.trunks.links == () and b.bridge.trunks.links == ()
    finally:
        await a_client.close()
        await b_client.close()


async def widget_frame(
    host: FakeElement, page: Page, user: MatrixUser, widget: JSON, room_id: str
) -> Frame:
    """Open the room's widget in the fake Element, signed in as ``user``."""
    return await host.open_widget(
        page,
        widget["url"],
        user_id=user.user_id,
        room_id=room_id,
        widget_id=f"visio_{widget['data']['meeting_id']}",
        display_name=user.user_id.split(":")[0][1:].title(),
        openid=await user.request_openid_token(),
    )


async def test_in_element_each_person_meets_on_their_own_agencys_bridge(
    agencies: Agencies,
    browser: Browser,  # noqa: F811
    fake_element: FakeElement,  # noqa: F811
) -> None:
    a, b = agencies.a, agencies.b
    assert a.bridge is not None and b.bridge is not None
    alice_user = await a.user("alice")
    bob_user = await b.user("bob")
    room_id = await shared_room(a, b, alice_user, bob_user)
    await alice_user.send_text(room_id, "!visio start Inter-agency")
    await alice_user.wait_for_message(room_id, lambda e: "started" in e["content"].get("body", ""))
    meeting = a.bridge.meetings.live_in_room(room_id)
    assert meeting is not None
    widget = await bob_user.wait_for_state(
        room_id, "im.vector.modular.widgets", state_key=f"visio_{meeting.id}"
    )
    assert widget is not None and widget["url"].startswith(str(a.config["web.public_url"]))

    # A knows where B serves its people (B's bot said so in the room), and B keeps its
    # side of the meeting.
    async def ready() -> bool:
        assert a.bridge is not None and b.bridge is not None
        door = await a.bridge.federation.peer_door(room_id, b.homeserver.server_name)
        return door is not None and b.bridge.meetings.live(meeting.id) is not None

    await eventually(ready)

    # Both open the same widget, A's, in Element. Alice stays on A; Bob's page is handed
    # over to B's bridge, which serves him.
    alice = await new_participant(browser)
    bob = await new_participant(browser)
    try:
        alice_frame = await widget_frame(fake_element, alice.page, alice_user, widget, room_id)
        await join_from_prejoin(alice_frame)
        bob_widget = await widget_frame(fake_element, bob.page, bob_user, widget, room_id)
        b_url = str(b.config["web.public_url"])
        await bob_widget.wait_for_function("() => window.visio.handedOverTo !== null")
        handed = await bob_widget.evaluate("() => window.visio.handedOverTo")
        assert handed.startswith(f"{b_url}/meet/{meeting.id}?")

        async def b_page_loaded() -> bool:
            return any(f.url.startswith(b_url) for f in bob_widget.child_frames)

        await eventually(b_page_loaded)
        bob_frame = next(f for f in bob_widget.child_frames if f.url.startswith(b_url))
        await bob_frame.wait_for_function("() => window.visio !== undefined")
        # The token left the address bar at once: it was only ever in the fragment.
        assert "openid" not in bob_frame.url
        await join_from_prejoin(bob_frame)
        assert await bob_frame.evaluate("() => window.visio.self.user_id") == bob_user.user_id

        alice_id = str(await alice_frame.evaluate("() => window.visio.self.participant_id"))
        bob_id = str(await bob_frame.evaluate("() => window.visio.self.participant_id"))
        await wait_for_remote_media(alice_frame, [bob_id], within=30)
        await wait_for_remote_media(bob_frame, [alice_id], within=30)

        # Each bridge serves only its own agency's person; one trunk links them.
        for bridge, own, other in ((a.bridge, alice_id, bob_id), (b.bridge, bob_id, alice_id)):
            live_meeting = bridge.meetings.live(meeting.id)
            assert live_meeting is not None
            assert live_meeting.participants[own].via is None
            assert live_meeting.participants[other].via is not None
            live = bridge.meetings.media_of(meeting.id)
            assert live is not None and live.router is not None
            stats = live.router.stats()
            assert (stats.trunks, stats.peer_connections) == (1, 3), stats
        assert not alice.csp_violations() and not bob.csp_violations()
    finally:
        await alice.close()
        await bob.close()
