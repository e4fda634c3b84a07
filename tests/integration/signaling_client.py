"""A meeting participant as a program: the signaling WebSocket plus real aiortc peers."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import aiohttp
from aiortc import MediaStreamTrack, RTCPeerConnection, RTCSessionDescription

from bridge.media import aiortc_hooks
from bridge.media.peer import close_peer_connection, new_peer_connection, set_local_description
from tests.harness.synthetic import SyntheticVideoTrack, ToneTrack
from tests.media.helpers import LOOPBACK, FrameReceiver

JSON = dict[str, Any]


async def publish_offer(
    pc: RTCPeerConnection,
    *,
    camera: bool = True,
    microphone: bool = True,
    voice: MediaStreamTrack | None = None,
) -> tuple[SyntheticVideoTrack | None, dict[str, str]]:
    """Add a synthetic camera and a tone (or ``voice``) to ``pc`` and make its offer;
    returns the camera track (its ``sent`` frames are known) and the sources by mid."""
    sources: dict[Any, str] = {}
    track = None
    if microphone:
        sound = voice if voice is not None else ToneTrack(loud=True)
        sources[pc.addTransceiver(sound, direction="sendonly")] = "microphone"
    if camera:
        track = SyntheticVideoTrack()
        transceiver = pc.addTransceiver(track, direction="sendonly")
        aiortc_hooks.on_keyframe_request(transceiver.sender, track.request_keyframe)
        sources[transceiver] = "camera"
    await set_local_description(pc, await pc.createOffer(), LOOPBACK)
    return track, {t.mid: source for t, source in sources.items() if t.mid is not None}


class SignalingClient(FrameReceiver):
    """Joins a meeting over ``/meet/<id>/ws`` and publishes/receives with aiortc."""

    def __init__(self, base_url: str, meeting_id: str) -> None:
        super().__init__()
        self.url = f"{base_url.replace('http', 'ws', 1)}/meet/{meeting_id}/ws"
        self.http = aiohttp.ClientSession()
        self.ws: aiohttp.ClientWebSocketResponse | None = None
        self.inbox: asyncio.Queue[JSON] = asyncio.Queue()
        self.seen: list[JSON] = []
        self.publish_pc: RTCPeerConnection | None = None
        self.receive_pc: RTCPeerConnection | None = None
        self.camera: SyntheticVideoTrack | None = None
        #: The participant id the meeting gave this client, once joined.
        self.participant_id = ""
        self._reader: asyncio.Task[None] | None = None

    async def connect(self) -> None:
        self.ws = await self.http.ws_connect(self.url, max_msg_size=0)
        self._reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        assert self.ws is not None
        async for msg in self.ws:
            if msg.type != aiohttp.WSMsgType.TEXT:
                continue
            data = json.loads(msg.data)
            self.seen.append(data)
            if data.get("type") == "offer":
                await self._answer(data["sdp"])
            else:
                self.inbox.put_nowait(data)
        self.inbox.put_nowait({"type": "_closed"})

    async def send(self, message: JSON | str) -> None:
        assert self.ws is not None
        await self.ws.send_str(message if isinstance(message, str) else json.dumps(message))

    async def expect(self, kind: str, within: float = 15) -> JSON:
        """The next message of this type (others in between are kept in ``seen``)."""
        async with asyncio.timeout(within):
            while True:
                message = await self.inbox.get()
                if message.get("type") == kind:
                    return message
                if message.get("type") == "_closed":
                    raise ConnectionError(f"socket closed while waiting for {kind}")

    async def join(self, auth: JSON, within: float = 15, display_name: str | None = None) -> JSON:
        await self.connect()
        message: JSON = {"type": "join", "version": 1, "auth": auth}
        if display_name is not None:
            message["display_name"] = display_name
        await self.send(message)
        async with asyncio.timeout(within):
            while True:
                message = await self.inbox.get()
                if message.get("type") == "joined":
                    self.participant_id = str(message.get("participant_id", ""))
                if message.get("type") in ("joined", "error", "_closed"):
                    return message

    async def publish(
        self,
        camera: bool = True,
        microphone: bool = True,
        voice: MediaStreamTrack | None = None,
    ) -> None:
        """Publish a synthetic camera and a tone, or ``voice`` as the microphone."""
        pc = self.publish_pc = new_peer_connection([])
        self.camera, mids = await publish_offer(
            pc, camera=camera, microphone=microphone, voice=voice
        )
        await self.send({"type": "publish", "sdp": pc.localDescription.sdp, "sources": mids})
        answer = await self.expect("publish_answer")
        await pc.setRemoteDescription(RTCSessionDescription(answer["sdp"], "answer"))

    async def _answer(self, offer_sdp: str) -> None:
        if self.receive_pc is None:
            self.receive_pc = new_peer_connection([])
        answer = await self.answer_on(self.receive_pc, offer_sdp)
        await self.send({"type": "answer", "sdp": answer})

    async def close(self) -> None:
        for pc in (self.publish_pc, self.receive_pc):
            if pc is not None:
                await close_peer_connection(pc)
        if self.ws is not None:
            await self.ws.close()
        if self._reader is not None:
            self._reader.cancel()
        await self.http.close()
