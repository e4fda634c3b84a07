"""A participant attached in-process, with no socket (the hook for trunks, transcribers
and recorders), in one meeting with a browser-protocol participant."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Coroutine
from typing import Any

import pytest
from aiortc import RTCPeerConnection, RTCSessionDescription

from bridge.media.peer import close_peer_connection, new_peer_connection
from bridge.meeting.attendee import Dismissal
from bridge.meeting.events import MeetingEvent, ParticipantJoined, Welcome
from bridge.meeting.identity import Identity
from bridge.meeting.live import Participant
from bridge.meeting.roles import Role
from tests.harness.synthetic import SyntheticVideoTrack
from tests.integration.conftest import Stack, eventually
from tests.integration.signaling_client import SignalingClient, publish_offer
from tests.media.helpers import FrameReceiver


class InProcessPeer(FrameReceiver):
    """Implements the meeting's Attendee with two aiortc peer connections in this
    process: it publishes with ``participant.publish`` and answers server offers with
    ``participant.accept_answer``."""

    def __init__(self) -> None:
        super().__init__()
        self.events: list[MeetingEvent] = []
        self.dismissals: list[Dismissal] = []
        self.participant: Participant | None = None
        self.publish_pc: RTCPeerConnection | None = None
        self.receive_pc: RTCPeerConnection | None = None
        self.camera: SyntheticVideoTrack | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    def deliver(self, event: MeetingEvent) -> None:
        self.events.append(event)
        if isinstance(event, Welcome):
            self.participant = event.participant

    async def send_offer(self, sdp: str) -> None:
        self._spawn(self._answer(sdp))

    async def dismiss(self, dismissal: Dismissal) -> None:
        self.dismissals.append(dismissal)

    async def _answer(self, sdp: str) -> None:
        assert self.participant is not None, "the welcome comes before any offer"
        if self.receive_pc is None:
            self.receive_pc = new_peer_connection([])
        await self.participant.accept_answer(await self.answer_on(self.receive_pc, sdp))

    async def publish(self) -> None:
        assert self.participant is not None
        pc = self.publish_pc = new_peer_connection([])
        self.camera, sources = await publish_offer(pc)
        answer = await self.participant.publish(pc.localDescription.sdp, sources)
        await pc.setRemoteDescription(RTCSessionDescription(answer, "answer"))

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def close(self) -> None:
        for pc in (self.publish_pc, self.receive_pc):
            if pc is not None:
                await close_peer_connection(pc)


@pytest.fixture
async def peer() -> AsyncIterator[InProcessPeer]:
    result = InProcessPeer()
    yield result
    await result.close()


async def test_in_process_participant_and_browser_protocol_exchange_media(
    stack: Stack, peer: InProcessPeer
) -> None:
    bridge = stack.bridge
    assert bridge is not None
    alice = await stack.user("alice")
    room_id = await stack.room_with_bot(alice)
    await alice.send_text(room_id, "!visio start Doors")
    await alice.wait_for_message(room_id, lambda e: "started" in e["content"].get("body", ""))
    meeting = bridge.meetings.live_in_room(room_id)
    assert meeting is not None

    browser = SignalingClient(str(bridge.config["web.public_url"]), meeting.id)
    try:
        token = bridge.links.make(meeting.id, alice.user_id, bridge.clock.now_ms() // 1000)
        joined = await browser.join({"kind": "link", "token": token})
        assert joined["type"] == "joined", joined

        # The in-process door signs nobody in: it hands the meeting a verified identity.
        listener = Identity(
            bridge.config.bot_mxid, "localhost", "Listener", None, Role.PARTICIPANT
        )
        participant = await bridge.meetings.join(meeting, listener, "Listener", peer)
        assert peer.participant is participant
        welcome = peer.events[0]
        assert isinstance(welcome, Welcome)
        assert [p.user_id for p in welcome.others] == [alice.user_id]
        arrived = await browser.expect("participant_joined")
        assert arrived["participant"]["participant_id"] == participant.id
        assert arrived["participant"]["display_name"] == "Listener"

        await browser.publish()
        await peer.publish()
        browser_id = joined["participant_id"]

        async def both_receive() -> bool:
            return (
                len(peer.frames_from(browser_id, "camera")) >= 10
                and bool(peer.frames_from(browser_id, "microphone"))
                and len(browser.frames_from(participant.id, "camera")) >= 10
            )

        await eventually(both_receive, within=20)
        assert browser.camera is not None and peer.camera is not None
        # Byte for byte what each side's encoder made, in both directions.
        sent_by_browser, sent_by_peer = set(browser.camera.sent), set(peer.camera.sent)
        assert all(f.data in sent_by_browser for f in peer.frames_from(browser_id, "camera"))
        assert all(f.data in sent_by_peer for f in browser.frames_from(participant.id, "camera"))

        # One meeting: the in-process participant counts like anyone else.
        assert len(meeting.participants) == 2
        await alice.send_text(room_id, "!visio status")
        status = await alice.wait_for_message(
            room_id, lambda e: "in the meeting now" in e["content"].get("body", "")
        )
        assert "2 in the meeting now" in status["content"]["body"]

        # Leaving through the meeting tells the browser, and releases the peer's media.
        await participant.leave()
        left = await browser.expect("participant_left")
        assert left["participant_id"] == participant.id
        live = bridge.meetings.media_of(meeting.id)
        assert live is not None and live.router is not None

        async def released() -> bool:
            return live.router.stats().participants == 1  # type: ignore[union-attr,attr-defined]

        await eventually(released)
        assert not any(isinstance(e, ParticipantJoined) for e in peer.events)
    finally:
        await browser.close()
