"""The hooks into aiortc/aioice internals, checked on real peer connections."""

from __future__ import annotations

import asyncio
import struct
import threading
import time
from collections.abc import Callable
from typing import Any

import aioice.ice
import pytest
from aiortc import RTCIceServer, RTCPeerConnection, VideoStreamTrack
from aiortc.rate import RemoteBitrateEstimator
from aiortc.rtcrtpreceiver import StreamStatistics
from aiortc.rtp import RtpPacket

from bridge.media import aiortc_hooks
from bridge.media.frames import EncodedFrame
from bridge.media.passthrough import tap_encoded_frames
from bridge.media.peer import close_peer_connection, new_peer_connection, set_local_description
from tests.harness.synthetic import SyntheticVideoTrack, ToneTrack

from .helpers import LOOPBACK, wait_for


def test_other_versions_are_refused_with_a_clear_message(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(aiortc_hooks.VERIFIED_VERSIONS, "aiortc", ("0.0.1",))
    with pytest.raises(RuntimeError, match=r"aiortc 0\.0\.1, but aiortc 1\.16\.0 is installed"):
        aiortc_hooks._check_versions()


async def test_host_candidates_on_configured_addresses_only() -> None:
    # Why the hook exists: aioice itself never offers loopback.
    assert "127.0.0.1" not in aioice.ice.get_host_addresses(use_ipv4=True, use_ipv6=True)
    pc = new_peer_connection([])
    pc.addTransceiver("audio")
    pc.addTransceiver("video")
    await set_local_description(pc, await pc.createOffer(), LOOPBACK)
    candidates = [line for line in pc.localDescription.sdp.splitlines() if "a=candidate" in line]
    assert len(candidates) == 2  # one bundled transport, listed in both sections
    assert all(" 127.0.0.1 " in line and "typ host" in line for line in candidates)
    assert len(aiortc_hooks.ice_connections(pc)) == 1
    await pc.close()


async def test_an_unanswering_stun_server_delays_gathering_only_as_long_as_allowed() -> None:
    # The cause of the 5 s join stall: aioice waits 5 s for server-reflexive candidates.
    pc = new_peer_connection([RTCIceServer("stun:127.0.0.1:9")])  # nobody answers there
    pc.addTransceiver("video")
    started = time.monotonic()
    await set_local_description(pc, await pc.createOffer(), LOOPBACK, gathering_timeout=0.3)
    assert 0.25 < time.monotonic() - started < 1.5
    assert "typ srflx" not in pc.localDescription.sdp
    assert " 127.0.0.1 " in pc.localDescription.sdp
    await close_peer_connection(pc)


async def connect(
    sender: RTCPeerConnection, receiver: RTCPeerConnection, before_answer: Callable[[], None]
) -> None:
    await set_local_description(sender, await sender.createOffer(), LOOPBACK)
    await receiver.setRemoteDescription(sender.localDescription)
    before_answer()
    await set_local_description(receiver, await receiver.createAnswer(), LOOPBACK)
    await sender.setRemoteDescription(receiver.localDescription)


async def test_hooks_on_a_real_connection() -> None:
    sending, receiving = new_peer_connection([]), new_peer_connection([])
    video, audio = SyntheticVideoTrack(), ToneTrack(loud=True)
    video_sender = sending.addTransceiver(video, direction="sendonly").sender
    sending.addTransceiver(audio, direction="sendonly")
    pli_seen: list[int] = []
    aiortc_hooks.on_keyframe_request(video_sender, lambda: pli_seen.append(1))
    aiortc_hooks.set_msid(video_sender, "alice", "camera")
    frames: list[EncodedFrame] = []
    levels: list[int] = []

    def tap() -> None:
        video_rx, audio_rx = (t.receiver for t in receiving.getTransceivers())
        tap_encoded_frames(video_rx, frames.append)
        tap_encoded_frames(audio_rx, lambda frame: None)
        aiortc_hooks.observe_rtp(
            audio_rx,
            lambda p: (
                levels.append(p.extensions.audio_level[1]) if p.extensions.audio_level else None
            ),
        )

    await connect(sending, receiving, tap)
    assert "a=msid:alice camera" in sending.localDescription.sdp
    await wait_for(lambda: len(frames) >= 10 and len(levels) >= 10)

    # Frames arrive encoded and unchanged, and nothing decodes them.
    sent = list(video.sent)
    first = sent.index(frames[0].data)
    assert [f.data for f in frames] == sent[first : first + len(frames)]
    assert frames[0].keyframe
    decoders = [t.name for t in threading.enumerate() if "decoder" in t.name]
    assert decoders == []

    # RFC 6464 levels of the tone (aiortc encodes raw audio and adds them).
    assert max(levels) < 30

    # A PLI from the receiving side reaches the sender's hook.
    video_rx = receiving.getTransceivers()[0].receiver
    ssrc = video_sender._ssrc
    await aiortc_hooks.send_pli(video_rx, ssrc)
    await wait_for(lambda: pli_seen)

    with pytest.raises(RuntimeError, match="before the receiver starts"):
        aiortc_hooks.tap_receiver(video_rx, lambda codec, frame: None)
    await sending.close()
    await receiving.close()


async def test_tap_survives_receiver_stop_without_a_thread() -> None:
    frames: list[EncodedFrame] = []
    sending, receiving = new_peer_connection([]), new_peer_connection([])
    sending.addTransceiver(SyntheticVideoTrack(), direction="sendonly")
    await connect(
        sending,
        receiving,
        lambda: tap_encoded_frames(receiving.getTransceivers()[0].receiver, frames.append),
    )
    await wait_for(lambda: frames)
    await receiving.close()
    await sending.close()
    await asyncio.sleep(0.05)
    assert [t.name for t in threading.enumerate() if "decoder" in t.name] == []


def test_a_patch_release_of_a_tested_series_is_accepted_with_a_warning(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setitem(aiortc_hooks.VERIFIED_VERSIONS, "aiortc", ("1.16.7",))
    aiortc_hooks._check_versions()
    assert "aiortc 1.16.0 is a patch release of a tested series (1.16.7)" in caplog.text
    monkeypatch.setitem(aiortc_hooks.VERIFIED_VERSIONS, "aiortc", ("1.17.0",))
    with pytest.raises(RuntimeError, match=r"aiortc 1\.17\.0, but aiortc 1\.16\.0"):
        aiortc_hooks._check_versions()
    monkeypatch.setitem(aiortc_hooks.VERIFIED_VERSIONS, "aiortc", ("1.16.0",))
    monkeypatch.setitem(aiortc_hooks.VERIFIED_VERSIONS, "pylibsrtp", ("0.12.0",))
    with pytest.raises(RuntimeError, match=r"pylibsrtp 0\.12\.0, but pylibsrtp 1\.0\.0"):
        aiortc_hooks._check_versions()


class _Silent(VideoStreamTrack):
    """A video track that never yields: the test writes the sender's RTP itself."""

    async def recv(self) -> Any:
        await asyncio.Event().wait()


async def test_a_taken_over_sender_sends_what_we_write_and_reports_our_figures() -> None:
    sending, receiving = new_peer_connection([]), new_peer_connection([])
    sender = sending.addTransceiver(_Silent(), direction="sendonly").sender
    started: list[aiortc_hooks.SendParameters] = []
    nacked: list[int] = []
    info: aiortc_hooks.SenderInfo = (123 << 32, 4567, 89, 1000)
    aiortc_hooks.take_over_sender(sender, started.append, lambda seq: nacked.append(seq) or True)
    output = aiortc_hooks.RtpOutput(sender)
    assert output.send(b"\x80" * 12, b"x") == aiortc_hooks.NOT_CONNECTED
    frames: list[EncodedFrame] = []
    reports: list[tuple[int, int, int]] = []

    def tap() -> None:
        receiver = receiving.getTransceivers()[0].receiver
        tap_encoded_frames(receiver, frames.append)
        aiortc_hooks.observe_sender_reports(receiver, lambda *r: reports.append(r))

    await connect(sending, receiving, tap)
    await wait_for(lambda: started and output.connected)
    parameters = started[0]
    assert parameters.ssrc == sender._ssrc
    assert parameters.mid == "0" and parameters.mid_id is not None
    assert parameters.rtx_payload_type is not None  # aiortc offers RTX for video
    receiver = receiving.getTransceivers()[0].receiver
    rtx = aiortc_hooks.rtx_payload_types(receiver)
    assert rtx[parameters.rtx_payload_type] == parameters.payload_type

    # Three one-packet VP8 "frames", the middle one lost on the way.
    def packet(seq: int, ts: int, body: bytes) -> tuple[bytes, bytes]:
        header = struct.pack(
            "!BBHII", 0x80, 0x80 | parameters.payload_type, seq, ts, parameters.ssrc
        )
        return header, b"\x10" + body

    for seq, ts, body in ((100, 0, b"one"), (102, 6000, b"three"), (103, 9000, b"four")):
        assert output.send(*packet(seq, ts, body)) == aiortc_hooks.SENT
    await wait_for(lambda: nacked == [101], within=5)  # the receiver asks for the gap
    assert output.send(*packet(101, 3000, b"two")) == aiortc_hooks.SENT
    # aiortc's jitter buffer hands on one frame per packet that comes in.
    for seq in range(104, 110):
        output.send(*packet(seq, (seq - 100) * 3000, b"more"))
    await wait_for(lambda: len(frames) >= 3)
    assert [f.data for f in frames[:3]] == [b"one", b"two", b"three"]
    # Sender reports go when we say, with our figures; aiortc's task sends none itself.
    assert output.send_report(info) == aiortc_hooks.SENT
    await wait_for(lambda: reports, within=5)
    assert reports == [(sender._ssrc, info[0], info[1])]
    # The receiver's next report answers it: aiortc has a round-trip time again.
    rtt = None
    for _ in range(50):  # aiortc's receiver reports every 0.5 to 1.5 s
        await asyncio.sleep(0.1)
        stats = await sender.getStats()
        inbound = [s for s in stats.values() if s.type == "remote-inbound-rtp"]
        rtt = inbound[0].roundTripTime if inbound else None
        if rtt is not None:
            break
    assert rtt is not None and 0 <= rtt < 1
    assert reports == [(sender._ssrc, info[0], info[1])]
    await sending.close()
    await receiving.close()


async def test_the_receivers_internals_are_where_the_hooks_look() -> None:
    pc = new_peer_connection([])
    video, audio = pc.addTransceiver("video").receiver, pc.addTransceiver("audio").receiver
    for receiver in (video, audio):
        assert isinstance(getattr(receiver, aiortc_hooks._RECEIVER_CODECS), dict)
        assert isinstance(getattr(receiver, aiortc_hooks._REMOTE_STREAMS), dict)
        assert isinstance(getattr(receiver, aiortc_hooks._RTX_SSRC), dict)
        assert isinstance(getattr(receiver, aiortc_hooks._ACTIVE_SSRC), dict)
        assert isinstance(getattr(receiver, aiortc_hooks._RTCP_SSRC), int)
        assert receiver._enabled is True
    dtls = video.transport
    for name in aiortc_hooks.DTLS_RECEIVE_ATTRIBUTES:
        assert hasattr(dtls, name), name
    assert callable(dtls._rtp_router.route_rtp)
    connection = dtls.transport.iceGatherer._connection
    assert isinstance(connection._queue, asyncio.Queue)
    assert isinstance(connection._protocols, list)
    # What take_over_sender and RtpOutput.send_report read and set on a sender.
    sender = pc.getTransceivers()[0].sender
    for name in (aiortc_hooks._SENDER_RTCP_STARTED, aiortc_hooks._SENDER_RTCP_EXITED):
        assert isinstance(getattr(sender, name), asyncio.Event), name
    for name in (
        aiortc_hooks._SENDER_CNAME,
        aiortc_hooks._SENDER_LSR,
        aiortc_hooks._SENDER_LSR_TIME,
    ):
        assert hasattr(sender, name), name
    assert callable(sender._run_rtcp) and callable(sender._send_rtcp)
    # The REMB estimator is there for video only, and is what PacketReceiver feeds.
    assert isinstance(getattr(video, aiortc_hooks._BITRATE_ESTIMATOR), RemoteBitrateEstimator)
    assert getattr(audio, aiortc_hooks._BITRATE_ESTIMATOR) is None
    await pc.close()


def _arrivals() -> list[tuple[int, int, float]]:
    """(sequence number, RTP timestamp, arrival) of a video stream with a loss, a late
    packet, a duplicate, and the sequence numbers wrapping."""
    packets = [(seq & 0xFFFF, 3000 * (seq // 3), seq * 0.011) for seq in range(65530, 65560)]
    late = packets.pop(8)
    packets.insert(11, late)
    del packets[20]
    packets.insert(15, packets[14])
    return packets


def test_received_stream_counts_as_aiortcs_statistics_do(monkeypatch: pytest.MonkeyPatch) -> None:
    ours, theirs = aiortc_hooks.ReceivedStream(90000), StreamStatistics(90000)
    for seq, timestamp, arrival in _arrivals():
        ours.count(seq, timestamp, arrival)
        # aiortc's reads the wall clock; give it the same arrival.
        monkeypatch.setattr(time, "time", lambda arrival=arrival: arrival)
        theirs.add(RtpPacket(sequence_number=seq, timestamp=timestamp))
    monkeypatch.undo()
    for name in ("base_seq", "max_seq", "cycles", "packets_received", "jitter"):
        assert getattr(ours, name) == getattr(theirs, name), name
    assert (ours.packets_lost, ours.fraction_lost) == (theirs.packets_lost, theirs.fraction_lost)
    # One lost, one repeated: RFC 3550 counts them even.
    assert (ours.packets_lost, ours.packets_received, ours.cycles) == (0, 30, 1 << 16)


def test_missing_packets_are_found_across_the_wrap_and_forgotten_when_they_come() -> None:
    missing = aiortc_hooks._MissingPackets()
    assert not missing.add(65533)
    assert not missing.add(65534)
    assert missing.add(1)  # 65535 and 0 are missing
    assert missing.missing == {65535, 0}
    assert not missing.add(0)  # a retransmission
    assert not missing.add(0)
    assert missing.missing == {65535}
    assert not missing.add(2)
    # A long gap asks for the most recent NACK_WINDOW packets only.
    assert missing.add(1000)
    assert len(missing.missing) == aiortc_hooks.NACK_WINDOW
    assert min(missing.missing) == 1000 - aiortc_hooks.NACK_WINDOW


def test_ntp_time_matches_aiortcs() -> None:
    from aiortc import clock

    ours, theirs = aiortc_hooks.ntp_time(), clock.current_ntp_time()
    assert abs(ours - theirs) < (1 << 32) // 100  # within 10 ms


async def test_run_eagerly_runs_a_coroutine_at_once_and_a_task_finishes_a_waiting_one(
    caplog: pytest.LogCaptureFixture,
) -> None:
    steps: list[str] = []
    running: set[asyncio.Future[None]] = set()

    async def quick() -> None:
        steps.append("quick")

    aiortc_hooks.run_eagerly(quick(), running)
    assert steps == ["quick"] and not running  # done before run_eagerly returned

    gate: asyncio.Future[str] = asyncio.get_running_loop().create_future()

    async def waits() -> None:
        steps.append("before")
        steps.append(await gate)
        await asyncio.sleep(0)
        steps.append("after")

    aiortc_hooks.run_eagerly(waits(), running)
    assert steps[-1] == "before" and len(running) == 1
    gate.set_result("woken")
    await wait_for(lambda: not running)
    assert steps[-2:] == ["woken", "after"]

    async def fails(at_once: bool) -> None:
        if not at_once:
            await asyncio.sleep(0)
        raise RuntimeError("broken handler")

    for at_once in (True, False):
        caplog.clear()
        aiortc_hooks.run_eagerly(fails(at_once), running)
        await wait_for(lambda: not running)
        assert "An RTCP handler failed" in caplog.text and "broken handler" in caplog.text


def test_the_lean_rate_counter_gives_what_aiortcs_gives() -> None:
    import random

    from aiortc import rate

    theirs_class = aiortc_hooks.AIORTC_RATE_COUNTER
    assert theirs_class is not None and theirs_class is not aiortc_hooks.WindowRateCounter
    # Installed: every REMB estimator made from now on counts with ours.
    assert isinstance(
        rate.RemoteBitrateEstimator().incoming_bitrate, aiortc_hooks.WindowRateCounter
    )
    for seed in range(100):
        rnd = random.Random(seed)
        window = rnd.choice([1000, 50, 7])
        theirs, ours = theirs_class(window, 8000), aiortc_hooks.WindowRateCounter(window, 8000)
        now = rnd.randrange(10**12)
        rates = 0
        for _ in range(400):
            step = rnd.random()
            if step < 0.6:  # packets in bursts, a few ms apart
                now += rnd.choice([0, 0, 1, 3, 6, 20])
            elif step < 0.7:  # pauses, some longer than the window
                now += rnd.randrange(2 * window + 5)
            elif step < 0.75:  # the wall clock stepping back a little
                now -= rnd.randrange(3)
            action = rnd.random()
            if action < 0.6:
                size = rnd.randrange(1500)
                theirs.add(size, now)
                ours.add(size, now)
            elif action < 0.95:
                rate_now = theirs.rate(now)
                assert ours.rate(now) == rate_now, (seed, now)
                rates += rate_now is not None
            else:
                theirs.reset()
                ours.reset()
        assert rates > 0
