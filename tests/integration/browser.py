"""Debian's Chromium, driven by Playwright, as meeting participants.

Chromium is launched headless with fake camera, microphone and screen (no prompts), and
kept on loopback: no mDNS host names, no background or component traffic, no QUIC.
Playwright gives every launch a fresh temporary profile (its own ``--user-data-dir``,
removed on close), and every participant gets its own browser context (cookies,
storage and permissions of its own), like a separate person's browser.

``getDisplayMedia`` needs nothing more on Chromium 156: with
``--use-fake-ui-for-media-stream`` the picker is skipped and the fake capture device
returns a 1280x720 "screen" (``displaySurface: "monitor"``), in a frame too.

The page exposes ``window.visio`` for tests (see bridge/web/static/meeting.js): its
state, its two ``RTCPeerConnection``s and what it receives.
"""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import pytest
from aiohttp import web
from playwright.async_api import Browser, BrowserContext, Frame, Page, async_playwright

from tests.conftest import require_or_skip
from tests.harness.synapse import free_port

CHROMIUM_ARGS = (
    "--no-sandbox",
    "--use-fake-device-for-media-stream",
    "--use-fake-ui-for-media-stream",
    # Without it, host candidates are .local names whose resolution multicasts off the box.
    "--disable-features=WebRtcHideLocalIpsWithMdns",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-gpu",
    "--disable-quic",
)
T = TypeVar("T")
FAKE_ELEMENT = Path(__file__).with_name("fake_element.html")

# A page or the meeting widget's frame inside the fake Element page.
Target = Page | Frame


def chromium_path() -> str | None:
    """Debian's chromium (``apt-get install chromium``); never a downloaded browser."""
    return shutil.which("chromium")


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    """A fresh headless Chromium for one test."""
    path = chromium_path()
    require_or_skip(path is not None, "Debian chromium (apt-get install chromium)")
    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(
            executable_path=path, headless=True, args=list(CHROMIUM_ARGS)
        )
        try:
            yield launched
        finally:
            await launched.close()


@dataclass
class Participant:
    """One person's browser context and page, with its console kept for failure reports."""

    context: BrowserContext
    page: Page
    console: list[str] = field(default_factory=list)

    async def close(self) -> None:
        await self.context.close()

    def csp_violations(self) -> list[str]:
        """What the page's Content-Security-Policy blocked (inline code, foreign loads)."""
        return [line for line in self.console if "csp-violation" in line]


# Reports every Content-Security-Policy violation to the console, where tests see it.
_REPORT_CSP_JS = """
document.addEventListener("securitypolicyviolation", (event) => {
  console.warn(`csp-violation: ${event.violatedDirective} ${event.blockedURI}`);
});
"""

# What a browser does when the user refuses the camera and microphone prompt.
_DENY_MEDIA_JS = """
navigator.mediaDevices.getUserMedia = async () => {
  throw new DOMException("Permission denied", "NotAllowedError");
};
"""


async def new_participant(browser: Browser, *, deny_media: bool = False) -> Participant:
    """A new browser context (a separate person) with one page; ``deny_media``: the
    person refuses camera and microphone."""
    context = await browser.new_context(viewport={"width": 960, "height": 600})
    await context.add_init_script(_REPORT_CSP_JS)
    if deny_media:
        await context.add_init_script(_DENY_MEDIA_JS)
    page = await context.new_page()
    participant = Participant(context, page)
    page.on(
        "console", lambda message: participant.console.append(f"{message.type}: {message.text}")
    )
    page.on("pageerror", lambda error: participant.console.append(f"pageerror: {error}"))
    return participant


async def state_of(target: Target) -> str | None:
    state: str | None = await target.evaluate("() => window.visio?.state ?? null")
    return state


async def wait_for_state(target: Target, *states: str, within: float = 20) -> str:
    """Wait until ``window.visio.state`` is one of ``states``; returns it."""
    await target.wait_for_function(
        "states => states.includes(window.visio?.state)", arg=list(states), timeout=within * 1000
    )
    return str(await state_of(target))


async def join_from_prejoin(
    target: Target,
    *,
    display_name: str | None = None,
    without_media: bool = False,
    within: float = 20,
) -> None:
    """On the pre-join screen: wait for Join to be usable, set the name, join (with
    ``without_media``, by "Join without camera and microphone")."""
    join = target.locator("#join-without-media" if without_media else "#join-button")
    await join.wait_for(state="visible", timeout=within * 1000)
    await target.wait_for_function(
        "() => !document.getElementById('join-button').disabled", timeout=within * 1000
    )
    if display_name is not None:
        await target.locator("#display-name").fill(display_name)
    await join.click()
    await wait_for_state(target, "joined", within=within)


async def open_meeting(
    page: Page,
    url: str,
    *,
    display_name: str | None = None,
    without_media: bool = False,
    within: float = 20,
) -> None:
    """Open a meeting URL (a personal link) and join it as a user would."""
    await page.goto(url)
    await join_from_prejoin(
        page, display_name=display_name, without_media=without_media, within=within
    )


_REMOTE_MEDIA_JS = """
async () => {
  const pc = window.visio?.receivePc;
  if (!pc) return {};
  const reports = {};
  for (const report of (await pc.getStats()).values()) {
    if (report.type === "inbound-rtp") reports[report.mid] = report;
  }
  const result = {};
  for (const track of window.visio.remoteTracks) {
    const report = reports[track.mid] ?? {};
    (result[track.participantId] ??= {})[track.source] = {
      kind: track.kind,
      framesDecoded: report.framesDecoded ?? 0,
      frameWidth: report.frameWidth ?? 0,
      packetsReceived: report.packetsReceived ?? 0,
      totalSamplesReceived: report.totalSamplesReceived ?? 0,
      // The sender's NTP time of what plays now, known from its RTCP sender reports.
      estimatedPlayoutTimestamp: report.estimatedPlayoutTimestamp ?? null,
    };
  }
  return result;
}
"""


async def remote_media(target: Target) -> dict[str, dict[str, dict[str, Any]]]:
    """What the receive connection gets: participant id → source → inbound-rtp figures."""
    result: dict[str, dict[str, dict[str, Any]]] = await target.evaluate(_REMOTE_MEDIA_JS)
    return result


async def poll_stats(
    read: Callable[[], Awaitable[T]], done: Callable[[T], bool], within: float, every: float = 0.25
) -> tuple[bool, T]:
    """Read figures (``getStats()``, which has no event to wait for) until ``done`` says
    they are there, for at most ``within`` seconds: (whether they came, the last read)."""
    last = await read()
    try:
        async with asyncio.timeout(within):
            while not done(last):
                await asyncio.sleep(every)
                last = await read()
    except TimeoutError:
        return False, last
    return True, last


def _flowing(stats: dict[str, Any] | None) -> bool:
    if not stats:
        return False
    if stats["kind"] == "video":
        return bool(stats["framesDecoded"] > 0)
    return bool(stats["packetsReceived"] > 0 and stats["totalSamplesReceived"] > 0)


async def wait_for_remote_media(
    target: Target,
    participants: int | Iterable[str],
    sources: Iterable[str] = ("camera", "microphone"),
    within: float = 20,
) -> dict[str, dict[str, dict[str, Any]]]:
    """Poll ``getStats()`` of the receive connection until, from each expected remote
    participant (a count, or their ids), every source in ``sources`` flows: video with
    decoded frames, audio with packets and decoded samples. Returns the last figures."""
    wanted = tuple(sources)

    def done(last: dict[str, dict[str, dict[str, Any]]]) -> bool:
        ready = [pid for pid, media in last.items() if all(_flowing(media.get(s)) for s in wanted)]
        if isinstance(participants, int):
            return len(ready) >= participants
        return set(participants) <= set(ready)

    came, last = await poll_stats(lambda: remote_media(target), done, within, every=0.2)
    if not came:
        raise AssertionError(
            f"no {'/'.join(wanted)} from {participants} remote participant(s) within "
            f"{within:g} s; receiving: {last}"
        )
    return last


def tiles_selector(source: str = "camera") -> str:
    return f'.tile[data-source="{source}"]'


async def tile_count(target: Target, source: str = "camera") -> int:
    return await target.locator(tiles_selector(source)).count()


async def wait_for_tiles(
    target: Target, count: int, source: str = "camera", within: float = 20
) -> None:
    """Wait until the stage shows exactly ``count`` tiles of ``source``."""
    await target.wait_for_function(
        "([selector, count]) => document.querySelectorAll(selector).length === count",
        arg=[tiles_selector(source), count],
        timeout=within * 1000,
    )


class FakeElement:
    """Serves tests/integration/fake_element.html on loopback: a parent page that embeds a
    widget URL in an iframe and plays Element's part of the Matrix widget API."""

    def __init__(self) -> None:
        self.port = free_port()
        self.runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/element/"

    async def start(self) -> None:
        app = web.Application()

        async def page(_: web.Request) -> web.FileResponse:
            return web.FileResponse(FAKE_ELEMENT, headers={"Cache-Control": "no-store"})

        app.router.add_get("/element/", page)
        self.runner = web.AppRunner(app, access_log=None)
        await self.runner.setup()
        await web.TCPSite(self.runner, "127.0.0.1", self.port).start()

    async def stop(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()

    async def open_widget(
        self,
        page: Page,
        widget_url: str,
        *,
        user_id: str,
        room_id: str,
        widget_id: str,
        display_name: str = "",
        openid: dict[str, Any] | None = None,
        openid_mode: str = "allowed",
        within: float = 20,
    ) -> Frame:
        """Open the fake Element, embed the widget and return the widget's frame.

        ``openid_mode``: "allowed" answers ``get_openid`` at once, "request" answers
        ``{state: "request"}`` and sends the token after in ``openid_credentials``, and
        "blocked" refuses.
        """
        await page.goto(self.url)
        await page.evaluate(
            "options => window.fakeElement.start(options)",
            {
                "widgetUrl": widget_url,
                "userId": user_id,
                "roomId": room_id,
                "widgetId": widget_id,
                "displayName": display_name,
                "openid": openid,
                "openidMode": openid_mode,
            },
        )
        frame_element = await page.wait_for_selector("iframe#widget", timeout=within * 1000)
        assert frame_element is not None
        frame = await frame_element.content_frame()
        assert frame is not None
        await frame.wait_for_function("() => window.visio !== undefined", timeout=within * 1000)
        return frame

    async def log(self, page: Page) -> list[dict[str, Any]]:
        """Every widget API message seen by the fake Element, both ways."""
        messages: list[dict[str, Any]] = await page.evaluate("() => window.fakeElement.log")
        return messages


@pytest.fixture
async def fake_element() -> AsyncIterator[FakeElement]:
    host = FakeElement()
    await host.start()
    try:
        yield host
    finally:
        await host.stop()
