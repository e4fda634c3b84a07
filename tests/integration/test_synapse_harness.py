"""Tests of tests.harness.synapse against real Synapse processes on loopback."""

from __future__ import annotations

import asyncio
import ipaddress
import ssl
from collections.abc import Callable
from pathlib import Path

import aiohttp
import pytest
import yaml
from cryptography import x509

from tests.harness.synapse import (
    LocalCA,
    LocalSynapse,
    MatrixRequestError,
    MatrixUser,
    SynapseStartError,
    free_port,
    free_ports,
    member_event,
)

pytestmark = pytest.mark.integration

AS_TOKEN = "as-token-for-harness-test"


def write_registration(path: Path, server_name: str) -> Path:
    """A minimal appservice registration (nothing listens at its URL)."""
    registration = {
        "id": "visio-test",
        "url": f"http://127.0.0.1:{free_port()}",
        "as_token": AS_TOKEN,
        "hs_token": "hs-token-for-harness-test",
        "sender_localpart": "visiobot",
        "rate_limited": False,
        "namespaces": {
            "users": [{"exclusive": True, "regex": f"@visio_.*:{server_name}"}],
            "aliases": [],
            "rooms": [],
        },
    }
    path.write_text(yaml.safe_dump(registration))
    return path


async def userinfo(
    url: str, token: str, ssl_context: ssl.SSLContext | None = None
) -> tuple[int, dict]:
    """Call the OpenID userinfo endpoint the way the bridge will."""
    async with (
        aiohttp.ClientSession() as session,
        session.get(
            f"{url}/_matrix/federation/v1/openid/userinfo",
            params={"access_token": token},
            ssl=ssl_context if ssl_context is not None else True,
        ) as response,
    ):
        return response.status, await response.json()


def body_is(text: str) -> Callable[[dict], bool]:
    return lambda event: event.get("content", {}).get("body") == text


# --------------------------------------------------------------------------- no Synapse


def test_free_ports_are_distinct() -> None:
    ports = free_ports(6)
    assert len(set(ports)) == 6
    assert all(1024 < port < 65536 for port in ports)


def test_local_ca_issues_server_certificate(tmp_path: Path) -> None:
    ca = LocalCA.create(tmp_path / "ca")
    assert LocalCA.create(tmp_path / "ca") == ca
    first = ca.cert_path.read_bytes()
    assert LocalCA.create(tmp_path / "ca").cert_path.read_bytes() == first

    files = ca.issue_certificate(tmp_path / "srv", common_name="127.0.0.1:8448")
    cert = x509.load_pem_x509_certificate(files.cert_path.read_bytes())
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert ipaddress.ip_address("127.0.0.1") in san.get_values_for_type(x509.IPAddress)
    assert "localhost" in san.get_values_for_type(x509.DNSName)
    ca_cert = x509.load_pem_x509_certificate(ca.cert_path.read_bytes())
    assert cert.issuer == ca_cert.subject
    cert.verify_directly_issued_by(ca_cert)
    assert files.key_path.stat().st_mode & 0o077 == 0
    ca.client_ssl_context()


def test_config_regenerated_but_secrets_kept(tmp_path: Path) -> None:
    directory = tmp_path / "hs"
    hs = LocalSynapse(directory, 18008)
    hs.write_config()
    secret = hs.registration_shared_secret
    signing_key = (directory / "signing.key").read_text()
    config = yaml.safe_load(hs.config_path.read_text())
    assert config["server_name"] == "localhost"
    assert config["app_service_config_files"] == []
    assert config["federation_domain_whitelist"] == []
    assert config["trusted_key_servers"] == []
    assert config["report_stats"] is False
    assert config["rc_login"]["failed_attempts"]["burst_count"] >= 1000
    assert all(
        address == "127.0.0.1"
        for listener in config["listeners"]
        for address in listener["bind_addresses"]
    )

    registration = write_registration(tmp_path / "reg.yaml", "localhost")
    again = LocalSynapse(directory, 18009, appservice_registrations=[registration])
    again.write_config()
    config = yaml.safe_load(again.config_path.read_text())
    assert config["app_service_config_files"] == [str(registration.resolve())]
    assert config["listeners"][0]["port"] == 18009
    assert again.registration_shared_secret == secret
    assert (directory / "signing.key").read_text() == signing_key

    (directory / "homeserver.db").touch()
    with pytest.raises(ValueError, match="server name"):
        LocalSynapse(directory, 18009, server_name="other.test").write_config()
    with pytest.raises(FileNotFoundError):
        LocalSynapse(
            directory, 18009, appservice_registrations=[tmp_path / "missing.yaml"]
        ).write_config()


async def test_start_refuses_busy_port(tmp_path: Path) -> None:
    server = await asyncio.start_server(lambda r, w: w.close(), "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        with pytest.raises(SynapseStartError, match="in use"):
            await LocalSynapse(tmp_path / "hs", port).start()
    finally:
        server.close()
        await server.wait_closed()


# --------------------------------------------------------------------------- one Synapse


async def test_start_failure_shows_log(tmp_path: Path) -> None:
    bad = tmp_path / "bad-registration.yaml"
    bad.write_text("id: broken\nurl: http://127.0.0.1:1\n")  # no tokens, no namespaces
    hs = LocalSynapse(tmp_path / "hs", free_port(), appservice_registrations=[bad])
    with pytest.raises(SynapseStartError) as info:
        await hs.start(timeout=30)
    message = str(info.value)
    assert "exited with code" in message
    assert "last" in message and "lines of" in message
    assert "as_token" in message
    assert not hs.running


async def test_single_server(tmp_path: Path) -> None:
    directory = tmp_path / "hs"
    registration = write_registration(tmp_path / "registration.yaml", "localhost")
    hs = LocalSynapse(directory, free_port(), appservice_registrations=[registration])
    assert hs.server_name == "localhost"
    async with hs:
        assert hs.running
        alice_creds = await hs.register_user("alice", "alice-pw", admin=True)
        assert alice_creds.user_id == "@alice:localhost"
        alice = alice_creds.client()
        bob = await hs.client_for("bob")
        async with alice, bob:
            # Invite by createRoom; bob sees it in sync and joins.
            room = await alice.create_room(name="Harness", invite=[bob.user_id])
            assert await bob.wait_for_invite(lambda room_id, _: room_id == room) == room
            assert await bob.join(room) == room
            assert bob.pending_invites() == {}
            assert set(await alice.joined_members(room)) == {alice.user_id, bob.user_id}
            assert (await bob.get_state(room, "m.room.name")) == {"name": "Harness"}
            assert await bob.get_state(room, "m.room.topic") is None

            # A message across, then a reply that lands before alice starts waiting:
            # the wait (anchored on alice's own message) must still find it.
            ping = await alice.send_text(room, "ping")
            received = await bob.wait_for_message(room, body_is("ping"))
            assert received["event_id"] == ping
            assert received["sender"] == alice.user_id
            await bob.send_text(room, "pong")
            await bob.send_text(room, "pong")  # a second, identical reply
            reply = await alice.wait_for_message(room, body_is("pong"))
            assert reply["sender"] == bob.user_id
            # Move past the first reply explicitly to get the second one.
            second = await alice.wait_for_message(room, body_is("pong"), after=reply["event_id"])
            assert second["event_id"] != reply["event_id"]
            # Buffered events stay findable: bob's join came long before.
            join = await alice.wait_for_event(
                room,
                member_event(bob.user_id, membership="join"),
                timeout=1,
                anywhere=True,
            )
            assert join["sender"] == bob.user_id
            # Anchored on alice's last message, no older event matches.
            with pytest.raises(TimeoutError, match="no matching event"):
                await alice.wait_for_message(room, body_is("ping"), timeout=0.5)

            # Errors carry status and errcode; power levels can be changed.
            with pytest.raises(MatrixRequestError) as info:
                await bob.send_state(room, "m.room.topic", "", {"topic": "nope"})
            assert info.value.status == 403
            assert info.value.errcode == "M_FORBIDDEN"
            await alice.set_power_levels(room, {bob.user_id: 50})
            await bob.send_state(room, "m.room.topic", "", {"topic": "by bob"})
            topic = await alice.wait_for_state(
                room,
                "m.room.topic",
                predicate=lambda c: c is not None and c.get("topic") == "by bob",
            )
            assert topic == {"topic": "by bob"}
            states = {(e["type"], e["state_key"]) for e in await alice.get_all_state(room)}
            assert ("m.room.topic", "") in states
            await bob.leave(room)
            assert set(await alice.joined_members(room)) == {alice.user_id}

            # OpenID: the token identifies alice at the userinfo endpoint.
            token = await alice.request_openid_token()
            assert token["matrix_server_name"] == "localhost"
            assert token["token_type"] == "Bearer"
            status, info_body = await userinfo(hs.url, token["access_token"])
            assert (status, info_body) == (200, {"sub": alice.user_id})
            status, info_body = await userinfo(hs.url, "not-a-token")
            assert status == 401

            # The appservice registration was loaded.
            async with MatrixUser(hs.url, "@visiobot:localhost", AS_TOKEN) as bot:
                assert (await bot.whoami())["user_id"] == "@visiobot:localhost"
    assert not hs.running

    # Same directory again: users and rooms are still there.
    async with LocalSynapse(directory, free_port()) as again:
        creds = await again.register_user("alice", "alice-pw")
        assert creds.user_id == "@alice:localhost"
        assert creds.access_token != alice_creds.access_token
        async with creds.client() as alice:
            assert set(await alice.joined_members(room)) == {alice.user_id}
        with pytest.raises(MatrixRequestError) as info:
            await again.register_user("alice", "wrong-password")
        assert info.value.status == 403


# --------------------------------------------------------------------------- federation


async def test_two_servers_federate(tmp_path: Path) -> None:
    ca = LocalCA.create(tmp_path / "ca")
    port_a, fed_a, port_b, fed_b = free_ports(4)
    names = [f"127.0.0.1:{fed_a}", f"127.0.0.1:{fed_b}"]
    hs_a = LocalSynapse.federating(tmp_path / "a", port_a, fed_a, ca, federation_whitelist=names)
    hs_b = LocalSynapse.federating(tmp_path / "b", port_b, fed_b, ca, federation_whitelist=names)
    assert [hs_a.server_name, hs_b.server_name] == names
    await asyncio.gather(hs_a.start(), hs_b.start())
    try:
        alice = await hs_a.client_for("alice")
        bob = await hs_b.client_for("bob")
        assert bob.user_id == f"@bob:127.0.0.1:{fed_b}"
        async with alice, bob:
            room = await alice.create_room(name="Inter-agency", preset="public_chat")
            assert await bob.join(room, via=[hs_a.server_name]) == room
            await alice.wait_for_state(
                room,
                "m.room.member",
                bob.user_id,
                lambda content: content is not None and content.get("membership") == "join",
            )
            sent = await alice.send_text(room, "hello from A")
            received = await bob.wait_for_message(room, body_is("hello from A"))
            assert received["event_id"] == sent
            assert received["sender"] == alice.user_id

            # Bob's OpenID token checks out at his server over federation TLS, as the
            # bridge of another agency would call it.
            token = await bob.request_openid_token()
            assert token["matrix_server_name"] == hs_b.server_name
            assert hs_b.federation_url is not None
            status, body = await userinfo(
                hs_b.federation_url, token["access_token"], ca.client_ssl_context()
            )
            assert (status, body) == (200, {"sub": bob.user_id})
    finally:
        await asyncio.gather(hs_a.stop(), hs_b.stop())
