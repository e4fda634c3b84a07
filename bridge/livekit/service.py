"""The MatrixRTC token service: lk-jwt-service's API on the bridge.

Element Call and Element X find it as the homeserver's LiveKit transport
(``livekit_service_url`` = ``<web.public_url>/livekit``) and trade a Matrix OpenID token
for a LiveKit access token:

- ``POST /livekit/get_token`` ``{room_id, slot_id, openid_token, member: {id,
  claimed_user_id, claimed_device_id}}`` (MatrixRTC 2.0);
- ``POST /livekit/sfu/get`` ``{room, openid_token, device_id}`` (the legacy endpoint,
  which Element Call's default "compatibility" mode uses).

Both answer ``{url, jwt}``, or a Matrix-style ``{errcode, error}``. The OpenID token is
checked by :class:`~bridge.auth.signin.SignIn` (the allowlist, the user's homeserver,
the bridge permission, membership of the room), as for the widget. Room names and
identities follow lk-jwt-service (:mod:`bridge.livekit.naming`), so Element Call maps
LiveKit participants to MatrixRTC memberships. Delegated delayed leave
(``delay_id``/``delay_timeout``, and ``POST /livekit/delegate_delayed_leave``) is served
for users of the bridge's own homeserver (:mod:`bridge.livekit.delayed`); others get
403, as lk-jwt-service refuses users of homeservers without full access.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from aiohttp import web
from yarl import URL

from ..auth.signin import OpenIDCredential, SignIn
from ..clock import Clock
from ..refusal import Refusal
from .delayed import DELAY_ID, MAX_DELAY_MS, MIN_DELAY_MS, DelayedLeave, DelayedLeaves
from .naming import CALL_SLOT, legacy_identity, member_identity, room_name
from .tokens import AccessTokens

log = logging.getLogger("visio.livekit.service")

MAX_BODY_BYTES = 16 * 1024
_MAX_FIELD = 1024
_CORS = {
    "Access-Control-Allow-Origin": "*",
    "Access-Control-Allow-Methods": "POST, OPTIONS",
    "Access-Control-Allow-Headers": "Content-Type",
}
# Sign-in refusal codes and the HTTP answers lk-jwt-service gives for them.
_STATUS = {
    "unauthorized": (401, "M_UNAUTHORIZED"),
    "server_not_allowed": (403, "M_FORBIDDEN"),
    "unavailable": (503, "M_UNKNOWN"),
    "internal": (500, "M_UNKNOWN"),
}


class BadRequest(Exception):
    """A request body that is not what the API takes; the message says why."""

    def __init__(self, message: str, errcode: str = "M_BAD_JSON") -> None:
        super().__init__(message)
        self.errcode = errcode


@dataclass(frozen=True)
class TokenRequest:
    """A checked request: whose OpenID token, for which room, as which identity."""

    room_id: str
    openid: OpenIDCredential
    device_id: str
    member_id: str | None = None
    claimed_user_id: str | None = None
    #: The delayed leave event the caller hands over (delegated delayed leave).
    delayed_leave: DelayedLeave | None = None


def _text(data: dict[str, Any], name: str) -> str:
    value = data.get(name)
    if not isinstance(value, str) or not value or len(value) > _MAX_FIELD:
        raise BadRequest(f"{name} must be a non-empty string.")
    return value


def _only(data: object, allowed: set[str], what: str) -> dict[str, Any]:
    if not isinstance(data, dict):
        raise BadRequest(f"{what} must be a JSON object.")
    unknown = sorted(set(data) - allowed)
    if unknown:
        raise BadRequest(f"Unknown field in {what}: {unknown[0][:40]}.")
    return data


_OPENID_FIELDS = {"access_token", "token_type", "matrix_server_name", "expires_in"}
_DELAY_FIELDS = {"delay_id", "delay_timeout", "delay_cs_api_url"}


def _openid(data: dict[str, Any]) -> OpenIDCredential:
    token = _only(data.get("openid_token"), _OPENID_FIELDS, "openid_token")
    return OpenIDCredential(_text(token, "matrix_server_name"), _text(token, "access_token"))


def _delayed_leave(data: dict[str, Any], required: bool = False) -> DelayedLeave | None:
    """The delay fields (``delay_cs_api_url`` is ignored, as by lk-jwt-service: the
    bridge only calls its own homeserver)."""
    delay_id, timeout = data.get("delay_id"), data.get("delay_timeout")
    if delay_id is None and timeout is None and not required:
        return None
    if not isinstance(delay_id, str) or not DELAY_ID.match(delay_id):
        raise BadRequest("delay_id must be a delayed event id.")
    if isinstance(timeout, bool) or not isinstance(timeout, int):
        raise BadRequest("delay_timeout must be a number of milliseconds.")
    if not MIN_DELAY_MS <= timeout <= MAX_DELAY_MS:
        raise BadRequest(f"delay_timeout must be {MIN_DELAY_MS} to {MAX_DELAY_MS} ms.")
    return DelayedLeave(delay_id, timeout)


def parse_get_token(data: object, delay_required: bool = False) -> TokenRequest:
    body = _only(
        data, {"room_id", "slot_id", "openid_token", "member", *_DELAY_FIELDS}, "the request"
    )
    delayed = _delayed_leave(body, delay_required)
    slot = _text(body, "slot_id")
    if slot != CALL_SLOT:
        raise BadRequest(f"Only the {CALL_SLOT} slot is served.")
    member = _only(body.get("member"), {"id", "claimed_user_id", "claimed_device_id"}, "member")
    return TokenRequest(
        room_id=_text(body, "room_id"),
        openid=_openid(body),
        device_id=_text(member, "claimed_device_id"),
        member_id=_text(member, "id"),
        claimed_user_id=_text(member, "claimed_user_id"),
        delayed_leave=delayed,
    )


def parse_delegation(data: object) -> TokenRequest:
    """``/delegate_delayed_leave``: get_token's fields, with the delay ones required."""
    return parse_get_token(data, delay_required=True)


def parse_sfu_get(data: object) -> TokenRequest:
    body = _only(data, {"room", "openid_token", "device_id", *_DELAY_FIELDS}, "the request")
    return TokenRequest(
        room_id=_text(body, "room"),
        openid=_openid(body),
        device_id=_text(body, "device_id"),
        delayed_leave=_delayed_leave(body),
    )


def livekit_url(public_url: str) -> str:
    """Where LiveKit clients connect: the bridge's public URL, as ws(s), under /livekit."""
    url = URL(public_url.rstrip("/") + "/livekit")
    return str(url.with_scheme("wss" if url.scheme == "https" else "ws"))


class TokenService:
    """Serves the token API for one bridge."""

    def __init__(
        self,
        signin: SignIn,
        tokens: AccessTokens,
        public_url: str,
        clock: Clock,
        delayed: DelayedLeaves | None = None,
        own_server: str | None = None,
    ) -> None:
        self.signin = signin
        self.tokens = tokens
        self.url = livekit_url(public_url)
        self.clock = clock
        #: Delegated delayed leave events, served for users of ``own_server`` only.
        self.delayed = delayed
        self.own_server = own_server

    def routes(self, app: web.Application, prefix: str = "/livekit") -> None:
        app.router.add_post(f"{prefix}/get_token", self._handler(parse_get_token))
        app.router.add_post(f"{prefix}/sfu/get", self._handler(parse_sfu_get))
        app.router.add_post(
            f"{prefix}/delegate_delayed_leave", self._handler(parse_delegation, token=False)
        )
        for path in ("get_token", "sfu/get", "delegate_delayed_leave"):
            app.router.add_route("OPTIONS", f"{prefix}/{path}", self.preflight)

    async def preflight(self, _: web.Request) -> web.Response:
        return web.Response(headers=_CORS)

    def _handler(
        self, parse: Callable[[object], TokenRequest], token: bool = True
    ) -> Callable[[web.Request], Any]:
        async def handle(request: web.Request) -> web.Response:
            try:
                checked = parse(await _json_body(request))
                jwt = await self.token_for(checked)
            except BadRequest as e:
                return _error(400, e.errcode, str(e))
            except Refusal as e:
                status, errcode = _STATUS.get(e.code, (403, "M_FORBIDDEN"))
                log.info("Token refused (%s): %s", e.code, e)
                return _error(status, errcode, str(e))
            if not token:
                return web.json_response({}, headers=_CORS)
            return web.json_response({"url": self.url, "jwt": jwt}, headers=_CORS)

        return handle

    async def token_for(self, request: TokenRequest) -> str:
        """A LiveKit token for the request, after every check sign-in makes; a delayed
        leave it carries is taken over (see :mod:`bridge.livekit.delayed`)."""
        identity = await self.signin.admit_to_room(request.openid, request.room_id)
        if request.claimed_user_id is not None and request.claimed_user_id != identity.user_id:
            raise Refusal("unauthorized", "The claimed user is not the one the token is for.")
        if request.member_id is not None:
            who = member_identity(identity.user_id, request.device_id, request.member_id)
        else:
            who = legacy_identity(identity.user_id, request.device_id)
        if request.delayed_leave is not None:
            # As lk-jwt-service for homeservers without full access: only the bridge's
            # own homeserver's users may hand over their leave (the bridge calls no other).
            if self.delayed is None or identity.server != self.own_server:
                raise Refusal(
                    "server_not_allowed",
                    "Delegated delayed leave is served only for users of this bridge's "
                    "homeserver.",
                )
            if not self.delayed.delegate(request.room_id, who, request.delayed_leave):
                raise Refusal("unavailable", "Too many delayed leave events are held.")
        now_s = self.clock.now_ms() // 1000
        log.info("LiveKit token for %s in %s", identity.user_id, request.room_id)
        return self.tokens.mint(
            who,
            room_name(request.room_id),
            now_s,
            user_id=identity.user_id,
            room_id=request.room_id,
        )


async def _json_body(request: web.Request) -> object:
    if request.content_length is not None and request.content_length > MAX_BODY_BYTES:
        raise BadRequest("The request is too large.", "M_TOO_LARGE")
    raw = await request.content.read(MAX_BODY_BYTES + 1)
    if len(raw) > MAX_BODY_BYTES:
        raise BadRequest("The request is too large.", "M_TOO_LARGE")
    try:
        return json.loads(raw)
    except ValueError:
        raise BadRequest("The request is not JSON.", "M_NOT_JSON") from None


def _error(status: int, errcode: str, message: str) -> web.Response:
    return web.json_response({"errcode": errcode, "error": message}, status=status, headers=_CORS)
