"""The only place where the media layer reaches into aiortc's and aioice's private parts.

aiortc 1.16 has no public API for what an SFU needs, so this module owns these small hooks,
each checked by ``tests/media/test_aiortc_hooks.py``:

- :func:`tap_receiver`: take each encoded frame where it leaves an ``RTCRtpReceiver``'s
  jitter buffer (in ``_handle_rtp_packet``, on its way to the decoder queue), so that a
  published track is never decoded. The receiver's decoder queue is replaced by a sink
  whose ``get()`` ends the decoder thread at once; ``put()`` hands the frame to us.
- :func:`observe_rtp`: see each RTP packet of a receiver (for the RFC 6464 audio level
  header extension, which the jitter buffer throws away).
- :func:`on_keyframe_request`: learn about a subscriber's PLI/FIR, which aiortc's sender
  would otherwise turn into an encoder flag that passthrough never reads.
- :func:`gather_candidates`: gather ICE host candidates on a configured list of
  addresses (aioice only offers those of every interface but 127.0.0.1), and bound the
  wait for STUN/TURN candidates (aioice waits up to 5 s, inside every offer/answer).
- :func:`restart_media_when_connected`: aiortc starts the senders and receivers of a
  renegotiation only if DTLS is already up when it connects them; sections added while
  the first DTLS handshake runs (a LiveKit client offers its data channels, then its
  tracks right away) would never start. Connecting again once the connection is up
  starts them (every step is idempotent).
- :func:`close_peer_connection`: close a peer connection without leaving an ICE consent
  task behind (aioice starts one even when the connection closed just as ICE completed).
- :func:`drop_bad_datagrams` (part of :func:`gather_candidates`): anyone can send
  anything to a media port, so each ICE socket drops, before aioice sees them, the
  datagrams that would break something: an empty one stops aiortc's DTLS transport for
  good (it reads ``data[0]``), and a STUN message whose attribute has the wrong size
  makes aioice's parser raise ``struct.error`` into the event loop. Checked by
  ``tests/media/test_bad_datagrams.py``, with garbage sent to a meeting's ports.

The import fails with a clear message on any other aiortc/aioice version than the ones
these hooks were verified against: re-read aiortc's ``rtcrtpreceiver.py``,
``rtcrtpsender.py`` and aioice's ``ice.py``, run the hook tests, then extend
:data:`VERIFIED_VERSIONS`.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import ipaddress
import logging
import random
import socket
from collections.abc import Awaitable, Callable, Iterable
from importlib.metadata import version
from typing import Any

import aioice.ice
import aioice.turn
from aiortc import RTCIceTransport, RTCPeerConnection, RTCRtpReceiver, RTCRtpSender
from aiortc.jitterbuffer import JitterFrame
from aiortc.rtcrtpparameters import RTCRtpCodecParameters
from aiortc.rtp import RtpPacket

log = logging.getLogger("visio.media.aiortc_hooks")

#: The longest a peer connection's close may take before it is left to itself.
CLOSE_TIMEOUT = 5.0

#: Versions whose private internals these hooks were checked against.
VERIFIED_VERSIONS: dict[str, tuple[str, ...]] = {"aiortc": ("1.16.0",), "aioice": ("0.13.0",)}


def _check_versions() -> None:
    for package, verified in VERIFIED_VERSIONS.items():
        found = version(package)
        if found not in verified:
            raise RuntimeError(
                f"bridge.media relies on private internals of {package} "
                f"{', '.join(verified)}, but {package} {found} is installed. Pin "
                f"{package}=={verified[-1]}, or re-verify bridge/media/aiortc_hooks.py "
                "against the new version (tests/media/test_aiortc_hooks.py) and add it to "
                "VERIFIED_VERSIONS."
            )
    # The attributes the hooks touch; a rename would otherwise fail silently.
    for owner, name in (
        (RTCRtpReceiver, "_handle_rtp_packet"),
        (RTCRtpReceiver, "_send_rtcp_pli"),
        (RTCRtpSender, "_send_keyframe"),
        (RTCPeerConnection, _CONNECT),
    ):
        if not hasattr(owner, name):
            raise RuntimeError(f"aiortc has no {owner.__name__}.{name}; see {__name__}")


_CONNECT = "_RTCPeerConnection__connect"

_check_versions()


def restart_media_when_connected(pc: RTCPeerConnection) -> None:
    """Start, once ``pc`` is connected, the senders and receivers negotiated meanwhile.

    aiortc's private ``__connect`` (run after each description) starts a section's media
    only when its DTLS transport is "new" or "connected"; a section negotiated while the
    handshake is under way is skipped, and nothing runs ``__connect`` again. Running it
    when the connection comes up catches those: it only starts what has not started.
    """

    @pc.on("connectionstatechange")
    async def on_state() -> None:
        if pc.connectionState == "connected":
            await getattr(pc, _CONNECT)()


FrameCallback = Callable[[RTCRtpCodecParameters, JitterFrame], None]


class _FrameSink:
    """Stands in for ``RTCRtpReceiver``'s decoder queue (a ``queue.Queue``).

    The receiver starts its decoder thread in ``receive()``; that thread calls ``get()``
    first, receives the end marker and exits, so no decoder ever exists. The receiver
    calls ``put((codec, frame))`` for every complete encoded frame, and ``put(None)`` when
    it stops.
    """

    def __init__(self, on_frame: FrameCallback) -> None:
        self._on_frame: FrameCallback | None = on_frame

    def get(self, *args: object, **kwargs: object) -> None:
        return None

    def put(self, item: tuple[RTCRtpCodecParameters, JitterFrame] | None) -> None:
        if item is None:
            # The receiver stops: drop our reference so the forwarding graph can go.
            self._on_frame = None
        elif self._on_frame is not None:
            self._on_frame(*item)


_DECODER_QUEUE = "_RTCRtpReceiver__decoder_queue"
_STARTED = "_RTCRtpReceiver__started"


def tap_receiver(receiver: RTCRtpReceiver, on_frame: FrameCallback) -> None:
    """Deliver the receiver's encoded frames to ``on_frame`` instead of a decoder.

    Call it before the receiver starts, i.e. right after ``setRemoteDescription`` created
    it and before the local answer connects it. ``on_frame`` runs on the event loop, in
    the receiver's packet handler: it must not block. The frame's timestamp is in the
    codec's clock rate, counted from the track's first frame.
    """
    if not hasattr(receiver, _DECODER_QUEUE):
        raise RuntimeError(f"aiortc's RTCRtpReceiver has no {_DECODER_QUEUE}; see {__name__}")
    if getattr(receiver, _STARTED):
        raise RuntimeError("tap_receiver() must run before the receiver starts")
    setattr(receiver, _DECODER_QUEUE, _FrameSink(on_frame))


def observe_rtp(receiver: RTCRtpReceiver, on_packet: Callable[[RtpPacket], None]) -> None:
    """Call ``on_packet`` with every RTP packet the receiver gets, before aiortc handles it.

    ``on_packet`` runs for every packet: keep it to a few attribute reads.
    """
    handle: Callable[..., Awaitable[None]] = receiver._handle_rtp_packet

    async def handle_rtp_packet(packet: RtpPacket, arrival_time_ms: int) -> None:
        on_packet(packet)
        await handle(packet, arrival_time_ms)

    # The DTLS transport looks the handler up on the instance for every packet.
    receiver._handle_rtp_packet = handle_rtp_packet  # type: ignore[method-assign]


def on_keyframe_request(sender: RTCRtpSender, callback: Callable[[], None]) -> None:
    """Call ``callback`` when the remote peer asks this sender for a keyframe (PLI/FIR)."""
    # aiortc's sender calls self._send_keyframe() for PLI and FIR; it only sets a flag
    # for its encoder, which a passthrough sender never uses.
    sender._send_keyframe = callback  # type: ignore[method-assign]


async def send_pli(receiver: RTCRtpReceiver, media_ssrc: int) -> None:
    """Send a picture loss indication for ``media_ssrc`` to the remote sender."""
    await receiver._send_rtcp_pli(media_ssrc)


def set_msid(sender: RTCRtpSender, stream_id: str, track_id: str) -> None:
    """Set the ``a=msid:<stream_id> <track_id>`` that aiortc's next offer gives ``sender``.

    aiortc otherwise uses one random stream id per connection and the track's id.
    """
    sender._stream_id = stream_id
    sender._track_id = track_id


def ice_transports(pc: RTCPeerConnection) -> list[RTCIceTransport]:
    """The distinct ICE transports behind a peer connection's transceivers."""
    seen: dict[int, RTCIceTransport] = {}
    for transceiver in pc.getTransceivers():
        transport = transceiver.receiver.transport.transport
        seen.setdefault(id(transport), transport)
    return list(seen.values())


def ice_connections(pc: RTCPeerConnection) -> list[Any]:
    """The aioice ``Connection`` objects behind a peer connection's transceivers."""
    return [transport.iceGatherer._connection for transport in ice_transports(pc)]


async def close_peer_connection(pc: RTCPeerConnection) -> None:
    """``pc.close()``, then stop the ICE consent checks a late ``connect()`` may start.

    When ICE completes just before the close, aioice's ``connect()`` resumes after
    ``Connection.close()`` and starts consent checks on the closed connection, a task that
    would run forever. Wait for each ICE transport's start to finish, then cancel it.
    """
    transports = ice_transports(pc)
    closing = asyncio.ensure_future(pc.close())
    done, _ = await asyncio.wait({closing}, timeout=CLOSE_TIMEOUT)
    if not done:
        # Seen once in a few dozen trunk shutdowns: pc.close() waited forever. Say on
        # what, and go on: a close must never hold up a meeting or a shutdown.
        stuck = [
            f"{task.get_coro()!r} at {task.get_stack(limit=1)}"
            for task in asyncio.all_tasks()
            if "aiortc" in repr(task.get_coro()) or "aioice" in repr(task.get_coro())
        ]
        log.warning(
            "Closing a peer connection took over %.0f s; left behind: %s",
            CLOSE_TIMEOUT,
            "; ".join(stuck) or "nothing of aiortc",
        )
    for transport in transports:
        starting: asyncio.Event | None = getattr(transport, "_RTCIceTransport__start", None)
        if starting is not None:
            # connect() ends promptly once its connection is closed.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(starting.wait(), timeout=2)
        task = transport.iceGatherer._connection._query_consent_task
        if task is not None and not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


async def gather_candidates(
    pc: RTCPeerConnection,
    addresses: Iterable[str] | None,
    server_wait: float,
    ports: tuple[int, int] | None = None,
) -> None:
    """Gather ICE candidates for every transport of ``pc`` that has not gathered yet.

    Host candidates are bound on ``addresses`` (``None``: aioice's own choice, every
    interface but loopback). Server-reflexive and relay candidates come from the
    configured STUN/TURN servers through aioice's public ``get_component_candidates``,
    waiting at most ``server_wait`` seconds for them instead of aioice's fixed 5 s. Call
    before ``setLocalDescription``: aiortc's own gathering then finds the work done. Each
    socket gathered is shielded with :func:`drop_bad_datagrams` before its port is known
    to anyone (it is first told in the SDP). ``ports`` (low, high) keeps host sockets in
    a range a firewall can open; ``None``: the system's ephemeral ports.
    """
    chosen = (
        list(addresses)
        if addresses is not None
        else aioice.ice.get_host_addresses(use_ipv4=True, use_ipv6=True)
    )
    for connection in ice_connections(pc):
        if connection._local_candidates_start:
            continue
        connection._local_candidates_start = True
        for component in sorted(connection._components):
            if ports is None:
                candidates = await connection.get_component_candidates(
                    component=component, addresses=chosen, timeout=server_wait
                )
            else:
                candidates = await _candidates_in_range(
                    connection, component, chosen, ports, server_wait
                )
            connection._local_candidates += candidates
        connection._local_candidates_end = True
        for protocol in connection._protocols:
            drop_bad_datagrams(protocol)
        if log.isEnabledFor(logging.DEBUG):
            log.debug("gathered %s", connection._local_candidates)


async def _candidates_in_range(
    connection: aioice.ice.Connection,
    component: int,
    addresses: list[str],
    ports: tuple[int, int],
    server_wait: float,
) -> list[aioice.ice.Candidate]:
    """What aioice's ``get_component_candidates`` gathers, with the host sockets bound
    in ``ports``: host candidates, server-reflexive ones through those sockets, and
    relayed ones from aioice (their sockets only talk out, to the TURN server)."""
    candidates: list[aioice.ice.Candidate] = []
    hosts: list[aioice.ice.StunProtocol] = []
    for address in addresses:
        protocol = await _bind_in_range(connection, address, ports)
        host, port = protocol.transport.get_extra_info("sockname")[:2]
        protocol.local_candidate = aioice.ice.Candidate(
            foundation=aioice.ice.candidate_foundation("host", "udp", host),
            component=component,
            transport="udp",
            priority=aioice.ice.candidate_priority(component, "host"),
            host=host,
            port=port,
            type="host",
        )
        connection._protocols.append(protocol)
        hosts.append(protocol)
        candidates.append(protocol.local_candidate)
    if connection.stun_server:
        queries = [
            asyncio.ensure_future(
                aioice.ice.server_reflexive_candidate(protocol, connection.stun_server)
            )
            for protocol in hosts
            if ipaddress.ip_address(protocol.local_candidate.host).version == 4
        ]
        if queries:
            done, pending = await asyncio.wait(queries, timeout=server_wait)
            candidates += [t.result()[0] for t in done if t.exception() is None]
            for task in pending:
                task.cancel()
    if connection.turn_server:
        # aioice types the timeout as int; it is used as a float, as gather_candidates does.
        gather: Any = connection.get_component_candidates
        candidates += await gather(component=component, addresses=[], timeout=server_wait)
    return candidates


async def _bind_in_range(
    connection: aioice.ice.Connection, address: str, ports: tuple[int, int]
) -> aioice.ice.StunProtocol:
    """An ICE socket on ``address`` at a free port of ``ports``, tried from a random
    start; OSError when every port of the range is taken."""
    low, high = ports
    count = high - low + 1
    start = random.randrange(count)
    loop = asyncio.get_running_loop()
    for offset in range(count):
        port = low + (start + offset) % count
        try:
            transport, protocol = await loop.create_datagram_endpoint(
                lambda: aioice.ice.StunProtocol(connection), local_addr=(address, port)
            )
        except OSError as error:
            if error.errno == errno.EADDRINUSE:
                continue
            raise
        sock = transport.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(
                socket.SOL_SOCKET, socket.SO_RCVBUF, aioice.turn.UDP_SOCKET_BUFFER_SIZE
            )
        return protocol
    raise OSError(errno.EADDRINUSE, f"No free UDP port in {low}-{high} on {address}.")


def drop_bad_datagrams(protocol: aioice.ice.StunProtocol) -> None:
    """Keep datagrams that aioice or aiortc cannot handle from one ICE socket's stack.

    Empty datagrams are dropped: no protocol on the port sends them, and aiortc's DTLS
    transport would stop for good on one. A datagram whose handling raises (aioice's STUN
    parser lets ``struct.error`` out) is dropped and logged at debug level only, as anyone
    may send them.
    """
    handle = protocol.datagram_received

    def datagram_received(data: bytes | str, addr: tuple[Any, ...]) -> None:
        if not data:
            return
        try:
            handle(data, addr)
        except Exception:
            log.debug(
                "dropped a datagram from %s that aioice could not handle", addr, exc_info=True
            )

    # The asyncio transport looks the handler up on the protocol for every datagram.
    protocol.datagram_received = datagram_received  # type: ignore[method-assign]
