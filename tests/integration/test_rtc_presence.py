"""People of the bridge's own web protocol in Element Call's roster, against a real
Synapse: the bridge's ghost holds a MatrixRTC call membership for each of them while
they are in the room's meeting (Element Call lists members from these), and takes it
back when they leave, when the meeting ends, when the bridge stops, and after a crash.
Element Call itself listing and playing them is ``test_element_call.py``."""

from __future__ import annotations

from typing import Any

import pytest
from mautrix.types import RoomID

from bridge.matrix.rtc_presence import CALL_MEMBER, DEVICE_ID, EXPIRES_MS, RENEW_S
from tests.harness.synapse import MatrixUser
from tests.integration.conftest import Stack, eventually
from tests.integration.signaling_client import SignalingClient

pytestmark = [pytest.mark.integration, pytest.mark.bridge_config({"matrix_rtc.enabled": True})]
JSON = dict[str, Any]


async def call_room(stack: Stack, members_may_call: bool = True) -> tuple[str, MatrixUser]:
    """A room with the bot and a live meeting; ``members_may_call``: the room lets
    members send call memberships (Element Web's "Enable Element Call")."""
    alice = await stack.user("alice")
    room_id = await stack.room_with_bot(alice, name="Planning")
    if members_may_call:
        await alice.set_power_levels(room_id, events={str(CALL_MEMBER): 0})
    return room_id, alice


async def web_join(stack: Stack, room_id: str, who: MatrixUser, name: str) -> SignalingClient:
    bridge = stack.bridge
    assert bridge is not None
    meeting = bridge.meetings.live_in_room(room_id)
    if meeting is None:
        meeting, _ = await bridge.meetings.start(room_id, "Planning", who.user_id)
    client = SignalingClient(str(stack.config["web.public_url"]), meeting.id)
    link = bridge.links.make(meeting.id, who.user_id, bridge.clock.now_ms() // 1000)
    joined = await client.join({"kind": "link", "token": link}, display_name=name)
    assert joined["type"] == "joined", joined
    return client


async def membership(user: MatrixUser, room_id: str, ghost: str) -> JSON | None:
    return await user.get_state(room_id, str(CALL_MEMBER), f"_{ghost}_{DEVICE_ID}_m.call")


async def test_a_web_participant_is_a_call_member_while_in_the_meeting(stack: Stack) -> None:
    bridge = stack.bridge
    assert bridge is not None and bridge.rtc_presence is not None
    presence = bridge.rtc_presence
    room_id, alice = await call_room(stack)
    web = await web_join(stack, room_id, alice, "Alice on the web")
    ghost = presence.ghost_of(alice.user_id)
    try:

        async def published() -> bool:
            return bool(await membership(alice, room_id, ghost))

        await eventually(published, within=15)
        content = await membership(alice, room_id, ghost)
        assert content is not None
        # What Element Call matches a LiveKit participant against: <sender>:<device_id>,
        # the identity the LiveKit door gives her.
        assert content["membershipID"] == f"{ghost}:{DEVICE_ID}"
        assert content["membershipID"] == presence.identity_for(alice.user_id)
        meeting = bridge.meetings.live_in_room(room_id)
        assert meeting is not None
        (participant,) = meeting.participants.values()
        assert participant.rtc_identity == content["membershipID"]
        assert content["device_id"] == DEVICE_ID
        assert (content["application"], content["call_id"], content["scope"]) == (
            "m.call",
            "",
            "m.room",
        )
        assert content["expires"] == EXPIRES_MS
        assert content["foci_preferred"] == [
            {
                "type": "livekit",
                "livekit_service_url": f"{stack.config['web.public_url']}/livekit",
                "livekit_alias": room_id,
            }
        ]
        # Element Call shows the member's room name: hers in the meeting.
        members = await alice.joined_members(room_id)
        assert members[ghost]["display_name"] == "Alice on the web"

        # Renewed while she stays, from the same start, so it never expires under her.
        sent = presence._published[room_id][ghost]
        sent.renewed_at -= int(RENEW_S * 1000) + 1
        await presence.renew()
        renewed = await membership(alice, room_id, ghost)
        assert renewed is not None
        assert renewed["created_ts"] == content["created_ts"]
        assert renewed["expires"] > content["expires"]
    finally:
        await web.close()

    # She leaves: the membership is emptied (Element Call's own leave) and the ghost
    # leaves the room.
    async def withdrawn() -> bool:
        return await membership(alice, room_id, ghost) == {}

    await eventually(withdrawn, within=15)

    async def ghost_gone() -> bool:
        return ghost not in await alice.joined_members(room_id)

    await eventually(ghost_gone, within=15)


async def test_the_end_and_a_stop_withdraw_memberships(stack: Stack) -> None:
    bridge = stack.bridge
    assert bridge is not None and bridge.rtc_presence is not None
    room_id, alice = await call_room(stack)
    ghost = bridge.rtc_presence.ghost_of(alice.user_id)
    web = await web_join(stack, room_id, alice, "Alice")
    try:

        async def published() -> bool:
            return bool(await membership(alice, room_id, ghost))

        await eventually(published, within=15)
        meeting = bridge.meetings.live_in_room(room_id)
        assert meeting is not None
        await bridge.meetings.end(meeting, alice.user_id)

        async def withdrawn() -> bool:
            return await membership(alice, room_id, ghost) == {}

        await eventually(withdrawn, within=15)
    finally:
        await web.close()

    # A new meeting, and the bridge stops while she is in it: she is in no call then.
    web = await web_join(stack, room_id, alice, "Alice")
    try:
        await eventually(published, within=15)
        await stack.stop_bridge()
        assert await membership(alice, room_id, ghost) == {}
    finally:
        await web.close()


async def test_memberships_a_crash_left_behind_are_withdrawn_at_start(stack: Stack) -> None:
    bridge = stack.bridge
    assert bridge is not None and bridge.rtc_presence is not None
    room_id, alice = await call_room(stack)
    meeting, _ = await bridge.meetings.start(room_id, "Planning", alice.user_id)
    ghost = bridge.rtc_presence.ghost_of("@someone:localhost")
    # A membership as a bridge that crashed would have left it: sent, never withdrawn,
    # and unknown to this run.
    intent = bridge.az.intent.user(ghost)  # type: ignore[arg-type]
    await intent.ensure_joined(RoomID(room_id))
    now = bridge.clock.now_ms()
    await intent.send_state_event(
        RoomID(room_id),
        CALL_MEMBER,
        bridge.rtc_presence.content(room_id, ghost, now, now),
        state_key=bridge.rtc_presence.state_key(ghost),
    )
    assert await membership(alice, room_id, ghost)
    await stack.stop_bridge()
    assert await membership(alice, room_id, ghost), "a clean stop only takes back its own"

    restarted = await stack.start_bridge()
    assert restarted.meetings.live(meeting.id) is not None

    async def withdrawn() -> bool:
        return await membership(alice, room_id, ghost) == {}

    await eventually(withdrawn, within=15)


async def test_a_room_that_refuses_call_memberships_gets_no_ghost(stack: Stack) -> None:
    bridge = stack.bridge
    assert bridge is not None and bridge.rtc_presence is not None
    room_id, alice = await call_room(stack, members_may_call=False)
    ghost = bridge.rtc_presence.ghost_of(alice.user_id)
    web = await web_join(stack, room_id, alice, "Alice")
    try:
        meeting = bridge.meetings.live_in_room(room_id)
        assert meeting is not None
        presence = bridge.rtc_presence

        async def refused() -> bool:
            return meeting.id in presence._refused

        await eventually(refused, within=15)
        # The meeting goes on without it; nothing was sent, and no ghost came in.
        await web.publish()
        assert len(meeting.participants) == 1
        assert await membership(alice, room_id, ghost) is None
        assert ghost not in await alice.joined_members(room_id)
    finally:
        await web.close()


async def test_only_the_bot_may_bring_its_ghosts_into_a_room(stack: Stack) -> None:
    bridge = stack.bridge
    assert bridge is not None and bridge.rtc_presence is not None
    room_id, alice = await call_room(stack)
    ghost = bridge.rtc_presence.ghost_of("@bob:localhost")
    await alice.invite(room_id, ghost)

    async def declined() -> bool:
        state = await alice.get_state(room_id, "m.room.member", ghost)
        return state is not None and state["membership"] == "leave"

    await eventually(declined, within=15)
