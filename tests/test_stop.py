"""Stopping the bridge always ends: a stuck step is named and skipped, and the whole stop
is bounded by a watchdog that dumps every thread's stack."""

from __future__ import annotations

import asyncio
import faulthandler
import logging
import signal

import pytest

from bridge.__main__ import STOP_LIMIT, VisioBridge
from bridge.context import stop_in_order


async def test_a_stuck_step_is_named_and_the_next_steps_still_run(
    caplog: pytest.LogCaptureFixture,
) -> None:
    done: list[str] = []
    forever = asyncio.Event()

    async def stuck() -> None:
        await forever.wait()

    async def quick() -> None:
        done.append("database")

    with caplog.at_level(logging.WARNING, logger="visio.bridge"):
        await stop_in_order([("meetings", stuck), ("database", quick)], timeout=0.05)
    assert done == ["database"]
    [warning] = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert "Stopping the meetings took over" in warning.getMessage()


async def test_a_failing_step_is_logged_and_the_next_steps_still_run(
    caplog: pytest.LogCaptureFixture,
) -> None:
    done: list[str] = []

    async def broken() -> None:
        raise RuntimeError("boom")

    async def quick() -> None:
        done.append("database")

    with caplog.at_level(logging.ERROR, logger="visio.bridge"):
        await stop_in_order([("web listener", broken), ("database", quick)], timeout=1)
    assert done == ["database"]
    [error] = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert error.getMessage() == "Stopping the web listener failed; going on"
    assert error.exc_info is not None and "boom" in str(error.exc_info[1])


def test_the_stop_is_bounded_by_a_watchdog(monkeypatch: pytest.MonkeyPatch) -> None:
    armed: list[tuple[float, bool]] = []
    monkeypatch.setattr(
        faulthandler,
        "dump_traceback_later",
        lambda timeout, exit=False: armed.append((timeout, exit)),
    )
    handlers = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    program = VisioBridge()
    program.log = logging.getLogger("visio.init")  # type: ignore[assignment]
    try:
        program.prepare_stop()
        assert armed == [(STOP_LIMIT, True)]
        # A second signal while stopping is noted, not raised.
        handler = signal.getsignal(signal.SIGTERM)
        assert callable(handler)
        handler(signal.SIGTERM, None)
    finally:
        for sig, previous in handlers.items():
            signal.signal(sig, previous)
