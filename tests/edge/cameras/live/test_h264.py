"""H.264 bitstream helpers: NAL units, avcC/AVCC, keyframes, SPS/PPS re-insertion, SPS parsing (pure functions)."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from edge.cameras.live.h264 import (
    H264Error,
    ParameterSets,
    avcc_to_annexb,
    ensure_parameter_sets,
    in_band_parameter_sets,
    is_keyframe,
    join_annexb,
    nal_types,
    parameter_sets,
    parse_sps,
    split_annexb,
    split_avcc,
    sps_profile,
    to_annexb,
    unescape_rbsp,
)

FUZZ = settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# SPS written by x264 (GStreamer x264enc) for these sizes and profiles.
SPS_HIGH_360 = bytes.fromhex("6764001eacb405017fcb80b5060606a50000030001000003003c8f162ea0")
SPS_HIGH_1080 = bytes.fromhex("67640028acb403c0113f2e02d40404050000030001000003003c8f1832a0")
SPS_MAIN_720 = bytes.fromhex("674d401fda014016ec05a808080a000003000200000300791e306540")
SPS_BASELINE_CIF = bytes.fromhex("6742c015da05825b016a0c0c0d4a000003000200000300791e2c5d40")
SPS_444 = bytes.fromhex("67f4000d91968141fb016a0c0c0c80000003008000001e478a1550")
SPS_HIGH_ODD = bytes.fromhex("6764001eacb405217f112602d418181a94000003000400000300f23c58ba80")
PPS = bytes.fromhex("68ee3c80")
AUD = bytes.fromhex("0910")
IDR = bytes.fromhex("65888040ffee")
SLICE = bytes.fromhex("419a2233")
SEI = bytes.fromhex("06050a")


# ------------------------------------------------------------------------------------------------ NAL units


def test_annexb_splits_on_three_and_four_byte_start_codes_and_drops_trailing_zeros() -> None:
    stream = b"\x00\x00\x00\x01" + SPS_HIGH_360 + b"\x00\x00\x01" + PPS + b"\x00\x00" + b"\x00\x00\x00\x01" + IDR
    assert split_annexb(stream) == [SPS_HIGH_360, PPS, IDR]
    assert nal_types(stream) == [7, 8, 5]


def test_annexb_ignores_bytes_before_the_first_start_code_and_empty_units() -> None:
    assert split_annexb(b"junk\x00\x00\x01\x00\x00\x01" + SLICE) == [SLICE]
    assert split_annexb(b"") == [] and split_annexb(b"\x00\x00\x01") == []


def test_join_then_split_gives_the_units_back() -> None:
    units = [AUD, SPS_MAIN_720, PPS, SEI, IDR]
    assert split_annexb(join_annexb(units)) == units


def test_avcc_packets_become_annexb() -> None:
    avcc = b"".join(len(n).to_bytes(4, "big") + n for n in (SEI, IDR))
    assert avcc_to_annexb(avcc) == join_annexb([SEI, IDR])
    short = b"".join(len(n).to_bytes(2, "big") + n for n in (SLICE,))
    assert split_avcc(short, 2) == [SLICE]
    assert to_annexb(avcc) == join_annexb([SEI, IDR])  # no start code: tried as 4-byte AVCC
    assert to_annexb(join_annexb([IDR])) == join_annexb([IDR])  # already Annex-B: unchanged
    assert to_annexb(short, 2) == join_annexb([SLICE])  # the length size from avcC wins


@pytest.mark.parametrize(
    ("data", "message"),
    [(b"\x00\x00\x00\x09\x65", "bad NAL length"), (b"\x00\x00", "truncated"), (b"\x00\x00\x00\x00", "bad NAL length")],
)
def test_broken_avcc_is_a_clear_error(data: bytes, message: str) -> None:
    with pytest.raises(H264Error, match=message):
        split_avcc(data)


# ------------------------------------------------------------------------------------------------ extradata


def avcc_record(sps: bytes, pps: bytes, length_size: int = 4) -> bytes:
    return (
        bytes([1, sps[1], sps[2], sps[3], 0xFC | (length_size - 1), 0xE1])
        + len(sps).to_bytes(2, "big")
        + sps
        + b"\x01"
        + len(pps).to_bytes(2, "big")
        + pps
    )


def test_avcc_extradata_gives_sps_pps_and_the_length_size() -> None:
    sets = parameter_sets(avcc_record(SPS_HIGH_1080, PPS, 4))
    assert sets == ParameterSets(sps=(SPS_HIGH_1080,), pps=(PPS,), length_size=4)
    assert sets.annexb() == join_annexb([SPS_HIGH_1080, PPS])
    assert parameter_sets(avcc_record(SPS_HIGH_1080, PPS, 2)).length_size == 2


def test_annexb_extradata_as_rtsp_demuxers_give_it() -> None:
    sets = parameter_sets(join_annexb([SPS_BASELINE_CIF, PPS]))
    assert sets == ParameterSets(sps=(SPS_BASELINE_CIF,), pps=(PPS,), length_size=0) and sets.complete
    assert not parameter_sets(None).complete and not parameter_sets(b"").complete


@pytest.mark.parametrize("record", [b"\x01\x64\x00", avcc_record(SPS_MAIN_720, PPS)[:-2], b"\x01\x64\x00\x28\xfe\xe1"])
def test_broken_avcc_extradata_is_a_clear_error(record: bytes) -> None:
    with pytest.raises(H264Error):
        parameter_sets(record)


# ------------------------------------------------------------------------------------------------ keyframes


SETS = ParameterSets(sps=(SPS_HIGH_360,), pps=(PPS,))


def test_keyframes_are_access_units_with_an_idr_slice() -> None:
    assert is_keyframe(join_annexb([AUD, SPS_HIGH_360, PPS, IDR]))
    assert is_keyframe(join_annexb([IDR]))
    assert not is_keyframe(join_annexb([AUD, SLICE]))
    assert not is_keyframe(join_annexb([SPS_HIGH_360, PPS]))


def test_an_idr_without_parameter_sets_gets_them_after_its_delimiter() -> None:
    fixed = ensure_parameter_sets(join_annexb([AUD, SEI, IDR]), SETS)
    assert split_annexb(fixed) == [AUD, SPS_HIGH_360, PPS, SEI, IDR]
    assert split_annexb(ensure_parameter_sets(join_annexb([IDR]), SETS)) == [SPS_HIGH_360, PPS, IDR]


def test_an_idr_with_only_one_parameter_set_gets_a_consistent_pair() -> None:
    fixed = ensure_parameter_sets(join_annexb([AUD, PPS, IDR]), SETS)
    assert split_annexb(fixed) == [AUD, SPS_HIGH_360, PPS, IDR]


def test_access_units_that_need_nothing_are_returned_unchanged() -> None:
    complete = join_annexb([AUD, SPS_MAIN_720, PPS, IDR])
    assert ensure_parameter_sets(complete, SETS) is complete  # its own SPS/PPS win
    delta = join_annexb([AUD, SLICE])
    assert ensure_parameter_sets(delta, SETS) is delta
    bare = join_annexb([IDR])
    assert ensure_parameter_sets(bare, ParameterSets(sps=(SPS_HIGH_360,))) is bare  # nothing complete to insert
    assert in_band_parameter_sets(complete) == ParameterSets(sps=(SPS_MAIN_720,), pps=(PPS,))


# ------------------------------------------------------------------------------------------------ SPS


@pytest.mark.parametrize(
    ("sps", "profile_level_id", "size"),
    [
        (SPS_HIGH_360, "64001e", (640, 360)),
        (SPS_HIGH_1080, "640028", (1920, 1080)),  # 1088 coded lines, 8 cropped
        (SPS_MAIN_720, "4d401f", (1280, 720)),
        (SPS_BASELINE_CIF, "42c015", (352, 288)),
        (SPS_444, "f4000d", (320, 240)),  # High 4:4:4 Predictive: chroma_format_idc 3
        (SPS_HIGH_ODD, "64001e", (642, 362)),  # cropped on the right and the bottom
    ],
)
def test_x264_sps_give_profile_level_and_picture_size(sps: bytes, profile_level_id: str, size: tuple[int, int]) -> None:
    info = parse_sps(sps)
    assert info.profile_level_id == profile_level_id == sps_profile(sps).profile_level_id
    assert (info.width, info.height) == size


class BitWriter:
    """Writes an SPS the way the standard describes it (to reach branches x264 does not use)."""

    def __init__(self) -> None:
        self.bits = ""

    def u(self, n: int, value: int) -> BitWriter:
        self.bits += format(value, f"0{n}b") if n else ""
        return self

    def ue(self, value: int) -> BitWriter:
        code = format(value + 1, "b")
        self.bits += "0" * (len(code) - 1) + code
        return self

    def se(self, value: int) -> BitWriter:
        return self.ue(2 * value - 1 if value > 0 else -2 * value)

    def rbsp(self) -> bytes:
        bits = self.bits + "1"
        bits += "0" * (-len(bits) % 8)
        raw = int(bits, 2).to_bytes(len(bits) // 8, "big")
        out, zeros = bytearray(), 0  # emulation prevention, as an encoder writes it
        for byte in raw:
            if zeros >= 2 and byte <= 3:
                out.append(3)
                zeros = 0
            out.append(byte)
            zeros = zeros + 1 if byte == 0 else 0
        return bytes(out)


def test_sps_with_scaling_lists_poc_type_1_fields_and_cropping() -> None:
    w = BitWriter().ue(0)  # seq_parameter_set_id
    w.ue(1).ue(0).ue(0).u(1, 0).u(1, 1)  # 4:2:0, 8 bit, no bypass, scaling matrix present
    for i in range(8):
        w.u(1, 1 if i in (0, 6) else 0)
        if i in (0, 6):
            for _ in range(16 if i < 6 else 64):
                w.se(1)
    w.ue(0).ue(1).u(1, 0).se(-2).se(3).ue(2).se(1).se(-1)  # frame_num; poc type 1 with a 2-entry cycle
    w.ue(4).u(1, 0)  # max_num_ref_frames, gaps
    w.ue(1920 // 16 - 1).ue(1088 // 32 - 1).u(1, 0).u(1, 1).u(1, 1)  # 120 x 34 field-pair units, interlaced
    w.u(1, 1).ue(0).ue(0).ue(0).ue(4)  # crop 8 lines at the bottom (units of 2 × 2 for fields)
    sps = bytes([0x67, 100, 0x00, 40]) + w.rbsp()
    info = parse_sps(sps)
    assert (info.width, info.height, info.profile_level_id) == (1920, 1072, "640028")


def test_emulation_prevention_bytes_are_removed() -> None:
    assert unescape_rbsp(b"\x00\x00\x03\x01\x00\x00\x03\x00\x00\x03") == b"\x00\x00\x01\x00\x00\x00\x00"
    assert unescape_rbsp(b"\x12\x34") == b"\x12\x34"


@pytest.mark.parametrize(
    ("nal", "message"),
    [
        (b"", "too short"),
        (b"\x68\x64\x00\x1e", "not an SPS"),
        (b"\xe7\x64\x00\x1e\xac", "not an SPS"),  # forbidden_zero_bit set
        (SPS_HIGH_360[:6], "truncated"),
        (bytes([0x67, 66, 0xC0, 30]) + BitWriter().ue(0).ue(0).ue(3).rbsp(), "pic_order_cnt_type"),
        (bytes([0x67, 100, 0, 30]) + BitWriter().ue(0).ue(7).rbsp(), "chroma_format_idc"),
        (bytes([0x67, 66, 0xC0, 30]) + b"\x00" * 8 + b"\x01", "Exp-Golomb code too long"),
    ],
)
def test_malformed_sps_are_clear_errors(nal: bytes, message: str) -> None:
    with pytest.raises(H264Error, match=message):
        parse_sps(nal)


# ------------------------------------------------------------------------------------------------ garbage


@FUZZ
@given(st.binary(max_size=2048))
@example(b"\x00\x00\x01")
@example(b"\x00\x00\x00\x01\x00\x00\x01\x00")
def test_splitting_any_bytes_never_crashes_and_loses_no_unit(data: bytes) -> None:
    units = split_annexb(data)
    assert all(units) and all(not u.endswith(b"\x00") for u in units)
    assert len(nal_types(data)) == len(units)
    assert is_keyframe(data) == (5 in nal_types(data))
    for unit in units:
        assert unit in data


@FUZZ
@given(st.lists(st.binary(min_size=1, max_size=64).filter(lambda b: b"\x00\x00" not in b and b[-1] != 0), max_size=8))
def test_units_without_start_code_lookalikes_survive_join_and_split(units: list[bytes]) -> None:
    assert split_annexb(join_annexb(units)) == units


@FUZZ
@given(st.binary(max_size=256))
@example(bytes([0x67, 100, 0, 40]))
@example(bytes([0x67, 100, 0, 40, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF]))
def test_parsing_any_bytes_as_sps_gives_an_answer_or_h264error(data: bytes) -> None:
    try:
        info = parse_sps(b"\x67" + data)
    except H264Error:
        return
    assert info.width is not None and info.height is not None
    assert 0 < info.width <= 16384 and 0 < info.height <= 16384
    assert len(info.profile_level_id) == 6


@FUZZ
@given(st.binary(max_size=256), st.sampled_from([1, 2, 4]))
def test_any_bytes_as_avcc_or_extradata_give_an_answer_or_h264error(data: bytes, length_size: int) -> None:
    with contextlib.suppress(H264Error):
        split_avcc(data, length_size)
    with contextlib.suppress(H264Error):
        parameter_sets(b"\x01" + data)
