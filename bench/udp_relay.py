"""The floor under any Python SFU on this machine: an asyncio UDP relay that does nothing.

    .venv/bin/python bench/udp_relay.py [--receivers 1 8 32] [--seconds 15]

A child process runs an asyncio datagram endpoint on 127.0.0.1 that sends every datagram
it gets on to N sockets, as is: no SRTP, no RTP parsing, no state. This process sends it
1100-byte datagrams at 160 a second (what the publisher of ``bench/sfu.py`` sends: VP8
at about 1 Mbit/s plus Opus) and reads the N sinks on threads. Printed: the relay's CPU
(``/proc``) as a share of a core and per incoming datagram. ``bench/sfu.py`` measures the
bridge and Janus against the same load; the difference to this floor is what their own
work per packet costs (docs/benchmarks.md).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

RATE = 160  # datagrams a second
SIZE = 1100
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def relay(port: int, sinks: list[int]) -> None:
    """The child: relay each datagram from ``port`` to every sink port."""
    outputs = []
    for sink in sinks:
        out = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        out.bind(("127.0.0.1", 0))
        out.setblocking(False)
        outputs.append((out.sendto, ("127.0.0.1", sink)))

    class Relay(asyncio.DatagramProtocol):
        def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
            for sendto, address in outputs:
                try:
                    sendto(data, address)
                except OSError:
                    pass  # a full buffer: lost, as an SFU would lose it

    async def main() -> None:
        loop = asyncio.get_running_loop()
        await loop.create_datagram_endpoint(Relay, local_addr=("127.0.0.1", port))
        print("ready", flush=True)
        await loop.run_in_executor(None, sys.stdin.read)  # until the parent closes it

    asyncio.run(main())


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def measure(count: int, seconds: float) -> tuple[float, float]:
    """(relay CPU in % of a core, µs per incoming datagram) with ``count`` sinks."""
    sinks = []
    for _ in range(count):
        sink = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sink.bind(("127.0.0.1", 0))
        sink.settimeout(1)
        sinks.append(sink)

    def drain(sink: socket.socket) -> None:
        while True:
            try:
                sink.recv(2048)
            except TimeoutError:
                continue
            except OSError:
                return

    for sink in sinks:
        threading.Thread(target=drain, args=(sink,), daemon=True).start()
    probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    probe.bind(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()
    child = subprocess.Popen(
        [sys.executable, __file__, "relay", str(port), *(str(s.getsockname()[1]) for s in sinks)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
    )
    try:
        assert child.stdout is not None
        if child.stdout.readline().strip() != b"ready":
            raise RuntimeError("the relay did not start")
        sender = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        payload = os.urandom(SIZE)

        def send_for(duration: float) -> int:
            sent = 0
            start = time.monotonic()
            while (now := time.monotonic()) - start < duration:
                sender.sendto(payload, ("127.0.0.1", port))
                sent += 1
                time.sleep(max(0.0, start + sent / RATE - now))
            return sent

        send_for(2)  # settle
        before = cpu_seconds(child.pid)
        started = time.monotonic()
        sent = send_for(seconds)
        used = cpu_seconds(child.pid) - before
        return used / (time.monotonic() - started) * 100, used / sent * 1e6
    finally:
        child.kill()
        child.wait()
        for sink in sinks:
            sink.close()


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "relay":
        relay(int(sys.argv[2]), [int(p) for p in sys.argv[3:]])
        return
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--receivers", type=int, nargs="+", default=[1, 8, 32])
    parser.add_argument("--seconds", type=float, default=15.0)
    args = parser.parse_args()
    print(f"load average {os.getloadavg()[0]:.2f}; {RATE} datagrams/s of {SIZE} bytes in")
    print("| receivers | relay CPU (% of a core) | µs per incoming datagram |")
    print("| ---: | ---: | ---: |")
    for count in args.receivers:
        cpu, per = measure(count, args.seconds)
        print(f"| {count} | {cpu:.1f} | {per:.0f} |", flush=True)


if __name__ == "__main__":
    main()
