"""Sign-in: personal links, OpenID at the user's homeserver, and the room checks, giving
a verified :class:`~bridge.meeting.identity.Identity` or a refusal."""

from __future__ import annotations

from .links import LinkError, LinkGrant, LinkSigner, LinkStore, PersonalLinks
from .openid import OpenIDError, OpenIDVerifier
from .signin import (
    Credential,
    LinkCredential,
    MemberProfile,
    OpenIDCredential,
    RoomDirectory,
    RoomPower,
    RoomUnavailable,
    SignIn,
)

__all__ = [
    "Credential",
    "LinkCredential",
    "LinkError",
    "LinkGrant",
    "LinkSigner",
    "LinkStore",
    "MemberProfile",
    "OpenIDCredential",
    "OpenIDError",
    "OpenIDVerifier",
    "PersonalLinks",
    "RoomDirectory",
    "RoomPower",
    "RoomUnavailable",
    "SignIn",
]
