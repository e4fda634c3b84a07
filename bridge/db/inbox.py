"""The inbox table: received events that are not yet handled.

A transaction from the homeserver is acknowledged only once its events are stored here,
in the same database transaction that records the transaction as received. Each event
leaves the inbox when it has been handled, so events that a crash or a stop interrupts
are handled by the next run, in their order: delivery is at least once.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from typing import Any

from mautrix.util.async_db import Connection, Database

from .transaction import mark_handled_query, rows_affected


@dataclass(frozen=True)
class InboxEntry:
    """One stored event; ``seq`` orders the events as they arrived."""

    seq: int
    room_id: str
    event: dict[str, Any]


class InboxTable:
    """Queries on the inbox table."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self._next_seq: int | None = None
        #: Events received and not yet handled (for metrics; exact once pending() ran).
        self.pending_count = 0
        # Sequence numbers are handed out in memory: one transaction stores at a time.
        self._lock = asyncio.Lock()

    async def _seq_start(self) -> int:
        if self._next_seq is None:
            last = await self.db.fetchval("SELECT MAX(seq) FROM inbox")
            self._next_seq = int(last or 0) + 1
        return self._next_seq

    async def receive(
        self, txn_id: str, digest: str, now_ms: int, events: list[tuple[str, dict[str, Any]]]
    ) -> list[InboxEntry] | None:
        """Store a transaction's (room id, event) pairs and mark it received, atomically.

        Returns the stored entries, or None when the transaction was already received
        (a retry). One process writes the inbox, so sequence numbers are handed out here.
        """
        async with self._lock:
            return await self._receive(txn_id, digest, now_ms, events)

    async def _receive(
        self, txn_id: str, digest: str, now_ms: int, events: list[tuple[str, dict[str, Any]]]
    ) -> list[InboxEntry] | None:
        first = await self._seq_start()
        entries = [
            InboxEntry(first + index, room_id, event)
            for index, (room_id, event) in enumerate(events)
        ]
        conn: Connection
        async with self.db.acquire() as conn, conn.transaction():
            result = await conn.execute(mark_handled_query, txn_id, digest, now_ms)
            if rows_affected(result) == 0:
                return None
            for entry in entries:
                await conn.execute(
                    "INSERT INTO inbox (seq, room_id, event) VALUES ($1, $2, $3)",
                    entry.seq,
                    entry.room_id,
                    json.dumps(entry.event, separators=(",", ":")),
                )
        self._next_seq = first + len(entries)
        self.pending_count += len(entries)
        return entries

    async def done(self, seq: int) -> None:
        await self.db.execute("DELETE FROM inbox WHERE seq=$1", seq)
        self.pending_count = max(0, self.pending_count - 1)

    async def pending(self) -> list[InboxEntry]:
        """What a previous run received but did not handle, oldest first."""
        rows = await self.db.fetch("SELECT seq, room_id, event FROM inbox ORDER BY seq")
        self.pending_count = len(rows)
        return [InboxEntry(row["seq"], row["room_id"], json.loads(row["event"])) for row in rows]
