"""Sign-in credentials at the edge: link tokens, and OpenID verification against a
stand-in homeserver over real HTTP."""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from bridge.auth.links import LinkError, LinkSigner
from bridge.auth.openid import OpenIDError, OpenIDVerifier

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
    verifier = OpenIDVerifier("agency.test", url, {"agency.test"}, {})
    try:
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
    finally:
        await verifier.close()
