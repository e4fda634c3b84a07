"""LiveKit-protocol benchmark: one publisher, N receivers, through the bridge's LiveKit door.

    .venv/bin/python bench/livekit_sfu.py [--receivers 1 4 8 16] [--seconds 5]

The same measurement as bench/sfu.py, but every client speaks LiveKit's protocol as
livekit-client does (tests/harness/livekit_client.py: protobuf over WebSocket, add_track,
trickled candidates, data channels, two connections), and the SFU process runs the whole
door: access-token checks, the meeting (Meetings, in-memory stores), participant updates
and the router. So its CPU per receiver, compared with bench/sfu.py's in the same run,
is what the LiveKit door costs over the bridge's own protocol.

Printed per N: SFU CPU (% of one core) and RSS, the receivers' video frame rate (lowest
and median), time from connect to first video frame (median and max), and this client
process's CPU. All traffic stays on loopback.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from aiohttp import web
from sfu import (  # bench/sfu.py: the same process handling and measuring
    encode_media,
    own_cpu_seconds,
    process_cpu_seconds,
    process_rss_mib,
    run_bounded,
    spawn_sfu,
    stop_sfu,
)

from bridge.clock import SystemClock
from bridge.livekit.naming import room_name
from bridge.livekit.rtc import LiveKitDoor
from bridge.livekit.tokens import AccessTokens
from bridge.media import MediaSettings
from bridge.media.frames import EncodedFrame
from bridge.media.sfu import SFU
from bridge.meeting.identity import Identity
from bridge.meeting.meeting import Meeting, Stay
from bridge.meeting.meetings import Meetings
from bridge.meeting.roles import Role
from bridge.web.signaling import OpenSockets, SocketLimits
from tests.harness.livekit_client import LiveKitClient
from tests.harness.synthetic import (
    LoopedOpusTrack,
    LoopedVideoTrack,
    Vp8Clip,
)

KEY = "bench key, at least thirty-two characters long"
ROOM = "!bench:localhost"


# The SFU process: the LiveKit door over a meeting, with nothing of Matrix behind it


class MemoryMeetings:
    def __init__(self) -> None:
        self.meetings: dict[str, Meeting] = {}

    async def insert(self, meeting: Meeting) -> None:
        self.meetings[meeting.id] = meeting

    async def save(self, meeting: Meeting) -> None:
        self.meetings[meeting.id] = meeting

    async def get(self, meeting_id: str) -> Meeting | None:
        return self.meetings.get(meeting_id)

    async def all_live(self) -> list[Meeting]:
        return [m for m in self.meetings.values() if m.is_live]


class MemoryAttendance:
    async def record_join(self, stay: Stay) -> None:
        pass

    async def record_leave(self, meeting_id: str, user_id: str, left_at: int) -> None:
        pass

    async def close_all(self, meeting_id: str, left_at: int) -> None:
        pass

    async def for_meeting(self, meeting_id: str) -> list[Stay]:
        return []


class EveryoneIsAMember:
    """Sign-in as the door asks it, without a homeserver: the token was checked."""

    async def readmit_to_room(self, user_id: str, room_id: str) -> Identity:
        return Identity(user_id, "localhost", user_id[1:].split(":")[0], None, Role.PARTICIPANT)


async def serve(port: int) -> None:
    clock = SystemClock()
    sfu = SFU(MediaSettings(host_addresses=("127.0.0.1",), allow_private_candidates=True))
    meetings = Meetings(MemoryMeetings(), MemoryAttendance(), sfu, clock)

    async def start_call(room_id: str, user_id: str) -> Meeting:
        meeting, _ = await meetings.start(room_id, "Bench", user_id)
        return meeting

    limits = SocketLimits(public_url=f"http://127.0.0.1:{port}")
    door = LiveKitDoor(
        meetings,
        EveryoneIsAMember(),  # type: ignore[arg-type]
        AccessTokens("visio-bridge", KEY),
        lambda user_id: [],
        OpenSockets(limits),
        start_call,
        clock,
    )

    async def stats(request: web.Request) -> web.Response:
        live = meetings.live_in_room(ROOM)
        media = meetings.media_of(live.id) if live is not None else None
        router = media.router if media is not None else None
        return web.json_response({"router": repr(router.stats()) if router else None})

    app = web.Application()
    door.routes(app)
    app.router.add_get("/stats", stats)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    print("ready", flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
    await runner.cleanup()


# The clients


@dataclass
class Counts:
    video: int = 0
    first_video: float | None = None
    joined: float = 0.0


def token(user: str) -> str:
    now = int(time.time())
    return AccessTokens("visio-bridge", KEY).mint(
        f"{user}:DEVICE", room_name(ROOM), now, user_id=f"@{user}:localhost", room_id=ROOM
    )


async def receiver(url: str, name: str) -> tuple[LiveKitClient, Counts]:
    counts = Counts(joined=time.monotonic())
    client = LiveKitClient(url, token(name))

    def on_frame(sid: str, frame: EncodedFrame) -> None:
        if sid.endswith("_camera"):
            if counts.first_video is None:
                counts.first_video = time.monotonic()
            counts.video += 1

    client.on_frame = on_frame
    await client.connect(within=30)
    return client, counts


@dataclass
class Result:
    receivers: int
    sfu_cpu: float
    sfu_rss: float
    fps_min: float
    fps_median: float
    join_median: float
    join_max: float
    missing: int
    client_cpu: float


async def run_round(
    count: int, clip: Vp8Clip, opus: tuple[bytes, ...], args: argparse.Namespace
) -> Result:
    process, base = await spawn_sfu(__file__, [])
    url = base.replace("http://", "ws://") + "/livekit"
    publisher = LiveKitClient(url, token("publisher"))
    clients: list[LiveKitClient] = []
    try:
        await publisher.connect()
        await publisher.publish(video=LoopedVideoTrack(clip), audio=LoopedOpusTrack(opus))
        await asyncio.sleep(1)
        joined = await asyncio.gather(*(receiver(url, f"r{i}") for i in range(count)))
        clients = [c for c, _ in joined]
        counts = [n for _, n in joined]
        deadline = time.monotonic() + args.join_timeout
        # Frames arrive without an event to wait on: look every 100 ms.
        while time.monotonic() < deadline and any(n.first_video is None for n in counts):  # noqa: ASYNC110
            await asyncio.sleep(0.1)
        await asyncio.sleep(1)  # settle
        before = [n.video for n in counts]
        sfu_before, own_before = process_cpu_seconds(process.pid), own_cpu_seconds()
        started = time.monotonic()
        await asyncio.sleep(args.seconds)
        elapsed = time.monotonic() - started
        sfu_cpu = (process_cpu_seconds(process.pid) - sfu_before) / elapsed * 100
        client_cpu = (own_cpu_seconds() - own_before) / elapsed * 100
        rates = [(n.video - b) / elapsed for n, b in zip(counts, before, strict=True)]
        joins = [n.first_video - n.joined for n in counts if n.first_video is not None]
        return Result(
            receivers=count,
            sfu_cpu=sfu_cpu,
            sfu_rss=process_rss_mib(process.pid),
            fps_min=min(rates),
            fps_median=statistics.median(rates),
            join_median=statistics.median(joins) if joins else float("nan"),
            join_max=max(joins) if joins else float("nan"),
            missing=count - len(joins),
            client_cpu=client_cpu,
        )
    finally:
        for client in [*clients, publisher]:
            await client.close()
        await stop_sfu(process)


def print_table(results: Sequence[Result]) -> None:
    print(
        "| receivers | SFU CPU (% of a core) | per receiver | SFU RSS (MiB) "
        "| receiver fps min / median | connect to first frame median / max (ms) "
        "| client process CPU (%) |"
    )
    print("| ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for r in results:
        missing = f" ({r.missing} got none)" if r.missing else ""
        print(
            f"| {r.receivers} | {r.sfu_cpu:.0f} | {r.sfu_cpu / r.receivers:.1f} "
            f"| {r.sfu_rss:.0f} | {r.fps_min:.1f} / {r.fps_median:.1f} "
            f"| {r.join_median * 1000:.0f} / {r.join_max * 1000:.0f}{missing} "
            f"| {r.client_cpu:.0f} |",
            flush=True,
        )


async def bench(args: argparse.Namespace) -> None:
    clip, opus = encode_media()
    results: list[Result] = []
    for count in args.receivers:
        results.append(await run_round(count, clip, opus, args))
    print_table(results)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("mode", nargs="?", default="bench", choices=["bench", "serve"])
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--receivers", type=int, nargs="+", default=[1, 4, 8, 16])
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--join-timeout", type=float, default=15.0)
    parser.add_argument("--timeout", type=float, default=600.0)
    args: Any = parser.parse_args()
    if args.mode == "serve":
        asyncio.run(serve(args.port))
        return
    run_bounded(bench(args), args.timeout)


if __name__ == "__main__":
    main()
