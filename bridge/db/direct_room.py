"""The direct_room table: the bot's one-to-one room with each user."""

from __future__ import annotations

from mautrix.util.async_db import Database


class DirectRoomTable:
    """Queries on the direct_room table."""

    def __init__(self, db: Database) -> None:
        self.db = db

    async def get(self, user_id: str) -> str | None:
        value = await self.db.fetchval("SELECT room_id FROM direct_room WHERE user_id=$1", user_id)
        return str(value) if value is not None else None

    async def set(self, user_id: str, room_id: str) -> None:
        await self.db.execute(
            "INSERT INTO direct_room (user_id, room_id) VALUES ($1, $2)"
            " ON CONFLICT (user_id) DO UPDATE SET room_id=excluded.room_id",
            user_id,
            room_id,
        )
