"""Personal meeting links: signed, expiring, for one user and one meeting.

A link token is ``<payload>.<signature>``, both base64url: the payload is JSON
``{"m": meeting_id, "u": user_id, "e": expiry (unix seconds), "n": nonce, "d": display
name (optional; prefills the page)}``, the signature an HMAC-SHA256 of the payload under
``web.link_secret``. The payload is readable by its holder, so it holds nothing secret.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import secrets
from dataclasses import dataclass
from typing import Protocol

from ..refusal import Refusal

MAX_TOKEN_LENGTH = 2048


class LinkError(Refusal):
    """A token that does not let its bearer in."""


@dataclass(frozen=True)
class LinkGrant:
    """Who a valid token lets into which meeting."""

    meeting_id: str
    user_id: str
    expires_at: int
    #: Tells this link from the user's other links to the same meeting.
    nonce: str = ""


def _b64encode(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _b64decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class LinkSigner:
    """Makes and checks link tokens with one secret."""

    def __init__(self, secret: str, lifetime_s: int) -> None:
        self._key = hashlib.sha256(b"visio-link:" + secret.encode("utf-8")).digest()
        self.lifetime_s = lifetime_s

    def _sign(self, payload: bytes) -> bytes:
        return hmac.new(self._key, payload, hashlib.sha256).digest()

    def make(
        self, meeting_id: str, user_id: str, now_s: int, display_name: str | None = None
    ) -> str:
        """A token for the user; ``display_name`` only prefills the page's name field."""
        data: dict[str, object] = {
            "m": meeting_id,
            "u": user_id,
            "e": now_s + self.lifetime_s,
            "n": secrets.token_hex(8),
        }
        if display_name:
            data["d"] = display_name[:100]
        payload = json.dumps(data, separators=(",", ":")).encode("utf-8")
        return f"{_b64encode(payload)}.{_b64encode(self._sign(payload))}"

    def check(self, token: str, meeting_id: str, now_s: int) -> LinkGrant:
        """The grant of a token for this meeting, or LinkError saying why not."""
        if not isinstance(token, str) or len(token) > MAX_TOKEN_LENGTH or token.count(".") != 1:
            raise LinkError("unauthorized", "This meeting link is not valid.")
        encoded_payload, encoded_signature = token.split(".")
        try:
            payload = _b64decode(encoded_payload)
            signature = _b64decode(encoded_signature)
        except (binascii.Error, ValueError):
            raise LinkError("unauthorized", "This meeting link is not valid.") from None
        if not hmac.compare_digest(signature, self._sign(payload)):
            raise LinkError("unauthorized", "This meeting link is not valid.")
        try:
            data = json.loads(payload)
            grant = LinkGrant(str(data["m"]), str(data["u"]), int(data["e"]), str(data["n"]))
        except (ValueError, KeyError, TypeError):
            raise LinkError("unauthorized", "This meeting link is not valid.") from None
        if grant.meeting_id != meeting_id:
            raise LinkError("unauthorized", "This link is for another meeting.")
        if grant.expires_at <= now_s:
            raise LinkError(
                "link_expired", "This meeting link has expired. Ask the bot for a new one."
            )
        return grant


class LinkStore(Protocol):
    """Which link of a user for a meeting is the current one (the database keeps it)."""

    async def set_current(self, meeting_id: str, user_id: str, nonce: str) -> None: ...

    async def current(self, meeting_id: str, user_id: str) -> str | None: ...


class PersonalLinks:
    """Personal links that a newer link for the same user and meeting revokes."""

    def __init__(self, signer: LinkSigner, store: LinkStore) -> None:
        self.signer = signer
        self.store = store

    @property
    def lifetime_s(self) -> int:
        return self.signer.lifetime_s

    async def issue(
        self, meeting_id: str, user_id: str, now_s: int, display_name: str | None = None
    ) -> str:
        """A new link token for the user; their older links to this meeting stop working."""
        token = self.signer.make(meeting_id, user_id, now_s, display_name)
        grant = self.signer.check(token, meeting_id, now_s)
        await self.store.set_current(meeting_id, user_id, grant.nonce)
        return token

    async def check(self, token: str, meeting_id: str, now_s: int) -> LinkGrant:
        """The grant of a current, valid token, or LinkError saying why not."""
        grant = self.signer.check(token, meeting_id, now_s)
        current = await self.store.current(meeting_id, grant.user_id)
        # No stored link: made before links could be revoked (or straight from the
        # signer, which only this bridge holds); its signature and expiry still hold.
        if current is not None and not hmac.compare_digest(current, grant.nonce):
            raise LinkError(
                "unauthorized",
                "This meeting link was replaced by a newer one. Use the latest link the bot sent.",
            )
        return grant
