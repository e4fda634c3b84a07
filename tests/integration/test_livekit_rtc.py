"""The LiveKit door against a real Synapse: LiveKit-protocol clients (livekit-client's
signaling, aiortc media) get tokens with real OpenID tokens, start the room's meeting
by calling, exchange media byte for byte with each other and with a participant of the
bridge's own web protocol, and every bad request is refused the protocol's way."""

from __future__ import annotations

import asyncio
import dataclasses
from typing import Any
from urllib.parse import quote

import aiohttp
import pytest
from livekit.protocol import models, rtc

from bridge.livekit.messages import track_sid
from bridge.livekit.naming import room_name
from bridge.livekit.tokens import AccessTokens
from tests.harness.livekit_client import LiveKitClient
from tests.harness.synapse import MatrixUser
from tests.integration.conftest import Stack, eventually
from tests.integration.signaling_client import SignalingClient

pytestmark = pytest.mark.bridge_config({"matrix_rtc.enabled": True})
JSON = dict[str, Any]


async def livekit_token(stack: Stack, user: MatrixUser, room_id: str, device: str) -> JSON:
    """What Element Call does first: an OpenID token traded at /livekit/get_token."""
    openid = await user.request_openid_token()
    body = {
        "room_id": room_id,
        "slot_id": "m.call#ROOM",
        "openid_token": openid,
        "member": {
            "id": f"m-{device}",
            "claimed_user_id": user.user_id,
            "claimed_device_id": device,
        },
    }
    url = f"{stack.config['web.public_url']}/livekit/get_token"
    async with aiohttp.ClientSession() as http, http.post(url, json=body) as response:
        assert response.status == 200, await response.text()
        result: JSON = await response.json()
        return result


async def room_with(stack: Stack, *names: str) -> tuple[str, list[MatrixUser]]:
    """A room made by the first user, with the bot and the others joined."""
    users = [await stack.user(name) for name in names]
    owner = users[0]
    room_id = await stack.room_with_bot(owner)
    for user in users[1:]:
        await owner.invite(room_id, user.user_id)
        await user.join(room_id)
    return room_id, users


async def caller(stack: Stack, user: MatrixUser, room_id: str) -> LiveKitClient:
    """A LiveKit client for ``user`` in the room's call, with a token as Element Call
    gets one."""
    token = await livekit_token(stack, user, room_id, "DEV")
    return LiveKitClient(token["url"], token["jwt"])


def sent_and_received(sender: Any, frames: list[Any]) -> bool:
    """At least 10 frames arrived, each exactly as the sender's camera encoded it."""
    sent = set(sender.sent)
    return len(frames) >= 10 and all(bytes(f.data) in sent for f in frames[-10:])


async def test_element_call_clients_and_a_web_client_meet(stack: Stack) -> None:
    bridge = stack.bridge
    assert bridge is not None
    alice = await stack.user("alice")
    bob = await stack.user("bob")
    carol = await stack.user("carol")
    room_id = await stack.room_with_bot(alice, name="Budget")
    for user in (bob, carol):
        await alice.invite(room_id, user.user_id)
        await user.join(room_id)

    a_token = await livekit_token(stack, alice, room_id, "ADEVICE")
    b_token = await livekit_token(stack, bob, room_id, "BDEVICE")
    a = LiveKitClient(a_token["url"], a_token["jwt"])
    b = LiveKitClient(b_token["url"], b_token["jwt"])
    web = None
    try:
        # Calling starts the room's meeting, as !visio start would.
        join = await a.connect()
        meeting = bridge.meetings.live_in_room(room_id)
        assert meeting is not None
        assert meeting.started_by == alice.user_id
        await alice.wait_for_message(room_id, lambda e: "started a call" in e["content"]["body"])
        assert (
            join.participant.identity
            == bridge.livekit_tokens.check(a_token["jwt"], bridge.clock.now_ms() // 1000).identity
        )
        assert join.server_info.version and join.participant.permission.can_publish
        assert join.client_configuration.resume_connection == models.ClientConfigSetting.DISABLED

        await b.connect()
        assert [p.sid for p in b.others()] == [a.sid]
        await a.publish()
        await b.publish()

        # Each receives the other's camera, byte for byte, under the sid it was told.
        assert a.camera is not None and b.camera is not None
        await b.wait_for(
            lambda: sent_and_received(a.camera, b.frames_of(track_sid(a.sid, "camera"))), 30
        )
        await a.wait_for(
            lambda: sent_and_received(b.camera, a.frames_of(track_sid(b.sid, "camera"))), 30
        )
        await b.wait_for(lambda: len(b.frames_of(track_sid(a.sid, "microphone"))) > 10)
        # ... and each knows the other's tracks from a participant update.
        await b.wait_for(
            lambda: (
                {t.sid for t in b.participants[a.sid].tracks}
                == {track_sid(a.sid, "camera"), track_sid(a.sid, "microphone")}
            )
        )

        # A client that hides a video (adaptive stream) disables it: it stops coming,
        # and comes back from a keyframe when enabled again.
        a_camera = track_sid(a.sid, "camera")
        await b.send(
            rtc.SignalRequest(
                track_setting=rtc.UpdateTrackSettings(track_sids=[a_camera], disabled=True)
            )
        )
        await eventually(lambda: _steady(lambda: len(b.frames_of(a_camera))), 10)
        stopped_at = len(b.frames_of(a_camera))
        await b.send(
            rtc.SignalRequest(
                track_setting=rtc.UpdateTrackSettings(track_sids=[a_camera], disabled=False)
            )
        )
        await b.wait_for(lambda: len(b.frames_of(a_camera)) > stopped_at + 5)
        # (aiortc's jitter buffer lets a frame out when the next one starts: the last
        # frame from before the pause comes out first, then the keyframe.)
        assert b.frames_of(a_camera)[stopped_at + 1].keyframe
        # Unsubscribing works the same way (here, from her microphone).
        a_mic = track_sid(a.sid, "microphone")
        await b.send(rtc.SignalRequest(subscription=rtc.UpdateSubscription(track_sids=[a_mic])))
        await eventually(lambda: _steady(lambda: len(b.frames_of(a_mic))), 10)
        muted_at = len(b.frames_of(a_mic))
        await b.send(
            rtc.SignalRequest(
                subscription=rtc.UpdateSubscription(track_sids=[a_mic], subscribe=True)
            )
        )
        await b.wait_for(lambda: len(b.frames_of(a_mic)) > muted_at + 5)

        # Carol comes through the bridge's own web protocol, into the same meeting.
        web = SignalingClient(str(bridge.config["web.public_url"]), meeting.id)
        link = bridge.links.make(meeting.id, carol.user_id, bridge.clock.now_ms() // 1000)
        joined = await web.join({"kind": "link", "token": link})
        assert joined["type"] == "joined", joined
        assert {p["participant_id"] for p in joined["participants"]} == {a.sid, b.sid}
        await web.publish()
        assert web.camera is not None
        carol_id = joined["participant_id"]
        await eventually(
            lambda: _true(sent_and_received(a.camera, web.frames_from(a.sid, "camera"))), 30
        )
        await a.wait_for(
            lambda: sent_and_received(web.camera, a.frames_of(track_sid(carol_id, "camera"))), 30
        )
        # Known to LiveKit clients by the identity of the call membership the bridge
        # publishes for her (the room's power levels refuse it here; the identity stays).
        assert bridge.rtc_presence is not None
        assert b.participants[carol_id].identity == bridge.rtc_presence.identity_for(carol.user_id)
        assert len(meeting.participants) == 3

        # Mute is a meeting state: the web client hears of it.
        await a.send(
            rtc.SignalRequest(
                mute=rtc.MuteTrackRequest(sid=track_sid(a.sid, "microphone"), muted=True)
            )
        )
        update = await web.expect("participant_updated")
        assert update["participant"]["participant_id"] == a.sid
        assert update["participant"]["audio_muted"] is True

        # Leaving: the others see alice go, and her media is released.
        await a.close()
        await b.wait_for(
            lambda: b.participants[a.sid].state == models.ParticipantInfo.DISCONNECTED
        )
        await web.expect("participant_left")
        await eventually(lambda: _true(len(meeting.participants) == 2))
    finally:
        for client in (a, b):
            await client.close()
        if web is not None:
            await web.close()


async def _true(value: bool) -> bool:
    return value


async def _steady(count: Any) -> bool:
    """Whether ``count()`` stays the same for half a second (media stopped)."""
    before = count()
    await asyncio.sleep(0.5)
    return bool(count() == before)


async def test_the_end_reaches_livekit_clients(stack: Stack) -> None:
    bridge = stack.bridge
    assert bridge is not None
    alice = await stack.user("alice")
    room_id = await stack.room_with_bot(alice)
    token = await livekit_token(stack, alice, room_id, "DEV")
    client = LiveKitClient(token["url"], token["jwt"])
    try:
        await client.connect()
        await alice.send_text(room_id, "!visio end")
        await client.wait_for(lambda: client.leave is not None)
        assert client.leave is not None
        assert client.leave.reason == models.DisconnectReason.ROOM_DELETED
        assert bridge.meetings.live_in_room(room_id) is None
        await eventually(lambda: _true(not bridge.meetings.stats()))
        await asyncio.sleep(0)
    finally:
        await client.close()


async def http_status(url: str) -> tuple[int, str, str | None]:
    async with aiohttp.ClientSession() as http, http.get(url) as response:
        return (
            response.status,
            await response.text(),
            response.headers.get("Access-Control-Allow-Origin"),
        )


async def test_bad_tokens_are_refused_before_the_socket_opens(stack: Stack) -> None:
    bridge = stack.bridge
    assert bridge is not None
    alice = await stack.user("alice")
    outsider = await stack.user("dave")
    room_id = await stack.room_with_bot(alice)
    other_room = await stack.room_with_bot(alice)
    good = await livekit_token(stack, alice, room_id, "DEV")
    now_s = bridge.clock.now_ms() // 1000
    tokens = bridge.livekit_tokens
    other_key = AccessTokens("visio-bridge", "another key of at least thirty-two chars")
    identity = tokens.check(good["jwt"], now_s).identity
    bad = {
        "another key": other_key.mint(
            identity, room_name(room_id), now_s, user_id=alice.user_id, room_id=room_id
        ),
        "expired": tokens.mint(
            identity, room_name(room_id), now_s - 7200, user_id=alice.user_id, room_id=room_id
        ),
        # A token whose LiveKit room is not the Matrix room it names.
        "another room": tokens.mint(
            identity, room_name(other_room), now_s, user_id=alice.user_id, room_id=room_id
        ),
        # The bridge checks membership again: dave is not in the room.
        "not a member": tokens.mint(
            identity, room_name(room_id), now_s, user_id=outsider.user_id, room_id=room_id
        ),
        "no Matrix claim": tokens.mint(identity, room_name(room_id), now_s),
        "garbage": "not.a.jwt",
    }
    base = good["url"].replace("ws://", "http://", 1)
    for case, token in bad.items():
        status, text, cors = await http_status(f"{base}/rtc/validate?access_token={token}")
        assert status in (401, 403), (case, status, text)
        assert text and cors == "*", case
        client = LiveKitClient(good["url"], token)
        with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
            await client.connect()
        assert refused.value.status == status, case
        await client.close()
    assert bridge.meetings.live_in_room(room_id) is None  # nothing was started

    # The one-connection protocol is not spoken: 404, which livekit-client falls back on.
    status, text, cors = await http_status(f"{base}/rtc/v1/validate?access_token=x")
    assert (status, cors) == (404, "*") and "room does not exist" not in text
    status, text, _ = await http_status(f"{base}/rtc/validate?access_token={good['jwt']}")
    assert (status, text) == (200, "success")

    # And the good token still works after all that.
    client = LiveKitClient(good["url"], good["jwt"])
    try:
        await client.connect()
    finally:
        await client.close()


async def test_garbage_and_unknown_requests_disturb_nothing(stack: Stack) -> None:
    bridge = stack.bridge
    assert bridge is not None
    room_id, (alice, bob) = await room_with(stack, "alice", "bob")
    a, b = await caller(stack, alice, room_id), await caller(stack, bob, room_id)
    try:
        await a.connect()
        await b.connect()
        await a.publish()
        assert a.camera is not None
        assert a.ws is not None and b.ws is not None

        async def pong_after(client: LiveKitClient) -> None:
            seen = len(client.responses)
            await client.send(rtc.SignalRequest(ping_req=rtc.Ping(timestamp=42)))
            await client.wait_for(
                lambda: any(
                    r.WhichOneof("message") == "pong_resp"
                    and r.pong_resp.last_ping_timestamp == 42
                    for r in client.responses[seen:]
                )
            )

        # Undecodable frames, JSON that is not a request, requests of kinds the bridge
        # does not serve: dropped, and the session goes on.
        await b.ws.send_bytes(b"\xff\xff\xff\xff garbage")
        await b.ws.send_str("{not json")
        await b.send(rtc.SignalRequest(simulate=rtc.SimulateScenario(speaker_update=3)))
        await b.send(rtc.SignalRequest(sync_state=rtc.SyncState()))
        await pong_after(b)

        # Refused requests are answered with request_response, in the protocol's way.
        await b.send(
            rtc.SignalRequest(
                update_metadata=rtc.UpdateParticipantMetadata(name="Mallory", request_id=7)
            )
        )
        await b.send(
            rtc.SignalRequest(
                add_track=rtc.AddTrackRequest(
                    cid="x",
                    type=models.TrackType.AUDIO,
                    source=models.TrackSource.SCREEN_SHARE_AUDIO,
                )
            )
        )
        await b.send(rtc.SignalRequest(mute=rtc.MuteTrackRequest(sid="TR_nobody", muted=True)))
        await b.send(
            rtc.SignalRequest(
                trickle=rtc.TrickleRequest(candidateInit="{", target=rtc.SignalTarget.PUBLISHER)
            )
        )
        await b.wait_for(
            lambda: (
                len([r for r in b.responses if r.WhichOneof("message") == "request_response"]) == 4
            )
        )
        refusals = [
            r.request_response
            for r in b.responses
            if r.WhichOneof("message") == "request_response"
        ]
        assert refusals[0].request_id == 7
        assert refusals[1].add_track.cid == "x"
        assert all(r.reason == rtc.RequestResponse.NOT_ALLOWED and r.message for r in refusals)
        # The name is still the Matrix one.
        meeting = bridge.meetings.live_in_room(room_id)
        assert meeting is not None and meeting.participants[b.sid].display_name != "Mallory"

        # Meanwhile alice's media reached bob, undisturbed.
        await b.wait_for(
            lambda: sent_and_received(a.camera, b.frames_of(track_sid(a.sid, "camera"))), 30
        )

        # A flood of garbage closes only the session that sends it.
        for _ in range(30):
            await b.ws.send_bytes(b"\x0a\xff")
        await b.wait_for(lambda: b.ws is not None and b.ws.closed, 15)
        await eventually(lambda: _true(len(meeting.participants) == 1))
        await pong_after(a)
    finally:
        await a.close()
        await b.close()


async def test_a_client_that_never_answers_is_let_go(stack: Stack) -> None:
    bridge = stack.bridge
    assert bridge is not None
    bridge.sfu.settings = dataclasses.replace(bridge.sfu.settings, answer_timeout=2.0)
    room_id, (alice, bob) = await room_with(stack, "alice", "bob")
    a, mute = await caller(stack, alice, room_id), await caller(stack, bob, room_id)
    mute.answers_offers = False
    try:
        await a.connect()
        await mute.connect()
        await a.publish()  # bob is offered alice's tracks, and never answers
        await mute.wait_for(lambda: mute.leave is not None, 15)
        assert mute.leave is not None
        assert mute.leave.action == rtc.LeaveRequest.RECONNECT
        meeting = bridge.meetings.live_in_room(room_id)
        assert meeting is not None
        await eventually(lambda: _true(list(meeting.participants) == [a.sid]))
        await pong_after_ping(a)
    finally:
        await a.close()
        await mute.close()


async def pong_after_ping(client: LiveKitClient) -> None:
    seen = len(client.responses)
    await client.send(rtc.SignalRequest(ping=1))
    await client.wait_for(
        lambda: any(r.WhichOneof("message") == "pong" for r in client.responses[seen:])
    )


CALL_MEMBER = "org.matrix.msc3401.call.member"


@pytest.mark.synapse_config({"max_event_delay_duration": "24h"})
async def test_the_bridge_keeps_and_then_sends_a_delegated_delayed_leave(stack: Stack) -> None:
    """Element Call's delayed leave (MSC4140) handed to the bridge: restarted while the
    caller is connected, sent by the bridge when the connection ends."""
    bridge = stack.bridge
    assert bridge is not None
    alice = await stack.user("alice")
    room_id = await stack.room_with_bot(alice)
    state_key = f"_{alice.user_id}_DEV_m.call"
    await alice.send_state(room_id, CALL_MEMBER, state_key, {"application": "m.call"})
    # The leave (empty content), scheduled 3 s ahead unless restarted.
    path = f"/_matrix/client/v3/rooms/{quote(room_id)}/state/{CALL_MEMBER}/{quote(state_key)}"
    delayed = await alice.request(
        "PUT", path, json_body={}, params={"org.matrix.msc4140.delay": "3000"}
    )
    openid = await alice.request_openid_token()
    body = {
        "room_id": room_id,
        "slot_id": "m.call#ROOM",
        "openid_token": openid,
        "member": {"id": "m-DEV", "claimed_user_id": alice.user_id, "claimed_device_id": "DEV"},
        "delay_id": delayed["delay_id"],
        "delay_timeout": 3000,
    }
    url = f"{stack.config['web.public_url']}/livekit/get_token"
    async with aiohttp.ClientSession() as http, http.post(url, json=body) as response:
        assert response.status == 200, await response.text()
        token = await response.json()

    client = LiveKitClient(token["url"], token["jwt"])
    try:
        await client.connect()
        await asyncio.sleep(5)  # longer than the delay: only the bridge's restarts keep it
        assert await alice.get_state(room_id, CALL_MEMBER, state_key) == {"application": "m.call"}
        assert bridge.delayed_leaves.requests.get("restart ok", 0) >= 2
    finally:
        await client.close()

    async def left() -> bool:
        return await alice.get_state(room_id, CALL_MEMBER, state_key) == {}

    await eventually(left, within=10)
    await eventually(lambda: _true(bridge.delayed_leaves.requests.get("send ok") == 1))
    assert len(bridge.delayed_leaves) == 0


async def test_encrypted_callers_are_declared_to_every_door(stack: Stack) -> None:
    """Element Call encrypts end to end: the SFU forwards the frames untouched, other
    LiveKit clients learn the tracks are encrypted (so they decrypt), and the web client
    learns it cannot play them."""
    bridge = stack.bridge
    assert bridge is not None
    room_id, (alice, bob, carol) = await room_with(stack, "alice", "bob", "carol")
    a, b = await caller(stack, alice, room_id), await caller(stack, bob, room_id)
    web = None
    try:
        await a.connect()
        await b.connect()
        meeting = bridge.meetings.live_in_room(room_id)
        assert meeting is not None
        web = SignalingClient(str(bridge.config["web.public_url"]), meeting.id)
        link = bridge.links.make(meeting.id, carol.user_id, bridge.clock.now_ms() // 1000)
        joined = await web.join({"kind": "link", "token": link})
        assert all(p["encrypted"] is False for p in joined["participants"])

        await a.publish(encryption=models.Encryption.GCM)
        update = await web.expect("participant_updated")
        assert (update["participant"]["participant_id"], update["participant"]["encrypted"]) == (
            a.sid,
            True,
        )
        await b.wait_for(
            lambda: (
                len(b.participants[a.sid].tracks) == 2
                and all(
                    t.encryption == models.Encryption.GCM for t in b.participants[a.sid].tracks
                )
            )
        )
        # The frames are forwarded as they came (here the test's camera is clear).
        assert a.camera is not None
        await b.wait_for(
            lambda: sent_and_received(a.camera, b.frames_of(track_sid(a.sid, "camera"))), 30
        )
    finally:
        for client in (a, b):
            await client.close()
        if web is not None:
            await web.close()


async def test_a_full_reconnect_replaces_the_old_connection(stack: Stack) -> None:
    """Resume is off, so a LiveKit client that lost its connection rejoins in full with
    the same token: the meeting keeps one participant for it, and the old session hears
    it was replaced."""
    bridge = stack.bridge
    assert bridge is not None
    room_id, (alice, bob) = await room_with(stack, "alice", "bob")
    a_token = await livekit_token(stack, alice, room_id, "A")
    b_token = await livekit_token(stack, bob, room_id, "B")
    first = LiveKitClient(a_token["url"], a_token["jwt"])
    again = LiveKitClient(a_token["url"], a_token["jwt"])
    b = LiveKitClient(b_token["url"], b_token["jwt"])
    try:
        await first.connect()
        await b.connect()
        await again.connect()
        await again.publish()
        await first.wait_for(lambda: first.leave is not None)
        assert first.leave is not None
        assert first.leave.reason == models.DisconnectReason.DUPLICATE_IDENTITY
        meeting = bridge.meetings.live_in_room(room_id)
        assert meeting is not None
        assert sorted(meeting.participants) == sorted([again.sid, b.sid])
        # Bob saw the old one go and gets the new one's media.
        await b.wait_for(
            lambda: b.participants[first.sid].state == models.ParticipantInfo.DISCONNECTED
        )
        assert again.camera is not None
        await b.wait_for(
            lambda: sent_and_received(again.camera, b.frames_of(track_sid(again.sid, "camera"))),
            30,
        )
    finally:
        for client in (first, again, b):
            await client.close()


async def test_a_call_in_a_room_without_the_bot(stack: Stack) -> None:
    """Served as lk-jwt-service and LiveKit would: verified callers of allowed servers
    with the bridge level get in (membership cannot be seen without the bot), nothing is
    posted to the room, and the call ends with its last caller."""
    bridge = stack.bridge
    assert bridge is not None
    alice = await stack.user("alice")
    bob = await stack.user("bob")
    outsider = await stack.user("outsider")  # bridge level "none" in the test config
    room_id = await alice.create_room()
    await alice.invite(room_id, bob.user_id)
    await bob.join(room_id)
    a_token = await livekit_token(stack, alice, room_id, "A")
    b_token = await livekit_token(stack, bob, room_id, "B")
    openid = await outsider.request_openid_token()
    refused = {
        "room_id": room_id,
        "slot_id": "m.call#ROOM",
        "openid_token": openid,
        "member": {"id": "m", "claimed_user_id": outsider.user_id, "claimed_device_id": "O"},
    }
    url = f"{stack.config['web.public_url']}/livekit/get_token"
    async with aiohttp.ClientSession() as http, http.post(url, json=refused) as response:
        assert response.status == 401

    a = LiveKitClient(a_token["url"], a_token["jwt"])
    b = LiveKitClient(b_token["url"], b_token["jwt"])
    try:
        await a.connect()
        await b.connect()
        await a.publish()
        assert a.camera is not None
        await b.wait_for(
            lambda: sent_and_received(a.camera, b.frames_of(track_sid(a.sid, "camera"))), 30
        )
        meeting = bridge.meetings.live_in_room(room_id)
        assert meeting is not None and len(meeting.participants) == 2
        # The callers are named by their user ids' localparts (no room profile to read).
        assert b.participants[a.sid].name == "alice"
    finally:
        await a.close()
        await b.close()
    await eventually(lambda: _true(bridge.meetings.live_in_room(room_id) is None))
    ended = await bridge.meetings.get(meeting.id)
    assert ended is not None and not ended.is_live
    # Nothing was posted: no meeting state, no widget, no message from the bot.
    state = await alice.get_all_state(room_id)
    assert not [e for e in state if e["sender"] == stack.bot]
    messages = await alice.request(
        "GET", f"/_matrix/client/v3/rooms/{quote(room_id)}/messages", params={"dir": "b"}
    )
    assert not [e for e in messages["chunk"] if e["sender"] == stack.bot]


async def test_connected_clients_get_fresh_tokens(stack: Stack) -> None:
    """Tokens last an hour; a client that rejoins after that must hold a newer one."""
    bridge = stack.bridge
    assert bridge is not None
    bridge.livekit.token_refresh_s = 0.2
    alice = await stack.user("alice")
    room_id = await stack.room_with_bot(alice)
    token = await livekit_token(stack, alice, room_id, "A")
    client = LiveKitClient(token["url"], token["jwt"])
    try:
        await client.connect()
        await client.wait_for(
            lambda: any(r.WhichOneof("message") == "refresh_token" for r in client.responses)
        )
        fresh = next(
            r.refresh_token for r in client.responses if r.WhichOneof("message") == "refresh_token"
        )
        now_s = bridge.clock.now_ms() // 1000
        old, new = (bridge.livekit_tokens.check(t, now_s) for t in (token["jwt"], fresh))
        assert (new.identity, new.room, new.user_id, new.room_id) == (
            old.identity,
            old.room,
            alice.user_id,
            room_id,
        )
        assert new.expires_at >= old.expires_at
        # The fresh token admits the same caller.
        again = LiveKitClient(token["url"], fresh)
        try:
            await again.connect()
            await client.wait_for(lambda: client.leave is not None)  # replaced by it
        finally:
            await again.close()
    finally:
        await client.close()
