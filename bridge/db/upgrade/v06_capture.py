"""Recording and transcription: whether each meeting has them on, so that a restart
resumes them (and keeps telling everyone), and what they produced."""

from __future__ import annotations

from mautrix.util.async_db import Connection

from . import upgrade_table


@upgrade_table.register(description="Recording and transcription of meetings")  # type: ignore[call-arg, arg-type]
async def upgrade_v6(conn: Connection) -> None:
    await conn.execute("ALTER TABLE meeting ADD COLUMN recording BOOLEAN NOT NULL DEFAULT false")
    await conn.execute(
        "ALTER TABLE meeting ADD COLUMN transcribing BOOLEAN NOT NULL DEFAULT false"
    )
    # The notice that announced the meeting: the transcript is a thread under it.
    await conn.execute("ALTER TABLE meeting ADD COLUMN notice_event TEXT")
    # One row per file a meeting produced (a recording, a transcript): where it is kept
    # (the homeserver's media repository, or on disk when over its upload limit) and the
    # room message that links it, so that retention can delete both.
    await conn.execute(
        """CREATE TABLE capture_file (
            id TEXT PRIMARY KEY,
            meeting_id TEXT NOT NULL,
            room_id TEXT NOT NULL,
            kind TEXT NOT NULL,
            name TEXT NOT NULL,
            mime_type TEXT NOT NULL,
            size BIGINT NOT NULL,
            duration_ms BIGINT NOT NULL,
            created_at BIGINT NOT NULL,
            path TEXT,
            mxc TEXT,
            event_id TEXT,
            deleted_at BIGINT
        )"""
    )
    await conn.execute("CREATE INDEX capture_file_created ON capture_file (created_at)")
