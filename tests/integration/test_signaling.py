"""Joining meetings over the signaling WebSocket: sign-in, media, bad input, leaving."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from bridge.meeting.meeting import Meeting
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
    server, media_id = mxc.removeprefix("mxc://").split("/")
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{meet.base_url}/avatar/{server}/{media_id}") as response:
            assert response.status == 200
            assert response.content_type in ("image/png", "image/jpeg")
            assert (await response.read())[:4] in (
                b"\x89PNG",
                b"\xff\xd8\xff\xe0",
                b"\xff\xd8\xff\xe1",
            )
        for path in (
            f"/avatar/elsewhere.test/{media_id}",  # not a server whose users may join
            f"/avatar/{server}/no-such-media",
            f"/avatar/{server}/..%2Fetc",
        ):
            async with http.get(meet.base_url + path) as response:
                assert response.status == 404, path


async def test_a_restarting_bridge_tells_participants_to_reconnect(meet: Meet) -> None:
    alice, _ = await meet.joined("alice")
    await meet.stack.stop_bridge()
    notice = await alice.expect("error")
    assert notice["code"] == "reconnect" and "restarting" in notice["message"]
    await meet.stack.start_bridge()
    # The meeting and the link secret survived the restart: a link joins again.
    _, joined = await meet.joined("alice")
    assert joined["meeting"]["meeting_id"] == meet.meeting.id
