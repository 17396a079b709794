"""Kiosk pages: the kiosk list (what every public screen shows and whether it is well), the content library for IT
(assets, playlists, schedules, groups, default playlists, publishing) and a preview of what a kiosk would show when.

Pages are rendered on the server from the kiosk API's own functions (``central.api.kiosks``), so the pages and the
API cannot disagree. Changes are small ``fetch`` calls to that API, which checks the roles again; the kiosk list
refreshes itself from the live stream like the siren panel does.
"""

from __future__ import annotations

import base64
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Annotated, Any, Final
from zoneinfo import ZoneInfo

import orjson
from fastapi import APIRouter, Depends, HTTPException, Query, Request, Response
from fastapi.responses import HTMLResponse
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from central.alerts.queries import site_alerts
from central.api import kiosks as kiosks_api
from central.api.kiosk_schemas import KioskView, PreviewView
from central.auth.deps import Principal, require_page_role
from central.auth.roles import Role
from central.dashboard.i18n import N_, translations
from central.dashboard.routes import PageRoute, _config, _context, _viewer
from central.dashboard.templating import templates
from central.deps import SessionDep
from central.reports.loader import site_names
from central.store.alert_models import AlertPeriod
from central.store.fleet_models import DeviceStateRecord
from central.store.kiosk_models import KioskManifest, KioskPlaylist
from central.store.kiosk_screen_models import KioskScreenshot
from varta.contract import ID_PATTERN, DeviceKind, utcnow
from varta.kiosk_manifest import DEFAULT_TIMEZONE, Manifest, active_playlist

router = APIRouter(route_class=PageRoute, include_in_schema=False)

Observer = Annotated[Principal, Depends(require_page_role(Role.OBSERVER))]
Operator = Annotated[Principal, Depends(require_page_role(Role.OPERATOR))]

#: The kiosk device's reason codes (``edge.kiosks.manager``) and two of our own → words.
KIOSK_REASONS: Final = {
    "page_errors": N_("page errors"),
    "browser_restarting": N_("restarting the browser"),
    "no_heartbeat": N_("no heartbeat from the player page"),
    "clock_unsynchronised": N_("clock not synchronised"),
    "screen_control_failed": N_("screen control failed"),
    "browser_unresponsive": N_("browser unresponsive"),
    "starting": N_("starting up"),
    "no_content": N_("no content yet"),
    "node_offline": N_("node offline"),
    "not_reported": N_("has not reported yet"),
}
#: Why a node refused new content (``edge.kiosks.content.RefusedReason``) → words.
REFUSAL_REASONS: Final = {
    "manifest": N_("the content list was refused"),
    "missing_asset": N_("a file is missing"),
    "hash_mismatch": N_("a file is damaged (checksum differs)"),
    "size_mismatch": N_("a file has the wrong size"),
    "bundle": N_("a web bundle is unsafe or broken"),
    "disk": N_("no room on the kiosk's disk"),
}
#: Why an upload was refused (``central.kiosks.library.UploadReason`` and ``varta.bundles.BundleReason``).
UPLOAD_REASONS: Final = {
    "bad_form": N_("the upload form was malformed"),
    "empty": N_("the file is empty"),
    "too_large": N_("the file is too large"),
    "unsupported_type": N_("this type of file is not supported"),
    "svg": N_("SVG pictures are not allowed: they can carry scripts"),
    "bad_name": N_("the name is not allowed"),
    "not_a_zip": N_("the bundle is not a ZIP archive"),
    "too_many_files": N_("the bundle has too many files"),
    "path_traversal": N_("the bundle has files outside its folder"),
    "symlink": N_("the bundle contains links to other files"),
    "special_file": N_("the bundle contains special files"),
    "encrypted": N_("the bundle is encrypted"),
    "zip_bomb": N_("the bundle unpacks to far too much"),
    "no_index": N_("the bundle has no index.html at its top"),
    "duplicate_entry": N_("the bundle lists a file twice"),
    "unsupported": N_("the bundle uses an unsupported compression"),
    "corrupt": N_("the bundle is damaged"),
}
#: Refusals of the rest of the content API (``Refusal.reason``).
API_REASONS: Final = {
    "in_use": N_("still in use"),
    "published": N_("kiosks still play it: publish first"),
    "unknown_asset": N_("a file is not in the library"),
    "unknown_playlist": N_("there is no such playlist"),
    "unknown_kiosk": N_("there is no such kiosk"),
    "invalid": N_("not valid"),
}
PUBLISH_STATUSES: Final = {
    "published": N_("sent"),
    "unchanged": N_("already up to date"),
    "unreachable": N_("node offline: goes out when it is back"),
    "failed": N_("failed"),
}
WEEKDAYS: Final = (N_("Mon"), N_("Tue"), N_("Wed"), N_("Thu"), N_("Fri"), N_("Sat"), N_("Sun"))

#: Strings the kiosk scripts need (key → msgid), sent translated in the page data.
SCRIPT_TEXTS: Final = {
    "failed": N_("Failed: %(reason)s"),
    "shot_asking": N_("Asked the kiosk for a screenshot…"),
    "shot_new": N_("New screenshot."),
    "shot_none": N_("No new screenshot yet: the kiosk has not sent one."),
    "uploading": N_("Uploading %(name)s…"),
    "uploaded": N_("Uploaded: %(name)s"),
    "already": N_("Already in the library: %(name)s"),
    "refused": N_("The file was refused: %(reason)s"),
    "confirm_delete": N_("Delete %(name)s?"),
    "deleted": N_("Deleted."),
    "saved": N_("Saved."),
    "no_items": N_("Add at least one item to the playlist."),
    "publishing": N_("Publishing…"),
    "publish_done": N_(
        "Sent: %(published)s · up to date: %(unchanged)s · offline: %(unreachable)s · failed: %(failed)s"
    ),
    "no_kiosks": N_("There are no kiosks to publish to."),
}

#: Right after publishing, kiosks take a moment to download and confirm; only then is "not confirmed" a warning.
CONFIRM_GRACE: Final = timedelta(minutes=10)
#: :data:`varta.contract.ID_PATTERN` for ``<input pattern>`` (browsers compile it with the ``v`` flag: ``-`` escaped).
HTML_ID_PATTERN: Final = r"[a-z0-9][a-z0-9_\-]{0,62}"
#: The screens a kiosk reports (``attrs.mode``).
MODES: Final = frozenset({"alert", "playlist", "blank"})


def _texts(language: str, *tables: Mapping[str, str]) -> dict[str, str]:
    tr = translations(language)
    merged: dict[str, str] = {}
    for table in tables:
        merged.update({key: tr.gettext(msgid) for key, msgid in table.items()})
    return merged


def _with_prefix(prefix: str, table: Mapping[str, str]) -> dict[str, str]:
    return {prefix + key: msgid for key, msgid in table.items()}


def script_texts(language: str) -> dict[str, str]:
    """:data:`SCRIPT_TEXTS` and the reason words the scripts show, in *language*."""
    return _texts(
        language,
        SCRIPT_TEXTS,
        _with_prefix("upload_", UPLOAD_REASONS),
        _with_prefix("api_", API_REASONS),
        _with_prefix("publish_", PUBLISH_STATUSES),
    )


# --------------------------------------------------------------------------------------------------- kiosk list


@dataclass(frozen=True, slots=True)
class KioskCard:
    """One kiosk as the list shows it."""

    view: KioskView
    site_name: str
    mode: str | None
    playing_version: int | None
    playlist_name: str | None
    default_playlist_name: str | None
    screenshot_at: datetime | None
    alerts: list[AlertPeriod]
    now: datetime

    @property
    def shown_status(self) -> str:
        """online / degraded / offline / unknown; offline whenever the node is."""
        if not self.view.online:
            return "offline"
        return self.view.status if self.view.status in ("online", "degraded", "offline") else "unknown"

    @property
    def reason(self) -> str | None:
        """The reason code shown next to the status."""
        if not self.view.online:
            return "node_offline"
        if self.view.device_id is None:
            return "not_reported"
        return self.view.reason

    @property
    def alert_on_screen(self) -> bool:
        """The kiosk says it shows the alert page (only believed while its node is online)."""
        return self.view.online and self.mode == "alert"

    @property
    def under_alert(self) -> bool:
        """An official alert covers the kiosk's site."""
        return bool(self.alerts)

    @property
    def alert_missing(self) -> bool:
        """The site is under an official alert and the kiosk is not (known to be) showing it."""
        return self.under_alert and not self.alert_on_screen

    @property
    def behind(self) -> bool:
        """Content was published and the kiosk has not confirmed that version (yet)."""
        published, confirmed = self.view.published_version, self.view.confirmed_version
        return published is not None and (confirmed is None or confirmed < published)

    @property
    def awaiting_confirmation(self) -> bool:
        """Published within :data:`CONFIRM_GRACE` and not confirmed yet: normal, the kiosk is on it."""
        published_at = self.view.published_at
        return self.behind and published_at is not None and self.now - published_at < CONFIRM_GRACE

    @property
    def unconfirmed(self) -> bool:
        """Published a while ago and still not confirmed: worth a look."""
        return self.behind and not self.awaiting_confirmation

    @property
    def refusal_is_recent(self) -> bool:
        """The last refusal came after the last confirmed install (the kiosk is stuck on older content)."""
        refusal = self.view.last_refusal
        if refusal is None:
            return False
        return self.view.confirmed_at is None or refusal.ts > self.view.confirmed_at

    @property
    def trouble(self) -> int:
        """0 for the worst (alert not on screen) … 5 for a kiosk that is fine."""
        if self.alert_missing:
            return 0
        status = self.shown_status
        if status == "offline":
            return 1
        if status == "degraded":
            return 2
        if status == "unknown":
            return 3
        if self.unconfirmed or self.refusal_is_recent:
            return 4
        return 5

    @property
    def refusal_reason(self) -> str:
        """The refusal's reason code (``bundle``, ``manifest``, …)."""
        data = self.view.last_refusal.data if self.view.last_refusal else {}
        return str(data.get("reason") or "")

    @property
    def refusal_code(self) -> str:
        """The refusal's own code (``symlink``, ``bad_signature``, …)."""
        data = self.view.last_refusal.data if self.view.last_refusal else {}
        return str(data.get("code") or "")

    @property
    def takeover_drill(self) -> bool:
        """The newest alert page shown was a drill."""
        data = self.view.last_takeover.data if self.view.last_takeover else {}
        return data.get("drill") is True

    @property
    def takeover_latency_ms(self) -> int | None:
        """How fast the alert page came up, as the kiosk measured it."""
        data = self.view.last_takeover.data if self.view.last_takeover else {}
        value = data.get("latency_ms")
        return value if isinstance(value, int) and not isinstance(value, bool) else None


def card_order(card: KioskCard) -> tuple[int, bool, str, str]:
    """Troubled kiosks first; among equals, those showing an alert, then by name."""
    return (card.trouble, not card.alert_on_screen, (card.view.name or card.view.node_id).casefold(), card.view.node_id)


async def _screenshot_times(session: AsyncSession, node_ids: list[str]) -> dict[str, datetime]:
    if not node_ids:
        return {}
    rows = await session.execute(
        select(KioskScreenshot.node_id, func.max(KioskScreenshot.taken_at))
        .where(KioskScreenshot.node_id.in_(node_ids))
        .group_by(KioskScreenshot.node_id)
    )
    return {node_id: taken_at for node_id, taken_at in rows.all() if taken_at is not None}


async def _playlist_names(session: AsyncSession) -> dict[str, str]:
    rows = await session.execute(select(KioskPlaylist.id, KioskPlaylist.name))
    return {playlist_id: name for playlist_id, name in rows.all()}


async def _device_attrs(session: AsyncSession, views: list[KioskView]) -> dict[str, dict[str, Any]]:
    wanted = {(v.node_id, v.device_id) for v in views if v.device_id}
    if not wanted:
        return {}
    rows = await session.scalars(
        select(DeviceStateRecord).where(
            DeviceStateRecord.kind == DeviceKind.KIOSK.value,
            DeviceStateRecord.node_id.in_([n for n, _ in wanted]),
        )
    )
    return {
        r.node_id: (r.attrs if isinstance(r.attrs, dict) else {})
        for r in rows.all()
        if (r.node_id, r.device_id) in wanted
    }


def _int_or_none(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def decode_manifest(signed: str) -> Manifest | None:
    """The manifest inside a stored signed one (central signed it; not checked again), None if unreadable."""
    try:
        payload = str(orjson.loads(signed)["manifest"])
        return Manifest.model_validate_json(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    except (ValueError, KeyError, TypeError):  # ValidationError and JSONDecodeError are ValueErrors
        return None


async def _playing_playlist(session: AsyncSession, node_id: str, version: int | None, now: datetime) -> str | None:
    """The name of the playlist the kiosk's installed content plays at *now*."""
    if version is None:
        return None
    row = await session.get(KioskManifest, (node_id, version))
    manifest = decode_manifest(row.signed) if row is not None else None
    playlist = active_playlist(manifest, now) if manifest is not None else None
    return playlist.name if playlist is not None else None


async def kiosk_cards(session: AsyncSession, request: Request, principal: Principal) -> list[KioskCard]:
    """Every kiosk with its screen, content versions, screenshot and official alerts; troubled ones first."""
    config = _config(request)
    views = await kiosks_api.list_kiosks(session, principal)
    names = site_names(config.sites)
    alerts = await site_alerts(session, config.sites)
    attrs = await _device_attrs(session, views)
    shots = await _screenshot_times(session, [v.node_id for v in views])
    playlists = await _playlist_names(session)
    now = utcnow()
    cards = []
    for view in views:
        a = attrs.get(view.node_id, {})
        mode = a.get("mode")
        version = _int_or_none(a.get("content_version"))
        cards.append(
            KioskCard(
                view=view,
                site_name=names.get(view.site, view.site),
                mode=mode if mode in MODES else None,
                playing_version=version,
                playlist_name=(
                    await _playing_playlist(session, view.node_id, version, now) if mode == "playlist" else None
                ),
                default_playlist_name=(
                    playlists.get(view.default_playlist_id, view.default_playlist_id)
                    if view.default_playlist_id
                    else None
                ),
                screenshot_at=shots.get(view.node_id),
                alerts=alerts.get(view.site, []),
                now=now,
            )
        )
    return sorted(cards, key=card_order)


@router.get("/kiosks", response_class=HTMLResponse)
async def kiosks_page(request: Request, session: SessionDep, principal: Observer) -> Response:
    """Every kiosk: status and reason, what it shows (an alert in red), content versions, screenshot, refusals."""
    viewer, language, _ = await _viewer(session, request, principal)
    cards = await kiosk_cards(session, request, principal)
    statuses = Counter(c.shown_status for c in cards)
    totals = {
        "kiosks": len(cards),
        "offline": statuses["offline"],
        "degraded": statuses["degraded"],
        "online": statuses["online"],
        "unknown": statuses["unknown"],
        "alert": sum(1 for c in cards if c.alert_on_screen),
        "alert_missing": sum(1 for c in cards if c.alert_missing),
        "unconfirmed": sum(1 for c in cards if c.unconfirmed),
    }
    can_operate = viewer.role.allows(Role.OPERATOR)
    ctx = _context(
        request,
        language,
        viewer,
        "kiosks",
        live=True,
        cards=cards,
        totals=totals,
        can_operate=can_operate,
        reasons=KIOSK_REASONS,
        refusal_reasons=REFUSAL_REASONS,
        now=utcnow(),
        page_data={"texts": script_texts(language)},
    )
    return templates().response("kiosks.html", ctx, language=language)


# --------------------------------------------------------------------------------------------------- content


def human_size(size: int) -> str:
    """``532 B``, ``14.2 KiB``, ``3.0 MiB`` (units are the same in both languages' dashboards)."""
    value = float(size)
    for unit in ("B", "KiB", "MiB"):
        if value < 1024 or unit == "MiB":
            return f"{int(value)} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} GiB"  # pragma: no cover - the loop always returns


@router.get("/kiosks/content", response_class=HTMLResponse)
async def content_page(request: Request, session: SessionDep, principal: Operator) -> Response:
    """The content library: assets and uploads, playlists, schedules, groups, default playlists, publishing."""
    viewer, language, _ = await _viewer(session, request, principal)
    assets = await kiosks_api.list_assets(session, principal)
    playlists = await kiosks_api.list_playlists(session, principal)
    schedules = await kiosks_api.list_schedules(session, principal)
    groups = await kiosks_api.list_groups(session, principal)
    kiosks = await kiosks_api.list_kiosks(session, principal)
    asset_names = {a.sha256: a.name for a in assets}
    page_data = {
        "texts": script_texts(language),
        "assets": [{"sha256": a.sha256, "name": a.name, "kind": a.kind} for a in assets],
        "playlists": {p.id: p.model_dump(mode="json", include={"id", "name", "items"}) for p in playlists},
        "kiosks": {k.node_id: k.name or k.node_id for k in kiosks},
    }
    ctx = _context(
        request,
        language,
        viewer,
        "kiosk_content",
        assets=assets,
        asset_names=asset_names,
        playlists=playlists,
        playlist_names={p.id: p.name for p in playlists},
        schedules=schedules,
        groups=groups,
        kiosks=kiosks,
        kiosk_names={k.node_id: k.name or k.node_id for k in kiosks},
        weekdays=WEEKDAYS,
        size=human_size,
        id_pattern=HTML_ID_PATTERN,
        page_data=page_data,
    )
    return templates().response("kiosk_content.html", ctx, language=language)


# --------------------------------------------------------------------------------------------------- preview


def parse_local(text: str, zone: ZoneInfo) -> datetime | None:
    """A ``datetime-local`` value (``2026-05-04T08:30``) as wall-clock time in *zone*; None if it does not parse."""
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=zone)
    return when


@dataclass(frozen=True, slots=True)
class PreviewPage:
    """A preview and, when the playlist changes later, what comes then."""

    view: PreviewView
    next_view: PreviewView | None

    @property
    def loop_s(self) -> int | None:
        """One pass through the playlist in seconds (None when a video plays to its end)."""
        if self.view.playlist is None:
            return None
        durations = [i.duration_s for i in self.view.playlist.items]
        if any(d is None for d in durations):
            return None
        return sum(d for d in durations if d is not None)


@router.get("/kiosks/preview", response_class=HTMLResponse)
async def preview_page(
    request: Request,
    session: SessionDep,
    principal: Observer,
    node_id: Annotated[str | None, Query(pattern=ID_PATTERN)] = None,
    at: Annotated[str | None, Query(max_length=40)] = None,
) -> Response:
    """What a kiosk would show at a given local time (the content as it would be published now), and until when."""
    viewer, language, _ = await _viewer(session, request, principal)
    tr = translations(language)
    zone = ZoneInfo(DEFAULT_TIMEZONE)
    kiosks = await kiosks_api.list_kiosks(session, principal)
    error = None
    when = utcnow().astimezone(zone).replace(second=0, microsecond=0)
    if at:
        parsed = parse_local(at, zone)
        if parsed is None:
            error = tr.gettext("Write the time as shown, e.g. 2026-05-04 08:30.")
        else:
            when = parsed
    chosen = node_id or (kiosks[0].node_id if kiosks else None)
    result = None
    if chosen is not None and error is None:
        try:
            view = await kiosks_api.preview(session, principal, chosen, when)
            next_view = (
                await kiosks_api.preview(session, principal, chosen, view.next_change + timedelta(seconds=1))
                if view.next_change is not None
                else None
            )
            result = PreviewPage(view, next_view)
        except HTTPException as exc:
            if exc.status_code == 404:
                error = tr.gettext("There is no such kiosk.")
            else:
                detail = exc.detail.get("message") if isinstance(exc.detail, dict) else exc.detail
                error = tr.gettext("No preview: %(reason)s") % {"reason": detail}
    ctx = _context(
        request,
        language,
        viewer,
        "kiosk_preview",
        kiosks=kiosks,
        chosen=chosen,
        at_value=when.astimezone(zone).strftime("%Y-%m-%dT%H:%M"),
        timezone=DEFAULT_TIMEZONE,
        zone=zone,
        result=result,
        can_operate=viewer.role.allows(Role.OPERATOR),
        error=error,
        page_data=None,
    )
    return templates().response("kiosk_preview.html", ctx, language=language)
