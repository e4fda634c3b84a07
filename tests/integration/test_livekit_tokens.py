"""The MatrixRTC token service against a real Synapse: Element Call's two requests get
LiveKit tokens for the room's call; every wrong request is refused the way
lk-jwt-service refuses it, and disturbs nothing."""

from __future__ import annotations

from typing import Any

import aiohttp
import pytest

from bridge.livekit.naming import legacy_identity, member_identity, room_name
from tests.integration.conftest import Stack

JSON = dict[str, Any]
pytestmark = pytest.mark.bridge_config({"matrix_rtc.enabled": True})


async def post(stack: Stack, path: str, body: object) -> tuple[int, JSON, str | None]:
    url = f"{stack.config['web.public_url']}/livekit/{path}"
    async with aiohttp.ClientSession() as http, http.post(url, json=body) as response:
        return (
            response.status,
            await response.json(),
            response.headers.get("Access-Control-Allow-Origin"),
        )


async def test_element_call_gets_tokens_for_the_rooms_call(stack: Stack) -> None:
    assert stack.bridge is not None
    alice = await stack.user("alice")
    bob = await stack.user("bob")
    room_id = await stack.room_with_bot(alice)
    token = await alice.request_openid_token()

    status, body, cors = await post(
        stack,
        "get_token",
        {
            "room_id": room_id,
            "slot_id": "m.call#ROOM",
            "openid_token": token,
            "member": {
                "id": "member-1",
                "claimed_user_id": alice.user_id,
                "claimed_device_id": "DEVICE",
            },
        },
    )
    assert status == 200, body
    assert cors == "*"
    public = str(stack.config["web.public_url"])
    assert body["url"] == public.replace("http://", "ws://") + "/livekit"
    grant = stack.bridge.livekit_tokens.check(body["jwt"], stack.bridge.clock.now_ms() // 1000)
    assert grant.room == room_name(room_id)
    assert grant.identity == member_identity(alice.user_id, "DEVICE", "member-1")

    # The legacy request (Element Call's default mode) gives the same room.
    status, body, _ = await post(
        stack, "sfu/get", {"room": room_id, "openid_token": token, "device_id": "DEVICE"}
    )
    assert status == 200, body
    grant = stack.bridge.livekit_tokens.check(body["jwt"], stack.bridge.clock.now_ms() // 1000)
    assert grant.room == room_name(room_id)
    assert grant.identity == legacy_identity(alice.user_id, "DEVICE")

    # Refusals, each in lk-jwt-service's own words.
    def get_token(openid: JSON, claimed: str, room: str = room_id) -> JSON:
        return {
            "room_id": room,
            "slot_id": "m.call#ROOM",
            "openid_token": openid,
            "member": {"id": "m", "claimed_user_id": claimed, "claimed_device_id": "D"},
        }

    forged = {**token, "access_token": "forged"}
    assert (await post(stack, "get_token", get_token(forged, alice.user_id)))[:2] == (
        401,
        {
            "errcode": "M_UNAUTHORIZED",
            "error": "Your Matrix sign-in was not accepted by your homeserver "
            "(it may have expired).",
        },
    )
    status, body, _ = await post(stack, "get_token", get_token(token, bob.user_id))
    assert (status, body["errcode"]) == (401, "M_UNAUTHORIZED")  # claims to be someone else
    bob_token = await bob.request_openid_token()
    status, body, _ = await post(stack, "get_token", get_token(bob_token, bob.user_id))
    assert (status, body["errcode"]) == (401, "M_UNAUTHORIZED")  # not in the room
    other_room = await stack.room_with_bot(bob)
    status, body, _ = await post(stack, "get_token", get_token(token, alice.user_id, other_room))
    assert (status, body["errcode"]) == (401, "M_UNAUTHORIZED")  # a token for another room
    status, body, _ = await post(stack, "sfu/get", {"room": room_id, "openid_token": token})
    assert (status, body["errcode"]) == (400, "M_BAD_JSON")
    url = f"{stack.config['web.public_url']}/livekit/sfu/get"
    async with aiohttp.ClientSession() as http, http.post(url, data=b"{nope") as response:
        assert response.status == 400 and (await response.json())["errcode"] == "M_NOT_JSON"
    # Delegated delayed leave is offered: Element Call's probe (an empty body) hears
    # something else than 404, and then hands its delayed leave over.
    async with aiohttp.ClientSession() as http:
        probe = f"{stack.config['web.public_url']}/livekit/delegate_delayed_leave"
        async with http.post(probe, json={}) as response:
            assert response.status == 400

    # And alice's token still works after all that.
    status, _, _ = await post(
        stack, "sfu/get", {"room": room_id, "openid_token": token, "device_id": "D2"}
    )
    assert status == 200


@pytest.mark.bridge_config({"matrix_rtc.enabled": False})
async def test_the_token_service_is_off_unless_enabled(stack: Stack) -> None:
    status = (await post(stack, "sfu/get", {}))[0] if False else None
    url = f"{stack.config['web.public_url']}/livekit/sfu/get"
    async with aiohttp.ClientSession() as http, http.post(url, json={}) as response:
        status = response.status
    assert status == 404
