"""Signaling messages from browsers, checked at the edge (see docs/protocol.md).

Every inbound frame becomes one typed message or a ProtocolError whose code and words
go back to the sender; nothing malformed gets further than this module.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from ..refusal import Refusal

PROTOCOL_VERSION = 1
MAX_MESSAGE_BYTES = 256 * 1024
MAX_DISPLAY_NAME = 100
SOURCES = ("camera", "microphone", "screen")


class ProtocolError(Refusal):
    """A message the server cannot act on."""


@dataclass(frozen=True)
class Join:
    version: int
    auth_kind: str
    token: str
    server: str | None
    display_name: str | None


@dataclass(frozen=True)
class Publish:
    sdp: str
    sources: dict[str, str]


@dataclass(frozen=True)
class Answer:
    sdp: str


@dataclass(frozen=True)
class Mute:
    audio: bool
    video: bool


@dataclass(frozen=True)
class Hand:
    raised: bool


@dataclass(frozen=True)
class Leave:
    pass


@dataclass(frozen=True)
class Ping:
    pass


ClientMessage = Join | Publish | Answer | Mute | Hand | Leave | Ping


def _field(data: dict[str, Any], name: str, kind: type, message_type: str) -> Any:
    value = data.get(name)
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise ProtocolError(
            "bad_message", f"A {message_type} message needs {name} ({kind.__name__})."
        )
    return value


def _join(data: dict[str, Any]) -> Join:
    version = _field(data, "version", int, "join")
    if version != PROTOCOL_VERSION:
        raise ProtocolError(
            "version",
            f"This page speaks protocol version {version}; the server speaks "
            f"{PROTOCOL_VERSION}. Reload the page.",
        )
    auth = _field(data, "auth", dict, "join")
    kind = auth.get("kind")
    token = auth.get("token")
    if kind not in ("openid", "link") or not isinstance(token, str) or not token:
        raise ProtocolError("unauthorized", "Sign in with a meeting link or from Element.")
    server = auth.get("server")
    if kind == "openid" and not isinstance(server, str):
        raise ProtocolError("unauthorized", "The Matrix sign-in names no server.")
    name = data.get("display_name")
    if name is not None:
        if not isinstance(name, str):
            raise ProtocolError("bad_message", "display_name must be text.")
        name = " ".join(name.split())[:MAX_DISPLAY_NAME] or None
    return Join(version, kind, token, server if kind == "openid" else None, name)


def _publish(data: dict[str, Any]) -> Publish:
    sdp = _field(data, "sdp", str, "publish")
    sources = _field(data, "sources", dict, "publish")
    if len(sources) > 8 or not all(
        isinstance(mid, str) and len(mid) <= 32 and source in SOURCES
        for mid, source in sources.items()
    ):
        raise ProtocolError(
            "bad_message", "sources must map each mid to camera, microphone or screen."
        )
    return Publish(sdp, dict(sources))


def _mute(data: dict[str, Any]) -> Mute:
    return Mute(_field(data, "audio", bool, "mute"), _field(data, "video", bool, "mute"))


_PARSERS: dict[str, Any] = {
    "join": _join,
    "publish": _publish,
    "answer": lambda data: Answer(_field(data, "sdp", str, "answer")),
    "mute": _mute,
    "hand": lambda data: Hand(_field(data, "raised", bool, "hand")),
    "leave": lambda data: Leave(),
    "ping": lambda data: Ping(),
}


def parse_message(raw: str) -> ClientMessage:
    """One text frame from a browser as a typed message, or ProtocolError."""
    if len(raw) > MAX_MESSAGE_BYTES or len(raw.encode("utf-8")) > MAX_MESSAGE_BYTES:
        raise ProtocolError("too_large", f"Messages may be at most {MAX_MESSAGE_BYTES} bytes.")
    try:
        data = json.loads(raw)
    except ValueError:
        raise ProtocolError("bad_message", "That message is not JSON.") from None
    if not isinstance(data, dict):
        raise ProtocolError("bad_message", "A message must be a JSON object.")
    kind = data.get("type")
    parser = _PARSERS.get(kind) if isinstance(kind, str) else None
    if parser is None:
        raise ProtocolError("bad_message", f"Unknown message type {str(kind)[:40]!r}.")
    result: ClientMessage = parser(data)
    return result


def message_type(raw: str) -> str | None:
    """The type field of a frame, if it has one (for error replies)."""
    try:
        data = json.loads(raw) if len(raw) <= MAX_MESSAGE_BYTES else None
    except ValueError:
        return None
    kind = data.get("type") if isinstance(data, dict) else None
    return kind[:40] if isinstance(kind, str) else None
