"""The appservice listener: verified transactions, stored before they are acknowledged.

mautrix's AppService answers a wrong token with 401, remembers handled transactions in
memory only and runs events before it answers. Here a wrong token gets the spec's 403
``M_FORBIDDEN``; a transaction is answered only once its events are stored in the inbox
(:mod:`bridge.db.inbox`) together with its id, so a retry is recognised across restarts
and no event is lost to a crash or a stop: each is handled, then leaves the inbox.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Callable
from typing import Any, cast

from aiohttp import web
from mautrix.appservice import AppService
from mautrix.types import JSON, Event, EventType

from ..clock import Clock
from ..db import InboxEntry, InboxTable

# Synapse sends up to 100 events of up to 64 KiB each, plus ephemeral events.
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


def parse_event(raw: dict[str, Any]) -> Event:
    """A stored event as mautrix's typed event (raises on a malformed one)."""
    raw = dict(raw)
    unsigned = raw.get("unsigned")
    if not isinstance(unsigned, dict):
        raw.pop("unsigned", None)
    elif "prev_content" not in unsigned and "prev_content" in raw:
        raw["unsigned"] = {**unsigned, "prev_content": raw["prev_content"]}
    event = Event.deserialize(raw)
    kind = EventType.Class.STATE if raw.get("state_key") is not None else EventType.Class.MESSAGE
    event.type = event.type.with_class(kind)
    return event


class BridgeAppService(AppService):
    """mautrix's AppService with the spec's token rules and an inbox of events."""

    inbox: InboxTable
    clock: Clock
    #: Receives each stored event, in order; set by the Matrix side.
    on_event: Callable[[InboxEntry], None] | None = None
    # Set while stopping: transactions are turned away so the homeserver resends them
    # to the next run instead of handing them to a bridge that can no longer act.
    closing: bool = False
    #: Transactions received and stored (retries not counted).
    transactions_received: int = 0

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        # mautrix's default body limit (1 MiB) would refuse a legitimate transaction,
        # and Synapse retries the oldest failed one forever, deaf to all after it.
        kwargs.setdefault("aiohttp_params", {"client_max_size": MAX_TRANSACTION_BYTES})
        super().__init__(*args, **kwargs)

    def attach_storage(self, inbox: InboxTable, clock: Clock) -> None:
        self.inbox = inbox
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
        stored = await self.inbox.receive(
            txn_id, digest, self.clock.now_ms(), _room_events(events)
        )
        if stored is None:
            self.log.debug("Transaction %s was already received", txn_id)
            return web.json_response({})
        self.transactions_received += 1
        self.log.debug("Received transaction %s with %d events", txn_id, len(stored))
        if ephemeral:
            try:
                await self.handle_transaction(
                    txn_id, events=[], extra_data=cast(JSON, data), ephemeral=ephemeral
                )
            except Exception:
                self.log.exception("Exception in the ephemeral event handler")
        for entry in stored:
            self.dispatch(entry)
        return web.json_response({})

    def dispatch(self, entry: InboxEntry) -> None:
        """Hand a stored event to the Matrix side (which takes it out of the inbox once
        handled)."""
        if self.on_event is None:
            self.log.warning("No handler for event %s; it stays in the inbox", entry.seq)
            return
        self.on_event(entry)


def _room_events(events: list[Any]) -> list[tuple[str, dict[str, Any]]]:
    """The events worth storing: objects with a room id (anything else is dropped)."""
    return [
        (event["room_id"], event)
        for event in events
        if isinstance(event, dict) and isinstance(event.get("room_id"), str)
    ]
