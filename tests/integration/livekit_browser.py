"""The real npm ``livekit-client`` in headless Chromium, for tests of the Element Call door.

Element Call 0.26.1 bundles livekit-client 2.22.3; tests run that very build (fetched
and pinned by tests/harness/npm.py) on a bare page, tests/integration/livekit_page.html,
served from loopback by :func:`livekit_site`. The page exposes ``window.lk``:

* ``connect(url, token, options?)``: join as Element Call does (adaptiveStream, dynacast,
  simulcast on, autoSubscribe), then publish camera and microphone (Chromium's fake
  devices); ``options``: ``{elementCall: true}`` for Element Call 0.26.1's full room
  options (vp8, layers h180/h360, dtx, no red), ``{room: {...}, connect: {...}}`` to
  override, ``{publish: false}`` to join without media.
  livekit-client 2.22 defaults to ``singlePeerConnection``: it opens the signal socket on
  ``/rtc/v1?access_token=..&join_request=..`` (a base64url ``WrappedJoinRequest``, gzip)
  with one peer connection, and only when ``/rtc/validate`` then answers 404 (not "room
  does not exist") falls back to ``/rtc`` and two connections; ``{room:
  {singlePeerConnection: false}}`` asks for ``/rtc`` directly. ``state.pcMode`` says
  which it got.
* ``state``: JSON of what happened (participants, subscriptions, active speakers,
  the disconnect reason, an event log).
* ``stats()``: identity → track sid → inbound-rtp figures (``framesDecoded``,
  ``totalSamplesReceived``, ``bytesReceived``, ...), from ``RemoteTrack.getRTCStatsReport()``.
* ``outboundStats()``: bytes sent per kind, and per local track its encodings and layers.
* ``disconnect()``; ``room``: the livekit ``Room`` itself.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager
from pathlib import Path
from typing import Any

import pytest
from playwright.async_api import Browser

from tests.harness.npm import LIVEKIT_CLIENT, npm_package, require_npm
from tests.harness.static_site import static_site
from tests.integration.browser import Participant, new_participant

LIVEKIT_PAGE = Path(__file__).with_name("livekit_page.html")


@pytest.fixture(scope="session")
def livekit_client_js() -> Path:
    """livekit-client's UMD build (global ``LivekitClient``), fetched once per machine."""
    require_npm()
    path = npm_package(*LIVEKIT_CLIENT) / "dist" / "livekit-client.umd.js"
    assert path.is_file(), f"{path} is missing from the livekit-client tarball"
    return path


def livekit_site(js_path: Path) -> AbstractAsyncContextManager[str]:
    """Serve the test page at ``/`` and livekit-client at ``/livekit-client.umd.js`` on
    127.0.0.1; yields the base URL (``http://127.0.0.1:<port>``)."""
    return static_site({"/": LIVEKIT_PAGE, "/livekit-client.umd.js": js_path})


@pytest.fixture
async def livekit_site_url(livekit_client_js: Path) -> AsyncIterator[str]:
    """:func:`livekit_site` for one test."""
    async with livekit_site(livekit_client_js) as url:
        yield url


async def open_livekit_page(browser: Browser, site_url: str, *, within: float = 20) -> Participant:
    """A new browser context (a separate person) on the test page, once ``window.lk`` is
    there; its console is kept in ``Participant.console`` for failure reports."""
    participant = await new_participant(browser)
    await participant.page.goto(site_url.rstrip("/") + "/")
    try:
        await participant.page.wait_for_function(
            "() => window.lk !== undefined", timeout=within * 1000
        )
    except Exception as error:
        await participant.close()
        raise AssertionError(
            f"the livekit page did not set window.lk: {error}; console: {participant.console}"
        ) from None
    return participant


async def lk_state(participant: Participant) -> dict[str, Any]:
    """``window.lk.state``: participants, subscriptions, speakers, disconnect reason."""
    state: dict[str, Any] = await participant.page.evaluate("() => window.lk.state")
    return state


async def lk_connect(
    participant: Participant, url: str, token: str, options: dict[str, Any] | None = None
) -> dict[str, Any]:
    """Join ``url`` (the SFU's ws(s) URL) with a LiveKit access token, then publish."""
    joined: dict[str, Any] = await participant.page.evaluate(
        "([url, token, options]) => window.lk.connect(url, token, options)",
        [url, token, options or {}],
    )
    return joined


async def lk_stats(participant: Participant) -> dict[str, dict[str, dict[str, Any]]]:
    """Identity → track sid → inbound-rtp figures (see livekit_page.html ``stats``)."""
    stats: dict[str, dict[str, dict[str, Any]]] = await participant.page.evaluate(
        "() => window.lk.stats()"
    )
    return stats


async def lk_outbound_stats(participant: Participant) -> dict[str, Any]:
    """``{bytesSent: {audio, video}, tracks: {sid: {encodings, layers, sendingRids}}}``."""
    stats: dict[str, Any] = await participant.page.evaluate("() => window.lk.outboundStats()")
    return stats
