"""Joining meetings over the signaling WebSocket: sign-in, media, bad input, leaving."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from bridge.meeting.meeting import Meeting
from bridge.web.signaling import RATE_BURST, RATE_PER_SECOND
from tests.harness.synapse import member_event
from tests.integration.conftest import Stack, eventually, png_image
from tests.integration.signaling_client import SignalingClient

JSON = dict[str, Any]


class Meet:
    """A live meeting in a room with alice (who started it) and bob, both members."""

    def __init__(self, stack: Stack, meeting: Meeting, room_id: str, users: dict[str, Any]):
        self.stack = stack
        self.meeting = meeting
        self.room_id = room_id
        self.users = users
        self.clients: list[SignalingClient] = []

    @property
    def base_url(self) -> str:
        return str(self.stack.config["web.public_url"])

    def link(self, user_id: str, *, age_s: int = 0) -> str:
        assert self.stack.bridge is not None
        now_s = self.stack.bridge.clock.now_ms() // 1000 - age_s
        return self.stack.bridge.links.make(self.meeting.id, user_id, now_s)

    def client(self) -> SignalingClient:
        client = SignalingClient(self.base_url, self.meeting.id)
        self.clients.append(client)
        return client

    async def joined(self, user: str, name: str | None = None) -> tuple[SignalingClient, JSON]:
        client = self.client()
        auth = {"kind": "link", "token": self.link(self.users[user].user_id)}
        reply = await client.join(auth, display_name=name)
        assert reply["type"] == "joined", reply
        return client, reply


@pytest.fixture
async def meet(stack: Stack) -> AsyncIterator[Meet]:
    alice = await stack.user("alice")
    bob = await stack.user("bob")
    room_id = await stack.room_with_bot(alice)
    await alice.invite(room_id, bob.user_id)
    await bob.join(room_id)
    await alice.send_text(room_id, "!visio start Signaling")
    await alice.wait_for_message(room_id, lambda e: "started" in e["content"].get("body", ""))
    assert stack.bridge is not None
    meeting = stack.bridge.meetings.live_in_room(room_id)
    assert meeting is not None
    result = Meet(stack, meeting, room_id, {"alice": alice, "bob": bob})
    yield result
    for client in result.clients:
        await client.close()


async def test_two_participants_exchange_media_unchanged(meet: Meet) -> None:
    alice, joined_a = await meet.joined("alice")
    assert joined_a["role"] == "moderator" and joined_a["participants"] == []
    assert joined_a["display_name"] == "alice"  # the Matrix display name
    assert joined_a["ice_servers"] == []  # nothing public is suggested
    bob, joined_b = await meet.joined("bob", name="  Bob   from Finance ")
    assert joined_b["role"] == "participant"
    assert [p["user_id"] for p in joined_b["participants"]] == [meet.users["alice"].user_id]
    arrived = await alice.expect("participant_joined")
    assert arrived["participant"]["participant_id"] == joined_b["participant_id"]
    assert arrived["participant"]["display_name"] == "Bob from Finance"
    assert arrived["participant"]["user_id"] == meet.users["bob"].user_id

    await alice.publish()
    await bob.publish()
    a_id, b_id = joined_a["participant_id"], joined_b["participant_id"]

    def has_frames() -> bool:
        return (
            len(bob.frames_from(a_id, "camera")) >= 10
            and bool(bob.frames_from(a_id, "microphone"))
            and bool(alice.frames_from(b_id, "camera"))
        )

    async def frames_arrived() -> bool:
        return has_frames()

    await eventually(frames_arrived, within=20)
    assert alice.camera is not None
    sent = set(alice.camera.sent)
    # What bob received is what alice's encoder made, byte for byte.
    assert all(frame.data in sent for frame in bob.frames_from(a_id, "camera"))

    # The room's state event counts the people in the meeting.
    owner = meet.users["alice"]
    state = await owner.wait_for_state(
        meet.room_id,
        "io.visiobridge.meeting",
        predicate=lambda c: bool(c) and c.get("participant_count") == 2,
    )
    assert state is not None

    await bob.send({"type": "hand", "raised": True})
    updated = await alice.expect("participant_updated")
    assert updated["participant"]["hand_raised"] is True
    await bob.send({"type": "leave"})
    left = await alice.expect("participant_left")
    assert left["participant_id"] == b_id
    await owner.wait_for_state(
        meet.room_id,
        "io.visiobridge.meeting",
        predicate=lambda c: bool(c) and c.get("participant_count") == 1,
    )
    stack = meet.stack
    assert stack.bridge is not None
    rows = await stack.bridge.storage.attendance.for_meeting(meet.meeting.id)
    bob_rows = [r for r in rows if r.user_id == meet.users["bob"].user_id]
    assert len(bob_rows) == 1 and bob_rows[0].left_at is not None


async def test_bad_input_gets_errors_and_the_meeting_goes_on(meet: Meet) -> None:
    alice, joined_a = await meet.joined("alice")
    await alice.publish(microphone=False)
    bob, _ = await meet.joined("bob")

    async def error_for(payload: JSON | str) -> JSON:
        await bob.send(payload)
        return await bob.expect("error")

    assert (await error_for("{not json"))["code"] == "bad_message"
    assert (await error_for("[1, 2]"))["code"] == "bad_message"
    assert (await error_for({"type": "dance"}))["code"] == "bad_message"
    assert (await error_for({"type": "mute", "audio": "yes", "video": 1}))["code"] == (
        "bad_message"
    )
    assert (await error_for({"type": "x", "pad": "a" * 300_000}))["code"] == "too_large"
    garbage = await error_for({"type": "publish", "sdp": "v=garbage", "sources": {}})
    assert garbage["code"] == "bad_sdp" and garbage["in_reply_to"] == "publish"
    assert alice.publish_pc is not None
    real = alice.publish_pc.localDescription.sdp
    no_fingerprint = "\r\n".join(
        line for line in real.split("\r\n") if not line.startswith("a=fingerprint")
    )
    reply = await error_for({"type": "publish", "sdp": no_fingerprint, "sources": {}})
    assert reply["code"] == "bad_sdp"
    media_section = real[real.index("m=video") :]
    huge = real + media_section * 3000
    reply = await error_for({"type": "publish", "sdp": huge[:250_000], "sources": {}})
    assert reply["code"] in ("bad_sdp", "too_large")
    reply = await error_for({"type": "answer", "sdp": "nonsense"})
    assert reply["code"] == "bad_sdp"
    await bob.send({"type": "join", "version": 1, "auth": {"kind": "link", "token": "x"}})
    assert (await bob.expect("error"))["code"] == "bad_message"

    # Bob is still in, and alice's media still reaches him.
    await bob.send({"type": "ping"})
    await bob.expect("pong")
    before = len(bob.frames_from(joined_a["participant_id"], "camera"))

    async def more_frames() -> bool:
        return len(bob.frames_from(joined_a["participant_id"], "camera")) > before + 5

    await eventually(more_frames)

    # Alice joining again from elsewhere replaces her first session, in words.
    await meet.joined("alice")
    replaced = await alice.expect("error")
    assert replaced["code"] == "replaced"


async def test_sign_in_refusals(meet: Meet) -> None:
    stack = meet.stack
    outsider = await stack.user("carol")  # a user of this server, not in the room

    async def refusal(auth: JSON) -> JSON:
        reply = await meet.client().join(auth)
        assert reply["type"] == "error", reply
        return reply

    # Personal links: forged, for another meeting, expired, for a non-member.
    link = meet.link(meet.users["bob"].user_id)
    forged = link[:-4] + ("AAAA" if not link.endswith("AAAA") else "BBBB")
    assert (await refusal({"kind": "link", "token": forged}))["code"] == "unauthorized"
    lifetime = stack.config["web.link_lifetime"]
    expired = meet.link(meet.users["bob"].user_id, age_s=lifetime + 5)
    assert (await refusal({"kind": "link", "token": expired}))["code"] == "link_expired"
    non_member = meet.link(outsider.user_id)
    reply = await refusal({"kind": "link", "token": non_member})
    assert reply["code"] == "unauthorized" and "members" in reply["message"]

    # OpenID: a member's real token gets in; a non-member's, a forged one, and one
    # from a server not on the allowlist do not.
    token = await meet.users["bob"].request_openid_token()
    good = await meet.client().join(
        {"kind": "openid", "server": token["matrix_server_name"], "token": token["access_token"]}
    )
    assert good["type"] == "joined" and good["user_id"] == meet.users["bob"].user_id
    carol_token = await outsider.request_openid_token()
    reply = await refusal(
        {"kind": "openid", "server": "localhost", "token": carol_token["access_token"]}
    )
    assert reply["code"] == "unauthorized"
    reply = await refusal({"kind": "openid", "server": "localhost", "token": "forged-token"})
    assert reply["code"] == "unauthorized"
    reply = await refusal(
        {"kind": "openid", "server": "evil.example", "token": token["access_token"]}
    )
    assert reply["code"] == "server_not_allowed"
    reply = await refusal({"kind": "password", "token": "x"})
    assert reply["code"] == "unauthorized"
    client = meet.client()
    await client.connect()
    await client.send({"type": "join", "version": 99, "auth": {"kind": "link", "token": link}})
    assert (await client.expect("error"))["code"] == "version"


async def test_link_command_sends_a_personal_link_in_a_direct_room(meet: Meet) -> None:
    bob = meet.users["bob"]
    await bob.send_text(meet.room_id, "!visio link")
    await bob.wait_for_message(
        meet.room_id, lambda e: "direct message" in e["content"].get("body", "")
    )
    direct = await bob.wait_for_invite()
    await bob.join(direct)
    message = await bob.wait_for_message(
        direct, lambda e: "#token=" in e["content"].get("body", ""), anywhere=True
    )
    url = message["content"]["body"].split()[-1]
    assert url.startswith(f"{meet.base_url}/meet/{meet.meeting.id}#token=")
    client = meet.client()
    reply = await client.join({"kind": "link", "token": url.split("#token=", 1)[1]})
    assert reply["type"] == "joined" and reply["user_id"] == bob.user_id
    # A second request reuses the same direct room.
    await bob.send_text(meet.room_id, "!visio link")
    await bob.wait_for_message(
        direct,
        lambda e: (
            "#token=" in e["content"].get("body", "") and e["event_id"] != message["event_id"]
        ),
        anywhere=True,
    )


async def test_crash_and_meeting_end_release_everything(meet: Meet) -> None:
    stack = meet.stack
    assert stack.bridge is not None
    bridge = stack.bridge
    alice, _ = await meet.joined("alice")
    await alice.publish()
    bob, joined_b = await meet.joined("bob")
    await bob.publish(camera=False)

    # Bob's program dies: its socket and peers vanish without a goodbye.
    assert bob.ws is not None
    await bob.close()
    left = await alice.expect("participant_left")
    assert left["participant_id"] == joined_b["participant_id"]
    live = bridge.meetings.media_of(meet.meeting.id)
    assert live is not None

    async def router_released_bob() -> bool:
        return live.router.stats().participants == 1

    await eventually(router_released_bob)

    owner = meet.users["alice"]
    await owner.send_text(meet.room_id, "!visio end")
    ended = await alice.expect("meeting_ended")
    assert ended["type"] == "meeting_ended"

    async def all_released() -> bool:
        return bridge.meetings.media_of(meet.meeting.id) is None and not bridge.signaling.sessions

    await eventually(all_released)
    stats = live.router.stats()
    assert (stats.participants, stats.peer_connections, stats.tasks) == (0, 0, 0)
    # A link to the ended meeting now gets a clear refusal.
    reply = await meet.client().join({"kind": "link", "token": meet.link(owner.user_id)})
    assert reply["code"] == "meeting_ended"


async def test_avatars_come_from_matrix_through_the_bridge(meet: Meet) -> None:
    alice = meet.users["alice"]
    mxc = await alice.upload(png_image(), "image/png", "avatar.png")
    await alice.set_avatar_url(mxc)
    # Synapse copies the profile into the room's member event a moment later.
    await alice.wait_for_event(
        meet.room_id,
        member_event(alice.user_id, avatar_url=mxc),
        anywhere=True,
    )
    _, joined = await meet.joined("alice")
    assert joined["avatar_url"] == mxc
    token = joined["media_token"]
    server, media_id = mxc.removeprefix("mxc://").split("/")
    async with aiohttp.ClientSession() as http:
        async with http.get(
            f"{meet.base_url}/avatar/{server}/{media_id}", params={"token": token}
        ) as response:
            assert response.status == 200
            assert response.content_type in ("image/png", "image/jpeg")
            assert (await response.read())[:4] in (
                b"\x89PNG",
                b"\xff\xd8\xff\xe0",
                b"\xff\xd8\xff\xe1",
            )
        for path in (
            f"/avatar/elsewhere.test/{media_id}",  # not a server whose users may join
            f"/avatar/{server}/..%2Fetc",
        ):
            async with http.get(meet.base_url + path, params={"token": token}) as response:
                assert response.status == 404, path
        # Media that is nobody's avatar in this meeting is not for this token.
        async with http.get(
            f"{meet.base_url}/avatar/{server}/no-such-media", params={"token": token}
        ) as response:
            assert response.status == 403


async def test_a_restarting_bridge_tells_participants_to_reconnect(meet: Meet) -> None:
    alice, _ = await meet.joined("alice")
    await meet.stack.stop_bridge()
    notice = await alice.expect("error")
    assert notice["code"] == "reconnect" and "restarting" in notice["message"]
    await meet.stack.start_bridge()
    # The meeting and the link secret survived the restart: a link joins again.
    _, joined = await meet.joined("alice")
    assert joined["meeting"]["meeting_id"] == meet.meeting.id


# Hardening: checks before the upgrade, deadlines, floods, the page's policy, avatars.

UPGRADE = {
    "Connection": "Upgrade",
    "Upgrade": "websocket",
    "Sec-WebSocket-Version": "13",
    "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==",
}


async def refused_upgrade(url: str, origin: str | None = None) -> tuple[int, JSON]:
    """Ask for a WebSocket that the bridge must refuse: the status and its JSON."""
    headers = dict(UPGRADE, **({"Origin": origin} if origin else {}))
    async with aiohttp.ClientSession() as http, http.get(url, headers=headers) as response:
        assert response.status != 101, "the socket was opened"
        body: JSON = await response.json()
        return response.status, body


async def test_sockets_for_unknown_meetings_or_other_origins_are_refused(meet: Meet) -> None:
    ws_base = meet.base_url.replace("http", "ws", 1)
    for meeting_id in ("nosuchmeeting", "Not-An-Id"):
        status, body = await refused_upgrade(f"{ws_base}/meet/{meeting_id}/ws")
        assert status == 404 and body["error"] == "This meeting does not exist."
    url = f"{ws_base}/meet/{meet.meeting.id}/ws"
    for origin in ("https://evil.example", "null"):
        status, body = await refused_upgrade(url, origin)
        assert status == 403 and "may not open" in body["error"], origin
    assert meet.stack.bridge is not None and not meet.stack.bridge.signaling.sessions
    # The page's own origin signs in; so does a program that sends none (the client).
    async with aiohttp.ClientSession() as http:
        ws = await http.ws_connect(url, origin=meet.base_url)
        auth = {"kind": "link", "token": meet.link(meet.users["bob"].user_id)}
        await ws.send_json({"type": "join", "version": 1, "auth": auth})
        assert (await ws.receive_json(timeout=15))["type"] == "joined"
        await ws.close()
    _, joined = await meet.joined("alice")
    assert joined["user_id"] == meet.users["alice"].user_id


@pytest.mark.bridge_config({"web.max_sockets_per_address": 2})
async def test_sockets_from_one_address_are_capped(meet: Meet) -> None:
    assert meet.stack.bridge is not None
    door = meet.stack.bridge.signaling
    first, second = meet.client(), meet.client()
    await first.connect()
    await second.connect()
    ws_url = first.url
    status, body = await refused_upgrade(ws_url)
    assert status == 503 and "busy" in body["error"]

    # A closed socket frees its place, for a participant who then signs in.
    await first.close()

    async def one_left() -> bool:
        return door.open.total == 1

    await eventually(one_left)
    _, joined = await meet.joined("alice")
    assert joined["type"] == "joined"


@pytest.mark.bridge_config({"web.signin_timeout": 1})
async def test_a_socket_that_does_not_sign_in_is_closed(meet: Meet) -> None:
    client = meet.client()
    opened = time.monotonic()
    await client.connect()
    error = await client.expect("error", within=5)
    assert error["code"] == "not_joined"
    await client.expect("_closed", within=5)
    assert time.monotonic() - opened < 5
    assert meet.stack.bridge is not None
    door = meet.stack.bridge.signaling

    async def released() -> bool:
        return not door.sessions and door.open.total == 0

    await eventually(released)


async def test_a_flood_of_bad_frames_is_dropped_unread(meet: Meet) -> None:
    bob, _ = await meet.joined("bob")
    started = time.monotonic()
    flood = 150
    for _ in range(flood):
        await bob.send("{not json")
    # The bucket refills with time: once it has, one more message is let in.
    await asyncio.sleep(2 / RATE_PER_SECOND)
    await bob.send({"type": "ping"})
    await bob.expect("pong")
    elapsed = time.monotonic() - started
    errors = [m for m in bob.seen if m.get("type") == "error"]
    bad = [e for e in errors if e["code"] == "bad_message"]
    too_many = [e for e in errors if e["code"] == "too_many"]
    # What the bucket let in was read and answered; the rest got no answer each...
    assert RATE_BURST <= len(bad) <= RATE_BURST + RATE_PER_SECOND * elapsed + 1
    assert len(bad) + len(too_many) < flood - RATE_BURST
    # ...but one notice a second at most, naming no message (none of them was read).
    assert 1 <= len(too_many) <= 1 + elapsed
    assert all("in_reply_to" not in e for e in too_many)


@pytest.mark.bridge_config({"web.element_origins": ["https://element.agency.example"]})
async def test_the_page_sends_its_content_security_policy(meet: Meet) -> None:
    async with aiohttp.ClientSession() as http:
        for path in (f"/meet/{meet.meeting.id}", "/meet/nosuchmeeting"):
            async with http.get(meet.base_url + path) as response:
                policy = response.headers["Content-Security-Policy"]
            parts = dict(part.strip().split(" ", 1) for part in policy.split(";"))
            assert parts["frame-ancestors"] == "https://element.agency.example", path
            assert parts["script-src"] == "'self'" and parts["style-src"] == "'self'"
            ws_origin = meet.base_url.replace("http", "ws", 1)
            assert parts["connect-src"] == f"'self' {ws_origin}"


async def test_avatars_only_for_participants_while_they_are_in(meet: Meet) -> None:
    alice = meet.users["alice"]
    mxc = await alice.upload(png_image(), "image/png", "avatar.png")
    await alice.set_avatar_url(mxc)
    await alice.wait_for_event(
        meet.room_id, member_event(alice.user_id, avatar_url=mxc), anywhere=True
    )
    alice_client, joined_a = await meet.joined("alice")
    bob_client, joined_b = await meet.joined("bob")
    server, media_id = mxc.removeprefix("mxc://").split("/")
    url = f"{meet.base_url}/avatar/{server}/{media_id}"

    async with aiohttp.ClientSession() as http:

        async def status(token: str | None) -> int:
            params = {"token": token} if token is not None else None
            async with http.get(url, params=params) as response:
                return response.status

        assert await status(None) == 403
        assert await status("forged-" + joined_a["media_token"][7:]) == 403
        assert await status(joined_a["media_token"]) == 200
        assert await status(joined_b["media_token"]) == 200  # bob sees alice's avatar
        assert meet.stack.bridge is not None
        assert len(meet.stack.bridge.avatars.cache) == 1  # fetched from Synapse once

        await alice_client.send({"type": "leave"})
        await bob_client.expect("participant_left")
        assert await status(joined_a["media_token"]) == 403
        # Alice is gone, and so is her avatar from this meeting.
        assert await status(joined_b["media_token"]) == 403
