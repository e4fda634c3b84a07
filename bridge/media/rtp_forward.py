"""Packet-level forwarding: each RTP packet of a publisher goes to every subscriber as is.

A published track fans each incoming (decrypted) packet out once, in the packet handler,
to the :class:`PacketForward` of each subscriber: no frames, no queue, no task per
subscriber. A forward rewrites what is the subscriber's own (SSRC, payload type,
sequence number, timestamp, header extension ids and the mid), keeps the payload bytes
untouched, protects the packet and writes it to the subscriber's socket
(:class:`~bridge.media.aiortc_hooks.RtpOutput`).

What aiortc's sender gave for free is kept: a per-subscriber history answers NACKs (as
RTX when negotiated), sender reports carry the publisher's own NTP/RTP pairs translated
to the subscriber's timestamps (so audio and video stay in sync; the publishing track
sends them about once a second as its packets come, rather than a timer per sender),
PLI/FIR go to the publisher through the track's rate-limited requester, and aiortc still
consumes receiver reports. A video forward starts, and starts again after a loss it
cannot repair (its socket buffer was full), at a keyframe found on packet boundaries
(:func:`keyframe_start`); the others are never slowed down.
"""

from __future__ import annotations

import random
import struct
import time
from collections.abc import Callable, Sequence

from aiortc.rtp import RtpPacket

from .aiortc_hooks import FULL, NOT_CONNECTED, RtpOutput, SenderInfo, SendParameters, ntp_time
from .counters import MediaCounters

#: Packets kept per forward for retransmission (about 2.5 s of 1 Mbit/s video). The
#: payloads are the publisher's, shared by every forward; only headers are per forward.
HISTORY = 256

# A plausible frame duration, used to join two sources' timestamps on one forward.
_FRAME_TICKS = {"audio": 960, "video": 3000}

_HEADER = struct.Struct("!BBHII")
_EXTENSION_HEADER = struct.Struct("!HH")
_ONE_BYTE_PROFILE = 0xBEDE
_RTX_SEQUENCE = struct.Struct("!H")


def vp8_keyframe_start(payload: bytes) -> tuple[bool, bool]:
    """(whether the packet starts a VP8 frame, whether that frame is a keyframe), from
    its payload descriptor (RFC 7741 section 4.2) and the VP8 payload header after it."""
    if not payload:
        return False, False
    first = payload[0]
    if not first & 0x10 or first & 0x07:  # not S=1 with partition index 0
        return False, False
    offset = 1
    if first & 0x80:  # X: an extension byte follows, saying which fields come
        if len(payload) < 2:
            return False, False
        extension = payload[1]
        offset = 2
        if extension & 0x80:  # I: picture id, one or two bytes
            if len(payload) <= offset:
                return False, False
            offset += 2 if payload[offset] & 0x80 else 1
        if extension & 0x40:  # L: TL0PICIDX
            offset += 1
        if extension & 0x30:  # T or K: one byte for both
            offset += 1
    if len(payload) <= offset:
        return True, False
    return True, not payload[offset] & 0x01


_H264_IDR, _H264_SPS, _H264_STAP_A, _H264_FU_A = 5, 7, 24, 28


def h264_keyframe_start(payload: bytes) -> bool:
    """Whether an H.264 RTP packet (RFC 6184) begins an IDR picture or its SPS: a single
    NAL unit of that type, a STAP-A holding one, or the first fragment of an IDR."""
    if not payload:
        return False
    kind = payload[0] & 0x1F
    if kind in (_H264_IDR, _H264_SPS):
        return True
    if kind == _H264_FU_A:
        return len(payload) > 1 and bool(payload[1] & 0x80) and payload[1] & 0x1F == _H264_IDR
    if kind == _H264_STAP_A:
        offset = 1
        while offset + 2 < len(payload):
            size = (payload[offset] << 8) | payload[offset + 1]
            if payload[offset + 2] & 0x1F in (_H264_IDR, _H264_SPS):
                return True
            offset += 2 + size
    return False


def vp8_keyframe(payload: bytes) -> bool:
    """Whether a VP8 RTP packet begins a keyframe."""
    starts, key = vp8_keyframe_start(payload)
    return starts and key


def _always(payload: bytes) -> bool:
    return True


def keyframe_start(codec_name: str) -> Callable[[bytes], bool]:
    """For a codec, a function saying whether a packet payload begins a keyframe (every
    audio packet does)."""
    name = codec_name.upper()
    if name == "VP8":
        return vp8_keyframe
    if name == "H264":
        return h264_keyframe_start
    return _always


def ntp_abs_send_time(ntp: int) -> bytes:
    """The abs-send-time header extension's 3 bytes (6.18 fixed point seconds)."""
    return ((ntp >> 14) & 0xFFFFFF).to_bytes(3, "big")


def extension_block(mid: bytes, abs_send_time: bytes | None, audio_level: bytes | None) -> bytes:
    """A one-byte-header extension block (RFC 8285) from elements already prefixed with
    their id/length byte."""
    body = mid + (abs_send_time or b"") + (audio_level or b"")
    if not body:
        return b""
    body += b"\x00" * (-len(body) % 4)
    return _EXTENSION_HEADER.pack(_ONE_BYTE_PROFILE, len(body) // 4) + body


class PacketForward:
    """One subscriber's sender, fed packet by packet from whichever published track is
    attached (one m-line, reused by tracks of the same kind and codec)."""

    # Read for every packet and subscriber: slots make each attribute a fixed offset.
    __slots__ = (
        "_abs_id",
        "_attached_at",
        "_counters",
        "_fresh",
        "_history",
        "_kind",
        "_last_ntp",
        "_last_ts",
        "_layout",
        "_level_id",
        "_mid_element",
        "_mid_frame",
        "_new_source",
        "_next_seq",
        "_output",
        "_recent",
        "_request_keyframe",
        "_resync",
        "_rtx_seq",
        "_seq_offset",
        "_source_report",
        "_ts_offset",
        "_video",
        "attached",
        "dropped",
        "frames",
        "layer",
        "octets",
        "overflows",
        "packets",
        "parameters",
        "paused",
        "retransmitted",
        "waiting_for_keyframe",
        "want",
    )

    def __init__(self, output: RtpOutput, kind: str, counters: MediaCounters) -> None:
        self._output = output
        self._kind = kind
        self._video = kind == "video"
        self._counters = counters
        self.parameters: SendParameters | None = None
        self._mid_element = b""
        self._layout = b""
        self._abs_id = 0
        self._level_id = 0
        #: (sender report pair of the attached track's publisher, or None) getter.
        self._source_report: Callable[[], tuple[int, int] | None] = lambda: None
        self._request_keyframe: Callable[[], None] = lambda: None
        self._recent: Callable[[], Sequence[RtpPacket]] = tuple
        #: Whether nothing was sent since the track was attached (it may catch up).
        self._fresh = False
        self.attached = False
        #: Whether packets are skipped until a keyframe starts (video).
        self.waiting_for_keyframe = self._video
        #: Whether the subscriber asked not to receive this track for now.
        self.paused = False
        #: Simulcast: the layer played now (-1: none yet) and the one asked for (the
        #: publishing track moves it there; see PublishedTrack).
        self.layer = -1
        self.want = 255
        self._mid_frame = False
        self._resync = True
        self._new_source = True
        self._attached_at = 0.0
        self._seq_offset = 0
        self._next_seq = random.randrange(1 << 15)
        self._ts_offset = 0
        self._last_ts: int | None = None
        self._last_ntp = 0
        self._rtx_seq = random.randrange(1 << 15)
        self._history: list[tuple[int, bytes, bytes] | None] = [None] * HISTORY
        #: Packets sent, bytes of payload sent (for sender reports and statistics).
        self.packets = 0
        self.octets = 0
        #: Frames whose last packet was sent (every audio packet is a frame).
        self.frames = 0
        #: Packets not sent: skipped to a keyframe, paused, or lost to a full socket.
        self.dropped = 0
        #: Times the socket's buffer was full.
        self.overflows = 0
        #: Packets sent again on a NACK.
        self.retransmitted = 0

    def started(self, parameters: SendParameters) -> None:
        """The sender started: the payload type, SSRC and extension ids are known."""
        self.parameters = parameters
        self._mid_element = (
            bytes([parameters.mid_id << 4 | (len(parameters.mid) - 1)]) + parameters.mid.encode()
            if parameters.mid_id and parameters.mid
            else b""
        )
        self._abs_id = parameters.abs_send_time_id or 0
        self._level_id = parameters.audio_level_id or 0
        self._layout = self._mid_element + bytes([self._abs_id, self._level_id])
        if self.attached and self.waiting_for_keyframe and not self.paused:
            self.start_picture()

    def start_picture(self) -> None:
        """The connection is up (aiortc starts a sender once DTLS is): a video forward
        waiting for its first keyframe catches up from the track's latest one, or asks
        for one, now rather than at the track's next packet (up to a frame later)."""
        if self.parameters is None or not self._output.connected:
            return
        ntp = ntp_time()
        self._catch_up(ntp, ntp_abs_send_time(ntp), {})

    def _extensions(self, abs_send_time: bytes, audio_level: bytes | None) -> bytes:
        return extension_block(
            self._mid_element,
            bytes([self._abs_id << 4 | 2]) + abs_send_time if self._abs_id else None,
            bytes([self._level_id << 4]) + audio_level
            if self._level_id and audio_level is not None
            else None,
        )

    def attach(
        self,
        request_keyframe: Callable[[], None],
        source_report: Callable[[], tuple[int, int] | None],
        recent: Callable[[], Sequence[RtpPacket]] = tuple,
    ) -> None:
        """Play a published track from its next keyframe (video) or packet (audio).

        ``recent()`` gives the packets since the track's latest keyframe if it came a
        moment ago: a new forward starts with them when its connection comes up after
        that keyframe, instead of asking for another.
        """
        self._request_keyframe = request_keyframe
        self._source_report = source_report
        self._recent = recent
        self._fresh = True
        self.attached = True
        self.layer = -1
        self._mid_frame = False
        self._new_source = True
        self._resync = True
        self._attached_at = time.monotonic()
        self.waiting_for_keyframe = self._video
        if self._video and self._output.connected:
            request_keyframe()

    def detach(self) -> None:
        self.attached = False
        self._request_keyframe = lambda: None
        self._source_report = lambda: None
        self._recent = tuple

    def switch_layer(self, layer: int) -> None:
        """Play another simulcast layer of the same track from its keyframe, which comes
        next: sequence numbers and timestamps go on from the last sent."""
        self.layer = layer
        self._new_source = True
        self._resync = True
        self.waiting_for_keyframe = False

    def pause(self) -> None:
        self.paused = True

    def resume(self) -> None:
        """Forward again; video starts over at a keyframe, asked for at once."""
        if not self.paused:
            return
        self.paused = False
        if self._video:
            self.waiting_for_keyframe = True
            self._resync = True
            if self._output.connected:
                self._request_keyframe()

    def forward(
        self,
        packet: RtpPacket,
        keyframe: bool,
        ntp: int,
        abs_send_time: bytes,
        audio_level: bytes | None,
        shared: dict[bytes, bytes],
    ) -> None:
        """Send one packet of the attached track; ``keyframe``: it starts a keyframe.
        ``shared`` is a cache of extension blocks for this packet, by layout."""
        parameters = self.parameters
        if parameters is None or (self.paused and not self._mid_frame):
            # A pause waits for the end of the frame under way: a receiver given half a
            # frame with no gap in the sequence numbers might take it for a whole one.
            self.dropped += 1
            return
        if self.waiting_for_keyframe:
            if not keyframe:
                if not self._output.connected or not self._catch_up(ntp, abs_send_time, shared):
                    self.dropped += 1
                    return
            self.waiting_for_keyframe = False
        self._write(packet, ntp, abs_send_time, audio_level, shared)

    def _catch_up(self, ntp: int, abs_send_time: bytes, shared: dict[bytes, bytes]) -> bool:
        """A waiting forward whose connection is up: send the keyframe the track had a
        moment ago and what followed it, if this forward has sent nothing yet; else
        ask for a keyframe. True when it caught up."""
        recent = self._recent() if self._fresh else ()
        if not recent:
            # The subscriber starves: ask again (one PLI per interval at most), as the
            # last request or its keyframe may have been lost.
            self._request_keyframe()
            return False
        # A keyframe came just before this subscriber's connection was up (one asked for
        # by another subscriber that joined with it): no need for one more.
        self.waiting_for_keyframe = False
        for earlier in recent:
            if not self._write(earlier, ntp, abs_send_time, None, shared):
                return False
        return True

    def _write(
        self,
        packet: RtpPacket,
        ntp: int,
        abs_send_time: bytes,
        audio_level: bytes | None,
        shared: dict[bytes, bytes],
    ) -> bool:
        parameters = self.parameters
        assert parameters is not None
        if self._resync:
            self._sync(packet)
        seq = (packet.sequence_number + self._seq_offset) & 0xFFFF
        ts = (packet.timestamp + self._ts_offset) & 0xFFFFFFFF
        # Subscribers that negotiated the same ids and mid share one extension block
        # per packet (the fan-out's ``shared``): built once, not once per subscriber.
        extensions = shared.get(self._layout)
        if extensions is None:
            extensions = shared[self._layout] = self._extensions(abs_send_time, audio_level)
        header = (
            _HEADER.pack(
                0x90 if extensions else 0x80,
                packet.marker << 7 | parameters.payload_type,
                seq,
                ts,
                parameters.ssrc,
            )
            + extensions
        )
        payload = packet.payload
        self._history[seq % HISTORY] = (seq, header, payload)
        outcome = self._output.send(header, payload)
        if outcome:
            self._lost(outcome)
            return False
        self._next_seq = (seq + 1) & 0xFFFF
        self._mid_frame = self._video and not packet.marker
        self._last_ts = ts
        self._last_ntp = ntp
        if not self.packets:
            self._counters.first_frame.observe(time.monotonic() - self._attached_at)
        self._fresh = False
        self.packets += 1
        self.octets += len(payload)
        if packet.marker or not self._video:
            self.frames += 1
            self._counters.frames_forwarded += 1
        return True

    def _sync(self, packet: RtpPacket) -> None:
        # Sequence numbers go on from the last one sent, so that a skip leaves no gap
        # the subscriber would ask to be repaired.
        self._resync = False
        self._seq_offset = (self._next_seq - packet.sequence_number) & 0xFFFF
        if self._new_source:
            self._new_source = False
            start = (
                random.randrange(1 << 32)
                if self._last_ts is None
                else self._last_ts + _FRAME_TICKS[self._kind]
            )
            self._ts_offset = (start - packet.timestamp) & 0xFFFFFFFF

    def _lost(self, outcome: int) -> None:
        self.dropped += 1
        self._mid_frame = False
        if outcome == FULL:
            self.overflows += 1
        if self._video:
            # A lost packet of video breaks the picture until the next keyframe; audio
            # goes on (its history still has the packet, should a NACK come).
            self.waiting_for_keyframe = True
            self._resync = True
            if outcome != NOT_CONNECTED or self._output.connected:
                self._request_keyframe()
        else:
            # The packet's sequence number was used: keep it so.
            self._next_seq = (self._next_seq + 1) & 0xFFFF

    def retransmit(self, sequence_number: int) -> bool:
        """Send a packet again from the history (as RTX when negotiated)."""
        entry = self._history[sequence_number % HISTORY]
        parameters = self.parameters
        if entry is None or entry[0] != sequence_number or parameters is None:
            return True  # aiortc's own history is empty on this path
        _, header, payload = entry
        if parameters.rtx_payload_type is not None:
            rtx = bytearray(header)
            rtx[1] = (header[1] & 0x80) | parameters.rtx_payload_type
            struct.pack_into("!H", rtx, 2, self._rtx_seq)
            struct.pack_into("!I", rtx, 8, parameters.rtx_ssrc)
            self._rtx_seq = (self._rtx_seq + 1) & 0xFFFF
            header, payload = bytes(rtx), _RTX_SEQUENCE.pack(sequence_number) + payload
        if not self._output.send(header, payload):
            self.retransmitted += 1
        return True

    def report(self) -> None:
        """Send an RTCP sender report now, if anything was sent (the publishing track
        calls this about once a second, as its packets come)."""
        info = self.sender_info()
        if info is not None and self.attached:
            self._output.send_report(info)

    def sender_info(self) -> SenderInfo | None:
        """The figures of this sender's next RTCP sender report: the publisher's latest
        NTP/RTP pair moved to this subscriber's timestamps, or else the arrival time of
        the last packet sent with its timestamp."""
        if self._last_ts is None:
            return None
        report = self._source_report()
        if report is not None and not self._new_source:
            ntp, rtp = report
            return ntp, (rtp + self._ts_offset) & 0xFFFFFFFF, self.packets, self.octets
        return self._last_ntp, self._last_ts, self.packets, self.octets
