"""The meeting page on its own in Chromium: what it says before any signaling.

Pure client-side checks, so the page and its static files come from a small loopback
server with the bridge's paths (`/meet/<id>`, `/meet/<id>/info`, `/static/`) and no
signaling; everything with a real meeting is in test_browser_meeting.py.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp import web
from playwright.async_api import Browser

from tests.harness.synapse import free_port
from tests.integration.browser import (
    FakeElement,
    browser,  # noqa: F401 - fixture
    fake_element,  # noqa: F401 - fixture
    new_participant,
    wait_for_state,
)

pytestmark = pytest.mark.integration

STATIC = Path(__file__).resolve().parents[2] / "bridge" / "web" / "static"
LIVE = "abc123"


@pytest.fixture
async def page_server() -> AsyncIterator[str]:
    """The page's HTTP paths: meeting ``abc123`` is live, every other one unknown."""

    async def page(_: web.Request) -> web.FileResponse:
        return web.FileResponse(STATIC / "meeting.html")

    async def info(request: web.Request) -> web.Response:
        if request.match_info["meeting_id"] != LIVE:
            return web.json_response({"error": "This meeting does not exist."}, status=404)
        return web.json_response({"meeting_id": LIVE, "title": "Client test", "state": "live"})

    app = web.Application()
    app.router.add_get("/meet/{meeting_id}", page)
    app.router.add_get("/meet/{meeting_id}/info", info)
    app.router.add_static("/static/", STATIC)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


async def test_without_a_link_the_page_says_how_to_get_one(
    browser: Browser,  # noqa: F811
    page_server: str,
) -> None:
    person = await new_participant(browser)
    await person.page.goto(f"{page_server}/meet/{LIVE}")
    await wait_for_state(person.page, "ended")
    assert await person.page.evaluate("() => window.visio.endReason") == "no_auth"
    assert await person.page.locator("#notice-title").inner_text() == "Sign-in needed"
    assert "!visio link" in await person.page.locator("#notice-text").inner_text()

    await person.page.goto(f"{page_server}/meet/nosuchmeeting#token=abc")
    await wait_for_state(person.page, "ended")
    assert await person.page.locator("#notice-title").inner_text() == "Meeting not found"
    assert not [line for line in person.console if line.startswith("pageerror")]


async def test_widget_api_answers_element_and_reports_a_refusal(
    browser: Browser,  # noqa: F811
    page_server: str,
    fake_element: FakeElement,  # noqa: F811
) -> None:
    person = await new_participant(browser)
    frame = await fake_element.open_widget(
        person.page,
        f"{page_server}/meet/{LIVE}?widget=1&userId=$matrix_user_id&displayName=$matrix_display_name",
        user_id="@bob:localhost",
        room_id="!room",
        widget_id=f"visio_{LIVE}",
        display_name="Bob Example",
        openid_mode="blocked",
    )
    problem = frame.locator("#auth-problem")
    await problem.wait_for(state="visible", timeout=10_000)
    assert "not allowed to confirm your identity" in await problem.inner_text()
    assert await frame.locator("#join-button").is_disabled()
    # The name Element passes in the widget URL is offered as the display name.
    assert await frame.locator("#display-name").input_value() == "Bob Example"

    versions = await person.page.evaluate(
        "() => window.fakeElement.request('supported_api_versions', {})"
    )
    assert "0.0.2" in versions["supported_versions"]
    unknown = await person.page.evaluate(
        "() => window.fakeElement.request('org.example.unknown', {})"
    )
    assert "error" in unknown
    log = await fake_element.log(person.page)
    capabilities = next(m for m in log if m["action"] == "capabilities" and "response" in m)
    assert capabilities["response"] == {"capabilities": []}
    # Every message the widget sent went to the parent and named its widget id.
    assert all(m["widgetId"] == f"visio_{LIVE}" for m in log if m["direction"] == "in")


async def test_widget_with_a_token_from_element_may_join(
    browser: Browser,  # noqa: F811
    page_server: str,
    fake_element: FakeElement,  # noqa: F811
) -> None:
    person = await new_participant(browser)
    token = {"access_token": "t0ken", "matrix_server_name": "localhost", "expires_in": 3600}
    frame = await fake_element.open_widget(
        person.page,
        f"{page_server}/meet/{LIVE}?widget=1",
        user_id="@bob:localhost",
        room_id="!room",
        widget_id=f"visio_{LIVE}",
        openid=token,
        openid_mode="allowed",
    )
    await frame.wait_for_function("() => !document.getElementById('join-button').disabled")
    assert await frame.locator("#auth-problem").is_hidden()
    log = await fake_element.log(person.page)
    answered = [m for m in log if m["action"] == "get_openid" and m["direction"] == "out"]
    assert answered and answered[0]["response"]["state"] == "allowed"
