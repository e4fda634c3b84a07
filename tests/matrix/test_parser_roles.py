"""Command parsing and the mapping of levels and room power onto meeting roles."""

from __future__ import annotations

import pytest

from bridge.matrix.commands.parser import (
    MAX_COMMAND_LENGTH,
    CommandSyntaxError,
    CommandText,
    parse_command,
)
from bridge.meeting.roles import Level, Role, meeting_role


@pytest.mark.parametrize(
    ("body", "direct", "expected"),
    [
        ("!visio start Budget review", False, CommandText("start", "Budget review")),
        ("  !visio   START   Budget    review ", False, CommandText("start", "Budget review")),
        ("!visio", False, CommandText("help", "")),
        ("!visio\nstatus", False, CommandText("status", "")),
        ("!visioxyz start", False, None),
        ("hello everyone", False, None),
        ("start Budget", False, None),
        ("start Budget", True, CommandText("start", "Budget")),
        ("!visio end", True, CommandText("end", "")),
        ("", True, CommandText("help", "")),
        ("invite @bob:agency.test", True, CommandText("invite", "@bob:agency.test")),
    ],
)
def test_parse_command(body: str, direct: bool, expected: CommandText | None) -> None:
    assert parse_command(body, "!visio", prefix_optional=direct) == expected


def test_overlong_command_is_refused_in_words() -> None:
    with pytest.raises(CommandSyntaxError, match="too long"):
        parse_command("!visio start " + "x" * MAX_COMMAND_LENGTH, "!visio", prefix_optional=False)
    # An overlong ordinary message is not a command and is left alone.
    assert parse_command("x" * 5000, "!visio", prefix_optional=False) is None


@pytest.mark.parametrize(
    ("level", "power", "expected"),
    [
        (Level.NONE, 100, None),
        (Level.USER, 0, Role.PARTICIPANT),
        (Level.USER, 50, Role.MODERATOR),
        (Level.USER, 49, Role.PARTICIPANT),
        (Level.MODERATOR, 0, Role.MODERATOR),
        (Level.ADMIN, 0, Role.MODERATOR),
    ],
)
def test_meeting_role(level: Level, power: int, expected: Role | None) -> None:
    assert meeting_role(level, power, room_moderator_power=50) == expected


def test_level_parse() -> None:
    assert Level.parse("Moderator") == Level.MODERATOR
    with pytest.raises(ValueError):
        Level.parse("root")
