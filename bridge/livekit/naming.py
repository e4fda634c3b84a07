"""LiveKit room names and participant identities, as lk-jwt-service makes them, so that
Element Call maps LiveKit participants to MatrixRTC memberships."""

from __future__ import annotations

import base64
import hashlib
import json

#: The slot of a room's one call (MSC4143); the legacy ``/sfu/get`` always uses it.
CALL_SLOT = "m.call#ROOM"


def _hash(parts: list[str]) -> str:
    """Unpadded standard base64 of the SHA-256 of the compact JSON array of ``parts``."""
    blob = json.dumps(parts, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    return base64.b64encode(hashlib.sha256(blob).digest()).decode("ascii").rstrip("=")


def room_name(room_id: str, slot_id: str = CALL_SLOT) -> str:
    """The LiveKit room of a Matrix room's call slot."""
    return _hash([room_id, slot_id])


def member_identity(user_id: str, device_id: str, member_id: str) -> str:
    """The identity of a MatrixRTC member (``/get_token``)."""
    return _hash([user_id, device_id, member_id])


def legacy_identity(user_id: str, device_id: str) -> str:
    """The identity of a legacy ``/sfu/get`` client."""
    return f"{user_id}:{device_id}"
