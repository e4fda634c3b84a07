"""Fixtures for the media tests."""

from __future__ import annotations

import asyncio
import dataclasses
import threading
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from .helpers import Meeting, loopback_settings, wait_for


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Tests of a module that sets ``BOTH_PATHS`` run on the frame path and the packet
    path (``MediaSettings.packet_forwarding``)."""
    if "meetings" in metafunc.fixturenames and getattr(metafunc.module, "BOTH_PATHS", False):
        metafunc.parametrize("forwarding", ["frames", "packets"], indirect=True)


@pytest.fixture
def forwarding(request: pytest.FixtureRequest) -> bool | None:
    """Whether meetings forward packets (None: the settings' own choice)."""
    param = getattr(request, "param", None)
    return None if param is None else param == "packets"


def released(router_stats: Any) -> bool:
    return (
        router_stats.participants,
        router_stats.peer_connections,
        router_stats.published_tracks,
        router_stats.subscriptions,
        router_stats.tasks,
    ) == (0, 0, 0, 0, 0)


@pytest.fixture
async def meetings(forwarding: bool | None) -> AsyncIterator[Callable[..., Meeting]]:
    """Makes meetings; afterwards closes them and checks that nothing was left behind."""
    baseline = asyncio.all_tasks()
    made: list[Meeting] = []

    def make(**kwargs: Any) -> Meeting:
        if forwarding is not None:
            settings = kwargs.get("settings") or loopback_settings()
            kwargs["settings"] = dataclasses.replace(settings, packet_forwarding=forwarding)
        meeting = Meeting(**kwargs)
        made.append(meeting)
        return meeting

    yield make
    for meeting in made:
        await meeting.close()
        assert released(meeting.router.stats()), meeting.router.stats()

    def leftovers() -> set[asyncio.Task[Any]]:
        current = asyncio.current_task()
        return {t for t in asyncio.all_tasks() - baseline if t is not current}

    try:
        await wait_for(lambda: not leftovers(), within=5)
    except AssertionError:
        raise AssertionError(f"tasks left behind: {leftovers()}") from None
    assert [t.name for t in threading.enumerate() if "decoder" in t.name] == []
