"""Personal links: the latest link of each user for each meeting (older ones are revoked)."""

from __future__ import annotations

from mautrix.util.async_db import Connection

from . import upgrade_table


@upgrade_table.register(description="The latest personal link per user and meeting")  # type: ignore[call-arg, arg-type]
async def upgrade_v4(conn: Connection) -> None:
    await conn.execute(
        """CREATE TABLE personal_link (
            meeting_id TEXT NOT NULL,
            user_id TEXT NOT NULL,
            nonce TEXT NOT NULL,
            PRIMARY KEY (meeting_id, user_id)
        )"""
    )
