"""Posting what capture produced: one notice per meeting and kind, the files in its
thread, uploaded when within the homeserver's limit and otherwise kept on disk with a
note that says so. Files are registered before they are posted, so what a crash or a
failed upload leaves is posted by the next try."""

from __future__ import annotations

import asyncio
import logging
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime
from html import escape
from pathlib import Path
from typing import Protocol

from ..clock import Clock
from ..meeting.meetings import Meetings
from ..meeting.store import CaptureFile, CaptureFileStore, CaptureKind

log = logging.getLogger("visio.capture")

_TITLES: dict[CaptureKind, str] = {"recording": "Recording", "transcript": "Transcript"}


@dataclass(frozen=True)
class FileToPost:
    """A finished file, as the room gets it."""

    path: Path
    name: str
    mime_type: str
    size: int
    duration_ms: int


class CapturePoster(Protocol):
    """What capture does in Matrix rooms (see :class:`bridge.matrix.capture.MatrixCapture`)."""

    async def notice(
        self, room_id: str, text: str, html: str | None = None, thread_root: str | None = None
    ) -> str:
        """Send a notice from the bot (in a thread when ``thread_root`` is given);
        returns its event id."""
        ...

    async def upload_limit(self) -> int | None:
        """The homeserver's largest upload in bytes, None when it does not say."""
        ...

    async def post_file(self, room_id: str, file: FileToPost, thread_root: str) -> tuple[str, str]:
        """Upload a file and link it in the thread of ``thread_root``; returns (mxc,
        event id)."""
        ...

    async def redact(self, room_id: str, event_id: str, reason: str) -> bool: ...

    async def delete_media(self, mxc: str) -> bool:
        """Delete an upload from the media repository; False when the bridge may not."""
        ...


class FilePosting:
    """Posts registered files that are not linked in their room yet."""

    def __init__(
        self, meetings: Meetings, files: CaptureFileStore, poster: CapturePoster, clock: Clock
    ) -> None:
        self.meetings = meetings
        self.files = files
        self.poster = poster
        self.clock = clock
        #: Threads the files of a meeting's capture go in, when one is open already
        #: (the live transcript's), by (meeting id, kind).
        self.threads: dict[tuple[str, CaptureKind], str] = {}
        self._lock = asyncio.Lock()

    async def register(
        self,
        meeting_id: str,
        room_id: str,
        kind: CaptureKind,
        path: Path,
        mime_type: str,
        size: int,
        duration_ms: int,
    ) -> None:
        """Store a finished file, unposted: from now on a crash cannot lose it, and
        retention can find it."""
        await self.files.insert(
            CaptureFile(
                id=secrets.token_hex(8),
                meeting_id=meeting_id,
                room_id=room_id,
                kind=kind,
                name=path.name,
                mime_type=mime_type,
                size=size,
                duration_ms=duration_ms,
                created_at=self.clock.now_ms(),
                path=str(path),
            )
        )

    async def post_unposted(self) -> None:
        """Post the files not linked yet, per meeting and kind: uploads when they fit
        the homeserver's limit, a note of what stays on this machine otherwise. A
        failure leaves them for the next try."""
        async with self._lock:
            pending = await self.files.unposted()
            if not pending:
                return
            limit = await self.poster.upload_limit()
            groups: dict[tuple[str, CaptureKind], list[CaptureFile]] = {}
            for file in pending:
                groups.setdefault((file.meeting_id, file.kind), []).append(file)
            for (meeting_id, kind), files in groups.items():
                try:
                    await self._post(meeting_id, kind, files, limit)
                except Exception:
                    log.exception("Posting the %s of %s failed; retried later", kind, meeting_id)

    async def _post(
        self, meeting_id: str, kind: CaptureKind, files: list[CaptureFile], limit: int | None
    ) -> None:
        meeting = await self.meetings.get(meeting_id)
        title = meeting.title if meeting is not None else meeting_id
        # The meeting's room now: it may have moved (a room upgrade) since.
        room_id = meeting.room_id if meeting is not None else files[0].room_id
        what = _TITLES[kind]
        total = sum(f.size for f in files)
        root = self.threads.get((meeting_id, kind))
        if root is None:
            count = f"{len(files)} file(s), {human_size(total)}"
            root = await self.poster.notice(
                room_id,
                f'{what} of "{title}": {count}.',
                f"{what} of <b>{escape(title)}</b>: {count}.",
            )
        kept: list[CaptureFile] = []
        for file in files:
            path = Path(file.path or "")
            if not await asyncio.to_thread(path.is_file):
                log.warning("%s file %s is gone; not posted", what, path)
                file.deleted_at = self.clock.now_ms()
                file.event_id = root
                await self.files.save(file)
                continue
            if limit is not None and file.size > limit:
                kept.append(file)
                continue
            mxc, event_id = await self.poster.post_file(
                room_id,
                FileToPost(path, file.name, file.mime_type, file.size, file.duration_ms),
                root,
            )
            file.mxc, file.event_id, file.room_id = mxc, event_id, room_id
            await self.files.save(file)
        if kept:
            names = ", ".join(f"{f.name} ({human_size(f.size)})" for f in kept)
            note = (
                f"Over the homeserver's upload limit ({human_size(limit or 0)}), so kept on the "
                f"bridge's server under recording.path/{meeting_id}: {names}. Ask its operator."
            )
            event_id = await self.poster.notice(room_id, note, thread_root=root)
            for file in kept:
                file.event_id, file.room_id = event_id, room_id
                await self.files.save(file)


def file_stamp(ms: int) -> str:
    """A moment as files and folders of a capture are named: ``20261201-140557Z``."""
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y%m%d-%H%M%SZ")


def human_size(size: int) -> str:
    """A size as people read it: 950 bytes, 12.5 kB, 3.2 MB, 1.4 GB."""
    if size < 1000:
        return f"{size} bytes"
    for unit, scale in (("kB", 1e3), ("MB", 1e6), ("GB", 1e9)):
        if size < scale * 1000 or unit == "GB":
            return f"{size / scale:.1f} {unit}"
    raise AssertionError("unreachable")
