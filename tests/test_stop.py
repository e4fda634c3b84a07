"""Stopping the bridge always ends: a stuck step is named and skipped, and the whole stop
is bounded by a watchdog that dumps every thread's stack."""

from __future__ import annotations

import asyncio
import faulthandler
import logging
import os
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
    program.loop = asyncio.new_event_loop()
    try:
        program.prepare_stop()
        assert armed == [(STOP_LIMIT, True)]
        # A second signal while stopping is noted, not raised.
        handler = signal.getsignal(signal.SIGTERM)
        assert callable(handler)
        handler(signal.SIGTERM, None)
    finally:
        program.loop.close()
        for sig, previous in handlers.items():
            signal.signal(sig, previous)


async def test_once_started_a_signal_asks_for_a_clean_stop_between_steps(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Past the start, SIGTERM must not raise KeyboardInterrupt inside a task (which
    would keep a database connection for ever and hang the stop): the loop takes it."""

    class StubBridge:
        def __init__(self, config: object) -> None:
            pass

        async def start(self) -> None:
            pass

        async def ping_homeserver(self) -> None:
            pass

        async def stop(self) -> None:
            pass

    monkeypatch.setattr("bridge.__main__.Bridge", StubBridge)
    monkeypatch.setattr(faulthandler, "dump_traceback_later", lambda timeout, exit=False: None)
    handlers = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    loop = asyncio.get_running_loop()
    program = VisioBridge()
    program.log = logging.getLogger("visio.init")  # type: ignore[assignment]
    program.loop = loop
    program.config = None  # type: ignore[assignment]  # the stub needs none
    program._stop_task = loop.create_future()
    busy = asyncio.Event()

    async def database_call() -> str:
        busy.set()
        for _ in range(20):  # work that a signal must not interrupt halfway
            await asyncio.sleep(0.01)
        return "done"

    try:
        await program.start()
        work = asyncio.ensure_future(database_call())
        await busy.wait()
        os.kill(os.getpid(), signal.SIGTERM)
        assert await work == "done"  # not interrupted
        assert program._stop_task.done() and program._stop_task.result() == 0
        os.kill(os.getpid(), signal.SIGTERM)  # a second one is only noted
        await asyncio.sleep(0.05)
        program.prepare_stop()
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
        for sig, previous in handlers.items():
            signal.signal(sig, previous)


def test_the_bridge_runs_on_asyncios_own_loop_even_where_uvloop_is_installed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # mautrix's Program installs uvloop whenever it can import it; on it a SIGTERM never
    # reached the bridge's handler, and the media path needs asyncio's own transports.
    import mautrix.util.program

    installed: list[bool] = []

    class FakeUvloop:
        @staticmethod
        def install() -> None:
            installed.append(True)

    monkeypatch.setattr(mautrix.util.program, "uvloop", FakeUvloop)
    program = VisioBridge()
    program.init_loop()
    try:
        assert installed == []
        assert isinstance(program.loop, asyncio.SelectorEventLoop)
        assert asyncio.get_event_loop_policy().__class__.__module__.startswith("asyncio")
    finally:
        program.loop.close()
        asyncio.set_event_loop(None)
