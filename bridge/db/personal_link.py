"""The personal_link table: which personal link of a user for a meeting is the current
one (implements :class:`bridge.auth.links.LinkStore`)."""

from __future__ import annotations

from mautrix.util.async_db import Database


class PersonalLinkTable:
    """Queries on the personal_link table."""

    def __init__(self, db: Database) -> None:
        self.db = db

    async def set_current(self, meeting_id: str, user_id: str, nonce: str) -> None:
        await self.db.execute(
            "INSERT INTO personal_link (meeting_id, user_id, nonce) VALUES ($1, $2, $3)"
            " ON CONFLICT (meeting_id, user_id) DO UPDATE SET nonce=excluded.nonce",
            meeting_id,
            user_id,
            nonce,
        )

    async def current(self, meeting_id: str, user_id: str) -> str | None:
        value = await self.db.fetchval(
            "SELECT nonce FROM personal_link WHERE meeting_id=$1 AND user_id=$2",
            meeting_id,
            user_id,
        )
        return str(value) if value is not None else None
