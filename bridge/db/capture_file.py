"""The capture_file table: what meetings' recordings and transcriptions produced."""

from __future__ import annotations

from typing import Any

from mautrix.util.async_db import Database

from ..meeting.store import CaptureFile

_COLUMNS = (
    "id, meeting_id, room_id, kind, name, mime_type, size, duration_ms, created_at, path, mxc,"
    " event_id, deleted_at"
)


def _from_row(row: Any) -> CaptureFile:
    return CaptureFile(
        id=row["id"],
        meeting_id=row["meeting_id"],
        room_id=row["room_id"],
        kind=row["kind"],
        name=row["name"],
        mime_type=row["mime_type"],
        size=row["size"],
        duration_ms=row["duration_ms"],
        created_at=row["created_at"],
        path=row["path"],
        mxc=row["mxc"],
        event_id=row["event_id"],
        deleted_at=row["deleted_at"],
    )


class CaptureFileTable:
    """Implements :class:`bridge.meeting.store.CaptureFileStore`."""

    def __init__(self, db: Database) -> None:
        self.db = db

    async def insert(self, file: CaptureFile) -> None:
        await self.db.execute(
            f"INSERT INTO capture_file ({_COLUMNS})"
            " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)",
            file.id,
            file.meeting_id,
            file.room_id,
            file.kind,
            file.name,
            file.mime_type,
            file.size,
            file.duration_ms,
            file.created_at,
            file.path,
            file.mxc,
            file.event_id,
            file.deleted_at,
        )

    async def save(self, file: CaptureFile) -> None:
        await self.db.execute(
            "UPDATE capture_file SET path=$2, mxc=$3, event_id=$4, deleted_at=$5, room_id=$6"
            " WHERE id=$1",
            file.id,
            file.path,
            file.mxc,
            file.event_id,
            file.deleted_at,
            file.room_id,
        )

    async def unposted(self) -> list[CaptureFile]:
        rows = await self.db.fetch(
            f"SELECT {_COLUMNS} FROM capture_file"
            " WHERE event_id IS NULL AND deleted_at IS NULL ORDER BY created_at, id"
        )
        return [_from_row(row) for row in rows]

    async def expired(self, kind: str, before: int) -> list[CaptureFile]:
        rows = await self.db.fetch(
            f"SELECT {_COLUMNS} FROM capture_file"
            " WHERE kind=$1 AND created_at<$2 AND deleted_at IS NULL ORDER BY created_at, id",
            kind,
            before,
        )
        return [_from_row(row) for row in rows]
