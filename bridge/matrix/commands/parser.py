"""Turning a message body into a command name and its arguments."""

from __future__ import annotations

from dataclasses import dataclass

MAX_COMMAND_LENGTH = 2000


class CommandSyntaxError(ValueError):
    """A message meant as a command that cannot be one; the message says why."""


@dataclass(frozen=True)
class CommandText:
    """A command as typed: its name (lower case) and the rest of the line."""

    name: str
    args: str


def parse_command(body: str, prefix: str, *, prefix_optional: bool) -> CommandText | None:
    """The command in ``body``, or None when the message is not addressed to the bot.

    ``prefix_optional`` is for direct chats with the bot, where every message is a
    command and the prefix may still be typed.
    """
    text = body.strip()
    if text == prefix or text.startswith(prefix + " ") or text.startswith(prefix + "\n"):
        text = text[len(prefix) :].strip()
    elif not prefix_optional:
        return None
    if len(body) > MAX_COMMAND_LENGTH:
        raise CommandSyntaxError(
            f"That command is too long ({len(body)} characters; at most {MAX_COMMAND_LENGTH})."
        )
    if not text:
        return CommandText("help", "")
    name, _, args = text.partition(" ")
    if "\n" in name:
        name, _, rest = name.partition("\n")
        args = f"{rest} {args}".strip()
    return CommandText(name.lower(), " ".join(args.split()))
