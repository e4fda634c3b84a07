"""Direct rooms: where the bot talks to each user one to one (personal links)."""

from __future__ import annotations

from mautrix.util.async_db import Connection

from . import upgrade_table


@upgrade_table.register(description="Direct rooms of the bot with each user")  # type: ignore[call-arg, arg-type]
async def upgrade_v2(conn: Connection) -> None:
    await conn.execute(
        """CREATE TABLE direct_room (
            user_id TEXT PRIMARY KEY,
            room_id TEXT NOT NULL
        )"""
    )
