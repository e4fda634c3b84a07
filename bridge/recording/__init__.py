"""Meeting recording: each track stored as it was sent, plus an audio mix.

See :mod:`bridge.recording.recorder`. The recorder knows the meeting only through the
media sink interface (:class:`bridge.meeting.media.MediaSink`); when it runs and what
becomes of its files is :mod:`bridge.capture`'s business.
"""

from __future__ import annotations

from .recorded import RecordedFile
from .recorder import Recorder

__all__ = ["RecordedFile", "Recorder"]
