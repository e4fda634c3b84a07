"""Who someone is, once signed in: what every door hands the meeting."""

from __future__ import annotations

from dataclasses import dataclass

from .roles import Role


@dataclass(frozen=True)
class Identity:
    """A verified person: their Matrix user id and server, their Matrix display name and
    avatar (``mxc://`` or None), and their role in one meeting. Made by
    :mod:`bridge.auth`, never from what a client claims."""

    user_id: str
    server: str
    display_name: str
    avatar_url: str | None
    role: Role

    @property
    def fallback_name(self) -> str:
        """The name to show when the person has none: their user id's localpart."""
        return self.display_name or self.user_id.split(":", 1)[0].lstrip("@")
