"""H.264 bitstream helpers for passthrough (pure functions: no aiortc, no PyAV).

aiortc packetises only Annex-B access units (NAL units after ``00 00 01`` start codes) and never adds SPS/PPS
itself; a camera that sends them only out of band (the SDP's ``sprop-parameter-sets``) would show nothing in a
browser. These helpers split and join NAL units, convert AVCC (length-prefixed) data and ``avcC`` extradata to
Annex-B, put SPS/PPS in front of keyframes that lack them, and read an SPS (profile, level, picture size) so that
the WebRTC answer can announce the camera's real ``profile-level-id``.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Final

START_CODE: Final = b"\x00\x00\x00\x01"

NAL_SLICE: Final = 1
NAL_IDR: Final = 5
NAL_SEI: Final = 6
NAL_SPS: Final = 7
NAL_PPS: Final = 8
NAL_AUD: Final = 9

#: profile_idc values whose SPS carries chroma format, bit depths and scaling lists (H.264 7.3.2.1.1).
_HIGH_PROFILES: Final = frozenset({100, 110, 122, 244, 44, 83, 86, 118, 128, 138, 139, 134, 135})
_MAX_UE_BITS: Final = 31
_MAX_DIMENSION: Final = 16_384


class H264Error(ValueError):
    """Data that is not what it claims to be (truncated, not an SPS, impossible values)."""


# ------------------------------------------------------------------------------------------------ NAL units


def nal_type(nal: bytes) -> int:
    """``nal_unit_type`` of a NAL unit (its first byte's low five bits); H264Error if empty."""
    if not nal:
        raise H264Error("empty NAL unit")
    return nal[0] & 0x1F


def is_annexb(data: bytes) -> bool:
    """True when *data* starts with an Annex-B start code (``00 00 01`` or ``00 00 00 01``)."""
    return data.startswith((b"\x00\x00\x01", START_CODE))


def split_annexb(data: bytes) -> list[bytes]:
    """The NAL units of an Annex-B byte stream, without start codes; empty units and trailing zeros dropped.

    Bytes before the first start code are ignored (they belong to no NAL unit).
    """
    nals: list[bytes] = []
    start = data.find(b"\x00\x00\x01")
    while start != -1:
        begin = start + 3
        nxt = data.find(b"\x00\x00\x01", begin)
        end = len(data) if nxt == -1 else nxt
        nal = data[begin:end].rstrip(b"\x00")  # trailing_zero_8bits and the next 4-byte start code's first zero
        if nal:
            nals.append(nal)
        start = nxt
    return nals


def nal_types(data: bytes) -> list[int]:
    """The ``nal_unit_type`` of every NAL unit of an Annex-B byte stream."""
    return [nal[0] & 0x1F for nal in split_annexb(data)]


def join_annexb(nals: Iterable[bytes]) -> bytes:
    """NAL units joined into an Annex-B byte stream (4-byte start codes)."""
    return b"".join(START_CODE + nal for nal in nals)


def split_avcc(data: bytes, length_size: int = 4) -> list[bytes]:
    """The NAL units of AVCC data (each preceded by a big-endian length of *length_size* bytes)."""
    if length_size not in (1, 2, 4):
        raise H264Error(f"bad NAL length size {length_size}")
    nals: list[bytes] = []
    pos = 0
    while pos < len(data):
        if pos + length_size > len(data):
            raise H264Error("truncated NAL length")
        size = int.from_bytes(data[pos : pos + length_size], "big")
        pos += length_size
        if size == 0 or pos + size > len(data):
            raise H264Error(f"bad NAL length {size} at offset {pos - length_size}")
        nals.append(data[pos : pos + size])
        pos += size
    return nals


def avcc_to_annexb(data: bytes, length_size: int = 4) -> bytes:
    """AVCC (length-prefixed) data as Annex-B."""
    return join_annexb(split_avcc(data, length_size))


# ------------------------------------------------------------------------------------------------ extradata


@dataclass(frozen=True)
class ParameterSets:
    """SPS and PPS NAL units (without start codes) and the NAL length size of AVCC packets (0: Annex-B)."""

    sps: tuple[bytes, ...] = ()
    pps: tuple[bytes, ...] = ()
    length_size: int = 0

    @property
    def complete(self) -> bool:
        return bool(self.sps and self.pps)

    def annexb(self) -> bytes:
        """The SPS and PPS as an Annex-B byte string."""
        return join_annexb((*self.sps, *self.pps))


def parameter_sets(extradata: bytes | None) -> ParameterSets:
    """SPS/PPS from a decoder's extradata: an ``avcC`` record (ISO 14496-15) or Annex-B; empty if none.

    Raises H264Error for a malformed ``avcC`` record.
    """
    if not extradata:
        return ParameterSets()
    if extradata[0] == 1:  # avcC: configurationVersion 1
        return _parse_avcc(extradata)
    nals = split_annexb(extradata)
    return ParameterSets(
        sps=tuple(n for n in nals if n[0] & 0x1F == NAL_SPS),
        pps=tuple(n for n in nals if n[0] & 0x1F == NAL_PPS),
    )


def _parse_avcc(record: bytes) -> ParameterSets:
    if len(record) < 7:
        raise H264Error("avcC record too short")
    length_size = (record[4] & 0x03) + 1
    if length_size == 3:
        raise H264Error("avcC: NAL length size 3 is not allowed")
    pos = 5
    groups: list[tuple[bytes, ...]] = []
    for count_mask in (0x1F, 0xFF):  # numOfSequenceParameterSets (5 bits), then numOfPictureParameterSets
        if pos >= len(record):
            raise H264Error("avcC record truncated")
        count = record[pos] & count_mask
        pos += 1
        units: list[bytes] = []
        for _ in range(count):
            if pos + 2 > len(record):
                raise H264Error("avcC record truncated")
            size = int.from_bytes(record[pos : pos + 2], "big")
            pos += 2
            if size == 0 or pos + size > len(record):
                raise H264Error("avcC parameter set length out of range")
            units.append(record[pos : pos + size])
            pos += size
        groups.append(tuple(units))
    return ParameterSets(sps=groups[0], pps=groups[1], length_size=length_size)


def to_annexb(data: bytes, length_size: int = 0) -> bytes:
    """A demuxed packet as Annex-B: AVCC when *length_size* (from ``avcC`` extradata) is set, else as it is.

    Without a known length size, data that does not start with a start code is tried as 4-byte AVCC.
    """
    if length_size:
        return avcc_to_annexb(data, length_size)
    if is_annexb(data):
        return data
    return avcc_to_annexb(data, 4)


# ------------------------------------------------------------------------------------------------ access units


def is_keyframe(access_unit: bytes) -> bool:
    """True when an Annex-B access unit holds an IDR slice."""
    return NAL_IDR in nal_types(access_unit)


def ensure_parameter_sets(access_unit: bytes, sets: ParameterSets) -> bytes:
    """An IDR access unit with SPS and PPS in it: *sets* are put in front of its first slice if it lacks either.

    Access units without an IDR, with their own SPS and PPS, or when *sets* is incomplete come back unchanged.
    An access unit delimiter stays first (H.264 7.4.1.2.3).
    """
    types = nal_types(access_unit)
    if NAL_IDR not in types or not sets.complete or (NAL_SPS in types and NAL_PPS in types):
        return access_unit
    nals = split_annexb(access_unit)
    types = [nal[0] & 0x1F for nal in nals]
    kept = [nal for nal, kind in zip(nals, types, strict=True) if kind not in (NAL_SPS, NAL_PPS)]
    head = 1 if kept and kept[0][0] & 0x1F == NAL_AUD else 0
    return join_annexb([*kept[:head], *sets.sps, *sets.pps, *kept[head:]])


def in_band_parameter_sets(access_unit: bytes) -> ParameterSets:
    """The SPS and PPS an Annex-B access unit carries itself (either may be empty)."""
    nals = split_annexb(access_unit)
    return ParameterSets(
        sps=tuple(n for n in nals if n[0] & 0x1F == NAL_SPS),
        pps=tuple(n for n in nals if n[0] & 0x1F == NAL_PPS),
    )


# ------------------------------------------------------------------------------------------------ SPS


@dataclass(frozen=True)
class SpsInfo:
    """What an SPS says: profile, constraint flags, level, chroma format and the (cropped) picture size."""

    profile_idc: int
    constraint_flags: int
    level_idc: int
    chroma_format_idc: int = 1
    width: int | None = None
    height: int | None = None

    @property
    def profile_level_id(self) -> str:
        """The RTP ``profile-level-id`` (RFC 6184): profile_idc, constraint byte, level_idc as six hex digits."""
        return f"{self.profile_idc:02x}{self.constraint_flags:02x}{self.level_idc:02x}"


def sps_profile(nal: bytes) -> SpsInfo:
    """Profile, constraint flags and level of an SPS NAL unit (its first four bytes only)."""
    if len(nal) < 4:
        raise H264Error("SPS too short")
    if nal[0] & 0x80 or nal[0] & 0x1F != NAL_SPS:
        raise H264Error(f"not an SPS (NAL type {nal[0] & 0x1F})")
    return SpsInfo(profile_idc=nal[1], constraint_flags=nal[2], level_idc=nal[3])


def parse_sps(nal: bytes) -> SpsInfo:
    """Parse an SPS NAL unit (H.264 7.3.2.1.1) up to the frame cropping; H264Error if it is malformed."""
    head = sps_profile(nal)
    bits = _Bits(unescape_rbsp(nal[4:]))
    if bits.ue() > 31:
        raise H264Error("seq_parameter_set_id out of range")
    chroma_format_idc, separate_planes = 1, False
    if head.profile_idc in _HIGH_PROFILES:
        chroma_format_idc = bits.ue()
        if chroma_format_idc > 3:
            raise H264Error("chroma_format_idc out of range")
        if chroma_format_idc == 3:
            separate_planes = bool(bits.u(1))
        if bits.ue() > 6 or bits.ue() > 6:  # bit_depth_luma_minus8, bit_depth_chroma_minus8
            raise H264Error("bit depth out of range")
        bits.u(1)  # qpprime_y_zero_transform_bypass_flag
        if bits.u(1):  # seq_scaling_matrix_present_flag
            for i in range(8 if chroma_format_idc != 3 else 12):
                if bits.u(1):
                    _skip_scaling_list(bits, 16 if i < 6 else 64)
    if bits.ue() > 12:  # log2_max_frame_num_minus4
        raise H264Error("log2_max_frame_num out of range")
    poc_type = bits.ue()
    if poc_type == 0:
        if bits.ue() > 12:
            raise H264Error("log2_max_pic_order_cnt_lsb out of range")
    elif poc_type == 1:
        bits.u(1)  # delta_pic_order_always_zero_flag
        bits.se()  # offset_for_non_ref_pic
        bits.se()  # offset_for_top_to_bottom_field
        cycle = bits.ue()
        if cycle > 255:
            raise H264Error("num_ref_frames_in_pic_order_cnt_cycle out of range")
        for _ in range(cycle):
            bits.se()
    elif poc_type != 2:
        raise H264Error("pic_order_cnt_type out of range")
    bits.ue()  # max_num_ref_frames
    bits.u(1)  # gaps_in_frame_num_value_allowed_flag
    width_mbs = bits.ue() + 1
    height_units = bits.ue() + 1
    frame_mbs_only = bits.u(1)
    if not frame_mbs_only:
        bits.u(1)  # mb_adaptive_frame_field_flag
    bits.u(1)  # direct_8x8_inference_flag
    crop = (bits.ue(), bits.ue(), bits.ue(), bits.ue()) if bits.u(1) else (0, 0, 0, 0)
    chroma_array_type = 0 if separate_planes else chroma_format_idc
    sub_width, sub_height = {0: (1, 1), 1: (2, 2), 2: (2, 1), 3: (1, 1)}[chroma_array_type]
    unit_x, unit_y = sub_width, sub_height * (2 - frame_mbs_only)
    width = width_mbs * 16 - unit_x * (crop[0] + crop[1])
    height = (2 - frame_mbs_only) * height_units * 16 - unit_y * (crop[2] + crop[3])
    if not (0 < width <= _MAX_DIMENSION and 0 < height <= _MAX_DIMENSION):
        raise H264Error(f"impossible picture size {width}x{height}")
    return SpsInfo(
        profile_idc=head.profile_idc,
        constraint_flags=head.constraint_flags,
        level_idc=head.level_idc,
        chroma_format_idc=chroma_format_idc,
        width=width,
        height=height,
    )


def unescape_rbsp(data: bytes) -> bytes:
    """Remove emulation prevention bytes (``00 00 03`` → ``00 00``)."""
    if b"\x00\x00\x03" not in data:
        return data
    out = bytearray()
    zeros = 0
    for byte in data:
        if zeros >= 2 and byte == 3:
            zeros = 0
            continue
        out.append(byte)
        zeros = zeros + 1 if byte == 0 else 0
    return bytes(out)


def _skip_scaling_list(bits: _Bits, size: int) -> None:
    last, nxt = 8, 8
    for _ in range(size):
        if nxt:
            delta = bits.se()
            if not -128 <= delta <= 127:
                raise H264Error("delta_scale out of range")
            nxt = (last + delta + 256) % 256
        last = nxt or last


class _Bits:
    """A big-endian bit reader with Exp-Golomb codes; H264Error past the end."""

    def __init__(self, data: bytes) -> None:
        self.value = int.from_bytes(data, "big")
        self.size = len(data) * 8
        self.pos = 0

    def u(self, n: int) -> int:
        if self.pos + n > self.size:
            raise H264Error("SPS truncated")
        self.pos += n
        return (self.value >> (self.size - self.pos)) & ((1 << n) - 1)

    def ue(self) -> int:
        zeros = 0
        while self.u(1) == 0:
            zeros += 1
            if zeros > _MAX_UE_BITS:
                raise H264Error("Exp-Golomb code too long")
        return (1 << zeros) - 1 + self.u(zeros)

    def se(self) -> int:
        k = self.ue()
        return (k + 1) // 2 if k % 2 else -(k // 2)
