"""The appservice listener: verified, persistently deduplicated transactions.

mautrix's AppService answers a wrong token with 401 and remembers handled transactions
in memory only. The spec asks for 403 ``M_FORBIDDEN``, and a restarted bridge must not
run a retried transaction twice, so both are done here, over mautrix's plumbing.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from typing import Any, cast

from aiohttp import web
from mautrix.appservice import AppService
from mautrix.types import JSON

from ..clock import Clock
from ..db import TransactionTable

MAX_TRANSACTION_BYTES = 50 * 1024 * 1024


def _forbidden() -> web.HTTPForbidden:
    return web.HTTPForbidden(
        content_type="application/json",
        text=json.dumps({"errcode": "M_FORBIDDEN", "error": "Bad hs_token"}),
    )


def transaction_digest(events: list[Any], ephemeral: list[Any] | None) -> str:
    """Identifies a transaction's contents: a retry has the same digest, a new
    transaction that reuses an old id (homeserver database reset) does not."""
    parts = [
        event.get("event_id") if isinstance(event, dict) and event.get("event_id") else event
        for event in [*events, *(ephemeral or [])]
    ]
    blob = json.dumps(parts, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()


class BridgeAppService(AppService):
    """mautrix's AppService with the spec's token rules and transactions stored."""

    transactions_table: TransactionTable
    clock: Clock
    # Set while stopping: transactions are turned away so the homeserver resends them
    # to the next run instead of handing them to a bridge that can no longer act.
    closing: bool = False

    def attach_storage(self, table: TransactionTable, clock: Clock) -> None:
        self.transactions_table = table
        self.clock = clock

    def _check_token(self, request: web.Request) -> bool:
        """Every token the request carries must be the hs_token: the Authorization
        header and, when present, the legacy access_token query parameter."""
        tokens = []
        header = request.headers.get("Authorization")
        if header is not None:
            if not header.startswith("Bearer "):
                return False
            tokens.append(header.removeprefix("Bearer "))
        if "access_token" in request.rel_url.query:
            tokens.append(request.rel_url.query["access_token"])
        if not tokens:
            return False
        return all(hmac.compare_digest(token.encode(), self.hs_token.encode()) for token in tokens)

    async def _http_query_user(self, request: web.Request) -> web.Response:
        if not self._check_token(request):
            raise _forbidden()
        return await super()._http_query_user(request)

    async def _http_query_alias(self, request: web.Request) -> web.Response:
        if not self._check_token(request):
            raise _forbidden()
        return await super()._http_query_alias(request)

    async def _http_ping(self, request: web.Request) -> web.Response:
        if not self._check_token(request):
            raise _forbidden()
        return await super()._http_ping(request)

    async def _http_handle_transaction(self, request: web.Request) -> web.Response:
        if not self._check_token(request):
            self.log.warning("Refused a transaction with a wrong hs_token from %s", request.remote)
            raise _forbidden()
        if self.closing:
            raise web.HTTPServiceUnavailable(
                content_type="application/json",
                text=json.dumps({"errcode": "M_UNAVAILABLE", "error": "The bridge is stopping"}),
            )
        txn_id = request.match_info["transaction_id"]
        if request.content_length is not None and request.content_length > MAX_TRANSACTION_BYTES:
            raise web.HTTPRequestEntityTooLarge(
                max_size=MAX_TRANSACTION_BYTES, actual_size=request.content_length
            )
        try:
            data = await request.json()
        except ValueError:
            raise web.HTTPBadRequest(
                content_type="application/json",
                text=json.dumps({"errcode": "M_NOT_JSON", "error": "Body is not JSON"}),
            ) from None
        if not isinstance(data, dict) or not isinstance(data.get("events"), list):
            raise web.HTTPBadRequest(
                content_type="application/json",
                text=json.dumps({"errcode": "M_BAD_JSON", "error": "Missing events list"}),
            )
        events = data.pop("events")
        ephemeral = data.pop("ephemeral", None) or data.pop("de.sorunome.msc2409.ephemeral", None)
        if not isinstance(ephemeral, list) or not self.ephemeral_events:
            ephemeral = None
        digest = transaction_digest(events, ephemeral)
        if not await self.transactions_table.mark_handled(txn_id, digest, self.clock.now_ms()):
            self.log.debug("Transaction %s was already handled", txn_id)
            return web.json_response({})
        self.log.debug("Handling transaction %s with %d events", txn_id, len(events))
        try:
            await self.handle_transaction(
                txn_id, events=events, extra_data=cast(JSON, data), ephemeral=ephemeral
            )
        except Exception:
            self.log.exception("Exception in transaction handler")
        return web.json_response({})
