"""The LiveKit door against a real Synapse: LiveKit-protocol clients (livekit-client's
signaling, aiortc media) get tokens with real OpenID tokens, start the room's meeting
by calling, exchange media byte for byte with each other and with a participant of the
bridge's own web protocol, and every bad request is refused the protocol's way."""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
import pytest
from livekit.protocol import models, rtc

from bridge.livekit.messages import track_sid
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
        assert b.participants[carol_id].identity == carol.user_id
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
