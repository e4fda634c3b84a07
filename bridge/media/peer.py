"""Peer connections as the media layer makes them: explicit ICE servers, chosen host
addresses, one bundled transport."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from aiortc import (
    RTCBundlePolicy,
    RTCConfiguration,
    RTCIceCandidate,
    RTCIceServer,
    RTCPeerConnection,
    RTCSessionDescription,
)

from . import aiortc_hooks
from .clock import Clock


def new_peer_connection(ice_servers: Sequence[RTCIceServer]) -> RTCPeerConnection:
    """A peer connection that uses exactly ``ice_servers`` (aiortc's default is public).

    Max-bundle gives one ICE and DTLS transport per connection, so one socket, one
    gathering and one handshake, however many tracks it carries.
    """
    pc = RTCPeerConnection(
        RTCConfiguration(iceServers=list(ice_servers), bundlePolicy=RTCBundlePolicy.MAX_BUNDLE)
    )
    aiortc_hooks.restart_media_when_connected(pc)
    return pc


def on_connection_lost(
    pc: RTCPeerConnection, still_current: Callable[[], bool], lost: Callable[[], None]
) -> None:
    """Call ``lost`` when ``pc`` fails or closes while ``still_current()`` holds.

    aiortc reports a vanished peer as "failed" or "closed" depending on which of its
    transports notices first, so both mean the same here.
    """

    @pc.on("connectionstatechange")
    def on_state() -> None:
        if still_current() and pc.connectionState in ("failed", "closed"):
            lost()


def on_never_connected(
    pc: RTCPeerConnection,
    clock: Clock,
    timeout: float,
    still_current: Callable[[], bool],
    lost: Callable[[], None],
) -> None:
    """Call ``lost`` when ``pc`` has not connected ``timeout`` seconds after it was made.

    A client that never sends connectivity checks (it died, or named no address the
    SFU will check) would otherwise hold its connection, and its place, for ever: with
    no trickle ICE and no end-of-candidates, aioice waits on.
    """

    def check() -> None:
        if still_current() and pc.connectionState != "connected":
            lost()

    timer = clock.call_later(timeout, check)

    @pc.on("connectionstatechange")
    def on_state() -> None:
        if pc.connectionState in ("connected", "closed", "failed"):
            timer.cancel()


async def set_local_description(
    pc: RTCPeerConnection,
    description: RTCSessionDescription,
    host_addresses: Sequence[str] | None,
    gathering_timeout: float = 1.0,
    ports: tuple[int, int] | None = None,
) -> None:
    """``pc.setLocalDescription`` with ICE host candidates on ``host_addresses`` only.

    ``None`` lets aioice choose (every interface but loopback). STUN/TURN candidates are
    waited for at most ``gathering_timeout`` seconds: aiortc has no trickle ICE, so this
    wait is part of every offer and answer. ``ports`` keeps host sockets in a range.
    """
    await aiortc_hooks.gather_candidates(pc, host_addresses, gathering_timeout, ports)
    await pc.setLocalDescription(description)


#: Trickled candidates kept for a connection whose remote description is not in yet.
MAX_EARLY_CANDIDATES = 32


class TrickledCandidates:
    """The candidates a client trickles for one connection. Those that come before the
    description they belong to is applied are kept (at most
    :data:`MAX_EARLY_CANDIDATES`) and added by :meth:`flush` once it is."""

    def __init__(self) -> None:
        self._early: list[RTCIceCandidate] = []

    async def add(self, pc: RTCPeerConnection | None, candidate: RTCIceCandidate) -> None:
        if pc is None or pc.remoteDescription is None:
            if len(self._early) < MAX_EARLY_CANDIDATES:
                self._early.append(candidate)
            return
        await add_remote_candidate(pc, candidate)

    async def flush(self, pc: RTCPeerConnection) -> None:
        """Add the kept candidates, right after the remote description was set."""
        early, self._early = self._early, []
        for candidate in early:
            await add_remote_candidate(pc, candidate)


async def add_remote_candidate(pc: RTCPeerConnection, candidate: RTCIceCandidate) -> None:
    """Add a trickled remote candidate to ``pc``'s one (bundled) ICE transport.

    Whatever section the client named, the candidate goes to the transport the bundle
    shares: aiortc adds it only for the section that owns that transport, so it is
    handed over once under each section's mid and lands exactly once.
    """
    mids = [t.mid for t in pc.getTransceivers()]
    if pc.sctp is not None:
        mids.append(pc.sctp.mid)
    for mid in dict.fromkeys(m for m in mids if m is not None):
        candidate.sdpMid = mid
        candidate.sdpMLineIndex = None
        try:
            await pc.addIceCandidate(candidate)
        except ValueError:
            return  # after end-of-candidates: the client said it had no more


async def close_peer_connection(pc: RTCPeerConnection) -> None:
    """Close ``pc`` and everything it started (see :mod:`bridge.media.aiortc_hooks`)."""
    await aiortc_hooks.close_peer_connection(pc)
