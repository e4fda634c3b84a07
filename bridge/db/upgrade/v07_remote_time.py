"""How long people behind trunks stayed in a meeting this bridge hosts, kept until the
meeting ends (for its summary), so that a restart of the host does not forget them."""

from __future__ import annotations

from mautrix.util.async_db import Connection

from . import upgrade_table


@upgrade_table.register(description="Time of people behind trunks, until the meeting ends")  # type: ignore[call-arg, arg-type]
async def upgrade_v7(conn: Connection) -> None:
    await conn.execute(
        """CREATE TABLE remote_time (
            meeting_id TEXT NOT NULL,
            user_id TEXT NOT NULL,
            display_name TEXT NOT NULL,
            total_ms BIGINT NOT NULL,
            PRIMARY KEY (meeting_id, user_id)
        )"""
    )
