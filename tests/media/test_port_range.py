"""media.udp_ports: the SFU's sockets stay in the range a firewall opens, media flows
through them, and a full range is an error for the one who could not get a port."""

from __future__ import annotations

import errno
import random
import re
import socket
from collections.abc import Callable

import pytest

from bridge.media import MediaSettings, aiortc_hooks
from bridge.media.events import ParticipantMediaClosed

from .helpers import Meeting, loopback_settings, wait_for

Meetings = Callable[..., Meeting]


def free_range(size: int) -> tuple[int, int]:
    """A run of ``size`` UDP ports that are free on loopback right now."""
    for _ in range(50):
        low = random.randrange(20000, 60000 - size)
        sockets = []
        try:
            for port in range(low, low + size):
                sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                sockets.append(sock)
                sock.bind(("127.0.0.1", port))
        except OSError:
            continue
        finally:
            for sock in sockets:
                sock.close()
        return low, low + size - 1
    raise AssertionError("no free port range found")


def candidate_ports(sdp: str) -> set[int]:
    return {int(m[1]) for m in re.finditer(r"a=candidate:\S+ \d+ udp \d+ \S+ (\d+) typ", sdp)}


async def test_media_flows_through_ports_of_the_range(meetings: Meetings) -> None:
    low, high = free_range(20)
    meeting = meetings(settings=loopback_settings(udp_ports=(low, high)))
    alice, bob = meeting.join("alice"), meeting.join("bob")
    await alice.publish()
    await wait_for(lambda: len(bob.frames_from("alice", "camera")) > 10)
    assert alice.publish_pc is not None and bob.receive_pc is not None
    server_ports = candidate_ports(alice.publish_pc.remoteDescription.sdp) | candidate_ports(
        bob.receive_pc.remoteDescription.sdp
    )
    assert server_ports and all(low <= port <= high for port in server_ports)


async def test_a_full_range_fails_only_who_needed_a_port(meetings: Meetings) -> None:
    low, high = free_range(1)
    meeting = meetings(settings=loopback_settings(udp_ports=(low, high)))
    alice = meeting.join("alice")
    await alice.publish(camera=False)  # alice's publish connection takes the only port
    bob = meeting.join("bob")  # bob's receive connection finds none
    await wait_for(lambda: meeting.events_of(ParticipantMediaClosed))
    assert [(e.participant_id, e.reason) for e in meeting.events_of(ParticipantMediaClosed)] == [
        ("bob", "signaling failed")
    ]
    assert meeting.router.participant("alice") is not None
    assert bob.offers == []


async def test_binding_tries_every_port_then_says_the_range_is_full() -> None:
    low, high = free_range(2)

    class Receiver:  # what aioice's StunProtocol hands datagrams to; none arrive here
        pass

    first = await aiortc_hooks._bind_in_range(Receiver(), "127.0.0.1", (low, high))  # type: ignore[arg-type]
    second = await aiortc_hooks._bind_in_range(Receiver(), "127.0.0.1", (low, high))  # type: ignore[arg-type]
    ports = {p.transport.get_extra_info("sockname")[1] for p in (first, second)}
    assert ports == {low, high}
    with pytest.raises(OSError) as full:
        await aiortc_hooks._bind_in_range(Receiver(), "127.0.0.1", (low, high))  # type: ignore[arg-type]
    assert full.value.errno == errno.EADDRINUSE and f"{low}-{high}" in str(full.value)
    for protocol in (first, second):
        protocol.transport.close()


def test_the_range_is_checked() -> None:
    assert MediaSettings(udp_ports=(40000, 40999)).udp_ports == (40000, 40999)
    for bad in ((80, 90), (50000, 40000), (40000, 70000)):
        with pytest.raises(ValueError):
            MediaSettings(udp_ports=bad)
