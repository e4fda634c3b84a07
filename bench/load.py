"""Load benchmark: N participants (default 100) join one meeting within a join window.

    .venv/bin/python bench/load.py --participants 100 --publishers 1
    .venv/bin/python bench/load.py --participants 100 --publishers 10

A fresh SFU process starts, bench/sfu.py's serve() (a Router behind a tiny aiohttp
WebSocket signaling server on 127.0.0.1) plus a 10 ms timer that logs how late it fires,
so its CPU time and memory are its own.
The participants are real aiortc peers spread over several client processes, so that the
clients' work (SRTP, jitter buffers) is not all on one core: the publishers in one
process of their own (so that their 30 fps pacing does not suffer from the receivers'
load), the receivers shared round robin among --client-processes more.

Joins are spread uniformly over --join-window: participant i starts joining at
i * window / N seconds, the publishers first (slots 0 to P-1), then the receivers. Each
publisher sends a VP8 clip encoded once and looped (640x360 at 1 Mbit/s with one
publisher; 320x180 at 250 kbit/s, the size of a grid tile, with more) plus Opus, and
also receives the other publishers. Receivers count frames where they leave aiortc's
jitter buffer, without decoding, per publisher (the SDP's a=msid says whose each m-line
is).

Join to first frame runs from the moment a participant opens its WebSocket to its first
video frame from any publisher ("first") and from every publisher ("all", when there are
several). A participant "got in" when, by the end of the run, it had video from every
publisher (a publisher alone in the meeting: when its publish connection was up).

After the join window and --settle seconds, the receivers' frame rates are measured per
subscription over --seconds (the steady window). The SFU's CPU (utime + stime from
/proc/<pid>/stat, in % of one core) and RSS (VmRSS, peak VmHWM) are taken over the join
window and over the steady window, as are the client processes' CPU and the whole
machine's busy time (/proc/stat), to tell whether the SFU or the clients ran out first.
Also printed: how long each main thread waited for a CPU (/proc/<pid>/schedstat), UDP
datagrams dropped for a full receive buffer by the SFU's and by the clients' sockets
(/proc/net/udp), how late the SFU's timer fired, what the SFU took in (bench/sfu.py's
/stats), and how much delay the video gained over the steady window (arrival time minus
RTP time, per subscription). Everything stays on 127.0.0.1 with no STUN/TURN server. The
run is bounded by --timeout.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import json
import os
import pickle
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# bench/sfu.py provides the SFU process and the /proc readers; the repository root gives
# bridge and the synthetic media sources of tests/harness.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import aiohttp
import av
from aiortc import RTCPeerConnection, RTCSessionDescription

# sfu.py is the SFU benchmark, imported as a library: its serving mode and helpers.
from sfu import (
    LOOPBACK,
    cpu_model,
    process_cpu_seconds,
    process_rss_mib,
    serve,
    sfu_stats,
    spawn_sfu,
    stop_sfu,
)

from bridge.media import MediaSettings, aiortc_hooks
from bridge.media.frames import EncodedFrame
from bridge.media.passthrough import tap_encoded_frames
from bridge.media.peer import close_peer_connection, new_peer_connection, set_local_description
from tests.harness.synthetic import (
    VIDEO_CLOCK,
    LoopedOpusTrack,
    LoopedVideoTrack,
    Vp8Clip,
    encode_opus_loop,
    encode_vp8_clip,
)

# bench/sfu.py's /stats counts the video frames the SFU received from this participant.
FIRST_PUBLISHER = "publisher"


# The client processes


class CountingVideoTrack(LoopedVideoTrack):
    """The looped clip, counting the frames handed to the sender."""

    def __init__(self, clip: Vp8Clip) -> None:
        super().__init__(clip)
        self.sent = 0

    async def recv(self) -> av.Packet:
        packet = await super().recv()
        self.sent += 1
        return packet


def msids_by_mid(sdp: str) -> dict[str, tuple[str, str]]:
    """``{mid: (publisher id, kind)}`` from a server offer's ``a=mid`` and ``a=msid``."""
    found = {}
    for section in sdp.split("\r\nm=")[1:]:
        kind = section.split(" ", 1)[0]
        mid = msid = None
        for line in section.split("\r\n"):
            if line.startswith("a=mid:"):
                mid = line[6:]
            elif line.startswith("a=msid:"):
                msid = line[7:].split(" ", 1)[0]
        if mid is not None and msid is not None:
            found[mid] = (msid, kind)
    return found


@dataclass
class Member:
    """One participant played by a client process: it receives, and may publish."""

    participant_id: str
    publishes: bool
    join_at: float  # seconds after the start of the join window
    started: float | None = None
    published: float | None = None
    error: str | None = None
    first_video: dict[str, float] = field(default_factory=dict)
    video: dict[str, int] = field(default_factory=dict)
    audio: dict[str, int] = field(default_factory=dict)
    #: Per publisher, arrival time minus media time of the last video frame: its growth
    #: over a window is the delay added (queues in the SFU or a client falling behind).
    delay: dict[str, float] = field(default_factory=dict)
    mids: dict[str, tuple[str, str]] = field(default_factory=dict)
    tapped: set[str] = field(default_factory=set)
    pc: RTCPeerConnection | None = None
    publish_pc: RTCPeerConnection | None = None
    camera: CountingVideoTrack | None = None
    ws: aiohttp.ClientWebSocketResponse | None = None
    task: asyncio.Task[None] | None = None

    def on_frame(self, mid: str, frame: EncodedFrame) -> None:
        publisher, kind = self.mids.get(mid, ("?", "?"))
        if kind == "video":
            if publisher not in self.first_video:
                self.first_video[publisher] = time.monotonic()
            self.video[publisher] = self.video.get(publisher, 0) + 1
            self.delay[publisher] = time.monotonic() - frame.timestamp / VIDEO_CLOCK
        else:
            self.audio[publisher] = self.audio.get(publisher, 0) + 1

    async def run(
        self,
        session: aiohttp.ClientSession,
        base: str,
        t0: float,
        media: tuple[Vp8Clip, tuple[bytes, ...]],
    ) -> None:
        await asyncio.sleep(max(0.0, t0 + self.join_at - time.monotonic()))
        self.started = time.monotonic()
        try:
            self.ws = await session.ws_connect(
                f"{base}/ws/{self.participant_id}", max_msg_size=1 << 20
            )
            if self.publishes:
                await self.publish(*media)
            async for message in self.ws:
                data = json.loads(message.data)
                if data["type"] == "offer":
                    await self.answer(data["sdp"])
                elif data["type"] == "publish-answer":
                    assert self.publish_pc is not None
                    answer = RTCSessionDescription(data["sdp"], "answer")
                    await self.publish_pc.setRemoteDescription(answer)
                    self.published = time.monotonic()
        except Exception as error:  # reported, not raised: the others go on
            self.error = repr(error)

    async def publish(self, clip: Vp8Clip, opus: tuple[bytes, ...]) -> None:
        assert self.ws is not None
        self.publish_pc = pc = new_peer_connection([])
        self.camera = CountingVideoTrack(clip)
        pc.addTransceiver(LoopedOpusTrack(opus), direction="sendonly")
        video = pc.addTransceiver(self.camera, direction="sendonly")
        aiortc_hooks.on_keyframe_request(video.sender, self.camera.request_keyframe)
        await set_local_description(pc, await pc.createOffer(), LOOPBACK)
        sources = {"0": "microphone", "1": "camera"}
        await self.ws.send_json(
            {"type": "publish", "sdp": pc.localDescription.sdp, "sources": sources}
        )

    async def answer(self, offer: str) -> None:
        assert self.ws is not None
        if self.pc is None:
            self.pc = new_peer_connection([])
        self.mids.update(msids_by_mid(offer))
        await self.pc.setRemoteDescription(RTCSessionDescription(offer, "offer"))
        for transceiver in self.pc.getTransceivers():
            mid = transceiver.mid
            if mid is not None and mid not in self.tapped:
                self.tapped.add(mid)
                tap_encoded_frames(transceiver.receiver, functools.partial(self.on_frame, mid))
        await set_local_description(self.pc, await self.pc.createAnswer(), LOOPBACK)
        await self.ws.send_json({"type": "answer", "sdp": self.pc.localDescription.sdp})

    def snapshot(self) -> dict[str, Any]:
        return {
            "video": dict(self.video),
            "audio": dict(self.audio),
            "delay": dict(self.delay),
            "sent": self.camera.sent if self.camera is not None else 0,
        }

    def report(self, t0: float) -> dict[str, Any]:
        def since(moment: float | None) -> float | None:
            return None if moment is None else moment - t0

        return {
            "id": self.participant_id,
            "publishes": self.publishes,
            "join_at": self.join_at,
            "started": since(self.started),
            "published": since(self.published),
            "publish_state": self.publish_pc.connectionState if self.publish_pc else None,
            "receive_state": self.pc.connectionState if self.pc else None,
            "first_video": {p: t - t0 for p, t in self.first_video.items()},
            "error": self.error,
        }

    async def close(self) -> None:
        if self.ws is not None:
            await self.ws.close()
        if self.task is not None:
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self.task
        for pc in (self.pc, self.publish_pc):
            if pc is not None:
                await close_peer_connection(pc)


async def sleep_until(moment: float) -> None:
    await asyncio.sleep(max(0.0, moment - time.monotonic()))


async def client(plan: dict[str, Any], media: tuple[Vp8Clip, tuple[bytes, ...]]) -> None:
    """Play the participants of a plan; print one ``result`` line of JSON on stdout.

    The plan's times are seconds after t0, a time.monotonic() value (one clock for every
    process of the machine) that the parent writes on stdin once all clients are ready.
    """
    members = [Member(m["id"], m["publishes"], m["join_at"]) for m in plan["members"]]
    loop = asyncio.get_running_loop()
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:
        print("ready", flush=True)
        t0 = float(await loop.run_in_executor(None, sys.stdin.readline))
        for member in members:
            member.task = asyncio.ensure_future(member.run(session, plan["base"], t0, media))
        await sleep_until(t0 + plan["steady_start"])
        steady_start = time.monotonic() - t0, [m.snapshot() for m in members]
        await sleep_until(t0 + plan["steady_end"])
        steady_end = time.monotonic() - t0, [m.snapshot() for m in members]
        result = {
            "members": [m.report(t0) for m in members],
            "steady": [steady_start, steady_end],
        }
        print("result " + json.dumps(result), flush=True)
        # Stay until the parent has read the SFU's figures (or is gone).
        await loop.run_in_executor(None, sys.stdin.readline)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(
                asyncio.gather(*(m.close() for m in members), return_exceptions=True),
                timeout=plan["close_timeout"],
            )


# The SFU process: bench/sfu.py's, plus a watch on its event loop


class LagWatch:
    """Writes how late a 10 ms timer fires: a sign of long event-loop turns (asyncio
    reads at most one datagram from each UDP socket per turn)."""

    def __init__(self, path: str, period: float = 0.01) -> None:
        # Line-buffered: the parent reads the file while this process runs.
        self._out = open(path, "a", buffering=1)  # kept open for the life of the process
        self._loop = asyncio.get_running_loop()
        self._period = period
        self._due = self._loop.time() + period
        self._loop.call_at(self._due, self._tick)

    def _tick(self) -> None:
        now = self._loop.time()  # time.monotonic(), as in the other processes
        self._out.write(f"{now:.4f} {now - self._due:.4f}\n")
        self._due = now + self._period
        self._loop.call_at(self._due, self._tick)


async def serve_watched(port: int, lag_file: str) -> None:
    LagWatch(lag_file)
    await serve(port, [], MediaSettings.ice_gathering_timeout)


async def start_watched_sfu(lag_file: Path) -> tuple[asyncio.subprocess.Process, str]:
    """Like bench/sfu.py's start_sfu(), with this file's serve mode (no STUN/TURN)."""
    return await spawn_sfu(__file__, ["--lag-file", str(lag_file)])


def loop_lags(lag_file: Path, start: float, end: float) -> list[float]:
    """The SFU's timer lags (seconds) between two time.monotonic() values."""
    lags = []
    for line in lag_file.read_text().splitlines():
        at, lag = map(float, line.split())
        if start <= at <= end:
            lags.append(lag)
    return lags


# Measuring


def hwm_mib(pid: int) -> float:
    """Peak RSS (VmHWM) of a process, in MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


def machine_ticks() -> tuple[int, int, int]:
    """(busy, steal, total) clock ticks of all CPUs since boot, from /proc/stat."""
    fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + fields[4]  # idle + iowait
    steal = fields[7] if len(fields) > 7 else 0
    total = sum(fields[:8])
    return total - idle - steal, steal, total


def run_queue_seconds(pid: int) -> float:
    """Time the main thread (the event loop) of a process waited for a CPU, in seconds."""
    return int(Path(f"/proc/{pid}/schedstat").read_text().split()[1]) / 1e9


def udp_counters() -> dict[str, int]:
    """The machine's UDP counters (/proc/net/snmp): datagrams in, and those dropped."""
    lines = Path("/proc/net/snmp").read_text().splitlines()
    names, values = (line.split()[1:] for line in lines if line.startswith("Udp: "))
    return dict(zip(names, map(int, values), strict=True))


def udp_drops(pids: list[int]) -> list[int]:
    """Datagrams dropped so far by the UDP sockets each process holds (/proc/net/udp)."""
    drops = {}
    for line in Path("/proc/net/udp").read_text().splitlines()[1:]:
        fields = line.split()
        drops[fields[9]] = int(fields[-1])  # inode: drops
    found = []
    for pid in pids:
        total = 0
        for fd in Path(f"/proc/{pid}/fd").iterdir():
            with contextlib.suppress(OSError):
                target = os.readlink(fd)
                if target.startswith("socket:["):
                    total += drops.get(target[8:-1], 0)
        found.append(total)
    return found


@dataclass
class Snapshot:
    """CPU seconds of the SFU and of each client process, and machine ticks, at a moment."""

    at: float
    sfu: float
    sfu_wait: float
    clients: list[float]
    client_waits: list[float]
    machine: tuple[int, int, int]
    udp: dict[str, int]
    #: The SFU's UDP drops, then each client's.
    drops: list[int]

    @classmethod
    def take(cls, sfu_pid: int, client_pids: list[int]) -> Snapshot:
        return cls(
            time.monotonic(),
            process_cpu_seconds(sfu_pid),
            run_queue_seconds(sfu_pid),
            [process_cpu_seconds(pid) for pid in client_pids],
            [run_queue_seconds(pid) for pid in client_pids],
            machine_ticks(),
            udp_counters(),
            udp_drops([sfu_pid, *client_pids]),
        )


@dataclass
class Window:
    """Use between two snapshots: CPU in % of one core, machine in % of all its CPUs."""

    sfu: float
    #: % of the time the SFU's event loop was ready to run but waited for a CPU.
    sfu_wait: float
    clients: list[float]
    client_waits: list[float]
    machine_busy: float
    machine_steal: float
    udp_in: int
    #: Datagrams the kernel dropped because a socket's receive buffer was full.
    udp_dropped: int
    #: Of those, the SFU's sockets' drops, then each client's.
    drops: list[int]

    @property
    def others(self) -> float:
        """CPU of everything but the SFU and the clients (this process too), % of a core."""
        busy = self.machine_busy * (os.cpu_count() or 1) - self.sfu - sum(self.clients)
        return max(0.0, busy)  # clock ticks are coarse: a few % either way

    @classmethod
    def between(cls, a: Snapshot, b: Snapshot) -> Window:
        elapsed = b.at - a.at
        ticks = b.machine[2] - a.machine[2] or 1
        return cls(
            (b.sfu - a.sfu) / elapsed * 100,
            (b.sfu_wait - a.sfu_wait) / elapsed * 100,
            [(y - x) / elapsed * 100 for x, y in zip(a.clients, b.clients, strict=True)],
            [(y - x) / elapsed * 100 for x, y in zip(a.client_waits, b.client_waits, strict=True)],
            (b.machine[0] - a.machine[0]) / ticks * 100,
            (b.machine[1] - a.machine[1]) / ticks * 100,
            b.udp["InDatagrams"] - a.udp["InDatagrams"],
            b.udp["RcvbufErrors"] - a.udp["RcvbufErrors"],
            [y - x for x, y in zip(a.drops, b.drops, strict=True)],
        )


def percentile(values: list[float], q: float) -> float:
    """The q-th percentile (nearest rank) of values, NaN if there are none."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    rank = max(1, min(len(ordered), round(q / 100 * len(ordered) + 0.4999)))
    return ordered[rank - 1]


def millis(seconds: float) -> str:
    return "n/a" if seconds != seconds else str(round(seconds * 1000))


def ms(values: list[float]) -> str:
    """p50 / p95 / max of seconds, in milliseconds."""
    if not values:
        return "n/a"
    return " / ".join(
        millis(v) for v in (percentile(values, 50), percentile(values, 95), max(values))
    )


# The benchmark


def pin(pid: int) -> list[int]:
    """Keep every thread of process ``pid`` on our last CPU; returns the other CPUs."""
    cpus = sorted(os.sched_getaffinity(0))
    for task in Path(f"/proc/{pid}/task").iterdir():
        os.sched_setaffinity(int(task.name), {cpus[-1]})
    return cpus[:-1]


@dataclass
class ClientProcess:
    process: asyncio.subprocess.Process
    result: dict[str, Any] | None = None


async def start_client(
    plan: dict[str, Any], directory: Path, index: int, nice: int
) -> ClientProcess:
    path = directory / f"plan{index}.json"
    path.write_text(json.dumps(plan))
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        __file__,
        "client",
        "--plan",
        str(path),
        "--client-nice",
        str(nice),
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        limit=1 << 24,
    )
    return ClientProcess(process)


async def read_result(client: ClientProcess) -> None:
    stdout = client.process.stdout
    assert stdout is not None
    while line := await stdout.readline():
        if line.startswith(b"result "):
            client.result = json.loads(line[7:])
            return


async def stop_client(client: ClientProcess, patience: float) -> None:
    try:
        await asyncio.wait_for(client.process.wait(), timeout=patience)
    except TimeoutError:
        client.process.kill()
        await client.process.wait()


def default_clip(publishers: int) -> tuple[int, int, int]:
    """(width, height, bit rate): a speaker view with one publisher, grid tiles with more."""
    return (640, 360, 1_000_000) if publishers == 1 else (320, 180, 250_000)


async def bench(args: argparse.Namespace, loadavg: str) -> None:
    width, height, bitrate = default_clip(args.publishers)
    width, height = args.width or width, args.height or height
    bitrate = args.bitrate or bitrate
    encoding = time.monotonic()
    clip = encode_vp8_clip(width, height, args.fps, bitrate, seconds=4)
    opus = encode_opus_loop()
    print(
        f"participants: {args.participants} ({args.publishers} publishing), joining over "
        f"{args.join_window:g} s; clip: VP8 {width}x{height} {args.fps} fps, "
        f"{clip.bitrate / 1e6:.2f} Mbit/s, encoded in {time.monotonic() - encoding:.1f} s; "
        f"machine: {cpu_model()}, {os.cpu_count()} CPUs, load average {loadavg}",
        flush=True,
    )

    count, publishers = args.participants, args.publishers
    ids = [FIRST_PUBLISHER, *(f"publisher{i}" for i in range(1, publishers))]
    ids += [f"receiver{i}" for i in range(count - publishers)]
    slots = [
        {"id": pid, "publishes": i < publishers, "join_at": i * args.join_window / count}
        for i, pid in enumerate(ids)
    ]
    shares = [slots[:publishers]] + [
        slots[publishers + k :: args.client_processes] for k in range(args.client_processes)
    ]
    steady_start = args.join_window + args.settle
    steady_end = steady_start + args.seconds

    with tempfile.TemporaryDirectory(prefix="visio-load-") as tmp:
        directory = Path(tmp)
        (directory / "media.pickle").write_bytes(pickle.dumps((clip, opus)))
        lag_file = directory / "lag.txt"
        sfu, base = await start_watched_sfu(lag_file)
        client_cpus = None
        if args.pin_sfu:
            client_cpus = pin(sfu.pid)
        clients: list[ClientProcess] = []
        try:
            for index, share in enumerate(s for s in shares if s):
                plan = {
                    "base": base,
                    "media": str(directory / "media.pickle"),
                    "members": share,
                    "steady_start": steady_start,
                    "steady_end": steady_end,
                    "close_timeout": args.close_timeout,
                    "cpus": client_cpus,
                }
                clients.append(await start_client(plan, directory, index, args.client_nice))
            for c in clients:
                assert c.process.stdout is not None
                line = await asyncio.wait_for(c.process.stdout.readline(), timeout=60)
                if line.strip() != b"ready":
                    raise RuntimeError(f"a client process did not start: {line!r}")
            await asyncio.sleep(1)  # let the SFU and the clients go idle
            idle_rss = process_rss_mib(sfu.pid)
            pids = [c.process.pid for c in clients]
            readers = [asyncio.ensure_future(read_result(c)) for c in clients]

            t0 = time.monotonic() + 0.2
            for c in clients:
                assert c.process.stdin is not None
                c.process.stdin.write(f"{t0!r}\n".encode())
                await c.process.stdin.drain()

            async def sample_until(moment: float) -> float:
                peak = 0.0
                while (left := moment - time.monotonic()) > 0:
                    peak = max(peak, process_rss_mib(sfu.pid))
                    await asyncio.sleep(min(0.5, left))
                return max(peak, process_rss_mib(sfu.pid))

            await sleep_until(t0)
            at_start = Snapshot.take(sfu.pid, pids)
            rss_join = await sample_until(t0 + args.join_window)
            at_joined = Snapshot.take(sfu.pid, pids)
            hwm_join = hwm_mib(sfu.pid)
            await sleep_until(t0 + steady_start)
            at_steady = Snapshot.take(sfu.pid, pids)
            stats_before = await sfu_stats_safe(base)
            rss_steady = await sample_until(t0 + steady_end)
            at_end = Snapshot.take(sfu.pid, pids)
            stats_after = await sfu_stats_safe(base)
            hwm_end = hwm_mib(sfu.pid)
            lags = (
                loop_lags(lag_file, at_start.at, at_joined.at),
                loop_lags(lag_file, at_steady.at, at_end.at),
            )

            await asyncio.wait(readers, timeout=args.close_timeout)
            for reader in readers:
                reader.cancel()
            for c in clients:  # now they may leave
                assert c.process.stdin is not None
                c.process.stdin.write(b"close\n")
                await c.process.stdin.drain()
            for c in clients:
                await stop_client(c, args.close_timeout + 5)
        finally:
            for c in clients:
                if c.process.returncode is None:
                    c.process.kill()
                    await c.process.wait()
            await stop_sfu(sfu)

    report(
        args,
        clients,
        Window.between(at_start, at_joined),
        Window.between(at_steady, at_end),
        {
            "idle": idle_rss,
            "join": rss_join,
            "join_hwm": hwm_join,
            "steady": rss_steady,
            "hwm": hwm_end,
        },
        (stats_before, stats_after, at_end.at - at_steady.at),
        (width, height, clip.bitrate),
        lags,
    )


async def sfu_stats_safe(base: str) -> dict[str, Any]:
    try:
        async with aiohttp.ClientSession() as session:
            return await asyncio.wait_for(sfu_stats(session, base), timeout=5)
    except Exception:
        return {}


def report(
    args: argparse.Namespace,
    clients: list[ClientProcess],
    join: Window,
    steady: Window,
    rss: dict[str, float],
    stats: tuple[dict[str, Any], dict[str, Any], float],
    clip: tuple[int, int, float],
    loop_lag: tuple[list[float], list[float]],
) -> None:
    members: list[dict[str, Any]] = []
    video_rates: list[float] = []
    audio_rates: list[float] = []
    sent_rates: list[float] = []
    delay_growth: list[float] = []
    missing = [i for i, c in enumerate(clients) if c.result is None]
    for c in clients:
        if c.result is None:
            continue
        (t_start, start), (t_end, end) = c.result["steady"]
        elapsed = t_end - t_start
        for member, a, b in zip(c.result["members"], start, end, strict=True):
            members.append(member)
            others = [p for p in publisher_ids(args) if p != member["id"]]
            for p in others:
                video_rates.append((b["video"].get(p, 0) - a["video"].get(p, 0)) / elapsed)
                audio_rates.append((b["audio"].get(p, 0) - a["audio"].get(p, 0)) / elapsed)
                if p in a["delay"] and p in b["delay"]:
                    delay_growth.append(b["delay"][p] - a["delay"][p])
            if member["publishes"]:
                sent_rates.append((b["sent"] - a["sent"]) / elapsed)

    publisher_times = {m["id"]: m["started"] for m in members if m["publishes"]}
    got_in = publishers_in = 0
    seen: list[int] = []  # receivers: how many publishers they had video from
    first: list[float] = []  # receivers: join to first video from any publisher
    every: list[float] = []  # receivers: join to video from every publisher
    publishers_all: list[float] = []  # publishers: to video from every other publisher
    errors = [f"{m['id']}: {m['error']}" for m in members if m["error"]]
    for m in members:
        others = [p for p in publisher_ids(args) if p != m["id"]]
        firsts = m["first_video"]
        if others:
            inside = all(p in firsts for p in others)
        else:
            inside = m["publish_state"] == "connected"
        got_in += inside
        publishers_in += inside and m["publishes"]
        if not m["publishes"]:
            seen.append(sum(p in firsts for p in others))
        if m["started"] is None:
            continue
        if not m["publishes"]:
            if firsts:
                first.append(min(firsts.values()) - m["started"])
            if inside:
                every.append(max(firsts.values()) - m["started"])
        elif inside and others:
            # From the moment both this publisher and the other one had started joining.
            publishers_all.append(
                max(firsts[p] - max(m["started"], publisher_times[p] or 0) for p in others)
            )
    lags = [m["started"] - m["join_at"] for m in members if m["started"] is not None]

    before, after, elapsed = stats
    input_fps = (
        (after["video_in"] - before["video_in"]) / elapsed if before and after else float("nan")
    )
    forwarded = (
        (after["frames_forwarded"] - before["frames_forwarded"]) / elapsed
        if before and after
        else float("nan")
    )
    dropped = (
        after["frames_dropped"] - before["frames_dropped"] if before and after else float("nan")
    )
    received = (
        (after["frames_received"] - before["frames_received"]) / elapsed
        if before and after
        else float("nan")
    )
    audio_in = received - input_fps  # exact with one publisher
    # Each publisher's camera and microphone: fps + 50 Opus frames a second.
    expected_in = args.publishers * (args.fps + 50)
    cost = steady.sfu / 100 * 1e6 / forwarded if forwarded else float("nan")
    width, height, bitrate = clip

    print(
        "| participants (publishers) | got in | receivers' join to first frame p50 / p95 / "
        "max (ms) | to video of every publisher p50 / p95 / max (ms) | SFU CPU join / steady "
        "(% of a core) | SFU RSS idle / join / steady, peak (MiB) | video fps per "
        "subscription min / median (subscriptions) | client processes' CPU join / steady "
        "(% of a core, all) | machine busy join / steady (% of all CPUs) |"
    )
    print("| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    print(
        f"| {args.participants} ({args.publishers}) | {got_in} / {args.participants} "
        f"| {ms(first)} | {ms(every)} | {join.sfu:.0f} / {steady.sfu:.0f} "
        f"| {rss['idle']:.0f} / {rss['join']:.0f} / {rss['steady']:.0f}, {rss['hwm']:.0f} "
        f"| {min(video_rates, default=float('nan')):.1f} / "
        f"{median(video_rates):.1f} ({len(video_rates)}) "
        f"| {sum(join.clients):.0f} / {sum(steady.clients):.0f} "
        f"| {join.machine_busy:.0f} / {steady.machine_busy:.0f} |",
        flush=True,
    )
    print(
        f"clip: VP8 {width}x{height} {args.fps} fps {bitrate / 1e6:.2f} Mbit/s; "
        f"publishers sent {min(sent_rates, default=0):.1f} to "
        f"{max(sent_rates, default=0):.1f} fps video each; SFU took in "
        + (
            f"{input_fps:.1f} fps video and {audio_in:.1f} fps audio"
            if args.publishers == 1
            else f"{input_fps:.1f} fps video from {FIRST_PUBLISHER}"
        )
        + f", {received:.0f} frames/s in all (sent: {expected_in}); "
        f"SFU forwarded {forwarded:.0f} frames/s (audio and video), "
        f"{cost:.0f} us of SFU CPU each, dropped {dropped} in the steady window; "
        f"audio fps per subscription min / median: "
        f"{min(audio_rates, default=float('nan')):.1f} / {median(audio_rates):.1f}"
    )
    print(
        f"SFU: {after.get('participants')} participants, {after.get('subscriptions')} "
        f"subscriptions, {after.get('keyframe_requests')} PLIs sent in all; peak RSS by the "
        f"end of the join window {rss['join_hwm']:.0f} MiB"
    )
    print(
        "client processes' CPU join / steady (% of a core; the first one plays the "
        "publishers): "
        + ", ".join(
            f"{a:.0f} / {b:.0f}" for a, b in zip(join.clients, steady.clients, strict=True)
        )
        + f"; everything else on the machine join / steady: {join.others:.0f} / "
        f"{steady.others:.0f} % of a core; steal: {join.machine_steal:.0f} / "
        f"{steady.machine_steal:.0f} % of all CPUs"
    )
    print(
        "main thread waiting for a CPU join / steady (% of the time): SFU "
        f"{join.sfu_wait:.0f} / {steady.sfu_wait:.0f}; client processes "
        + ", ".join(
            f"{a:.0f} / {b:.0f}"
            for a, b in zip(join.client_waits, steady.client_waits, strict=True)
        )
    )
    print(
        f"UDP datagrams received (whole machine) join / steady: {join.udp_in} / "
        f"{steady.udp_in}; dropped for a full receive buffer: {join.udp_dropped} / "
        f"{steady.udp_dropped}, of which the SFU's sockets {join.drops[0]} / "
        f"{steady.drops[0]}, the client processes' {sum(join.drops[1:])} / "
        f"{sum(steady.drops[1:])}"
    )
    print(
        f"SFU event loop: a 10 ms timer fired late by p50 / p95 / max (ms) join: "
        f"{ms(loop_lag[0])}, steady: {ms(loop_lag[1])}"
    )
    print(
        f"video delay added over the steady window, per subscription median / max: "
        f"{millis(median(delay_growth))} / "
        f"{millis(max(delay_growth, default=float('nan')))} ms "
        f"({len(delay_growth)} subscriptions with frames at both ends)"
    )
    if args.publishers > 1:
        print(
            f"publishers: to video of every other publisher p50 / p95 / max (ms): "
            f"{ms(publishers_all)}"
        )
    print(
        f"got in: {got_in - publishers_in} of {args.participants - args.publishers} "
        f"receivers, {publishers_in} of {args.publishers} publishers; receivers had video "
        f"from min / median {min(seen, default=0)} / {median(seen):g} of "
        f"{args.publishers} publishers by the end"
    )
    print(
        f"join start lag behind schedule (client processes busy) max: "
        f"{max(lags, default=0) * 1000:.0f} ms"
    )
    if missing:
        print(f"client processes without a result: {missing}")
    if errors:
        print(f"{len(errors)} errors, first: {errors[:3]}")


def median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else float("nan")


def publisher_ids(args: argparse.Namespace) -> list[str]:
    return [FIRST_PUBLISHER, *(f"publisher{i}" for i in range(1, args.publishers))]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("mode", nargs="?", default="bench", choices=["bench", "client", "serve"])
    parser.add_argument("--plan", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--lag-file", help=argparse.SUPPRESS)
    parser.add_argument("--participants", type=int, default=100)
    parser.add_argument("--publishers", type=int, default=1)
    parser.add_argument("--join-window", type=float, default=10.0, help="seconds")
    parser.add_argument(
        "--settle", type=float, default=3.0, help="seconds between the join and steady windows"
    )
    parser.add_argument("--seconds", type=float, default=5.0, help="the steady window")
    parser.add_argument(
        "--client-processes", type=int, default=4, help="for the receivers (publishers: +1)"
    )
    parser.add_argument(
        "--client-nice",
        type=int,
        default=0,
        help="niceness of the client processes; 10 lets the SFU have the CPUs first",
    )
    parser.add_argument(
        "--pin-sfu",
        action="store_true",
        help="keep the SFU on the last CPU and the clients on the others (other programs "
        "on the machine may still use it)",
    )
    parser.add_argument("--width", type=int, help="default 640 (one publisher), else 320")
    parser.add_argument("--height", type=int, help="default 360 (one publisher), else 180")
    parser.add_argument(
        "--bitrate", type=int, help="bit/s; default 1000000 (one publisher), else 250000"
    )
    parser.add_argument("--fps", type=int, default=30)
    parser.add_argument(
        "--close-timeout", type=float, default=30.0, help="bound on the clients' goodbyes"
    )
    parser.add_argument("--timeout", type=float, default=240.0, help="bound on the whole run")
    args = parser.parse_args()
    if args.mode == "serve":
        asyncio.run(serve_watched(args.port, args.lag_file))
        return
    if args.mode == "client":
        os.nice(args.client_nice)
        plan = json.loads(Path(args.plan).read_text())
        if plan["cpus"]:
            os.sched_setaffinity(0, plan["cpus"])
        media = pickle.loads(Path(plan["media"]).read_bytes())
        asyncio.run(client(plan, media))
        return
    if not 1 <= args.publishers < args.participants or args.client_processes < 1:
        parser.error("need 1 <= publishers < participants and at least one client process")
    try:
        loadavg = " ".join(Path("/proc/loadavg").read_text().split()[:3])
        asyncio.run(asyncio.wait_for(bench(args, loadavg), timeout=args.timeout))
    except TimeoutError:
        sys.exit(f"the benchmark did not finish within {args.timeout:.0f} s")


if __name__ == "__main__":
    main()
