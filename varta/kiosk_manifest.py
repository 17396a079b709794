"""Kiosk content manifests: what a public screen may show, and when — signed by central, verified by the node.

Every asset is content-addressed (sha256). Central signs the manifest with the same Ed25519 keys and key ids it uses
for commands (:mod:`varta.signing`); the node checks the signature *before* parsing the manifest and never shows
anything that did not come through :func:`verify_manifest`.

Signed bytes. The wire form is a small JSON wrapper (:class:`SignedManifest`) whose ``manifest`` field carries the
manifest's canonical JSON (``orjson`` with sorted keys, see :func:`manifest_bytes`) as base64url text. The signature
covers :data:`SIGNING_CONTEXT` followed by exactly those bytes, so there is nothing to re-canonicalise on the node:
the bytes that were signed are the bytes that are parsed. The context prefix keeps a manifest signature from ever
being valid for another kind of message signed with the same key.

Schedules are evaluated on the wall clock of the manifest's time zone: a window 08:00–20:00 means 08:00–20:00 local
time in winter and in summer; on the night the clocks go forward, a window inside the skipped hour never applies.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from datetime import UTC, date, datetime, time, timedelta
from enum import StrEnum
from typing import Annotated, Final, Literal, Self, TypeVar
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import orjson
from nacl.exceptions import BadSignatureError
from nacl.signing import SigningKey
from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_serializer,
    field_validator,
    model_validator,
)

from varta.contract import ID_PATTERN
from varta.signing import KeyFileError, _b64, _unb64, key_id, load_verify_key

MANIFEST_SCHEMA_VERSION: Final = 1
#: Largest signed manifest (wire bytes) a node accepts; anything bigger is refused before parsing.
MAX_SIGNED_MANIFEST_BYTES: Final = 1024 * 1024
#: Prefix of the bytes a manifest signature covers (domain separation from command signatures).
SIGNING_CONTEXT: Final = b"varta/kiosk-manifest/v1\n"
#: Largest asset a manifest may list (videos included).
MAX_ASSET_BYTES: Final = 2 * 1024**3
MAX_URL_LENGTH: Final = 2048
DEFAULT_TIMEZONE: Final = "Europe/Kyiv"

#: Allowed media types per asset kind. SVG is deliberately absent: it can carry script.
ALLOWED_MIME_TYPES: Final[dict[str, frozenset[str]]] = {
    "image": frozenset({"image/png", "image/jpeg", "image/webp"}),
    "video": frozenset({"video/mp4", "video/webm"}),
    "bundle": frozenset({"application/zip"}),
}

_T = TypeVar("_T")
_CONTROL_RE: Final = re.compile(r"[\x00-\x1f\x7f-\x9f]")
_TZ_RE: Final = re.compile(r"^[A-Za-z][A-Za-z0-9_+-]{0,30}(/[A-Za-z0-9_+-]{1,30}){0,2}$")
#: Names the tz database contains that do not describe a place (host-dependent or placeholder zones).
_NOT_A_PLACE: Final = frozenset({"localtime", "posixrules", "Factory"})


class ManifestReason(StrEnum):
    """Why a node refused a manifest (machine-readable; count them)."""

    TOO_LARGE = "too_large"
    BAD_JSON = "bad_json"
    BAD_SCHEMA = "bad_schema"
    UNSUPPORTED_SCHEMA = "unsupported_schema"
    UNKNOWN_KEY = "unknown_key"
    BAD_SIGNATURE = "bad_signature"
    STALE_VERSION = "stale_version"
    WRONG_TARGET = "wrong_target"


class ManifestError(ValueError):
    """A manifest the node must not use, with a machine-readable reason."""

    def __init__(self, reason: ManifestReason, detail: str = "") -> None:
        super().__init__(f"manifest refused ({reason.value}): {detail}" if detail else f"manifest refused ({reason})")
        self.reason = reason
        self.detail = detail


# --------------------------------------------------------------------------------------------------- field types


def _no_control_chars(value: str) -> str:
    if _CONTROL_RE.search(value):
        raise ValueError("must not contain control characters")
    return value


def _check_url(url: str) -> str:
    """Web pages must be ``https://<host>/…``; plain ``http://`` is allowed only for ``127.0.0.1`` (local testing).

    The URL must be printable ASCII (internationalised host names in punycode), without credentials
    (``https://city.example@evil.example`` tricks) and without backslashes (which browsers read as ``/``).
    """
    if not url.isascii() or not url.isprintable() or " " in url or "\\" in url:
        raise ValueError("a URL must be printable ASCII without spaces or backslashes")
    parts = urlsplit(url)
    if parts.username is not None or parts.password is not None or "@" in parts.netloc:
        raise ValueError("a URL must not carry credentials")
    _ = parts.port  # raises ValueError for a malformed port
    if parts.scheme == "https" and parts.hostname:
        return url
    if parts.scheme == "http" and parts.hostname == "127.0.0.1":
        return url
    raise ValueError("a web page URL must start with https:// (or http://127.0.0.1 for local testing)")


def _check_timezone(name: str) -> str:
    if not _TZ_RE.match(name) or name in _NOT_A_PLACE:
        raise ValueError(f"{name!r} is not an IANA time zone name such as 'Europe/Kyiv'")
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        raise ValueError(f"unknown time zone {name!r}") from None
    return name


Identifier = Annotated[str, Field(pattern=ID_PATTERN, description="lower-case id")]
Sha256 = Annotated[str, Field(pattern=r"^[0-9a-f]{64}$", description="SHA-256 of the content, lower-case hex")]
DisplayText = Annotated[str, Field(min_length=1, max_length=200), AfterValidator(_no_control_chars)]
WebUrl = Annotated[str, Field(max_length=MAX_URL_LENGTH), AfterValidator(_check_url)]
TimezoneName = Annotated[str, AfterValidator(_check_timezone)]
Weekday = Annotated[int, Field(ge=0, le=6, description="0 = Monday … 6 = Sunday")]
#: "HH:MM", 00:00–23:59.
ClockTime = Annotated[str, Field(pattern=r"^([01][0-9]|2[0-3]):[0-5][0-9]$")]
#: "HH:MM", 00:00–23:59 or "24:00" (end of day).
ClockEnd = Annotated[str, Field(pattern=r"^(([01][0-9]|2[0-3]):[0-5][0-9]|24:00)$")]


def _minutes(text: str) -> int:
    hours, minutes = text.split(":")
    return int(hours) * 60 + int(minutes)


# --------------------------------------------------------------------------------------------------- models


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Asset(_Model):
    """One piece of content, addressed by its SHA-256."""

    sha256: Sha256
    size: int = Field(gt=0, le=MAX_ASSET_BYTES, description="bytes")
    kind: Literal["image", "video", "bundle"]
    mime: Literal["image/png", "image/jpeg", "image/webp", "video/mp4", "video/webm", "application/zip"]
    name: DisplayText

    @model_validator(mode="after")
    def _mime_matches_kind(self) -> Self:
        if self.mime not in ALLOWED_MIME_TYPES[self.kind]:
            allowed = ", ".join(sorted(ALLOWED_MIME_TYPES[self.kind]))
            raise ValueError(f"{self.kind} assets must be one of {allowed}, not {self.mime}")
        return self


class PlaylistItem(_Model):
    """One step of a playlist: an asset of the manifest (by sha256) or a web page.

    ``duration_s`` is required except for videos, where leaving it out means "play to the end".
    """

    asset: Sha256 | None = None
    url: WebUrl | None = None
    duration_s: int | None = Field(default=None, ge=1, le=3600)
    title: DisplayText | None = None

    @model_validator(mode="after")
    def _one_source(self) -> Self:
        if (self.asset is None) == (self.url is None):
            raise ValueError("an item needs exactly one of 'asset' or 'url'")
        if self.url is not None and self.duration_s is None:
            raise ValueError("a web page item needs duration_s")
        return self


class Playlist(_Model):
    """A named sequence of items, played in a loop."""

    id: Identifier
    name: DisplayText
    items: tuple[PlaylistItem, ...] = Field(min_length=1, max_length=200)


class TimeWindow(_Model):
    """A daily local-time window ``[start, end)``; ``end`` before ``start`` crosses midnight into the next day."""

    start: ClockTime
    end: ClockEnd

    @property
    def start_minute(self) -> int:
        """Minutes after local midnight."""
        return _minutes(self.start)

    @property
    def end_minute(self) -> int:
        """Minutes after local midnight (1440 for "24:00")."""
        return _minutes(self.end)

    @property
    def crosses_midnight(self) -> bool:
        """True when the window ends on the following day."""
        return self.end_minute < self.start_minute

    @model_validator(mode="after")
    def _not_empty(self) -> Self:
        if self.start_minute == self.end_minute % 1440:
            raise ValueError("start and end are the same time (leave 'windows' empty for all day)")
        return self


class Schedule(_Model):
    """When a playlist applies. Dates and weekdays refer to the day a window *starts* on (local time)."""

    playlist_id: Identifier
    priority: int = Field(default=0, ge=-1000, le=1000, description="higher wins")
    start_date: date | None = None
    end_date: date | None = None
    weekdays: frozenset[Weekday] = Field(default=frozenset(range(7)), min_length=1)
    windows: tuple[TimeWindow, ...] = Field(default=(), max_length=48, description="empty = all day")

    @model_validator(mode="after")
    def _dates_in_order(self) -> Self:
        if self.start_date and self.end_date and self.end_date < self.start_date:
            raise ValueError("end_date is before start_date")
        return self

    @field_serializer("weekdays")
    def _sorted_weekdays(self, weekdays: frozenset[int]) -> list[int]:
        return sorted(weekdays)

    def runs_on(self, day: date) -> bool:
        """True when windows starting on *day* belong to this schedule (date range and weekday)."""
        if self.start_date and day < self.start_date:
            return False
        if self.end_date and day > self.end_date:
            return False
        return day.weekday() in self.weekdays

    def applies_at(self, local: datetime) -> bool:
        """True when this schedule covers the local wall-clock time *local*."""
        day = local.date()
        minute = local.hour * 60 + local.minute
        if not self.windows:
            return self.runs_on(day)
        for window in self.windows:
            start, end = window.start_minute, window.end_minute
            if not window.crosses_midnight:
                if start <= minute < end and self.runs_on(day):
                    return True
            elif (minute >= start and self.runs_on(day)) or (
                minute < end and day > date.min and self.runs_on(day - timedelta(days=1))
            ):
                return True
        return False


class Manifest(_Model):
    """Everything one kiosk (or group of kiosks) plays. Cross-references are checked on validation."""

    schema_version: Literal[1] = MANIFEST_SCHEMA_VERSION
    version: int = Field(ge=1, lt=2**53, description="increases with every manifest central issues")
    issued_at: AwareDatetime
    kiosk_group: Identifier | None = None
    kiosk_ids: tuple[Identifier, ...] | None = Field(default=None, min_length=1, max_length=1000)
    timezone: TimezoneName = DEFAULT_TIMEZONE
    assets: tuple[Asset, ...] = Field(default=(), max_length=2000)
    playlists: tuple[Playlist, ...] = Field(default=(), max_length=200)
    schedules: tuple[Schedule, ...] = Field(default=(), max_length=500)
    default_playlist_id: Identifier | None = Field(default=None, description="None = blank 'no content' screen")

    @field_validator("kiosk_ids")
    @classmethod
    def _unique_kiosks(cls, ids: tuple[str, ...] | None) -> tuple[str, ...] | None:
        if ids is not None and len(set(ids)) != len(ids):
            raise ValueError("kiosk_ids lists a kiosk twice")
        return ids

    @model_validator(mode="after")
    def _cross_references(self) -> Self:
        if (self.kiosk_group is None) == (self.kiosk_ids is None):
            raise ValueError("a manifest targets exactly one of 'kiosk_group' or 'kiosk_ids'")
        assets = _unique({a.sha256: a for a in self.assets}, self.assets, "asset sha256")
        playlists = _unique({p.id: p for p in self.playlists}, self.playlists, "playlist id")
        for playlist in self.playlists:
            for number, item in enumerate(playlist.items, start=1):
                if item.asset is None:
                    continue
                asset = assets.get(item.asset)
                if asset is None:
                    raise ValueError(f"playlist {playlist.id!r} item {number} refers to unknown asset {item.asset}")
                if asset.kind != "video" and item.duration_s is None:
                    raise ValueError(f"playlist {playlist.id!r} item {number} ({asset.kind}) needs duration_s")
        for number, schedule in enumerate(self.schedules, start=1):
            if schedule.playlist_id not in playlists:
                raise ValueError(f"schedule {number} refers to unknown playlist {schedule.playlist_id!r}")
        if self.default_playlist_id is not None and self.default_playlist_id not in playlists:
            raise ValueError(f"default_playlist_id refers to unknown playlist {self.default_playlist_id!r}")
        return self

    @property
    def zone(self) -> ZoneInfo:
        """The manifest's time zone."""
        return ZoneInfo(self.timezone)

    def playlist(self, playlist_id: str) -> Playlist | None:
        """The playlist with *playlist_id*, if any."""
        return next((p for p in self.playlists if p.id == playlist_id), None)

    def asset(self, sha256: str) -> Asset | None:
        """The asset with *sha256*, if any."""
        return next((a for a in self.assets if a.sha256 == sha256), None)


def _unique(by_key: dict[str, _T], items: Sequence[_T], what: str) -> dict[str, _T]:
    if len(by_key) != len(items):
        raise ValueError(f"duplicate {what}")
    return by_key


class SignedManifest(_Model):
    """The wire form: canonical manifest bytes (base64url), the signing key's id and the Ed25519 signature."""

    manifest: str = Field(pattern=r"^[A-Za-z0-9_-]*$", max_length=MAX_SIGNED_MANIFEST_BYTES)
    key_id: str = Field(pattern=r"^[0-9a-f]{16}$")
    signature: str = Field(pattern=r"^[A-Za-z0-9_-]{86}$")

    def to_bytes(self) -> bytes:
        """Serialise for transport (compact JSON)."""
        return orjson.dumps(self.model_dump(mode="json"), option=orjson.OPT_SORT_KEYS)


# --------------------------------------------------------------------------------------------------- signing


def manifest_bytes(manifest: Manifest) -> bytes:
    """Canonical bytes of *manifest*: sorted-key compact JSON (what gets base64-encoded and signed)."""
    return orjson.dumps(manifest.model_dump(mode="json"), option=orjson.OPT_SORT_KEYS)


def sign_manifest(signing_key: SigningKey, manifest: Manifest) -> SignedManifest:
    """Sign *manifest* with central's key."""
    payload = manifest_bytes(manifest)
    signature = signing_key.sign(SIGNING_CONTEXT + payload).signature
    return SignedManifest(manifest=_b64(payload), key_id=key_id(signing_key.verify_key), signature=_b64(signature))


def _schema_detail(exc: ValidationError, limit: int = 3) -> str:
    """The first few validation errors as ``field.path: message``, escaped and clipped (keys come from the input)."""
    parts = []
    for error in exc.errors(include_input=False)[:limit]:
        where = ".".join(str(p)[:40] for p in error["loc"]) or "<root>"
        parts.append(f"{where}: {error['msg']}")
    more = exc.error_count() - limit
    text = "; ".join(parts) + (f" (+{more} more)" if more > 0 else "")
    return repr(text)[1:-1][:400]


def _strict_b64(text: str, what: str) -> bytes:
    """Decode base64url, accepting only the canonical encoding (no ignored characters, no stray padding bits)."""
    try:
        raw = _unb64(text)
    except KeyFileError:
        raise ManifestError(ManifestReason.BAD_SCHEMA, f"{what} is not base64url") from None
    if _b64(raw) != text:
        raise ManifestError(ManifestReason.BAD_SCHEMA, f"{what} is not canonical base64url")
    return raw


def parse_signed_manifest(data: bytes) -> SignedManifest:
    """Parse wire bytes into a :class:`SignedManifest` (no signature check yet); raises :class:`ManifestError`."""
    if len(data) > MAX_SIGNED_MANIFEST_BYTES:
        raise ManifestError(ManifestReason.TOO_LARGE, f"{len(data)} bytes > {MAX_SIGNED_MANIFEST_BYTES}")
    try:
        return SignedManifest.model_validate_json(data, strict=True)
    except ValidationError as exc:
        if any(e["type"] == "json_invalid" for e in exc.errors()):
            raise ManifestError(ManifestReason.BAD_JSON, "not valid JSON") from None
        raise ManifestError(ManifestReason.BAD_SCHEMA, _schema_detail(exc)) from None


def _parse_manifest(payload: bytes) -> Manifest:
    try:
        return Manifest.model_validate_json(payload, strict=True)
    except ValidationError as exc:
        errors = exc.errors()
        if any(e["type"] == "json_invalid" for e in errors):
            raise ManifestError(ManifestReason.BAD_JSON, "signed manifest is not valid JSON") from None
        if any(e["loc"] == ("schema_version",) and e["type"] == "literal_error" for e in errors):
            raise ManifestError(
                ManifestReason.UNSUPPORTED_SCHEMA,
                f"this node understands manifest schema {MANIFEST_SCHEMA_VERSION} only: update the node",
            ) from None
        raise ManifestError(ManifestReason.BAD_SCHEMA, _schema_detail(exc)) from None


def verify_manifest(
    signed: SignedManifest | bytes,
    public_keys: Sequence[str],
    *,
    current_version: int | None = None,
    kiosk_id: str | None = None,
    kiosk_group: str | None = None,
) -> Manifest:
    """Check the signature against *public_keys* (base64url, as configured), then parse and return the manifest.

    Optionally refuses a manifest older than *current_version* and one not addressed to *kiosk_id* /
    *kiosk_group*. Everything wrong with *signed* raises :class:`ManifestError`; a malformed configured key raises
    :class:`varta.signing.KeyFileError` (a configuration error, not a manifest one).
    """
    if isinstance(public_keys, str):
        raise TypeError("public_keys is a list of keys, not one key")
    if isinstance(signed, bytes):
        signed = parse_signed_manifest(signed)
    keys = [key for key in map(load_verify_key, public_keys) if key_id(key) == signed.key_id]
    if not keys:
        raise ManifestError(ManifestReason.UNKNOWN_KEY, f"signed with key {signed.key_id}, which is not configured")
    payload = _strict_b64(signed.manifest, "manifest")
    signature = _strict_b64(signed.signature, "signature")
    message = SIGNING_CONTEXT + payload
    for key in keys:
        try:
            key.verify(message, signature)
        except BadSignatureError:
            continue
        break
    else:
        raise ManifestError(ManifestReason.BAD_SIGNATURE, f"signature does not match key {signed.key_id}")
    manifest = _parse_manifest(payload)
    ensure_not_stale(manifest, current_version)
    if (kiosk_id is not None or kiosk_group is not None) and not is_addressed_to(manifest, kiosk_id, kiosk_group):
        raise ManifestError(ManifestReason.WRONG_TARGET, "manifest is for other kiosks")
    return manifest


def ensure_not_stale(manifest: Manifest, current_version: int | None) -> None:
    """Raise ``stale_version`` when *manifest* is older than the one the node already has (same version is fine)."""
    if current_version is not None and manifest.version < current_version:
        raise ManifestError(
            ManifestReason.STALE_VERSION, f"version {manifest.version} is older than current {current_version}"
        )


def is_addressed_to(manifest: Manifest, kiosk_id: str | None, kiosk_group: str | None) -> bool:
    """True when *manifest* targets this kiosk (by id list or by group)."""
    if manifest.kiosk_ids is not None:
        return kiosk_id is not None and kiosk_id in manifest.kiosk_ids
    return kiosk_group is not None and manifest.kiosk_group == kiosk_group


# --------------------------------------------------------------------------------------------------- schedules


def _local(manifest: Manifest, now: datetime) -> datetime:
    if now.tzinfo is None or now.utcoffset() is None:
        raise ValueError("now must be timezone-aware")
    return now.astimezone(manifest.zone)


def active_schedule(manifest: Manifest, now: datetime) -> Schedule | None:
    """The schedule in force at *now*: highest priority wins; among equals, the one listed first in the manifest."""
    local = _local(manifest, now)
    best: Schedule | None = None
    for schedule in manifest.schedules:
        if schedule.applies_at(local) and (best is None or schedule.priority > best.priority):
            best = schedule
    return best


def active_playlist(manifest: Manifest, now: datetime) -> Playlist | None:
    """The playlist to play at *now* (aware); the default playlist when no schedule applies; None = blank screen."""
    schedule = active_schedule(manifest, now)
    playlist_id = schedule.playlist_id if schedule else manifest.default_playlist_id
    return manifest.playlist(playlist_id) if playlist_id is not None else None


def _offset_change(day: date, zone: ZoneInfo) -> datetime | None:
    """The instant during local *day* at which the UTC offset changes (a DST switch), if any, to the second."""

    def offset(seconds: int) -> timedelta | None:
        return datetime.fromtimestamp(seconds, zone).utcoffset()

    low = int(datetime.combine(day, time(), tzinfo=zone).timestamp())
    high = int(datetime.combine(day + timedelta(days=1), time(), tzinfo=zone).timestamp())
    before = offset(low)
    if offset(high) == before:
        return None
    while high - low > 1:  # invariant: offset(low) == before != offset(high)
        middle = (low + high) // 2
        low, high = (middle, high) if offset(middle) == before else (low, middle)
    return datetime.fromtimestamp(high, zone)


def _candidate_instants(day: date, minutes: Iterable[int], zone: ZoneInfo) -> list[datetime]:
    """The instants of local *day* at which the active playlist can change, in order.

    Each of *minutes* on the wall clock (both occurrences on the autumn night), plus the DST switch itself: a
    window starting in the skipped spring hour begins at the moment of the jump.
    """
    instants: set[datetime] = set()
    for minute in minutes:
        wall = datetime.combine(day, time(minute // 60, minute % 60), tzinfo=zone)
        instants.update(wall.replace(fold=fold).astimezone(UTC).astimezone(zone) for fold in (0, 1))
    switch = _offset_change(day, zone)
    if switch is not None:
        instants.add(switch)
    return sorted(instants)


def next_change(manifest: Manifest, now: datetime) -> datetime | None:
    """The first instant after *now* (returned in UTC) at which :func:`active_playlist` changes; None if never.

    Changes can only happen at window boundaries and local midnights; between date-range boundaries the pattern
    repeats weekly, so after eight quiet days the search jumps to the next start/end date.
    """
    day = _local(manifest, now).date()
    zone = manifest.zone

    def playing(at: datetime) -> str | None:
        playlist = active_playlist(manifest, at)
        return playlist.id if playlist else None

    current = playing(now)
    minutes = {0} | {m % 1440 for s in manifest.schedules for w in s.windows for m in (w.start_minute, w.end_minute)}
    boundaries = sorted(
        {s.start_date for s in manifest.schedules if s.start_date}
        | {s.end_date + timedelta(days=1) for s in manifest.schedules if s.end_date and s.end_date < date.max}
    )
    quiet = 0
    try:
        while True:
            for instant in _candidate_instants(day, minutes, zone):
                if instant > now and playing(instant) != current:
                    return instant.astimezone(UTC)
            day += timedelta(days=1)
            quiet = 0 if day in boundaries else quiet + 1
            if quiet >= 8:
                upcoming = [b for b in boundaries if b > day]
                if not upcoming:
                    return None
                day, quiet = upcoming[0], 0
    except OverflowError:  # the search ran off the calendar (year 9999)
        return None
