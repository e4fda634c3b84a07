"""First schema: meetings, attendance and handled transactions."""

from __future__ import annotations

from mautrix.util.async_db import Connection

from . import upgrade_table


@upgrade_table.register(description="Meetings, attendance and handled transactions")  # type: ignore[call-arg, arg-type]
async def upgrade_v1(conn: Connection) -> None:
    await conn.execute(
        """CREATE TABLE meeting (
            id          TEXT PRIMARY KEY,
            room_id     TEXT NOT NULL,
            title       TEXT NOT NULL,
            state       TEXT NOT NULL,
            started_by  TEXT NOT NULL,
            started_at  BIGINT NOT NULL,
            ended_at    BIGINT,
            ended_by    TEXT,
            widget_id   TEXT NOT NULL
        )"""
    )
    # One live meeting per room, enforced by the database too.
    await conn.execute(
        "CREATE UNIQUE INDEX meeting_live_room ON meeting (room_id) WHERE state = 'live'"
    )
    await conn.execute("CREATE INDEX meeting_room ON meeting (room_id)")
    await conn.execute(
        """CREATE TABLE attendance (
            meeting_id   TEXT NOT NULL REFERENCES meeting (id) ON DELETE CASCADE,
            user_id      TEXT NOT NULL,
            display_name TEXT NOT NULL,
            joined_at    BIGINT NOT NULL,
            left_at      BIGINT,
            PRIMARY KEY (meeting_id, user_id, joined_at)
        )"""
    )
    await conn.execute(
        """CREATE TABLE handled_transaction (
            txn_id     TEXT PRIMARY KEY,
            digest     TEXT NOT NULL,
            handled_at BIGINT NOT NULL
        )"""
    )
