"""Refusals: what a user asked that the bridge will not do, with a code and plain words."""

from __future__ import annotations


class Refusal(Exception):
    """``code`` is the machine-readable reason (a signaling error code); the message is
    the sentence the user is shown."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
