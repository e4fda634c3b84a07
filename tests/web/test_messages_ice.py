"""Edge checks of the web side: signaling messages and TURN credentials."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json

import pytest

from bridge.web.ice import browser_ice_servers, turn_credentials
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
