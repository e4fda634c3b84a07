"""Meetings across agencies: this bridge's side of meetings another bridge hosts, and
where trusted peer bridges serve their people."""

from __future__ import annotations

from mautrix.util.async_db import Connection

from . import upgrade_table


@upgrade_table.register(description="Meetings hosted by peer bridges, and their doors")  # type: ignore[call-arg, arg-type]
async def upgrade_v5(conn: Connection) -> None:
    await conn.execute("ALTER TABLE meeting ADD COLUMN host TEXT")
    await conn.execute(
        """CREATE TABLE peer_door (
            room_id TEXT NOT NULL,
            bot TEXT NOT NULL,
            url TEXT NOT NULL,
            PRIMARY KEY (room_id, bot)
        )"""
    )
