"""Recording, transcription and live captions on the meeting page, in real Chromium
against the real bridge and Synapse.

Recording and transcription are turned on and off from the test's process through
``Meetings.set_capture`` (which tells every door); captions, which no server part sends
yet, are put on a person's own signaling session as the server would send them.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import pytest
from playwright.async_api import Browser

from bridge.meeting.meetings import Meetings
from bridge.web.signaling import Session
from tests.integration.browser import (
    FakeElement,
    Participant,
    Target,
    browser,  # noqa: F401 - fixture
    fake_element,  # noqa: F401 - fixture
    join_from_prejoin,
    open_meeting,
)
from tests.integration.conftest import Stack
from tests.integration.test_browser_meeting import Meet, live_meeting

# The pages are the subject here, not the database: SQLite only (see tests/conftest.py).
pytestmark = [pytest.mark.integration, pytest.mark.one_database]

WITHIN_MS = 10_000


@dataclass
class Room(Meet):
    """A live meeting in a room where alice (who started it), bob and carol are members;
    people join with links made here rather than asked of the bot."""

    @property
    def meetings(self) -> Meetings:
        assert self.stack.bridge is not None
        return self.stack.bridge.meetings

    def link(self, name: str) -> str:
        """A personal link for ``name``, as ``!visio link`` would send it."""
        bridge = self.stack.bridge
        assert bridge is not None
        token = bridge.links.make(
            self.meeting.id, self.users[name].user_id, bridge.clock.now_ms() // 1000
        )
        return f"{self.stack.config['web.public_url']}/meet/{self.meeting.id}#token={token}"

    async def join(self, name: str, *, deny_media: bool = False) -> Participant:
        person = await self.browser_for(deny_media=deny_media)
        await open_meeting(person.page, self.link(name), without_media=deny_media)
        return person

    def session_of(self, participant_id: str) -> Session:
        """The signaling session the bridge serves that participant with."""
        attendee = self.meeting.participants[participant_id].attendee
        assert isinstance(attendee, Session)
        return attendee


@pytest.fixture
async def room(stack: Stack, browser: Browser) -> AsyncIterator[Room]:  # noqa: F811
    result = await live_meeting(stack, browser, "Capture test", Room)
    try:
        yield result
        assert [v for person in result.people for v in person.csp_violations()] == []
        errors = [line for p in result.people for line in p.console if "pageerror" in line]
        assert errors == []
    except BaseException:
        print(result.report())
        raise
    finally:
        for person in result.people:
            await person.close()


async def participant_id(target: Target) -> str:
    return str(await target.evaluate("() => window.visio.self.participant_id"))


async def wait_for_badge(target: Target, badge: str, words: list[str]) -> None:
    """Wait until the badge shows exactly ``words`` (hidden when none)."""
    await target.wait_for_function(
        """([id, words]) => {
          const badge = document.getElementById(id);
          const items = [...badge.querySelectorAll(".capture-item")];
          const shown = items.map((item) => item.textContent.trim());
          return badge.hidden === (words.length === 0) && shown.join("|") === words.join("|");
        }""",
        arg=[badge, words],
        timeout=WITHIN_MS * 2,
    )


async def wait_for_announcement(target: Target, region: str, pattern: str) -> str:
    """Wait until the live region (``announce-polite``/``announce-alert``) says
    something matching ``pattern`` (a regular expression); returns what it says."""
    await target.wait_for_function(
        "([id, pattern]) => new RegExp(pattern).test(document.getElementById(id).textContent)",
        arg=[region, pattern],
        timeout=WITHIN_MS,
    )
    return str(await target.locator(f"#{region}").text_content())


async def test_everyone_is_told_when_the_meeting_is_recorded_or_transcribed(
    room: Room,
    fake_element: FakeElement,  # noqa: F811
) -> None:
    alice = await room.join("alice")
    page = alice.page
    assert await page.locator("#meeting-capture").is_hidden()
    # Live regions exist before anything is said in them, as screen readers need.
    assert await page.locator("#announce-polite").get_attribute("aria-live") == "polite"
    assert await page.locator("#announce-alert").get_attribute("aria-live") == "assertive"
    await page.locator("#control-hand").focus()

    # Recording starts: a badge in words and icon, said at once to screen readers, and
    # the keyboard focus stays where the person left it.
    assert await room.meetings.set_capture(room.meeting, recording=True)
    await wait_for_badge(page, "meeting-capture", ["Recording"])
    said = await wait_for_announcement(page, "announce-alert", "recorded")
    assert said == "This meeting is now being recorded."
    badge = page.locator("#meeting-capture")
    assert await badge.locator(".capture-recording svg[aria-hidden='true']").count() == 1
    assert await badge.get_attribute("title") == "This meeting is being recorded."
    assert await page.evaluate("() => document.activeElement.id") == "control-hand"

    # Carol opens her link while it records: her pre-join screen says so before she
    # joins, and the Join button is described by what joining means.
    carol = await room.browser_for(deny_media=True)
    await carol.page.goto(room.link("carol"))
    await wait_for_badge(carol.page, "prejoin-capture", ["Recording"])
    note = carol.page.locator("#prejoin-capture-note")
    assert "recorded" in await note.inner_text()
    described = await carol.page.locator("#join-button").get_attribute("aria-describedby")
    assert described == "prejoin-capture-note"
    await wait_for_announcement(carol.page, "announce-polite", "being recorded")

    # Bob, in Element's widget frame, sees the same on his pre-join screen, and then
    # transcription starting while he waits there.
    bob_user = room.users["bob"]
    widget = await bob_user.get_state(
        room.room_id, "im.vector.modular.widgets", f"visio_{room.meeting.id}"
    )
    assert widget is not None
    bob = await room.browser_for()
    frame = await fake_element.open_widget(
        bob.page,
        widget["url"],
        user_id=bob_user.user_id,
        room_id=room.room_id,
        widget_id=f"visio_{room.meeting.id}",
        openid=await bob_user.request_openid_token(),
    )
    await wait_for_badge(frame, "prejoin-capture", ["Recording"])
    assert await room.meetings.set_capture(room.meeting, transcribing=True)
    await wait_for_badge(page, "meeting-capture", ["Recording", "Transcribing"])
    await wait_for_announcement(page, "announce-polite", "now being transcribed")
    # The pre-join screen looks again every few seconds.
    await wait_for_badge(frame, "prejoin-capture", ["Recording", "Transcribing"])
    await wait_for_announcement(frame, "announce-polite", "now being transcribed")

    # Once in, the meeting screen shows it, and the join announcement says it too.
    await join_from_prejoin(frame)
    await wait_for_badge(frame, "meeting-capture", ["Recording", "Transcribing"])
    said = await wait_for_announcement(frame, "announce-polite", "You joined")
    assert "This meeting is being recorded and transcribed." in said

    # Both stop: the badges go, and that is said politely.
    assert await room.meetings.set_capture(room.meeting, recording=False, transcribing=False)
    for target in (page, frame):
        await wait_for_badge(target, "meeting-capture", [])
        said = await wait_for_announcement(target, "announce-polite", "stopped")
        assert said == "Recording stopped. Transcription stopped."
    assert await page.evaluate("() => document.activeElement.id") == "control-hand"


def send_caption(room: Room, to: str, participant_id: str, text: str) -> None:
    room.session_of(to).send({"type": "caption", "participant_id": participant_id, "text": text})


def send_status(room: Room, to: str, limited: bool, message: str) -> None:
    room.session_of(to).send({"type": "captions_status", "limited": limited, "message": message})


async def wait_for_status(target: Target, words: str) -> None:
    """Wait until the captions status line says ``words`` ("" : hidden). Messages keep
    their order, so this also means every earlier message was handled."""
    await target.wait_for_function(
        """words => {
          const status = document.getElementById("captions-status");
          return words ? !status.hidden && status.textContent === words : status.hidden;
        }""",
        arg=words,
        timeout=WITHIN_MS,
    )


async def test_captions_show_under_the_speakers_tile_and_can_be_hidden(room: Room) -> None:
    alice = await room.join("alice")
    bob = await room.join("bob", deny_media=True)
    page = alice.page
    alice_id, bob_id = await participant_id(page), await participant_id(bob.page)
    toggle = page.locator("#control-captions")
    assert await toggle.is_hidden()  # nothing to caption yet

    assert await room.meetings.set_capture(room.meeting, transcribing=True)
    await toggle.wait_for(state="visible", timeout=WITHIN_MS)
    assert await toggle.get_attribute("aria-pressed") == "true"
    assert await page.locator("nav.controls").get_by_role("button", name="Captions").count() == 1

    # Bob's words appear under his tile, not under anyone else's.
    bob_line = page.locator(f'.tile[data-participant-id="{bob_id}"] .live-caption')
    send_caption(room, alice_id, bob_id, "Bonjour à tous")
    await bob_line.wait_for(state="visible", timeout=WITHIN_MS)
    assert await bob_line.inner_text() == "Bonjour à tous"
    assert await page.locator('.tile[data-local="true"] .live-caption').is_hidden()

    # His next words replace them; untrusted text stays text, cut to a readable length.
    hostile = '<img src="x" onerror="window.pwned = 1">' + " blah" * 200
    send_caption(room, alice_id, bob_id, hostile)
    await page.wait_for_function(
        "line => line.textContent.startsWith('<img')", arg=await bob_line.element_handle()
    )
    text = await bob_line.text_content()
    assert text is not None and len(text) <= 200 and text.endswith("…")
    assert await bob_line.locator("img").count() == 0
    assert await page.evaluate("() => window.pwned") is None

    # They fade after a few seconds.
    send_caption(room, alice_id, bob_id, "À bientôt")
    await page.wait_for_function(
        "line => line.textContent === 'À bientôt'", arg=await bob_line.element_handle()
    )
    await bob_line.wait_for(state="hidden", timeout=15_000)

    # The server cannot caption everyone: said discreetly, and politely announced.
    limit = "Captions are paused for some people: the server is too busy."
    send_status(room, alice_id, True, limit)
    await wait_for_status(page, limit)
    await wait_for_announcement(page, "announce-polite", "too busy")
    send_status(room, alice_id, False, "")
    await wait_for_status(page, "")

    # Alice hides captions: what shows goes, and what comes is not shown.
    send_caption(room, alice_id, bob_id, "Encore une chose")
    await bob_line.wait_for(state="visible", timeout=WITHIN_MS)
    await toggle.click()
    assert await toggle.get_attribute("aria-pressed") == "false"
    assert await bob_line.is_hidden()
    send_caption(room, alice_id, bob_id, "Hidden words")
    send_status(room, alice_id, True, "marker")
    await wait_for_status(page, "marker")
    assert await bob_line.is_hidden()

    # The choice is remembered: after a reload (and a new link) captions stay hidden.
    # (Only a fragment added to the page's address would not load it again.)
    await page.goto("about:blank")
    await page.goto(room.link("alice"))
    await join_from_prejoin(page)
    alice_id = await participant_id(page)
    await toggle.wait_for(state="visible", timeout=WITHIN_MS)
    assert await toggle.get_attribute("aria-pressed") == "false"
    send_caption(room, alice_id, bob_id, "Still hidden")
    send_status(room, alice_id, True, "second marker")
    await wait_for_status(page, "second marker")
    assert await bob_line.is_hidden()

    # And shown again on request.
    await toggle.click()
    assert await toggle.get_attribute("aria-pressed") == "true"
    stored: Any = await page.evaluate("() => localStorage.getItem('visio.captions')")
    assert stored == "on"
    send_caption(room, alice_id, bob_id, "Visible again")
    await bob_line.wait_for(state="visible", timeout=WITHIN_MS)
    assert await bob_line.inner_text() == "Visible again"
