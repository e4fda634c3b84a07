"""Peer connections as the media layer makes them: explicit ICE servers, chosen host
addresses, one bundled transport."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from aiortc import (
    RTCBundlePolicy,
    RTCConfiguration,
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
    return RTCPeerConnection(
        RTCConfiguration(iceServers=list(ice_servers), bundlePolicy=RTCBundlePolicy.MAX_BUNDLE)
    )


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


async def close_peer_connection(pc: RTCPeerConnection) -> None:
    """Close ``pc`` and everything it started (see :mod:`bridge.media.aiortc_hooks`)."""
    await aiortc_hooks.close_peer_connection(pc)
