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
- :func:`take_over_sender` and :class:`RtpOutput` (the packet path, see
  :mod:`bridge.media.rtp_forward`): a sender whose RTP we write ourselves answers NACKs
  from our history and sends sender reports with our figures; packets are protected
  with the connection's SRTP session into one reused buffer and written straight to the
  socket of the ICE pair in use, without aiortc's and aioice's coroutine chain.
  :func:`observe_sender_reports` sees a publisher's RTCP SRs (lip sync), and
  :func:`rtx_payload_types` says which payload types a receiver takes as RTX.
- :func:`take_over_receiver` (the packet path's receive side): a published track's
  packets are handled by a :class:`PacketReceiver` instead of aiortc's
  ``_handle_rtp_packet``: counted into aiortc's own per-SSRC statistics (which its RTCP
  task turns into receiver reports), RTX unwrapped, NACKed when lost, fed to aiortc's
  REMB estimator, and handed on, never depacketized. :class:`FrameAssembler` rebuilds
  frames with aiortc's jitter buffer, only while a frame consumer exists.
  :func:`take_over_rtp_input` handles those packets in the ICE socket's callback, with
  the DTLS transport's SRTP session, extension map and router
  (:data:`DTLS_RECEIVE_ATTRIBUTES`), instead of through aioice's queue and coroutines;
  so are the RTCP packets of publishers' and subscribers' connections, each given to
  aiortc's own handler of the sender or receiver it is for, run at once
  (:func:`run_eagerly`).
- :func:`close_peer_connection`: close a peer connection without leaving an ICE consent
  task behind (aioice starts one even when the connection closed just as ICE completed).
- :func:`drop_bad_datagrams` (part of :func:`gather_candidates`): anyone can send
  anything to a media port, so each ICE socket drops, before aioice sees them, the
  datagrams that would break something: an empty one stops aiortc's DTLS transport for
  good (it reads ``data[0]``), and a STUN message whose attribute has the wrong size
  makes aioice's parser raise ``struct.error`` into the event loop. Checked by
  ``tests/media/test_bad_datagrams.py``, with garbage sent to a meeting's ports.

The import fails with a clear message on any aiortc/aioice/pylibsrtp release outside
the series these hooks were tested with (:data:`VERIFIED_VERSIONS`); a patch release of a
tested series is accepted with a warning, since patch releases keep private internals
as far as we have seen, and the attribute checks below still fail loudly if one does
not. For a new series: re-read aiortc's ``rtcrtpreceiver.py`` (``_handle_rtp_packet``,
``_run_rtcp``, ``StreamStatistics``), ``jitterbuffer.py``, ``rtcrtpsender.py``,
``rtcdtlstransport.py``, aioice's ``ice.py`` and pylibsrtp's ``__init__.py``, run the
hook tests, then extend :data:`VERIFIED_VERSIONS`.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import ipaddress
import logging
import random
import socket
import time
from collections.abc import Awaitable, Callable, Coroutine, Generator, Iterable
from importlib.metadata import version
from typing import Any

import aioice.ice
import aioice.turn
import pylibsrtp
from aiortc import RTCIceTransport, RTCPeerConnection, RTCRtpReceiver, RTCRtpSender
from aiortc import clock as aiortc_clock
from aiortc import rate as aiortc_rate
from aiortc.codecs import HEADER_EXTENSIONS, depayload
from aiortc.jitterbuffer import JitterBuffer, JitterFrame
from aiortc.rtcrtpparameters import RTCRtpCodecParameters, RTCRtpHeaderExtensionParameters
from aiortc.rtcrtpreceiver import StreamStatistics, TimestampMapper
from aiortc.rtp import (
    RTCP_PSFB_APP,
    RTP_HISTORY_SIZE,
    RtcpByePacket,
    RtcpPacket,
    RtcpPsfbPacket,
    RtcpSdesPacket,
    RtcpSenderInfo,
    RtcpSourceInfo,
    RtcpSrPacket,
    RtpPacket,
    pack_remb_fci,
    unwrap_rtx,
)
from pylibsrtp._binding import ffi as _srtp_ffi
from pylibsrtp._binding import lib as _srtp_lib

log = logging.getLogger("visio.media.aiortc_hooks")

#: The longest a peer connection's close may take before it is left to itself.
CLOSE_TIMEOUT = 5.0

#: Versions whose private internals these hooks were tested with. Another patch release
#: of the same series (1.16.x for 1.16.0) is accepted, with a warning.
VERIFIED_VERSIONS: dict[str, tuple[str, ...]] = {
    "aiortc": ("1.16.0",),
    "aioice": ("0.13.0",),
    "pylibsrtp": ("1.0.0",),
}


def _series(release: str) -> tuple[str, ...]:
    return tuple(release.split(".")[:2])


def _check_versions() -> None:
    for package, verified in VERIFIED_VERSIONS.items():
        found = version(package)
        if found in verified:
            continue
        if any(_series(found) == _series(tested) for tested in verified):
            log.warning(
                "%s %s is a patch release of a tested series (%s); bridge.media's hooks "
                "into its internals were not re-run against it",
                package,
                found,
                ", ".join(verified),
            )
            continue
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
        (RTCRtpReceiver, "_handle_rtcp_packet"),
        (RTCRtpReceiver, "_send_rtcp_pli"),
        (RTCRtpReceiver, "_send_rtcp_nack"),
        (RTCRtpReceiver, "_send_rtcp"),
        (RTCRtpReceiver, _RECEIVER_CODECS),
        (RTCRtpSender, "_send_keyframe"),
        (RTCRtpSender, "_retransmit"),
        (RTCRtpSender, "_send_rtcp"),
        (RTCRtpSender, "send"),
        (RTCPeerConnection, _CONNECT),
        (aioice.ice.Connection, "sendto"),
        (pylibsrtp.Session, "protect"),
    ):
        if not hasattr(owner, name) and name not in _INSTANCE_ATTRIBUTES:
            raise RuntimeError(f"{owner.__name__} has no {name}; see {__name__}")
    # What ReceivedStream sets on aiortc's statistics, which its RTCP task reads.
    statistics = StreamStatistics(90000)
    for name in _STATISTICS_ATTRIBUTES:
        if not hasattr(statistics, name):
            raise RuntimeError(f"aiortc's StreamStatistics has no {name}; see {__name__}")
    # lean_rate_counter() replaces this class, which only the REMB estimator uses.
    counter = getattr(aiortc_rate, "RateCounter", None)
    if not all(callable(getattr(counter, name, None)) for name in ("add", "rate", "reset")):
        raise RuntimeError(f"aiortc.rate has no RateCounter as we know it; see {__name__}")
    for name in ("srtp_protect", "srtp_protect_rtcp"):
        if not hasattr(_srtp_lib, name):
            raise RuntimeError(f"pylibsrtp's binding has no {name}; see {__name__}")


_RECEIVER_CODECS = "_RTCRtpReceiver__codecs"
# Set in __init__, so not on the class: checked on instances by the hook tests.
_INSTANCE_ATTRIBUTES = {_RECEIVER_CODECS}


_CONNECT = "_RTCPeerConnection__connect"
_STATISTICS_ATTRIBUTES = (
    "base_seq",
    "max_seq",
    "cycles",
    "packets_received",
    "_clockrate",
    "_jitter_q4",
    "_last_arrival",
    "_last_timestamp",
)

_check_versions()


class WindowRateCounter:
    """aiortc's ``RateCounter`` (what arrived in the last ``window_size`` ms, in 1 ms
    buckets, as a rate), with the same results and none of its costs.

    aiortc's keeps one bucket object per millisecond (1000 for its REMB estimator, made
    for every receiver, sending ones included: about half a millisecond and 100 KB each)
    and clears the buckets one by one in Python as time passes, several per packet and a
    thousand after a pause. Here the buckets are two lists of ints, cleared a slice at a
    time. Installed in place of aiortc's class by :func:`lean_rate_counter`.
    """

    __slots__ = (
        "_counts",
        "_origin_index",
        "_origin_ms",
        "_scale",
        "_total",
        "_values",
        "_window",
    )

    def __init__(self, window_size: int, scale: int = 8000) -> None:
        self._window = window_size
        self._scale = scale
        self.reset()

    def reset(self) -> None:
        self._counts = [0] * self._window
        self._values = [0] * self._window
        self._origin_index = 0
        self._origin_ms: int | None = None
        #: Packets and amount in the window.
        self._total = [0, 0]

    def add(self, value: int, now_ms: int) -> None:
        origin = self._origin_ms
        if origin is None:
            origin = self._origin_ms = now_ms
        else:
            origin = self._erase_old(now_ms, origin)
        index = (self._origin_index + now_ms - origin) % self._window
        self._counts[index] += 1
        self._values[index] += value
        total = self._total
        total[0] += 1
        total[1] += value

    def rate(self, now_ms: int) -> int | None:
        origin = self._origin_ms
        if origin is not None:
            origin = self._erase_old(now_ms, origin)
            active_window_size = now_ms - origin + 1
            if self._total[0] > 0 and active_window_size > 1:
                return round(self._scale * self._total[1] / active_window_size)
        return None

    def _erase_old(self, now_ms: int, origin: int) -> int:
        """Clear the buckets that left the window; the window's new start."""
        steps = now_ms - self._window + 1 - origin
        if steps <= 0:
            return origin
        window = self._window
        start = self._origin_index
        if steps >= window:
            self._counts = [0] * window
            self._values = [0] * window
            self._total = [0, 0]
        else:
            end = start + steps
            spans = ((start, end),) if end <= window else ((start, window), (0, end - window))
            counts, values, total = self._counts, self._values, self._total
            for low, high in spans:
                total[0] -= sum(counts[low:high])
                total[1] -= sum(values[low:high])
                zeros = [0] * (high - low)
                counts[low:high] = zeros
                values[low:high] = zeros
        self._origin_index = (start + steps) % window
        origin = self._origin_ms = origin + steps
        return origin


#: aiortc's own RateCounter, which lean_rate_counter() replaced (the tests compare).
AIORTC_RATE_COUNTER: Any = None


def lean_rate_counter() -> None:
    """Make aiortc's REMB estimator count with :class:`WindowRateCounter` (its only user
    of ``RateCounter``, which it looks up when a receiver is made)."""
    global AIORTC_RATE_COUNTER
    if aiortc_rate.RateCounter is not WindowRateCounter:
        AIORTC_RATE_COUNTER = aiortc_rate.RateCounter
    aiortc_rate.RateCounter = WindowRateCounter  # type: ignore[misc,assignment]


#: The RTP header extensions that name a simulcast layer (RFC 8852): aiortc parses them
#: (``RtpPacket.extensions.rtp_stream_id``) but does not negotiate them.
RID_EXTENSIONS = (
    "urn:ietf:params:rtp-hdrext:sdes:rtp-stream-id",
    "urn:ietf:params:rtp-hdrext:sdes:repaired-rtp-stream-id",
)


def accept_simulcast_extensions() -> None:
    """Let aiortc negotiate :data:`RID_EXTENSIONS` for video, so that an answer to a
    simulcast offer keeps them and incoming packets say their layer. Ids 10 and 11 are
    only those of aiortc's own offers (an answer keeps the offer's)."""
    video = HEADER_EXTENSIONS["video"]
    for number, uri in enumerate(RID_EXTENSIONS, start=10):
        if all(e.uri != uri for e in video):
            video.append(RTCRtpHeaderExtensionParameters(id=number, uri=uri))


accept_simulcast_extensions()
lean_rate_counter()


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


# The packet path (bridge.media.rtp_forward): senders whose RTP the router writes itself.


def rtx_payload_types(receiver: RTCRtpReceiver) -> dict[int, int]:
    """The RTX payload types a started receiver accepts, each with its media payload type."""
    codecs: dict[int, RTCRtpCodecParameters] = getattr(receiver, _RECEIVER_CODECS)
    found: dict[int, int] = {}
    for pt, codec in codecs.items():
        apt = codec.parameters.get("apt")
        if codec.name.lower() == "rtx" and isinstance(apt, int):
            found[pt] = apt
    return found


def observe_sender_reports(
    receiver: RTCRtpReceiver, on_report: Callable[[int, int, int], None]
) -> None:
    """Call ``on_report(ssrc, ntp_timestamp, rtp_timestamp)`` for each RTCP sender report
    the remote sender sends to this receiver (the pair that ties its RTP clock to its
    wall clock, which receivers use for lip sync)."""
    handle: Callable[..., Awaitable[None]] = receiver._handle_rtcp_packet

    async def handle_rtcp_packet(packet: Any) -> None:
        if isinstance(packet, RtcpSrPacket):
            info = packet.sender_info
            on_report(packet.ssrc, info.ntp_timestamp, info.rtp_timestamp)
        await handle(packet)

    # The DTLS transport looks the handler up on the instance for every RTCP packet.
    receiver._handle_rtcp_packet = handle_rtcp_packet  # type: ignore[method-assign]


# The receive side of the packet path: a published track's packets, handled by us.

_REMOTE_STREAMS = "_RTCRtpReceiver__remote_streams"
_RTX_SSRC = "_RTCRtpReceiver__rtx_ssrc"
_ACTIVE_SSRC = "_RTCRtpReceiver__active_ssrc"
_RTCP_SSRC = "_RTCRtpReceiver__rtcp_ssrc"
_BITRATE_ESTIMATOR = "_RTCRtpReceiver__remote_bitrate_estimator"
_INSTANCE_ATTRIBUTES |= {
    _DECODER_QUEUE,
    _REMOTE_STREAMS,
    _RTX_SSRC,
    _ACTIVE_SSRC,
    _RTCP_SSRC,
    _BITRATE_ESTIMATOR,
}

#: The most lost packets a NACK asks for (aiortc's own receiver tracks as many).
NACK_WINDOW = RTP_HISTORY_SIZE


class ReceivedStream(StreamStatistics):
    """One incoming SSRC's statistics, in aiortc's own class: its RTCP receiver reports
    (loss, highest sequence number, jitter; last SR and its delay come from its SR
    handler) and ``getStats()`` read them. :meth:`count` does what aiortc's ``add()``
    does, without its function calls and with the arrival time given."""

    def __init__(self, clockrate: int) -> None:
        super().__init__(clockrate)
        #: When ``getSynchronizationSources()``'s timestamp of this SSRC was last set.
        self.announced = -1.0

    def count(self, seq: int, timestamp: int, now: float) -> None:
        """A packet arrived at ``now`` (seconds, monotonic)."""
        self.packets_received += 1
        highest = self.max_seq
        if highest is None:
            self.base_seq = self.max_seq = seq
        elif not 0 < (seq - highest) & 0xFFFF < 0x8000:
            return  # late or repeated: counted, nothing more
        else:
            if seq < highest:
                self.cycles += 1 << 16
            self.max_seq = seq
        # RFC 3550 A.8 interarrival jitter, in the media clock's units (times 16).
        arrival = int(now * self._clockrate)
        last = self._last_timestamp
        if last is not None and timestamp != last:
            assert self._last_arrival is not None
            diff = abs((arrival - self._last_arrival) - (timestamp - last))
            self._jitter_q4 += diff - ((self._jitter_q4 + 8) >> 4)
        self._last_arrival = arrival
        self._last_timestamp = timestamp


class _MissingPackets:
    """The media sequence numbers not received yet, within :data:`NACK_WINDOW` of the
    highest: what a NACK asks the publisher to send again."""

    __slots__ = ("highest", "missing")

    def __init__(self) -> None:
        self.highest: int | None = None
        self.missing: set[int] = set()

    def add(self, seq: int) -> bool:
        """Note a packet; true when it revealed new losses (a NACK is due)."""
        highest = self.highest
        if highest is None:
            self.highest = seq
            return False
        gap = (seq - highest) & 0xFFFF
        if gap == 1:
            self.highest = seq
            return False
        if gap >= 0x8000 or gap == 0:  # late (a retransmission, maybe) or repeated
            if self.missing:
                self.missing.discard(seq)
            return False
        self.highest = seq
        missing = self.missing
        for lost in range(max(1, gap - NACK_WINDOW), gap):
            missing.add((highest + lost) & 0xFFFF)
        if len(missing) > NACK_WINDOW:
            self.missing = {s for s in missing if (seq - s) & 0xFFFF <= NACK_WINDOW}
        return True


PacketCallback = Callable[[RtpPacket], None]


class PacketReceiver:
    """Handles a published track's RTP packets in place of aiortc's receiver.

    aiortc's ``_handle_rtp_packet`` depacketizes every packet and assembles frames in
    its jitter buffer for a decoder, and stamps every packet with a ``datetime``; a
    forwarding server needs neither. Here each packet is counted for the RTCP receiver
    reports (aiortc's RTCP task still sends them, from our figures), RTX is unwrapped,
    a gap in the video's sequence numbers sends a NACK at once (as aiortc does), the
    publisher's abs-send-time still feeds aiortc's bitrate estimator and its REMB (the
    only congestion feedback aiortc negotiates, so a browser's rate depends on it), and
    the packet goes to ``on_packet``. Frames, if anyone wants them, are assembled on the
    track's side (:class:`FrameAssembler`).
    """

    def __init__(self, receiver: RTCRtpReceiver, on_packet: PacketCallback) -> None:
        self._receiver = receiver
        self._on_packet = on_packet
        # Known once the receiver has started (its first packet comes after).
        self._codecs: dict[int, tuple[int, int | None]] | None = None
        self._rtx_ssrc: dict[int, int] = {}
        self._streams: dict[int, ReceivedStream] = {}
        self._active: dict[int, Any] = {}
        self._estimator: Any = None
        #: Whether lost packets are NACKed (video), and what each SSRC is missing.
        self._nack = False
        self._missing: dict[int, _MissingPackets] = {}
        self._media_ssrc: int | None = None
        #: Simulcast: each layer's SSRC by rid, and RTX SSRCs learned from their
        #: repaired rid (an offer with rids declares no SSRC).
        self._rid_ssrc: dict[str, int] = {}
        self._repairs: dict[int, int] = {}
        # RTCP sends under way (a task must be referenced until it ends).
        self._sending: set[asyncio.Future[None]] = set()

    def _start(self) -> dict[int, tuple[int, int | None]]:
        receiver = self._receiver
        codecs: dict[int, RTCRtpCodecParameters] = getattr(receiver, _RECEIVER_CODECS)
        found: dict[int, tuple[int, int | None]] = {}
        rtx = rtx_payload_types(receiver)
        for pt, codec in codecs.items():
            if codec.name.lower() == "rtx":
                if pt in rtx and rtx[pt] in codecs:
                    found[pt] = (codec.clockRate, rtx[pt])
            else:
                found[pt] = (codec.clockRate, None)
        self._rtx_ssrc = getattr(receiver, _RTX_SSRC)
        self._streams = getattr(receiver, _REMOTE_STREAMS)
        self._active = getattr(receiver, _ACTIVE_SSRC)
        self._estimator = getattr(receiver, _BITRATE_ESTIMATOR)
        # aiortc sends NACKs for video only; its estimator exists for video only.
        self._nack = self._estimator is not None
        self._codecs = found
        return found

    async def handle(self, packet: RtpPacket, arrival_time_ms: int) -> None:
        """The DTLS transport's call for each RTP packet routed to this receiver (when
        :func:`take_over_rtp_input` did not take it first)."""
        self.receive(packet, arrival_time_ms)

    def receive(self, packet: RtpPacket, arrival_time_ms: int) -> None:
        """Handle one RTP packet; ``arrival_time_ms`` is on aiortc's clock (NTP era, for
        its bitrate estimator). RTCP it causes (NACK, REMB) is sent in a task."""
        receiver = self._receiver
        if not receiver._enabled:
            return
        codecs = self._codecs or self._start()
        known = codecs.get(packet.payload_type)
        if known is None:
            return
        now = time.monotonic()
        ssrc = packet.ssrc
        stream = self._streams.get(ssrc)
        if stream is None:
            stream = self._streams[ssrc] = ReceivedStream(known[0])
        stream.count(packet.sequence_number, packet.timestamp, now)
        if now - stream.announced >= 1.0:
            # For getSynchronizationSources(), which looks back 10 s: once a second.
            stream.announced = now
            self._active[ssrc] = aiortc_clock.current_datetime()
        estimator = self._estimator
        if estimator is not None and packet.extensions.abs_send_time is not None:
            remb = estimator.add(
                abs_send_time=packet.extensions.abs_send_time,
                arrival_time_ms=arrival_time_ms,
                payload_size=len(packet.payload) + packet.padding_size,
                ssrc=ssrc,
            )
            if remb is not None:
                self._send(self._remb(*remb))
        apt = known[1]
        if apt is not None:
            original = self._rtx_ssrc.get(ssrc) or self._repaired(packet)
            if original is None or len(packet.payload) < 2:
                return  # padding on the RTX stream (a bandwidth probe), or nothing to repair
            packet = unwrap_rtx(packet, payload_type=apt, ssrc=original)
        else:
            rid = packet.extensions.rtp_stream_id
            if rid is not None:
                self._rid_ssrc[rid] = ssrc
            if self._media_ssrc is None:
                self._media_ssrc = ssrc
        if self._nack:
            missing = self._missing.get(packet.ssrc)
            if missing is None:
                missing = self._missing[packet.ssrc] = _MissingPackets()
            if missing.add(packet.sequence_number):
                self._send(receiver._send_rtcp_nack(packet.ssrc, sorted(missing.missing)))
        self._on_packet(packet)

    def _repaired(self, packet: RtpPacket) -> int | None:
        """The media SSRC an RTX packet repairs: a simulcast layer's, by the repaired rid
        its first packets carry, else the one media SSRC seen."""
        original = self._repairs.get(packet.ssrc)
        if original is None:
            rid = packet.extensions.repaired_rtp_stream_id
            original = self._rid_ssrc.get(rid) if rid is not None else None
            if original is None:
                return self._media_ssrc
            self._repairs[packet.ssrc] = original
        return original

    def _send(self, rtcp: Coroutine[Any, Any, None]) -> None:
        task = asyncio.ensure_future(rtcp)
        self._sending.add(task)
        task.add_done_callback(self._sending.discard)

    async def _remb(self, bitrate: int, ssrcs: list[int]) -> None:
        rtcp_ssrc = getattr(self._receiver, _RTCP_SSRC)
        if rtcp_ssrc is not None:
            await self._receiver._send_rtcp(
                RtcpPsfbPacket(
                    fmt=RTCP_PSFB_APP,
                    ssrc=rtcp_ssrc,
                    media_ssrc=0,
                    fci=pack_remb_fci(bitrate, ssrcs),
                )
            )


def take_over_receiver(receiver: RTCRtpReceiver, on_packet: PacketCallback) -> PacketReceiver:
    """Handle the receiver's RTP packets with a :class:`PacketReceiver` from now on; no
    frame is assembled and no decoder runs. Call before the receiver starts.
    ``on_packet`` gets each media packet (RTX unwrapped) on the event loop."""
    # The decoder thread starts with the receiver: it finds the sink and ends at once.
    tap_receiver(receiver, lambda codec, frame: None)
    handler = PacketReceiver(receiver, on_packet)
    # The DTLS transport looks the handler up on the instance for every packet.
    receiver._handle_rtp_packet = handler.handle  # type: ignore[method-assign]
    return handler


def take_over_rtp_input(pc: RTCPeerConnection) -> None:
    """Handle the SRTP and SRTCP packets that reach ``pc``'s ICE sockets right there. Call
    after gathering (the sockets exist); again after a renegotiation does no harm.

    aiortc's way costs two turns of the event loop and four coroutines per packet:
    aioice parses every datagram as STUN first (a raised exception for each RTP or RTCP
    packet), queues it, then the DTLS transport's task takes it from the queue, reads the
    time as a ``datetime``, unprotects, parses and awaits the receiver's or sender's
    handler. Here the packet is unprotected, parsed and routed with the DTLS transport's
    own session, extension map and router, in the socket's callback: RTP that goes to a
    :class:`PacketReceiver` is handled at once, and each RTCP packet goes to aiortc's own
    handler of the sender or receiver it is for, run at once (:func:`run_eagerly`).
    Anything else (STUN, DTLS, SRTP before the handshake, or while aioice's queue holds
    earlier data) goes the usual way.
    """
    transports = {id(t.receiver.transport): t.receiver.transport for t in pc.getTransceivers()}
    for dtls in transports.values():
        connection = dtls.transport.iceGatherer._connection
        for protocol in connection._protocols:
            if getattr(protocol, _RTP_INPUT, False):
                continue
            setattr(protocol, _RTP_INPUT, True)
            _take_rtp_input(protocol, connection, dtls)


_RTP_INPUT = "_visio_rtp_input"
#: What take_over_rtp_input reads on an RTCDtlsTransport (all set in its __init__).
DTLS_RECEIVE_ATTRIBUTES = (
    "_rx_srtp",
    "_rtp_router",
    "_rtp_header_extensions_map",
    "_RTCDtlsTransport__rx_bytes",
    "_RTCDtlsTransport__rx_packets",
)
_NTP_MS_OFFSET = 2208988800 * 1000  # aiortc's arrival times count from 1900


def _take_rtp_input(protocol: Any, connection: Any, dtls: Any) -> None:
    handle = protocol.datagram_received
    queue: asyncio.Queue[Any] = connection._queue
    router = dtls._rtp_router
    extensions = dtls._rtp_header_extensions_map
    own_handler = PacketReceiver.handle
    handling: set[asyncio.Future[None]] = set()

    def datagram_received(data: bytes, addr: tuple[Any, ...]) -> None:
        session = dtls._rx_srtp
        if session is None or len(data) < 12 or not 127 < data[0] < 192 or not queue.empty():
            handle(data, addr)
            return
        dtls._RTCDtlsTransport__rx_bytes += len(data)
        dtls._RTCDtlsTransport__rx_packets += 1
        if 192 <= data[1] <= 223:  # RTCP
            try:
                reports = RtcpPacket.parse(session.unprotect_rtcp(data))
            except (pylibsrtp.Error, ValueError):
                return  # as aiortc: dropped
            for report in reports:
                for recipient in router.route_rtcp(report):
                    run_eagerly(recipient._handle_rtcp_packet(report), handling)
            return
        arrival_time_ms = int(time.time() * 1000) + _NTP_MS_OFFSET
        try:
            packet = RtpPacket.parse(session.unprotect(data), extensions)
        except (pylibsrtp.Error, ValueError):
            return  # as aiortc: a packet that fails authentication or parsing is dropped
        receiver = router.route_rtp(packet)
        if receiver is None:
            return
        handler = receiver._handle_rtp_packet
        if getattr(handler, "__func__", None) is own_handler:
            handler.__self__.receive(packet, arrival_time_ms)
        else:  # a handler wrapped since (a test's observe_rtp): aiortc's way
            task = asyncio.ensure_future(handler(packet, arrival_time_ms=arrival_time_ms))
            handling.add(task)
            task.add_done_callback(handling.discard)

    # The asyncio transport looks the handler up on the protocol for every datagram.
    protocol.datagram_received = datagram_received


def run_eagerly(coro: Coroutine[Any, Any, None], running: set[asyncio.Future[None]]) -> None:
    """Run a coroutine now, up to its first real wait; if it waits, a task finishes it
    (``running`` holds that task until it ends).

    aiortc's RTCP handlers are coroutines that hardly ever wait: running them at once
    instead of in a task saves a turn of the event loop per packet. What the coroutine
    raises before it waits is logged, as a task's failure would be.
    """
    try:
        waited = coro.send(None)
    except StopIteration:
        return
    except Exception:
        log.exception("An RTCP handler failed")
        return
    task = asyncio.ensure_future(_finish(coro, waited))
    running.add(task)
    task.add_done_callback(running.discard)


class _Resumed:
    """Awaitable that goes on with a coroutine already run up to a wait (``waited``,
    what it yielded): the task awaiting this sees the same waits as the coroutine."""

    __slots__ = ("_coro", "_waited")

    def __init__(self, coro: Coroutine[Any, Any, None], waited: Any) -> None:
        self._coro = coro
        self._waited = waited

    def __await__(self) -> Generator[Any, Any, None]:
        coro, waited = self._coro, self._waited
        while True:
            try:
                value = yield waited
            except BaseException as error:  # thrown into the task: pass it on
                try:
                    waited = coro.throw(error)
                except StopIteration:
                    return
            else:
                try:
                    waited = coro.send(value)
                except StopIteration:
                    return


async def _finish(coro: Coroutine[Any, Any, None], waited: Any) -> None:
    try:
        await _Resumed(coro, waited)
    except Exception:
        log.exception("An RTCP handler failed")


FrameOut = Callable[[bytes, int], None]


class FrameAssembler:
    """A track's encoded frames, reassembled from its packets on our side, only while
    something wants frames (a trunk, an in-process listener, a frame-path subscriber).

    Between :meth:`start` and :meth:`stop`, :meth:`add` depacketizes each packet and puts
    it in a jitter buffer of aiortc's (the one its receiver uses, with its sizes), which
    hands out complete frames; the first is a keyframe (video), as packets before the
    next keyframe's first are skipped. Frame timestamps count from the track's first
    frame, as :func:`tap_receiver`'s do, across stops and starts.
    """

    def __init__(self, codec: RTCRtpCodecParameters, video: bool, on_frame: FrameOut) -> None:
        self._codec = codec
        self._video = video
        self._on_frame = on_frame
        self._timestamps = TimestampMapper()
        self._buffer: JitterBuffer | None = None
        self.active = False
        #: Frames assembled so far.
        self.frames = 0

    def start(self) -> None:
        """Assemble frames from the next keyframe (video) or packet (audio) on."""
        self.active = True
        self._buffer = None

    def stop(self) -> None:
        self.active = False
        self._buffer = None

    def add(self, packet: RtpPacket, keyframe: bool) -> bool:
        """One packet of the track (``keyframe``: it begins one); true when frames were
        lost, so that a keyframe should be asked for."""
        buffer = self._buffer
        if buffer is None:
            if not self.active or not keyframe:
                return False
            buffer = self._buffer = (
                JitterBuffer(capacity=512, is_video=True)
                if self._video
                else JitterBuffer(capacity=16, prefetch=4)
            )
        try:
            packet._data = depayload(self._codec, packet.payload) if packet.payload else b""  # type: ignore[attr-defined]
        except ValueError:
            return False
        lost, frame = buffer.add(packet)
        if frame is not None:
            self.frames += 1
            self._on_frame(frame.data, self._timestamps.map(frame.timestamp))
        return lost


_MID = "urn:ietf:params:rtp-hdrext:sdes:mid"
_ABS_SEND_TIME = "http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time"
_AUDIO_LEVEL = "urn:ietf:params:rtp-hdrext:ssrc-audio-level"


class SendParameters:
    """What a sender negotiated, as the packet path needs it (known once it starts)."""

    __slots__ = (
        "abs_send_time_id",
        "audio_level_id",
        "mid",
        "mid_id",
        "payload_type",
        "rtx_payload_type",
        "rtx_ssrc",
        "ssrc",
    )

    def __init__(self, sender: RTCRtpSender, parameters: Any) -> None:
        media = parameters.codecs[0]
        self.payload_type: int = media.payloadType
        self.rtx_payload_type: int | None = next(
            (
                c.payloadType
                for c in parameters.codecs
                if c.name.lower() == "rtx" and c.parameters.get("apt") == media.payloadType
            ),
            None,
        )
        self.ssrc: int = sender._ssrc
        self.rtx_ssrc: int = sender._rtx_ssrc
        self.mid: str = parameters.muxId
        ids = {ext.uri: ext.id for ext in parameters.headerExtensions}
        self.mid_id: int | None = ids.get(_MID)
        self.abs_send_time_id: int | None = ids.get(_ABS_SEND_TIME)
        self.audio_level_id: int | None = ids.get(_AUDIO_LEVEL)


#: (ntp_timestamp, rtp_timestamp, packet_count, octet_count) for a sender report.
SenderInfo = tuple[int, int, int, int]


def take_over_sender(
    sender: RTCRtpSender,
    on_started: Callable[[SendParameters], None],
    retransmit: Callable[[int], bool],
) -> None:
    """Let the router write this sender's RTP and RTCP sender reports itself.

    Call before the sender starts. ``on_started`` gets what was negotiated when it starts.
    A NACK asks ``retransmit(seq)`` first (true: handled), then aiortc's history.
    aiortc's RTCP task for the sender no longer wakes up every second to send a report
    of the packets it sent itself (none): the router sends reports with its own figures
    (:meth:`RtpOutput.send_report`) as its packets go out, in the same turn of the event
    loop. The task stays, idle, to send the RTCP BYE when the sender stops.
    """
    start: Callable[..., Awaitable[None]] = sender.send
    original_retransmit: Callable[[int], Awaitable[None]] = sender._retransmit
    send_rtcp: Callable[[list[Any]], Awaitable[None]] = sender._send_rtcp
    started: asyncio.Event = getattr(sender, _SENDER_RTCP_STARTED)
    exited: asyncio.Event = getattr(sender, _SENDER_RTCP_EXITED)

    async def send(parameters: Any) -> None:
        await start(parameters)
        on_started(SendParameters(sender, parameters))

    async def retransmit_packet(sequence_number: int) -> None:
        if not retransmit(sequence_number):
            await original_retransmit(sequence_number)

    async def run_rtcp() -> None:
        # What aiortc's _run_rtcp does, without its report every 0.5 to 1.5 s.
        started.set()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.get_running_loop().create_future()  # until stop() cancels
        await send_rtcp([RtcpByePacket(sources=[sender._ssrc])])
        exited.set()

    # aiortc looks each of these up on the instance when it uses them.
    sender.send = send  # type: ignore[method-assign]
    sender._retransmit = retransmit_packet  # type: ignore[method-assign]
    sender._run_rtcp = run_rtcp  # type: ignore[method-assign]


_SENDER_RTCP_STARTED = "_RTCRtpSender__rtcp_started"
_SENDER_RTCP_EXITED = "_RTCRtpSender__rtcp_exited"
#: The sender's CNAME and last sender report (middle 32 bits of its NTP time, and when
#: it went), from which aiortc works out the round-trip time when a receiver report
#: comes back.
_SENDER_CNAME = "_RTCRtpSender__cname"
_SENDER_LSR = "_RTCRtpSender__lsr"
_SENDER_LSR_TIME = "_RTCRtpSender__lsr_time"
_INSTANCE_ATTRIBUTES |= {
    _SENDER_RTCP_STARTED,
    _SENDER_RTCP_EXITED,
    _SENDER_CNAME,
    _SENDER_LSR,
    _SENDER_LSR_TIME,
}


# What RtpOutput.send() says happened to a packet.
SENT, NOT_CONNECTED, FULL = 0, 1, 2

_MAX_RTP = 1500
_srtp_protect = _srtp_lib.srtp_protect
_srtp_protect_rtcp = _srtp_lib.srtp_protect_rtcp
_SRTP_TRAILER = 16 + 4 + 128  # pylibsrtp's SRTP_MAX_SRTCP_TRAILER_LEN (SRTP's is less)


class RtpOutput:
    """Protects RTP (and RTCP) packets and writes them to one sender's connection,
    synchronously.

    aiortc's path (``RTCDtlsTransport._send_rtp`` then aioice's ``sendto`` chain) costs
    three coroutines and a copy per packet; here the packet is copied once into a buffer
    kept for the connection's life, protected there by libsrtp with the connection's own
    SRTP session, and handed to the socket of the nominated ICE pair. A relayed (TURN)
    pair goes through aioice, which must wrap it.
    """

    __slots__ = (
        "_addr",
        "_cdata",
        "_dtls",
        "_ice",
        "_length",
        "_pair",
        "_relayed",
        "_sender",
        "_sendto",
        "_session",
        "_srtp",
        "_view",
    )

    def __init__(self, sender: RTCRtpSender) -> None:
        self._sender = sender
        self._dtls: Any = None
        self._ice: Any = None
        self._pair: Any = None
        self._session: Any = None
        self._srtp: Any = None
        self._sendto: Any = None
        self._addr: Any = None
        self._cdata = _srtp_ffi.new("char[]", _MAX_RTP + _SRTP_TRAILER)
        self._view = memoryview(_srtp_ffi.buffer(self._cdata)).cast("B")
        self._length = _srtp_ffi.new("int *")
        # Sends through aioice (relayed pairs) still under way.
        self._relayed: set[asyncio.Future[None]] = set()

    @property
    def connected(self) -> bool:
        """Whether packets can go out now (DTLS is up, so SRTP keys are known)."""
        return self._sender.transport._state is _CONNECTED_STATE

    def send(self, header: bytes, payload: bytes, protect: Any = _srtp_protect) -> int:
        """Send one RTP packet, given as its header (extensions included) and payload,
        which are copied into the buffer side by side: :data:`SENT`,
        :data:`NOT_CONNECTED` (nothing sent), or :data:`FULL` (the socket's buffer is
        full, or the packet too big: it is lost). ``protect``: libsrtp's function
        (``srtp_protect_rtcp`` for an RTCP packet, given whole as ``header``)."""
        dtls = self._dtls
        if (dtls is None or dtls._state is not _CONNECTED_STATE) and not self._look_up():
            return NOT_CONNECTED
        pair = self._ice._nominated.get(1)
        if pair is None:
            return NOT_CONNECTED
        if pair is not self._pair:
            self._use(pair)
        split = len(header)
        size = split + len(payload)
        if size > _MAX_RTP:
            return FULL
        view = self._view
        view[:split] = header
        view[split:size] = payload
        length = self._length
        length[0] = size
        if protect(self._srtp, self._cdata, length):
            return FULL
        protected = view[: length[0]]
        sendto = self._sendto
        if sendto is None:
            relayed = asyncio.ensure_future(pair.protocol.send_data(bytes(protected), self._addr))
            self._relayed.add(relayed)
            relayed.add_done_callback(self._relayed.discard)
            return SENT
        try:
            sendto(protected, self._addr)
        except (BlockingIOError, InterruptedError):
            return FULL
        except OSError:
            return NOT_CONNECTED
        return SENT

    def send_report(self, info: SenderInfo) -> int:
        """Send an RTCP sender report (and the sender's SDES CNAME, as aiortc does) with
        ``info``, now; as :meth:`send` says. Replies to it give aiortc's round-trip time."""
        sender = self._sender
        ntp, rtp, count, octets = info
        packets: list[Any] = [
            RtcpSrPacket(
                ssrc=sender._ssrc,
                sender_info=RtcpSenderInfo(
                    ntp_timestamp=ntp,
                    rtp_timestamp=rtp,
                    packet_count=count & 0xFFFFFFFF,
                    octet_count=octets & 0xFFFFFFFF,
                ),
            )
        ]
        cname = getattr(sender, _SENDER_CNAME)
        if cname is not None:
            packets.append(
                RtcpSdesPacket(
                    chunks=[RtcpSourceInfo(ssrc=sender._ssrc, items=[(1, cname.encode())])]
                )
            )
        outcome = self.send(b"".join(bytes(p) for p in packets), b"", _srtp_protect_rtcp)
        if outcome == SENT:
            setattr(sender, _SENDER_LSR, (ntp >> 16) & 0xFFFFFFFF)
            setattr(sender, _SENDER_LSR_TIME, time.time())
        return outcome

    def _look_up(self) -> bool:
        """Whether DTLS is up; if so, take its SRTP session and ICE connection. The
        sender's transport may have changed (bundling) since it was last looked up."""
        dtls = self._sender.transport
        if dtls._state is not _CONNECTED_STATE:
            return False
        self._dtls = dtls
        self._ice = dtls.transport.iceGatherer._connection
        # The SRTP session is made once DTLS is up, and lives as long as it.
        self._session = dtls._tx_srtp
        self._srtp = self._session._srtp[0]
        return True

    def _use(self, pair: Any) -> None:
        self._pair = pair
        self._addr = pair.remote_addr
        protocol = pair.protocol
        transport = getattr(protocol, "transport", None)
        plain = type(protocol) is aioice.ice.StunProtocol and transport is not None
        sock = getattr(transport, "_sock", None) if plain else None
        self._sendto = None if sock is None else sock.sendto


def _connected_state() -> Any:
    from aiortc.rtcdtlstransport import State

    return State.CONNECTED


_CONNECTED_STATE = _connected_state()


def ntp_time() -> int:
    """The wall clock as a 64-bit NTP timestamp, without aiortc's ``datetime`` round trip."""
    return int((time.time() + _NTP_EPOCH_OFFSET) * 4294967296.0)


_NTP_EPOCH_OFFSET = 2208988800  # seconds from 1900-01-01 to 1970-01-01
