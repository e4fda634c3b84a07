"""Errors the media layer reports to the code that drives it.

:class:`MediaError` belongs to the media interface the meeting domain owns
(:mod:`bridge.meeting.media`), so doors can catch it without loading the SFU.
"""

from __future__ import annotations

from ..meeting.media import MediaError

__all__ = ["MediaError"]
