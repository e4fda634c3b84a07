"""SFU benchmark: one publisher, N receivers, the router in its own process.

    .venv/bin/python bench/sfu.py [--receivers 1 2 4 8 16 32] [--seconds 5]
        [--forwarding packets|frames] [--against janus [--repeat 2]] [--loss 1]

For each N a fresh SFU process starts (a Router behind a tiny aiohttp WebSocket signaling
server on 127.0.0.1), so its CPU time and memory are its own. This process plays the
clients: one publisher sending a VP8 640x360 30 fps clip of about 1 Mbit/s, encoded once
before the runs and looped (so publishing costs next to nothing), plus Opus; then N
receivers that all join at the same moment and count frames where they leave the jitter
buffer, without decoding. All traffic stays on loopback; no STUN/TURN server is used.

Printed per N: SFU CPU (% of one core) and RSS, the receivers' video frame rate (lowest
and median), time from join to first video frame (median and max), PLIs the SFU sent,
and this client process's CPU. The whole run is bounded by --timeout.

With ``--against janus`` the same clients also go through Janus's VideoRoom (Debian
``janus``, configured from ``bench/janus/`` with ``event_loops = 2``; see
``bench/janus_client.py``), interleaved with the bridge for each N (bridge first, then
Janus first, ``--repeat`` times). For each side it prints CPU, the RTP packets per second
the receivers got, the server's CPU time per packet delivered (µs) and, per N, the ratio
of the bridge's CPU to Janus's. From the bridge's rows it estimates the largest N one core
holds at 30 fps (a straight line through CPU against N: the clients cannot be run at
that N on this machine).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import json
import os
import platform
import random
import resource
import socket
import statistics
import sys
import time
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# The synthetic media sources are test code (tests/harness), not part of the package.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import aiohttp
from aiohttp import web
from aiortc import RTCIceServer, RTCPeerConnection, RTCSessionDescription
from janus_client import JanusSession, publish, start_janus, stop_janus, subscribe

from bridge.media import MediaSettings, Router, aiortc_hooks
from bridge.media.frames import EncodedFrame
from bridge.media.passthrough import tap_encoded_frames
from bridge.media.peer import (
    close_peer_connection,
    new_peer_connection,
    set_local_description,
)
from tests.harness.synthetic import (
    LoopedOpusTrack,
    LoopedVideoTrack,
    Vp8Clip,
    encode_opus_loop,
    encode_vp8_clip,
)

LOOPBACK = ("127.0.0.1",)
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


# The SFU process


def participant_handler(
    router: Router,
) -> Callable[[web.Request], Awaitable[web.WebSocketResponse]]:
    """The WebSocket of one benchmark participant (``/ws/<id>``): publish, answer."""

    async def participant(request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(max_msg_size=1 << 20)
        await ws.prepare(request)

        async def send_offer(sdp: str) -> None:
            await ws.send_json({"type": "offer", "sdp": sdp})

        media = router.add_participant(request.match_info["id"], send_offer)
        try:
            async for message in ws:
                data = json.loads(message.data)
                if data["type"] == "publish":
                    answer = await media.publish(data["sdp"], data["sources"])
                    await ws.send_json({"type": "publish-answer", "sdp": answer})
                elif data["type"] == "answer":
                    await media.accept_answer(data["sdp"])
        finally:
            await media.close()
        return ws

    return participant


async def serve(
    port: int, ice_servers: list[str], gathering_timeout: float, forwarding: str | None = None
) -> None:
    """Run one router behind a WebSocket per participant until stdin closes."""
    chosen = {} if forwarding is None else {"packet_forwarding": forwarding == "packets"}
    settings = MediaSettings(
        ice_servers=[RTCIceServer(url) for url in ice_servers],
        host_addresses=LOOPBACK,
        ice_gathering_timeout=gathering_timeout,
        **chosen,
    )
    router = Router("bench", settings, on_event=lambda event: None)

    async def stats(request: web.Request) -> web.Response:
        publisher = router.participant("publisher")
        tracks = publisher.tracks if publisher is not None else ()
        video_in = sum(t.frames for t in tracks if t.kind == "video")
        return web.json_response({**dataclasses.asdict(router.stats()), "video_in": video_in})

    app = web.Application()
    app.router.add_get("/ws/{id}", participant_handler(router))
    app.router.add_get("/stats", stats)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    print("ready", flush=True)
    # The parent closes our stdin to stop us (and so does its death).
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
    await router.close()
    await runner.cleanup()


# The clients


@dataclass
class Receiver:
    """A receiving participant that counts frames without decoding them."""

    participant_id: str
    joined: float = 0.0
    first_video: float | None = None
    video_frames: int = 0
    audio_frames: int = 0
    packets: int = 0
    #: RTP datagrams dropped on purpose (--loss).
    lost: int = 0
    pc: RTCPeerConnection | None = None
    ws: aiohttp.ClientWebSocketResponse | None = None
    task: asyncio.Task[None] | None = None
    tapped: set[str] = field(default_factory=set)
    got_video: asyncio.Event = field(default_factory=asyncio.Event)
    #: When each step of joining was first reached (monotonic seconds): see PHASES.
    marks: dict[str, float] = field(default_factory=dict)

    def mark(self, phase: str) -> None:
        self.marks.setdefault(phase, time.monotonic())

    def on_video(self, frame: EncodedFrame) -> None:
        if self.first_video is None:
            self.first_video = time.monotonic()
            self.mark("first frame")
            self.got_video.set()
        self.video_frames += 1

    def on_audio(self, frame: EncodedFrame) -> None:
        self.audio_frames += 1

    def on_packet(self, packet: object) -> None:
        self.packets += 1

    def on_video_packet(self, packet: object) -> None:
        if "first video packet" not in self.marks:
            self.mark("first video packet")
        self.packets += 1

    def watch(self, pc: RTCPeerConnection) -> None:
        """Mark when ICE and then DTLS come up on ``pc``."""

        @pc.on("iceconnectionstatechange")
        def ice_state() -> None:
            if pc.iceConnectionState in ("connected", "completed"):
                self.mark("ICE up")

        @pc.on("connectionstatechange")
        def state() -> None:
            if pc.connectionState == "connected":
                self.mark("DTLS up")

    async def take_offer(self, pc: RTCPeerConnection, offer: str) -> None:
        """Set a server's offer on ``pc`` and count what each new receiver gets."""
        if "offer in" not in self.marks:
            self.mark("offer in")
            self.watch(pc)
        self.pc = pc
        await pc.setRemoteDescription(RTCSessionDescription(offer, "offer"))
        for transceiver in pc.getTransceivers():
            if transceiver.mid is not None and transceiver.mid not in self.tapped:
                self.tapped.add(transceiver.mid)
                count = self.on_video if transceiver.kind == "video" else self.on_audio
                tap_encoded_frames(transceiver.receiver, count)
                on_packet = self.on_video_packet if transceiver.kind == "video" else self.on_packet
                aiortc_hooks.observe_rtp(transceiver.receiver, on_packet)

    async def run(self, session: aiohttp.ClientSession, base: str) -> None:
        self.joined = time.monotonic()
        self.ws = await session.ws_connect(
            f"{base}/ws/{self.participant_id}", max_msg_size=1 << 20
        )
        self.pc = new_peer_connection([])
        async for message in self.ws:
            data = json.loads(message.data)
            if data["type"] == "offer":
                await self.answer(data["sdp"])

    async def answer(self, offer: str) -> None:
        assert self.pc is not None and self.ws is not None
        await self.take_offer(self.pc, offer)
        await set_local_description(self.pc, await self.pc.createAnswer(), LOOPBACK)
        await self.ws.send_json({"type": "answer", "sdp": self.pc.localDescription.sdp})

    async def close(self) -> None:
        if self.ws is not None:
            await self.ws.close()
        if self.task is not None:
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self.task
        if self.pc is not None:
            await close_peer_connection(self.pc)


class Publisher:
    """Publishes the looped clip and an Opus loop."""

    def __init__(self, clip: Vp8Clip, opus: tuple[bytes, ...]) -> None:
        self.video = LoopedVideoTrack(clip)
        self.audio = LoopedOpusTrack(opus)
        self.pc = new_peer_connection([])
        self.ws: aiohttp.ClientWebSocketResponse | None = None

    async def publish(self, session: aiohttp.ClientSession, base: str) -> None:
        self.ws = await session.ws_connect(f"{base}/ws/publisher", max_msg_size=1 << 20)
        self.pc.addTransceiver(self.audio, direction="sendonly")
        video = self.pc.addTransceiver(self.video, direction="sendonly")
        aiortc_hooks.on_keyframe_request(video.sender, self.video.request_keyframe)
        await set_local_description(self.pc, await self.pc.createOffer(), LOOPBACK)
        sources = {"0": "microphone", "1": "camera"}
        await self.ws.send_json(
            {"type": "publish", "sdp": self.pc.localDescription.sdp, "sources": sources}
        )
        reply = await self.ws.receive_json()
        await self.pc.setRemoteDescription(RTCSessionDescription(reply["sdp"], "answer"))

    async def close(self) -> None:
        if self.ws is not None:
            await self.ws.close()
        await close_peer_connection(self.pc)

    async def publish_to_janus(self, session: JanusSession) -> int:
        self.pc.addTransceiver(self.audio, direction="sendonly")
        video = self.pc.addTransceiver(self.video, direction="sendonly")
        aiortc_hooks.on_keyframe_request(video.sender, self.video.request_keyframe)
        return await publish(session, self.pc)


# Measuring


def process_cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS  # utime + stime


def process_rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def own_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.machine()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Result:
    receivers: int
    server: str
    sfu_cpu: float
    #: RTP packets per second the receivers got, all together.
    packets_per_s: float
    #: The server's CPU time per packet delivered.
    us_per_packet: float
    sfu_rss: float
    fps_min: float
    fps_median: float
    join_median: float
    join_max: float
    missing: int
    input_fps: float | None
    plis: int | None
    client_cpu: float
    #: Per step of joining (PHASES), median and max seconds after joining.
    phases: dict[str, tuple[float, float]] = field(default_factory=dict)


async def start_sfu(args: argparse.Namespace) -> tuple[asyncio.subprocess.Process, str]:
    servers = [a for url in args.ice_server for a in ("--ice-server", url)]
    servers += ["--gathering-timeout", str(args.gathering_timeout)]
    if args.forwarding is not None:
        servers += ["--forwarding", args.forwarding]
    return await spawn_sfu(__file__, servers)


async def spawn_sfu(script: str, extra: list[str]) -> tuple[asyncio.subprocess.Process, str]:
    """Run ``script serve --port <free port> *extra`` as the SFU process; returns it and
    its URL once it says it is ready (it stops when its stdin closes: stop_sfu)."""
    port = free_port()
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        script,
        "serve",
        "--port",
        str(port),
        *extra,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
    )
    assert process.stdout is not None
    line = await asyncio.wait_for(process.stdout.readline(), timeout=30)
    if line.strip() != b"ready":
        raise RuntimeError(f"the SFU process did not start: {line!r}")
    return process, f"http://127.0.0.1:{port}"


async def stop_sfu(process: asyncio.subprocess.Process) -> None:
    assert process.stdin is not None
    process.stdin.close()
    try:
        await asyncio.wait_for(process.wait(), timeout=10)
    except TimeoutError:
        process.kill()
        await process.wait()


async def sfu_stats(session: aiohttp.ClientSession, base: str) -> dict[str, Any]:
    async with session.get(f"{base}/stats") as response:
        return dict(await response.json())


async def run_round(
    count: int, clip: Vp8Clip, opus: tuple[bytes, ...], args: argparse.Namespace
) -> Result:
    """One round through the bridge's SFU."""
    process, base = await start_sfu(args)
    publisher = Publisher(clip, opus)
    receivers = [Receiver(f"receiver{i}") for i in range(count)]
    try:
        async with aiohttp.ClientSession() as session:
            await publisher.publish(session, base)
            await asyncio.sleep(1)  # the publisher is connected and sending
            for receiver in receivers:  # all join at the same moment
                receiver.task = asyncio.ensure_future(receiver.run(session, base))

            async def video_in() -> int:
                return int((await sfu_stats(session, base))["video_in"])

            result = await measure(process, receivers, args, "bridge", video_in)
            stats = await sfu_stats(session, base)
            if args.verbose:
                print(f"N={count} SFU stats: {stats}", flush=True)
            result.plis = stats["keyframe_requests"]
            for receiver in receivers:
                await receiver.close()
            await publisher.close()
    finally:
        await stop_sfu(process)
    return result


async def run_janus_round(
    count: int, clip: Vp8Clip, opus: tuple[bytes, ...], args: argparse.Namespace
) -> Result:
    """The same round through Janus's VideoRoom."""
    low = 20000 + 2000 * (os.getpid() % 10)
    process, base = await start_janus(free_port(), f"{low}-{low + 1999}")
    publisher = Publisher(clip, opus)
    receivers = [Receiver(f"receiver{i}") for i in range(count)]
    try:
        async with aiohttp.ClientSession() as http:
            session = JanusSession(http, base)
            await session.create()
            feed = await publisher.publish_to_janus(session)
            await asyncio.sleep(1)
            for receiver in receivers:
                receiver.joined = time.monotonic()
                receiver.task = asyncio.ensure_future(
                    subscribe(session, feed, receiver.take_offer)  # type: ignore[arg-type]
                )
            result = await measure(process, receivers, args, "janus", None)
            for receiver in receivers:
                await receiver.close()
            await publisher.close()
            await session.close()
    finally:
        await stop_janus(process)
    return result


def drop_incoming_rtp(receiver: Receiver, share: float) -> None:
    """Lose ``share`` of the RTP datagrams that reach ``receiver``, at random, before its
    stack sees them (as a lossy link would); RTCP and the rest go through."""
    if receiver.pc is None:
        return
    chance = random.Random(receiver.participant_id)
    for connection in aiortc_hooks.ice_connections(receiver.pc):
        for protocol in connection._protocols:
            handle = protocol.datagram_received

            def lossy(data: bytes, addr: Any, handle: Any = handle) -> None:
                rtp = len(data) > 1 and 128 <= data[0] < 192 and not 192 <= data[1] <= 223
                if rtp and chance.random() < share:
                    receiver.lost += 1
                    return
                handle(data, addr)

            protocol.datagram_received = lossy


async def measure(
    process: asyncio.subprocess.Process,
    receivers: list[Receiver],
    args: argparse.Namespace,
    server: str,
    video_in: Callable[[], Awaitable[int]] | None,
) -> Result:
    """Wait for every receiver's first frame, then measure for ``args.seconds``."""
    waits = [asyncio.ensure_future(r.got_video.wait()) for r in receivers]
    await asyncio.wait(waits, timeout=args.join_timeout)
    for wait in waits:
        wait.cancel()
    await asyncio.sleep(1)  # settle

    if args.loss:
        for receiver in receivers:
            drop_incoming_rtp(receiver, args.loss / 100)
    frames_before = [r.video_frames for r in receivers]
    packets_before = sum(r.packets for r in receivers)
    input_before = await video_in() if video_in is not None else 0
    sfu_before, own_before = process_cpu_seconds(process.pid), own_cpu_seconds()
    started = time.monotonic()
    await asyncio.sleep(args.seconds)
    elapsed = time.monotonic() - started
    sfu_seconds = process_cpu_seconds(process.pid) - sfu_before
    client_cpu = (own_cpu_seconds() - own_before) / elapsed * 100
    packets = sum(r.packets for r in receivers) - packets_before
    rates = [(r.video_frames - b) / elapsed for r, b in zip(receivers, frames_before, strict=True)]
    joins = [r.first_video - r.joined for r in receivers if r.first_video is not None]
    phases = {}
    for phase in PHASES:
        times = [r.marks[phase] - r.joined for r in receivers if phase in r.marks]
        if times:
            phases[phase] = (statistics.median(times), max(times))
    if args.loss:
        lost = sum(r.lost for r in receivers)
        print(f"N={len(receivers)} {server}: {lost} RTP datagrams dropped on purpose", flush=True)
    return Result(
        receivers=len(receivers),
        server=server,
        sfu_cpu=sfu_seconds / elapsed * 100,
        packets_per_s=packets / elapsed,
        us_per_packet=sfu_seconds / packets * 1e6 if packets else float("nan"),
        sfu_rss=process_rss_mib(process.pid),
        fps_min=min(rates),
        fps_median=statistics.median(rates),
        join_median=statistics.median(joins) if joins else float("nan"),
        join_max=max(joins) if joins else float("nan"),
        missing=len(receivers) - len(joins),
        input_fps=(await video_in() - input_before) / elapsed if video_in is not None else None,
        plis=None,
        client_cpu=client_cpu,
        phases=phases,
    )


def print_table(results: list[Result]) -> None:
    print(
        "| receivers | server | CPU (% of a core) | packets/s out | µs/packet | RSS (MiB) "
        "| input fps | receiver fps min / median | join to first frame median / max (ms) "
        "| PLIs sent | client process CPU (%) |"
    )
    print("| ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for r in results:
        missing = f" ({r.missing} got none)" if r.missing else ""
        input_fps = "" if r.input_fps is None else f"{r.input_fps:.1f}"
        plis = "" if r.plis is None else str(r.plis)
        print(
            f"| {r.receivers} | {r.server} | {r.sfu_cpu:.1f} | {r.packets_per_s:.0f} "
            f"| {r.us_per_packet:.1f} | {r.sfu_rss:.0f} | {input_fps} "
            f"| {r.fps_min:.1f} / {r.fps_median:.1f} "
            f"| {r.join_median * 1000:.0f} / {r.join_max * 1000:.0f}{missing} "
            f"| {plis} | {r.client_cpu:.0f} |",
            flush=True,
        )


#: The steps of joining that --timeline shows, in order, as the receivers see them.
PHASES = ("offer in", "ICE up", "DTLS up", "first video packet", "first frame")


def print_phases(results: list[Result]) -> None:
    """Where the join to first frame goes: each step's median / max time after joining."""
    print("| receivers | server | " + " | ".join(PHASES) + " |")
    print("| ---: | --- |" + " ---: |" * len(PHASES))
    for r in results:
        cells = [
            f"{r.phases[p][0] * 1000:.0f} / {r.phases[p][1] * 1000:.0f}" if p in r.phases else ""
            for p in PHASES
        ]
        print(f"| {r.receivers} | {r.server} | " + " | ".join(cells) + " |", flush=True)


def print_comparison(results: list[Result]) -> None:
    """Per N: each side's median CPU and µs per packet, and the bridge's CPU over Janus's."""
    print(
        "| receivers | bridge CPU (%) | Janus CPU (%) | ratio "
        "| bridge µs/packet | Janus µs/packet |"
    )
    print("| ---: | ---: | ---: | ---: | ---: | ---: |")
    for count in sorted({r.receivers for r in results}):
        sides = {
            server: [r for r in results if r.receivers == count and r.server == server]
            for server in ("bridge", "janus")
        }
        if not all(sides.values()):
            continue
        cpu = {k: statistics.median(r.sfu_cpu for r in v) for k, v in sides.items()}
        per = {k: statistics.median(r.us_per_packet for r in v) for k, v in sides.items()}
        print(
            f"| {count} | {cpu['bridge']:.1f} | {cpu['janus']:.1f} "
            f"| {cpu['bridge'] / cpu['janus']:.2f} | {per['bridge']:.1f} | {per['janus']:.1f} |",
            flush=True,
        )


def print_capacity(results: list[Result]) -> None:
    """The largest N the bridge would hold at 30 fps on one core, from a line through its
    CPU against N (least squares over the measured N)."""
    rows = [r for r in results if r.server == "bridge"]
    counts = sorted({r.receivers for r in rows})
    if len(counts) < 2:
        return
    points = [(r.receivers, r.sfu_cpu) for r in rows]
    mean_n = statistics.mean(n for n, _ in points)
    mean_cpu = statistics.mean(c for _, c in points)
    slope = sum((n - mean_n) * (c - mean_cpu) for n, c in points) / sum(
        (n - mean_n) ** 2 for n, _ in points
    )
    intercept = mean_cpu - slope * mean_n
    held = all(r.fps_min >= 29 for r in rows)
    print(
        f"bridge: {intercept:.1f} % + {slope:.2f} % per receiver; one core (100 %) holds about "
        f"{(100 - intercept) / slope:.0f} receivers at 30 fps (estimated; every measured N "
        f"{'held' if held else 'did NOT hold'} 30 fps)",
        flush=True,
    )


def encode_media() -> tuple[Vp8Clip, tuple[bytes, ...]]:
    """The publisher's media, encoded once before the runs (so publishing costs next to
    nothing); says what it is and on what machine the run is."""
    started = time.monotonic()
    clip = encode_vp8_clip(640, 360, 30, 1_000_000, seconds=4)
    opus = encode_opus_loop()
    print(
        f"clip: VP8 640x360 30 fps, {clip.bitrate / 1e6:.2f} Mbit/s over {len(clip.frames)} "
        f"frames, encoded in {time.monotonic() - started:.1f} s; machine: {cpu_model()}, "
        f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f}",
        flush=True,
    )
    return clip, opus


async def bench(args: argparse.Namespace) -> None:
    clip, opus = encode_media()
    results = []
    rounds = [run_round] if args.against is None else [run_round, run_janus_round]
    for count in args.receivers:
        for repeat in range(args.repeat):
            # Interleaved, each side first in turn, so a drift in the machine's load
            # falls on both.
            for play in rounds if repeat % 2 == 0 else rounds[::-1]:
                results.append(await play(count, clip, opus, args))
                print_table(results[-1:]) if args.progress else None
    print_table(results)
    if args.timeline:
        print_phases(results)
    if args.against is not None:
        print_comparison(results)
    print_capacity(results)
    print(f"load average after the run: {os.getloadavg()[0]:.2f}", flush=True)


def run_bounded(run: Coroutine[Any, Any, None], timeout: float) -> None:
    """Run a benchmark, or say that it did not finish within ``timeout`` seconds."""
    try:
        asyncio.run(asyncio.wait_for(run, timeout=timeout))
    except TimeoutError:
        sys.exit(f"the benchmark did not finish within {timeout:.0f} s")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("mode", nargs="?", default="bench", choices=["bench", "serve"])
    parser.add_argument("--port", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--receivers", type=int, nargs="+", default=[1, 2, 4, 8, 16, 32])
    parser.add_argument("--seconds", type=float, default=5.0, help="measuring window per N")
    parser.add_argument("--join-timeout", type=float, default=10.0)
    parser.add_argument("--timeout", type=float, default=600.0, help="bound on the whole run")
    parser.add_argument("--progress", action="store_true", help="print each row as it comes")
    parser.add_argument("--verbose", action="store_true", help="print the router's counters")
    parser.add_argument(
        "--ice-server",
        action="append",
        default=[],
        help="STUN/TURN URL for the SFU (default: none); a dead one, stun:127.0.0.1:9, "
        "shows the gathering stall",
    )
    parser.add_argument(
        "--forwarding",
        choices=["packets", "frames"],
        default=None,
        help="the bridge's forwarding path (default: MediaSettings' default)",
    )
    parser.add_argument("--against", choices=["janus"], default=None, help="compare with")
    parser.add_argument("--repeat", type=int, default=1, help="rounds per N and side")
    parser.add_argument(
        "--timeline",
        action="store_true",
        help="also print when each step of joining was reached (median / max ms)",
    )
    parser.add_argument(
        "--loss",
        type=float,
        default=0.0,
        help="percent of RTP datagrams each receiver loses at random while measuring",
    )
    parser.add_argument(
        "--gathering-timeout",
        type=float,
        default=MediaSettings.ice_gathering_timeout,
        help="the SFU's ice_gathering_timeout; 5 is aioice's own wait",
    )
    args = parser.parse_args()
    if args.mode == "serve":
        asyncio.run(serve(args.port, args.ice_server, args.gathering_timeout, args.forwarding))
        return
    run_bounded(bench(args), args.timeout)


if __name__ == "__main__":
    main()
