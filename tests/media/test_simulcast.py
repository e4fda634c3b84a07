"""Simulcast on the packet path: a published track takes every layer its publisher sends,
and each subscriber's forward plays the layer it asks for, moving to another at that
layer's next keyframe with no gap in its sequence numbers or timestamps. Fed with RTP
packets as a browser sends them (each layer its own SSRC, named by its rid); real
browsers are in ``tests/integration/test_livekit_browser.py``."""

from __future__ import annotations

import asyncio
import itertools
import struct
import time

import pytest
from aiortc.rtp import RtpPacket

from bridge.media import aiortc_hooks
from bridge.media.counters import MediaCounters
from bridge.media.publisher import LAYER_TIMEOUT, PublishedTrack
from bridge.media.rtp_forward import PacketForward
from bridge.media.sdp_rules import add_simulcast_recv, simulcast_layers

from .helpers import FakeClock, loopback_settings
from .test_subscription import VP8

SSRCS = {"q": 11, "h": 12, "f": 13}
KEY, DELTA = b"\x10\x50", b"\x10\x51"


class Receiver:
    """The publisher's receiver: records which SSRC each PLI asked a keyframe of."""

    def __init__(self) -> None:
        self.plis: list[int] = []

    def getSynchronizationSources(self) -> list[object]:
        return []

    async def _send_rtcp_pli(self, media_ssrc: int) -> None:
        self.plis.append(media_ssrc)


class Output:
    """A forward's socket: keeps (sequence number, timestamp, ssrc, payload) sent."""

    def __init__(self) -> None:
        self.connected = True
        self.reports: list[aiortc_hooks.SenderInfo] = []
        self.sent: list[tuple[int, int, int, bytes]] = []

    def send(self, header: bytes, payload: bytes) -> int:
        seq, ts, ssrc = struct.unpack("!HII", header[2:12])
        self.sent.append((seq, ts, ssrc, payload))
        return aiortc_hooks.SENT

    def send_report(self, info: aiortc_hooks.SenderInfo) -> int:
        self.reports.append(info)
        return aiortc_hooks.SENT


class Parameters:
    payload_type, rtx_payload_type, ssrc, rtx_ssrc = 96, None, 1234, 5678
    mid, mid_id, abs_send_time_id, audio_level_id = "1", 1, 3, None


def forward() -> tuple[PacketForward, Output]:
    output = Output()
    made = PacketForward(output, "video", MediaCounters())  # type: ignore[arg-type]
    made.started(Parameters())  # type: ignore[arg-type]
    return made, output


class Publisher:
    """Sends frames of each layer as a browser does: its own SSRC, sequence numbers
    and timestamps per layer, the rid on every packet."""

    def __init__(self, track: PublishedTrack) -> None:
        self.track = track
        self.seq = {rid: 1000 * (n + 1) for n, rid in enumerate(SSRCS)}
        self.ts = {rid: 100_000 * (n + 1) for n, rid in enumerate(SSRCS)}

    def frame(self, rid: str, key: bool = False) -> bytes:
        payload = (KEY if key else DELTA) + f"{rid}{self.seq[rid]}".encode()
        packet = RtpPacket(payload_type=96, sequence_number=self.seq[rid], timestamp=self.ts[rid])
        packet.ssrc = SSRCS[rid]
        packet.payload = payload
        packet.marker = 1
        packet.extensions.rtp_stream_id = rid
        self.seq[rid] += 1
        self.ts[rid] += 3000
        self.track.on_packet(packet)
        return payload

    def all_layers(self, key: bool = False) -> dict[str, bytes]:
        return {rid: self.frame(rid, key) for rid in SSRCS}


def track(receiver: Receiver, clock: FakeClock | None = None) -> PublishedTrack:
    published = PublishedTrack(
        "alice",
        "camera",
        VP8,
        receiver,  # type: ignore[arg-type]
        None,
        loopback_settings(),
        clock or FakeClock(),
        asyncio.ensure_future,
        rids=("q", "h", "f"),
    )
    published.packet_source = True
    return published


def continuous(sent: list[tuple[int, int, int, bytes]]) -> bool:
    """One stream to the subscriber: sequence numbers without a gap, time moving on."""
    return all(
        b[0] == (a[0] + 1) & 0xFFFF and 0 < (b[1] - a[1]) & 0xFFFFFFFF < 90_000 and a[2] == b[2]
        for a, b in itertools.pairwise(sent)
    )


async def test_each_forward_plays_its_layer_and_moves_at_a_keyframe() -> None:
    receiver = Receiver()
    clock = FakeClock()
    published = track(receiver, clock)
    publisher = Publisher(published)
    low, low_out = forward()
    best, best_out = forward()
    published.attach_forward(low, 0)
    published.attach_forward(best)

    first = publisher.all_layers(key=True)
    deltas = [publisher.all_layers() for _ in range(3)]
    assert [p for *_, p in low_out.sent] == [first["q"], *(d["q"] for d in deltas)]
    # The best layer known so far is played: the lower ones' keyframes came first, and
    # each better one takes over at its own.
    assert [p for *_, p in best_out.sent] == [*first.values(), *(d["f"] for d in deltas)]

    # The low one asks for the best layer: it stays on its layer until that layer's next
    # keyframe, which is asked of that layer's SSRC.
    receiver.plis.clear()
    clock.advance(1)  # past the keyframe requests' interval (attaching asked already)
    published.set_layer(low, 2)
    await asyncio.sleep(0)
    assert receiver.plis == [SSRCS["f"]]
    more = publisher.all_layers()
    assert low_out.sent[-1][3] == more["q"]
    key = publisher.all_layers(key=True)
    after = publisher.all_layers()
    assert [p for *_, p in low_out.sent[-2:]] == [key["f"], after["f"]]
    assert continuous(low_out.sent) and continuous(best_out.sent)
    # A packet without a layer the track knows is not forwarded.
    stray = RtpPacket(payload_type=96, sequence_number=1, timestamp=1)
    stray.ssrc, stray.payload = 99, KEY + b"stray"
    published.on_packet(stray)
    assert all(p != stray.payload for *_, p in low_out.sent + best_out.sent)


async def test_a_layer_that_stops_is_replaced_by_the_best_one_left() -> None:
    receiver = Receiver()
    published = track(receiver)
    publisher = Publisher(published)
    best, out = forward()
    published.attach_forward(best)
    publisher.all_layers(key=True)
    assert out.sent[-1][3].startswith(KEY + b"f")
    # The browser drops its best layer (bandwidth): after LAYER_TIMEOUT without it, the
    # forward takes the next one at its keyframe, asked for.
    time.sleep(LAYER_TIMEOUT + 0.1)  # noqa: ASYNC251 - the track reads the real clock
    receiver.plis.clear()
    publisher.frame("q")
    publisher.frame("h")
    await asyncio.sleep(0)
    assert SSRCS["h"] in receiver.plis
    key = publisher.frame("h", key=True)
    delta = publisher.frame("h")
    assert [p for *_, p in out.sent[-2:]] == [key, delta]
    assert continuous(out.sent)


def test_the_offer_s_layers_are_read_and_the_answer_takes_them() -> None:
    offer = (
        "v=0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=mid:0\r\n"
        "m=video 9 UDP/TLS/RTP/SAVPF 96\r\na=mid:1\r\na=rid:f send\r\na=rid:h send\r\n"
        "a=rid:q send\r\na=simulcast:send f;h;q\r\n"
        "m=video 9 UDP/TLS/RTP/SAVPF 96\r\na=mid:2\r\na=rid:a send\r\na=rid:b send\r\n"
        "a=simulcast:send a;~b\r\n"
    )
    layers = simulcast_layers(offer)
    # livekit-client's names, lowest first whatever the order; a paused rid is not a
    # layer, and one layer alone is no simulcast.
    assert layers == {"1": ("q", "h", "f")}
    answer = "v=0\r\nm=audio 9 X 111\r\na=mid:0\r\nm=video 9 X 96\r\na=mid:1\r\n"
    assert add_simulcast_recv(answer, layers).endswith(
        "a=mid:1\r\na=rid:q recv\r\na=rid:h recv\r\na=rid:f recv\r\na=simulcast:recv q;h;f\r\n"
    )
    for bad in (
        "m=video 9 X 96\r\na=mid:1\r\na=rid:q send\r\na=simulcast:send q;h\r\n",
        "m=video 9 X 96\r\na=mid:1\r\na=rid:q send\r\na=rid:h send\r\na=rid:f send\r\n"
        "a=rid:x send\r\na=simulcast:send q;h;f;x\r\n",
        "m=video 9 X 96\r\na=mid:1\r\na=rid:q;x send\r\na=rid:h send\r\n"
        "a=simulcast:send q;x;h\r\n",
    ):
        assert simulcast_layers("v=0\r\n" + bad) == {}


async def test_sender_reports_ride_on_the_tracks_packets_about_once_a_second(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # No timer per subscriber: the publishing track sends its forwards' reports in the
    # turn of the loop a packet came in, every 0.5 to 1.5 s (RFC 3550's spread).
    now = [1000.0]
    monkeypatch.setattr(aiortc_hooks, "ntp_time", lambda: int(now[0] * (1 << 32)))
    for rids in (("q", "h", "f"), ()):
        published = track(Receiver())
        published.rids = rids
        publisher = Publisher(published)
        playing, playing_out = forward()
        idle, idle_out = forward()
        published.attach_forward(playing)
        published.attach_forward(idle)
        idle.pause()  # sends nothing, so reports nothing
        for step in range(300):  # 10 s of 30 fps, the keyframe first
            now[0] += 1 / 30
            if rids:
                publisher.all_layers(key=step == 0)
            else:
                publisher.frame("f", key=step == 0)
        assert 7 <= len(playing_out.reports) <= 20, rids
        assert idle_out.reports == []
        # Each carries the forward's own figures as they were then.
        ntp, _, packets, octets = playing_out.reports[-1]
        assert 0 < packets <= playing.packets and 0 < octets <= playing.octets
        assert now[0] - 1.5 <= ntp / (1 << 32) <= now[0]  # no SR from the publisher here
