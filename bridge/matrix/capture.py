"""The Matrix side of recording and transcription: notices, uploads, file messages in a
thread, redactions and media deletion (implements :class:`bridge.capture.CapturePoster`)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from mautrix.api import Method, SynapseAdminPath
from mautrix.appservice import AppService, IntentAPI
from mautrix.errors import MatrixRequestError
from mautrix.types import EventID, EventType, RoomID

from ..capture.posting import FileToPost

log = logging.getLogger("visio.matrix.capture")

#: How much of a file is read at a time while it is uploaded (files can be large).
CHUNK = 1 << 20


class MatrixCapture:
    """Posts what capture produced as the bridge bot."""

    def __init__(self, az: AppService) -> None:
        self.az = az

    @property
    def bot(self) -> IntentAPI:
        # The appservice's intent exists once it has started.
        return self.az.intent

    async def notice(
        self, room_id: str, text: str, html: str | None = None, thread_root: str | None = None
    ) -> str:
        content: dict[str, Any] = {"msgtype": "m.notice", "body": text}
        if html is not None:
            content |= {"format": "org.matrix.custom.html", "formatted_body": html}
        if thread_root is not None:
            content["m.relates_to"] = _in_thread(thread_root)
        return await self._send(room_id, content)

    async def upload_limit(self) -> int | None:
        try:
            config = await self.bot.get_media_repo_config()
        except MatrixRequestError as e:
            log.warning("The homeserver did not give its upload limit: %s", e.message)
            return None
        size = config.upload_size
        return size if isinstance(size, int) and size > 0 else None

    async def post_file(self, room_id: str, file: FileToPost, thread_root: str) -> tuple[str, str]:
        mxc = await self.bot.upload_media(
            _chunks(file.path), mime_type=file.mime_type, filename=file.name, size=file.size
        )
        info: dict[str, Any] = {"mimetype": file.mime_type, "size": file.size}
        if file.duration_ms > 0:
            info["duration"] = file.duration_ms
        major = file.mime_type.split("/", 1)[0]
        msgtype = {"video": "m.video", "audio": "m.audio", "text": "m.file"}.get(major, "m.file")
        content: dict[str, Any] = {
            "msgtype": msgtype,
            "body": file.name,
            "filename": file.name,
            "url": str(mxc),
            "info": info,
            "m.relates_to": _in_thread(thread_root),
        }
        return str(mxc), await self._send(room_id, content)

    async def _send(self, room_id: str, content: dict[str, Any]) -> str:
        event_id = await self.bot.send_message_event(
            RoomID(room_id),
            EventType.ROOM_MESSAGE,
            content,  # type: ignore[arg-type]  # mautrix sends plain dicts as they are
        )
        return str(event_id)

    async def redact(self, room_id: str, event_id: str, reason: str) -> bool:
        try:
            await self.bot.redact(RoomID(room_id), EventID(event_id), reason=reason)
        except MatrixRequestError as e:
            log.warning("Could not redact %s in %s: %s", event_id, room_id, e.message)
            return False
        return True

    async def delete_media(self, mxc: str) -> bool:
        """Synapse's admin API, which needs the bot to be a server admin."""
        server, _, media_id = mxc.removeprefix("mxc://").partition("/")
        if not mxc.startswith("mxc://") or not server or not media_id or "/" in media_id:
            return False
        try:
            await self.bot.api.request(Method.DELETE, SynapseAdminPath.v1.media[server][media_id])
        except MatrixRequestError as e:
            log.info("Could not delete %s (%s): the bot is no server admin?", mxc, e.message)
            return False
        return True


def _in_thread(root: str) -> dict[str, Any]:
    # With the reply fallback, clients without threads show it as a reply to the root.
    return {
        "rel_type": "m.thread",
        "event_id": root,
        "is_falling_back": True,
        "m.in_reply_to": {"event_id": root},
    }


async def _chunks(path: Path) -> AsyncIterator[bytes]:
    stream = await asyncio.to_thread(path.open, "rb")
    try:
        while chunk := await asyncio.to_thread(stream.read, CHUNK):
            yield chunk
    finally:
        stream.close()
