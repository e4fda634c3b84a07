"""Shared fixtures: databases (SQLite and the real PostgreSQL), configs, clocks."""

from __future__ import annotations

import os
import secrets
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import pytest
from mautrix.util.async_db import Database

from bridge.clock import ManualClock
from bridge.config import Config, config_from_dict
from bridge.db import Storage, upgrade_table

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
POSTGRES_ADMIN_URL = os.environ.get(
    "VISIO_TEST_POSTGRES", "postgres://postgres@127.0.0.1:5432/postgres"
)


def require_or_skip(available: bool, what: str) -> None:
    """Skip when a real part is missing on a developer's machine; fail under CI=true."""
    if available:
        return
    if IN_CI:
        pytest.fail(f"{what} is required under CI=true but is not available")
    pytest.skip(f"{what} is not available on this machine")


async def _postgres_reachable() -> bool:
    try:
        conn = await asyncpg.connect(POSTGRES_ADMIN_URL, timeout=3)
    except (OSError, asyncpg.PostgresError):
        return False
    await conn.close()
    return True


async def make_postgres_database() -> str:
    """A fresh, empty PostgreSQL database; returns its URL."""
    name = f"visio_test_{secrets.token_hex(6)}"
    conn = await asyncpg.connect(POSTGRES_ADMIN_URL)
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    return POSTGRES_ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"


async def drop_postgres_database(url: str) -> None:
    name = url.rsplit("/", 1)[1]
    conn = await asyncpg.connect(POSTGRES_ADMIN_URL)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()


@pytest.fixture(params=["sqlite", "postgres"])
async def database_url(request: pytest.FixtureRequest, tmp_path: Any) -> AsyncIterator[str]:
    """Each database test runs on SQLite and on the real PostgreSQL at 127.0.0.1:5432."""
    if request.param == "sqlite":
        yield f"sqlite:{tmp_path}/bridge.db"
        return
    require_or_skip(await _postgres_reachable(), f"PostgreSQL at {POSTGRES_ADMIN_URL}")
    url = await make_postgres_database()
    try:
        yield url
    finally:
        await drop_postgres_database(url)


@pytest.fixture
async def storage(database_url: str) -> AsyncIterator[Storage]:
    """The bridge's tables on a fresh database (SQLite, then PostgreSQL)."""
    db = Database.create(database_url, upgrade_table=upgrade_table)
    await db.start()
    try:
        yield Storage(db)
    finally:
        await db.stop()


def make_config(**overrides: Any) -> Config:
    """The example config with test values; keyword keys use __ for dots."""
    values: dict[str, Any] = {
        "homeserver.address": "http://127.0.0.1:1",
        "homeserver.domain": "agency.test",
        "appservice.as_token": "as-" + secrets.token_hex(16),
        "appservice.hs_token": "hs-" + secrets.token_hex(16),
        "web.public_url": "http://127.0.0.1:29351",
        "bridge.permissions": {"*": "none", "agency.test": "user"},
    }
    values.update({key.replace("__", "."): value for key, value in overrides.items()})
    return config_from_dict(values)


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "one_database: the test's subject is not the database (media, transcription); it "
        "runs on SQLite only, where every other database test runs on both",
    )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Leave out the PostgreSQL run of tests marked ``one_database``: a slow test of
    media or speech proves nothing more on a second database."""
    kept, left_out = [], []
    for item in items:
        callspec = getattr(item, "callspec", None)
        database = callspec.params.get("database_url") if callspec is not None else None
        if database == "postgres" and item.get_closest_marker("one_database") is not None:
            left_out.append(item)
        else:
            kept.append(item)
    if left_out:
        config.hook.pytest_deselected(items=left_out)
        items[:] = kept
