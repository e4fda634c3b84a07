"""LiveKit access tokens and names, as lk-jwt-service makes them."""

from __future__ import annotations

import base64
import json

import jwt
import pytest

from bridge.livekit.naming import legacy_identity, member_identity, room_name
from bridge.livekit.service import (
    BadRequest,
    livekit_url,
    parse_get_token,
    parse_sfu_get,
)
from bridge.livekit.tokens import AccessTokens, TokenError

NOW = 1_800_000_000
SECRET = "s" * 48


def test_names_match_lk_jwt_service_test_vectors() -> None:
    # lk-jwt-service's own test vectors (helper_test.go): Element Call computes the same.
    assert room_name("!roomid:example.com", "slot1234") == (
        "O8437W3+jmzMVjoIP3tNwbm+XxHQk2iKpOA7aqw3qSc"
    )
    assert member_identity("@alice:example.com", "DEVICE123", "memberABC") == (
        "J+T45tGruxc+HrUOqJJlyQSV33m728Cme4+vt8/SWrU"
    )
    assert legacy_identity("@alice:example.com", "DEV") == "@alice:example.com:DEV"
    assert room_name("!a:x") == room_name("!a:x", "m.call#ROOM") != room_name("!b:x")


def test_tokens_round_trip_with_the_grants_element_call_reads() -> None:
    tokens = AccessTokens("visio-bridge", SECRET)
    token = tokens.mint("ident", "room-1", NOW)
    claims = json.loads(base64.urlsafe_b64decode(token.split(".")[1] + "=="))
    assert claims["sub"] == "ident" and claims["video"]["room"] == "room-1"
    assert claims["exp"] - claims["nbf"] == 3600 and claims["iss"] == "visio-bridge"
    assert claims["video"].get("roomCreate") is None
    grant = tokens.check(token, NOW + 10)
    assert (grant.identity, grant.room, grant.can_publish) == ("ident", "room-1", True)


@pytest.mark.parametrize(
    "make",
    [
        lambda: AccessTokens("visio-bridge", "t" * 48).mint("ident", "room", NOW),  # other key
        lambda: AccessTokens("someone-else", SECRET).mint("ident", "room", NOW),  # other issuer
        lambda: jwt.encode({"sub": "x", "iss": "visio-bridge", "exp": NOW + 60}, None, "none"),
        lambda: jwt.encode(
            {"sub": "x", "iss": "visio-bridge", "nbf": NOW, "exp": NOW + 60, "video": {}},
            SECRET,
            "HS256",
        ),
        lambda: "garbage",
        lambda: "",
        lambda: "a." * 5000,
        lambda: None,
    ],
)
def test_tokens_signed_otherwise_or_malformed_are_refused(make: object) -> None:
    tokens = AccessTokens("visio-bridge", SECRET)
    with pytest.raises(TokenError):
        tokens.check(make(), NOW + 1)  # type: ignore[operator]


def test_expired_and_early_tokens_are_refused() -> None:
    tokens = AccessTokens("visio-bridge", SECRET)
    token = tokens.mint("ident", "room", NOW)
    with pytest.raises(TokenError, match="expired"):
        tokens.check(token, NOW + 3600)
    with pytest.raises(TokenError, match="not valid yet"):
        tokens.check(token, NOW - 1)
    with pytest.raises(ValueError):
        AccessTokens("visio-bridge", "short")


def openid(**extra: object) -> dict[str, object]:
    return {
        "access_token": "tok",
        "token_type": "Bearer",
        "matrix_server_name": "agency.test",
        "expires_in": 3600,
        **extra,
    }


def test_requests_are_checked_field_by_field() -> None:
    good = {
        "room_id": "!r:agency.test",
        "slot_id": "m.call#ROOM",
        "openid_token": openid(),
        "member": {"id": "m1", "claimed_user_id": "@a:agency.test", "claimed_device_id": "D"},
    }
    parsed = parse_get_token(good)
    assert (parsed.room_id, parsed.device_id, parsed.member_id) == ("!r:agency.test", "D", "m1")
    assert parsed.openid.server == "agency.test" and parsed.openid.token == "tok"
    for bad in (
        {**good, "extra": 1},
        {**good, "slot_id": "other"},
        {**good, "member": {"id": "m1"}},
        {**good, "openid_token": openid(surprise=True)},
        {**good, "openid_token": "tok"},
        {**good, "room_id": 5},
        {**good, "delay_id": "d"},  # a delay needs both fields (see test_delayed.py)
        [good],
    ):
        with pytest.raises(BadRequest):
            parse_get_token(bad)
    legacy = parse_sfu_get({"room": "!r:x", "openid_token": openid(), "device_id": "D"})
    assert legacy.member_id is None and legacy.claimed_user_id is None
    with pytest.raises(BadRequest):
        parse_sfu_get({"room": "!r:x", "openid_token": openid()})


def test_clients_connect_to_the_public_url_over_websockets() -> None:
    assert livekit_url("https://visio.agency.test/") == "wss://visio.agency.test/livekit"
    assert livekit_url("http://127.0.0.1:8080") == "ws://127.0.0.1:8080/livekit"
