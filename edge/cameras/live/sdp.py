"""The SDP work of a live-view answer: pick the viewer's H.264 format that fits the camera, tell the truth about it.

aiortc knows H.264 only as Constrained Baseline (``42001f``/``42e01f``) and would answer a High-profile camera's
stream as such (Safari then shows black video); it would also pick VP8 if the browser lists it first. So, before
aiortc sees the offer, :func:`plan_answer` chooses among the offer's H.264 payload types (packetization-mode 1: aiortc
sends FU-A/STAP-A) the one whose profile receives the camera's profile, and gives aiortc an offer reduced to that
payload type (and its RTX), its ``profile-level-id`` replaced by one aiortc accepts. aiortc keeps an offer's
payload type only in 96–127 (Chrome also uses 35–63): a chosen type outside is renumbered for aiortc, and
``AnswerPlan.restore`` says which to give back to aiortc's negotiated codecs (sessions.py does). Browsers hide
their host addresses behind mDNS names (``….local``); aiortc would resolve them before answering (a second each
where mDNS does not reach), so they are kept out of aiortc's offer (``AnswerPlan.deferred_candidates``: added
after the answer; the browser's own checks reach the node meanwhile). Finally :func:`rewrite_answer` writes the
camera's real ``profile-level-id`` (level from its SPS) into aiortc's answer. Pure text, no aiortc.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Final

from varta.contract import LiveError

AIORTC_PROFILE_LEVEL_ID: Final = "42e01f"
"""A ``profile-level-id`` aiortc's own H.264 codec list matches (Constrained Baseline 3.1)."""
DEFAULT_PROFILE_LEVEL_ID: Final = "42e01f"
"""What an H.264 format without ``profile-level-id`` means to WebRTC implementations."""
_PT_RE: Final = re.compile(r"^a=(rtpmap|fmtp|rtcp-fb):(\d+)[ \t]", re.IGNORECASE)
_APT_RE: Final = re.compile(r"(?<![\w-])apt=(\d+)")
AIORTC_PAYLOAD_TYPES: Final = range(96, 128)
"""The dynamic payload types aiortc keeps from an offer (others it replaces by its own)."""
_PLID_RE: Final = re.compile(r"^[0-9a-fA-F]{6}$")


class SdpError(ValueError):
    """The offer cannot be answered; ``reason`` is the :class:`~varta.contract.LiveError` to report."""

    def __init__(self, detail: str, reason: LiveError) -> None:
        super().__init__(detail)
        self.reason = reason


class Profile(StrEnum):
    """H.264 profiles as WebRTC tells them apart (``profile-level-id``: profile_idc and constraint byte)."""

    CONSTRAINED_BASELINE = "constrained-baseline"
    BASELINE = "baseline"
    MAIN = "main"
    CONSTRAINED_HIGH = "constrained-high"
    HIGH = "high"
    PREDICTIVE_HIGH_444 = "predictive-high-444"


#: (profile_idc, constraint-byte pattern, profile): the table WebRTC implementations use ("x" = either bit).
_PATTERNS: Final = (
    (0x42, "x1xx0000", Profile.CONSTRAINED_BASELINE),
    (0x4D, "1xxx0000", Profile.CONSTRAINED_BASELINE),
    (0x58, "11xx0000", Profile.CONSTRAINED_BASELINE),
    (0x42, "x0xx0000", Profile.BASELINE),
    (0x58, "10xx0000", Profile.BASELINE),
    (0x4D, "0x0x0000", Profile.MAIN),
    (0x64, "00000000", Profile.HIGH),
    (0x64, "00001100", Profile.CONSTRAINED_HIGH),
    (0xF4, "00000000", Profile.PREDICTIVE_HIGH_444),
)
#: The profile_idc and constraint byte that write each profile in its plainest form.
_CANONICAL: Final = {
    Profile.CONSTRAINED_BASELINE: "42e0",
    Profile.BASELINE: "4200",
    Profile.MAIN: "4d00",
    Profile.CONSTRAINED_HIGH: "640c",
    Profile.HIGH: "6400",
    Profile.PREDICTIVE_HIGH_444: "f400",
}
#: Least capable first: the order in which a receiver's profile is preferred when none matches exactly.
_ORDER: Final = list(_CANONICAL)
#: Which camera profiles a decoder of each profile receives (Baseline's FMO/ASO are not used by cameras).
_RECEIVES: Final = {
    Profile.CONSTRAINED_BASELINE: {Profile.CONSTRAINED_BASELINE},
    Profile.BASELINE: {Profile.CONSTRAINED_BASELINE, Profile.BASELINE},
    Profile.MAIN: {Profile.CONSTRAINED_BASELINE, Profile.MAIN},
    Profile.CONSTRAINED_HIGH: {Profile.CONSTRAINED_BASELINE, Profile.CONSTRAINED_HIGH},
    Profile.HIGH: {Profile.CONSTRAINED_BASELINE, Profile.MAIN, Profile.CONSTRAINED_HIGH, Profile.HIGH},
    Profile.PREDICTIVE_HIGH_444: set(_CANONICAL),
}


def _matches(pattern: str, byte: int) -> bool:
    return all(p == "x" or int(p) == (byte >> (7 - i)) & 1 for i, p in enumerate(pattern))


def profile_of(profile_level_id: str, *, strict: bool = True) -> Profile | None:
    """The profile a ``profile-level-id`` names (None if WebRTC would not recognise it).

    With ``strict=False`` (for what a camera's SPS says) unknown constraint bits are ignored: profile_idc 66, 77,
    100 and 244 are Baseline (Constrained if constraint_set1), Main, High (Constrained with sets 4 and 5) and
    High 4:4:4 Predictive.
    """
    if not _PLID_RE.match(profile_level_id):
        return None
    idc, iop = int(profile_level_id[:2], 16), int(profile_level_id[2:4], 16)
    for p_idc, pattern, profile in _PATTERNS:
        if p_idc == idc and _matches(pattern, iop):
            return profile
    if strict:
        return None
    if idc == 0x42:
        return Profile.CONSTRAINED_BASELINE if iop & 0x40 else Profile.BASELINE
    if idc == 0x64:
        return Profile.CONSTRAINED_HIGH if iop & 0x0C == 0x0C else Profile.HIGH
    return {0x4D: Profile.MAIN, 0xF4: Profile.PREDICTIVE_HIGH_444}.get(idc)


def announced_profile_level_id(camera: str) -> str:
    """The ``profile-level-id`` to announce for a camera's SPS value: itself if WebRTC parses it, else the plain
    form of its profile with its level (e.g. ``64082a`` → ``64002a``); unchanged if its profile is unknown."""
    camera = camera.lower()
    if profile_of(camera) is not None:
        return camera
    profile = profile_of(camera, strict=False)
    return _CANONICAL[profile] + camera[4:] if profile is not None else camera


# ------------------------------------------------------------------------------------------------ parsing


@dataclass(frozen=True)
class H264Format:
    """One H.264 payload type of the offer's video section."""

    pt: int
    params: dict[str, str] = field(default_factory=dict)
    rtx_pt: int | None = None

    @property
    def profile_level_id(self) -> str:
        return self.params.get("profile-level-id", DEFAULT_PROFILE_LEVEL_ID).lower()

    @property
    def packetization_mode(self) -> int:
        value = self.params.get("packetization-mode", "0")
        return int(value) if value.isdigit() else -1

    @property
    def profile(self) -> Profile | None:
        return profile_of(self.profile_level_id)


@dataclass(frozen=True)
class VideoOffer:
    """An offer's lines and its (first) video section's H.264 formats (payload types in offer order)."""

    lines: tuple[str, ...]
    section: tuple[int, int]
    """[start, end) line indices of the video section."""
    index: int
    """Which m-section (0-based) it is: the answer has the same sections in the same order."""
    formats: tuple[H264Format, ...]


def parse_offer(sdp: str) -> VideoOffer:
    """Check an SDP offer and find its video section's H.264 formats.

    SdpError ``bad_offer`` for text that is not SDP or has no video section to answer; ``no_common_codec`` if it
    offers no H.264 with packetization-mode 1.
    """
    lines = tuple(line for line in sdp.replace("\r\n", "\n").split("\n") if line)
    if not lines or lines[0].strip() != "v=0":
        raise SdpError("not an SDP offer (no 'v=0' line)", LiveError.BAD_OFFER)
    starts = [i for i, line in enumerate(lines) if line.startswith("m=")]
    videos = [(i, start) for i, start in enumerate(starts) if lines[start].startswith("m=video ")]
    if not videos:
        raise SdpError("the offer has no video section", LiveError.BAD_OFFER)
    index, start = videos[0]  # aiortc's addTrack takes the first video section
    end = starts[index + 1] if index + 1 < len(starts) else len(lines)
    words = lines[start][2:].split()
    if len(words) < 4 or words[1] == "0":
        raise SdpError("the offer's video section is disabled or malformed", LiveError.BAD_OFFER)
    payload_types = lines[start][2:].split()[3:]
    rtpmap: dict[int, str] = {}
    fmtp: dict[int, dict[str, str]] = {}
    for line in lines[start:end]:
        match = _PT_RE.match(line)
        if match is None:
            continue
        pt, value = int(match.group(2)), line[match.end() :].strip()
        if match.group(1).lower() == "rtpmap":
            rtpmap[pt] = value.lower()
        elif match.group(1).lower() == "fmtp":
            fmtp[pt] = _fmtp_params(value)
    rtx_for = {
        int(p["apt"]): pt for pt, p in fmtp.items() if rtpmap.get(pt, "").startswith("rtx/") and _pt(p.get("apt"))
    }
    formats = tuple(
        H264Format(pt=int(pt), params=fmtp.get(int(pt), {}), rtx_pt=rtx_for.get(int(pt)))
        for pt in payload_types
        if pt.isdigit() and rtpmap.get(int(pt), "").startswith("h264/90000")
    )
    usable = tuple(f for f in formats if f.packetization_mode == 1)
    if not usable:
        what = "H.264 only with packetization-mode 0" if formats else "no H.264"
        raise SdpError(f"the viewer offers {what}: the camera sends H.264", LiveError.NO_COMMON_CODEC)
    return VideoOffer(lines=lines, section=(start, end), index=index, formats=usable)


def _pt(value: str | None) -> bool:
    return value is not None and value.isdigit() and int(value) < 128


def _fmtp_params(value: str) -> dict[str, str]:
    params: dict[str, str] = {}
    for item in value.split(";"):
        key, _, val = item.strip().partition("=")
        if key:
            params[key.strip().lower()] = val.strip()
    return params


# ------------------------------------------------------------------------------------------------ planning


@dataclass(frozen=True)
class AnswerPlan:
    """The chosen payload type, what the answer announces for it, and the offer aiortc gets."""

    format: H264Format
    profile_level_id: str
    """What the answer announces: the camera's, or the offer's own when the camera's is unknown."""
    exact: bool
    """The chosen format's profile receives the camera's profile (False: best effort)."""
    offer_for_aiortc: str
    index: int
    restore: dict[int, int] = field(default_factory=dict)
    """Payload types renumbered for aiortc → the offer's own (to be put back into aiortc's negotiated codecs)."""
    deferred_candidates: tuple[tuple[int, str], ...] = ()
    """(m-section index, ``candidate:…`` value) of the offer's mDNS candidates, left out of aiortc's offer."""
    deferred_end: bool = False
    """The offer signalled end-of-candidates (left out too: to be signalled after the deferred candidates)."""

    @property
    def codec(self) -> str:
        return f"H264 profile-level-id={self.profile_level_id}"


def choose_format(offer: VideoOffer, camera_profile_level_id: str | None) -> tuple[H264Format, bool]:
    """The offer's H.264 format for the camera: its profile exactly, else the least capable profile that receives
    it, else (best effort) the most capable one offered. True when it receives the camera's profile."""
    camera = profile_of(camera_profile_level_id, strict=False) if camera_profile_level_id else None
    camera = camera or Profile.CONSTRAINED_BASELINE

    def rank(f: H264Format) -> int:
        profile = f.profile
        if profile is None:
            return len(_ORDER) + 1
        return -1 if profile is camera else _ORDER.index(profile)

    receiving = [f for f in offer.formats if f.profile is not None and camera in _RECEIVES[f.profile]]
    if receiving:
        return min(receiving, key=rank), True
    known = [f for f in offer.formats if f.profile is not None]
    if known:
        return max(known, key=lambda f: _ORDER.index(f.profile) if f.profile else -1), False
    return offer.formats[0], False


def plan_answer(offer: VideoOffer, camera_profile_level_id: str | None) -> AnswerPlan:
    """Choose the format for a camera whose SPS says *camera_profile_level_id* (None: unknown)."""
    chosen, exact = choose_format(offer, camera_profile_level_id)
    announced = (
        announced_profile_level_id(camera_profile_level_id)
        if camera_profile_level_id and _PLID_RE.match(camera_profile_level_id)
        else chosen.profile_level_id
    )
    renumber = _renumbering(offer, chosen)
    reduced, deferred, end = _defer_mdns_candidates(_reduced_offer(offer, chosen, renumber))
    return AnswerPlan(
        format=chosen,
        profile_level_id=announced,
        exact=exact,
        offer_for_aiortc=reduced,
        index=offer.index,
        restore={new: old for old, new in renumber.items()},
        deferred_candidates=deferred,
        deferred_end=end,
    )


def _defer_mdns_candidates(sdp: str) -> tuple[str, tuple[tuple[int, str], ...], bool]:
    """*sdp* without its mDNS candidates (and then without end-of-candidates), the candidates left out, and
    whether end-of-candidates was left out."""
    lines = sdp.split("\r\n")
    deferred: list[tuple[int, str]] = []
    kept: list[str] = []
    index = -1
    for line in lines:
        if line.startswith("m="):
            index += 1
        words = line.split()
        if line.startswith("a=candidate:") and len(words) >= 8 and words[4].lower().endswith(".local"):
            deferred.append((index, line[2:]))
            continue
        kept.append(line)
    end = bool(deferred) and "a=end-of-candidates" in kept
    if end:
        kept = [line for line in kept if line != "a=end-of-candidates"]
    return "\r\n".join(kept), tuple(deferred), end


def _renumbering(offer: VideoOffer, chosen: H264Format) -> dict[int, int]:
    """Offer payload type → one aiortc keeps, for the chosen type and its RTX when they are outside 96–127."""
    used = {int(w) for line in offer.lines if line.startswith("m=") for w in line.split()[3:] if w.isdigit()}
    free = (pt for pt in AIORTC_PAYLOAD_TYPES if pt not in used)
    mapping: dict[int, int] = {}
    for pt in (chosen.pt, chosen.rtx_pt):
        if pt is not None and pt not in AIORTC_PAYLOAD_TYPES:
            new = next(free, None)
            if new is None:
                raise SdpError("no payload type left to renumber the offer's H.264 for", LiveError.BAD_OFFER)
            mapping[pt] = new
    return mapping


def _reduced_offer(offer: VideoOffer, chosen: H264Format, renumber: dict[int, int]) -> str:
    """The offer with its video section reduced to *chosen* (and its RTX), announced as aiortc's profile, payload
    types renumbered as *renumber* says."""
    keep = {chosen.pt} | ({chosen.rtx_pt} if chosen.rtx_pt is not None else set())
    start, end = offer.section
    section: list[str] = []
    for line in offer.lines[start:end]:
        match = _PT_RE.match(line)
        if line.startswith("m="):
            words = line.split()
            kept = [str(renumber.get(int(w), int(w))) for w in words[3:] if w.isdigit() and int(w) in keep]
            section.append(" ".join([*words[:3], *kept]))
        elif match is None:
            section.append(line)
        elif (pt := int(match.group(2))) in keep:
            head, value = f"{line[: match.start(2)]}{renumber.get(pt, pt)}", line[match.end(2) :]
            if match.group(1).lower() == "fmtp" and pt == chosen.pt:
                value = " " + _with_profile(value, AIORTC_PROFILE_LEVEL_ID)
            elif match.group(1).lower() == "fmtp":  # the RTX format: apt names the chosen type
                value = _APT_RE.sub(lambda m: f"apt={renumber.get(int(m.group(1)), int(m.group(1)))}", value)
            section.append(head + value)
    lines = [*offer.lines[:start], *section, *offer.lines[end:]]
    return "\r\n".join(lines) + "\r\n"


def _with_profile(params: str, profile_level_id: str) -> str:
    """Format parameters (``a=fmtp:`` after the payload type) with ``profile-level-id`` set (added if missing)."""
    items = [item.strip() for item in params.split(";") if item.strip()]
    items = [i for i in items if i.split("=", 1)[0].strip().lower() != "profile-level-id"]
    return ";".join([*items, f"profile-level-id={profile_level_id}"])


def rewrite_answer(answer_sdp: str, plan: AnswerPlan) -> str:
    """aiortc's answer with the camera's ``profile-level-id`` on the chosen payload type.

    SdpError ``no_common_codec`` if aiortc did not accept that payload type (its video section lacks it).
    """
    lines = [line for line in answer_sdp.replace("\r\n", "\n").split("\n") if line]
    starts = [i for i, line in enumerate(lines) if line.startswith("m=")]
    if plan.index >= len(starts):
        raise SdpError("the answer lacks the video section", LiveError.NO_COMMON_CODEC)
    start = starts[plan.index]
    end = starts[plan.index + 1] if plan.index + 1 < len(starts) else len(lines)
    words = lines[start].split()
    if not lines[start].startswith("m=video") or len(words) < 2 or words[1] == "0":
        raise SdpError("the video section was rejected", LiveError.NO_COMMON_CODEC)
    if str(plan.format.pt) not in words[3:]:
        raise SdpError(f"payload type {plan.format.pt} missing from the answer", LiveError.NO_COMMON_CODEC)
    prefix = f"a=fmtp:{plan.format.pt} "
    for i in range(start, end):
        if lines[i].startswith(prefix):
            lines[i] = prefix + _with_profile(lines[i][len(prefix) :], plan.profile_level_id)
            break
    else:
        lines.insert(end, f"{prefix}packetization-mode=1;profile-level-id={plan.profile_level_id}")
    return "\r\n".join(lines) + "\r\n"
