"""Retention: recordings and transcripts are deleted after the days the operator set.

For each expired file: the copy on this machine is deleted, the room message that links
it is redacted, and its upload is deleted from the media repository when the bot may
(Synapse's admin API needs a server admin). What could not be deleted is logged by
name, so the operator knows what is left, and tried again at the next run.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from pathlib import Path

from ..clock import Clock
from ..meeting.store import CaptureFileStore, CaptureKind
from .posting import CapturePoster

log = logging.getLogger("visio.capture.retention")

DAY_MS = 86_400_000


@dataclass(frozen=True)
class RetentionReport:
    deleted: int
    left: list[str]


class Retention:
    """The daily purge of expired capture files."""

    def __init__(
        self,
        files: CaptureFileStore,
        poster: CapturePoster,
        clock: Clock,
        *,
        days: dict[CaptureKind, int],
    ) -> None:
        self.files = files
        self.poster = poster
        self.clock = clock
        self.days = days

    async def run(self) -> RetentionReport:
        now = self.clock.now_ms()
        deleted = 0
        left: list[str] = []
        redacted: set[str] = set()
        for kind, days in self.days.items():
            if days <= 0:
                continue
            for file in await self.files.expired(kind, now - days * DAY_MS):
                missing: list[str] = []
                if file.path is not None:
                    path = Path(file.path)
                    try:
                        await asyncio.to_thread(path.unlink, missing_ok=True)
                        await asyncio.to_thread(_remove_empty_parents, path.parent, levels=2)
                        file.path = None
                    except OSError as e:
                        missing.append(f"the file on disk ({e.strerror})")
                if file.event_id is not None and file.event_id not in redacted:
                    reason = f"The {kind} is past its retention ({days} days)."
                    if await self.poster.redact(file.room_id, file.event_id, reason):
                        redacted.add(file.event_id)
                    else:
                        missing.append("the room message")
                if file.mxc is not None:
                    if await self.poster.delete_media(file.mxc):
                        file.mxc = None
                    else:
                        missing.append(f"the upload {file.mxc}")
                if file.path is None and "the room message" not in missing:
                    # Gone from this machine and from the room; an upload the bot may
                    # not delete is said below, once.
                    file.deleted_at = now
                    deleted += 1
                if missing:
                    left.append(f"{file.name} of meeting {file.meeting_id}: {', '.join(missing)}")
                await self.files.save(file)
        if deleted:
            log.info("Retention deleted %d file(s)", deleted)
        if left:
            log.warning(
                "Retention could not delete everything (the bot may need to be a server admin "
                "to delete uploads): %s",
                "; ".join(left),
            )
        return RetentionReport(deleted, left)


def _remove_empty_parents(folder: Path, levels: int) -> None:
    """Remove a recording's folder and its meeting folder once they are empty."""
    for _ in range(levels):
        try:
            folder.rmdir()
        except OSError:
            return
        folder = folder.parent
