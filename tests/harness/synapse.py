"""A real Synapse homeserver on loopback, for integration tests and the local demo.

:class:`LocalSynapse` writes a self-contained configuration into a directory (SQLite
database, signing key, secrets, media store and logs all live there), runs
``python -m synapse.app.homeserver`` as a child process and talks to it over
``http://127.0.0.1:<port>``. Reusing a directory reuses its database, so a second demo
run finds the same users and rooms.

The configuration never lets Synapse reach beyond this machine: no key servers, no
stats, no URL previews, outbound HTTP from Synapse only to 127.0.0.0/8, and with
federation off an empty federation allowlist.

Two instances can federate with each other: give each a ``federation_port`` and a
certificate issued by a shared :class:`LocalCA` (see :meth:`LocalSynapse.federating`);
their server names are then ``127.0.0.1:<federation_port>``.

:class:`MatrixUser` acts as a human user in tests: it creates rooms, sends messages and
waits for replies by long-polling ``/sync``. It is built on mautrix's client
(:class:`mautrix.client.ClientAPI`); answers the tests inspect (events, state, sync)
stay plain JSON dicts. Error answers raise :class:`MatrixRequestError`, a mautrix
``MatrixRequestError`` with ``status`` and ``errcode``.

Everything is asyncio; the homeserver is a plain child process (not an asyncio
subprocess), so one instance may be started in one event loop and stopped in another.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import hashlib
import hmac
import ipaddress
import json
import logging
import os
import secrets
import signal
import socket
import ssl
import subprocess
import sys
import time
import weakref
from collections.abc import AsyncIterator, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import IO, Any, cast

import aiohttp
import mautrix.errors
from mautrix.api import HTTPAPI, ClientPath, Method, PathBuilder, SynapseAdminPath
from mautrix.client import ClientAPI
from mautrix.types import (
    ContentURI,
    DeviceID,
    EventType,
    RoomCreatePreset,
    RoomDirectoryVisibility,
    RoomID,
    UserID,
)
from mautrix.util.logging import TraceLogger
from multidict import MultiDict

__all__ = [
    "LocalCA",
    "LocalSynapse",
    "MatrixRequestError",
    "MatrixUser",
    "RegisteredUser",
    "SynapseStartError",
    "TLSFiles",
    "free_port",
    "free_ports",
]

log = logging.getLogger(__name__)

JSON = dict[str, Any]
EventPredicate = Callable[[JSON], bool]


def member_event(user_id: str, **content: Any) -> EventPredicate:
    """Matches the ``m.room.member`` event of ``user_id`` whose content has these values,
    e.g. ``member_event(bot, membership="join")``."""

    def matches(event: JSON) -> bool:
        return (
            event.get("type") == "m.room.member"
            and event.get("state_key") == user_id
            and all(event.get("content", {}).get(key) == value for key, value in content.items())
        )

    return matches


#: Every IPv4 address except 127.0.0.0/8, plus all of IPv6. Synapse always adds 0.0.0.0
#: and ::. Synapse checks IP-literal server names against this list without consulting
#: ``ip_range_whitelist``, so the loopback range must be left out, not allowed back in.
_BLOCK_ALL_BUT_LOOPBACK = [
    "0.0.0.0/2",
    "64.0.0.0/3",
    "96.0.0.0/4",
    "112.0.0.0/5",
    "120.0.0.0/6",
    "124.0.0.0/7",
    "126.0.0.0/8",
    "128.0.0.0/1",
    "::/0",
]

_HIGH_RATE = {"per_second": 10000, "burst_count": 100000}

#: How often a request answered 429 (rate limited) is sent again.
_RETRIES_ON_429 = 5

#: mautrix logs each request (at DEBUG) here, apart from the bridge's ``mau.*`` loggers.
_HTTP_LOG = cast(TraceLogger, logging.getLogger(f"{__name__}.http"))

#: The sync filter used by :class:`MatrixUser`: timelines of every room, nothing else.
#: One ``since`` token serves all rooms, so the filter must not be narrowed to one room
#: (events of the other rooms in the skipped stream range would be lost for good).
_SYNC_FILTER = json.dumps(
    {
        "presence": {"types": []},
        "account_data": {"types": []},
        "room": {
            "timeline": {"limit": 100},
            "state": {"lazy_load_members": True},
            "ephemeral": {"types": []},
            "account_data": {"types": []},
        },
    },
    separators=(",", ":"),
)


# --------------------------------------------------------------------------- ports


def free_ports(count: int, host: str = "127.0.0.1") -> list[int]:
    """Return ``count`` distinct TCP ports that were free on ``host`` a moment ago.

    All sockets are held open until every port is chosen, so the ports differ.
    Another process may still take one before it is used.
    """
    sockets: list[socket.socket] = []
    try:
        for _ in range(count):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.bind((host, 0))
            sockets.append(sock)
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def free_port(host: str = "127.0.0.1") -> int:
    """Return a TCP port that was free on ``host`` a moment ago."""
    return free_ports(1, host)[0]


def _port_accepts(port: int, host: str = "127.0.0.1") -> bool:
    """Whether something accepts TCP connections on ``host:port``."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((host, port)) == 0


# --------------------------------------------------------------------------- TLS


@dataclass(frozen=True)
class TLSFiles:
    """A PEM certificate (chain) and its PEM private key."""

    cert_path: Path
    key_path: Path


@dataclass(frozen=True)
class LocalCA:
    """A throwaway certificate authority for loopback TLS (federation tests).

    Create it with :meth:`create`; issue server certificates with
    :meth:`issue_certificate`; trust it with :attr:`cert_path` (Synapse's
    ``federation_custom_ca_list``) or :meth:`client_ssl_context` (aiohttp).
    """

    cert_path: Path
    key_path: Path

    @classmethod
    def create(
        cls, directory: Path, common_name: str = "Visio Bridge test CA", *, valid_days: int = 3650
    ) -> LocalCA:
        """Create a CA in ``directory`` (``ca.crt``, ``ca.key``), or load the one there."""
        from cryptography import x509
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import ec
        from cryptography.x509.oid import NameOID

        directory = Path(directory)
        ca = cls(directory / "ca.crt", directory / "ca.key")
        if ca.cert_path.exists() and ca.key_path.exists():
            return ca
        directory.mkdir(parents=True, exist_ok=True)
        key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
        now = datetime.datetime.now(datetime.UTC)
        cert = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(hours=1))
            .not_valid_after(now + datetime.timedelta(days=valid_days))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=True,
                    crl_sign=True,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False)
            .sign(key, hashes.SHA256())
        )
        _write_private(
            ca.key_path,
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            ),
        )
        ca.cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        return ca

    def issue_certificate(
        self,
        directory: Path,
        *,
        common_name: str | None = None,
        ip_addresses: Sequence[str] = ("127.0.0.1",),
        dns_names: Sequence[str] = ("localhost",),
        valid_days: int = 825,
        basename: str = "server",
    ) -> TLSFiles:
        """Issue a server certificate with the given subjectAltNames into ``directory``.

        Writes ``<basename>.crt`` and ``<basename>.key``; an existing pair is reused.
        """
        from cryptography import x509
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import ec
        from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

        directory = Path(directory)
        files = TLSFiles(directory / f"{basename}.crt", directory / f"{basename}.key")
        if files.cert_path.exists() and files.key_path.exists():
            return files
        directory.mkdir(parents=True, exist_ok=True)
        ca_key = serialization.load_pem_private_key(self.key_path.read_bytes(), password=None)
        if not isinstance(ca_key, ec.EllipticCurvePrivateKey):
            raise TypeError(f"{self.key_path} is not an EC private key")
        ca_cert = x509.load_pem_x509_certificate(self.cert_path.read_bytes())
        key = ec.generate_private_key(ec.SECP256R1())
        cn = common_name or (ip_addresses[0] if ip_addresses else dns_names[0])
        san: list[x509.GeneralName] = [x509.DNSName(name) for name in dns_names]
        san += [x509.IPAddress(ipaddress.ip_address(ip)) for ip in ip_addresses]
        now = datetime.datetime.now(datetime.UTC)
        cert = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)]))
            .issuer_name(ca_cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(hours=1))
            .not_valid_after(now + datetime.timedelta(days=valid_days))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=False,
                    crl_sign=False,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), False)
            .add_extension(x509.SubjectAlternativeName(san), critical=False)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), False
            )
            .sign(ca_key, hashes.SHA256())
        )
        _write_private(
            files.key_path,
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            ),
        )
        files.cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        return files

    def client_ssl_context(self) -> ssl.SSLContext:
        """An SSL context for clients (aiohttp) that trusts only this CA."""
        return ssl.create_default_context(cafile=str(self.cert_path))


def _write_private(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` readable by the owner only."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as file:
        file.write(data)


# --------------------------------------------------------------------------- errors


class MatrixRequestError(mautrix.errors.MatrixRequestError):
    """A Matrix HTTP request answered with an error status.

    A mautrix :class:`~mautrix.errors.MatrixRequestError` (``http_status``, ``errcode``,
    ``message``) that also names the request: ``status``, ``error``, ``method`` and
    ``url``. The specific mautrix error (``MForbidden``, ...) is its ``__cause__``.
    """

    errcode: str | None  # type: ignore[assignment]  # None when the body had none

    def __init__(
        self, status: int, errcode: str | None, error: str, method: str, url: str
    ) -> None:
        super().__init__(f"{method} {url} -> {status} {errcode or ''}: {error}".strip())
        self.status = self.http_status = status
        self.errcode = errcode
        self.error = self.message = error
        self.method = method
        self.url = url


class SynapseStartError(RuntimeError):
    """Synapse did not come up; the message holds the end of its logs."""


# --------------------------------------------------------------------------- HTTP


class _HarnessAPI(HTTPAPI):
    """mautrix's request sender with what tests expect on top.

    Every request has a deadline (``request_timeout`` seconds, or ``timeout=``), an
    answer 429 is retried a few times with a growing pause, and error answers raise
    :class:`MatrixRequestError`.
    """

    def __init__(
        self,
        base_url: str,
        token: str,
        client_session: aiohttp.ClientSession,
        *,
        request_timeout: float = 30.0,
    ) -> None:
        super().__init__(base_url, token, client_session=client_session, log=_HTTP_LOG)
        self.request_timeout = request_timeout

    async def request(
        self,
        method: Method,
        path: PathBuilder | str,
        *args: Any,
        timeout: float | None = None,  # noqa: ASYNC109 - a deadline per request
        **kwargs: Any,
    ) -> Any:
        attempt = 0
        while True:
            try:
                async with asyncio.timeout(timeout or self.request_timeout):
                    return await super().request(method, path, *args, **kwargs)
            except mautrix.errors.MatrixRequestError as exc:
                if exc.http_status == 429 and attempt < _RETRIES_ON_429:
                    # mautrix keeps no retry_after_ms, so back off 0.5, 1, 2, 4, 5 s.
                    await asyncio.sleep(min(0.5 * 2**attempt, 5.0))
                    attempt += 1
                    continue
                url = f"{self.base_url}/{str(path).lstrip('/')}"
                error = exc.message or getattr(exc, "text", "") or ""
                raise MatrixRequestError(
                    exc.http_status, exc.errcode, error, str(method), url
                ) from exc


@contextlib.asynccontextmanager
async def _unauthenticated_api(url: str) -> AsyncIterator[_HarnessAPI]:
    """A :class:`_HarnessAPI` without access token, on a session closed afterwards."""
    async with aiohttp.ClientSession() as session:
        yield _HarnessAPI(url, "", session)


def _query(params: Mapping[str, str | Sequence[str]] | None) -> MultiDict[str] | None:
    """Query parameters, a sequence value giving the key once per item."""
    if not params:
        return None
    query: MultiDict[str] = MultiDict()
    for key, value in params.items():
        if isinstance(value, str):
            query.add(key, value)
        else:
            for item in value:
                query.add(key, item)
    return query


# --------------------------------------------------------------------------- users


@dataclass(frozen=True)
class RegisteredUser:
    """Credentials of a user on a homeserver."""

    user_id: str
    access_token: str
    device_id: str | None
    homeserver_url: str

    def client(self) -> MatrixUser:
        """A :class:`MatrixUser` acting with these credentials (close it when done)."""
        return MatrixUser(
            self.homeserver_url, self.user_id, self.access_token, device_id=self.device_id
        )


class MatrixUser:
    """A Matrix client acting as a human user, for tests, on mautrix's :class:`ClientAPI`.

    One aiohttp session per user, created on first use; call :meth:`close` (or use
    ``async with``). Sync state (the ``since`` token, the timelines seen so far and
    pending invites) is kept per instance, so a wait never misses an event an earlier
    sync already returned.

    Calls that give back ids go through mautrix's typed methods; events, state,
    members and other answers are returned as the server's plain JSON (dicts), from
    raw requests through the same mautrix client (:attr:`api`).
    """

    def __init__(
        self,
        homeserver_url: str,
        user_id: str,
        access_token: str,
        *,
        device_id: str | None = None,
        request_timeout: float = 30.0,
    ) -> None:
        self.homeserver_url = homeserver_url.rstrip("/")
        self.user_id = user_id
        self.access_token = access_token
        self.device_id = device_id
        self.request_timeout = request_timeout
        self._api: _HarnessAPI | None = None
        self._client_api: ClientAPI | None = None
        self._since: str | None = None
        self._sync_lock = asyncio.Lock()
        self._timelines: dict[str, list[JSON]] = {}
        self._seen_ids: dict[str, set[str]] = {}
        self._invites: dict[str, list[JSON]] = {}
        self._last_sent: dict[str, str] = {}

    def __repr__(self) -> str:
        return f"MatrixUser({self.user_id!r} on {self.homeserver_url})"

    async def __aenter__(self) -> MatrixUser:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def close(self) -> None:
        """Close the HTTP session (the access token stays valid)."""
        api, self._api, self._client_api = self._api, None, None
        if api is not None:
            await api.session.close()

    @property
    def client_api(self) -> ClientAPI:
        """mautrix's client for this user (with a new session after :meth:`close`)."""
        if self._client_api is None or self._client_api.api.session.closed:
            self._api = _HarnessAPI(
                self.homeserver_url,
                self.access_token,
                aiohttp.ClientSession(),
                request_timeout=self.request_timeout,
            )
            self._client_api = ClientAPI(
                UserID(self.user_id), DeviceID(self.device_id or ""), api=self._api
            )
        return self._client_api

    @property
    def api(self) -> _HarnessAPI:
        """The HTTP API under :attr:`client_api`, for raw requests."""
        api = self.client_api.api
        assert isinstance(api, _HarnessAPI)
        return api

    @property
    def session(self) -> aiohttp.ClientSession:
        """The user's aiohttp session (created on first use)."""
        return self.api.session

    async def request(
        self,
        method: str,
        path: str,
        *,
        json_body: Any = None,
        params: Mapping[str, str | Sequence[str]] | None = None,
        request_timeout: float | None = None,
    ) -> Any:
        """Call the homeserver with this user's token; ``path`` must be percent-encoded."""
        return await self.api.request(
            Method(method.upper()),
            path,
            json_body,
            query_params=_query(params),
            timeout=request_timeout,
        )

    # ----------------------------------------------------------------- account

    async def whoami(self) -> JSON:
        """``GET /account/whoami``."""
        result: JSON = await self.api.request(Method.GET, ClientPath.v3.account.whoami)
        return result

    async def set_display_name(self, display_name: str) -> None:
        """Set the user's global display name."""
        await self.client_api.set_displayname(display_name, check_current=False)

    async def upload(self, data: bytes, content_type: str, filename: str = "file") -> str:
        """Upload media; returns its ``mxc://`` URI."""
        uri = await self.client_api.upload_media(data, mime_type=content_type, filename=filename)
        return str(uri)

    async def download(self, mxc: str) -> bytes:
        """Download media with this user's token (authenticated media)."""
        return bytes(await self.client_api.download_media(ContentURI(mxc)))

    async def set_avatar_url(self, mxc: str) -> None:
        await self.client_api.set_avatar_url(ContentURI(mxc), check_current=False)

    async def request_openid_token(self) -> JSON:
        """Get ``{access_token, token_type, matrix_server_name, expires_in}``."""
        result: JSON = await self.api.request(
            Method.POST, ClientPath.v3.user[self.user_id].openid.request_token, {}
        )
        return result

    # ----------------------------------------------------------------- rooms

    async def create_room(
        self,
        name: str | None = None,
        invite: Iterable[str] = (),
        is_direct: bool = False,
        preset: str = "private_chat",
        power_level_override: Mapping[str, Any] | None = None,
        *,
        topic: str | None = None,
        alias_localpart: str | None = None,
        visibility: str | None = None,
        room_version: str | None = None,
        initial_state: Iterable[Mapping[str, Any]] = (),
        extra: Mapping[str, Any] | None = None,
    ) -> str:
        """Create a room and return its id.

        ``extra`` adds fields to the request body (the named arguments take precedence).
        """
        return await self.client_api.create_room(
            alias_localpart=alias_localpart,
            visibility=RoomDirectoryVisibility(visibility or "private"),
            preset=RoomCreatePreset(preset),
            name=name,
            topic=topic,
            is_direct=is_direct,
            invitees=[UserID(user_id) for user_id in invite],
            initial_state=[dict(event) for event in initial_state],
            room_version=room_version,  # type: ignore[arg-type]  # mautrix: str = None
            power_level_override=(
                dict(power_level_override) if power_level_override is not None else None
            ),
            custom_request_fields=dict(extra) if extra else None,
        )

    async def invite(self, room_id: str, user_id: str, reason: str | None = None) -> None:
        """Invite ``user_id`` into the room."""
        await self.client_api.invite_user(RoomID(room_id), UserID(user_id), reason)

    async def join(self, room_id_or_alias: str, via: Sequence[str] = ()) -> str:
        """Join a room by id or alias (``via``: servers to join through); return its id."""
        # A raw request: mautrix's join_room sends only ``server_name`` and retries
        # failures for up to 100 s; ``via`` is the current name (MSC4156).
        result = await self.api.request(
            Method.POST,
            ClientPath.v3.join[room_id_or_alias],
            {},
            query_params=_query({"via": list(via), "server_name": list(via)}),
        )
        room_id: str = result["room_id"]
        self._invites.pop(room_id, None)
        return room_id

    async def leave(self, room_id: str, reason: str | None = None) -> None:
        """Leave the room (or reject an invite)."""
        await self.client_api.leave_room(RoomID(room_id), reason, raise_not_in_room=True)
        self._invites.pop(room_id, None)

    async def kick(self, room_id: str, user_id: str, reason: str | None = None) -> None:
        """Kick ``user_id`` from the room."""
        await self.client_api.kick_user(RoomID(room_id), UserID(user_id), reason or "")

    async def joined_members(self, room_id: str) -> dict[str, JSON]:
        """``{user_id: {display_name, avatar_url}}`` of the joined members."""
        result = await self.api.request(Method.GET, ClientPath.v3.rooms[room_id].joined_members)
        joined: dict[str, JSON] = result.get("joined", {})
        return joined

    # ----------------------------------------------------------------- events

    async def send_event(
        self, room_id: str, event_type: str, content: Mapping[str, Any], txn_id: str | None = None
    ) -> str:
        """Send a message-like event; return its event id."""
        event_id = await self.client_api.send_message_event(
            RoomID(room_id),
            EventType.find(event_type, EventType.Class.MESSAGE),
            cast(Any, dict(content)),  # mautrix sends a dict as it is
            txn_id,
        )
        self._last_sent[room_id] = event_id
        return event_id

    async def send_text(self, room_id: str, body: str, msgtype: str = "m.text") -> str:
        """Send a plain text message; return its event id."""
        return await self.send_event(room_id, "m.room.message", {"msgtype": msgtype, "body": body})

    async def send_state(
        self, room_id: str, event_type: str, state_key: str, content: Mapping[str, Any]
    ) -> str:
        """Send a state event; return its event id."""
        event_id = await self.client_api.send_state_event(
            RoomID(room_id),
            EventType.find(event_type, EventType.Class.STATE),
            cast(Any, dict(content)),  # mautrix sends a dict as it is
            state_key,
        )
        self._last_sent[room_id] = event_id
        return event_id

    async def get_state(self, room_id: str, event_type: str, state_key: str = "") -> JSON | None:
        """The content of one state event, or ``None`` if there is none."""
        try:
            result: JSON = await self.api.request(
                Method.GET, ClientPath.v3.rooms[room_id].state[event_type][state_key]
            )
        except MatrixRequestError as exc:
            if exc.status == 404:
                return None
            raise
        return result

    async def get_all_state(self, room_id: str) -> list[JSON]:
        """All current state events of the room (full events, not just contents)."""
        result: list[JSON] = await self.api.request(Method.GET, ClientPath.v3.rooms[room_id].state)
        return result

    async def set_power_levels(
        self,
        room_id: str,
        users: Mapping[str, int] | None = None,
        *,
        events: Mapping[str, int] | None = None,
        **fields: int,
    ) -> str:
        """Merge changes into ``m.room.power_levels`` and send it; return the event id.

        ``users`` and ``events`` are merged into the existing maps; ``fields`` set
        top-level levels (``state_default=50``, ``invite=0``, ...).
        """
        content = await self.get_state(room_id, "m.room.power_levels") or {}
        if users:
            content["users"] = {**content.get("users", {}), **users}
        if events:
            content["events"] = {**content.get("events", {}), **events}
        content.update(fields)
        return await self.send_state(room_id, "m.room.power_levels", "", content)

    # ----------------------------------------------------------------- sync

    @property
    def since(self) -> str | None:
        """The ``next_batch`` token of the last sync, if any."""
        return self._since

    def timeline(self, room_id: str) -> list[JSON]:
        """A copy of the timeline events seen so far in the room, oldest first."""
        return list(self._timelines.get(room_id, ()))

    def pending_invites(self) -> dict[str, list[JSON]]:
        """Rooms this user is invited to (as seen by sync) and their stripped state."""
        return {room_id: list(state) for room_id, state in self._invites.items()}

    def _record(self, room_id: str, event: JSON) -> None:
        event_id = event.get("event_id")
        seen = self._seen_ids.setdefault(room_id, set())
        if not isinstance(event_id, str) or event_id in seen:
            return
        seen.add(event_id)
        self._timelines.setdefault(room_id, []).append(event)

    async def sync_once(self, long_poll: float = 0.0) -> None:
        """Run one ``/sync`` (long-polling up to ``long_poll`` seconds) and buffer events."""
        async with self._sync_lock:
            params = {"timeout": str(int(long_poll * 1000)), "filter": _SYNC_FILTER}
            if self._since is not None:
                params["since"] = self._since
            result = await self.api.request(
                Method.GET,
                ClientPath.v3.sync,
                query_params=params,
                timeout=long_poll + self.request_timeout,
            )
            rooms = result.get("rooms", {})
            for section in ("join", "leave"):
                for room_id, room in rooms.get(section, {}).items():
                    self._invites.pop(room_id, None)
                    for event in room.get("timeline", {}).get("events", []):
                        self._record(room_id, event)
            for room_id, room in rooms.get("invite", {}).items():
                self._invites[room_id] = room.get("invite_state", {}).get("events", [])
            self._since = result["next_batch"]

    def _find(
        self, room_id: str, predicate: EventPredicate, anchor: str | None
    ) -> tuple[bool, JSON | None]:
        """Search the buffered timeline after ``anchor``.

        Returns ``(anchor_seen, event)``.
        """
        events = self._timelines.get(room_id, [])
        start = 0
        if anchor is not None:
            for index, event in enumerate(events):
                if event.get("event_id") == anchor:
                    start = index + 1
                    break
            else:
                return False, None
        for event in events[start:]:
            if predicate(event):
                return True, event
        return True, None

    async def wait_for_event(
        self,
        room_id: str,
        predicate: EventPredicate,
        timeout: float = 15.0,  # noqa: ASYNC109 - a deadline for the whole wait
        *,
        after: str | None = None,
        anywhere: bool = False,
    ) -> JSON:
        """Wait for a timeline event in the room that matches ``predicate``.

        Only events after an anchor count: ``after`` if given, else the last event this
        client sent into the room (so a wait right after :meth:`send_text` finds the
        reply even if it arrived before the wait began), else every event seen. With
        ``anywhere=True`` every buffered event counts. The same event can be returned
        by several waits; pass ``after=`` to move past it.

        Raises :class:`TimeoutError` listing the events seen after the anchor.
        """
        anchor = None if anywhere else (after or self._last_sent.get(room_id))
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            anchor_seen, event = self._find(room_id, predicate, anchor)
            if event is not None:
                return event
            remaining = deadline - loop.time()
            if remaining <= 0:
                seen = self.timeline(room_id)
                if anchor is not None and anchor_seen:
                    ids = [e.get("event_id") for e in seen]
                    seen = seen[ids.index(anchor) + 1 :]
                summary = "; ".join(_describe_event(e) for e in seen[-15:]) or "none"
                where = f"after {anchor}" if anchor else "at all"
                if anchor is not None and not anchor_seen:
                    where = f"(anchor {anchor} never seen; all events)"
                raise TimeoutError(
                    f"{self.user_id}: no matching event in {room_id} within {timeout:g} s; "
                    f"events seen {where}: {summary}"
                )
            await self.sync_once(long_poll=min(remaining, 5.0))

    async def wait_for_message(
        self,
        room_id: str,
        predicate: EventPredicate | None = None,
        timeout: float = 15.0,  # noqa: ASYNC109
        *,
        after: str | None = None,
        anywhere: bool = False,
    ) -> JSON:
        """:meth:`wait_for_event` restricted to ``m.room.message`` events."""

        def matches(event: JSON) -> bool:
            if event.get("type") != "m.room.message":
                return False
            return predicate is None or predicate(event)

        return await self.wait_for_event(room_id, matches, timeout, after=after, anywhere=anywhere)

    async def wait_for_invite(
        self,
        predicate: Callable[[str, list[JSON]], bool] | None = None,
        timeout: float = 15.0,  # noqa: ASYNC109
    ) -> str:
        """Wait until sync shows an invite (``predicate(room_id, stripped_state)``)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            for room_id, state in self._invites.items():
                if predicate is None or predicate(room_id, state):
                    return room_id
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise TimeoutError(f"{self.user_id}: no matching invite within {timeout:g} s")
            await self.sync_once(long_poll=min(remaining, 5.0))

    async def wait_for_state(
        self,
        room_id: str,
        event_type: str,
        state_key: str = "",
        predicate: Callable[[JSON | None], bool] | None = None,
        timeout: float = 15.0,  # noqa: ASYNC109
        interval: float = 0.2,
    ) -> JSON | None:
        """Poll a state event until ``predicate(content)`` holds; return the content.

        ``content`` is ``None`` while the event does not exist; the default predicate
        waits for it to exist.
        """
        check = predicate or (lambda content: content is not None)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            content = await self.get_state(room_id, event_type, state_key)
            if check(content):
                return content
            if loop.time() >= deadline:
                raise TimeoutError(
                    f"{self.user_id}: state {event_type}/{state_key!r} in {room_id} did not "
                    f"match within {timeout:g} s; last content: {content!r}"
                )
            await asyncio.sleep(interval)


def _describe_event(event: JSON) -> str:
    """A short one-line description of an event for error messages."""
    content = event.get("content", {})
    detail = content.get("body") if isinstance(content, dict) else None
    if detail is None and "state_key" in event:
        detail = f"state_key={event['state_key']!r}"
    text = f"{event.get('type')} from {event.get('sender')}"
    return f"{text}: {str(detail)[:80]}" if detail is not None else text


# --------------------------------------------------------------------------- Synapse


class LocalSynapse:
    """A Synapse homeserver on 127.0.0.1, run as a child process.

    ``directory`` holds everything (``homeserver.yaml``, ``log.config``, signing key,
    secrets, ``homeserver.db``, ``media_store/``, ``homeserver.log`` and the process
    output in ``console.log``). It is reused when it exists: the configuration is
    rewritten from the arguments on every :meth:`start`, while signing key, secrets
    and database are kept. The server name cannot change once the database exists.

    ``server_name`` defaults to ``127.0.0.1:<federation_port>`` when federating,
    else ``localhost``. Federation needs ``federation_port`` together with
    ``tls_certificate``, ``tls_private_key`` and ``federation_ca`` (see
    :meth:`federating`); ``federation_whitelist`` then optionally restricts the peers.
    Without federation, Synapse may federate with nobody.

    ``extra_config`` is merged (recursively for mappings) over the generated config.
    """

    def __init__(
        self,
        directory: Path,
        port: int,
        server_name: str | None = None,
        appservice_registrations: Sequence[Path] = (),
        *,
        federation_port: int | None = None,
        tls_certificate: Path | None = None,
        tls_private_key: Path | None = None,
        federation_ca: Path | None = None,
        federation_whitelist: Sequence[str] | None = None,
        extra_config: Mapping[str, Any] | None = None,
        log_level: str = "INFO",
    ) -> None:
        if federation_port is not None and not (
            tls_certificate and tls_private_key and federation_ca
        ):
            raise ValueError(
                "federation_port needs tls_certificate, tls_private_key and federation_ca"
            )
        self.directory = Path(directory).resolve()
        self.port = port
        self.federation_port = federation_port
        if server_name is None:
            server_name = f"127.0.0.1:{federation_port}" if federation_port else "localhost"
        self._server_name = server_name
        self.appservice_registrations = [Path(p).resolve() for p in appservice_registrations]
        self.tls_certificate = Path(tls_certificate).resolve() if tls_certificate else None
        self.tls_private_key = Path(tls_private_key).resolve() if tls_private_key else None
        self.federation_ca = Path(federation_ca).resolve() if federation_ca else None
        self.federation_whitelist = (
            list(federation_whitelist) if federation_whitelist is not None else None
        )
        self.extra_config = dict(extra_config or {})
        self.log_level = log_level
        self._process: subprocess.Popen[bytes] | None = None
        self._console: IO[bytes] | None = None
        self._finalizer: weakref.finalize[Any, LocalSynapse] | None = None

    @classmethod
    def federating(
        cls,
        directory: Path,
        port: int,
        federation_port: int,
        ca: LocalCA,
        appservice_registrations: Sequence[Path] = (),
        **kwargs: Any,
    ) -> LocalSynapse:
        """An instance named ``127.0.0.1:<federation_port>`` with a certificate from ``ca``.

        The certificate (SAN IP 127.0.0.1 and DNS localhost) goes to ``directory/tls``.
        """
        directory = Path(directory)
        tls = ca.issue_certificate(directory / "tls", common_name=f"127.0.0.1:{federation_port}")
        return cls(
            directory,
            port,
            appservice_registrations=appservice_registrations,
            federation_port=federation_port,
            tls_certificate=tls.cert_path,
            tls_private_key=tls.key_path,
            federation_ca=ca.cert_path,
            **kwargs,
        )

    def __repr__(self) -> str:
        return f"LocalSynapse({self._server_name!r} at {self.url}, {self.directory})"

    # ----------------------------------------------------------------- properties

    @property
    def server_name(self) -> str:
        """The homeserver's server name (the part after ``:`` in user ids)."""
        return self._server_name

    @property
    def url(self) -> str:
        """Client-server API base URL, ``http://127.0.0.1:<port>``."""
        return f"http://127.0.0.1:{self.port}"

    @property
    def federation_url(self) -> str | None:
        """``https://127.0.0.1:<federation_port>``, or ``None`` without federation."""
        if self.federation_port is None:
            return None
        return f"https://127.0.0.1:{self.federation_port}"

    @property
    def config_path(self) -> Path:
        """The generated ``homeserver.yaml``."""
        return self.directory / "homeserver.yaml"

    @property
    def log_path(self) -> Path:
        """Synapse's own log file."""
        return self.directory / "homeserver.log"

    @property
    def console_log_path(self) -> Path:
        """stdout and stderr of the Synapse process."""
        return self.directory / "console.log"

    @property
    def running(self) -> bool:
        """Whether the child process is alive."""
        return self._process is not None and self._process.poll() is None

    @property
    def pid(self) -> int | None:
        """The child process id while started."""
        return self._process.pid if self._process is not None else None

    @property
    def registration_shared_secret(self) -> str:
        """The secret for the shared-secret registration API."""
        return self._secret("registration_shared_secret")

    def user_id(self, localpart: str) -> str:
        """``@<localpart>:<server_name>``."""
        return f"@{localpart}:{self._server_name}"

    # ----------------------------------------------------------------- config

    def _secret(self, name: str) -> str:
        """Read a secret file from the directory, creating it on first use."""
        path = self.directory / name
        if not path.exists():
            self.directory.mkdir(parents=True, exist_ok=True)
            _write_private(path, secrets.token_urlsafe(32).encode())
        return path.read_text().strip()

    def _ensure_signing_key(self) -> Path:
        path = self.directory / "signing.key"
        if not path.exists():
            from signedjson.key import generate_signing_key, write_signing_keys

            key = generate_signing_key("a_" + secrets.token_hex(2))
            with open(path, "w") as stream:
                write_signing_keys(stream, [key])
            path.chmod(0o600)
        return path

    def _check_server_name(self) -> None:
        """Refuse to point an existing database at a different server name."""
        marker = self.directory / "server_name"
        database = self.directory / "homeserver.db"
        if marker.exists() and database.exists():
            previous = marker.read_text().strip()
            if previous != self._server_name:
                raise ValueError(
                    f"{self.directory} holds a database for server name {previous!r}, "
                    f"not {self._server_name!r}; use another directory"
                )
        marker.write_text(self._server_name + "\n")

    def build_config(self) -> JSON:
        """The Synapse configuration as a dict (secrets are referenced by path)."""
        d = self.directory
        client_listener: JSON = {
            "port": self.port,
            "bind_addresses": ["127.0.0.1"],
            "type": "http",
            "tls": False,
            "x_forwarded": False,
            # "federation" here serves /_matrix/federation/v1/openid/userinfo (and the
            # key API) on plain HTTP, so single-server tests can check OpenID tokens.
            "resources": [{"names": ["client", "federation"], "compress": False}],
        }
        config: JSON = {
            "server_name": self._server_name,
            "public_baseurl": self.url + "/",
            "listeners": [client_listener],
            "database": {"name": "sqlite3", "args": {"database": str(d / "homeserver.db")}},
            "log_config": str(d / "log.config"),
            "media_store_path": str(d / "media_store"),
            "signing_key_path": str(d / "signing.key"),
            "registration_shared_secret_path": str(d / "registration_shared_secret"),
            "macaroon_secret_key_path": str(d / "macaroon_secret_key"),
            "form_secret_path": str(d / "form_secret"),
            "report_stats": False,
            "trusted_key_servers": [],
            "suppress_key_server_warning": True,
            "enable_registration": True,
            "enable_registration_without_verification": True,
            "bcrypt_rounds": 4,
            "presence": {"enabled": False},
            "url_preview_enabled": False,
            "enable_metrics": False,
            "max_upload_size": "50M",
            "user_directory": {"enabled": True, "search_all_users": True},
            "app_service_config_files": [str(p) for p in self.appservice_registrations],
            "ip_range_blacklist": list(_BLOCK_ALL_BUT_LOOPBACK),
            # Rate limits: high enough never to trigger in tests or the demo.
            "rc_message": _HIGH_RATE,
            "rc_registration": _HIGH_RATE,
            "rc_registration_token_validity": _HIGH_RATE,
            "rc_login": {
                "address": _HIGH_RATE,
                "account": _HIGH_RATE,
                "failed_attempts": _HIGH_RATE,
            },
            "rc_admin_redaction": _HIGH_RATE,
            "rc_joins": {"local": _HIGH_RATE, "remote": _HIGH_RATE},
            "rc_joins_per_room": _HIGH_RATE,
            "rc_3pid_validation": _HIGH_RATE,
            "rc_invites": {
                "per_room": _HIGH_RATE,
                "per_user": _HIGH_RATE,
                "per_issuer": _HIGH_RATE,
            },
            "rc_third_party_invite": _HIGH_RATE,
            "rc_media_create": _HIGH_RATE,
            "rc_key_requests": _HIGH_RATE,
            "rc_presence": {"per_user": _HIGH_RATE},
            "rc_delayed_event_mgmt": _HIGH_RATE,
            "rc_room_creation": _HIGH_RATE,
            "rc_reports": _HIGH_RATE,
            "rc_user_directory": _HIGH_RATE,
            "rc_profile": _HIGH_RATE,
            "rc_federation": {
                "window_size": 1000,
                "sleep_limit": 10000,
                "sleep_delay": 1,
                "reject_limit": 100000,
                "concurrent": 1000,
            },
            "federation_rr_transactions_per_room_per_second": 10000,
        }
        if self.federation_port is None:
            # Federate with nobody: outbound federation is refused before any lookup.
            config["federation_domain_whitelist"] = []
        else:
            config["listeners"].append(
                {
                    "port": self.federation_port,
                    "bind_addresses": ["127.0.0.1"],
                    "type": "http",
                    "tls": True,
                    "x_forwarded": False,
                    "resources": [{"names": ["federation"], "compress": False}],
                }
            )
            config["tls_certificate_path"] = str(self.tls_certificate)
            config["tls_private_key_path"] = str(self.tls_private_key)
            config["federation_verify_certificates"] = True
            config["federation_custom_ca_list"] = [str(self.federation_ca)]
            if self.federation_whitelist is not None:
                config["federation_domain_whitelist"] = list(self.federation_whitelist)
        return _deep_merge(config, self.extra_config)

    def build_log_config(self) -> JSON:
        """Python logging config for Synapse: everything to ``homeserver.log``.

        Warnings and errors also go to stderr, that is ``console.log``.
        """
        return {
            "version": 1,
            "formatters": {
                "precise": {
                    "format": "%(asctime)s - %(name)s - %(lineno)d - %(levelname)s - "
                    "%(request)s - %(message)s"
                }
            },
            "handlers": {
                "file": {
                    "class": "logging.FileHandler",
                    "formatter": "precise",
                    "filename": str(self.log_path),
                    "encoding": "utf8",
                },
                "console": {
                    "class": "logging.StreamHandler",
                    "formatter": "precise",
                    "level": "WARNING",
                },
            },
            "loggers": {"synapse.storage.SQL": {"level": "WARNING"}},
            "root": {"level": self.log_level, "handlers": ["file", "console"]},
            "disable_existing_loggers": False,
        }

    def write_config(self) -> Path:
        """Create the directory, key and secrets if missing; (re)write the config files."""
        import yaml

        for path in self.appservice_registrations:
            if not path.is_file():
                raise FileNotFoundError(f"appservice registration {path} does not exist")
        self.directory.mkdir(parents=True, exist_ok=True)
        (self.directory / "media_store").mkdir(exist_ok=True)
        self._check_server_name()
        self._ensure_signing_key()
        for name in ("registration_shared_secret", "macaroon_secret_key", "form_secret"):
            self._secret(name)
        header = "# Generated by tests.harness.synapse; rewritten on every start.\n"
        for path, content in (
            (self.directory / "log.config", self.build_log_config()),
            (self.config_path, self.build_config()),
        ):
            # The JSON round trip drops shared references, which YAML would alias.
            plain = json.loads(json.dumps(content))
            path.write_text(header + yaml.safe_dump(plain, sort_keys=False))
        return self.config_path

    # ----------------------------------------------------------------- process

    async def start(self, timeout: float = 60.0) -> None:  # noqa: ASYNC109
        """Write the config, start Synapse and wait until its client API answers.

        Raises :class:`SynapseStartError` (with the end of the logs) if the process
        exits or does not answer within ``timeout`` seconds.
        """
        if self.running:
            raise RuntimeError(f"{self!r} is already running")
        ports = [self.port] + ([self.federation_port] if self.federation_port else [])
        for port in ports:
            if _port_accepts(port):
                raise SynapseStartError(f"port 127.0.0.1:{port} is already in use")
        self.write_config()
        log_offset = self.log_path.stat().st_size if self.log_path.exists() else 0
        console_offset = self._spawn()
        try:
            await self._wait_ready(timeout, log_offset, console_offset)
        except BaseException:
            await self.stop()
            raise

    def _spawn(self) -> int:
        """Start the child process; return the console log's size before it started."""
        console = open(self.console_log_path, "ab")  # closed in stop()
        console_offset = console.tell()
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        try:
            process = subprocess.Popen(
                [sys.executable, "-m", "synapse.app.homeserver", "-c", str(self.config_path)],
                cwd=self.directory,
                stdin=subprocess.DEVNULL,
                stdout=console,
                stderr=subprocess.STDOUT,
                env=env,
            )
        except BaseException:
            console.close()
            raise
        self._process = process
        self._console = console
        # Kill the child if this object is dropped or the interpreter exits unstopped.
        self._finalizer = weakref.finalize(self, _kill_process, process, console)
        log.info(
            "started Synapse %s (pid %d) in %s", self._server_name, process.pid, self.directory
        )
        return console_offset

    async def _wait_ready(self, limit: float, log_offset: int, console_offset: int) -> None:
        assert self._process is not None
        deadline = time.monotonic() + limit
        versions = f"{self.url}/_matrix/client/versions"
        async with aiohttp.ClientSession() as session:
            while True:
                code = self._process.poll()
                if code is not None:
                    raise SynapseStartError(
                        f"Synapse exited with code {code} during startup\n"
                        + self._log_tail(log_offset, console_offset)
                    )
                if time.monotonic() > deadline:
                    raise SynapseStartError(
                        f"Synapse did not answer on {versions} within {limit:g} s\n"
                        + self._log_tail(log_offset, console_offset)
                    )
                with contextlib.suppress(aiohttp.ClientError, OSError, asyncio.TimeoutError):
                    async with session.get(
                        versions, timeout=aiohttp.ClientTimeout(total=2)
                    ) as response:
                        if response.status == 200 and (
                            self.federation_port is None or _port_accepts(self.federation_port)
                        ):
                            return
                await asyncio.sleep(0.1)

    def _log_tail(self, log_offset: int = 0, console_offset: int = 0, lines: int = 40) -> str:
        """The last ``lines`` lines of this run's console output and Synapse log."""
        parts = []
        for path, offset in ((self.console_log_path, console_offset), (self.log_path, log_offset)):
            if not path.exists():
                continue
            with open(path, "rb") as file:
                file.seek(offset)
                text = file.read().decode("utf-8", "replace")
            tail = text.splitlines()[-lines:]
            if tail:
                parts.append(f"--- last {len(tail)} lines of {path} ---\n" + "\n".join(tail))
        return "\n".join(parts) or "(no log output)"

    async def stop(self, timeout: float = 10.0) -> None:  # noqa: ASYNC109
        """SIGTERM Synapse, wait up to ``timeout`` seconds, then SIGKILL. Idempotent."""
        process, self._process = self._process, None
        if self._finalizer is not None:
            self._finalizer.detach()
            self._finalizer = None
        try:
            if process is not None and process.poll() is None:
                process.send_signal(signal.SIGTERM)
                try:
                    await asyncio.to_thread(process.wait, timeout)
                except subprocess.TimeoutExpired:
                    log.warning("Synapse %s ignored SIGTERM; killing it", self._server_name)
                    process.kill()
                    await asyncio.to_thread(process.wait)
        finally:
            if self._console is not None:
                self._console.close()
                self._console = None

    async def __aenter__(self) -> LocalSynapse:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    # ----------------------------------------------------------------- users

    async def register_user(
        self,
        localpart: str,
        password: str,
        admin: bool = False,
        *,
        displayname: str | None = None,
    ) -> RegisteredUser:
        """Register a user with the shared-secret admin API; log in if it exists.

        An existing user keeps its admin flag; only the password is checked.
        """
        path = SynapseAdminPath.v1.register
        async with _unauthenticated_api(self.url) as api:
            nonce: str = (await api.request(Method.GET, path))["nonce"]
            mac = hmac.new(self.registration_shared_secret.encode(), digestmod=hashlib.sha1)
            for part in (nonce, localpart, password):
                mac.update(part.encode("utf8"))
                mac.update(b"\x00")
            mac.update(b"admin" if admin else b"notadmin")
            body: JSON = {
                "nonce": nonce,
                "username": localpart,
                "password": password,
                "admin": admin,
                "mac": mac.hexdigest(),
            }
            if displayname is not None:
                body["displayname"] = displayname
            try:
                result = await api.request(Method.POST, path, body, sensitive=True)
            except MatrixRequestError as exc:
                if exc.errcode != "M_USER_IN_USE":
                    raise
                return await self.login(localpart, password)
        return RegisteredUser(
            user_id=result["user_id"],
            access_token=result["access_token"],
            device_id=result.get("device_id"),
            homeserver_url=self.url,
        )

    async def login(self, localpart: str, password: str) -> RegisteredUser:
        """Log in with a password (a new device and access token each time)."""
        async with _unauthenticated_api(self.url) as api:
            result = await ClientAPI(api=api).login(
                UserID(localpart), password=password, device_name="tests.harness.synapse"
            )
        return RegisteredUser(
            user_id=result.user_id,
            access_token=result.access_token,
            device_id=result.device_id,
            homeserver_url=self.url,
        )

    async def client_for(
        self, localpart: str, password: str | None = None, admin: bool = False
    ) -> MatrixUser:
        """Register (or log in) a user and return a :class:`MatrixUser` for it.

        ``password`` defaults to ``<localpart>-password``.
        """
        user = await self.register_user(localpart, password or f"{localpart}-password", admin)
        return user.client()


def _kill_process(process: subprocess.Popen[bytes], console: IO[bytes]) -> None:
    """Last-resort cleanup for a :class:`LocalSynapse` that was never stopped."""
    if process.poll() is None:
        process.kill()
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=5)
    console.close()


def _deep_merge(base: Mapping[str, Any], override: Mapping[str, Any]) -> JSON:
    """``base`` updated with ``override``, merging nested mappings."""
    merged = dict(base)
    for key, value in override.items():
        current = merged.get(key)
        if isinstance(current, Mapping) and isinstance(value, Mapping):
            merged[key] = _deep_merge(current, value)
        else:
            merged[key] = value
    return merged
