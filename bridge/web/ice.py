"""The ICE servers handed to browsers, with TURN credentials the way coturn expects."""

from __future__ import annotations

import base64
import hashlib
import hmac
from typing import Any

from ..config import Config


def turn_credentials(secret: str, user: str, now_s: int, lifetime_s: int) -> tuple[str, str]:
    """coturn's REST API scheme (use-auth-secret): the username is
    ``<expiry>:<user>``, the password base64(HMAC-SHA1(secret, username))."""
    username = f"{now_s + lifetime_s}:{user}"
    digest = hmac.new(secret.encode("utf-8"), username.encode("utf-8"), hashlib.sha1).digest()
    return username, base64.b64encode(digest).decode("ascii")


def browser_ice_servers(config: Config, user_id: str, now_s: int) -> list[dict[str, Any]]:
    """The configured STUN/TURN servers plus the TURN server with fresh credentials.
    Empty by default: nothing public is ever suggested to a browser."""
    servers: list[dict[str, Any]] = []
    for server in config["media.ice_servers"]:
        entry: dict[str, Any] = {"urls": server["urls"]}
        for key in ("username", "credential"):
            if server.get(key):
                entry[key] = server[key]
        servers.append(entry)
    turn_urls = list(config["media.turn.urls"])
    if turn_urls:
        username, credential = turn_credentials(
            config["media.turn.shared_secret"], user_id, now_s, config["media.turn.lifetime"]
        )
        servers.append({"urls": turn_urls, "username": username, "credential": credential})
    return servers
