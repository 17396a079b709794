"""Incident, siren and report pages: the incident list and one incident, the siren panel, monthly availability.

Pages are rendered on the server. The browser scripts keep them current from the live stream: on an ``incident``
(or, for the siren panel, a siren's ``device``, a ``node`` or an ``alert``) event they fetch the same page again and
swap in the changed part, so there is one way of drawing each thing. Acknowledging and notes are ``fetch`` calls
to the incident API, which checks the roles again.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Annotated, Any, Final

from fastapi import APIRouter, Depends, Path, Query, Request, Response
from fastapi.responses import HTMLResponse
from sqlalchemy import or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from central.alerts.queries import site_alerts
from central.api.report_schemas import report_view
from central.auth.deps import Principal, require_page_role
from central.auth.roles import Role
from central.dashboard.i18n import N_, translations
from central.dashboard.routes import PageNotFound, PageRoute, _config, _context, _viewer
from central.dashboard.templating import templates
from central.deps import SessionDep
from central.incidents import queries as incident_queries
from central.incidents.rules import parse_time
from central.incidents.texts import duration as span_text
from central.incidents.texts import type_label
from central.reports.availability import BadMonth, current_month, parse_month
from central.reports.labels import report_labels
from central.reports.loader import availability_report, site_names
from central.store.alert_models import AlertPeriod
from central.store.fleet_models import DeviceStateRecord, EventRecord, Node
from central.store.incident_models import Incident
from varta.contract import SirenState, utcnow

router = APIRouter(route_class=PageRoute, include_in_schema=False)

Observer = Annotated[Principal, Depends(require_page_role(Role.OBSERVER))]

#: Severities in rising order; the list shows the worst first, and the sound plays from ``warning`` up.
SEVERITY_RANK: Final = {"info": 0, "warning": 1, "error": 2, "critical": 3}
OPEN_SHOWN: Final = 500
CLOSED_SHOWN: Final = 50
#: Closed incidents stay on the list this long.
RECENTLY_CLOSED: Final = timedelta(hours=24)
#: The timeline of one incident shows the events of its devices from a little before it opened.
TIMELINE_LEAD: Final = timedelta(minutes=5)
TIMELINE_EVENTS: Final = 200

#: Strings the incident and siren scripts need (key → msgid), sent translated as a JSON block.
SCRIPT_TEXTS: Final = {
    "new_incident": N_("New incident: %(title)s"),
    "incident_closed": N_("Incident closed: %(title)s"),
    "ack_failed": N_("Could not acknowledge: %(reason)s"),
    "note_failed": N_("Could not add the note: %(reason)s"),
    "acknowledged": N_("Acknowledged."),
    "note_added": N_("Note added."),
    "siren_silent": N_("Siren not sounding during an alert: %(name)s"),
}


def _span(language: str) -> Callable[[float], str]:
    """``span(seconds)`` for templates: ``45 с`` / ``3 хв 05 с`` / ``2 год 10 хв`` (exact to the second)."""
    return lambda seconds: span_text(seconds, language)


def script_texts(language: str) -> dict[str, str]:
    """:data:`SCRIPT_TEXTS` in *language*."""
    tr = translations(language)
    return {key: tr.gettext(msgid) for key, msgid in SCRIPT_TEXTS.items()}


# ------------------------------------------------------------------------------------------------- incidents


@dataclass(frozen=True, slots=True)
class DeviceRef:
    """A device an incident covers (``device_id`` '' for the node itself), with what central knows of it."""

    node_id: str
    device_id: str
    name: str
    kind: str
    status: str | None

    @property
    def label(self) -> str:
        """``name (node/device)`` or just the id."""
        ident = f"{self.node_id}/{self.device_id}" if self.device_id else self.node_id
        return f"{self.name} ({ident})" if self.name and self.name != ident else ident

    @property
    def href(self) -> str:
        """The page of the device: the camera page for cameras, else the node page."""
        if self.kind == "camera" and self.device_id:
            return f"/cameras/{self.node_id}/{self.device_id}"
        return f"/nodes/{self.node_id}"


@dataclass(frozen=True, slots=True)
class IncidentItem:
    """One incident as the pages show it."""

    incident: Incident
    view: dict[str, Any]
    type_label: str
    site_name: str
    devices: list[DeviceRef]

    @property
    def severity_rank(self) -> int:
        """0 (info) … 3 (critical)."""
        return SEVERITY_RANK.get(self.incident.severity, 0)


def parse_ref(ref: str) -> tuple[str, str]:
    """``node/device`` → ``(node, device)``; ``node/`` or ``node`` → ``(node, "")``."""
    node_id, _, device_id = ref.partition("/")
    return node_id, device_id


async def _device_refs(session: AsyncSession, refs: Iterable[str]) -> dict[str, DeviceRef]:
    pairs = {parse_ref(r) for r in refs}
    nodes_wanted = {n for n, _ in pairs if n}
    if not nodes_wanted:
        return {}
    nodes = {n.node_id: n for n in (await session.scalars(select(Node).where(Node.node_id.in_(nodes_wanted)))).all()}
    states = await session.scalars(select(DeviceStateRecord).where(DeviceStateRecord.node_id.in_(nodes_wanted)))
    known = {(s.node_id, s.device_id): s for s in states.all()}
    result: dict[str, DeviceRef] = {}
    for ref in refs:
        node_id, device_id = parse_ref(ref)
        if not device_id:
            node = nodes.get(node_id)
            status = None if node is None else ("online" if node.online else "offline")
            result[ref] = DeviceRef(node_id, "", node.name if node else "", "node", status)
            continue
        state = known.get((node_id, device_id))
        result[ref] = DeviceRef(
            node_id,
            device_id,
            state.name if state else "",
            state.kind if state else "",
            state.status if state else None,
        )
    return result


async def incident_items(
    session: AsyncSession, incidents: list[Incident], language: str, sites: Mapping[str, str]
) -> list[IncidentItem]:
    """Wrap *incidents* with their type label, site name and the devices they cover."""
    refs = await _device_refs(session, {r for i in incidents for r in (i.devices or [])})
    items: list[IncidentItem] = []
    for incident in incidents:
        view = incident_queries.incident_view(incident)
        items.append(
            IncidentItem(
                incident=incident,
                view=view,
                type_label=type_label(language, incident.type),
                site_name=sites.get(incident.site) or str(view.get("site_name") or incident.site),
                devices=[refs[r] for r in (incident.devices or []) if r in refs],
            )
        )
    return items


def open_order(item: IncidentItem) -> tuple[int, int, float, int]:
    """Worst first; within a severity, unacknowledged first, then newest."""
    i = item.incident
    return (-item.severity_rank, 1 if i.acknowledged_at else 0, -i.started_at.timestamp(), -i.id)


@router.get("/incidents", response_class=HTMLResponse)
async def incidents_page(request: Request, session: SessionDep, principal: Observer) -> Response:
    """Open incidents (worst first) and those closed in the last 24 h; live, with a sound for new ones."""
    viewer, language, _ = await _viewer(session, request, principal)
    now = utcnow()
    sites = site_names(_config(request).sites)
    open_rows = await incident_queries.list_incidents(session, state="open", limit=OPEN_SHOWN)
    closed_rows = await incident_queries.list_incidents(
        session, state="closed", since=now - RECENTLY_CLOSED, limit=CLOSED_SHOWN
    )
    opened = sorted(await incident_items(session, open_rows, language, sites), key=open_order)
    closed = sorted(
        await incident_items(session, closed_rows, language, sites),
        key=lambda it: (it.incident.ended_at or now, it.incident.id),
        reverse=True,
    )
    can_ack = viewer.role.allows(Role.DISPATCHER)
    counts = {sev: sum(1 for it in opened if it.incident.severity == sev) for sev in SEVERITY_RANK}
    page_data = {
        "known": [it.incident.id for it in opened + closed],
        "sound": can_ack,
        "sound_from": SEVERITY_RANK["warning"],
        "severity_rank": SEVERITY_RANK,
        "texts": script_texts(language),
    }
    ctx = _context(
        request,
        language,
        viewer,
        "incidents",
        live=True,
        span=_span(language),
        opened=opened,
        closed=closed,
        counts=counts,
        unacknowledged=sum(1 for it in opened if it.incident.acknowledged_at is None),
        can_ack=can_ack,
        now=now,
        page_data=page_data,
    )
    return templates().response("incidents.html", ctx, language=language)


@dataclass(frozen=True, slots=True)
class TimelineEntry:
    """One line of an incident's timeline."""

    at: datetime
    kind: str  # opened | acknowledged | closed | event (notes have a list of their own)
    text: str
    by: str = ""
    severity: str = ""
    source: str = ""


async def _timeline(session: AsyncSession, item: IncidentItem, now: datetime) -> list[TimelineEntry]:
    i = item.incident
    entries = [TimelineEntry(i.started_at, "opened", i.title or item.type_label, severity=i.severity)]
    if i.acknowledged_at is not None:
        entries.append(TimelineEntry(i.acknowledged_at, "acknowledged", "", by=i.acknowledged_by or ""))
    if i.ended_at is not None:
        entries.append(TimelineEntry(i.ended_at, "closed", i.end_reason))
    by_node: dict[str, set[str]] = defaultdict(set)
    for ref in i.devices or []:
        node_id, device_id = parse_ref(ref)
        by_node[node_id].add(device_id)
    if i.node_id:
        by_node[i.node_id].add(i.device_id or "")
    conditions = []
    for node_id, devices in by_node.items():
        named = sorted(d for d in devices if d)
        device_match = [EventRecord.device_id.is_(None)]
        if named:
            device_match.append(EventRecord.device_id.in_(named))
        conditions.append((EventRecord.node_id == node_id) & or_(*device_match))
    if conditions:
        until = (i.ended_at or now) + timedelta(minutes=1)
        events = await session.scalars(
            select(EventRecord)
            .where(or_(*conditions), EventRecord.ts >= i.started_at - TIMELINE_LEAD, EventRecord.ts <= until)
            .order_by(EventRecord.ts, EventRecord.id)
            .limit(TIMELINE_EVENTS)
        )
        for event in events.all():
            source = f"{event.node_id}/{event.device_id}" if event.device_id else event.node_id
            text = f"{event.kind}: {event.message}" if event.message else event.kind
            entries.append(TimelineEntry(event.ts, "event", text, severity=event.severity, source=source))
    order = {"opened": 0, "event": 1, "acknowledged": 2, "closed": 3}
    entries.sort(key=lambda e: (e.at, order.get(e.kind, 9)))
    return entries


@dataclass(frozen=True, slots=True)
class NoteView:
    """A dispatcher's note on an incident."""

    at: datetime | None
    by: str
    text: str


def notes_of(incident: Incident) -> list[NoteView]:
    """The incident's notes, oldest first (entries that are not notes are skipped)."""
    return [
        NoteView(parse_time(n.get("at")), str(n.get("by", "")), str(n.get("text", "")))
        for n in incident.notes or []
        if isinstance(n, dict)
    ]


@router.get("/incidents/{incident_id}", response_class=HTMLResponse)
async def incident_page(
    request: Request,
    session: SessionDep,
    principal: Observer,
    incident_id: Annotated[int, Path(ge=1)],
) -> Response:
    """One incident: what, where, since when, its devices, timeline, acknowledgement and notes."""
    viewer, language, _ = await _viewer(session, request, principal)
    incident = await incident_queries.get_incident(session, incident_id)
    if incident is None:
        raise PageNotFound(f"unknown incident {incident_id}")
    now = utcnow()
    sites = site_names(_config(request).sites)
    item = (await incident_items(session, [incident], language, sites))[0]
    can_ack = viewer.role.allows(Role.DISPATCHER)
    ctx = _context(
        request,
        language,
        viewer,
        "incident",
        live=True,
        span=_span(language),
        item=item,
        incident=incident,
        timeline=await _timeline(session, item, now),
        notes=notes_of(incident),
        can_ack=can_ack,
        note_max=incident_queries.NOTE_MAX_CHARS,
        now=now,
        page_data={"incident_id": incident.id, "texts": script_texts(language)},
    )
    return templates().response("incident.html", ctx, language=language)


# ------------------------------------------------------------------------------------------------- sirens


_SIREN_STATES: Final = frozenset(s.value for s in SirenState)


@dataclass(frozen=True, slots=True)
class SirenRow:
    """One siren on the panel."""

    node_id: str
    device_id: str
    name: str
    node_name: str
    node_online: bool
    state: str
    since: datetime | None
    last_sounded_at: datetime | None
    last_sounding_s: float | None
    supply: bool | None
    contactor: bool | None
    fault: bool | None
    detail: str
    under_alert: bool

    @property
    def silent_in_alert(self) -> bool:
        """The site is under an official alert and this siren is not (known to be) sounding."""
        return self.under_alert and (self.state != SirenState.SOUNDING or not self.node_online)

    @property
    def sounding_without_alert(self) -> bool:
        """Sounding while no official alert covers the site."""
        return not self.under_alert and self.state == SirenState.SOUNDING

    @property
    def shown_state(self) -> str:
        """The state drawn: ``unknown`` when the node is offline (what it last said may be stale)."""
        return self.state if self.node_online else SirenState.UNKNOWN

    @property
    def trouble(self) -> int:
        """0 for the worst (silent during an alert) … 3 for a siren that is fine."""
        if self.silent_in_alert:
            return 0
        if self.sounding_without_alert or self.shown_state in (SirenState.FAULT, SirenState.UNPOWERED):
            return 1
        if self.shown_state == SirenState.UNKNOWN:
            return 2
        return 3


@dataclass(frozen=True, slots=True)
class SiteSirens:
    """The sirens of one site and its official alert state."""

    site: str
    name: str
    alerts: list[AlertPeriod]
    regions_known: bool
    sirens: list[SirenRow] = field(default_factory=list)

    @property
    def under_alert(self) -> bool:
        """An official alert covers the site now."""
        return bool(self.alerts)

    @property
    def silent(self) -> int:
        """Sirens not sounding although the site is under an alert."""
        return sum(1 for s in self.sirens if s.silent_in_alert)


def _attr_time(attrs: Mapping[str, Any], key: str) -> datetime | None:
    return parse_time(attrs.get(key))


def _attr_bool(attrs: Mapping[str, Any], key: str) -> bool | None:
    value = attrs.get(key)
    return value if isinstance(value, bool) else None


def _attr_float(attrs: Mapping[str, Any], key: str) -> float | None:
    value = attrs.get(key)
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) or value < 0:
        return None
    return float(value)


def siren_row(state: DeviceStateRecord, node: Node | None, under_alert: bool) -> SirenRow:
    """A siren's device state as the panel shows it (attributes that do not parse are shown as unknown)."""
    attrs = state.attrs if isinstance(state.attrs, dict) else {}
    reason = state.reason if state.reason in _SIREN_STATES else SirenState.UNKNOWN
    return SirenRow(
        node_id=state.node_id,
        device_id=state.device_id,
        name=state.name or state.device_id,
        node_name=(node.name if node else "") or state.node_id,
        node_online=bool(node and node.online),
        state=str(reason),
        since=_attr_time(attrs, "since") or state.status_since,
        last_sounded_at=_attr_time(attrs, "last_sounded_at"),
        last_sounding_s=_attr_float(attrs, "last_sounding_s"),
        supply=_attr_bool(attrs, "supply"),
        contactor=_attr_bool(attrs, "contactor"),
        fault=_attr_bool(attrs, "fault"),
        detail=state.detail,
        under_alert=under_alert,
    )


async def siren_panel(session: AsyncSession, request: Request) -> list[SiteSirens]:
    """Every siren grouped by site: sites with a silent siren first, then sites under alert, then by name."""
    config = _config(request)
    names = site_names(config.sites)
    alerts = await site_alerts(session, config.sites)
    states = (await session.scalars(select(DeviceStateRecord).where(DeviceStateRecord.kind == "siren"))).all()
    node_ids = {s.node_id for s in states}
    nodes = (
        {n.node_id: n for n in (await session.scalars(select(Node).where(Node.node_id.in_(node_ids)))).all()}
        if node_ids
        else {}
    )
    groups: dict[str, SiteSirens] = {}
    for state in states:
        node = nodes.get(state.node_id)
        site = node.site if node is not None else "?"
        if site not in groups:
            settings = config.sites.get(site)
            groups[site] = SiteSirens(
                site=site,
                name=names.get(site, site),
                alerts=alerts.get(site, []),
                regions_known=bool(settings and settings.regions),
            )
        groups[site].sirens.append(siren_row(state, node, bool(alerts.get(site))))
    for group in groups.values():
        group.sirens.sort(key=lambda s: (s.trouble, s.node_id, s.name))
    return sorted(groups.values(), key=lambda g: (-g.silent, not g.under_alert, g.name.casefold(), g.site))


@router.get("/sirens", response_class=HTMLResponse)
async def sirens_page(request: Request, session: SessionDep, principal: Observer) -> Response:
    """The siren panel: every siren by site, its state, last sounding, and whether it is silent during an alert."""
    viewer, language, _ = await _viewer(session, request, principal)
    groups = await siren_panel(session, request)
    sirens = [s for g in groups for s in g.sirens]
    totals = {
        "sirens": len(sirens),
        "sounding": sum(1 for s in sirens if s.shown_state == SirenState.SOUNDING),
        "silent": sum(1 for s in sirens if s.silent_in_alert),
        "trouble": sum(1 for s in sirens if s.shown_state in (SirenState.FAULT, SirenState.UNPOWERED)),
        "unknown": sum(1 for s in sirens if s.shown_state == SirenState.UNKNOWN),
        "sites_alert": sum(1 for g in groups if g.under_alert),
    }
    ctx = _context(
        request,
        language,
        viewer,
        "sirens",
        live=True,
        span=_span(language),
        groups=groups,
        totals=totals,
        now=utcnow(),
        page_data={
            "texts": script_texts(language),
            "silent": [f"{s.node_id}/{s.device_id}" for s in sirens if s.silent_in_alert],
        },
    )
    return templates().response("sirens.html", ctx, language=language)


# ------------------------------------------------------------------------------------------------- report


def _month_shift(month: date, delta: int) -> date:
    index = month.year * 12 + month.month - 1 + delta
    return date(index // 12, index % 12 + 1, 1)


@router.get("/reports/availability", response_class=HTMLResponse)
async def availability_page(
    request: Request,
    session: SessionDep,
    principal: Observer,
    month: Annotated[str | None, Query(max_length=20)] = None,
) -> Response:
    """Monthly availability per device, with a month picker and links to the CSV and PDF files."""
    viewer, language, _ = await _viewer(session, request, principal)
    now = utcnow()
    this_month = current_month(now)
    bad_month = False
    try:
        chosen = parse_month(month) if month else this_month
    except BadMonth:
        chosen, bad_month = this_month, True
    report = await availability_report(session, chosen, now)
    view = report_view(report, site_names(_config(request).sites))
    by_site: dict[str, list[Any]] = defaultdict(list)
    for row in view.devices:
        by_site[row.site].append(row)
    month_text = f"{chosen:%Y-%m}"
    ctx = _context(
        request,
        language,
        viewer,
        "report",
        report=view,
        by_site=dict(by_site),
        month=month_text,
        month_name=report_labels(language).month(chosen),
        previous_month=f"{_month_shift(chosen, -1):%Y-%m}",
        next_month=f"{_month_shift(chosen, 1):%Y-%m}" if chosen < this_month else None,
        this_month=f"{this_month:%Y-%m}",
        csv_url=f"/api/v1/reports/availability.csv?month={month_text}&lang={language}",
        pdf_url=f"/api/v1/reports/availability.pdf?month={month_text}&lang={language}",
        json_url=f"/api/v1/reports/availability?month={month_text}",
        error=translations(language).gettext("Month must be written as YYYY-MM, e.g. 2025-05.") if bad_month else None,
        page_data=None,
    )
    return templates().response("report_availability.html", ctx, language=language)
