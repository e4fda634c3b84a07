"""Trunk benchmark: a host bridge with one publisher, a satellite with N receivers.

    .venv/bin/python bench/trunk.py [--receivers 1 8 32] [--seconds 5] [--repeat 2]

For each N, two fresh SFU processes start, each a Router behind a tiny aiohttp server on
127.0.0.1 (WebSocket signaling as in bench/sfu.py, plus control endpoints for the trunk):
the HOST, where the publisher (the VP8 640x360 30 fps clip of about 1 Mbit/s, looped, plus
Opus) publishes, and the SATELLITE, where N receivers join at the same moment and count
frames without decoding. This process links them with one trunk as two bridges would
over Matrix: the satellite offers, the host answers, the satellite applies the answer and
registers the host's publisher as a participant behind the trunk (add_remote), so that
the publisher's tracks reach the N receivers. All traffic stays on loopback; no STUN/TURN
server is used.

The trunk carries each track once, whoever receives it on the other side: the host
should hold one subscription per track (the trunk's) and forward about 80 frames/s
(30 video + 50 audio) whatever N, so its CPU should not grow with N; the satellite does
the fan-out.

Printed per run and N: host and satellite CPU (% of one core) and RSS, the routers'
subscriptions and frames forwarded per second, the receivers' video frame rate (lowest
and median), time from join to first video frame (median and max), PLIs each router
sent, time from the offer until the satellite has the publisher's tracks, this client
process's CPU, and the machine's 1-minute load average when the round started (the
figures mean little on a busy machine). The whole run is bounded by --timeout.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import os
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import aiohttp
from aiohttp import web
from sfu import (  # bench/sfu.py: the same clients, process handling and measuring
    LOOPBACK,
    Publisher,
    Receiver,
    encode_media,
    own_cpu_seconds,
    participant_handler,
    process_cpu_seconds,
    process_rss_mib,
    run_bounded,
    sfu_stats,
    spawn_sfu,
    stop_sfu,
)

from bridge.media import MediaError, MediaSettings, Router
from bridge.media.trunk import Trunk
from bridge.meeting.media import TrunkLimits
from tests.harness.synthetic import Vp8Clip

PUBLISHER = "publisher"


# The SFU processes (the same program for both roles)


class TrunkEnd:
    """This process's end of the trunk: what the trunk tells it, for the stats."""

    def __init__(self) -> None:
        self.open = False
        self.closed: str | None = None
        self.trunk: Trunk | None = None

    def trunk_open(self) -> None:
        self.open = True

    def trunk_state(self, message: str) -> None:
        pass  # the bench sends no meeting state

    def trunk_closed(self, reason: str) -> None:
        self.closed = reason


async def serve(port: int, role: str, trunk_tracks: int) -> None:
    """Run one router (host or satellite) until stdin closes."""
    # Both ends sit on 127.0.0.1, so each must accept the other's loopback candidates.
    settings = MediaSettings(
        ice_servers=[], host_addresses=LOOPBACK, allow_private_candidates=True
    )
    router = Router(f"bench-{role}", settings, on_event=lambda event: None)
    limits = TrunkLimits(audio=trunk_tracks, video=trunk_tracks)
    end = TrunkEnd()

    participant = participant_handler(router)

    async def offer(request: web.Request) -> web.Response:  # the satellite
        end.trunk = router.add_trunk("to-host", end, limits)
        return web.json_response({"sdp": await end.trunk.offer()})

    async def answer(request: web.Request) -> web.Response:  # the host
        end.trunk = router.add_trunk("to-satellite", end, limits)
        body = await request.json()
        return web.json_response({"sdp": await end.trunk.answer(body["sdp"])})

    async def accept(request: web.Request) -> web.Response:  # the satellite
        assert end.trunk is not None
        body = await request.json()
        await end.trunk.accept_answer(body["sdp"])
        end.trunk.add_remote(body["remote"])
        return web.json_response({})

    async def stats(request: web.Request) -> web.Response:
        member = router.participant(PUBLISHER)
        tracks = member.tracks if member is not None else ()
        return web.json_response(
            {
                **dataclasses.asdict(router.stats()),
                "video_in": sum(t.frames for t in tracks if t.kind == "video"),
                "publisher_tracks": len(tracks),
                "trunk_open": end.open,
                "trunk_closed": end.closed,
            }
        )

    @web.middleware
    async def refusals(request: web.Request, handler: Any) -> web.StreamResponse:
        try:
            return await handler(request)
        except MediaError as error:
            return web.json_response({"error": str(error)}, status=400)

    app = web.Application(middlewares=[refusals])
    app.router.add_get("/ws/{id}", participant)
    app.router.add_post("/trunk/offer", offer)
    app.router.add_post("/trunk/answer", answer)
    app.router.add_post("/trunk/accept", accept)
    app.router.add_get("/stats", stats)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    print("ready", flush=True)
    # The parent closes our stdin to stop us (and so does its death).
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
    await router.close()
    await runner.cleanup()


# The bench


async def post(session: aiohttp.ClientSession, url: str, body: dict[str, str]) -> Any:
    async with session.post(url, json=body) as response:
        reply = await response.json()
        if response.status != 200:
            raise RuntimeError(f"{url}: {reply.get('error', response.status)}")
        return reply


async def link(session: aiohttp.ClientSession, host: str, satellite: str, within: float) -> float:
    """Negotiate the trunk through this process, as the bridges' bots would through the
    room; returns the seconds from the offer until both ends are open and the satellite
    has the publisher's two tracks."""
    started = time.monotonic()
    offer = await post(session, f"{satellite}/trunk/offer", {})
    answer = await post(session, f"{host}/trunk/answer", {"sdp": offer["sdp"]})
    await post(session, f"{satellite}/trunk/accept", {"sdp": answer["sdp"], "remote": PUBLISHER})
    deadline = started + within
    while time.monotonic() < deadline:
        on_host, on_satellite = await sfu_stats(session, host), await sfu_stats(session, satellite)
        if on_host["trunk_open"] and on_satellite["publisher_tracks"] == 2:
            return time.monotonic() - started
        if on_host["trunk_closed"] or on_satellite["trunk_closed"]:
            break
        await asyncio.sleep(0.02)  # the state is in other processes
    raise RuntimeError(f"the trunk did not carry the publisher's tracks within {within:.0f} s")


@dataclass
class Side:
    """One SFU process over the measuring window."""

    cpu: float
    rss: float
    subscriptions: int
    forwarded_per_s: float
    input_fps: float
    plis: int
    untrunked: int


@dataclass
class Result:
    run: int
    receivers: int
    host: Side
    satellite: Side
    fps_min: float
    fps_median: float
    join_median: float
    join_max: float
    missing: int
    trunk_up: float
    client_cpu: float
    load: float


def side(
    pid: int, cpu_seconds: float, before: dict[str, Any], after: dict[str, Any], elapsed: float
) -> Side:
    return Side(
        cpu=cpu_seconds / elapsed * 100,
        rss=process_rss_mib(pid),
        subscriptions=after["subscriptions"],
        forwarded_per_s=(after["frames_forwarded"] - before["frames_forwarded"]) / elapsed,
        input_fps=(after["video_in"] - before["video_in"]) / elapsed,
        plis=after["keyframe_requests"],
        untrunked=after["untrunked_tracks"],
    )


async def run_round(
    run: int, count: int, clip: Vp8Clip, opus: tuple[bytes, ...], args: argparse.Namespace
) -> Result:
    load = os.getloadavg()[0]
    extra = ["--trunk-tracks", str(args.trunk_tracks)]
    host_process, host = await spawn_sfu(__file__, ["--role", "host", *extra])
    satellite_process = None
    publisher = Publisher(clip, opus)
    receivers = [Receiver(f"receiver{i}") for i in range(count)]
    try:
        satellite_process, satellite = await spawn_sfu(__file__, ["--role", "satellite", *extra])
        async with aiohttp.ClientSession() as session:
            await publisher.publish(session, host)
            await asyncio.sleep(1)  # the publisher is connected and sending
            trunk_up = await link(session, host, satellite, args.join_timeout)
            await asyncio.sleep(1)  # the trunk carries media
            for receiver in receivers:  # all join the satellite at the same moment
                receiver.task = asyncio.ensure_future(receiver.run(session, satellite))
            waits = [asyncio.ensure_future(r.got_video.wait()) for r in receivers]
            if waits:
                await asyncio.wait(waits, timeout=args.join_timeout)
            for wait in waits:
                wait.cancel()
            await asyncio.sleep(1)  # settle

            pids = (host_process.pid, satellite_process.pid)
            frames_before = [r.video_frames for r in receivers]
            stats_before = [await sfu_stats(session, base) for base in (host, satellite)]
            cpu_before = [process_cpu_seconds(pid) for pid in pids]
            own_before = own_cpu_seconds()
            started = time.monotonic()
            await asyncio.sleep(args.seconds)
            elapsed = time.monotonic() - started
            cpu_after = [process_cpu_seconds(pid) for pid in pids]
            client_cpu = (own_cpu_seconds() - own_before) / elapsed * 100
            stats_after = [await sfu_stats(session, base) for base in (host, satellite)]
            rates = [
                (r.video_frames - b) / elapsed
                for r, b in zip(receivers, frames_before, strict=True)
            ]
            if args.verbose:
                print(f"N={count} host: {stats_after[0]}\nsatellite: {stats_after[1]}")
            # CPU is read before the stats are asked for, so as not to count serving them.
            cpu = [after - before for before, after in zip(cpu_before, cpu_after, strict=True)]
            host_side, satellite_side = (
                side(*values, elapsed)
                for values in zip(pids, cpu, stats_before, stats_after, strict=True)
            )
            joins = [r.first_video - r.joined for r in receivers if r.first_video is not None]
            nan = float("nan")
            result = Result(
                run=run,
                receivers=count,
                host=host_side,
                satellite=satellite_side,
                fps_min=min(rates, default=nan),
                fps_median=statistics.median(rates) if rates else nan,
                join_median=statistics.median(joins) if joins else nan,
                join_max=max(joins, default=nan),
                missing=count - len(joins),
                trunk_up=trunk_up,
                client_cpu=client_cpu,
                load=load,
            )
            for receiver in receivers:
                await receiver.close()
            await publisher.close()
    finally:
        # The host first: the satellite still applies what the host sent as the
        # publisher left, instead of dropping it as it closes.
        await stop_sfu(host_process)
        if satellite_process is not None:
            await stop_sfu(satellite_process)
    return result


def print_table(results: list[Result]) -> None:
    print(
        "| run | receivers | host CPU (% of a core) | host RSS (MiB) "
        "| host subscriptions | host frames forwarded/s "
        "| satellite CPU (% of a core) | satellite RSS (MiB) | satellite subscriptions "
        "| satellite input fps | satellite frames forwarded/s "
        "| receiver fps min / median | join to first frame median / max (ms) "
        "| PLIs host / satellite | trunk up (ms) | client process CPU (%) | load average |"
    )
    print("| ---: " * 17 + "|")
    for r in results:
        h, s = r.host, r.satellite
        missing = f" ({r.missing} got none)" if r.missing else ""
        untrunked = f" ({h.untrunked} not carried)" if h.untrunked else ""
        print(
            f"| {r.run} | {r.receivers} | {h.cpu:.0f} | {h.rss:.0f} "
            f"| {h.subscriptions}{untrunked} | {h.forwarded_per_s:.0f} "
            f"| {s.cpu:.0f} | {s.rss:.0f} | {s.subscriptions} | {s.input_fps:.1f} "
            f"| {s.forwarded_per_s:.0f} | {r.fps_min:.1f} / {r.fps_median:.1f} "
            f"| {r.join_median * 1000:.0f} / {r.join_max * 1000:.0f}{missing} "
            f"| {h.plis} / {s.plis} | {r.trunk_up * 1000:.0f} | {r.client_cpu:.0f} "
            f"| {r.load:.1f} |",
            flush=True,
        )


async def bench(args: argparse.Namespace) -> None:
    clip, opus = encode_media()
    results = []
    for run in range(1, args.repeat + 1):
        for count in args.receivers:
            results.append(await run_round(run, count, clip, opus, args))
            if args.progress:
                print_table(results[-1:])
    print_table(results)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("mode", nargs="?", default="bench", choices=["bench", "serve"])
    parser.add_argument("--port", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--role", choices=["host", "satellite"], help=argparse.SUPPRESS)
    parser.add_argument("--receivers", type=int, nargs="+", default=[1, 8, 32])
    parser.add_argument("--seconds", type=float, default=5.0, help="measuring window per N")
    parser.add_argument("--repeat", type=int, default=1, help="runs of the whole series")
    parser.add_argument(
        "--trunk-tracks",
        type=int,
        default=TrunkLimits().audio,
        help="audio and video slots of the trunk, each (federation.trunk_tracks)",
    )
    parser.add_argument("--join-timeout", type=float, default=10.0)
    parser.add_argument("--timeout", type=float, default=600.0, help="bound on the whole run")
    parser.add_argument("--progress", action="store_true", help="print each row as it comes")
    parser.add_argument("--verbose", action="store_true", help="print the routers' counters")
    args = parser.parse_args()
    if args.mode == "serve":
        asyncio.run(serve(args.port, args.role, args.trunk_tracks))
        return
    run_bounded(bench(args), args.timeout)


if __name__ == "__main__":
    main()
