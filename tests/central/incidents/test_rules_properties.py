"""Properties of the pure rules over arbitrary fleets (hypothesis): one covering incident per device, no node_down
inside a blackout, every outage's incident exists, and a store that matches the plan needs no change (level-
triggered: evaluating again writes nothing)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from central.config import IncidentSettings
from central.incidents.plan import diff
from central.incidents.rules import (
    ALL_FAULT_TYPES,
    AlertFact,
    DeviceFact,
    NodeFact,
    OpenIncident,
    OpenOutage,
    Snapshot,
    device_is_down,
    evaluate,
    node_is_down,
)
from tests.central.incidents.support import at

SETTINGS = IncidentSettings()
NOW = at(3600)

times = st.integers(min_value=-7200, max_value=3600).map(at)
device_kinds = st.sampled_from(["camera", "kiosk", "siren", "ups", "sensor"])
statuses = st.sampled_from(["online", "degraded", "offline", "unknown"])
reasons = st.sampled_from(
    [None, "unreachable", "on_line", "on_battery", "low_battery", "idle", "sounding", "fault", "unpowered", "unknown"]
)


@st.composite
def snapshots(draw: st.DrawFn) -> Snapshot:
    snap = Snapshot(now=NOW, site_names={"s1": "Site one"})
    for n in range(draw(st.integers(min_value=0, max_value=4))):
        node_id = f"n{n}"
        online = draw(st.booleans())
        snap.nodes[node_id] = NodeFact(
            node_id=node_id,
            site=draw(st.sampled_from(["s1", "s2"])),
            name="",
            online=online,
            offline_reason=None if online else draw(st.sampled_from(["last_will", "stale", "shutdown", "power_loss"])),
            status_since=draw(st.one_of(st.none(), times)),
        )
        for d in range(draw(st.integers(min_value=0, max_value=4))):
            kind = draw(device_kinds)
            device_id = "ups" if kind == "ups" else f"{kind}-{d}"
            snap.devices[(node_id, device_id)] = DeviceFact(
                node_id=node_id,
                device_id=device_id,
                kind=kind,
                name="",
                status=draw(statuses),
                reason=draw(reasons),
                status_since=draw(times),
            )
    if draw(st.booleans()):
        snap.alerts["s1"] = [AlertFact(id=7, started_at=draw(times), ended_at=None, region_name="R")]
    return snap


def _stored(snap: Snapshot, settings_: IncidentSettings) -> tuple[Snapshot, dict[int, dict[str, Any]]]:
    """The snapshot after the plan was written: its incidents and outages are open."""
    plan = evaluate(snap, settings_, "en")
    after = Snapshot(
        now=snap.now,
        nodes=snap.nodes,
        devices=snap.devices,
        alerts=snap.alerts,
        site_names=snap.site_names,
    )
    stored: dict[int, dict[str, Any]] = {}
    ids: dict[str, int] = {}
    for n, (key, desired) in enumerate(sorted(plan.incidents.items()), start=1):
        ids[key] = n
        after.open_incidents.append(
            OpenIncident(
                id=n,
                key=key,
                type=desired.type,
                site=desired.site,
                node_id=desired.node_id,
                device_id=desired.device_id,
                started_at=desired.started_at,
                devices=tuple(desired.devices),
                data=dict(desired.data),
            )
        )
        stored[n] = {"title": desired.title, "detail": desired.detail, "severity": desired.severity}
    for n, ((node_id, device_id), outage) in enumerate(sorted(plan.outages.items()), start=1):
        after.open_outages.append(
            OpenOutage(
                id=n,
                node_id=node_id,
                device_id=device_id,
                cause=outage.cause,
                started_at=outage.started_at,
                incident_id=ids.get(outage.incident_key or ""),
            )
        )
    return after, stored


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(snapshots())
def test_each_down_device_is_covered_by_at_most_one_incident(snap: Snapshot) -> None:
    plan = evaluate(snap, SETTINGS, "en")

    covering = [i for i in plan.incidents.values() if i.type in ALL_FAULT_TYPES | {"power_outage", "node_down"}]
    refs = [ref for i in covering for ref in i.devices]
    assert len(refs) == len(set(refs))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(snapshots())
def test_no_node_down_at_a_site_with_a_power_outage_and_every_outage_points_at_a_planned_incident(
    snap: Snapshot,
) -> None:
    plan = evaluate(snap, SETTINGS, "en")

    blackout_sites = {i.site for i in plan.incidents.values() if i.type == "power_outage"}
    assert not any(i.type == "node_down" and i.site in blackout_sites for i in plan.incidents.values())
    for outage in plan.outages.values():
        assert outage.incident_key is None or outage.incident_key in plan.incidents
        assert outage.cause in ("power", "network", "device")


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(snapshots())
def test_every_device_of_a_lost_node_has_an_outage(snap: Snapshot) -> None:
    plan = evaluate(snap, SETTINGS, "en")

    for (node_id, device_id), device in snap.devices.items():
        node = snap.nodes[node_id]
        if device.kind != "ups" and node_is_down(node):
            assert (node_id, device_id) in plan.outages
        if device.kind != "ups" and node.online and not device_is_down(device):
            assert (node_id, device_id) not in plan.outages


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(snapshots(), st.integers(min_value=0, max_value=120))
def test_a_store_that_matches_the_plan_needs_no_change(snap: Snapshot, later_s: int) -> None:
    after, stored = _stored(snap, SETTINGS)

    changes = diff(after, evaluate(after, SETTINGS, "en"), stored, language="en", cause_grace_s=30)

    assert not changes, changes.summary()
    # and the open incidents never vanish just because time passes while nothing else changes
    later = Snapshot(
        now=snap.now + timedelta(seconds=later_s),
        nodes=after.nodes,
        devices=after.devices,
        alerts=after.alerts,
        site_names=after.site_names,
        open_incidents=after.open_incidents,
        open_outages=after.open_outages,
    )
    assert diff(later, evaluate(later, SETTINGS, "en"), stored, language="en", cause_grace_s=30).close == []
