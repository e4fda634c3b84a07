"""Two agencies, two homeservers federating over TLS on loopback, two bridges in one
process: a user of agency B joins agency A's meeting directly, signed in with an OpenID
token from B's homeserver that A's bridge checks at B over federation."""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
from mautrix.types import RoomID
from playwright.async_api import Browser, Frame, Page

from bridge.config import load_config
from bridge.livekit.messages import track_sid
from bridge.meeting.meeting import Meeting
from tests.harness.livekit_client import LiveKitClient
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
    wait_for_state,
)
from tests.integration.conftest import (
    Stack,
    eventually,
    generate_registration,
    terminate,
    write_bridge_config,
)
from tests.integration.signaling_client import SignalingClient
from tests.integration.test_crash import ready_count, start_bridge
from tests.integration.test_livekit_rtc import livekit_token, sent_and_received


@dataclass
class Agencies:
    a: Stack
    b: Stack
    c: Stack | None = None


@asynccontextmanager
async def federating_agencies(
    root: Path, count: int, outside: Sequence[int] = ()
) -> AsyncIterator[list[Stack]]:
    """``count`` agencies, each a Synapse and a bridge, federating over TLS on loopback;
    every bridge trusts the others' bots for trunks and lets their users in. The bridges
    of the agencies numbered in ``outside`` are not started: the test runs them."""
    ca = LocalCA.create(root / "ca")
    ports = free_ports(4 * count)
    fed_ports = [ports[4 * i + 1] for i in range(count)]
    names = [f"127.0.0.1:{port}" for port in fed_ports]
    stacks = []
    for i in range(count):
        hs, fed, as_port, web = ports[4 * i : 4 * i + 4]
        own = names[i]
        others = [name for name in names if name != own]
        directory = root / "abcdefgh"[i]
        directory.mkdir()
        config_path = write_bridge_config(
            directory,
            hs,
            as_port,
            web,
            f"sqlite:{directory}/bridge.db",
            server_name=own,
            overrides={
                "federation.allowed_servers": others,
                "federation.server_urls": {
                    other: f"https://127.0.0.1:{fed_ports[names.index(other)]}" for other in others
                },
                "federation.ca_file": str(ca.cert_path),
                "federation.peer_bridges": [f"@visio:{other}" for other in others],
                "matrix_rtc.enabled": True,
                "bridge.permissions": {"*": "none", **{name: "user" for name in names}},
            },
        )
        homeserver = LocalSynapse.federating(
            directory / "synapse",
            hs,
            fed,
            ca,
            appservice_registrations=[generate_registration(config_path)],
            federation_whitelist=names,
        )
        stacks.append(Stack(directory, homeserver, config_path))
    await asyncio.gather(*(stack.homeserver.start() for stack in stacks))
    try:
        for i, stack in enumerate(stacks):
            if i not in outside:
                await stack.start_bridge()
        yield stacks
    finally:
        for stack in stacks:
            for client in stack.users:
                await client.close()
            await stack.stop_bridge()
        await asyncio.gather(*(stack.homeserver.stop() for stack in stacks))


@pytest.fixture
async def agencies(tmp_path: Path) -> AsyncIterator[Agencies]:
    async with federating_agencies(tmp_path, 2) as stacks:
        yield Agencies(*stacks)


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

        await receives(b_client, a_client)
        await receives(a_client, b_client)

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


async def receives(client: SignalingClient, sender: SignalingClient, count: int = 10) -> None:
    """``client`` gets ``sender``'s camera and microphone, the camera byte for byte.

    Only the last ``count`` frames are compared: when an m-line is reused for another
    track, the jitter buffer lets the previous track's last frame out with the first
    packet of the next, and the test client files it under the new owner."""
    sender_id = sender.participant_id
    assert sender.camera is not None
    camera = sender.camera

    async def enough() -> bool:
        frames = client.frames_from(sender_id, "camera")
        return (
            len(frames) >= count
            and len(client.frames_from(sender_id, "microphone")) >= count
            and all(f.data in set(camera.sent) for f in frames[-count:])
        )

    await eventually(enough, within=30)


async def shared_room(
    a: Stack, alice: MatrixUser, guests: Sequence[tuple[MatrixUser, str]]
) -> str:
    """A room of agency A with its bot and, for each other agency, one person and its
    bridge's bot (``guests``: (person, bot) pairs)."""
    room_id = await a.room_with_bot(alice)
    members = [member for person, bot in guests for member in (person.user_id, bot)]
    for invitee in members:
        await alice.invite(room_id, invitee)
    for person, _bot in guests:
        await person.wait_for_invite(lambda invited, _state: invited == room_id)
        await person.join(room_id, via=[a.homeserver.server_name])
    for member in members:
        await alice.wait_for_event(room_id, member_event(member, membership="join"))
    return room_id


async def start_meeting(
    a: Stack, alice: MatrixUser, room_id: str, title: str = "Inter-agency"
) -> tuple[Meeting, JSON]:
    """Alice starts the room's meeting on A's bridge; returns it and its widget."""
    assert a.bridge is not None
    await alice.send_text(room_id, f"!visio start {title}")
    await alice.wait_for_message(room_id, lambda e: "started" in e["content"].get("body", ""))
    meeting = a.bridge.meetings.live_in_room(room_id)
    assert meeting is not None
    widget = await alice.wait_for_state(
        room_id, "im.vector.modular.widgets", state_key=f"visio_{meeting.id}"
    )
    assert widget is not None
    return meeting, widget


async def served_by(a: Stack, room_id: str, meeting: Meeting, satellites: Sequence[Stack]) -> None:
    """Wait until A knows where each satellite serves its people, and each satellite
    running in this process keeps its side of the meeting."""

    async def ready() -> bool:
        assert a.bridge is not None
        for satellite in satellites:
            server = satellite.homeserver.server_name
            if await a.bridge.federation.peer_door(room_id, server) is None:
                return False
            bridge = satellite.bridge
            if bridge is not None and bridge.meetings.live(meeting.id) is None:
                return False
        return True

    await eventually(ready)


@dataclass
class SharedMeeting:
    """A meeting of agency A in a room with a person and the bridge of each agency."""

    room_id: str
    meeting: Meeting
    alice: MatrixUser
    bob: MatrixUser


async def shared_meeting(a: Stack, b: Stack) -> SharedMeeting:
    """Alice of A starts a meeting in a room with Bob of B and both bots; returns once B
    keeps its side of it and A knows where B serves its people."""
    alice, bob = await a.user("alice"), await b.user("bob")
    room_id = await shared_room(a, alice, [(bob, b.bot)])
    meeting, _widget = await start_meeting(a, alice, room_id)
    await served_by(a, room_id, meeting, [b])
    return SharedMeeting(room_id, meeting, alice, bob)


async def test_each_agency_serves_its_own_people_and_one_trunk_links_the_bridges(
    agencies: Agencies,
) -> None:
    a, b = agencies.a, agencies.b
    assert a.bridge is not None and b.bridge is not None
    shared = await shared_meeting(a, b)
    room_id, meeting_a, alice, bob = shared.room_id, shared.meeting, shared.alice, shared.bob
    # B's bridge keeps its side of A's meeting, under the same id, from A's state event.
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

        await receives(b_client, a_client)
        await receives(a_client, b_client)

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

        # A trunk offer from anyone but a trusted peer bridge's bot is ignored: Bob is of
        # B's server, but not its bridge.
        forged = {
            "version": 1,
            "host": a.bot,
            "meeting_id": meeting_a.id,
            "trunk_id": "tforged",
            "sdp": "v=0",
        }
        await bob.send_event(room_id, "io.visiobridge.trunk.offer", forged)

        # Each bot answers its own agency's people, who so get their own bridge's links.
        def reply_to(event_id: str, sender: str) -> Callable[[JSON], bool]:
            def matches(event: JSON) -> bool:
                relates = event["content"].get("m.relates_to") or {}
                reply = (relates.get("m.in_reply_to") or {}).get("event_id")
                return event["sender"] == sender and reply == event_id

            return matches

        bob_asks = await bob.send_text(room_id, "!visio status")
        answer = await bob.wait_for_message(room_id, reply_to(bob_asks, b.bot))
        # Both people, as B's side sees them, and B's own link.
        assert "2 in the meeting now" in answer["content"]["body"]
        assert (
            f"Join: {b.config['web.public_url']}/meet/{meeting_a.id}" in answer["content"]["body"]
        )
        alice_asks = await alice.send_text(room_id, "!visio status")
        await alice.wait_for_message(room_id, reply_to(alice_asks, a.bot))
        # A handles the room's events in order: by now it has seen Bob's and kept quiet.
        assert not any(reply_to(bob_asks, a.bot)(e) for e in alice.timeline(room_id))
        assert not any(reply_to(alice_asks, b.bot)(e) for e in alice.timeline(room_id))
        # ... and by then it has also ignored the forged offer: no answer, no trunk.
        assert not any(
            e["type"] == "io.visiobridge.trunk.answer"
            and e["content"].get("trunk_id") == "tforged"
            for e in alice.timeline(room_id)
        )
        assert [link.peer for link in a.bridge.trunks.links] == [b.bot]

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
    # A knows where B serves its people (B's bot said so in the room), and B keeps its
    # side of the meeting.
    shared = await shared_meeting(a, b)
    room_id, meeting = shared.room_id, shared.meeting
    alice_user, bob_user = shared.alice, shared.bob
    widget = await bob_user.wait_for_state(
        room_id, "im.vector.modular.widgets", state_key=f"visio_{meeting.id}"
    )
    assert widget is not None and widget["url"].startswith(str(a.config["web.public_url"]))

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


async def joined_client(stack: Stack, user: MatrixUser, meeting_id: str) -> SignalingClient:
    """``user`` joins on their own agency's bridge and publishes camera and microphone."""
    client = SignalingClient(str(stack.config["web.public_url"]), meeting_id)
    joined = await client.join(await openid_credential(user))
    assert joined["type"] == "joined", joined
    await client.publish()
    return client


async def test_the_trunk_rides_out_a_federation_pause_and_comes_back_after_restarts(
    agencies: Agencies,
) -> None:
    a, b = agencies.a, agencies.b
    assert a.bridge is not None and b.bridge is not None
    shared = await shared_meeting(a, b)
    room_id, meeting = shared.room_id, shared.meeting
    alice_user, bob_user = shared.alice, shared.bob
    clients: list[SignalingClient] = []
    try:
        alice = await joined_client(a, alice_user, meeting.id)
        bob = await joined_client(b, bob_user, meeting.id)
        clients += [alice, bob]
        await receives(alice, bob)
        await receives(bob, alice)

        # Federation stops for 10 s (B's homeserver is frozen): the trunk needs none of
        # it, so media keeps flowing both ways all along.
        pid = b.homeserver.pid
        assert pid is not None
        before = (
            len(alice.frames_from(bob.participant_id, "camera")),
            len(bob.frames_from(alice.participant_id, "camera")),
        )
        os.kill(pid, signal.SIGSTOP)
        try:
            await asyncio.sleep(10)
            during = (
                len(alice.frames_from(bob.participant_id, "camera")),
                len(bob.frames_from(alice.participant_id, "camera")),
            )
        finally:
            os.kill(pid, signal.SIGCONT)
        # 30 frames a second for 10 s, with room for a slow machine.
        assert during[0] - before[0] >= 150 and during[1] - before[1] >= 150, (before, during)

        # B's bridge restarts: its people come back to it, and so does the trunk.
        await b.stop_bridge()
        await bob.expect("error")  # told to reconnect
        assert a.bridge is not None

        async def bob_gone_from_a() -> bool:
            return all(p.user_id != bob_user.user_id for p in meeting.participants.values())

        await eventually(bob_gone_from_a)
        await b.start_bridge()
        bob = await joined_client(b, bob_user, meeting.id)
        clients.append(bob)
        await receives(alice, bob)
        await receives(bob, alice)

        # A's bridge restarts: the meeting is restored there, and B offers again by itself.
        await a.stop_bridge()
        await alice.expect("error")
        await a.start_bridge()
        assert a.bridge is not None
        restored = a.bridge.meetings.live(meeting.id)
        assert restored is not None

        async def trunk_back() -> bool:
            assert a.bridge is not None
            return any(p.user_id == bob_user.user_id for p in restored.participants.values())

        await eventually(trunk_back, within=40)
        alice = await joined_client(a, alice_user, meeting.id)
        clients.append(alice)
        await receives(alice, bob)
        await receives(bob, alice)
        assert len(a.bridge.trunks.links) == 1 and b.bridge is not None
        assert len(b.bridge.trunks.links) == 1

        # The meeting ends while B's bridge is down: B learns it from the room's state
        # when it is back, and ends its side.
        await b.stop_bridge()
        await alice_user.send_text(room_id, "!visio end")
        await alice_user.wait_for_message(
            room_id, lambda e: "ended after" in e["content"].get("body", "")
        )
        await b.start_bridge()

        async def b_side_ended() -> bool:
            assert b.bridge is not None
            return b.bridge.meetings.live(meeting.id) is None

        await eventually(b_side_ended)
    finally:
        for client in clients:
            await client.close()


async def meeting_frame(
    host: FakeElement, page: Page, user: MatrixUser, widget: JSON, room_id: str, own_url: str
) -> Frame:
    """Open the room's widget in the fake Element as ``user``; returns the frame their
    meeting runs in: the widget itself, or their own agency's bridge's page (at
    ``own_url``) in it."""
    frame = await widget_frame(host, page, user, widget, room_id)
    if widget["url"].startswith(own_url):
        return frame

    async def handed_over() -> bool:
        return any(f.url.startswith(own_url) for f in frame.child_frames)

    await eventually(handed_over)
    inner = next(f for f in frame.child_frames if f.url.startswith(own_url))
    await inner.wait_for_function("() => window.visio !== undefined")
    return inner


async def test_two_meetings_started_at_once_on_two_bridges_become_one(
    agencies: Agencies,
) -> None:
    """Alice of A and Bob of B start the room's meeting in the same instant, each on
    their own bridge: the one that started first stays, the other gives way, and the
    two agencies' people meet in it, each on their own bridge."""
    a, b = agencies.a, agencies.b
    assert a.bridge is not None and b.bridge is not None
    alice, bob = await a.user("alice"), await b.user("bob")
    room_id = await shared_room(a, alice, [(bob, b.bot)])
    # Either bridge may show a meeting in the room, so either may be first.
    await alice.set_power_levels(room_id, {b.bot: 100})
    await bob.wait_for_state(
        room_id,
        "m.room.power_levels",
        predicate=lambda c: bool(c) and c.get("users", {}).get(b.bot) == 100,
    )
    await b.bridge.az.intent.get_power_levels(RoomID(room_id), ignore_cache=True)

    async def start(stack: Stack, user: MatrixUser, title: str) -> Meeting:
        assert stack.bridge is not None
        meeting, created = await stack.bridge.meetings.start(room_id, title, user.user_id)
        assert created
        await stack.bridge.meeting_room.publish(meeting)
        return meeting

    # Both started before either bridge heard of the other's.
    ours_a, ours_b = await asyncio.gather(start(a, alice, "A's"), start(b, bob, "B's"))
    assert ours_a.id != ours_b.id
    first, second = sorted([(ours_a, a), (ours_b, b)], key=lambda m: (m[0].started_at, m[1].bot))
    kept, gave_way = first[0], second[0]

    async def one_meeting() -> bool:
        assert a.bridge is not None and b.bridge is not None
        live = [s.bridge.meetings.live_in_room(room_id) for s in (a, b) if s.bridge]
        return all(m is not None and m.id == kept.id for m in live)

    await eventually(one_meeting, within=30)
    assert not gave_way.is_live
    # The room shows the one that stayed; the other's widget is gone, and its bridge
    # says what happened.
    state = await alice.wait_for_state(
        room_id,
        "io.visiobridge.meeting",
        predicate=lambda c: bool(c) and c.get("meeting_id") == kept.id and c["state"] == "live",
    )
    assert state is not None and state["host"] == first[1].bot
    widget = await alice.wait_for_state(
        room_id,
        "im.vector.modular.widgets",
        state_key=f"visio_{gave_way.id}",
        predicate=lambda c: c == {},
    )
    assert widget == {}
    await alice.wait_for_message(
        room_id, lambda e: "at the same moment" in e["content"].get("body", "")
    )

    # And it works as one meeting: each on their own agency's bridge, media both ways.
    clients = []
    try:
        for user, stack in ((alice, a), (bob, b)):
            client = SignalingClient(str(stack.config["web.public_url"]), kept.id)
            clients.append(client)
            joined = await client.join(await openid_credential(user))
            assert joined["type"] == "joined", joined
            await client.publish()
        await receives(clients[0], clients[1])
        await receives(clients[1], clients[0])
    finally:
        for client in clients:
            await client.close()


async def test_three_agencies_meet_in_a_star_around_the_host(
    tmp_path: Path,
    browser: Browser,  # noqa: F811
    fake_element: FakeElement,  # noqa: F811
) -> None:
    async with federating_agencies(tmp_path, 3) as (a, b, c):
        assert a.bridge is not None and b.bridge is not None and c.bridge is not None
        alice_user, bob_user, carol_user = (
            await a.user("alice"),
            await b.user("bob"),
            await c.user("carol"),
        )
        room_id = await shared_room(a, alice_user, [(bob_user, b.bot), (carol_user, c.bot)])
        meeting, widget = await start_meeting(a, alice_user, room_id, "Three agencies")
        await served_by(a, room_id, meeting, [b, c])
        people = []
        try:
            frames = []
            for user, own in ((alice_user, a), (bob_user, b), (carol_user, c)):
                person = await new_participant(browser)
                people.append(person)
                own_url = str(own.config["web.public_url"])
                frame = await meeting_frame(
                    fake_element, person.page, user, widget, room_id, own_url
                )
                await join_from_prejoin(frame)
                frames.append(frame)
            ids = [
                str(await frame.evaluate("() => window.visio.self.participant_id"))
                for frame in frames
            ]
            # Every browser receives every other's video and audio.
            for frame, own_id in zip(frames, ids, strict=True):
                await wait_for_remote_media(frame, [i for i in ids if i != own_id], within=40)
            # A star: the host holds one trunk per satellite; satellites one each, to the
            # host, none between them.
            assert {link.peer for link in a.bridge.trunks.links} == {b.bot, c.bot}
            assert [link.peer for link in b.bridge.trunks.links] == [a.bot]
            assert [link.peer for link in c.bridge.trunks.links] == [a.bot]
            for bridge in (a.bridge, b.bridge, c.bridge):
                live = bridge.meetings.live(meeting.id)
                assert live is not None and len(live.participants) == 3
        finally:
            for person in people:
                await person.close()


async def test_a_killed_satellite_comes_back_with_its_people_and_the_trunk(
    tmp_path: Path,
    browser: Browser,  # noqa: F811
    fake_element: FakeElement,  # noqa: F811
) -> None:
    async with federating_agencies(tmp_path, 2, outside=[1]) as (a, b):
        assert a.bridge is not None
        b_config = load_config(str(b.config_path))
        b_bot, b_url = b_config.bot_mxid, str(b_config["web.public_url"])
        log = b.directory / "bridge.log"
        process = await start_bridge(b.config_path, log)
        people = []
        try:
            await ready_count(log, 1)
            alice_user, bob_user = await a.user("alice"), await b.user("bob")
            room_id = await shared_room(a, alice_user, [(bob_user, b_bot)])
            meeting, widget = await start_meeting(a, alice_user, room_id)
            await served_by(a, room_id, meeting, [b])
            frames = []
            a_url = str(a.config["web.public_url"])
            for user, own_url in ((alice_user, a_url), (bob_user, b_url)):
                person = await new_participant(browser)
                people.append(person)
                frame = await meeting_frame(
                    fake_element, person.page, user, widget, room_id, own_url
                )
                await join_from_prejoin(frame)
                frames.append(frame)
            alice, bob = frames
            alice_id = str(await alice.evaluate("() => window.visio.self.participant_id"))
            bob_id = str(await bob.evaluate("() => window.visio.self.participant_id"))
            await wait_for_remote_media(alice, [bob_id], within=30)
            await wait_for_remote_media(bob, [alice_id], within=30)

            # B's bridge is killed: no goodbye, its trunk just goes quiet.
            process.send_signal(signal.SIGKILL)
            await process.wait()
            await wait_for_state(bob, "reconnecting")
            process = await start_bridge(b.config_path, log)
            await ready_count(log, 2)
            # Bob's page rejoins B by itself; B offers a new trunk, which replaces the
            # dead one at A; Alice sees Bob's video again after a pause.
            await wait_for_state(bob, "joined", within=30)
            new_bob = str(await bob.evaluate("() => window.visio.self.participant_id"))
            await wait_for_remote_media(alice, [new_bob], within=40)
            await wait_for_remote_media(bob, [alice_id], within=40)
            assert bob_id not in meeting.participants
            assert [link.peer for link in a.bridge.trunks.links] == [b_bot]
        finally:
            for person in people:
                await person.close()
            await terminate(process, log)


async def test_element_call_on_one_side_meets_the_web_client_on_the_other(
    agencies: Agencies,
) -> None:
    a, b = agencies.a, agencies.b
    assert a.bridge is not None and b.bridge is not None
    shared = await shared_meeting(a, b)
    room_id, meeting = shared.room_id, shared.meeting
    alice_user, bob_user = shared.alice, shared.bob
    alice = await joined_client(a, alice_user, meeting.id)
    # Bob calls from Element Call, whose MatrixRTC transport is his own agency's bridge.
    token = await livekit_token(b, bob_user, room_id, "BOBPHONE")
    assert token["url"].startswith(str(b.config["web.public_url"]).replace("http", "ws", 1))
    bob = LiveKitClient(token["url"], token["jwt"])
    try:
        await bob.connect()
        await bob.publish()
        assert bob.camera is not None and alice.camera is not None
        bob_camera = bob.camera

        async def alice_sees_bob() -> bool:
            frames = alice.frames_from(bob.sid, "camera")
            return len(frames) >= 10 and all(f.data in set(bob_camera.sent) for f in frames)

        await eventually(alice_sees_bob, within=30)
        alice_camera = alice.camera
        await bob.wait_for(
            lambda: sent_and_received(
                alice_camera, bob.frames_of(track_sid(alice.participant_id, "camera"))
            ),
            30,
        )
        assert alice.participant_id in {p.sid for p in bob.others()}
        # Bob is B's: at A he is behind the trunk, and A's side shows his call's tracks.
        assert meeting.participants[bob.sid].via is not None
    finally:
        await bob.close()
        await alice.close()
