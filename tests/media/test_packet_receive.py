"""The receive side of the packet path (``aiortc_hooks.PacketReceiver`` and
``FrameAssembler``) with real aiortc peers over loopback: a published track is never
assembled into frames unless something wants frames, and the publisher still gets the
NACKs, receiver reports and REMB that aiortc's own receiver sent it."""

from __future__ import annotations

import asyncio
import struct
import time
from collections.abc import Awaitable, Callable
from typing import Any

from aiortc.rtp import RTCP_PSFB_APP, RtcpPsfbPacket

from bridge.media import aiortc_hooks
from bridge.media.publisher import PublishedTrack

from .helpers import Client, Meeting, opus_loop, wait_for
from .test_packet_forwarding import contiguous_run, packet_meeting
from .test_sinks import Sink

Meetings = Callable[..., Meeting]


def published(meeting: Meeting, participant_id: str) -> dict[str, PublishedTrack]:
    media = meeting.router.participant(participant_id)
    assert media is not None
    return {t.source: t for t in media.tracks}


def server_publish_pc(meeting: Meeting, participant_id: str) -> Any:
    media = meeting.router.participant(participant_id)
    assert media is not None
    return media.publisher._pc  # type: ignore[union-attr]


def drop_incoming(pc: Any, ssrc: int, every: int, count: int) -> list[int]:
    """Drop every ``every``-th RTP packet of ``ssrc`` that reaches ``pc``, ``count`` times
    in all; returns the list their sequence numbers go to (read from the clear header)."""
    dropped: list[int] = []
    seen = [0]
    for connection in aiortc_hooks.ice_connections(pc):
        for protocol in connection._protocols:
            handle = protocol.datagram_received

            def datagram_received(data: bytes, addr: Any, handle: Any = handle) -> None:
                is_rtp = len(data) > 12 and 128 <= data[0] < 192 and not 192 <= data[1] <= 223
                if is_rtp and struct.unpack("!I", data[8:12])[0] == ssrc and len(dropped) < count:
                    seen[0] += 1
                    if seen[0] % every == 0:
                        dropped.append(struct.unpack("!H", data[2:4])[0])
                        return
                handle(data, addr)

            protocol.datagram_received = datagram_received
    return dropped


def sender_of(client: Client, source: str) -> Any:
    return client._transceiver_of(source).sender


async def alice_to_bob(
    meetings: Meetings, microphone: bool = True, frames: int = 10
) -> tuple[Meeting, Client, Client]:
    """A packet-path meeting where Bob already receives ``frames`` of Alice's camera."""
    meeting = packet_meeting(meetings)
    alice, bob = meeting.join("alice"), meeting.join("bob")
    await alice.publish(microphone=microphone)
    await wait_for(lambda: len(bob.frames_from("alice", "camera")) >= frames)
    return meeting, alice, bob


async def test_no_frames_are_assembled_while_nobody_wants_frames(meetings: Meetings) -> None:
    meeting = packet_meeting(meetings)
    alice, bob = meeting.join("alice"), meeting.join("bob")
    await alice.publish()
    await wait_for(
        lambda: (
            len(bob.frames_from("alice", "camera")) >= 30
            and len(bob.frames_from("alice", "microphone")) >= 20
        )
    )
    tracks = published(meeting, "alice")
    for track in tracks.values():
        assert track.packets > 0
        # Neither depacketized nor reassembled into frames, by aiortc or by us ...
        jitter_buffer = track._receiver._RTCRtpReceiver__jitter_buffer  # type: ignore[attr-defined]
        assert jitter_buffer._origin is None
        assert track.frames_assembled == 0
        # ... though frames are counted, by the packets that end them.
        assert track.frames > 0
    assert meeting.router.stats().frames_received > 0


async def test_a_listener_starts_frame_assembly_at_a_keyframe_and_stops_it_by_leaving(
    meetings: Meetings,
) -> None:
    meeting, alice, bob = await alice_to_bob(meetings)
    assert alice.camera is not None
    tracks = published(meeting, "alice")
    assert tracks["camera"].frames_assembled == 0
    requests = alice.camera.keyframe_requests

    sink = Sink()
    meeting.router.add_sink(sink)
    await wait_for(
        lambda: (
            len(sink.frames.get("alice/camera", [])) >= 20
            and len(sink.frames.get("alice/microphone", [])) >= 10
        )
    )
    video = sink.frames["alice/camera"]
    assert video[0].keyframe
    assert alice.camera.keyframe_requests > requests  # asked for, not waited for
    assert contiguous_run(list(alice.camera.sent), [f.data for f in video])
    assert {f.data for f in sink.frames["alice/microphone"]} <= set(opus_loop())
    assert tracks["camera"].frames_assembled >= 20

    meeting.router.remove_sink(sink)
    assembled = {source: t.frames_assembled for source, t in tracks.items()}
    count = len(bob.frames_from("alice", "camera"))
    await wait_for(lambda: len(bob.frames_from("alice", "camera")) >= count + 15)
    assert {source: t.frames_assembled for source, t in tracks.items()} == assembled

    # Another listener later starts over, from a keyframe again.
    again = Sink(takes=lambda track: track.kind == "video")
    meeting.router.add_sink(again)
    await wait_for(lambda: len(again.frames.get("alice/camera", [])) >= 5)
    assert again.frames["alice/camera"][0].keyframe
    assert contiguous_run(list(alice.camera.sent), [f.data for f in again.frames["alice/camera"]])
    assert tracks["microphone"].frames_assembled == assembled["microphone"]


async def test_packets_lost_on_the_way_in_are_asked_for_and_repaired(meetings: Meetings) -> None:
    meeting, alice, bob = await alice_to_bob(meetings, microphone=False)
    camera = sender_of(alice, "camera")
    asked: list[int] = []
    retransmit = camera._retransmit

    async def counting(seq: int) -> None:
        asked.append(seq)
        await retransmit(seq)

    camera._retransmit = counting
    dropped = drop_incoming(server_publish_pc(meeting, "alice"), camera._ssrc, 7, 12)
    start = len(bob.frames_from("alice", "camera"))
    await wait_for(lambda: len(dropped) == 12, within=15)
    # Each packet lost on the way to the server was asked for again (a NACK) ...
    await wait_for(lambda: set(dropped) <= set(asked))
    # ... and came back as RTX, unwrapped and forwarded: bob missed no frame.
    await wait_for(lambda: len(bob.frames_from("alice", "camera")) >= start + 60, within=15)
    assert alice.camera is not None
    received = [f.data for f in bob.frames_from("alice", "camera")]
    assert contiguous_run(list(alice.camera.sent), received)

    # The receiver reports tell alice how many never came on the media stream.
    async def reported_losses() -> bool:
        stats = (await camera.getStats()).values()
        report = next((s for s in stats if s.type == "remote-inbound-rtp"), None)
        return report is not None and report.packetsLost == len(dropped)

    await wait_until(reported_losses)


async def wait_until(check: Callable[[], Awaitable[bool]], within: float = 10.0) -> None:
    """:func:`wait_for` for a check that must be awaited."""
    deadline = time.monotonic() + within
    while not await check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {within} s waiting for {check}")
        await asyncio.sleep(0.05)


async def test_the_publisher_gets_receiver_reports_and_bitrate_estimates(
    meetings: Meetings,
) -> None:
    meeting, alice, _ = await alice_to_bob(meetings, frames=1)
    camera = sender_of(alice, "camera")
    rembs: list[int] = []
    handle = camera._handle_rtcp_packet

    async def handle_rtcp(packet: Any) -> None:
        if isinstance(packet, RtcpPsfbPacket) and packet.fmt == RTCP_PSFB_APP:
            rembs.append(1)
        await handle(packet)

    camera._handle_rtcp_packet = handle_rtcp
    reports: dict[str, Any] = {}

    async def reported() -> bool:
        for source in ("camera", "microphone"):
            for stat in (await sender_of(alice, source).getStats()).values():
                if stat.type == "remote-inbound-rtp":
                    reports[source] = stat
        # A round-trip time needs the last SR's time and the delay since, both right.
        return len(reports) == 2 and all(r.roundTripTime is not None for r in reports.values())

    await wait_until(reported)
    for report in reports.values():
        assert report.packetsLost == 0
        assert 0 < report.roundTripTime < 1.0
        assert report.jitter >= 0
    # REMB from aiortc's estimator, fed by the publisher's abs-send-time.
    await wait_for(lambda: rembs)
    # The server's receiver's own statistics are ours too.
    server = {t.mid: t.receiver for t in server_publish_pc(meeting, "alice").getTransceivers()}
    inbound = [
        s
        for receiver in server.values()
        for s in (await receiver.getStats()).values()
        if s.type == "inbound-rtp"
    ]
    assert inbound and all(s.packetsReceived > 0 for s in inbound)


async def test_packets_are_handled_in_the_sockets_callback_not_through_aioices_queue(
    meetings: Meetings,
) -> None:
    meeting, _, bob = await alice_to_bob(meetings)
    pc = server_publish_pc(meeting, "alice")
    dtls = pc.getTransceivers()[0].receiver.transport
    queued: list[object] = []
    handle = dtls._handle_rtp_data

    async def handle_rtp_data(data: bytes, arrival_time_ms: int) -> None:
        queued.append(data)
        await handle(data, arrival_time_ms)

    dtls._handle_rtp_data = handle_rtp_data
    tracks = published(meeting, "alice")
    packets = {source: t.packets for source, t in tracks.items()}
    received = dtls._get_stats()[dtls._stats_id].packetsReceived
    count = len(bob.frames_from("alice", "camera"))
    await wait_for(lambda: len(bob.frames_from("alice", "camera")) >= count + 30)
    assert all(t.packets > packets[source] for source, t in tracks.items())
    assert queued == []
    # The transport's statistics still count them.
    assert dtls._get_stats()[dtls._stats_id].packetsReceived > received + 30
