"""The inbox: events received from the homeserver and not yet handled."""

from __future__ import annotations

from mautrix.util.async_db import Connection

from . import upgrade_table


@upgrade_table.register(description="Inbox of received, unhandled events")  # type: ignore[call-arg, arg-type]
async def upgrade_v3(conn: Connection) -> None:
    await conn.execute(
        """CREATE TABLE inbox (
            seq BIGINT PRIMARY KEY,
            room_id TEXT NOT NULL,
            event TEXT NOT NULL
        )"""
    )
