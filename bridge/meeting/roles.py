"""Bridge permission levels and meeting roles, and how room power maps onto them."""

from __future__ import annotations

from enum import IntEnum


class Level(IntEnum):
    """What a user may do with the bridge (from bridge.permissions), each level
    including the ones below."""

    NONE = 0
    USER = 10
    MODERATOR = 50
    ADMIN = 100

    @classmethod
    def parse(cls, name: str) -> Level:
        try:
            return cls[name.upper()]
        except (KeyError, AttributeError):
            raise ValueError(name) from None


class Role(IntEnum):
    """A user's role in one meeting."""

    PARTICIPANT = 1
    MODERATOR = 2


def meeting_role(level: Level, room_power: int, room_moderator_power: int) -> Role | None:
    """The meeting role of a user, or None when the bridge does not serve them.

    Bridge moderators and admins moderate every meeting; room moderators (power at or
    above what the room asks to kick) moderate their room's meeting. A bridge level of
    ``none`` is the operator's word and no room power overrides it.
    """
    if level < Level.USER:
        return None
    if level >= Level.MODERATOR or room_power >= room_moderator_power:
        return Role.MODERATOR
    return Role.PARTICIPANT
