"""Settings of the media layer (one object per bridge, shared by its routers)."""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass, field

from aiortc import RTCIceServer

SUPPORTED_VIDEO_CODECS = ("VP8", "H264")


@dataclass(frozen=True)
class MediaSettings:
    """How routers connect peers and forward media.

    ``ice_servers`` is passed to every peer connection as is: aiortc's default would be a
    public STUN server, so the default here is none. ``host_addresses`` lists the local
    addresses offered as ICE host candidates (``["127.0.0.1"]`` for a loopback-only
    machine or test); ``None`` keeps aioice's choice, every interface but loopback.
    """

    ice_servers: Sequence[RTCIceServer] = field(default_factory=tuple)
    host_addresses: Sequence[str] | None = None
    #: The UDP ports (low, high) host sockets are bound in, for a firewall; None: any.
    udp_ports: tuple[int, int] | None = None
    #: Longest wait for STUN/TURN candidates in an offer or answer. aiortc has no trickle
    #: ICE, so every join waits for them; aioice alone would wait up to 5 s for a STUN
    #: server that does not answer.
    ice_gathering_timeout: float = 1.0
    #: Video codecs accepted from publishers, in order of preference. The first one a
    #: publisher offers is the only one answered, so subscribers get that codec too.
    video_codecs: Sequence[str] = SUPPORTED_VIDEO_CODECS
    #: Largest SDP offer accepted from a client, in bytes.
    max_sdp_bytes: int = 64 * 1024
    #: Most media sections (m-lines) in a publish offer.
    max_publish_sections: int = 8
    #: Least time between two keyframe requests (PLI) sent to one published track.
    keyframe_request_interval: float = 0.3
    #: Frames buffered per subscription before a slow subscriber skips to a keyframe.
    subscription_queue_frames: int = 30
    #: Time a client has to answer a server offer before its media is closed.
    answer_timeout: float = 30.0
    #: Time a new connection has to connect (ICE and DTLS) before it is closed.
    connect_timeout: float = 30.0
    #: RFC 6464 level (-dBov, 0 is loudest) at or under which a participant speaks.
    speaking_level_dbov: int = 50
    #: How long a new loudest speaker must stay ahead before becoming active speaker.
    speaker_switch_delay: float = 0.5
    #: Whether ICE candidates of clients on loopback, private (RFC 1918, fc00::/7, CGNAT
    #: 100.64/10) and link-local addresses are used. Off, the server never sends checks to
    #: such an address because an SDP named it; clients on them still connect through the
    #: checks they send (peer-reflexive candidates). See :mod:`bridge.media.sdp_rules`.
    allow_private_candidates: bool = False
    #: Whether subscribers get a local publisher's RTP packets one by one, rewritten and
    #: sent from the publisher's packet handler (:mod:`bridge.media.rtp_forward`), instead
    #: of frames through a queue and an aiortc sender per subscriber (False: the frame
    #: path of earlier releases). Tracks that come over a trunk, and in-process listeners,
    #: take frames either way.
    packet_forwarding: bool = True

    def __post_init__(self) -> None:
        object.__setattr__(self, "ice_servers", tuple(self.ice_servers))
        if self.host_addresses is not None:
            if isinstance(self.host_addresses, str):
                raise ValueError("host_addresses must be a list of addresses, not a string")
            for address in self.host_addresses:
                ipaddress.ip_address(address)  # raises ValueError with the bad address
            object.__setattr__(self, "host_addresses", tuple(self.host_addresses))
        if self.udp_ports is not None:
            low, high = self.udp_ports
            if not 1024 <= low <= high <= 65535:
                raise ValueError("udp_ports must be (low, high) with 1024 <= low <= high <= 65535")
            object.__setattr__(self, "udp_ports", (int(low), int(high)))
        codecs = tuple(self.video_codecs)
        unknown = [c for c in codecs if c not in SUPPORTED_VIDEO_CODECS]
        if not codecs or unknown:
            raise ValueError(
                f"video_codecs must be chosen from {', '.join(SUPPORTED_VIDEO_CODECS)}"
            )
        object.__setattr__(self, "video_codecs", codecs)
        for name in ("max_sdp_bytes", "max_publish_sections", "subscription_queue_frames"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be positive")
        for name in (
            "ice_gathering_timeout",
            "keyframe_request_interval",
            "answer_timeout",
            "connect_timeout",
            "speaker_switch_delay",
        ):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be positive")
        for flag in ("allow_private_candidates", "packet_forwarding"):
            if not isinstance(getattr(self, flag), bool):
                raise ValueError(f"{flag} must be True or False")
        if not 0 <= self.speaking_level_dbov <= 127:
            raise ValueError("speaking_level_dbov must be between 0 and 127")
