"""The real livekit-client (npm 2.22.3, the build Element Call 0.26.1 bundles) in headless
Chromium against the bridge: two pages with tokens from real OpenID tokens see and hear
each other, with the client's default options (simulcast on, one peer connection tried
first), and a third person on the bridge's own web client sees and hears both, and is
seen and heard by them."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
from playwright.async_api import Browser

from bridge.context import Bridge
from tests.integration.browser import (  # noqa: F401 - the browser fixture
    Participant,
    browser,
    new_participant,
    open_meeting,
    poll_stats,
    wait_for_remote_media,
)
from tests.integration.conftest import Stack, eventually
from tests.integration.livekit_browser import (  # noqa: F401 - fixtures
    livekit_client_js,
    livekit_site_url,
    lk_connect,
    lk_outbound_stats,
    lk_state,
    lk_stats,
    open_livekit_page,
)
from tests.integration.test_livekit_rtc import livekit_token, room_with

pytestmark = [pytest.mark.integration, pytest.mark.bridge_config({"matrix_rtc.enabled": True})]


def _decodes(tracks: dict[str, dict[str, Any]] | None) -> bool:
    """Video frames decoded and audio samples played from one remote participant."""
    if not tracks:
        return False
    kinds = {t.get("kind"): t for t in tracks.values()}
    video, audio = kinds.get("video"), kinds.get("audio")
    return bool(
        video
        and (video.get("framesDecoded") or 0) > 10
        and audio
        and (audio.get("totalSamplesReceived") or 0) > 0
    )


async def _is(value: bool) -> bool:
    return value


async def wait_for_livekit_media(
    page: Participant, identities: list[str], within: float = 30
) -> dict[str, Any]:
    came, last = await poll_stats(
        lambda: lk_stats(page),
        lambda last: all(_decodes(last.get(identity)) for identity in identities),
        within,
    )
    if not came:
        state = await lk_state(page)
        raise AssertionError(
            f"no media from {identities} within {within} s: {last}\nstate: {state}\n"
            f"console: {page.console[-30:]}"
        )
    return last


@asynccontextmanager
async def kept_pages(bridge: Bridge) -> AsyncIterator[list[Participant]]:
    """The test's pages: closed at the end, their consoles shown when it fails."""
    pages: list[Participant] = []
    try:
        yield pages
    except BaseException:
        print("meetings:", bridge.meetings.stats())
        for index, page in enumerate(pages):
            print(f"--- page {index} console:\n" + "\n".join(page.console[-40:]))
        raise
    finally:
        for page in pages:
            await page.close()


async def test_livekit_client_pages_and_the_web_client_meet(
    stack: Stack,
    browser: Browser,  # noqa: F811
    livekit_site_url: str,  # noqa: F811
) -> None:
    bridge = stack.bridge
    assert bridge is not None
    room_id, (alice, bob, carol) = await room_with(stack, "alice", "bob", "carol")
    a_token = await livekit_token(stack, alice, room_id, "ADEVICE")
    b_token = await livekit_token(stack, bob, room_id, "BDEVICE")
    now_s = bridge.clock.now_ms() // 1000
    a_identity = bridge.livekit_tokens.check(a_token["jwt"], now_s).identity
    b_identity = bridge.livekit_tokens.check(b_token["jwt"], now_s).identity

    async with kept_pages(bridge) as pages:
        a = await open_livekit_page(browser, livekit_site_url)
        pages.append(a)
        b = await open_livekit_page(browser, livekit_site_url)
        pages.append(b)
        # The client's defaults, as Element Call keeps them: it tries /rtc/v1 (one peer
        # connection), hears 404, and comes back on /rtc with two.
        await lk_connect(a, a_token["url"], a_token["jwt"])
        await lk_connect(b, b_token["url"], b_token["jwt"])
        assert (await lk_state(a)).get("pcMode") != "publisher-only"

        await wait_for_livekit_media(a, [b_identity])
        await wait_for_livekit_media(b, [a_identity])
        # Simulcast on by default: the camera goes out with encodings, and the answer made
        # at least one of them flow.
        outbound = await lk_outbound_stats(a)
        assert outbound["bytesSent"]["video"] > 0, outbound

        # Carol joins the same meeting from the bridge's own web client.
        meeting = bridge.meetings.live_in_room(room_id)
        assert meeting is not None
        link = bridge.links.make(meeting.id, carol.user_id, bridge.clock.now_ms() // 1000)
        c = await new_participant(browser)
        pages.append(c)
        await open_meeting(c.page, f"{bridge.meeting_room.join_url(meeting)}#token={link}")
        a_id = next(p.id for p in meeting.participants.values() if p.user_id == alice.user_id)
        b_id = next(p.id for p in meeting.participants.values() if p.user_id == bob.user_id)
        await wait_for_remote_media(c.page, [a_id, b_id], within=30)
        # LiveKit clients know her by the identity of the call membership the bridge
        # publishes for her.
        assert bridge.rtc_presence is not None
        carol_identity = bridge.rtc_presence.identity_for(carol.user_id)
        await wait_for_livekit_media(a, [b_identity, carol_identity])
        await wait_for_livekit_media(b, [a_identity, carol_identity])
        assert len(meeting.participants) == 3

        # Alice hangs up: everyone else sees her go, and what she held is released.
        await a.page.evaluate("() => window.lk.disconnect()")
        await eventually(lambda: _is(len(meeting.participants) == 2))

        async def b_saw_her_go() -> bool:
            return a_identity not in (await lk_state(b)).get("participants", [])

        await eventually(b_saw_her_go)


async def _set_quality(page: Participant, publisher: str, quality: str) -> None:
    """What Element Call's tiles do without adaptive stream: ask for a quality of a
    remote camera (livekit-client sends the track settings)."""
    await page.page.evaluate(
        """([identity, quality]) => {
          const publisher = window.lk.room.remoteParticipants.get(identity);
          const LK = window.LivekitClient;
          const camera = publisher.getTrackPublication(LK.Track.Source.Camera);
          camera.setVideoQuality(LK.VideoQuality[quality]);
        }""",
        [publisher, quality],
    )


async def _camera_width(page: Participant, publisher: str) -> int:
    tracks = (await lk_stats(page)).get(publisher) or {}
    video = [t for t in tracks.values() if t.get("kind") == "video"]
    return int(video[0].get("frameWidth") or 0) if video else 0


async def test_each_subscriber_gets_the_simulcast_layer_it_asks_for(
    stack: Stack,
    browser: Browser,  # noqa: F811
    livekit_site_url: str,  # noqa: F811
) -> None:
    """Alice publishes her camera as Element Call does (720p, simulcast at 180p, 360p
    and 720p): the bridge takes all three layers, and Bob and Carol each receive the
    layer they ask for, switching when they ask again."""
    bridge = stack.bridge
    assert bridge is not None
    room_id, (alice, bob, carol) = await room_with(stack, "alice", "bob", "carol")
    tokens = {
        user.user_id: await livekit_token(stack, user, room_id, device)
        for user, device in ((alice, "A"), (bob, "B"), (carol, "C"))
    }
    now_s = bridge.clock.now_ms() // 1000
    a_identity = bridge.livekit_tokens.check(tokens[alice.user_id]["jwt"], now_s).identity
    async with kept_pages(bridge) as pages:
        a = await open_livekit_page(browser, livekit_site_url)
        pages.append(a)
        token = tokens[alice.user_id]
        await lk_connect(a, token["url"], token["jwt"], {"elementCall": True})
        viewers = []
        for user in (bob, carol):
            page = await open_livekit_page(browser, livekit_site_url)
            pages.append(page)
            token = tokens[user.user_id]
            # Without adaptive stream a tile asks for a quality, not a size.
            options = {"room": {"adaptiveStream": False}, "publish": False}
            await lk_connect(page, token["url"], token["jwt"], options)
            viewers.append(page)
        b, c = viewers

        # All three layers flow from Alice's browser to the bridge.
        async def three_layers() -> bool:
            outbound = await lk_outbound_stats(a)
            rids = {rid for t in outbound["tracks"].values() for rid in t["sendingRids"]}
            return rids >= {"q", "h", "f"}

        await eventually(three_layers, within=30)

        async def widths(low: Participant, high: Participant) -> bool:
            small, large = (
                await _camera_width(low, a_identity),
                await _camera_width(high, a_identity),
            )
            return 0 < small <= 320 and large > 2 * small

        await _set_quality(b, a_identity, "LOW")
        await _set_quality(c, a_identity, "HIGH")
        await eventually(lambda: widths(b, c), within=30)
        # And the other way round: each switches at the new layer's keyframe.
        await _set_quality(b, a_identity, "HIGH")
        await _set_quality(c, a_identity, "LOW")
        await eventually(lambda: widths(c, b), within=30)
        # Frames kept coming through both switches.
        for page in viewers:
            await wait_for_livekit_media(page, [a_identity])
