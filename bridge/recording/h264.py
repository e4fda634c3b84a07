"""What the recorder reads of an H.264 access unit (Annex B byte stream).

The file needs the picture size and the parameter sets before the first frame: the
size for the header, the parameter sets as the codec's private data, from which the
Matroska muxer writes the ``avcC`` record that players expect (and stores each access
unit length-prefixed, as Matroska requires: the NAL units themselves are unchanged).
The size comes from the sequence parameter set (ITU-T H.264 §7.3.2.1.1); when it cannot
be read, the file gets no size and ffmpeg-based players take it from the stream.
"""

from __future__ import annotations

_SPS = 7
_PPS = 8
# Profiles whose SPS carries chroma format, bit depths and scaling lists (§7.3.2.1.1).
_HIGH_PROFILES = frozenset({100, 110, 122, 244, 44, 83, 86, 118, 128, 138, 139, 134, 135})


def nal_units(data: bytes) -> list[bytes]:
    """The NAL units of an Annex B access unit, without start codes."""
    units: list[bytes] = []
    start = data.find(b"\x00\x00\x01")
    while start != -1:
        begin = start + 3
        start = data.find(b"\x00\x00\x01", begin)
        end = len(data) if start == -1 else start
        # A four-byte start code leaves its leading zero on the unit before it
        # (trailing_zero_8bits, Annex B), which is not part of that unit.
        unit = data[begin:end].rstrip(b"\x00") if start != -1 else data[begin:end]
        if unit:
            units.append(unit)
    return units


def is_access_unit(data: bytes) -> bool:
    """Whether ``data`` looks like an Annex B access unit: NAL units behind start codes,
    each with a zero forbidden bit and a type in use."""
    units = nal_units(data)
    return bool(units) and all(not unit[0] & 0x80 and unit[0] & 0x1F for unit in units)


def parameter_sets(data: bytes) -> bytes:
    """The access unit's SPS and PPS units as an Annex B stream (b"" when it has none),
    the form of codec private data the Matroska muxer turns into ``avcC``."""
    units = [u for u in nal_units(data) if u[0] & 0x1F in (_SPS, _PPS)]
    if not any(u[0] & 0x1F == _SPS for u in units) or not any(u[0] & 0x1F == _PPS for u in units):
        return b""
    return b"".join(b"\x00\x00\x00\x01" + unit for unit in units)


def picture_size(data: bytes) -> tuple[int, int] | None:
    """(width, height) from the access unit's first SPS; None when it has none or the
    SPS cannot be read."""
    for unit in nal_units(data):
        if unit[0] & 0x1F == _SPS:
            try:
                return _sps_size(_BitReader(_unescape(unit[1:])))
            except (IndexError, ValueError):
                return None
    return None


def _unescape(payload: bytes) -> bytes:
    """Remove emulation prevention bytes (00 00 03 -> 00 00, §7.4.1)."""
    return payload.replace(b"\x00\x00\x03", b"\x00\x00")


class _BitReader:
    """Big-endian bits with Exp-Golomb codes (§9.1); raises IndexError past the end."""

    def __init__(self, data: bytes) -> None:
        self._data = data
        self._bit = 0

    def bits(self, count: int) -> int:
        value = 0
        for _ in range(count):
            byte = self._data[self._bit >> 3]
            value = value << 1 | (byte >> (7 - (self._bit & 7)) & 1)
            self._bit += 1
        return value

    def ue(self) -> int:
        zeros = 0
        while not self.bits(1):
            zeros += 1
            if zeros > 31:
                raise ValueError("Exp-Golomb code too long")
        return (1 << zeros) - 1 + self.bits(zeros)

    def se(self) -> int:
        code = self.ue()
        return (code + 1) // 2 if code & 1 else -(code // 2)


def _sps_size(bits: _BitReader) -> tuple[int, int] | None:
    profile = bits.bits(8)
    bits.bits(16)  # constraint flags, level
    bits.ue()  # seq_parameter_set_id
    chroma_format = 1
    separate_planes = False
    if profile in _HIGH_PROFILES:
        chroma_format = bits.ue()
        if chroma_format == 3:
            separate_planes = bool(bits.bits(1))
        bits.ue()  # bit_depth_luma_minus8
        bits.ue()  # bit_depth_chroma_minus8
        bits.bits(1)  # qpprime_y_zero_transform_bypass_flag
        if bits.bits(1):  # seq_scaling_matrix_present_flag
            for index in range(8 if chroma_format != 3 else 12):
                if bits.bits(1):
                    _skip_scaling_list(bits, 16 if index < 6 else 64)
    bits.ue()  # log2_max_frame_num_minus4
    order_type = bits.ue()
    if order_type == 0:
        bits.ue()  # log2_max_pic_order_cnt_lsb_minus4
    elif order_type == 1:
        bits.bits(1)  # delta_pic_order_always_zero_flag
        bits.se()  # offset_for_non_ref_pic
        bits.se()  # offset_for_top_to_bottom_field
        for _ in range(bits.ue()):
            bits.se()  # offset_for_ref_frame
    bits.ue()  # max_num_ref_frames
    bits.bits(1)  # gaps_in_frame_num_value_allowed_flag
    width_mbs = bits.ue() + 1
    height_units = bits.ue() + 1
    frame_mbs_only = bits.bits(1)
    if not frame_mbs_only:
        bits.bits(1)  # mb_adaptive_frame_field_flag
    bits.bits(1)  # direct_8x8_inference_flag
    width = width_mbs * 16
    height = (2 - frame_mbs_only) * height_units * 16
    if bits.bits(1):  # frame_cropping_flag
        left, right, top, bottom = bits.ue(), bits.ue(), bits.ue(), bits.ue()
        # Crop units (§7.4.2.1.1, table 6-1): chroma subsampling times field pairs.
        array_type = 0 if separate_planes else chroma_format
        sub_width = 2 if array_type in (1, 2) else 1
        sub_height = 2 if array_type == 1 else 1
        width -= sub_width * (left + right)
        height -= sub_height * (2 - frame_mbs_only) * (top + bottom)
    if width <= 0 or height <= 0:
        return None
    return width, height


def _skip_scaling_list(bits: _BitReader, size: int) -> None:
    last = following = 8
    for _ in range(size):
        if following:
            following = (last + bits.se() + 256) % 256
        last = following or last
