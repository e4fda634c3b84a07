"""Element Call itself (npm ``@element-hq/element-call-embedded``), hosted as Element Web
hosts it, for tests of the bridge's Element Call door.

:func:`element_call_site` serves, on loopback:

* ``/``: tests/integration/element_call_host.html, a Matrix client page that embeds
  Element Call in an iframe with Element Web's URL parameters and plays Element Web's
  part of the widget API with matrix-widget-api's ``ClientWidgetApi`` (the very version
  Element Call bundles); its driver does every request on the real Synapse with the
  person's access token, and a /sync loop feeds the widget (element_call_host.js).
* ``/matrix-widget-api.js`` (UMD build) and ``/element_call_host.js``;
* ``/element-call/``: the embedded build's ``dist/`` (``index.html``, ``config.json``,
  ``assets/``), same origin as the host page, so tests can read inside the iframe.

Every frame of a participant's context records its ``RTCPeerConnection``s in
``window.__pcs``, so a test reads what Element Call receives with ``getStats()``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from playwright.async_api import Browser, Frame

from tests.harness.npm import ELEMENT_CALL_EMBEDDED, MATRIX_WIDGET_API, npm_package, require_npm
from tests.harness.static_site import static_site
from tests.harness.synapse import RegisteredUser
from tests.integration.browser import Participant, new_participant

HERE = Path(__file__).parent
HOST_PAGE = HERE / "element_call_host.html"
HOST_SCRIPT = HERE / "element_call_host.js"

# Keeps every peer connection a frame makes (Element Call's are livekit-client's).
_RECORD_PEER_CONNECTIONS_JS = """
(() => {
  const Original = window.RTCPeerConnection;
  if (!Original || Original.__recorded) return;
  window.__pcs = [];
  class Recorded extends Original {
    constructor(...args) {
      super(...args);
      window.__pcs.push(this);
    }
  }
  Recorded.__recorded = true;
  window.RTCPeerConnection = Recorded;
})();
"""

# Per remote track that flows: kind, frames decoded, audio samples, bytes.
_INBOUND_JS = """
async () => {
  const result = [];
  for (const pc of window.__pcs ?? []) {
    if (pc.connectionState === "closed") continue;
    for (const report of (await pc.getStats()).values()) {
      if (report.type !== "inbound-rtp") continue;
      result.push({
        kind: report.kind,
        trackIdentifier: report.trackIdentifier,
        framesDecoded: report.framesDecoded ?? 0,
        frameWidth: report.frameWidth ?? 0,
        totalSamplesReceived: report.totalSamplesReceived ?? 0,
        bytesReceived: report.bytesReceived ?? 0,
        packetsReceived: report.packetsReceived ?? 0,
      });
    }
  }
  return result;
}
"""


# What Element Call shows of each remote camera: for every <video> playing a track that a
# peer connection receives, the share of "fake camera green" pixels. Chromium's fake
# camera paints a green picture (dark green ground, bright green disc); frames still
# encrypted, fed to the decoder as they are, decode (when they do) to anything but that.
_REMOTE_PICTURES_JS = """
() => {
  const remote = new Set(
    (window.__pcs ?? []).flatMap((pc) => pc.getReceivers().map((r) => r.track?.id)),
  );
  const canvas = document.createElement("canvas");
  canvas.width = 64;
  canvas.height = 36;
  const context = canvas.getContext("2d", { willReadFrequently: true });
  const pictures = [];
  for (const video of document.querySelectorAll("video")) {
    const track = video.srcObject?.getVideoTracks?.()[0];
    if (!track || !remote.has(track.id) || video.videoWidth === 0) continue;
    context.drawImage(video, 0, 0, canvas.width, canvas.height);
    const pixels = context.getImageData(0, 0, canvas.width, canvas.height).data;
    let green = 0;
    for (let i = 0; i < pixels.length; i += 4) {
      const [r, g, b] = [pixels[i], pixels[i + 1], pixels[i + 2]];
      if (g > r + 40 && g > b + 40) green += 1;
    }
    pictures.push({ width: video.videoWidth, green: green / (pixels.length / 4) });
  }
  return pictures;
}
"""


@dataclass(frozen=True)
class ElementCallFiles:
    dist: Path
    widget_api_js: Path


@pytest.fixture(scope="session")
def element_call_files() -> ElementCallFiles:
    """The pinned Element Call build and matrix-widget-api, fetched once per machine."""
    require_npm()
    dist = npm_package(*ELEMENT_CALL_EMBEDDED) / "dist"
    widget_api = npm_package(*MATRIX_WIDGET_API) / "dist" / "api.js"
    assert (dist / "index.html").is_file(), f"{dist} has no index.html"
    assert widget_api.is_file(), f"{widget_api} is missing from the matrix-widget-api tarball"
    return ElementCallFiles(dist, widget_api)


def element_call_site(files: ElementCallFiles) -> AbstractAsyncContextManager[str]:
    """Serve the host page, its scripts and Element Call on 127.0.0.1; yields the base
    URL (``http://127.0.0.1:<port>``)."""
    return static_site(
        {
            "/": HOST_PAGE,
            "/element_call_host.js": HOST_SCRIPT,
            "/matrix-widget-api.js": files.widget_api_js,
            "/element-call/": files.dist / "index.html",
        },
        {"/element-call/": files.dist},
    )


@pytest.fixture
async def element_call_url(element_call_files: ElementCallFiles) -> AsyncIterator[str]:
    """:func:`element_call_site` for one test."""
    async with element_call_site(element_call_files) as url:
        yield url


@dataclass
class CallPage:
    """One person's Element Web stand-in with Element Call in its iframe."""

    person: Participant
    frame: Frame

    async def host_state(self) -> dict[str, Any]:
        state: dict[str, Any] = await self.person.page.evaluate(
            "() => JSON.parse(JSON.stringify(window.ecHost.state))"
        )
        return state

    async def inbound(self) -> list[dict[str, Any]]:
        """inbound-rtp figures of every peer connection Element Call made."""
        stats: list[dict[str, Any]] = await self.frame.evaluate(_INBOUND_JS)
        return stats

    async def remote_pictures(self) -> list[dict[str, float]]:
        """Per remote camera Element Call shows: its width and its share of green pixels
        (Chromium's fake camera is green; see ``_REMOTE_PICTURES_JS``)."""
        pictures: list[dict[str, float]] = await self.frame.evaluate(_REMOTE_PICTURES_JS)
        return pictures

    async def tiles(self) -> list[str]:
        """The names on Element Call's video tiles."""
        names: list[str] = await self.frame.evaluate(
            """() => [...document.querySelectorAll('[data-testid="videoTile"]')].map(
                 (tile) => tile.querySelector('[data-testid="name_tag"]')?.textContent ?? "")"""
        )
        return names

    async def hang_up(self) -> None:
        """The person presses Element Call's own hang-up button."""
        await self.frame.locator('[data-testid="incall_leave"]').click()

    async def close(self) -> None:
        await self.person.close()


async def open_element_call(
    browser: Browser,
    site_url: str,
    user: RegisteredUser,
    room_id: str,
    *,
    intent: str,
    per_participant_e2ee: bool,
    within: float = 30,
) -> CallPage:
    """A new browser context (a separate person, on a device of their own) on the host
    page, with Element Call loaded in the room; returns once its iframe is there."""
    person = await new_participant(browser)
    await person.context.add_init_script(_RECORD_PEER_CONNECTIONS_JS)
    await person.page.goto(site_url.rstrip("/") + "/")
    await person.page.evaluate(
        "options => window.ecHost.start(options)",
        {
            "homeserverUrl": user.homeserver_url,
            "accessToken": user.access_token,
            "userId": user.user_id,
            "deviceId": user.device_id,
            "roomId": room_id,
            "elementCallUrl": "/element-call/index.html",
            "intent": intent,
            "perParticipantE2EE": per_participant_e2ee,
        },
    )
    element = await person.page.wait_for_selector("iframe#element-call", timeout=within * 1000)
    assert element is not None
    frame = await element.content_frame()
    assert frame is not None
    return CallPage(person, frame)
