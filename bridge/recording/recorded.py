"""What a finished recording consists of."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal


@dataclass(frozen=True)
class RecordedFile:
    """One finished file of a recording: a track as it was sent, or the audio mix."""

    path: Path
    kind: Literal["track", "mix"]
    #: Whose track it is; None for the mix.
    participant_id: str | None
    #: The participant's display name when the track started ("" for the mix).
    name: str
    #: ``"camera"``, ``"microphone"`` or ``"screen"``; None for the mix.
    source: str | None
    #: ``"video/webm"``, ``"audio/webm"`` or ``"video/x-matroska"``.
    mime_type: str
    #: Bytes on disk.
    size: int
    #: From the file's first frame to the end of its last.
    duration_ms: int
    #: Where the first frame sits on the recording's timeline (every file of one
    #: recording counts from the moment it started, and the file's timestamps say so).
    start_ms: int = 0
