"""What the recorder reads of an Opus packet, and the header a file of them needs.

Packets are muxed as received, so nothing here decodes: the checks are the packet
structure rules of RFC 6716 §3.4 (enough to keep garbage out of a file), the duration
from the table of contents byte (for the last block of a file and its length), and the
identification header of RFC 7845 §5.1 that Matroska carries as the codec's private
data and that players need to set up their decoder.
"""

from __future__ import annotations

import struct

#: Opus always runs at 48 kHz on the wire (RFC 7587: the RTP clock rate is 48000).
SAMPLE_RATE = 48000
#: The longest frame the format allows, in bytes (RFC 6716 §3.2.1).
_MAX_FRAME = 1275
#: The longest packet duration, 120 ms (RFC 6716 §3.2.5).
_MAX_PACKET_SAMPLES = 5760
# Frame durations in 48 kHz samples by configuration (RFC 6716 §3.1, table 2).
_SILK = (480, 960, 1920, 2880)
_HYBRID = (480, 960)
_CELT = (120, 240, 480, 960)


def frame_samples(toc: int) -> int:
    """Samples (at 48 kHz) of each frame in a packet with this TOC byte."""
    config = toc >> 3
    if config < 12:
        return _SILK[config % 4]
    if config < 16:
        return _HYBRID[config % 2]
    return _CELT[config % 4]


def channels(packet: bytes) -> int:
    """1 or 2: whether the packet is coded mono or stereo (the TOC's ``s`` bit)."""
    return 2 if packet and packet[0] & 0x04 else 1


def _length(packet: bytes, at: int) -> tuple[int, int] | None:
    """A frame length coded in one or two bytes at ``at`` (RFC 6716 §3.2.1): (length,
    bytes used), None when the packet ends first."""
    if at >= len(packet):
        return None
    first = packet[at]
    if first < 252:
        return first, 1
    if at + 1 >= len(packet):
        return None
    return first + 4 * packet[at + 1], 2


def frame_count(packet: bytes) -> int | None:
    """How many frames a well-formed packet holds; None when it breaks a rule of
    RFC 6716 §3.4 (such a packet is not Opus, whatever a decoder would make of it)."""
    if not packet:
        return None  # R1
    code = packet[0] & 0x03
    rest = len(packet) - 1
    if code == 0:
        return 1 if rest <= _MAX_FRAME else None  # R2
    if code == 1:
        return 2 if rest % 2 == 0 and rest // 2 <= _MAX_FRAME else None  # R3
    if code == 2:
        coded = _length(packet, 1)
        if coded is None:
            return None
        first, used = coded
        second = rest - used - first
        return 2 if 0 <= second <= _MAX_FRAME and first <= _MAX_FRAME else None  # R4
    return _code3_count(packet)


def _code3_count(packet: bytes) -> int | None:
    if len(packet) < 2:
        return None  # R6, R7: the frame count byte is missing
    vbr, padded, count = packet[1] & 0x80, packet[1] & 0x40, packet[1] & 0x3F
    if count == 0 or count * frame_samples(packet[0]) > _MAX_PACKET_SAMPLES:
        return None  # R5
    at, padding = 2, 0
    while padded:
        if at >= len(packet):
            return None
        value = packet[at]
        at += 1
        padding += 254 if value == 255 else value
        padded = value == 255
    available = len(packet) - at - padding
    if available < 0:
        return None
    if not vbr:
        if available % count or available // count > _MAX_FRAME:
            return None  # R6
        return count
    for _ in range(count - 1):
        coded = _length(packet, at)
        if coded is None:
            return None
        size, used = coded
        at += used
        available -= used + size
        if size > _MAX_FRAME or available < 0:
            return None  # R7
    return count if available <= _MAX_FRAME else None


def packet_samples(packet: bytes) -> int | None:
    """The packet's duration in 48 kHz samples; None when it is not a valid packet."""
    count = frame_count(packet)
    return None if count is None else count * frame_samples(packet[0])


def opus_head(channel_count: int, pre_skip: int = 0) -> bytes:
    """The identification header (RFC 7845 §5.1) for a mono or stereo stream.

    ``pre_skip`` is 0 for packets taken from a live stream: the sender's encoder delay
    is already in its timestamps, and trimming would shift the track off the timeline
    it shares with the other files of the meeting.
    """
    assert channel_count in (1, 2), "mapping family 0 is mono or stereo"
    return b"OpusHead" + struct.pack("<BBHIhB", 1, channel_count, pre_skip, SAMPLE_RATE, 0, 0)
