"""The incident rules, pure: a snapshot of the stored state → the incidents and outages that should be open now.

Level-triggered: every evaluation derives the whole desired set from the CURRENT stored state (nodes, device
states, siren history, official alert periods, the open incidents), so a restart, a lost bus event or a second
central instance can neither duplicate an incident nor miss a close. Nothing here touches the database or the
clock; :mod:`central.incidents.engine` loads the snapshot, diffs (:mod:`central.incidents.plan`) and writes.

**Power trouble.** A node is on power trouble while one of its UPS states says ``on_battery``/``low_battery``
(also when the node is offline: its last UPS state said so), or while it is offline with reason ``power_loss``.
It began when the UPS went on battery by the node's own account (``attrs.lost_at``/``attrs.since``, when
plausible: :func:`battery_since`), else when central saw the state change.

**Incidents** (``key`` → at most one open incident per key):

- ``power_outage:<site>`` (error): ONE per site while any node of the site is on power trouble. It covers those
  nodes (``node/``), every node of the site that went offline without a power reason meanwhile (a node without a
  UPS dying in the same blackout) and every device those nodes took down. Closes when no node of the site is on
  power trouble (mains back and node online).
- ``node_down:<node>`` (error): the node is offline (last will, stale, …; a clean ``shutdown`` is planned, not an
  incident) and neither it nor its site is on power trouble. It covers the node's devices. A node that went down
  before the mains came back at its site (it is probably still booting) gets it only after the settle delay.
- ``camera_fault`` / ``kiosk_fault`` / ``siren_fault`` / ``device_fault`` (``<type>:<node>:<device>``): the
  device is down (cameras, kiosks, sensors: status ``offline``; sirens: ``fault`` or ``unpowered``) for at least
  ``camera_fault_delay_s`` while its node is online and not on power trouble. The delay counts from when both
  held (a camera rebooting after the power came back is not a fault yet), and lets a power or node incident
  arrive first and absorb it. Severity warning, except ``siren_fault``: error (a siren that cannot sound is a
  safety problem even without an alert). A fault already open stays open while its node is down: it was there
  before and is not the node's doing. UPS devices get none: their trouble is the power outage.
- ``siren_failure:<node>:<siren>:<alert period id>`` (critical): an official alert covers the siren's site (its
  earliest active period, start t0), the siren has not been ``sounding`` at any time since t0 (current state,
  ``siren.state_changed`` events, ``attrs.last_sounded_at``) and ``siren_failure_delay_s`` have passed. Opens also
  when the siren's node is offline (its state is then unknown). ``started_at`` = t0 + delay (the moment it
  failed). It stays open while any alert covers the site and the siren has not sounded; closes when it sounds or
  when the site is calm again.
- ``unexpected_activation:<node>:<siren>:<start iso>`` (error): the siren is ``sounding`` for at least
  ``unexpected_activation_delay_s`` with no official alert covering its site (counted from the later of the
  sounding start and the end of the site's last alert), confirmed by an alert-feed poll made after that
  (``Snapshot.alerts_known_until``: the feeds report a declared alert only at their next poll; without any alert
  source configured, every activation is one without an official alert). Closes when it stops or when an alert
  begins.

**Absorption:** a device whose node is offline, or which is down while its node is on power trouble, is listed
in the covering incident's ``devices`` (``node/device``) and gets no incident of its own.

**Outages** (availability report): one per down node (``device_id`` "") and per down device, with the cause
``power`` (its node on power trouble, or offline during its site's power outage), ``network`` (its node offline
without a power reason) or ``device`` (down while its node was fine). Every device of a down node is down.
A clean shutdown makes no outage (planned). :func:`next_cause` lets a cause learned later upgrade an open outage
(or one that is ending: a node back from the dark saying it ran on battery all along).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Final, Literal

from central.config import IncidentSettings
from central.incidents.texts import end_text, local_time, text, type_label

Cause = Literal["power", "network", "device"]
Severity = Literal["info", "warning", "error", "critical"]

POWER_REASONS: Final = frozenset({"on_battery", "low_battery"})
SIREN_DOWN_REASONS: Final = frozenset({"fault", "unpowered"})
SOUNDING: Final = "sounding"
SHUTDOWN: Final = "shutdown"
POWER_LOSS: Final = "power_loss"
#: Incident type of a device's own fault, by device kind (other kinds: ``device_fault``; UPS: none).
FAULT_TYPES: Final[dict[str, str]] = {"camera": "camera_fault", "kiosk": "kiosk_fault", "siren": "siren_fault"}
DEVICE_FAULT: Final = "device_fault"
ALL_FAULT_TYPES: Final = frozenset({*FAULT_TYPES.values(), DEVICE_FAULT})
SEVERITY: Final[dict[str, Severity]] = {
    "power_outage": "error",
    "node_down": "error",
    "camera_fault": "warning",
    "kiosk_fault": "warning",
    "siren_fault": "error",
    "device_fault": "warning",
    "siren_failure": "critical",
    "unexpected_activation": "error",
}
_CAUSE_RANK: Final[dict[str, int]] = {"device": 0, "network": 1, "power": 2}
#: How far before its arrival a node's own "on battery since" is believed (older: a wrong clock or garbage).
MAX_TOLD_AGE: Final = timedelta(days=7)


# ------------------------------------------------------------------------------------------------ the snapshot


@dataclass(frozen=True, slots=True)
class NodeFact:
    """What the rules need of a node."""

    node_id: str
    site: str
    name: str
    online: bool
    offline_reason: str | None
    status_since: datetime | None

    @property
    def label(self) -> str:
        """Its name, or its id."""
        return self.name or self.node_id


@dataclass(frozen=True, slots=True)
class DeviceFact:
    """The current state of one device."""

    node_id: str
    device_id: str
    kind: str
    name: str
    status: str
    reason: str | None
    status_since: datetime
    attrs: Mapping[str, Any] = field(default_factory=dict)

    @property
    def label(self) -> str:
        """Its name, or its id."""
        return self.name or self.device_id

    @property
    def ref(self) -> str:
        """``node/device``, as listed in an incident's ``devices``."""
        return f"{self.node_id}/{self.device_id}"


@dataclass(frozen=True, slots=True)
class AlertFact:
    """One official alert period."""

    id: int
    started_at: datetime
    ended_at: datetime | None
    region_name: str


@dataclass(frozen=True, slots=True)
class SirenChange:
    """One ``siren.state_changed`` event."""

    at: datetime
    state: str
    previous: str
    previous_since: datetime | None


@dataclass(frozen=True, slots=True)
class OpenIncident:
    """An incident open in the store."""

    id: int
    key: str
    type: str
    site: str
    node_id: str | None
    device_id: str | None
    started_at: datetime
    devices: tuple[str, ...] = ()
    data: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class OpenOutage:
    """An outage open in the store."""

    id: int
    node_id: str
    device_id: str
    cause: str
    started_at: datetime
    incident_id: int | None


@dataclass
class Snapshot:
    """Everything one evaluation looks at."""

    now: datetime
    nodes: dict[str, NodeFact] = field(default_factory=dict)
    devices: dict[tuple[str, str], DeviceFact] = field(default_factory=dict)
    #: site → its active alert periods, oldest first (sites without configured regions: none)
    alerts: dict[str, list[AlertFact]] = field(default_factory=dict)
    #: site → when its latest alert ended (loaded for the sites whose rules need it)
    last_alert_end: dict[str, datetime] = field(default_factory=dict)
    #: alert periods referenced by open incidents, ended ones included
    periods: dict[int, AlertFact] = field(default_factory=dict)
    #: (node, siren) → its recent state changes, oldest first
    siren_changes: dict[tuple[str, str], list[SirenChange]] = field(default_factory=dict)
    site_names: dict[str, str] = field(default_factory=dict)
    #: until when the official alert state is confirmed (the oldest successful poll of the alert sources); a siren
    #: is only "unexpected" once a poll after it had sounded for the delay still showed no alert — the feeds lag
    #: the real declaration by a poll interval or more. None: as of now (no feed is being tracked)
    alerts_known_until: datetime | None = None
    open_incidents: list[OpenIncident] = field(default_factory=list)
    open_outages: list[OpenOutage] = field(default_factory=list)

    def site_name(self, site: str) -> str:
        """The configured name of *site*, or its id."""
        return self.site_names.get(site) or site


# ------------------------------------------------------------------------------------------------ the result


@dataclass
class DesiredIncident:
    """An incident that should be open now."""

    key: str
    type: str
    site: str
    node_id: str | None
    device_id: str | None
    started_at: datetime
    title: str
    detail: str = ""
    devices: list[str] = field(default_factory=list)
    data: dict[str, Any] = field(default_factory=dict)

    @property
    def severity(self) -> Severity:
        """The type's severity."""
        return SEVERITY.get(self.type, "warning")

    def add(self, ref: str) -> None:
        """List *ref* (``node/device`` or ``node/``) among the covered devices."""
        if ref not in self.devices:
            self.devices.append(ref)


@dataclass
class DesiredOutage:
    """A node (``device_id`` "") or device that is down now."""

    node_id: str
    device_id: str
    kind: str
    site: str
    cause: Cause
    reason: str
    started_at: datetime
    incident_key: str | None = None
    #: when the node-level trouble behind ``cause`` began (None for ``device``)
    cause_since: datetime | None = None


@dataclass
class Plan:
    """The desired state: incidents by key, outages by (node, device)."""

    incidents: dict[str, DesiredIncident] = field(default_factory=dict)
    outages: dict[tuple[str, str], DesiredOutage] = field(default_factory=dict)
    #: node → when its power trouble began (nodes on power trouble only)
    power_since: dict[str, datetime] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Closing:
    """How and when an incident that is no longer desired ended: the words (``end_reason``) and what they are made
    of (``code`` and ``values``, kept in ``Incident.data`` as ``end_code``/``end_values`` for other languages)."""

    ended_at: datetime
    end_reason: str
    code: str
    values: Mapping[str, str | float] = field(default_factory=dict)


# ------------------------------------------------------------------------------------------------ helpers


def parse_time(value: object) -> datetime | None:
    """An aware datetime from an ISO string (None for anything else, naive times included)."""
    if isinstance(value, datetime):
        return value if value.tzinfo is not None else None
    if not isinstance(value, str) or not value:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    return parsed if parsed.tzinfo is not None else None


def iso_key(value: datetime) -> str:
    """A stable, second-precision UTC time for incident keys."""
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def device_is_down(device: DeviceFact) -> bool:
    """Down by its own state: a siren in fault or unpowered; another device (not a UPS) offline."""
    if device.kind == "siren":
        return device.reason in SIREN_DOWN_REASONS
    if device.kind == "ups":
        return False
    return device.status == "offline"


def node_is_down(node: NodeFact) -> bool:
    """Offline for a reason other than a clean shutdown (and known to be: a node never online is not down)."""
    return not node.online and node.status_since is not None and node.offline_reason != SHUTDOWN


def fault_type(kind: str) -> str | None:
    """The incident type of a device's own fault (None for a UPS)."""
    if kind == "ups":
        return None
    return FAULT_TYPES.get(kind, DEVICE_FAULT)


def battery_since(ups: DeviceFact) -> datetime:
    """When a UPS on battery went on battery: the node's own account (``attrs.lost_at`` or ``attrs.since``) when it
    is plausible, else when central saw the state change (later, if the state arrived late: replayed after an
    uplink outage, or after the node came back)."""
    start = ups.status_since
    for name in ("lost_at", "since"):
        told = parse_time(ups.attrs.get(name))
        if told is not None and ups.status_since - MAX_TOLD_AGE <= told < start:
            start = told
    return start


def next_cause(current: str, started_at: datetime, desired: DesiredOutage, grace_s: float) -> str:
    """The cause an OPEN outage should have now: upgraded (device → network → power) when a node-level cause is
    learned later, but never downgraded, and a device that was down well before its node's trouble (more than
    *grace_s* earlier) keeps ``device``."""
    if _CAUSE_RANK.get(desired.cause, 0) <= _CAUSE_RANK.get(current, 0):
        return current
    too_early = desired.cause_since is not None and started_at < desired.cause_since - timedelta(seconds=grace_s)
    return current if current == "device" and too_early else desired.cause


# ------------------------------------------------------------------------------------------------ evaluation


class _Rules:
    """One evaluation over one snapshot."""

    def __init__(self, snap: Snapshot, settings: IncidentSettings, language: str) -> None:
        self.snap = snap
        self.settings = settings
        self.lang = language
        self.now = snap.now
        self.by_node: dict[str, list[DeviceFact]] = {}
        for device in snap.devices.values():
            self.by_node.setdefault(device.node_id, []).append(device)
        for devices in self.by_node.values():
            devices.sort(key=lambda d: d.device_id)
        self.open_keys = {i.key for i in snap.open_incidents}
        self.plan = Plan()
        self._mains_back: dict[str, datetime] | None = None
        self.power_since: dict[str, datetime] = {}
        for node in snap.nodes.values():
            since = self._power_trouble_since(node)
            if since is not None:
                self.power_since[node.node_id] = since

    # ---------------------------------------------------------------- node facts

    def ups_of(self, node_id: str) -> list[DeviceFact]:
        return [d for d in self.by_node.get(node_id, []) if d.kind == "ups"]

    def _power_trouble_since(self, node: NodeFact) -> datetime | None:
        starts = [battery_since(u) for u in self.ups_of(node.node_id) if u.reason in POWER_REASONS]
        if not node.online and node.offline_reason == POWER_LOSS:
            starts.append(node.status_since or self.now)
        return min(starts) if starts else None

    def node_ok_since(self, node: NodeFact) -> datetime | None:
        """When the node last became fine (online, UPS off battery)."""
        times = [u.status_since for u in self.ups_of(node.node_id)]
        if node.status_since is not None:
            times.append(node.status_since)
        return max(times) if times else None

    def site_mains_back(self, site: str) -> datetime | None:
        """When the mains last came back at *site* (its UPSs' latest change to a non-battery state)."""
        if self._mains_back is None:
            self._mains_back = {}
            for device in self.snap.devices.values():
                node = self.snap.nodes.get(device.node_id)
                if device.kind == "ups" and node is not None and device.reason not in POWER_REASONS:
                    known = self._mains_back.get(node.site)
                    self._mains_back[node.site] = max(known, device.status_since) if known else device.status_since
        return self._mains_back.get(site)

    def settled(self, since: datetime) -> bool:
        return self.now - since >= timedelta(seconds=self.settings.camera_fault_delay_s)

    # ---------------------------------------------------------------- evaluation

    def run(self) -> Plan:
        self.plan.power_since = dict(self.power_since)
        covers = self._nodes()
        self._devices(covers)
        self._sirens()
        return self.plan

    def _nodes(self) -> dict[str, tuple[str | None, Cause, datetime]]:
        """Power outages and node_down incidents; returns node → (covering key, cause, trouble start)."""
        snap, plan, lang = self.snap, self.plan, self.lang
        covers: dict[str, tuple[str | None, Cause, datetime]] = {}
        for node_id, since in sorted(self.power_since.items()):
            node = snap.nodes[node_id]
            key = f"power_outage:{node.site}"
            incident = plan.incidents.get(key)
            if incident is None:
                incident = plan.incidents[key] = DesiredIncident(
                    key=key,
                    type="power_outage",
                    site=node.site,
                    node_id=None,
                    device_id=None,
                    started_at=since,
                    title=text(lang, "title.power_outage", site=snap.site_name(node.site)),
                    data={"site_name": snap.site_name(node.site), "nodes": []},
                )
            incident.started_at = min(incident.started_at, since)
            incident.add(f"{node_id}/")
            incident.data["nodes"].append(node_id)
            covers[node_id] = (key, "power", since)
        for incident in plan.incidents.values():
            labels = ", ".join(snap.nodes[n].label for n in incident.data["nodes"])
            incident.detail = text(lang, "detail.power_outage", nodes=labels)
        for node in sorted(snap.nodes.values(), key=lambda n: n.node_id):
            if node.node_id in covers or not node_is_down(node):
                continue
            assert node.status_since is not None
            site_key = f"power_outage:{node.site}"
            if site_key in plan.incidents:
                plan.incidents[site_key].add(f"{node.node_id}/")
                covers[node.node_id] = (site_key, "power", node.status_since)
                continue
            key = f"node_down:{node.node_id}"
            mains_back = self.site_mains_back(node.site)
            booting = mains_back is not None and node.status_since <= mains_back and not self.settled(mains_back)
            if key in self.open_keys or not booting:
                reason = node.offline_reason or text(lang, "reason.unknown")
                incident = plan.incidents[key] = DesiredIncident(
                    key=key,
                    type="node_down",
                    site=node.site,
                    node_id=node.node_id,
                    device_id=None,
                    started_at=node.status_since,
                    title=text(lang, "title.node_down", node=node.label, site=snap.site_name(node.site)),
                    detail=text(lang, "detail.node_down", reason=reason),
                    data={"site_name": snap.site_name(node.site), "node_name": node.label, "reason": reason},
                )
                incident.add(f"{node.node_id}/")
                covers[node.node_id] = (key, "network", node.status_since)
            else:
                covers[node.node_id] = (None, "network", node.status_since)
        for node_id, (cover_key, cause, since) in covers.items():
            node = snap.nodes[node_id]
            if node.online:
                continue  # on battery but up: the node itself is not down
            plan.outages[(node_id, "")] = DesiredOutage(
                node_id=node_id,
                device_id="",
                kind="node",
                site=node.site,
                cause=cause,
                reason=node.offline_reason or "",
                started_at=node.status_since or since,
                incident_key=cover_key,
                cause_since=since,
            )
        return covers

    def _own_fault(self, device: DeviceFact, node: NodeFact, since: datetime, kind: str) -> DesiredIncident:
        lang, snap = self.lang, self.snap
        key = f"{kind}:{device.node_id}:{device.device_id}"
        reason = device.reason or device.status
        incident = DesiredIncident(
            key=key,
            type=kind,
            site=node.site,
            node_id=device.node_id,
            device_id=device.device_id,
            started_at=since,
            title=text(
                lang, "title.fault", label=type_label(lang, kind), device=device.label, site=snap.site_name(node.site)
            ),
            detail=text(lang, "detail.fault", status=device.status, reason=reason),
            data={
                "site_name": snap.site_name(node.site),
                "node_name": node.label,
                "device_name": device.label,
                "kind": device.kind,
                "status": device.status,
                "reason": reason,
            },
        )
        incident.add(device.ref)
        self.plan.incidents[key] = incident
        return incident

    def _devices(self, covers: dict[str, tuple[str | None, Cause, datetime]]) -> None:
        snap, plan = self.snap, self.plan
        grace = timedelta(seconds=self.settings.camera_fault_delay_s)
        for node_id, devices in sorted(self.by_node.items()):
            node = snap.nodes.get(node_id)
            if node is None:
                continue
            cover = covers.get(node_id)
            for device in devices:
                kind = fault_type(device.kind)
                if kind is None:
                    continue
                own_key = f"{kind}:{node_id}:{device.device_id}"
                own = own_key in self.open_keys
                down = device_is_down(device)
                if not node.online:
                    if own:
                        # Faulty before its node went down: its own incident stays (the node did not cause it).
                        self._own_fault(device, node, device.status_since, kind)
                    if cover is None:
                        continue  # a clean shutdown: planned, nothing is down
                    cover_key, cause, since = cover
                    node_since = node.status_since or since
                    earlier = down and device.status_since < node_since
                    if not own and cover_key is not None:
                        plan.incidents[cover_key].add(device.ref)
                    plan.outages[(node_id, device.device_id)] = DesiredOutage(
                        node_id=node_id,
                        device_id=device.device_id,
                        kind=device.kind,
                        site=node.site,
                        cause="device" if own else cause,
                        reason=(device.reason or device.status) if earlier else (node.offline_reason or ""),
                        started_at=device.status_since if earlier else node_since,
                        incident_key=own_key if own else cover_key,
                        cause_since=None if own else since,
                    )
                    continue
                if not down:
                    continue
                power = self.power_since.get(node_id)
                if power is not None:
                    caused = device.status_since >= power - grace
                    if own:
                        self._own_fault(device, node, device.status_since, kind)
                    else:
                        plan.incidents[f"power_outage:{node.site}"].add(device.ref)
                    plan.outages[(node_id, device.device_id)] = DesiredOutage(
                        node_id=node_id,
                        device_id=device.device_id,
                        kind=device.kind,
                        site=node.site,
                        cause="power" if caused and not own else "device",
                        reason=device.reason or device.status,
                        started_at=device.status_since,
                        incident_key=own_key if own else f"power_outage:{node.site}",
                        cause_since=power if caused and not own else None,
                    )
                    continue
                ok_since = self.node_ok_since(node)
                fault_since = max(device.status_since, ok_since) if ok_since else device.status_since
                fault_key: str | None = None
                if own or self.settled(fault_since):
                    self._own_fault(device, node, fault_since, kind)
                    fault_key = own_key
                plan.outages[(node_id, device.device_id)] = DesiredOutage(
                    node_id=node_id,
                    device_id=device.device_id,
                    kind=device.kind,
                    site=node.site,
                    cause="device",
                    reason=device.reason or device.status,
                    started_at=device.status_since,
                    incident_key=fault_key,
                )

    # ---------------------------------------------------------------- sirens

    def first_sounding_since(self, device: DeviceFact, t0: datetime) -> datetime | None:
        """The earliest moment at or after *t0* the siren is known to have been sounding (None: never)."""
        found: list[datetime] = []
        if device.reason == SOUNDING:
            found.append(max(t0, device.status_since))
        for change in self.snap.siren_changes.get((device.node_id, device.device_id), []):
            if change.state == SOUNDING and change.at >= t0:
                found.append(change.at)
            if change.previous == SOUNDING and change.at > t0:
                found.append(max(t0, change.previous_since or t0))
        last = parse_time(device.attrs.get("last_sounded_at"))
        if last is not None and last >= t0:
            found.append(last)
        return min(found) if found else None

    def _sirens(self) -> None:
        snap, lang = self.snap, self.lang
        failing = {(i.node_id, i.device_id): i for i in snap.open_incidents if i.type == "siren_failure"}
        for (node_id, _), device in sorted(snap.devices.items()):
            node = snap.nodes.get(node_id)
            if device.kind != "siren" or node is None:
                continue
            alerts = snap.alerts.get(node.site, [])
            if alerts:
                self._siren_failure(device, node, alerts, failing.get((node_id, device.device_id)))
            elif device.reason == SOUNDING:
                start = device.status_since
                last_end = snap.last_alert_end.get(node.site)
                if last_end is not None and last_end > start:
                    start = last_end
                due = start + timedelta(seconds=self.settings.unexpected_activation_delay_s)
                if self.now < due:
                    continue
                if snap.alerts_known_until is not None and snap.alerts_known_until < due:
                    continue  # the alert feed has not been read since: the official alert may just be late
                key = f"unexpected_activation:{node_id}:{device.device_id}:{iso_key(start)}"
                incident = self.plan.incidents[key] = DesiredIncident(
                    key=key,
                    type="unexpected_activation",
                    site=node.site,
                    node_id=node_id,
                    device_id=device.device_id,
                    started_at=start,
                    title=text(
                        lang, "title.unexpected_activation", device=device.label, site=snap.site_name(node.site)
                    ),
                    detail=text(lang, "detail.unexpected_activation", since=local_time(device.status_since)),
                    data={
                        "site_name": snap.site_name(node.site),
                        "node_name": node.label,
                        "device_name": device.label,
                        "sounding_since": device.status_since.isoformat(),
                    },
                )
                incident.add(device.ref)

    def _siren_failure(
        self, device: DeviceFact, node: NodeFact, alerts: list[AlertFact], existing: OpenIncident | None
    ) -> None:
        snap, lang = self.snap, self.lang
        if existing is not None:
            t0 = parse_time(existing.data.get("alert_started_at")) or existing.started_at
            period_id = existing.data.get("alert_period_id")
            region = str(existing.data.get("region_name") or "")
            key = existing.key
            started = existing.started_at
        else:
            first = alerts[0]
            t0, period_id, region = first.started_at, first.id, first.region_name
            key = f"siren_failure:{node.node_id}:{device.device_id}:{first.id}"
            started = t0 + timedelta(seconds=self.settings.siren_failure_delay_s)
        if self.first_sounding_since(device, t0) is not None:
            return
        if existing is None and self.now < started:
            return
        unknown = not node.online or device.reason in (None, "unknown")
        detail_key = "detail.siren_failure_unknown" if unknown else "detail.siren_failure"
        incident = self.plan.incidents[key] = DesiredIncident(
            key=key,
            type="siren_failure",
            site=node.site,
            node_id=node.node_id,
            device_id=device.device_id,
            started_at=started,
            title=text(lang, "title.siren_failure", device=device.label, site=snap.site_name(node.site)),
            detail=text(lang, detail_key, region=region or "?", since=local_time(t0)),
            data={
                "site_name": snap.site_name(node.site),
                "node_name": node.label,
                "device_name": device.label,
                "alert_period_id": period_id,
                "alert_started_at": t0.isoformat(),
                "region_name": region,
                "siren_state": "unknown" if not node.online else (device.reason or "unknown"),
            },
        )
        incident.add(device.ref)


def evaluate(snapshot: Snapshot, settings: IncidentSettings, language: str = "uk") -> Plan:
    """The incidents and outages that should be open for *snapshot* (see the module docstring for the rules)."""
    return _Rules(snapshot, settings, language).run()


# ------------------------------------------------------------------------------------------------ closing


def _clamp(value: datetime | None, start: datetime, now: datetime) -> datetime:
    if value is None:
        return now
    return min(max(value, start), now)


def closing(incident: OpenIncident, snapshot: Snapshot, plan: Plan, language: str = "uk") -> Closing:
    """When and why *incident* (open, but no longer in *plan*) ended, from the state that ended it."""
    snap, now, lang = snapshot, snapshot.now, language
    rules = _Rules(snap, IncidentSettings(), language)

    def done(at: datetime | None, code: str, **values: str | float) -> Closing:
        return Closing(_clamp(at, incident.started_at, now), end_text(lang, code, values), code, dict(values))

    if incident.type == "power_outage":
        times: list[datetime] = []
        for ref in incident.devices:
            node = snap.nodes.get(ref.split("/", 1)[0]) if ref.endswith("/") else None
            if node is None:
                continue
            if node.online and node.status_since is not None:
                times.append(node.status_since)
            times.extend(u.status_since for u in rules.ups_of(node.node_id) if u.reason not in POWER_REASONS)
        return done(max(times) if times else None, "power_back")
    if incident.type == "node_down":
        node = snap.nodes.get(incident.node_id or "")
        if node is None:
            return done(None, "gone")
        if node.online:
            return done(node.status_since, "node_back")
        power_key = f"power_outage:{node.site}"
        if power_key in plan.incidents:
            return done(None, "absorbed", cover_type="power_outage")
        if node.offline_reason == SHUTDOWN:
            return done(node.status_since, "node_shutdown")
        return done(None, "node_back")
    device = snap.devices.get((incident.node_id or "", incident.device_id or ""))
    if incident.type in ALL_FAULT_TYPES:
        if device is None:
            return done(None, "gone")
        node = snap.nodes.get(device.node_id)
        if not device_is_down(device):
            times = [device.status_since]
            if node is not None and node.online and node.status_since is not None:
                times.append(node.status_since)
            return done(max(times), "device_back")
        cover = "power_outage" if device.node_id in rules.power_since else "node_down"
        return done(None, "absorbed", cover_type=cover)
    if incident.type == "siren_failure":
        if device is None:
            return done(None, "gone")
        t0 = parse_time(incident.data.get("alert_started_at")) or incident.started_at
        sounded = rules.first_sounding_since(device, t0)
        if sounded is not None:
            return done(sounded, "sounded", after_s=(sounded - t0).total_seconds())
        node = snap.nodes.get(device.node_id)
        ended = snap.last_alert_end.get(node.site) if node is not None else None
        if ended is None:
            period = snap.periods.get(int(incident.data.get("alert_period_id") or 0))
            ended = period.ended_at if period is not None else None
        return done(ended, "alert_ended")
    if incident.type == "unexpected_activation":
        if device is None:
            return done(None, "gone")
        if device.reason != SOUNDING or device.status_since > incident.started_at:
            at = device.status_since if device.reason != SOUNDING else None
            after = ((at or now) - incident.started_at).total_seconds()
            return done(at, "stopped", after_s=after)
        node = snap.nodes.get(device.node_id)
        alerts = snap.alerts.get(node.site, []) if node is not None else []
        begun = [a.started_at for a in alerts if a.started_at >= incident.started_at]
        if alerts:
            return done(min(begun) if begun else None, "alert_started")
        return done(None, "stopped", after_s=(now - incident.started_at).total_seconds())
    return done(None, "gone")


def outage_end(outage: OpenOutage, snapshot: Snapshot) -> datetime:
    """When *outage* (open, no longer desired) ended: when its node or device came back, as far as known."""
    now = snapshot.now
    node = snapshot.nodes.get(outage.node_id)
    times: list[datetime] = []
    if node is not None and node.status_since is not None:
        times.append(node.status_since)
    if outage.device_id:
        device = snapshot.devices.get((outage.node_id, outage.device_id))
        if device is not None:
            times.append(device.status_since)
    return _clamp(max(times) if times else None, outage.started_at, now)


__all__ = [
    "ALL_FAULT_TYPES",
    "SEVERITY",
    "AlertFact",
    "Closing",
    "DesiredIncident",
    "DesiredOutage",
    "DeviceFact",
    "NodeFact",
    "OpenIncident",
    "OpenOutage",
    "Plan",
    "SirenChange",
    "Snapshot",
    "battery_since",
    "closing",
    "device_is_down",
    "evaluate",
    "next_cause",
    "node_is_down",
    "outage_end",
    "parse_time",
]
