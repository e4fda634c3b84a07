"""Secrets out of the logs, whatever logs them (the bridge, mautrix, aiohttp).

Personal links (``#token=...``), OpenID and access tokens, and bearer tokens never reach
a log handler: the filter rewrites each record before it is written. mautrix logs the
body of every request at DEBUG, and the bot's direct message with a personal link is
such a body.
"""

from __future__ import annotations

import logging
import re

_SECRET = re.compile(
    r"(?P<key>#token=|[?&]access_token=|\"(?:access_)?token\"\s*:\s*\"|Bearer\s+)"
    r"(?P<value>[A-Za-z0-9._~+/=%-]{6,})"
)
REDACTED = "<redacted>"


def redact(text: str) -> str:
    return _SECRET.sub(lambda m: m.group("key") + REDACTED, text)


class RedactSecrets(logging.Filter):
    """A handler filter that removes secrets from each record's message."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        cleaned = redact(message)
        if cleaned != message:
            record.msg, record.args = cleaned, None
            # mautrix also attaches the request body as structured data.
            if hasattr(record, "matrix_http_request"):
                record.matrix_http_request = {"content": REDACTED}
        return True


def install(logger: logging.Logger | None = None) -> None:
    """Put the filter on every handler of the configured loggers (after dictConfig)."""
    loggers = [logger or logging.getLogger()]
    loggers += [
        candidate
        for candidate in logging.Logger.manager.loggerDict.values()
        if isinstance(candidate, logging.Logger)
    ]
    for each in loggers:
        for handler in each.handlers:
            if not any(isinstance(f, RedactSecrets) for f in handler.filters):
                handler.addFilter(RedactSecrets())
