"""LiveKit access tokens: JWTs signed with HS256 under the bridge's ``matrix_rtc.key``."""

from __future__ import annotations

from dataclasses import dataclass

import jwt

from ..refusal import Refusal

#: What lk-jwt-service gives: an hour, after which the client asks again.
TOKEN_LIFETIME_S = 3600
MAX_TOKEN_LENGTH = 4096


class TokenError(Refusal):
    """An access token that does not let its bearer in."""


@dataclass(frozen=True)
class Grant:
    """Who a valid access token lets into which LiveKit room."""

    identity: str
    room: str
    expires_at: int
    can_publish: bool
    can_subscribe: bool
    #: Who the bridge checked the holder to be, in which Matrix room (the bridge's own
    #: ``matrix`` claim; a token without it names nobody the bridge can admit).
    user_id: str | None = None
    room_id: str | None = None


class AccessTokens:
    """Makes and checks LiveKit access tokens with one key."""

    def __init__(self, api_key: str, secret: str, lifetime_s: int = TOKEN_LIFETIME_S) -> None:
        if len(secret) < 32:
            raise ValueError("the LiveKit key secret must be at least 32 characters")
        self.api_key = api_key
        self._secret = secret
        self.lifetime_s = lifetime_s

    def mint(
        self,
        identity: str,
        room: str,
        now_s: int,
        *,
        user_id: str | None = None,
        room_id: str | None = None,
    ) -> str:
        """A token for ``identity`` in ``room``: join, publish, subscribe, data, own
        metadata; no room creation (the bridge creates rooms itself). ``user_id`` and
        ``room_id`` say whom the bridge signed in, for which Matrix room: LiveKit room
        names and identities are hashes, so the bridge's signaling door reads them here.
        """
        claims: dict[str, object] = {
            "iss": self.api_key,
            "sub": identity,
            "iat": now_s,
            "nbf": now_s,
            "exp": now_s + self.lifetime_s,
            "video": {
                "room": room,
                "roomJoin": True,
                "canPublish": True,
                "canSubscribe": True,
                "canPublishData": True,
                "canUpdateOwnMetadata": True,
            },
        }
        if user_id is not None and room_id is not None:
            claims["matrix"] = {"user_id": user_id, "room_id": room_id}
        return jwt.encode(claims, self._secret, algorithm="HS256")

    def check(self, token: object, now_s: int) -> Grant:
        """The grant of a token signed with this key, or TokenError saying why not."""
        if not isinstance(token, str) or not token or len(token) > MAX_TOKEN_LENGTH:
            raise TokenError("unauthorized", "The access token is not valid.")
        try:
            claims = jwt.decode(
                token,
                self._secret,
                algorithms=["HS256"],  # never "none", never another key type
                issuer=self.api_key,
                # Times are checked below against the injected clock.
                options={
                    "require": ["exp", "nbf", "sub", "iss"],
                    "verify_exp": False,
                    "verify_nbf": False,
                    "verify_iat": False,
                },
            )
        except jwt.PyJWTError:
            raise TokenError("unauthorized", "The access token is not valid.") from None
        try:
            not_before, expires = int(claims["nbf"]), int(claims["exp"])
        except (TypeError, ValueError):
            raise TokenError("unauthorized", "The access token is not valid.") from None
        if now_s >= expires:
            raise TokenError("unauthorized", "The access token has expired.")
        if now_s < not_before:
            raise TokenError("unauthorized", "The access token is not valid yet.")
        video = claims.get("video")
        if not isinstance(video, dict) or not isinstance(video.get("room"), str):
            raise TokenError("unauthorized", "The access token names no room.")
        if video.get("roomJoin") is not True or not isinstance(claims["sub"], str):
            raise TokenError("unauthorized", "The access token does not allow joining.")
        matrix = claims.get("matrix")
        user_id = room_id = None
        if isinstance(matrix, dict):
            if isinstance(matrix.get("user_id"), str) and isinstance(matrix.get("room_id"), str):
                user_id, room_id = matrix["user_id"], matrix["room_id"]
        return Grant(
            identity=claims["sub"],
            room=video["room"],
            expires_at=expires,
            can_publish=video.get("canPublish") is True,
            can_subscribe=video.get("canSubscribe") is True,
            user_id=user_id,
            room_id=room_id,
        )
