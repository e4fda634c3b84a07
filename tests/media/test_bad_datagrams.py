"""Malformed RTP, RTCP, STUN and DTLS datagrams sent to the media ports: the meeting goes on.

Anyone who can reach the server's UDP ports can send it anything, and the ports are in
every SDP the server hands out. Here a plain socket sends a burst of garbage to the
ports of a meeting's connections while two real aiortc clients exchange media.
"""

from __future__ import annotations

import asyncio
import logging
import random
import socket
import struct
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from aiortc import RTCPeerConnection, sdp

from bridge.media import ParticipantMediaClosed

from .helpers import Meeting, wait_for

Meetings = Callable[..., Meeting]

STUN_COOKIE = 0x2112A442
BINDING_REQUEST, BINDING_INDICATION = 0x0001, 0x0011
BINDING_RESPONSE, BINDING_ERROR = 0x0101, 0x0111
ALLOCATE_REQUEST = 0x0003
USERNAME, MESSAGE_INTEGRITY, ERROR_CODE, CHANNEL_NUMBER, LIFETIME = (
    0x0006,
    0x0008,
    0x0009,
    0x000C,
    0x000D,
)
XOR_MAPPED_ADDRESS, PRIORITY, FINGERPRINT = 0x0020, 0x0024, 0x8028
ICE_CONTROLLED, ICE_CONTROLLING = 0x8029, 0x802A


def stun_attribute(kind: int, value: bytes, length: int | None = None) -> bytes:
    """One attribute, padded to 4 bytes; ``length`` may lie about the value's size."""
    size = len(value) if length is None else length
    return struct.pack("!HH", kind, size) + value + b"\0" * (-len(value) % 4)


def stun(message_type: int, *attributes: bytes, length: int | None = None) -> bytes:
    """A STUN message (header with the magic cookie); ``length`` may lie too."""
    body = b"".join(attributes)
    size = len(body) if length is None else length
    transaction_id = bytes(range(12))  # no request of the server's uses it
    return struct.pack("!HHI", message_type, size, STUN_COOKIE) + transaction_id + body


def bad_stun(rng: random.Random, username: str) -> Iterator[bytes]:
    """STUN messages that fail to parse, to authenticate, or ask for nothing we do.

    ``username`` is the server's real ``ufrag:ufrag``: only the password is missing.
    """
    integrity = stun_attribute(MESSAGE_INTEGRITY, rng.randbytes(20))
    for name in (username.encode(), b"x:y", b"\xff\xfe:\xc3"):
        yield stun(BINDING_REQUEST, stun_attribute(USERNAME, name), integrity)
    yield stun(BINDING_REQUEST)  # no credentials at all
    yield stun(
        BINDING_REQUEST,
        stun_attribute(USERNAME, username.encode()),
        stun_attribute(PRIORITY, b"\x7e\0\0\xff"),
        stun_attribute(ICE_CONTROLLING, rng.randbytes(8)),
        stun_attribute(MESSAGE_INTEGRITY, b"short"),
    )
    # Attributes whose values have the wrong size for their type.
    for kind, value in (
        (PRIORITY, b"\1\2\3"),
        (ICE_CONTROLLING, b"\1\2\3\4"),
        (ICE_CONTROLLED, b"\1\2"),
        (CHANNEL_NUMBER, b"\1"),
        (LIFETIME, b""),
        (FINGERPRINT, b"\1\2"),
        (ERROR_CODE, b"\0\0"),
        (ERROR_CODE, b"\0\0\4\1\xff\xfe"),
        (XOR_MAPPED_ADDRESS, b"\0\x07\0\0\1\2\3\4"),
        (XOR_MAPPED_ADDRESS, b"\0\1\0"),
    ):
        yield stun(BINDING_REQUEST, stun_attribute(kind, value), integrity)
    # An attribute longer than the message, then a message longer than it says.
    yield stun(BINDING_REQUEST, stun_attribute(PRIORITY, b"\1\2\3\4", length=400))
    yield stun(BINDING_REQUEST, stun_attribute(USERNAME, b"a:b"), length=4)
    yield stun(BINDING_REQUEST, stun_attribute(FINGERPRINT, b"\0\0\0\0"))  # wrong CRC
    yield stun(0x3EEF, integrity)  # no such method
    yield stun(ALLOCATE_REQUEST, stun_attribute(LIFETIME, b"\0\0\0\1"))
    for message_type in (BINDING_RESPONSE, BINDING_ERROR, BINDING_INDICATION):
        yield stun(message_type, stun_attribute(XOR_MAPPED_ADDRESS, b"\0\1\0\0\1\2\3\4"))
    yield stun(BINDING_REQUEST)[:19]  # one byte short of a header


def bad_rtp(rng: random.Random) -> Iterator[bytes]:
    """RTP and RTCP look-alikes (first byte 128-191) that no SRTP key decrypts."""
    yield b"\x80"
    yield b"\x80\x60"
    yield b"\x80\x60\0\1\0\0\0\1"
    yield b"\x80\x60\0\1\0\0\0\1\xde\xad\xbe\xef"  # a bare header, no payload or tag
    yield b"\x8f\x60" + rng.randbytes(20)  # 15 CSRCs announced, 5 present
    yield b"\x90\x60\0\1\0\0\0\1\xde\xad\xbe\xef\xbe\xde\xff\xff"  # extension runs out
    yield b"\xa0\x60" + rng.randbytes(30) + b"\xff"  # padding longer than the packet
    for payload_type in range(200, 207):  # SR, RR, SDES, BYE, APP, RTPFB, PSFB
        yield bytes([0x81, payload_type])
        yield bytes([0x81, payload_type, 0xFF, 0xFF]) + rng.randbytes(8)  # too long
        yield bytes([0x81, payload_type, 0, 0]) + rng.randbytes(24)  # too short
        yield bytes([0x80, payload_type, 0, 1]) + rng.randbytes(4) + b"\x80\0\0\1"
    for _ in range(40):
        yield bytes([rng.randint(128, 191)]) + rng.randbytes(rng.randint(0, 300))


def bad_dtls(rng: random.Random) -> Iterator[bytes]:
    """DTLS look-alikes (first byte 20-63): records of every epoch, and noise."""
    for content_type in (20, 21, 22, 23):
        for epoch in (0, 1, 2, 0xFFFF):
            body = rng.randbytes(rng.choice((0, 2, 13, 64)))
            header = struct.pack("!BHH", content_type, 0xFEFD, epoch) + rng.randbytes(6)
            yield header + struct.pack("!H", len(body)) + body
            yield header + struct.pack("!H", 1000) + body  # longer than it is
    # A handshake record holding the start of a ClientHello, as a new client would send.
    hello = b"\x01\0\0\x40\0\0\0\0\0\0\0\x40\xfe\xfd" + rng.randbytes(50)
    yield struct.pack("!BHHIHH", 22, 0xFEFF, 0, 0, 0, len(hello)) + hello
    yield b"\x15"  # one byte of an alert
    for _ in range(40):
        yield bytes([rng.randint(20, 63)]) + rng.randbytes(rng.randint(0, 300))


def bad_datagrams(username: str) -> list[bytes]:
    """The whole burst, in a random but reproducible order."""
    rng = random.Random(20240511)
    datagrams = [*bad_stun(rng, username), *bad_rtp(rng), *bad_dtls(rng)]
    datagrams += [b"", b"\0", b"\xff" * 1500, rng.randbytes(1500)]
    datagrams += [rng.randbytes(rng.randint(1, 1500)) for _ in range(100)]
    rng.shuffle(datagrams)
    return datagrams


def server_port_and_username(pc: RTCPeerConnection) -> tuple[int, str]:
    """The server's UDP port and STUN username, as the client's remote SDP gives them."""
    description = pc.remoteDescription
    assert description is not None and pc.localDescription is not None
    media = sdp.SessionDescription.parse(description.sdp).media[0]
    local = sdp.SessionDescription.parse(pc.localDescription.sdp).media[0]
    assert media.ice is not None and local.ice is not None
    (candidate,) = media.ice_candidates  # one bundled transport, on 127.0.0.1
    return candidate.port, f"{media.ice.usernameFragment}:{local.ice.usernameFragment}"


async def send_burst(port: int, datagrams: list[bytes]) -> list[bytes]:
    """Send ``datagrams`` to 127.0.0.1:``port`` from a fresh socket; return the replies."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        sock.setblocking(False)
        for index, datagram in enumerate(datagrams):
            sock.sendto(datagram, ("127.0.0.1", port))
            if index % 10 == 9:
                # Pace the burst, so the server reads it rather than the kernel dropping it.
                await asyncio.sleep(0.002)
        await asyncio.sleep(0.2)
        replies = []
        while True:
            try:
                replies.append(sock.recv(2048))
            except BlockingIOError:
                return replies


def is_stun_error(datagram: bytes) -> bool:
    message_type, _, cookie = struct.unpack("!HHI", datagram[:8])
    return message_type & 0x0110 == 0x0110 and cookie == STUN_COOKIE


class Trouble:
    """What must stay empty: exceptions that reached the event loop, and log warnings."""

    def __init__(self) -> None:
        self.exceptions: list[dict[str, Any]] = []
        self.warnings: list[logging.LogRecord] = []

    def exception_handler(self, loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        self.exceptions.append(context)
        loop.default_exception_handler(context)

    def note(self, records: list[logging.LogRecord]) -> None:
        self.warnings += [r for r in records if r.levelno >= logging.WARNING]


async def test_garbage_on_the_media_ports_disturbs_nobody(
    meetings: Meetings, caplog: pytest.LogCaptureFixture
) -> None:
    meeting = meetings()
    alice, bob = meeting.join("alice"), meeting.join("bob")
    await alice.publish()
    await wait_for(
        lambda: (
            len(bob.frames_from("alice", "camera")) >= 10
            and len(bob.frames_from("alice", "microphone")) >= 10
        )
    )
    assert alice.publish_pc is not None and bob.receive_pc is not None
    targets = [server_port_and_username(pc) for pc in (alice.publish_pc, bob.receive_pc)]
    stats = meeting.router.stats()

    trouble = Trouble()
    loop = asyncio.get_running_loop()
    previous_handler = loop.get_exception_handler()
    loop.set_exception_handler(trouble.exception_handler)
    caplog.set_level(logging.WARNING)
    try:
        camera, microphone = (len(bob.frames_from("alice", s)) for s in ("camera", "microphone"))
        for port, username in targets:
            replies = await send_burst(port, bad_datagrams(username))
            # The server did read the burst: it refused each bad request with a STUN
            # error response (400 or 401), and answered nothing else.
            assert replies and all(is_stun_error(r) for r in replies), replies
        # Media keeps flowing, unchanged, and nobody was taken out.
        await wait_for(
            lambda: (
                len(bob.frames_from("alice", "camera")) > camera + 30
                and len(bob.frames_from("alice", "microphone")) > microphone + 30
            )
        )
    finally:
        loop.set_exception_handler(previous_handler)
        trouble.note(caplog.records)
    assert alice.camera is not None
    received = [f.data for f in bob.frames_from("alice", "camera")]
    first = alice.camera.sent.index(received[0])
    assert received == list(alice.camera.sent)[first : first + len(received)]
    assert trouble.exceptions == []
    assert [r.getMessage() for r in trouble.warnings] == []
    assert meeting.events_of(ParticipantMediaClosed) == []
    assert meeting.router.stats().participants == stats.participants
    assert meeting.router.stats().peer_connections == stats.peer_connections
    assert meeting.router.stats().subscriptions == stats.subscriptions
    for pc in (alice.publish_pc, bob.receive_pc):
        assert pc.connectionState == "connected"
