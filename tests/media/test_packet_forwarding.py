"""The packet path (bridge.media.rtp_forward) with real aiortc peers over loopback."""

from __future__ import annotations

import fractions
import struct
from collections.abc import Callable
from typing import Any

import av
import pytest
from aiortc.codecs import get_encoder
from aiortc.rtcrtpparameters import RTCRtpCodecParameters

from bridge.media import aiortc_hooks
from bridge.media.rtp_forward import (
    PacketForward,
    extension_block,
    h264_keyframe_start,
    keyframe_start,
    vp8_keyframe_start,
)
from tests.harness.synthetic import encode_vp8_clip

from .helpers import Client, Meeting, loopback_settings, opus_loop, wait_for

Meetings = Callable[..., Meeting]


def packet_meeting(meetings: Meetings, **overrides: Any) -> Meeting:
    return meetings(settings=loopback_settings(packet_forwarding=True, **overrides))


def contiguous_run(sent: list[bytes], received: list[bytes]) -> bool:
    first = sent.index(received[0])
    return received == sent[first : first + len(received)]


def forward_of(meeting: Meeting, subscriber: Client, publisher: str, source: str) -> PacketForward:
    """The server's forward that sends ``publisher``'s ``source`` to ``subscriber``."""
    media = meeting.router.participant(subscriber.participant_id)
    assert media is not None and not isinstance(media, type(None))
    for forward in media.subscriber.forwards:  # type: ignore[union-attr]
        assert forward.parameters is not None
        if subscriber.msids.get(forward.parameters.mid) == (publisher, source):
            return forward
    raise AssertionError(f"no forward of {publisher}/{source} to {subscriber.participant_id}")


# Keyframes found on packet boundaries, from packets made by aiortc's own packetizers.


def _packetize(codec: str, frame: bytes) -> list[bytes]:
    parameters = RTCRtpCodecParameters(
        mimeType=f"video/{codec}",
        clockRate=90000,
        payloadType=96,
        parameters={"packetization-mode": "1"} if codec == "H264" else {},
    )
    packet = av.Packet(frame)
    packet.pts = 0
    packet.time_base = fractions.Fraction(1, 90000)
    payloads, _ = get_encoder(parameters).pack(packet)
    return list(payloads)


def test_vp8_keyframes_are_found_on_the_first_packet_only() -> None:
    clip = encode_vp8_clip(width=320, height=180, seconds=1)
    key = _packetize("VP8", clip.keyframes[0])
    delta = _packetize("VP8", clip.frames[1])
    assert vp8_keyframe_start(key[0]) == (True, True)
    assert all(vp8_keyframe_start(p) == (False, False) for p in key[1:])
    assert vp8_keyframe_start(delta[0]) == (True, False)
    detect = keyframe_start("VP8")
    assert [detect(p) for p in key] == [True] + [False] * (len(key) - 1)
    assert not any(detect(p) for p in delta)


@pytest.mark.parametrize(
    ("descriptor", "expected"),
    [
        (b"\x10", (True, True)),  # S, partition 0, no extension
        (b"\x90\x80\x05", (True, True)),  # X, I with a 7-bit picture id
        (b"\x90\x80\x81\x02", (True, True)),  # X, I with a 15-bit picture id
        (b"\x90\xe0\x81\x02\x07\x20", (True, True)),  # I (15 bits), L and T/K
        (b"\x00", (False, False)),  # not the start of a partition
        (b"\x11", (False, False)),  # start of partition 1
    ],
)
def test_vp8_payload_descriptors(descriptor: bytes, expected: tuple[bool, bool]) -> None:
    keyframe_header = b"\x50\x42\x00\x9d\x01\x2a"  # P bit 0: a keyframe
    assert vp8_keyframe_start(descriptor + keyframe_header) == expected
    interframe = vp8_keyframe_start(descriptor + b"\x51\x00\x00")
    assert interframe == (expected[0], False)


def test_h264_keyframes_from_nal_headers() -> None:
    sps, pps, idr, slice_ = b"\x67\x42\x00\x1f", b"\x68\xce\x3c\x80", b"\x65\x88", b"\x41\x9a"
    assert h264_keyframe_start(idr + b"\x00" * 10)
    assert h264_keyframe_start(sps)
    assert not h264_keyframe_start(slice_ + b"\x00" * 10)
    stap_a = b"\x78" + b"".join(struct.pack("!H", len(n)) + n for n in (sps, pps))
    assert h264_keyframe_start(stap_a)
    assert not h264_keyframe_start(b"\x78" + struct.pack("!H", 2) + slice_)
    assert h264_keyframe_start(b"\x7c\x85" + b"\x00" * 10)  # FU-A, start, IDR
    assert not h264_keyframe_start(b"\x7c\x05" + b"\x00" * 10)  # FU-A, middle of IDR
    assert not h264_keyframe_start(b"\x7c\x81" + b"\x00" * 10)  # FU-A, start, non-IDR
    assert not h264_keyframe_start(b"")
    # And from aiortc's own H.264 packetizer: an access unit too big for one packet.
    au = b"\x00\x00\x00\x01" + sps + b"\x00\x00\x00\x01" + pps + b"\x00\x00\x00\x01" + idr
    payloads = _packetize("H264", au + bytes(3000))
    assert h264_keyframe_start(payloads[0])
    assert not any(h264_keyframe_start(p) for p in payloads[2:])


def test_extension_block_is_padded_one_byte_form() -> None:
    block = extension_block(b"\x10" + b"1", b"\x32" + b"\x01\x02\x03", None)
    assert block[:2] == b"\xbe\xde"
    assert struct.unpack("!H", block[2:4])[0] * 4 == len(block) - 4
    assert block[4:] == b"\x101\x32\x01\x02\x03\x00\x00"
    assert extension_block(b"", None, None) == b""


# Through the router.


async def test_packets_reach_subscribers_with_payloads_unchanged(meetings: Meetings) -> None:
    meeting = packet_meeting(meetings)
    alice, bob, carol = meeting.join("alice"), meeting.join("bob"), meeting.join("carol")
    await alice.publish()
    for client in (bob, carol):
        await wait_for(lambda c=client: len(c.frames_from("alice", "camera")) >= 30)  # type: ignore[misc]
        await wait_for(lambda c=client: len(c.frames_from("alice", "microphone")) >= 20)  # type: ignore[misc]
    assert alice.camera is not None
    for client in (bob, carol):
        received = [f.data for f in client.frames_from("alice", "camera")]
        assert client.frames_from("alice", "camera")[0].keyframe
        assert contiguous_run(list(alice.camera.sent), received)
        audio = [f.data for f in client.frames_from("alice", "microphone")]
        assert set(audio) <= set(opus_loop())
    stats = meeting.router.stats()
    assert stats.packets_forwarded > 0
    assert stats.frames_forwarded > 0
    # Packets go straight from the packet handler: no frame queue per subscriber.
    assert all(not t.subscriptions for t in meeting.router.participant("alice").tracks)  # type: ignore[union-attr]


async def test_lost_packets_are_retransmitted_from_the_history(meetings: Meetings) -> None:
    meeting = packet_meeting(meetings)
    alice, bob = meeting.join("alice"), meeting.join("bob")
    await alice.publish(microphone=False)
    await wait_for(lambda: bob.frames_from("alice", "camera"))
    _, video_ssrc = bob.receiver_for("alice", "camera")

    # Drop every 5th video packet on its way in to bob's receive connection.
    dropped: list[int] = []
    seen = [0]
    assert bob.receive_pc is not None
    for connection in aiortc_hooks.ice_connections(bob.receive_pc):
        for protocol in connection._protocols:
            handle = protocol.datagram_received

            def datagram_received(data: bytes, addr: Any, handle: Any = handle) -> None:
                is_rtp = 128 <= data[0] < 192 and not 192 <= data[1] <= 223
                if is_rtp and struct.unpack("!I", data[8:12])[0] == video_ssrc:
                    seen[0] += 1
                    if seen[0] % 5 == 0:
                        dropped.append(seen[0])
                        return
                handle(data, addr)

            protocol.datagram_received = datagram_received

    # bob's NACKs (and receiver reports) are handled where they reach the server's
    # socket, not through aiortc's queue and the DTLS transport's task.
    server = meeting.router.participant("bob")
    server_pc = server.subscriber._pc  # type: ignore[union-attr]
    assert server_pc is not None
    dtls = server_pc.getTransceivers()[0].sender.transport
    slow_path: list[bytes] = []
    dtls._handle_rtcp_data = lambda data: slow_path.append(data)  # never awaited if unused

    start = len(bob.frames_from("alice", "camera"))
    await wait_for(lambda: len(bob.frames_from("alice", "camera")) >= start + 90, within=15)
    forward = forward_of(meeting, bob, "alice", "camera")
    assert len(dropped) >= 15
    assert forward.retransmitted >= len(dropped) // 2
    assert slow_path == []
    assert alice.camera is not None
    # Every frame arrived, in order: the losses were all repaired.
    received = [f.data for f in bob.frames_from("alice", "camera")]
    assert contiguous_run(list(alice.camera.sent), received)


async def test_sender_reports_keep_the_publishers_clock_pairs_for_lip_sync(
    meetings: Meetings,
) -> None:
    meeting = packet_meeting(meetings)
    alice, bob = meeting.join("alice"), meeting.join("bob")
    await alice.publish()
    await wait_for(
        lambda: bob.frames_from("alice", "camera") and bob.frames_from("alice", "microphone")
    )
    published = {t.source: t for t in meeting.router.participant("alice").tracks}  # type: ignore[union-attr]
    # What alice's client reports (seen where the server receives it) and what bob gets.
    sent: dict[str, dict[int, int]] = {"camera": {}, "microphone": {}}
    received: dict[str, list[tuple[int, int]]] = {"camera": [], "microphone": []}
    for source, track in published.items():
        aiortc_hooks.observe_sender_reports(
            track._receiver, lambda _ssrc, ntp, rtp, s=source: sent[s].__setitem__(ntp, rtp)
        )
        receiver, _ = bob.receiver_for("alice", source)
        aiortc_hooks.observe_sender_reports(
            receiver, lambda _ssrc, ntp, rtp, s=source: received[s].append((ntp, rtp))
        )

    def matched(source: str) -> list[tuple[int, int]]:
        return [(ntp, rtp) for ntp, rtp in received[source] if ntp in sent[source]]

    await wait_for(lambda: all(len(matched(s)) >= 2 for s in sent), within=10)

    # The offset between bob's video timestamps and alice's, seen on one packet's bytes.
    at_server: dict[bytes, int] = {}
    at_bob: list[tuple[bytes, int]] = []
    aiortc_hooks.observe_rtp(
        published["camera"]._receiver, lambda p: at_server.setdefault(p.payload, p.timestamp)
    )
    bob_camera, _ = bob.receiver_for("alice", "camera")
    aiortc_hooks.observe_rtp(bob_camera, lambda p: at_bob.append((p.payload, p.timestamp)))
    await wait_for(lambda: any(payload in at_server for payload, _ in at_bob))
    payload, timestamp = next((p, t) for p, t in at_bob if p in at_server)
    video_offset = (timestamp - at_server[payload]) % (1 << 32)
    assert video_offset == forward_of(meeting, bob, "alice", "camera")._ts_offset
    audio_offset = forward_of(meeting, bob, "alice", "microphone")._ts_offset
    for source, offset in (("camera", video_offset), ("microphone", audio_offset)):
        for ntp, rtp in matched(source):
            # Same wall-clock instant, same media instant: only the timestamp origin moved.
            assert (rtp - sent[source][ntp]) % (1 << 32) == offset
        # Once alice reports, bob's reports carry her pairs.
        assert received[source][-1] in matched(source)


class FullSocket:
    """Stands in for a forward's output: the next ``count`` packets find the socket's
    buffer full, as for a subscriber on a link that cannot keep up."""

    def __init__(self, output: Any, count: int) -> None:
        self._output = output
        self.count = count

    @property
    def connected(self) -> bool:
        return bool(self._output.connected)

    def send(self, header: bytes, payload: bytes) -> int:
        if self.count > 0:
            self.count -= 1
            return aiortc_hooks.FULL
        return int(self._output.send(header, payload))


async def test_a_slow_subscriber_skips_to_the_next_keyframe_alone(meetings: Meetings) -> None:
    meeting = packet_meeting(meetings)
    alice, bob, carol = meeting.join("alice"), meeting.join("bob"), meeting.join("carol")
    await alice.publish(microphone=False)
    for client in (bob, carol):
        await wait_for(lambda c=client: len(c.frames_from("alice", "camera")) >= 10)  # type: ignore[misc]
    assert alice.camera is not None
    camera = alice.camera
    requests = camera.keyframe_requests
    slow = forward_of(meeting, carol, "alice", "camera")
    fast = forward_of(meeting, bob, "alice", "camera")
    fast_dropped = fast.dropped  # those before its first keyframe
    slow._output = FullSocket(slow._output, 15)  # type: ignore[assignment]
    before = {c: len(c.frames_from("alice", "camera")) for c in (bob, carol)}

    await wait_for(lambda: len(bob.frames_from("alice", "camera")) >= before[bob] + 60)
    await wait_for(lambda: len(carol.frames_from("alice", "camera")) > before[carol] + 5)
    assert slow._output.count == 0  # type: ignore[attr-defined]
    assert slow.overflows >= 1  # each time it waited for a keyframe, sending nothing
    assert camera.keyframe_requests > requests
    # Carol lost frames and started again at a keyframe. The frame cut short when her
    # socket filled may reach her, incomplete (aiortc's receiver hands it on; a
    # browser's waits for its last packet and drops it); the rest is whole: what was
    # on its way, then one jump ahead to a keyframe, and everything from there.
    sent = list(camera.sent)
    after = carol.frames_from("alice", "camera")[before[carol] :]
    assert len([f for f in after if f.data not in sent]) <= 1
    whole = [f for f in after if f.data in sent]
    positions = [sent.index(f.data) for f in whole]
    jumps = [i + 1 for i in range(len(positions) - 1) if positions[i + 1] != positions[i] + 1]
    assert len(jumps) == 1
    assert positions[jumps[0]] > positions[jumps[0] - 1] + 1
    assert whole[jumps[0]].keyframe
    # Bob did not notice.
    assert (fast.overflows, fast.dropped) == (0, fast_dropped)
    everything = [f.data for f in bob.frames_from("alice", "camera")]
    assert contiguous_run(list(camera.sent), everything)


async def test_a_paused_track_sends_nothing_and_resumes_at_a_keyframe(meetings: Meetings) -> None:
    meeting = packet_meeting(meetings)
    alice, bob = meeting.join("alice"), meeting.join("bob")
    await alice.publish(microphone=False)
    await wait_for(lambda: len(bob.frames_from("alice", "camera")) >= 10)
    bob.media.set_receiving("alice/camera", False)
    forward = forward_of(meeting, bob, "alice", "camera")
    sent = forward.packets
    dropped = forward.dropped
    await wait_for(lambda: forward.dropped >= dropped + 20)
    assert forward.packets == sent
    assert alice.camera is not None
    sent_while_paused = len(alice.camera.sent) - 5  # a few may have been on their way
    count = len(bob.frames_from("alice", "camera"))

    bob.media.set_receiving("alice/camera", True)
    await wait_for(lambda: len(bob.frames_from("alice", "camera")) >= count + 10)
    sent_frames = list(alice.camera.sent)
    # The receiver held the last frame before the pause until the next one came.
    resumed = [
        f
        for f in bob.frames_from("alice", "camera")[count:]
        if sent_frames.index(f.data) >= sent_while_paused
    ]
    assert resumed[0].keyframe
    assert contiguous_run(sent_frames, [f.data for f in resumed])


class RecordingOutput:
    """A forward's output that keeps what it was asked to send."""

    def __init__(self) -> None:
        self.connected = True
        self.reports: list[aiortc_hooks.SenderInfo] = []
        self.sent: list[tuple[int, bytes]] = []

    def send(self, header: bytes, payload: bytes) -> int:
        self.sent.append((struct.unpack("!H", header[2:4])[0], payload))
        return aiortc_hooks.SENT

    def send_report(self, info: aiortc_hooks.SenderInfo) -> int:
        self.reports.append(info)
        return aiortc_hooks.SENT


def _video_packet(seq: int, timestamp: int, payload: bytes, marker: int = 1) -> Any:
    from aiortc.rtp import RtpPacket

    packet = RtpPacket(payload_type=96, sequence_number=seq, timestamp=timestamp, ssrc=7)
    packet.payload = payload
    packet.marker = marker
    return packet


def _started_forward(output: RecordingOutput) -> PacketForward:
    from bridge.media.counters import MediaCounters

    forward = PacketForward(output, "video", MediaCounters())  # type: ignore[arg-type]

    class Parameters:
        payload_type, rtx_payload_type, ssrc, rtx_ssrc = 96, None, 1234, 5678
        mid, mid_id, abs_send_time_id, audio_level_id = "1", 1, 3, None

    forward.started(Parameters())  # type: ignore[arg-type]
    return forward


def test_a_new_forward_catches_up_from_a_recent_keyframe_without_asking() -> None:
    # Many joining at once: the keyframe one of them asked for came just before this
    # one's connection was up. It starts from that keyframe, not from one more PLI.
    output = RecordingOutput()
    forward = _started_forward(output)
    key, delta1, delta2 = b"\x10\x50key", b"\x10\x51d1", b"\x10\x51d2"
    recent = [_video_packet(100, 0, key), _video_packet(101, 3000, delta1)]
    requests: list[int] = []
    forward.attach(lambda: requests.append(1), lambda: None, lambda: recent)
    requests.clear()  # the one made on attach, if connected
    forward.forward(_video_packet(102, 6000, delta2), False, 0, b"\x00\x00\x00", None, {})
    assert [payload for _, payload in output.sent] == [key, delta1, delta2]
    seqs = [seq for seq, _ in output.sent]
    assert seqs == [seqs[0], (seqs[0] + 1) % 65536, (seqs[0] + 2) % 65536]
    assert requests == []
    assert not forward.waiting_for_keyframe


def test_a_forward_that_already_sent_asks_for_a_keyframe_instead() -> None:
    output = RecordingOutput()
    forward = _started_forward(output)
    recent = [_video_packet(100, 0, b"\x10\x50key")]
    requests: list[int] = []
    forward.attach(lambda: requests.append(1), lambda: None, lambda: recent)
    forward.forward(recent[0], True, 0, b"\x00\x00\x00", None, {})
    assert len(output.sent) == 1
    forward.pause()
    forward.resume()  # back to waiting for a keyframe, having sent before
    requests.clear()
    forward.forward(_video_packet(101, 3000, b"\x10\x51d1"), False, 0, b"\x00\x00\x00", None, {})
    assert len(output.sent) == 1  # nothing replayed: it would go back in time
    assert requests == [1]
    # Nothing recent either: it asks.
    fresh = _started_forward(RecordingOutput())
    fresh.attach(lambda: requests.append(2), lambda: None, tuple)
    fresh.forward(_video_packet(5, 0, b"\x10\x51d"), False, 0, b"\x00\x00\x00", None, {})
    assert requests[-1] == 2


def test_a_forward_starts_its_picture_as_soon_as_its_connection_is_up() -> None:
    # The subscription is attached when the answer comes in, before ICE and DTLS are up;
    # aiortc starts the sender once DTLS is. The picture starts right then, not at the
    # track's next packet (up to a frame later).
    from bridge.media.counters import MediaCounters

    class Parameters:
        payload_type, rtx_payload_type, ssrc, rtx_ssrc = 96, None, 1234, 5678
        mid, mid_id, abs_send_time_id, audio_level_id = "1", 1, 3, None

    key, delta = b"\x10\x50key", b"\x10\x51d1"
    recent = [_video_packet(100, 0, key), _video_packet(101, 3000, delta)]
    for available, expected_sent, expected_requests in ((recent, [key, delta], 0), ((), [], 1)):
        output = RecordingOutput()
        output.connected = False
        forward = PacketForward(output, "video", MediaCounters())  # type: ignore[arg-type]
        requests: list[int] = []
        forward.attach(lambda r=requests: r.append(1), lambda: None, lambda a=available: a)
        assert requests == [] and forward.waiting_for_keyframe  # not connected: not yet
        output.connected = True
        forward.started(Parameters())  # type: ignore[arg-type]
        assert [payload for _, payload in output.sent] == expected_sent
        assert len(requests) == expected_requests
        assert forward.waiting_for_keyframe == (not expected_sent)

    # A paused forward, or one whose connection is still not up, waits as before.
    output = RecordingOutput()
    output.connected = False
    forward = PacketForward(output, "video", MediaCounters())  # type: ignore[arg-type]
    forward.attach(lambda: requests.append(2), lambda: None, lambda: recent)
    forward.started(Parameters())  # type: ignore[arg-type]
    assert output.sent == [] and requests[-1] != 2
