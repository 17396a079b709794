"""Choosing the viewer's H.264 format for the camera's real profile, and the SDP aiortc gets and gives (pure text)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from edge.cameras.live.sdp import (
    AIORTC_PROFILE_LEVEL_ID,
    Profile,
    SdpError,
    announced_profile_level_id,
    parse_offer,
    plan_answer,
    profile_of,
    rewrite_answer,
)
from tests.edge.cameras.live.test_h264 import FUZZ
from varta.contract import LiveError

SESSION = """v=0
o=- 4611731400430051336 2 IN IP4 127.0.0.1
s=-
t=0 0
a=group:BUNDLE 0 1
a=extmap-allow-mixed
a=msid-semantic: WMS
"""
AUDIO = """m=audio 9 UDP/TLS/RTP/SAVPF 111 63 0
c=IN IP4 0.0.0.0
a=rtcp:9 IN IP4 0.0.0.0
a=ice-ufrag:abcd
a=ice-pwd:abcdefghijklmnopqrstuvwx
a=fingerprint:sha-256 00:11:22:33:44:55:66:77:88:99:AA:BB:CC:DD:EE:FF:00:11:22:33:44:55:66:77:88:99:AA:BB:CC:DD:EE:FF
a=setup:actpass
a=mid:0
a=recvonly
a=rtcp-mux
a=rtpmap:111 opus/48000/2
a=rtcp-fb:111 transport-cc
a=fmtp:111 minptime=10;useinbandfec=1
a=rtpmap:63 red/48000/2
a=fmtp:63 111/111
a=rtpmap:0 PCMU/8000
"""
# Chrome's video section (VP8/VP9/H264/AV1 with RTX), trimmed of header extensions.
CHROME_VIDEO = """m=video 9 UDP/TLS/RTP/SAVPF 96 97 98 99 100 101 102 103 104 105 106 107 108 109 127 125 112 113 45 46
c=IN IP4 0.0.0.0
a=rtcp:9 IN IP4 0.0.0.0
a=ice-ufrag:abcd
a=ice-pwd:abcdefghijklmnopqrstuvwx
a=fingerprint:sha-256 00:11:22:33:44:55:66:77:88:99:AA:BB:CC:DD:EE:FF:00:11:22:33:44:55:66:77:88:99:AA:BB:CC:DD:EE:FF
a=setup:actpass
a=mid:1
a=recvonly
a=rtcp-mux
a=rtcp-rsize
a=rtpmap:96 VP8/90000
a=rtcp-fb:96 goog-remb
a=rtcp-fb:96 nack
a=rtcp-fb:96 nack pli
a=rtpmap:97 rtx/90000
a=fmtp:97 apt=96
a=rtpmap:98 VP9/90000
a=fmtp:98 profile-id=0
a=rtpmap:99 rtx/90000
a=fmtp:99 apt=98
a=rtpmap:100 VP9/90000
a=fmtp:100 profile-id=2
a=rtpmap:101 rtx/90000
a=fmtp:101 apt=100
a=rtpmap:102 H264/90000
a=rtcp-fb:102 nack
a=rtcp-fb:102 nack pli
a=fmtp:102 level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42001f
a=rtpmap:103 rtx/90000
a=fmtp:103 apt=102
a=rtpmap:104 H264/90000
a=fmtp:104 level-asymmetry-allowed=1;packetization-mode=0;profile-level-id=42001f
a=rtpmap:105 rtx/90000
a=fmtp:105 apt=104
a=rtpmap:106 H264/90000
a=rtcp-fb:106 nack
a=rtcp-fb:106 nack pli
a=fmtp:106 level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42e01f
a=rtpmap:107 rtx/90000
a=fmtp:107 apt=106
a=rtpmap:108 H264/90000
a=fmtp:108 level-asymmetry-allowed=1;packetization-mode=0;profile-level-id=42e01f
a=rtpmap:109 rtx/90000
a=fmtp:109 apt=108
a=rtpmap:127 H264/90000
a=rtcp-fb:127 nack
a=fmtp:127 level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=4d001f
a=rtpmap:125 rtx/90000
a=fmtp:125 apt=127
a=rtpmap:112 H264/90000
a=rtcp-fb:112 nack
a=rtcp-fb:112 nack pli
a=fmtp:112 level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=64001f
a=rtpmap:113 rtx/90000
a=fmtp:113 apt=112
a=rtpmap:45 AV1/90000
a=rtpmap:46 rtx/90000
a=fmtp:46 apt=45
"""
# Safari offers H.264 first: Constrained High and Constrained Baseline, each in both packetization modes.
SAFARI_VIDEO = """m=video 9 UDP/TLS/RTP/SAVPF 96 97 98 99 100 101
c=IN IP4 0.0.0.0
a=mid:1
a=recvonly
a=rtpmap:96 H264/90000
a=fmtp:96 level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=640c1f
a=rtpmap:97 rtx/90000
a=fmtp:97 apt=96
a=rtpmap:98 H264/90000
a=fmtp:98 level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42e01f
a=rtpmap:99 rtx/90000
a=fmtp:99 apt=98
a=rtpmap:100 H264/90000
a=fmtp:100 level-asymmetry-allowed=1;packetization-mode=0;profile-level-id=640c1f
a=rtpmap:101 VP8/90000
"""


# Debian's Chromium 156: newer formats numbered 35-63 (aiortc keeps only 96-127), host addresses as mDNS names.
CHROMIUM_156_VIDEO = """m=video 9 UDP/TLS/RTP/SAVPF 96 97 108 109 116 117 41 42
c=IN IP4 0.0.0.0
a=candidate:1614942520 1 udp 2113937151 c1d78719-dd04-4836-9b69-c0d8c95cb80b.local 49293 typ host generation 0
a=candidate:3316011561 1 udp 1677729535 203.0.113.7 49293 typ srflx raddr 0.0.0.0 rport 0 generation 0
a=end-of-candidates
a=mid:1
a=recvonly
a=rtpmap:96 VP8/90000
a=rtpmap:97 rtx/90000
a=fmtp:97 apt=96
a=rtpmap:108 H264/90000
a=fmtp:108 level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42e01f
a=rtpmap:109 rtx/90000
a=fmtp:109 apt=108
a=rtpmap:116 H264/90000
a=fmtp:116 level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=4d001f
a=rtpmap:117 rtx/90000
a=fmtp:117 apt=116
a=rtpmap:41 H264/90000
a=rtcp-fb:41 nack pli
a=fmtp:41 level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=f4001f
a=rtpmap:42 rtx/90000
a=fmtp:42 apt=41
"""


def sdp(*sections: str) -> str:
    return (SESSION + "".join(sections)).replace("\n", "\r\n")


CHROME = sdp(AUDIO, CHROME_VIDEO)
SAFARI = sdp(AUDIO, SAFARI_VIDEO)


def section_lines(text: str, kind: str = "video") -> list[str]:
    """The lines of the first *kind* section of an SDP text."""
    lines = text.replace("\r\n", "\n").split("\n")
    start = next(i for i, line in enumerate(lines) if line.startswith(f"m={kind} "))
    end = next((i for i in range(start + 1, len(lines)) if lines[i].startswith("m=")), len(lines))
    return lines[start:end]


# ------------------------------------------------------------------------------------------------ profiles


@pytest.mark.parametrize(
    ("plid", "profile"),
    [
        ("42e01f", Profile.CONSTRAINED_BASELINE),
        ("42c01e", Profile.CONSTRAINED_BASELINE),  # x264 baseline: constraint_set0 and 1
        ("42001f", Profile.BASELINE),
        ("4d001f", Profile.MAIN),
        ("4d401f", Profile.MAIN),  # x264 main: constraint_set1
        ("640028", Profile.HIGH),
        ("640c1f", Profile.CONSTRAINED_HIGH),
        ("f4000d", Profile.PREDICTIVE_HIGH_444),
        ("6e0028", None),  # High 10: no WebRTC profile
        ("64", None),
        ("zz0028", None),
    ],
)
def test_profile_level_ids_name_the_profiles_webrtc_knows(plid: str, profile: Profile | None) -> None:
    assert profile_of(plid) is profile


def test_camera_values_with_odd_constraint_bits_are_still_recognised_and_announced_plainly() -> None:
    assert profile_of("640828") is None  # constraint_set4 alone: not in WebRTC's table
    assert profile_of("640828", strict=False) is Profile.HIGH
    assert announced_profile_level_id("640828") == "640028"
    assert announced_profile_level_id("4d401f") == "4d401f"  # WebRTC parses it: announced as the camera says
    assert announced_profile_level_id("6E0028") == "6e0028"  # unknown profile: as it is


# ------------------------------------------------------------------------------------------------ choosing


@pytest.mark.parametrize(
    ("camera", "offer", "pt", "announced", "exact"),
    [
        ("640028", CHROME, 112, "640028", True),  # High camera → Chrome's High payload type
        ("4d401f", CHROME, 127, "4d401f", True),  # Main camera → Main
        ("42c01e", CHROME, 106, "42c01e", True),  # x264 baseline is Constrained Baseline → 42e01f's type
        ("42001f", CHROME, 102, "42001f", True),  # Baseline camera → Chrome's Baseline
        ("640c1f", CHROME, 112, "640c1f", True),  # Constrained High: High receives it
        ("640028", SAFARI, 96, "640028", False),  # only Constrained High offered: best effort, real profile announced
        ("42e01f", SAFARI, 98, "42e01f", True),
        ("4d401f", SAFARI, 96, "4d401f", False),
        (None, CHROME, 106, "42e01f", True),  # unknown camera profile: Constrained Baseline assumed
    ],
)
def test_the_offers_format_whose_profile_receives_the_cameras_is_chosen(
    camera: str | None, offer: str, pt: int, announced: str, exact: bool
) -> None:
    plan = plan_answer(parse_offer(offer), camera)
    assert (plan.format.pt, plan.profile_level_id, plan.exact) == (pt, announced, exact)
    assert plan.format.packetization_mode == 1
    assert plan.codec == f"H264 profile-level-id={announced}"


def test_main_camera_without_main_in_the_offer_falls_to_the_least_capable_receiver() -> None:
    offer = sdp(CHROME_VIDEO.replace("profile-level-id=4d001f", "profile-level-id=42001f"))
    plan = plan_answer(parse_offer(offer), "4d401f")
    assert plan.format.pt == 112 and plan.exact  # High decoders receive Main


def test_aiortc_gets_an_offer_reduced_to_the_chosen_format_as_a_profile_it_knows() -> None:
    plan = plan_answer(parse_offer(CHROME), "640028")
    video = section_lines(plan.offer_for_aiortc)
    assert video[0] == "m=video 9 UDP/TLS/RTP/SAVPF 112 113"
    pts = {line.split(":")[1].split()[0] for line in video if line.startswith(("a=rtpmap:", "a=fmtp:", "a=rtcp-fb:"))}
    assert pts == {"112", "113"}
    assert f"a=fmtp:112 level-asymmetry-allowed=1;packetization-mode=1;profile-level-id={AIORTC_PROFILE_LEVEL_ID}" in (
        video
    )
    assert "a=rtcp-fb:112 nack pli" in video and "a=fmtp:113 apt=112" in video
    assert section_lines(plan.offer_for_aiortc, "audio") == section_lines(CHROME, "audio")  # untouched
    assert plan.offer_for_aiortc.startswith("v=0\r\n") and plan.offer_for_aiortc.endswith("\r\n")
    assert "a=group:BUNDLE 0 1" in plan.offer_for_aiortc


def test_the_answer_announces_the_cameras_profile_on_the_chosen_payload_type() -> None:
    plan = plan_answer(parse_offer(CHROME), "640028")
    aiortc_answer = sdp(
        AUDIO.replace("a=setup:actpass", "a=setup:active"),
        "m=video 50000 UDP/TLS/RTP/SAVPF 112 113\n"
        "a=mid:1\n"
        "a=sendonly\n"
        "a=rtpmap:112 H264/90000\n"
        "a=fmtp:112 level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42e01f\n"
        "a=rtpmap:113 rtx/90000\n"
        "a=fmtp:113 apt=112\n",
    )
    answer = rewrite_answer(aiortc_answer, plan)
    video = section_lines(answer)
    assert "a=fmtp:112 level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=640028" in video
    assert "a=fmtp:113 apt=112" in video
    assert section_lines(answer, "audio") == section_lines(aiortc_answer, "audio")
    without_fmtp = aiortc_answer.replace(
        "a=fmtp:112 level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42e01f\r\n", ""
    )
    assert "a=fmtp:112 packetization-mode=1;profile-level-id=640028" in rewrite_answer(without_fmtp, plan)


def test_an_answer_without_the_chosen_payload_type_is_refused() -> None:
    plan = plan_answer(parse_offer(CHROME), "640028")
    rejected = sdp(AUDIO, "m=video 0 UDP/TLS/RTP/SAVPF 112\na=mid:1\n")
    other = sdp(AUDIO, "m=video 9 UDP/TLS/RTP/SAVPF 96\na=mid:1\n")
    for answer in (rejected, other, sdp(AUDIO)):
        with pytest.raises(SdpError) as err:
            rewrite_answer(answer, plan)
        assert err.value.reason is LiveError.NO_COMMON_CODEC


def test_payload_types_aiortc_would_not_keep_are_renumbered_for_it_and_restored_after() -> None:
    offer = sdp(AUDIO, CHROMIUM_156_VIDEO)
    plan = plan_answer(parse_offer(offer), "640028")  # High 4:4:4 Predictive (41) receives High
    assert (plan.format.pt, plan.format.rtx_pt, plan.exact, plan.profile_level_id) == (41, 42, True, "640028")
    video = section_lines(plan.offer_for_aiortc)
    used = {int(w) for line in offer.split("\r\n") if line.startswith("m=") for w in line.split()[3:]}
    new_pt, new_rtx = (int(w) for w in video[0].split()[3:])
    assert 96 <= new_pt <= 127 and 96 <= new_rtx <= 127 and not {new_pt, new_rtx} & used
    assert plan.restore == {new_pt: 41, new_rtx: 42}
    assert f"a=rtcp-fb:{new_pt} nack pli" in video and f"a=fmtp:{new_rtx} apt={new_pt}" in video
    assert f"a=fmtp:{new_pt} level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42e01f" in video
    assert plan_answer(parse_offer(offer), "42e01f").restore == {}  # 108 is in aiortc's range: kept


def test_mdns_candidates_are_kept_from_aiortc_and_handed_over_after_the_answer() -> None:
    plan = plan_answer(parse_offer(sdp(AUDIO, CHROMIUM_156_VIDEO)), "42e01f")
    video = section_lines(plan.offer_for_aiortc)
    assert not [line for line in video if ".local" in line]
    assert any("203.0.113.7" in line for line in video)  # addresses stay
    assert "a=end-of-candidates" not in video and plan.deferred_end
    [(index, candidate)] = plan.deferred_candidates
    assert index == 1 and candidate.startswith("candidate:1614942520 ") and candidate.endswith("generation 0")
    plain = plan_answer(parse_offer(CHROME), "42e01f")
    assert (plain.deferred_candidates, plain.deferred_end) == ((), False)


# ------------------------------------------------------------------------------------------------ refusals


@pytest.mark.parametrize(
    ("text", "reason", "message"),
    [
        ("hello, I am not SDP at all", LiveError.BAD_OFFER, "not an SDP offer"),
        (sdp(AUDIO), LiveError.BAD_OFFER, "no video section"),
        (sdp(CHROME_VIDEO.replace("m=video 9", "m=video 0")), LiveError.BAD_OFFER, "disabled"),
        (sdp("m=video 9 UDP/TLS/RTP/SAVPF 96\na=rtpmap:96 VP8/90000\n"), LiveError.NO_COMMON_CODEC, "no H.264"),
        (
            sdp("m=video 9 UDP/TLS/RTP/SAVPF 104\na=rtpmap:104 H264/90000\na=fmtp:104 profile-level-id=42e01f\n"),
            LiveError.NO_COMMON_CODEC,
            "packetization-mode 0",
        ),
    ],
)
def test_offers_that_cannot_be_answered_name_the_reason(text: str, reason: LiveError, message: str) -> None:
    with pytest.raises(SdpError, match=message) as err:
        parse_offer(text)
    assert err.value.reason is reason


@FUZZ
@given(st.text(max_size=600), st.sampled_from([None, "640028", "42e01f", "zz"]))
def test_any_text_is_answered_or_refused_with_a_reason(text: str, camera: str | None) -> None:
    for candidate in (text, sdp(text), sdp(CHROME_VIDEO[: len(text)])):
        try:
            plan = plan_answer(parse_offer(candidate), camera)
        except SdpError as exc:
            assert exc.reason in (LiveError.BAD_OFFER, LiveError.NO_COMMON_CODEC)
        else:
            assert plan.format.packetization_mode == 1
