"""Edge checks of the web side: link tokens, signaling messages, TURN credentials,
OpenID verification against a stand-in homeserver over real HTTP."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from bridge.federation.openid import OpenIDError, OpenIDVerifier
from bridge.web.ice import browser_ice_servers, turn_credentials
from bridge.web.links import LinkError, LinkSigner
from bridge.web.messages import (
    MAX_MESSAGE_BYTES,
    Hand,
    Join,
    Mute,
    ProtocolError,
    Publish,
    message_type,
    parse_message,
)
from tests.conftest import make_config

NOW = 1_800_000_000


def test_links_round_trip_and_refusals() -> None:
    signer = LinkSigner("a-secret-of-enough-length", lifetime_s=3600)
    token = signer.make("meet1", "@alice:agency.test", NOW)
    grant = signer.check(token, "meet1", NOW + 10)
    assert (grant.meeting_id, grant.user_id, grant.expires_at) == (
        "meet1",
        "@alice:agency.test",
        NOW + 3600,
    )
    with pytest.raises(LinkError) as other_meeting:
        signer.check(token, "meet2", NOW)
    assert other_meeting.value.code == "unauthorized"
    with pytest.raises(LinkError) as expired:
        signer.check(token, "meet1", NOW + 3600)
    assert expired.value.code == "link_expired"
    other_key = LinkSigner("another-secret-entirely", lifetime_s=3600)
    with pytest.raises(LinkError):
        other_key.check(token, "meet1", NOW)
    signature = token.split(".")[1]
    # A payload changed to another user with the old signature is refused.
    forged = json.dumps({"m": "meet1", "u": "@mallory:agency.test", "e": NOW + 9999, "n": "0"})
    forged_b64 = base64.urlsafe_b64encode(forged.encode()).rstrip(b"=").decode()
    for bad in (f"{forged_b64}.{signature}", "garbage", "a.b.c", "!!.??", "x" * 5000, ""):
        with pytest.raises(LinkError):
            signer.check(bad, "meet1", NOW)


def test_link_carries_the_display_name_for_the_page_only() -> None:
    signer = LinkSigner("a-secret-of-enough-length", lifetime_s=3600)
    token = signer.make("meet1", "@alice:agency.test", NOW, "Alice Martin")
    payload = token.split(".")[0]
    data = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    assert data["d"] == "Alice Martin"
    assert signer.check(token, "meet1", NOW).user_id == "@alice:agency.test"


def test_parse_messages() -> None:
    join = parse_message(
        json.dumps(
            {
                "type": "join",
                "version": 1,
                "auth": {"kind": "openid", "server": "agency.test", "token": "t"},
                "display_name": "  Alice \n  Martin ",
            }
        )
    )
    assert join == Join(1, "openid", "t", "agency.test", "Alice Martin")
    publish = parse_message(
        json.dumps({"type": "publish", "sdp": "v=0", "sources": {"0": "camera"}})
    )
    assert publish == Publish("v=0", {"0": "camera"})
    assert parse_message('{"type": "mute", "audio": true, "video": false}') == Mute(True, False)
    assert parse_message('{"type": "hand", "raised": false}') == Hand(False)
    assert message_type('{"type": "publish"}') == "publish"
    assert message_type("nope") is None


@pytest.mark.parametrize(
    ("raw", "code"),
    [
        ("not json", "bad_message"),
        ("[]", "bad_message"),
        ('{"type": 5}', "bad_message"),
        ('{"type": "teleport"}', "bad_message"),
        ('{"type": "join", "version": 2, "auth": {"kind": "link", "token": "t"}}', "version"),
        ('{"type": "join", "version": true, "auth": {}}', "bad_message"),
        (
            '{"type": "join", "version": 1, "auth": {"kind": "password", "token": "t"}}',
            "unauthorized",
        ),
        (
            '{"type": "join", "version": 1, "auth": {"kind": "openid", "token": "t"}}',
            "unauthorized",
        ),
        ('{"type": "publish", "sdp": 1, "sources": {}}', "bad_message"),
        ('{"type": "publish", "sdp": "v=0", "sources": {"0": "webcam"}}', "bad_message"),
        ('{"type": "mute", "audio": 1, "video": false}', "bad_message"),
        ('{"type": "hand"}', "bad_message"),
        (json.dumps({"type": "ping", "pad": "x" * MAX_MESSAGE_BYTES}), "too_large"),
    ],
)
def test_bad_messages_are_refused_with_a_code(raw: str, code: str) -> None:
    with pytest.raises(ProtocolError) as error:
        parse_message(raw)
    assert error.value.code == code
    assert str(error.value)


def test_turn_credentials_follow_coturn_rest_api() -> None:
    username, password = turn_credentials("s3cret", "@alice:agency.test", NOW, 600)
    assert username == f"{NOW + 600}:@alice:agency.test"
    expected = base64.b64encode(
        hmac.new(b"s3cret", username.encode(), hashlib.sha1).digest()
    ).decode()
    assert password == expected


def test_browser_ice_servers_default_to_none_and_add_turn() -> None:
    assert browser_ice_servers(make_config(), "@a:agency.test", NOW) == []
    config = make_config(
        media__ice_servers=[{"urls": ["stun:stun.agency.test:3478"]}],
        media__turn__urls=["turn:turn.agency.test:3478"],
        media__turn__shared_secret="coturn-secret",
    )
    servers = browser_ice_servers(config, "@a:agency.test", NOW)
    assert servers[0] == {"urls": ["stun:stun.agency.test:3478"]}
    assert servers[1]["urls"] == ["turn:turn.agency.test:3478"]
    assert servers[1]["username"].endswith(":@a:agency.test")


@pytest.fixture
async def homeserver() -> AsyncIterator[tuple[str, list[str]]]:
    """A stand-in for a homeserver's userinfo endpoint, recording what it is asked."""
    asked: list[str] = []

    async def userinfo(request: web.Request) -> web.Response:
        token = request.query.get("access_token", "")
        asked.append(token)
        if token == "good":
            return web.json_response({"sub": "@alice:agency.test"})
        if token == "liar":
            return web.json_response({"sub": "@alice:other.test"})
        return web.json_response({"errcode": "M_UNKNOWN_TOKEN"}, status=401)

    app = web.Application()
    app.router.add_get("/_matrix/federation/v1/openid/userinfo", userinfo)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    yield str(server.make_url("")), asked
    await server.close()


async def test_openid_verifier(homeserver: tuple[str, list[str]]) -> None:
    url, asked = homeserver
    async with aiohttp.ClientSession() as session:
        verifier = OpenIDVerifier("agency.test", url, {"agency.test"}, {}, session)
        assert await verifier.verify("agency.test", "good") == "@alice:agency.test"

        async def code(server: Any, token: Any) -> str:
            with pytest.raises(OpenIDError) as error:
                await verifier.verify(server, token)
            return error.value.code

        assert await code("agency.test", "expired") == "unauthorized"
        assert await code("agency.test", "liar") == "unauthorized"
        before = len(asked)
        assert await code("elsewhere.test", "good") == "server_not_allowed"
        assert await code("bad server!", "good") == "unauthorized"
        assert await code("agency.test", "has spaces") == "unauthorized"
        assert await code(None, "good") == "unauthorized"
        # Nothing was sent anywhere for a refused server or a malformed token.
        assert len(asked) == before
