"""The bridge is killed (SIGKILL, no goodbye) mid-meeting and started again: the meeting
is restored from the database and the browsers rejoin by themselves."""

from __future__ import annotations

import asyncio
import signal
import sys
from pathlib import Path

from playwright.async_api import Browser

from tests.integration.browser import (
    browser,  # noqa: F401 - the fixture
    new_participant,
    open_meeting,
    wait_for_remote_media,
    wait_for_state,
)
from tests.integration.conftest import terminate
from tests.integration.test_cli import Setup, setup  # noqa: F401 - the fixture


async def start_bridge(config: Path, log: Path) -> asyncio.subprocess.Process:
    with log.open("ab") as stream:
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "bridge",
            "-c",
            str(config),
            stdout=stream,
            stderr=asyncio.subprocess.STDOUT,
            cwd=config.parent,
        )
    return process


async def ready_count(log: Path, count: int) -> None:
    async with asyncio.timeout(30):
        while log.read_text().count("Visio Bridge ready") < count:  # noqa: ASYNC110, ASYNC240
            await asyncio.sleep(0.1)


async def test_pages_rejoin_after_the_bridge_is_killed(
    setup: Setup,  # noqa: F811
    browser: Browser,  # noqa: F811
) -> None:
    log = setup.config.parent / "bridge.log"
    process = await start_bridge(setup.config, log)
    people = []
    try:
        await ready_count(log, 1)
        bot = f"@visio:{setup.homeserver.server_name}"
        alice = await setup.homeserver.client_for("alice")
        bob = await setup.homeserver.client_for("bob")
        async with alice, bob:
            room_id = await alice.create_room(name="Crash")
            await alice.invite(room_id, bob.user_id)
            await bob.join(room_id)
            await alice.invite(room_id, bot)
            await alice.wait_for_message(room_id, lambda e: "Hello" in str(e["content"]))
            await alice.send_text(room_id, "!visio start Crash test")
            started = await alice.wait_for_message(
                room_id, lambda e: "started" in e["content"].get("body", "")
            )
            meeting_url = started["content"]["body"].split("Join: ", 1)[1].split()[0]
            urls = []
            for user in (alice, bob):
                await user.send_text(room_id, "!visio link")
                direct = await user.wait_for_invite()
                await user.join(direct)
                message = await user.wait_for_message(
                    direct, lambda e: "#token=" in e["content"].get("body", ""), anywhere=True
                )
                urls.append(message["content"]["body"].split()[-1])
            for url in urls:
                person = await new_participant(browser)
                people.append(person)
                await open_meeting(person.page, url)
            ids = [
                await person.page.evaluate("() => window.visio.self.participant_id")
                for person in people
            ]
            await wait_for_remote_media(people[0].page, [ids[1]])

            process.send_signal(signal.SIGKILL)  # no goodbye: sockets just drop
            await process.wait()
            for person in people:
                await wait_for_state(person.page, "reconnecting")
            process = await start_bridge(setup.config, log)
            await ready_count(log, 2)
            for person in people:
                await wait_for_state(person.page, "joined", within=10)
            new_ids = [
                await person.page.evaluate("() => window.visio.self.participant_id")
                for person in people
            ]
            await wait_for_remote_media(people[0].page, [new_ids[1]])
            await wait_for_remote_media(people[1].page, [new_ids[0]])
            # The same meeting, restored from the database, answers commands.
            assert all(url.startswith(meeting_url) for url in urls)
            await alice.send_text(room_id, "!visio status")
            status = await alice.wait_for_message(
                room_id, lambda e: "2 in the meeting now" in e["content"].get("body", "")
            )
            assert "Crash test" in status["content"]["body"]
    finally:
        for person in people:
            await person.close()
        await terminate(process, log)
