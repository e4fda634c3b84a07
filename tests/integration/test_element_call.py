"""Element Call itself (npm ``@element-hq/element-call-embedded`` 0.26.1) in headless
Chromium, hosted as Element Web hosts it, with Synapse pointing its MatrixRTC transport
at the bridge: two people start and join a call in an encrypted room (Element Call's
default per-participant end-to-end encryption), see and hear each other through the
bridge's SFU, and hanging up sends the leave and releases the person's media."""

from __future__ import annotations

from typing import Any

import pytest
from playwright.async_api import Browser, expect

from tests.integration.browser import (  # noqa: F401 - the browser fixture
    Participant,
    browser,
    new_participant,
    open_meeting,
    poll_stats,
)
from tests.integration.conftest import Stack, eventually
from tests.integration.element_call import (  # noqa: F401 - fixtures
    CallPage,
    element_call_files,
    element_call_url,
    open_element_call,
)

CALL_MEMBER = "org.matrix.msc3401.call.member"


def synapse_for_matrix_rtc(bridge_url: str) -> dict[str, Any]:
    """What docs/element-call.md asks of the homeserver, transport pointing at the bridge."""
    return {
        "experimental_features": {
            "msc3266_enabled": True,
            "msc4143_enabled": True,
            "msc4222_enabled": True,
        },
        "max_event_delay_duration": "24h",
        "matrix_rtc": {
            "transports": [{"type": "livekit", "livekit_service_url": f"{bridge_url}/livekit"}]
        },
    }


pytestmark = [
    pytest.mark.integration,
    pytest.mark.bridge_config({"matrix_rtc.enabled": True}),
    # with_args: a lone callable would be taken for the function to decorate.
    pytest.mark.synapse_config.with_args(synapse_for_matrix_rtc),
]


def _receives_media(
    inbound: list[dict[str, Any]], pictures: list[dict[str, float]], senders: int
) -> bool:
    """Video frames decoded and audio samples played from ``senders`` remote
    participants, and the pictures shown are the senders' cameras: decrypted, not
    ciphertext run through the decoder (which also "decodes", a few frames and noise,
    when nobody decrypts)."""
    video = sum(r["kind"] == "video" and r["framesDecoded"] > 30 for r in inbound)
    audio = sum(r["kind"] == "audio" and r["totalSamplesReceived"] > 0 for r in inbound)
    seen = sum(p["width"] > 0 and p["green"] > 0.9 for p in pictures)
    return min(video, audio, seen) >= senders


async def wait_for_media(page: CallPage, within: float = 45, pictures: int = 1) -> None:
    async def read() -> tuple[list[dict[str, Any]], list[dict[str, float]]]:
        return await page.inbound(), await page.remote_pictures()

    came, (inbound, shown) = await poll_stats(
        read, lambda last: _receives_media(*last, pictures), within, every=0.5
    )
    if not came:
        raise AssertionError(
            f"no media within {within} s: {inbound}\npictures: {shown}\n"
            f"host: {await page.host_state()}"
        )


async def wait_for_tile(page: CallPage, name: str, shown: bool = True) -> None:
    async def there() -> bool:
        return any(name in tile for tile in await page.tiles()) == shown

    await eventually(there, within=30)


async def test_element_call_through_the_bridge(
    stack: Stack,
    browser: Browser,  # noqa: F811
    element_call_url: str,  # noqa: F811
) -> None:
    bridge = stack.bridge
    assert bridge is not None
    alice, bob = await stack.user("alice"), await stack.user("bob")
    room_id = await stack.room_with_bot(alice)
    await alice.invite(room_id, bob.user_id)
    await bob.join(room_id)
    # Members may join calls (what Element Web's room setting "Enable Element Call"
    # sets: the membership state at power level 0).
    await alice.set_power_levels(room_id, events={CALL_MEMBER: 0})
    # An encrypted room is what makes Element Web ask for per-participant E2EE.
    await alice.send_state(room_id, "m.room.encryption", "", {"algorithm": "m.megolm.v1.aes-sha2"})
    # Each person's Element Web is a device of its own (its own to-device inbox).
    a_device = await stack.homeserver.login("alice", "alice-password")
    b_device = await stack.homeserver.login("bob", "bob-password")

    pages: list[CallPage] = []
    pages_web: list[Participant] = []
    try:
        a = await open_element_call(
            browser,
            element_call_url,
            a_device,
            room_id,
            intent="start_call",
            per_participant_e2ee=True,
        )
        pages.append(a)
        b = await open_element_call(
            browser,
            element_call_url,
            b_device,
            room_id,
            intent="join_existing",
            per_participant_e2ee=True,
        )
        pages.append(b)

        async def both_in_the_meeting() -> bool:
            meeting = bridge.meetings.live_in_room(room_id)
            return meeting is not None and len(meeting.participants) == 2

        await eventually(both_in_the_meeting, within=60)
        await wait_for_media(a)
        await wait_for_media(b)
        for page, other in ((a, "bob"), (b, "alice")):
            tiles = await page.tiles()
            assert any(other in name for name in tiles), tiles

        # Carol, on the bridge's web client in the same meeting, has no keys: her page
        # says so on both callers' tiles, and plays neither picture nor sound.
        meeting = bridge.meetings.live_in_room(room_id)
        assert meeting is not None
        carol = await stack.user("carol")
        await alice.invite(room_id, carol.user_id)
        await carol.join(room_id)
        link = bridge.links.make(meeting.id, carol.user_id, bridge.clock.now_ms() // 1000)
        web = await new_participant(browser)
        pages_web.append(web)
        await open_meeting(
            web.page,
            f"{bridge.meeting_room.join_url(meeting)}#token={link}",
            display_name="Carol Web",
        )
        notes = web.page.locator(".tile.encrypted .encrypted-note:visible")
        await expect(notes).to_have_count(2, timeout=20_000)
        assert await web.page.locator(".tile.encrypted audio").evaluate_all(
            "(audios) => audios.every((audio) => audio.muted)"
        )

        # Both callers list her (the bridge's ghost holds a call membership for her,
        # with the LiveKit identity the door gave her) and play her camera and sound.
        assert bridge.rtc_presence is not None
        ghost = bridge.rtc_presence.ghost_of(carol.user_id)
        c_key = bridge.rtc_presence.state_key(ghost)

        async def carol_published() -> bool:
            return bool(await bob.get_state(room_id, CALL_MEMBER, c_key))

        await eventually(carol_published, within=20)
        membership = await bob.get_state(room_id, CALL_MEMBER, c_key)
        assert membership is not None
        assert membership["membershipID"] == bridge.rtc_presence.identity_for(carol.user_id)
        assert membership["foci_preferred"][0]["livekit_alias"] == room_id
        for page in (a, b):
            await wait_for_tile(page, "Carol Web")
            await wait_for_media(page, pictures=2)

        # She leaves: her membership goes, and so does her tile.
        await web.close()
        pages_web.clear()

        async def carol_withdrawn() -> bool:
            return await bob.get_state(room_id, CALL_MEMBER, c_key) == {}

        await eventually(carol_withdrawn, within=20)
        for page in (a, b):
            await wait_for_tile(page, "Carol Web", shown=False)

        # Element Call handed both delayed leave events to the bridge (delegation).
        assert len(bridge.delayed_leaves) == 2
        assert len(bridge.livekit.sessions) == 2

        # Alice hangs up: her membership is emptied (the leave) and the bridge lets go of
        # her session, her peer connections, tracks and subscriptions, and her leave.
        a_key = f"_{alice.user_id}_{a_device.device_id}_m.call"
        assert await bob.get_state(room_id, CALL_MEMBER, a_key)
        await a.hang_up()
        meeting = bridge.meetings.live_in_room(room_id)
        assert meeting is not None

        async def alice_released() -> bool:
            router = bridge.meetings.stats()[meeting.id]["router"]
            return (
                len(meeting.participants) == 1
                and (router.participants, router.peer_connections) == (1, 2)
                and (router.published_tracks, router.subscriptions) == (2, 0)
                and len(bridge.livekit.sessions) == 1
                and len(bridge.delayed_leaves) == 1
            )

        await eventually(alice_released, within=20)

        async def leave_sent() -> bool:
            return await bob.get_state(room_id, CALL_MEMBER, a_key) == {}

        await eventually(leave_sent, within=20)
    except BaseException:
        print("meetings:", bridge.meetings.stats())
        for index, page in enumerate(pages):
            print(f"--- page {index} host: {await page.host_state()}")
            print(f"--- page {index} console:\n" + "\n".join(page.person.console[-80:]))
        for person in pages_web:
            print("--- web client console:\n" + "\n".join(person.console[-40:]))
        raise
    finally:
        for page in pages:
            await page.close()
        for person in pages_web:
            await person.close()
