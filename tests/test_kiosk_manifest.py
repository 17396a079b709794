"""Kiosk manifests: central signs what a public screen may show; the node shows nothing it cannot verify.

Schedules are read on the wall clock of the manifest's time zone (Europe/Kyiv: EET, UTC+2 in winter; EEST, UTC+3
from the last Sunday of March 03:00 to the last Sunday of October 04:00).
"""

from __future__ import annotations

import hashlib
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import orjson
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from nacl.signing import SigningKey
from pydantic import ValidationError

from varta.kiosk_manifest import (
    MAX_SIGNED_MANIFEST_BYTES,
    SIGNING_CONTEXT,
    Asset,
    Manifest,
    ManifestError,
    ManifestReason,
    Playlist,
    PlaylistItem,
    Schedule,
    SignedManifest,
    TimeWindow,
    active_playlist,
    active_schedule,
    ensure_not_stale,
    is_addressed_to,
    manifest_bytes,
    next_change,
    parse_signed_manifest,
    sign_manifest,
    verify_manifest,
)
from varta.signing import _b64, _unb64, generate_signing_key, key_id, public_key_text

FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
KYIV = ZoneInfo("Europe/Kyiv")

CENTRAL = generate_signing_key()
OTHER = generate_signing_key()
KEYS = [public_key_text(CENTRAL.verify_key)]

IMAGE = hashlib.sha256(b"poster").hexdigest()
VIDEO = hashlib.sha256(b"clip").hexdigest()
BUNDLE = hashlib.sha256(b"bundle").hexdigest()


def _assets() -> list[dict[str, Any]]:
    return [
        {"sha256": IMAGE, "size": 1000, "kind": "image", "mime": "image/png", "name": "Poster"},
        {"sha256": VIDEO, "size": 9000, "kind": "video", "mime": "video/mp4", "name": "Clip"},
        {"sha256": BUNDLE, "size": 5000, "kind": "bundle", "mime": "application/zip", "name": "Transit map"},
    ]


def _playlist(playlist_id: str, *items: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": playlist_id,
        "name": playlist_id.title(),
        "items": list(items or [{"asset": IMAGE, "duration_s": 10}]),
    }


def _data(**changes: Any) -> dict[str, Any]:
    """A valid manifest as JSON data: playlists 'default', 'day', 'night', 'alert'; no schedules."""
    data: dict[str, Any] = {
        "version": 7,
        "issued_at": "2025-03-01T10:00:00+00:00",
        "kiosk_group": "podil-squares",
        "assets": _assets(),
        "playlists": [
            _playlist(
                "default",
                {"asset": IMAGE, "duration_s": 10},
                {"asset": VIDEO},
                {"asset": BUNDLE, "duration_s": 30},
                {"url": "https://city.example/news", "duration_s": 20, "title": "News"},
            ),
            _playlist("day"),
            _playlist("night"),
            _playlist("alert"),
        ],
        "default_playlist_id": "default",
    }
    data.update(changes)
    return data


def _manifest(**changes: Any) -> Manifest:
    return Manifest.model_validate(_data(**changes))


def _with_schedules(*schedules: dict[str, Any], **changes: Any) -> Manifest:
    return _manifest(schedules=list(schedules), **changes)


def _kyiv(year: int, month: int, day: int, hour: int = 12, minute: int = 0, fold: int = 0) -> datetime:
    """A Kyiv wall-clock time, returned in UTC (the node's clock is UTC)."""
    return datetime(year, month, day, hour, minute, tzinfo=KYIV, fold=fold).astimezone(UTC)


def _playing(manifest: Manifest, now: datetime) -> str | None:
    playlist = active_playlist(manifest, now)
    return playlist.id if playlist else None


def _sign_payload(payload: bytes, key: SigningKey = CENTRAL, *, context: bytes = SIGNING_CONTEXT) -> bytes:
    """Wire bytes for an arbitrary payload signed like central signs manifests."""
    signature = key.sign(context + payload).signature
    signed = SignedManifest(manifest=_b64(payload), key_id=key_id(key.verify_key), signature=_b64(signature))
    return signed.to_bytes()


def _reason(data: SignedManifest | bytes, keys: list[str] = KEYS, **kwargs: Any) -> ManifestReason:
    with pytest.raises(ManifestError) as info:
        verify_manifest(data, keys, **kwargs)
    return info.value.reason


def _flip(text: str, index: int) -> str:
    """*text* (base64url) with one byte of the data it encodes flipped."""
    raw = bytearray(_unb64(text))
    raw[index] ^= 0x01
    return _b64(bytes(raw))


# ---------------------------------------------------------------------------------------------------- signing


def test_a_signed_manifest_verifies_back_into_the_same_manifest() -> None:
    manifest = _manifest()
    signed = sign_manifest(CENTRAL, manifest)
    assert signed.key_id == key_id(CENTRAL.verify_key)
    assert verify_manifest(signed, KEYS) == manifest
    assert verify_manifest(signed.to_bytes(), KEYS) == manifest


def test_the_signature_covers_the_context_and_the_canonical_sorted_json() -> None:
    manifest = _manifest()
    signed = sign_manifest(CENTRAL, manifest)
    payload = _unb64(signed.manifest)
    assert payload == manifest_bytes(manifest)
    assert payload == orjson.dumps(orjson.loads(payload), option=orjson.OPT_SORT_KEYS)
    CENTRAL.verify_key.verify(SIGNING_CONTEXT + payload, _unb64(signed.signature))


def test_canonical_bytes_do_not_depend_on_the_order_weekdays_were_given_in() -> None:
    one = _with_schedules({"playlist_id": "day", "weekdays": [4, 0, 2]})
    other = _with_schedules({"playlist_id": "day", "weekdays": [2, 4, 0]})
    assert manifest_bytes(one) == manifest_bytes(other)
    assert b'"weekdays":[0,2,4]' in manifest_bytes(one)


@pytest.mark.parametrize("where", ["first", "middle", "last"])
def test_a_flipped_byte_in_the_manifest_is_bad_signature(where: str) -> None:
    signed = sign_manifest(CENTRAL, _manifest())
    size = len(_unb64(signed.manifest))
    index = {"first": 0, "middle": size // 2, "last": size - 1}[where]
    tampered = signed.model_copy(update={"manifest": _flip(signed.manifest, index)})
    assert _reason(tampered) is ManifestReason.BAD_SIGNATURE


@pytest.mark.parametrize("index", [0, 31, 63])
def test_a_flipped_byte_in_the_signature_is_bad_signature(index: int) -> None:
    signed = sign_manifest(CENTRAL, _manifest())
    tampered = signed.model_copy(update={"signature": _flip(signed.signature, index)})
    assert _reason(tampered) is ManifestReason.BAD_SIGNATURE


def test_a_non_canonical_base64_signature_is_refused_even_though_it_decodes_to_the_same_bytes() -> None:
    signed = sign_manifest(CENTRAL, _manifest())
    last = signed.signature[-1]
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    twin = alphabet[alphabet.index(last) ^ 0x01]  # differs only in the unused low bits of the final character
    tampered = signed.model_copy(update={"signature": signed.signature[:-1] + twin})
    assert _unb64(tampered.signature) == _unb64(signed.signature)
    assert _reason(tampered) is ManifestReason.BAD_SCHEMA


@FUZZ
@given(position=st.integers(min_value=0), mask=st.integers(1, 255))
def test_any_single_byte_change_of_the_wire_form_is_refused(position: int, mask: int) -> None:
    wire = bytearray(sign_manifest(CENTRAL, _manifest()).to_bytes())
    wire[position % len(wire)] ^= mask
    with pytest.raises(ManifestError):
        verify_manifest(bytes(wire), KEYS)


def test_a_key_that_is_not_configured_is_unknown_key() -> None:
    signed = sign_manifest(OTHER, _manifest())
    assert _reason(signed) is ManifestReason.UNKNOWN_KEY
    assert _reason(signed, keys=[]) is ManifestReason.UNKNOWN_KEY


def test_a_signature_by_another_key_under_a_configured_key_id_is_bad_signature() -> None:
    forged = sign_manifest(OTHER, _manifest()).model_copy(update={"key_id": key_id(CENTRAL.verify_key)})
    assert _reason(forged) is ManifestReason.BAD_SIGNATURE


def test_any_configured_key_verifies_so_keys_can_be_rotated() -> None:
    both = [public_key_text(OTHER.verify_key), *KEYS]
    assert verify_manifest(sign_manifest(CENTRAL, _manifest()), both).version == 7
    assert verify_manifest(sign_manifest(OTHER, _manifest()), both).version == 7


def test_a_signature_without_the_manifest_context_is_refused() -> None:
    """A signature by the right key over the bare bytes (as another message type might be signed) does not count."""
    wire = _sign_payload(manifest_bytes(_manifest()), context=b"")
    assert _reason(wire) is ManifestReason.BAD_SIGNATURE


def test_an_older_version_is_stale_and_the_same_or_newer_is_accepted() -> None:
    signed = sign_manifest(CENTRAL, _manifest(version=7))
    assert _reason(signed, current_version=8) is ManifestReason.STALE_VERSION
    assert verify_manifest(signed, KEYS, current_version=7).version == 7
    assert verify_manifest(signed, KEYS, current_version=6).version == 7
    with pytest.raises(ManifestError) as info:
        ensure_not_stale(_manifest(version=3), 4)
    assert info.value.reason is ManifestReason.STALE_VERSION
    ensure_not_stale(_manifest(version=3), None)


def test_a_manifest_for_other_kiosks_is_wrong_target() -> None:
    by_ids = sign_manifest(CENTRAL, _manifest(kiosk_group=None, kiosk_ids=["kiosk-1", "kiosk-2"]))
    assert verify_manifest(by_ids, KEYS, kiosk_id="kiosk-2").kiosk_ids == ("kiosk-1", "kiosk-2")
    assert _reason(by_ids, kiosk_id="kiosk-3") is ManifestReason.WRONG_TARGET
    by_group = sign_manifest(CENTRAL, _manifest())
    assert verify_manifest(by_group, KEYS, kiosk_id="kiosk-9", kiosk_group="podil-squares").kiosk_group
    assert _reason(by_group, kiosk_id="kiosk-9", kiosk_group="obolon") is ManifestReason.WRONG_TARGET
    assert not is_addressed_to(_manifest(), None, None)


def test_input_over_the_size_cap_is_too_large_before_parsing() -> None:
    assert _reason(b" " * (MAX_SIGNED_MANIFEST_BYTES + 1)) is ManifestReason.TOO_LARGE
    assert _reason(b"\xff" * (MAX_SIGNED_MANIFEST_BYTES + 1)) is ManifestReason.TOO_LARGE


@pytest.mark.parametrize(
    ("wire", "reason"),
    [
        (b"", ManifestReason.BAD_JSON),
        (b"\xff\xfe", ManifestReason.BAD_JSON),
        (b"{", ManifestReason.BAD_JSON),
        (b"[" * 100_000, ManifestReason.BAD_JSON),
        (b"null", ManifestReason.BAD_SCHEMA),
        (b"[]", ManifestReason.BAD_SCHEMA),
        (b'{"manifest": 1, "key_id": "0011223344556677", "signature": "x"}', ManifestReason.BAD_SCHEMA),
        (b'{"manifest": "", "key_id": "00", "signature": ""}', ManifestReason.BAD_SCHEMA),
    ],
)
def test_garbage_wire_bytes_get_a_clear_reason(wire: bytes, reason: ManifestReason) -> None:
    assert _reason(wire) is reason


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        (b"not json", ManifestReason.BAD_JSON),
        (b'{"hello": "world"}', ManifestReason.BAD_SCHEMA),
        (orjson.dumps(_data(version="7")), ManifestReason.BAD_SCHEMA),  # strict: no string-to-int coercion
        (orjson.dumps(_data(schema_version=2)), ManifestReason.UNSUPPORTED_SCHEMA),
        (orjson.dumps(_data(default_playlist_id="nope")), ManifestReason.BAD_SCHEMA),
    ],
)
def test_a_correctly_signed_but_invalid_manifest_is_refused(payload: bytes, reason: ManifestReason) -> None:
    assert _reason(_sign_payload(payload)) is reason


def test_schema_errors_name_the_field() -> None:
    bad = _data()
    bad["assets"][0]["mime"] = "image/svg+xml"
    with pytest.raises(ManifestError) as info:
        verify_manifest(_sign_payload(orjson.dumps(bad)), KEYS)
    assert info.value.reason is ManifestReason.BAD_SCHEMA
    assert "assets.0.mime" in info.value.detail


json_scalars = st.none() | st.booleans() | st.integers(-(2**63), 2**64 - 1) | st.floats(allow_nan=False) | st.text()
json_values = st.recursive(
    json_scalars,
    lambda children: st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=12), children, max_size=5),
    max_leaves=25,
)


def _outcome(wire: bytes) -> Manifest | ManifestError:
    """The verified manifest or the ManifestError; any other exception fails the test."""
    try:
        return verify_manifest(wire, KEYS)
    except ManifestError as exc:
        assert isinstance(exc.reason, ManifestReason)
        return exc


@FUZZ
@given(wire=st.binary(max_size=2048))
@example(wire=b'{"manifest": "' + b"A" * 5000 + b'"}')
@example(wire=b'{"manifest": "AAAA", "key_id": "0000000000000000", "signature": "' + b"A" * 86 + b'"}')
def test_arbitrary_bytes_only_ever_raise_manifest_error(wire: bytes) -> None:
    assert isinstance(_outcome(wire), ManifestError)


@FUZZ
@given(value=json_values)
def test_arbitrary_json_as_the_wire_form_only_ever_raises_manifest_error(value: Any) -> None:
    assert isinstance(_outcome(orjson.dumps(value)), ManifestError)


@FUZZ
@given(value=json_values)
def test_arbitrary_signed_json_is_refused_with_a_reason(value: Any) -> None:
    outcome = _outcome(_sign_payload(orjson.dumps(value)))
    assert isinstance(outcome, ManifestError)
    assert outcome.reason in {ManifestReason.BAD_SCHEMA, ManifestReason.UNSUPPORTED_SCHEMA}


@st.composite
def mutated_manifests(draw: st.DrawFn) -> dict[str, Any]:
    """A valid manifest with a few fields (at any depth) dropped, replaced by arbitrary JSON, or added."""
    data = _data(schedules=[{"playlist_id": "day", "windows": [{"start": "08:00", "end": "20:00"}]}])
    for _ in range(draw(st.integers(1, 4))):
        node: Any = data
        while isinstance(node, dict | list) and node and draw(st.booleans()):
            key = draw(st.sampled_from(sorted(node) if isinstance(node, dict) else range(len(node))))
            if not isinstance(node[key], dict | list):
                break
            node = node[key]
        if isinstance(node, list):
            node.append(draw(json_values))
            continue
        action = draw(st.sampled_from(["drop", "replace", "add"]))
        if action in ("drop", "replace") and node:
            key = draw(st.sampled_from(sorted(node)))
            if action == "drop":
                del node[key]
            else:
                node[key] = draw(json_values)
        else:
            node[draw(st.text(max_size=12))] = draw(json_values)
    return data


@FUZZ
@given(data=mutated_manifests())
def test_mutated_signed_manifests_verify_or_are_refused_with_a_reason(data: dict[str, Any]) -> None:
    outcome = _outcome(_sign_payload(orjson.dumps(data)))
    if isinstance(outcome, Manifest):
        assert manifest_bytes(outcome) == manifest_bytes(Manifest.model_validate_json(orjson.dumps(data)))
    else:
        assert outcome.reason in {ManifestReason.BAD_SCHEMA, ManifestReason.UNSUPPORTED_SCHEMA}


def test_parse_signed_manifest_round_trips_the_wire_form() -> None:
    signed = sign_manifest(CENTRAL, _manifest())
    assert parse_signed_manifest(signed.to_bytes()) == signed


# ---------------------------------------------------------------------------------------------------- schema


def _invalid(**changes: Any) -> str:
    with pytest.raises(ValidationError) as info:
        _manifest(**changes)
    return str(info.value)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"mime": "image/svg+xml"}, "mime"),
        ({"mime": "video/mp4"}, "image assets must be one of"),
        ({"sha256": IMAGE.upper()}, "sha256"),
        ({"sha256": IMAGE[:-1]}, "sha256"),
        ({"size": 0}, "size"),
        ({"size": 2**40}, "size"),
        ({"name": ""}, "name"),
        ({"name": "x" * 201}, "name"),
        ({"name": "bad\nname"}, "control characters"),
        ({"kind": "script"}, "kind"),
    ],
)
def test_assets_are_checked(change: dict[str, Any], message: str) -> None:
    assets = _assets()
    assets[0] |= change
    assert message in _invalid(assets=assets)


@pytest.mark.parametrize(
    "url",
    [
        "https://city.example/news",
        "https://city.example:8443/a?b=c#d",
        "http://127.0.0.1:8080/demo",
        "http://127.0.0.1",
    ],
)
def test_web_pages_must_be_https_or_local_http(url: str) -> None:
    assert PlaylistItem(url=url, duration_s=5).url == url


@pytest.mark.parametrize(
    "url",
    [
        "http://city.example/news",
        "http://localhost/",
        "http://127.0.0.2/",
        "javascript:alert(1)",
        "data:text/html,<script>alert(1)</script>",
        "file:///etc/passwd",
        "https://",
        "https:///path",
        "https://user:secret@city.example/",
        "https://city.example@evil.example/",
        "https://city.example\\@evil.example/",
        "https://city example/",
        "https://city.example/\x00",
        "https://місто.example/",
        "https://city.example:99999/",
        "https://[::1/",
        "https://city.example/" + "a" * 2048,
    ],
)
def test_other_web_pages_are_refused(url: str) -> None:
    with pytest.raises(ValidationError):
        PlaylistItem(url=url, duration_s=5)


def test_an_item_is_exactly_one_of_asset_or_url() -> None:
    with pytest.raises(ValidationError, match="exactly one"):
        PlaylistItem(duration_s=5)
    with pytest.raises(ValidationError, match="exactly one"):
        PlaylistItem(asset=IMAGE, url="https://city.example/", duration_s=5)
    with pytest.raises(ValidationError, match="duration_s"):
        PlaylistItem(url="https://city.example/")
    for duration in (0, 3601):
        with pytest.raises(ValidationError, match="duration_s"):
            PlaylistItem(asset=IMAGE, duration_s=duration)


def test_only_videos_may_omit_the_duration() -> None:
    assert _manifest(playlists=[_playlist("default", {"asset": VIDEO})]).playlists[0].items[0].duration_s is None
    assert "needs duration_s" in _invalid(playlists=[_playlist("default", {"asset": IMAGE})])
    assert "needs duration_s" in _invalid(playlists=[_playlist("default", {"asset": BUNDLE})])


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"playlists": [_playlist("default", {"asset": "a" * 64, "duration_s": 5})]}, "unknown asset"),
        ({"schedules": [{"playlist_id": "missing"}]}, "unknown playlist 'missing'"),
        ({"default_playlist_id": "missing"}, "unknown playlist 'missing'"),
        ({"assets": [*_assets(), _assets()[0]]}, "duplicate asset sha256"),
        ({"playlists": [_playlist("default"), _playlist("default")]}, "duplicate playlist id"),
        ({"kiosk_group": None}, "exactly one of 'kiosk_group' or 'kiosk_ids'"),
        ({"kiosk_ids": ["kiosk-1"]}, "exactly one of 'kiosk_group' or 'kiosk_ids'"),
        ({"kiosk_group": None, "kiosk_ids": ["k", "k"]}, "twice"),
        ({"playlists": [{"id": "Bad Id", "name": "x", "items": [{"asset": IMAGE, "duration_s": 5}]}]}, "pattern"),
        ({"playlists": [{"id": "empty", "name": "x", "items": []}]}, "at least 1"),
        ({"issued_at": "2025-03-01T10:00:00"}, "timezone"),
        ({"version": 0}, "version"),
        ({"surprise": 1}, "Extra inputs are not permitted"),
    ],
)
def test_manifests_are_checked_as_a_whole(changes: dict[str, Any], message: str) -> None:
    assert message in _invalid(**changes)


@pytest.mark.parametrize("name", ["Mars/Olympus_Mons", "localtime", "../etc/passwd", "Europe", "", "Europe/Kyiv "])
def test_the_timezone_must_be_an_iana_place(name: str) -> None:
    assert "time zone" in _invalid(timezone=name)


def test_a_valid_timezone_is_kept_and_defaults_to_kyiv() -> None:
    assert _manifest().timezone == "Europe/Kyiv"
    assert _manifest(timezone="America/New_York").zone == ZoneInfo("America/New_York")


@pytest.mark.parametrize(
    ("window", "ok"),
    [
        ({"start": "08:00", "end": "20:00"}, True),
        ({"start": "22:00", "end": "02:00"}, True),
        ({"start": "20:00", "end": "24:00"}, True),
        ({"start": "08:00", "end": "08:00"}, False),
        ({"start": "00:00", "end": "24:00"}, False),
        ({"start": "24:00", "end": "01:00"}, False),
        ({"start": "8:00", "end": "20:00"}, False),
        ({"start": "08:60", "end": "20:00"}, False),
        ({"start": "08:00", "end": "25:00"}, False),
    ],
)
def test_time_windows(window: dict[str, str], ok: bool) -> None:
    if ok:
        TimeWindow.model_validate(window)
    else:
        with pytest.raises(ValidationError):
            TimeWindow.model_validate(window)


@pytest.mark.parametrize(
    "schedule",
    [
        {"playlist_id": "day", "weekdays": [7]},
        {"playlist_id": "day", "weekdays": []},
        {"playlist_id": "day", "start_date": "2025-05-02", "end_date": "2025-05-01"},
        {"playlist_id": "day", "priority": 10_000},
    ],
)
def test_bad_schedules_are_refused(schedule: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        Schedule.model_validate(schedule)


def test_models_are_immutable() -> None:
    manifest = _manifest()
    with pytest.raises(ValidationError):
        manifest.version = 8  # type: ignore[misc]
    assert isinstance(manifest.playlists, tuple)
    assert isinstance(manifest.playlists[0], Playlist)
    assert manifest.asset(IMAGE) == Asset.model_validate(_assets()[0])


# ---------------------------------------------------------------------------------------------------- schedules


def test_without_a_matching_schedule_the_default_playlist_plays() -> None:
    assert _playing(_manifest(), _kyiv(2025, 5, 5)) == "default"


def test_without_a_default_the_screen_is_blank() -> None:
    manifest = _with_schedules({"playlist_id": "day", "weekdays": [0]}, default_playlist_id=None)
    assert _playing(manifest, _kyiv(2025, 5, 5)) == "day"  # a Monday
    assert active_playlist(manifest, _kyiv(2025, 5, 6)) is None


def test_weekdays_count_from_monday_zero() -> None:
    manifest = _with_schedules({"playlist_id": "day", "weekdays": [0, 1, 2, 3, 4]})
    assert [_playing(manifest, _kyiv(2025, 5, d)) for d in range(5, 12)] == ["day"] * 5 + ["default"] * 2


def test_date_ranges_are_inclusive_in_local_time() -> None:
    manifest = _with_schedules({"playlist_id": "day", "start_date": "2025-05-09", "end_date": "2025-05-11"})
    assert _playing(manifest, _kyiv(2025, 5, 8, 23, 59)) == "default"
    assert _playing(manifest, _kyiv(2025, 5, 9, 0, 0)) == "day"
    assert _playing(manifest, _kyiv(2025, 5, 11, 23, 59)) == "day"
    assert _playing(manifest, _kyiv(2025, 5, 12, 0, 0)) == "default"
    # 2025-05-08 22:30 UTC is already May 9th in Kyiv
    assert _playing(manifest, datetime(2025, 5, 8, 22, 30, tzinfo=UTC)) == "day"


def test_a_window_includes_its_start_and_excludes_its_end() -> None:
    manifest = _with_schedules({"playlist_id": "day", "windows": [{"start": "08:00", "end": "20:00"}]})
    assert _playing(manifest, _kyiv(2025, 5, 5, 7, 59)) == "default"
    assert _playing(manifest, _kyiv(2025, 5, 5, 8, 0)) == "day"
    assert _playing(manifest, _kyiv(2025, 5, 5, 19, 59)) == "day"
    assert _playing(manifest, _kyiv(2025, 5, 5, 20, 0)) == "default"


def test_a_window_can_run_to_the_end_of_the_day() -> None:
    manifest = _with_schedules({"playlist_id": "night", "windows": [{"start": "20:00", "end": "24:00"}]})
    assert _playing(manifest, _kyiv(2025, 5, 5, 23, 59)) == "night"
    assert _playing(manifest, _kyiv(2025, 5, 6, 0, 0)) == "default"


def test_a_midnight_crossing_window_belongs_to_the_day_it_starts() -> None:
    """Monday 22:00–02:00 covers Tuesday 01:00, but not Monday 01:00 (that is Sunday's) nor Tuesday 23:00."""
    manifest = _with_schedules(
        {"playlist_id": "night", "weekdays": [0], "windows": [{"start": "22:00", "end": "02:00"}]}
    )
    monday, tuesday = 5, 6  # May 2025
    assert _playing(manifest, _kyiv(2025, 5, monday, 1, 0)) == "default"
    assert _playing(manifest, _kyiv(2025, 5, monday, 21, 59)) == "default"
    assert _playing(manifest, _kyiv(2025, 5, monday, 22, 0)) == "night"
    assert _playing(manifest, _kyiv(2025, 5, tuesday, 1, 0)) == "night"
    assert _playing(manifest, _kyiv(2025, 5, tuesday, 1, 59)) == "night"
    assert _playing(manifest, _kyiv(2025, 5, tuesday, 2, 0)) == "default"
    assert _playing(manifest, _kyiv(2025, 5, tuesday, 23, 0)) == "default"


def test_a_midnight_crossing_window_on_the_last_day_of_a_range_runs_into_the_next_day() -> None:
    manifest = _with_schedules(
        {"playlist_id": "night", "end_date": "2025-05-05", "windows": [{"start": "22:00", "end": "02:00"}]}
    )
    assert _playing(manifest, _kyiv(2025, 5, 6, 1, 0)) == "night"
    assert _playing(manifest, _kyiv(2025, 5, 6, 22, 0)) == "default"


def test_several_windows_in_one_schedule() -> None:
    manifest = _with_schedules(
        {"playlist_id": "day", "windows": [{"start": "07:00", "end": "09:00"}, {"start": "17:00", "end": "19:00"}]}
    )
    hours = [h for h in range(24) if _playing(manifest, _kyiv(2025, 5, 5, h)) == "day"]
    assert hours == [7, 8, 17, 18]


def test_the_highest_priority_wins_whatever_the_order() -> None:
    low = {"playlist_id": "day", "priority": 1}
    high = {"playlist_id": "alert", "priority": 5, "windows": [{"start": "10:00", "end": "11:00"}]}
    for order in ([low, high], [high, low]):
        manifest = _with_schedules(*order)
        assert _playing(manifest, _kyiv(2025, 5, 5, 10, 30)) == "alert"
        assert _playing(manifest, _kyiv(2025, 5, 5, 11, 30)) == "day"


def test_equal_priorities_go_to_the_schedule_listed_first() -> None:
    day, night = {"playlist_id": "day", "priority": 3}, {"playlist_id": "night", "priority": 3}
    assert _playing(_with_schedules(day, night), _kyiv(2025, 5, 5)) == "day"
    assert _playing(_with_schedules(night, day), _kyiv(2025, 5, 5)) == "night"
    schedule = active_schedule(_with_schedules(night, day), _kyiv(2025, 5, 5))
    assert schedule is not None
    assert schedule.playlist_id == "night"


def test_windows_follow_the_wall_clock_across_the_spring_dst_change() -> None:
    """08:00–20:00 Kyiv is 06:00–18:00 UTC in winter and 05:00–17:00 UTC in summer."""
    manifest = _with_schedules({"playlist_id": "day", "windows": [{"start": "08:00", "end": "20:00"}]})
    saturday, monday = 29, 31  # around Sunday 2025-03-30
    assert _playing(manifest, datetime(2025, 3, saturday, 5, 30, tzinfo=UTC)) == "default"
    assert _playing(manifest, datetime(2025, 3, saturday, 6, 0, tzinfo=UTC)) == "day"
    assert _playing(manifest, datetime(2025, 3, monday, 5, 0, tzinfo=UTC)) == "day"
    assert _playing(manifest, datetime(2025, 3, monday, 17, 0, tzinfo=UTC)) == "default"


def test_a_window_inside_the_skipped_spring_hour_never_applies_that_night() -> None:
    manifest = _with_schedules({"playlist_id": "night", "windows": [{"start": "03:00", "end": "04:00"}]})
    night = [datetime(2025, 3, 29, 23, 0, tzinfo=UTC) + timedelta(minutes=m) for m in range(0, 240)]
    assert {_playing(manifest, t) for t in night} == {"default"}
    assert _playing(manifest, datetime(2025, 3, 29, 1, 30, tzinfo=UTC)) == "night"  # 03:30 EET the day before


def test_a_window_inside_the_repeated_autumn_hour_applies_twice() -> None:
    """On 2025-10-26, 03:00–04:00 Kyiv happens twice: 00:00–01:00 UTC (EEST) and 01:00–02:00 UTC (EET)."""
    manifest = _with_schedules({"playlist_id": "night", "windows": [{"start": "03:00", "end": "04:00"}]})
    assert _playing(manifest, datetime(2025, 10, 25, 23, 59, tzinfo=UTC)) == "default"
    assert _playing(manifest, datetime(2025, 10, 26, 0, 0, tzinfo=UTC)) == "night"
    assert _playing(manifest, datetime(2025, 10, 26, 1, 59, tzinfo=UTC)) == "night"
    assert _playing(manifest, datetime(2025, 10, 26, 2, 0, tzinfo=UTC)) == "default"


def test_the_manifest_timezone_decides_the_local_day() -> None:
    schedule = {"playlist_id": "day", "weekdays": [0]}
    sunday_evening_utc = datetime(2025, 5, 4, 23, 0, tzinfo=UTC)  # already Monday in Kyiv, still Sunday in New York
    assert _playing(_with_schedules(schedule), sunday_evening_utc) == "day"
    assert _playing(_with_schedules(schedule, timezone="America/New_York"), sunday_evening_utc) == "default"


def test_a_naive_now_is_a_programming_error() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        active_playlist(_manifest(), datetime(2025, 5, 5, 12, 0))


# ---------------------------------------------------------------------------------------------------- next_change


def test_next_change_is_the_next_window_boundary() -> None:
    manifest = _with_schedules({"playlist_id": "day", "windows": [{"start": "08:00", "end": "20:00"}]})
    assert next_change(manifest, _kyiv(2025, 5, 5, 7, 0)) == _kyiv(2025, 5, 5, 8, 0)
    assert next_change(manifest, _kyiv(2025, 5, 5, 8, 0)) == _kyiv(2025, 5, 5, 20, 0)
    assert next_change(manifest, _kyiv(2025, 5, 5, 21, 0)) == _kyiv(2025, 5, 6, 8, 0)
    change = next_change(manifest, _kyiv(2025, 5, 5, 21, 0))
    assert change is not None
    assert change.tzinfo is UTC


def test_next_change_skips_boundaries_that_change_nothing() -> None:
    manifest = _with_schedules(
        {"playlist_id": "day", "windows": [{"start": "08:00", "end": "12:00"}]},
        {"playlist_id": "day", "windows": [{"start": "12:00", "end": "20:00"}]},
    )
    assert next_change(manifest, _kyiv(2025, 5, 5, 9, 0)) == _kyiv(2025, 5, 5, 20, 0)


def test_next_change_is_none_when_nothing_ever_changes() -> None:
    assert next_change(_manifest(), _kyiv(2025, 5, 5)) is None
    assert next_change(_with_schedules({"playlist_id": "day"}), _kyiv(2025, 5, 5)) is None


def test_next_change_finds_a_date_range_months_away() -> None:
    manifest = _with_schedules(
        {"playlist_id": "alert", "start_date": "2025-12-24", "end_date": "2025-12-26", "weekdays": [2, 3, 4]}
    )
    assert next_change(manifest, _kyiv(2025, 5, 5)) == _kyiv(2025, 12, 24, 0, 0)
    assert next_change(manifest, _kyiv(2025, 12, 24, 12, 0)) == _kyiv(2025, 12, 27, 0, 0)


def test_next_change_into_a_window_that_starts_in_the_skipped_hour_is_the_moment_of_the_jump() -> None:
    manifest = _with_schedules(
        {
            "playlist_id": "night",
            "start_date": "2025-03-30",
            "end_date": "2025-03-30",
            "windows": [{"start": "03:30", "end": "05:00"}],
        }
    )
    change = next_change(manifest, datetime(2025, 3, 29, 22, 0, tzinfo=UTC))
    assert change == datetime(2025, 3, 30, 1, 0, tzinfo=UTC)  # 03:00 EET becomes 04:00 EEST
    assert _playing(manifest, change) == "night"
    assert _playing(manifest, change - timedelta(seconds=1)) == "default"


HALF_HOURS = st.integers(0, 47).map(lambda n: f"{n // 2:02d}:{n % 2 * 30:02d}")


@st.composite
def windowed_manifests(draw: st.DrawFn) -> tuple[Manifest, date]:
    """Manifests whose boundaries fall on half hours, and a day ten days before a DST change."""
    base = draw(st.sampled_from([date(2025, 3, 20), date(2025, 10, 16)]))
    schedules = []
    for _ in range(draw(st.integers(0, 4))):
        windows = []
        for _ in range(draw(st.integers(0, 2))):
            start, end = draw(HALF_HOURS), draw(HALF_HOURS | st.just("24:00"))
            if start != end and not (start == "00:00" and end == "24:00"):
                windows.append({"start": start, "end": end})
        schedule: dict[str, Any] = {
            "playlist_id": draw(st.sampled_from(["day", "night", "alert"])),
            "priority": draw(st.integers(0, 3)),
            "weekdays": draw(st.sets(st.integers(0, 6), min_size=1)),
            "windows": windows,
        }
        if draw(st.booleans()):
            start_day = base + timedelta(days=draw(st.integers(0, 20)))
            schedule["start_date"] = start_day.isoformat()
            schedule["end_date"] = (start_day + timedelta(days=draw(st.integers(0, 5)))).isoformat()
        schedules.append(schedule)
    default = draw(st.sampled_from(["default", None]))
    return _with_schedules(*schedules, default_playlist_id=default), base


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(case=windowed_manifests(), offset_minutes=st.integers(0, 20 * 24 * 60))
@example(  # a window starting inside the skipped hour of 2025-03-30; now = 2025-03-29 22:00 UTC
    case=(
        _with_schedules({"playlist_id": "night", "windows": [{"start": "03:30", "end": "05:00"}]}),
        date(2025, 3, 20),
    ),
    offset_minutes=(9 * 24 + 22) * 60,
)
def test_next_change_agrees_with_a_half_hourly_brute_force_search(
    case: tuple[Manifest, date], offset_minutes: int
) -> None:
    """Every boundary is on a half hour (UTC too: Kyiv's offsets are whole hours), so checking each half hour
    finds the first change exactly."""
    manifest, base = case
    now = datetime.combine(base, datetime.min.time(), tzinfo=UTC) + timedelta(minutes=offset_minutes)
    horizon = now + timedelta(days=40)
    current = _playing(manifest, now)
    step = now.replace(minute=30 if now.minute >= 30 else 0, second=0, microsecond=0) + timedelta(minutes=30)
    expected = None
    while step <= horizon:
        if _playing(manifest, step) != current:
            expected = step
            break
        step += timedelta(minutes=30)
    change = next_change(manifest, now)
    if expected is None:
        assert change is None or change > horizon
    else:
        assert change == expected
