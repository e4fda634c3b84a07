"""Checks on the SDP that browsers send, before any of it reaches aiortc.

A client's SDP is untrusted input. Everything here raises :class:`MediaError` with a plain
message, never anything else, and touches nothing but the text it is given.

Publish offers are also narrowed down: each audio section keeps only Opus, each video
section only the first codec of :attr:`MediaSettings.video_codecs` it offers (with its
RTX), so the publisher can only send what every subscriber is then offered.

ICE candidates (offers and answers alike) are kept only where the server may send its
connectivity checks, so that an SDP cannot make it probe addresses it should not:

- the address must be an IP literal: mDNS (``.local``) names are never resolved, as that
  sends multicast, and other names would need DNS;
- the address must not be unspecified, multicast, reserved or otherwise not globally
  routable, nor (unless :attr:`MediaSettings.allow_private_candidates`) loopback, private
  (RFC 1918, fc00::/7, CGNAT 100.64/10) or link-local; IPv6 addresses that embed an IPv4
  one (``::ffff:a.b.c.d``, NAT64 ``64:ff9b::``) fall under "reserved", 6to4 addresses
  (``2002::/16``) are judged by the IPv4 address they embed;
- it must be a UDP candidate of component 1 (RTCP is multiplexed) of a type aioice uses
  (host, srflx, relay), with a port from 1 to 65535.

Dropping candidates never refuses an SDP, even when none is left: the client's own
checks reach the server's candidates, and the server answers them where they came from
(a peer-reflexive candidate, authenticated by the ICE password, as an ICE-lite server
would). That is how a client behind NAT without a STUN server, whose only candidates are
private addresses, connects at all. A section left without candidates loses
``a=end-of-candidates``, or aioice would give up at once instead of waiting for those
checks; until they come, the server does not declare that connection failed by itself
(it closes when the participant leaves).

A trunk (the one connection between two bridges for a meeting, see
:mod:`bridge.media.trunk`) is checked by :func:`check_trunk_offer` and
:func:`check_trunk_answer`: every section bundled and ``sendrecv``, no more sections of a
kind than the trunk's limits, one codec per section as above, and exactly one data
channel section.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import re
from collections.abc import Sequence
from dataclasses import dataclass

from aiortc import RTCIceCandidate, RTCRtpSender, sdp
from aiortc.codecs import CODECS, is_rtx
from aiortc.rtcdtlstransport import X509_DIGEST_ALGORITHMS
from aiortc.rtcpeerconnection import is_codec_compatible
from aiortc.rtcrtpparameters import RTCRtpCodecCapability, RTCRtpCodecParameters

from .errors import MediaError
from .settings import MediaSettings

_SENDING = ("sendonly", "sendrecv")
# An answer holds one section per offered track: allow for large meetings.
_ANSWER_BYTES_PER_SECTION = 2048
# Where clients sit inside a network: used only with allow_private_candidates. Listed here
# rather than taken from ipaddress's is_private, whose ranges changed between Python
# releases and include documentation and benchmarking ranges.
_PRIVATE_NETWORKS = tuple(
    ipaddress.ip_network(network)
    for network in (
        "127.0.0.0/8",  # loopback
        "10.0.0.0/8",  # RFC 1918
        "172.16.0.0/12",
        "192.168.0.0/16",
        "100.64.0.0/10",  # carrier-grade NAT (RFC 6598)
        "169.254.0.0/16",  # link-local
        "::1/128",
        "fc00::/7",  # unique local
        "fe80::/10",  # link-local
        "fec0::/10",  # the old site-local
    )
)
# The candidate types aioice pairs (it refuses others, prflx included, when added).
_CANDIDATE_TYPES = ("host", "srflx", "relay")


@dataclass(frozen=True, slots=True)
class SdpSection:
    """What the router needs to know about one media section of a checked SDP."""

    mid: str
    kind: str
    #: Whether the remote side sends media in this section.
    sending: bool
    #: The one codec left in the section (payload type as the remote side numbers it).
    codec: RTCRtpCodecParameters
    #: The remote side's media SSRC, when the section declares one (``a=ssrc``).
    ssrc: int | None
    #: The simulcast layers the remote side sends in this section (RFC 8853 rids),
    #: lowest first; empty without simulcast.
    rids: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class CheckedSdp:
    """An SDP that passed the checks, rewritten for aiortc."""

    sdp: str
    sections: tuple[SdpSection, ...]


def check_publish_offer(
    text: object, settings: MediaSettings, data_channels: bool = False
) -> CheckedSdp:
    """Check a client's offer on its publish connection and keep only supported codecs.

    With ``data_channels``, one SCTP section (``m=application``, data channels) is
    accepted too; it is left out of the returned sections, which are media only.
    """
    description = _parse(text, settings.max_sdp_bytes, "offer")
    if len(description.media) > settings.max_publish_sections:
        raise MediaError(
            f"The offer has {len(description.media)} media sections; "
            f"at most {settings.max_publish_sections} are allowed."
        )
    applications = [m for m in description.media if m.kind == "application"]
    if applications and (not data_channels or len(applications) > 1):
        raise MediaError(
            "Data channels are not supported here."
            if not data_channels
            else "The offer may hold one data channel section at most."
        )
    sections = []
    for media in description.media:
        if media.kind == "application":
            _check_data_channels(media, settings)
            continue
        if media.port == 0:
            # A stopped transceiver: answer it as inactive, on the bundle's transport.
            _borrow_transport(media, description)
            media.direction = "inactive"
        _check_transport(media, settings)
        sections.append(_section(media, _narrow_codecs(media, settings)))
    layers = simulcast_layers(str(text))
    sections = [
        dataclasses.replace(s, rids=layers.get(s.mid, ())) if s.kind == "video" else s
        for s in sections
    ]
    return CheckedSdp(_serialize(description), tuple(sections))


#: The most simulcast layers taken from one video section (livekit-client and browsers
#: send three at most).
MAX_LAYERS = 3
_RID = re.compile(r"[A-Za-z0-9_-]{1,16}")
#: livekit-client's rids, lowest first (its offers list them in that order too).
_LIVEKIT_RIDS = "qhf"


def simulcast_layers(text: str) -> dict[str, tuple[str, ...]]:
    """The simulcast layers each section of an offer sends, by mid, lowest first: the
    rids of ``a=simulcast:send`` (first alternative of each, paused ones left out) that
    an ``a=rid:<id> send`` declares. Sections with fewer than two, or more than
    :data:`MAX_LAYERS`, or anything malformed, get none (one layer flows)."""
    found: dict[str, tuple[str, ...]] = {}
    for section in text.replace("\r\n", "\n").split("\nm=")[1:]:
        mid = None
        declared: set[str] = set()
        listed: list[str] = []
        for line in section.split("\n"):
            if line.startswith("a=mid:"):
                mid = line[6:].strip()
            elif line.startswith("a=rid:"):
                rid, _, rest = line[6:].partition(" ")
                if rest.split(" ", 1)[0] == "send" and _RID.fullmatch(rid):
                    declared.add(rid)
            elif line.startswith("a=simulcast:send "):
                streams = line[len("a=simulcast:send ") :].split(" ", 1)[0]
                listed = [alt.split(",")[0] for alt in streams.split(";")]
        rids = tuple(r for r in listed if r in declared)
        if mid is None or not 2 <= len(rids) <= MAX_LAYERS or len(set(rids)) != len(rids):
            continue
        if all(r in _LIVEKIT_RIDS for r in rids):
            rids = tuple(sorted(rids, key=_LIVEKIT_RIDS.index))
        found[mid] = rids
    return found


def add_simulcast_recv(answer: str, layers: dict[str, tuple[str, ...]]) -> str:
    """The answer, with each simulcast section's layers accepted (``a=rid:<id> recv``,
    ``a=simulcast:recv``), so that the publisher sends them all (aiortc writes no
    simulcast lines of its own)."""
    if not layers:
        return answer
    out: list[str] = []
    mid = ""
    for line in answer.split("\r\n"):
        if line.startswith("m=") and mid in layers:
            out += _simulcast_lines(layers[mid])
            mid = ""
        if line.startswith("a=mid:"):
            mid = line[6:].strip()
        out.append(line)
    if mid in layers:
        # The last section: before the final empty line.
        tail = out.pop() if out and out[-1] == "" else None
        out += _simulcast_lines(layers[mid])
        if tail is not None:
            out.append(tail)
    return "\r\n".join(out)


def _simulcast_lines(rids: tuple[str, ...]) -> list[str]:
    return [f"a=rid:{rid} recv" for rid in rids] + [f"a=simulcast:recv {';'.join(rids)}"]


def check_answer(text: object, settings: MediaSettings, offered_sections: int) -> CheckedSdp:
    """Check a client's answer to a server offer on its receive connection."""
    limit = settings.max_sdp_bytes + _ANSWER_BYTES_PER_SECTION * offered_sections
    description = _parse(text, limit, "answer")
    if len(description.media) != offered_sections:
        raise MediaError(
            f"The answer has {len(description.media)} media sections but the offer had "
            f"{offered_sections}."
        )
    sections = []
    for media in description.media:
        if media.port == 0:
            _borrow_transport(media, description)  # a section the client rejected
        _check_transport(media, settings)
        assert media.dtls is not None
        if media.dtls.role not in ("client", "server"):
            raise MediaError("The answer must set a=setup to active or passive.")
        if not media.rtp.codecs:
            raise MediaError(f"The answer's section {media.rtp.muxId!r} has no codec.")
        sections.append(_section(media, media.rtp.codecs[0]))
    return CheckedSdp(_serialize(description), tuple(sections))


def check_trunk_offer(
    text: object, settings: MediaSettings, max_audio: int, max_video: int
) -> CheckedSdp:
    """Check another bridge's trunk offer and keep one codec per section.

    At most ``max_audio`` audio and ``max_video`` video sections, each ``sendrecv``, and
    one data channel section (left out of the returned sections, which are media only).
    """
    limit = settings.max_sdp_bytes + _ANSWER_BYTES_PER_SECTION * (max_audio + max_video)
    description = _parse(text, limit, "offer")
    kinds = [m.kind for m in description.media]
    audio, video = kinds.count("audio"), kinds.count("video")
    if audio > max_audio or video > max_video:
        raise MediaError(
            f"The trunk offer has {audio} audio and {video} video sections; at most "
            f"{max_audio} and {max_video} are allowed."
        )
    _check_one_data_channel_section(description, "offer")
    sections = []
    for media in description.media:
        if media.kind == "application":
            _check_data_channels(media, settings)
            continue
        _check_trunk_section(media, settings, "offer")
        # The offer's order: each section says which codec its slot is for.
        sections.append(_section(media, _narrow_codecs(media, settings, offer_order=True)))
    return CheckedSdp(_serialize(description), tuple(sections))


def check_trunk_answer(
    text: object, settings: MediaSettings, offered: Sequence[tuple[str, str]]
) -> CheckedSdp:
    """Check the answer to our trunk offer, whose sections were ``offered`` (mid, kind),
    in order and data channel section included. The returned sections are media only,
    each with the codec the answer chose."""
    limit = settings.max_sdp_bytes + _ANSWER_BYTES_PER_SECTION * len(offered)
    description = _parse(text, limit, "answer")
    if [(str(m.rtp.muxId), m.kind) for m in description.media] != list(offered):
        raise MediaError("The trunk answer's sections are not those of the offer.")
    _check_one_data_channel_section(description, "answer")
    sections = []
    for media in description.media:
        if media.kind == "application":
            _check_data_channels(media, settings)
        else:
            _check_trunk_section(media, settings, "answer")
        assert media.dtls is not None
        if media.dtls.role not in ("client", "server"):
            raise MediaError("The answer must set a=setup to active or passive.")
        if media.kind != "application":
            codecs = _choose_codecs(media, settings)
            if not codecs:
                raise MediaError(f"The answer's section {media.rtp.muxId!r} has no usable codec.")
            sections.append(_section(media, codecs[0]))
    return CheckedSdp(_serialize(description), tuple(sections))


def trunk_codec_preferences(
    kind: str, settings: MediaSettings, first: str | None = None
) -> list[RTCRtpCodecCapability]:
    """What a trunk offer's section offers: Opus for audio; for video ``first`` (by
    default the first of :attr:`MediaSettings.video_codecs`) with RTX, and after another
    codec the first one, which a host without it keeps instead (:func:`check_trunk_offer`
    keeps the offer's order). Nothing more: the offer must fit in a Matrix event."""
    primary = settings.video_codecs[0]
    if kind == "audio":
        names = ["opus"]
    else:
        first = first or primary
        names = [first] if first == primary else [first, primary]
    capabilities = RTCRtpSender.getCapabilities(kind).codecs
    # H.264 in aiortc's order (baseline first, as Chromium offers it and publishers thus
    # send it); the answer keeps one.
    chosen = [
        c for name in names for c in capabilities if c.mimeType.lower() == f"{kind}/{name}".lower()
    ]
    return chosen + [c for c in capabilities if c.mimeType.lower() == "video/rtx"]


def same_codec(a: RTCRtpCodecParameters, b: RTCRtpCodecParameters) -> bool:
    """Whether frames of codec ``a`` can be sent as codec ``b`` (same codec, and for
    H.264 the same profile and packetization mode)."""
    return is_codec_compatible(a, b)


def codec_preferences(codec: RTCRtpCodecParameters) -> list[RTCRtpCodecCapability]:
    """The codec preferences that make a sender offer exactly ``codec`` (and its RTX)."""
    kind = codec.mimeType.split("/")[0].lower()
    local = next(c for c in CODECS[kind] if not is_rtx(c) and is_codec_compatible(c, codec))
    capabilities = RTCRtpSender.getCapabilities(kind).codecs
    preferences = [
        c
        for c in capabilities
        if c.mimeType.lower() == local.mimeType.lower() and c.parameters == local.parameters
    ]
    return preferences + [c for c in capabilities if c.mimeType.lower() == "video/rtx"]


def _parse(text: object, limit: int, what: str) -> sdp.SessionDescription:
    if not isinstance(text, str):
        raise MediaError(f"The {what} must be SDP text.")
    if len(text.encode("utf-8", "surrogatepass")) > limit:
        raise MediaError(f"The {what} is larger than {limit // 1024} KiB.")
    if not text.startswith("v=0"):
        raise MediaError(f"The {what} is not SDP (it must start with v=0).")
    try:
        description = sdp.SessionDescription.parse(text)
    except Exception as error:  # aiortc's parser fails in many ways on garbage
        raise MediaError(f"The {what} could not be parsed as SDP.") from error
    if description.origin is None:
        description.origin = "- 0 0 IN IP4 0.0.0.0"
    if not description.media:
        raise MediaError(f"The {what} has no media sections.")
    mids = [m.rtp.muxId for m in description.media]
    if any(not mid for mid in mids) or len(set(mids)) != len(mids):
        raise MediaError(f"Every media section of the {what} needs its own a=mid.")
    bundle = next((g for g in description.group if g.semantic == "BUNDLE"), None)
    bundled = set(map(str, bundle.items)) if bundle is not None else set()
    # Stopped sections (port 0) are left out of the bundle by browsers.
    active = {str(m.rtp.muxId) for m in description.media if m.port != 0}
    if not active or not active <= bundled or not bundled <= set(mids):
        raise MediaError(f"The {what} must bundle all media sections (a=group:BUNDLE).")
    return description


def _check_one_data_channel_section(description: sdp.SessionDescription, what: str) -> None:
    applications = [m for m in description.media if m.kind == "application"]
    if len(applications) != 1 or applications[0].port == 0:
        raise MediaError(f"A trunk {what} must open data channels, in one section.")


def _check_trunk_section(media: sdp.MediaDescription, settings: MediaSettings, what: str) -> None:
    if media.port == 0:
        raise MediaError(f"A trunk {what} may not stop a section.")
    _check_transport(media, settings)
    if media.direction != "sendrecv":
        raise MediaError(f"Every section of a trunk {what} must be sendrecv.")


def _narrow_codecs(
    media: sdp.MediaDescription, settings: MediaSettings, offer_order: bool = False
) -> RTCRtpCodecParameters:
    """Keep only the section's first supported codec (and its RTX), first in our order
    of preference or, with ``offer_order``, in the offer's; returns that codec."""
    codecs = _choose_codecs(media, settings, offer_order)
    if not codecs:
        offered = ", ".join(sorted({c.name for c in media.rtp.codecs})) or "none"
        raise MediaError(
            f"The {media.kind} section {media.rtp.muxId!r} offers no supported codec "
            f"(offered: {offered}; supported: Opus audio, "
            f"{' or '.join(settings.video_codecs)} video)."
        )
    media.rtp.codecs = codecs
    media.fmt = [c.payloadType for c in codecs]
    return codecs[0]


def _borrow_transport(media: sdp.MediaDescription, description: sdp.SessionDescription) -> None:
    """Give a stopped section the ICE and DTLS parameters of the bundle it left."""
    live = next((m for m in description.media if m.port != 0), None)
    if live is None:
        return
    if media.ice is None or not media.ice.usernameFragment or not media.ice.password:
        media.ice = live.ice
    if media.dtls is None or not media.dtls.fingerprints:
        media.dtls = live.dtls


def _check_data_channels(media: sdp.MediaDescription, settings: MediaSettings) -> None:
    """An ``m=application`` section must be SCTP over DTLS (RFC 8841), nothing else."""
    if media.port == 0:
        return  # rejected by the client itself; aiortc answers it rejected too
    if media.profile not in ("UDP/DTLS/SCTP", "DTLS/SCTP") or media.sctp_port is None:
        raise MediaError("The data channel section must be SCTP over DTLS with a=sctp-port.")
    _check_transport(media, settings, rtp=False)


def _check_transport(
    media: sdp.MediaDescription, settings: MediaSettings, rtp: bool = True
) -> None:
    if media.kind not in (("audio", "video") if rtp else ("application",)):
        raise MediaError(f"Media sections of kind {media.kind!r} are not supported.")
    if media.dtls is None or not any(
        f.algorithm.lower() in X509_DIGEST_ALGORITHMS for f in media.dtls.fingerprints
    ):
        raise MediaError(
            "The SDP has no usable DTLS fingerprint (a=fingerprint with sha-256) and a=setup."
        )
    if media.ice is None or not media.ice.usernameFragment or not media.ice.password:
        raise MediaError("The SDP has no ICE credentials (a=ice-ufrag, a=ice-pwd).")
    if rtp and not media.rtcp_mux:
        raise MediaError("The SDP must multiplex RTCP (a=rtcp-mux).")
    if media.direction is None:
        media.direction = "sendrecv"  # the SDP default (RFC 4566 section 6)
    _keep_usable_candidates(media, settings.allow_private_candidates)


def _keep_usable_candidates(media: sdp.MediaDescription, allow_private: bool) -> None:
    """Drop the section's candidates the server must not or cannot send checks to."""
    media.ice_candidates = [c for c in media.ice_candidates if _usable(c, allow_private)]
    if not media.ice_candidates:
        # With end-of-candidates and nothing to pair, aioice fails the connection before
        # the client's checks arrive; without, it waits for them (peer-reflexive).
        media.ice_candidates_complete = False


def trickled_candidate(text: object, allow_private: bool) -> RTCIceCandidate | None:
    """A candidate a client trickled (``candidate:...``, as in ``RTCIceCandidate``), or
    None when the server must not or cannot send checks to it (same rules as in SDP).
    Raises :class:`MediaError` when it is not a candidate line at all."""
    if not isinstance(text, str) or len(text) > 512:
        raise MediaError("A trickled candidate must be a candidate line of at most 512 bytes.")
    line = text.removeprefix("a=").removeprefix("candidate:")
    try:
        candidate = sdp.candidate_from_sdp(line)
    except Exception as error:
        raise MediaError("The trickled candidate could not be parsed.") from error
    return candidate if _usable(candidate, allow_private) else None


def _usable(candidate: RTCIceCandidate, allow_private: bool) -> bool:
    """A UDP candidate of component 1, of a type aioice pairs, on an address the server
    may send checks to (the rules in this module's docstring)."""
    return (
        candidate.component == 1
        and candidate.protocol.lower() == "udp"
        and candidate.type in _CANDIDATE_TYPES
        and 0 < candidate.port < 65536
        and may_send_checks_to(candidate.ip, allow_private)
    )


def may_send_checks_to(address: str, allow_private: bool) -> bool:
    """Whether the server may send ICE checks to ``address``, as named by a client.

    Only IP literals qualify (no mDNS or DNS names); private, loopback and link-local
    addresses only with ``allow_private``; unspecified, multicast, reserved and other
    ranges that are not globally routable never.
    """
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    if any(ip in network for network in _PRIVATE_NETWORKS):
        return allow_private
    if isinstance(ip, ipaddress.IPv6Address) and ip.sixtofour is not None:
        # A host with a 6to4 tunnel sends to the IPv4 address embedded in 2002::/16.
        return may_send_checks_to(str(ip.sixtofour), allow_private)
    return ip.is_global and not ip.is_multicast and not ip.is_reserved


def _choose_codecs(
    media: sdp.MediaDescription, settings: MediaSettings, offer_order: bool = False
) -> list[RTCRtpCodecParameters]:
    names = ("opus",) if media.kind == "audio" else settings.video_codecs
    allowed = [[c for c in CODECS[media.kind] if c.name.lower() == n.lower()] for n in names]
    if offer_order:
        allowed = [[c for group in allowed for c in group]]
    for locals_ in allowed:
        for codec in media.rtp.codecs:
            if any(is_codec_compatible(local, codec) for local in locals_):
                rtx = [
                    c
                    for c in media.rtp.codecs
                    if is_rtx(c) and c.parameters.get("apt") == codec.payloadType
                ]
                return [codec, *rtx[:1]]
    return []


def _section(media: sdp.MediaDescription, codec: RTCRtpCodecParameters) -> SdpSection:
    ssrc: int | None = None
    fid = next((g for g in media.ssrc_group if g.semantic == "FID"), None)
    if fid is not None and fid.items:
        ssrc = int(fid.items[0])
    elif media.ssrc:
        ssrc = media.ssrc[0].ssrc
    return SdpSection(
        mid=str(media.rtp.muxId),
        kind=media.kind,
        sending=media.direction in _SENDING and media.port != 0,
        codec=codec,
        ssrc=ssrc,
    )


def _serialize(description: sdp.SessionDescription) -> str:
    try:
        return str(description)
    except Exception as error:  # e.g. a host name where an address must be
        raise MediaError("The SDP holds values that cannot be used.") from error
