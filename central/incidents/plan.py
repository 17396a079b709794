"""The difference between what should be open (:func:`central.incidents.rules.evaluate`) and what is: pure.

The engine applies these changes in one transaction. An empty :class:`Changes` means nothing to write, so the
engine can tell that from a read-only pass and take its lock only when there is work.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from central.incidents.rules import (
    Closing,
    DesiredIncident,
    DesiredOutage,
    OpenIncident,
    OpenOutage,
    Plan,
    Snapshot,
    closing,
    next_cause,
    outage_end,
)
from central.incidents.texts import end_text


@dataclass(frozen=True, slots=True)
class IncidentUpdate:
    """New values for an open incident's columns (``devices`` only ever grows; ``started_at`` only moves back)."""

    incident_id: int
    key: str
    values: dict[str, Any]


@dataclass(frozen=True, slots=True)
class IncidentClose:
    """An open incident that ended."""

    incident_id: int
    key: str
    closing: Closing


@dataclass(frozen=True, slots=True)
class OutageUpdate:
    """A changed cause and/or the incident (by key) an open outage should be linked to."""

    outage_id: int
    cause: str | None = None
    link_key: str | None = None


@dataclass(frozen=True, slots=True)
class OutageClose:
    """An open outage that ended."""

    outage_id: int
    ended_at: datetime
    cause: str | None = None  # learned at the end: the node turns out to have been on battery


@dataclass
class Changes:
    """Everything one evaluation has to write."""

    open: list[DesiredIncident] = field(default_factory=list)
    update: list[IncidentUpdate] = field(default_factory=list)
    close: list[IncidentClose] = field(default_factory=list)
    open_outages: list[DesiredOutage] = field(default_factory=list)
    update_outages: list[OutageUpdate] = field(default_factory=list)
    close_outages: list[OutageClose] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(
            self.open or self.update or self.close or self.open_outages or self.update_outages or self.close_outages
        )

    def summary(self) -> dict[str, int]:
        """Counts, for logs."""
        return {
            "opened": len(self.open),
            "updated": len(self.update),
            "closed": len(self.close),
            "outages_opened": len(self.open_outages),
            "outages_updated": len(self.update_outages),
            "outages_closed": len(self.close_outages),
        }


def _incident_values(current: OpenIncident, desired: DesiredIncident, stored: dict[str, Any]) -> dict[str, Any]:
    values: dict[str, Any] = {}
    devices = list(current.devices)
    added = [d for d in desired.devices if d not in devices]
    if added:
        values["devices"] = devices + added
    if desired.started_at < current.started_at:
        values["started_at"] = desired.started_at
    for name in ("title", "detail", "severity"):
        if stored.get(name) != getattr(desired, name):
            values[name] = getattr(desired, name)
    data = {**current.data, **desired.data}
    if data != dict(current.data):
        values["data"] = data
    return values


def _final_cause(outage: OpenOutage, ended: datetime, plan: Plan, grace_s: float) -> str | None:
    """``power`` when the node turns out to have been on battery before this outage ended (None: keep the cause)."""
    since = plan.power_since.get(outage.node_id)
    if since is None or since > ended:
        return None
    wanted = DesiredOutage(
        node_id=outage.node_id,
        device_id=outage.device_id,
        kind="",
        site="",
        cause="power",
        reason="",
        started_at=outage.started_at,
        cause_since=since,
    )
    cause = next_cause(outage.cause, outage.started_at, wanted, grace_s)
    return cause if cause != outage.cause else None


def diff(
    snapshot: Snapshot,
    plan: Plan,
    stored: dict[int, dict[str, Any]],
    *,
    language: str,
    cause_grace_s: float,
) -> Changes:
    """What to write so the store matches *plan*.

    *stored* holds each open incident's ``title``, ``detail`` and ``severity`` by id (the snapshot keeps only
    what the rules need). Duplicate open incidents of one key (which a bug or a manual edit could leave) are
    closed, keeping the oldest; duplicate open outages of one device are closed with zero length.
    """
    changes = Changes()
    seen: dict[str, OpenIncident] = {}
    for incident in sorted(snapshot.open_incidents, key=lambda i: i.id):
        if incident.key in seen:
            code = "duplicate"
            changes.close.append(
                IncidentClose(incident.id, incident.key, Closing(snapshot.now, end_text(language, code), code))
            )
            continue
        seen[incident.key] = incident
        desired = plan.incidents.get(incident.key)
        if desired is None:
            changes.close.append(IncidentClose(incident.id, incident.key, closing(incident, snapshot, plan, language)))
            continue
        values = _incident_values(incident, desired, stored.get(incident.id, {}))
        if values:
            changes.update.append(IncidentUpdate(incident.id, incident.key, values))
    changes.open = [d for key, d in sorted(plan.incidents.items()) if key not in seen]
    will_be_open = set(plan.incidents)

    outages: dict[tuple[str, str], OpenOutage] = {}
    for outage in sorted(snapshot.open_outages, key=lambda o: (o.started_at, o.id)):
        ref = (outage.node_id, outage.device_id)
        if ref in outages:
            changes.close_outages.append(OutageClose(outage.id, outage.started_at))
            continue
        outages[ref] = outage
        wanted = plan.outages.get(ref)
        if wanted is None:
            ended = outage_end(outage, snapshot)
            changes.close_outages.append(
                OutageClose(outage.id, ended, _final_cause(outage, ended, plan, cause_grace_s))
            )
            continue
        cause = next_cause(outage.cause, outage.started_at, wanted, cause_grace_s)
        link = wanted.incident_key if outage.incident_id is None and wanted.incident_key in will_be_open else None
        if cause != outage.cause or link is not None:
            changes.update_outages.append(
                OutageUpdate(outage.id, cause=cause if cause != outage.cause else None, link_key=link)
            )
    changes.open_outages = [o for ref, o in sorted(plan.outages.items()) if ref not in outages]
    return changes


__all__ = ["Changes", "IncidentClose", "IncidentUpdate", "OutageClose", "OutageUpdate", "diff"]
