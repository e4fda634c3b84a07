"""The peer_door table: where each trusted peer bridge serves its people, per room.

A peer bridge's bot announces its web address in each room it serves
(``io.visiobridge.bridge``); the page of a meeting hosted here sends that bridge's
people there.
"""

from __future__ import annotations

from mautrix.util.async_db import Database


class PeerDoorTable:
    """Queries on the peer_door table."""

    def __init__(self, db: Database) -> None:
        self.db = db

    async def get(self, room_id: str, bot: str) -> str | None:
        value = await self.db.fetchval(
            "SELECT url FROM peer_door WHERE room_id=$1 AND bot=$2", room_id, bot
        )
        return str(value) if value is not None else None

    async def set(self, room_id: str, bot: str, url: str) -> None:
        await self.db.execute(
            "INSERT INTO peer_door (room_id, bot, url) VALUES ($1, $2, $3)"
            " ON CONFLICT (room_id, bot) DO UPDATE SET url=excluded.url",
            room_id,
            bot,
            url,
        )

    async def forget(self, room_id: str, bot: str) -> None:
        await self.db.execute("DELETE FROM peer_door WHERE room_id=$1 AND bot=$2", room_id, bot)
