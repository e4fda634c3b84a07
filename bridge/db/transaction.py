"""The handled_transaction table: appservice transactions already processed.

mautrix remembers transaction ids in memory only, so a restarted bridge would process a
retried transaction twice. A homeserver whose database was reset numbers transactions
from 1 again, so a txn id alone is not enough: the digest of the transaction's event ids
tells a retry (same events) from a new transaction that reuses an old id.
"""

from __future__ import annotations

from mautrix.util.async_db import Database

# Handled ids are kept this long; Synapse retries a transaction for far less.
RETENTION_MS = 7 * 24 * 3600 * 1000


# Atomic: of two concurrent deliveries of one transaction, only one records it. A new
# transaction reusing an old id (a reset homeserver) has another digest and counts.
mark_handled_query = (
    "INSERT INTO handled_transaction (txn_id, digest, handled_at)"
    " VALUES ($1, $2, $3) ON CONFLICT (txn_id) DO UPDATE"
    " SET digest=excluded.digest, handled_at=excluded.handled_at"
    " WHERE handled_transaction.digest <> excluded.digest"
)


class TransactionTable:
    """Queries on the handled_transaction table."""

    def __init__(self, db: Database) -> None:
        self.db = db

    async def is_handled(self, txn_id: str, digest: str) -> bool:
        stored = await self.db.fetchval(
            "SELECT digest FROM handled_transaction WHERE txn_id=$1", txn_id
        )
        return stored == digest

    async def mark_handled(self, txn_id: str, digest: str, now_ms: int) -> bool:
        """Record the transaction; False when it was already recorded with this digest."""
        result = await self.db.execute(mark_handled_query, txn_id, digest, now_ms)
        return rows_affected(result) > 0

    async def prune(self, now_ms: int) -> None:
        await self.db.execute(
            "DELETE FROM handled_transaction WHERE handled_at < $1", now_ms - RETENTION_MS
        )


def rows_affected(result: object) -> int:
    # asyncpg answers a status string ("INSERT 0 1"), aiosqlite a cursor.
    if isinstance(result, str):
        return int(result.rsplit(" ", 1)[-1])
    return int(getattr(result, "rowcount", 0))
