"""Power outages and lost nodes: ONE incident per blackout, absorbing the camera outages it causes.

The engine reads the store as ingest leaves it (nodes, device states) and runs with an injected ``now``.
"""

from __future__ import annotations

from central.store.incident_models import Incident
from tests.central.incidents.conftest import IncidentEnv
from tests.central.incidents.support import at


async def _fleet_with_cameras(env: IncidentEnv, node: str = "node-a", site: str = "vyshneve") -> None:
    await env.fleet.node(node, site, since=at(-3600), name="School")
    await env.fleet.ups(node, "on_line", since=at(-3600))
    for cam in ("cam-1", "cam-2", "cam-3"):
        await env.fleet.device(node, cam, "camera", "online", since=at(-3600))


def _only(incidents: list[Incident]) -> Incident:
    assert len(incidents) == 1, [i.key for i in incidents]
    return incidents[0]


async def test_blackout_then_sigkill_then_cameras_down_is_exactly_one_power_outage_grouping_everything(
    env: IncidentEnv,
) -> None:
    fleet, engine = env.fleet, env.engine
    await _fleet_with_cameras(env)

    await fleet.ups("node-a", "on_battery", since=at(0))
    await engine.evaluate_now(at(1))
    await fleet.ups("node-a", "low_battery", since=at(40))
    await engine.evaluate_now(at(41))
    await fleet.device("node-a", "cam-2", "camera", "offline", "unreachable", since=at(45))  # its PoE on mains
    await engine.evaluate_now(at(46))
    await fleet.node("node-a", online=False, reason="last_will", since=at(50))  # SIGKILL: the will arrives
    for t in (51, 60, 120, 600):  # long past every delay: still nothing but the one incident
        await engine.evaluate_now(at(t))

    incident = _only(await fleet.incidents())
    assert incident.key == "power_outage:vyshneve"
    assert incident.type == "power_outage"
    assert incident.severity == "error"
    assert incident.title == "Power outage at Vyshneve village"
    assert incident.ended_at is None
    assert incident.started_at == at(0)  # when the node went on battery, not when it was evaluated
    # In the order they went down: cam-2 on battery, the node and the others with the SIGKILL.
    assert incident.devices == ["node-a/", "node-a/cam-2", "node-a/cam-1", "node-a/cam-3"]
    outages = {(o.node_id, o.device_id): o for o in await fleet.outages()}
    assert set(outages) == {("node-a", ""), ("node-a", "cam-1"), ("node-a", "cam-2"), ("node-a", "cam-3")}
    assert {o.cause for o in outages.values()} == {"power"}
    assert {o.incident_id for o in outages.values()} == {incident.id}
    assert outages[("node-a", "")].started_at == at(50)
    assert outages[("node-a", "cam-1")].started_at == at(50)  # down with its node
    assert outages[("node-a", "cam-2")].started_at == at(45)  # it went down before the node did
    assert all(o.ended_at is None for o in outages.values())


async def test_power_outage_closes_when_the_mains_are_back_and_the_node_is_online(env: IncidentEnv) -> None:
    fleet, engine = env.fleet, env.engine
    await _fleet_with_cameras(env)
    await fleet.ups("node-a", "on_battery", since=at(0))
    await fleet.node("node-a", online=False, reason="power_loss", since=at(300))
    await engine.evaluate_now(at(301))

    await fleet.node("node-a", online=True, since=at(900))  # back, but its UPS has not reported yet
    await engine.evaluate_now(at(901))
    assert (await fleet.incidents("open"))[0].type == "power_outage"
    await fleet.ups("node-a", "on_line", since=at(905))
    await engine.evaluate_now(at(906))

    incident = _only(await fleet.incidents())
    assert incident.ended_at == at(905)
    assert incident.data["end_code"] == "power_back"
    assert incident.end_reason == "Mains restored and the nodes are connected"
    outages = {(o.node_id, o.device_id): o for o in await fleet.outages()}
    assert outages[("node-a", "")].started_at == at(300)
    assert outages[("node-a", "")].ended_at == at(900)  # the node was back at 900
    assert outages[("node-a", "cam-1")].ended_at == at(900)  # its cameras with it (their state never changed)
    assert {o.cause for o in outages.values()} == {"power"}


async def test_a_node_that_says_power_loss_opens_a_power_outage_not_a_node_down(env: IncidentEnv) -> None:
    await env.fleet.node("node-a", since=at(-60))
    await env.fleet.node("node-a", online=False, reason="power_loss", since=at(0))

    await env.engine.evaluate_now(at(1))

    incident = _only(await env.fleet.incidents())
    assert incident.type == "power_outage"
    assert incident.started_at == at(0)
    assert [(o.device_id, o.cause, o.reason) for o in await env.fleet.outages()] == [("", "power", "power_loss")]


async def test_a_node_lost_without_a_power_reason_opens_node_down_covering_its_devices(env: IncidentEnv) -> None:
    fleet, engine = env.fleet, env.engine
    await _fleet_with_cameras(env)
    await fleet.node("node-a", online=False, reason="last_will", since=at(0))

    await engine.evaluate_now(at(1))

    incident = _only(await fleet.incidents())
    assert incident.key == "node_down:node-a"
    assert incident.title == "Node down: School at Vyshneve village"
    assert incident.started_at == at(0)
    assert incident.devices == ["node-a/", "node-a/cam-1", "node-a/cam-2", "node-a/cam-3"]
    outages = await fleet.outages()
    assert len(outages) == 4
    assert {o.cause for o in outages} == {"network"}

    await fleet.node("node-a", online=True, since=at(120))
    await engine.evaluate_now(at(121))

    incident = _only(await fleet.incidents())
    assert incident.ended_at == at(120)
    assert incident.data["end_code"] == "node_back"
    assert {o.ended_at for o in await fleet.outages()} == {at(120)}


async def test_a_stale_node_is_down_too(env: IncidentEnv) -> None:
    await env.fleet.node("node-a", online=False, reason="stale", since=at(0))

    await env.engine.evaluate_now(at(1))

    assert _only(await env.fleet.incidents()).type == "node_down"


async def test_a_clean_shutdown_is_planned_no_incident_and_no_outage(env: IncidentEnv) -> None:
    await _fleet_with_cameras(env)
    await env.fleet.node("node-a", online=False, reason="shutdown", since=at(0))

    for t in (1, 60, 3600):
        await env.engine.evaluate_now(at(t))

    assert await env.fleet.incidents() == []
    assert await env.fleet.outages() == []


async def test_a_node_without_ups_dying_in_its_sites_blackout_joins_the_power_outage(env: IncidentEnv) -> None:
    fleet, engine = env.fleet, env.engine
    await _fleet_with_cameras(env, "node-a")
    await fleet.node("node-b", since=at(-3600))
    await fleet.device("node-b", "kiosk-1", "kiosk", since=at(-3600))
    await fleet.ups("node-a", "on_battery", since=at(0))
    await engine.evaluate_now(at(1))

    await fleet.node("node-b", online=False, reason="last_will", since=at(2))
    await engine.evaluate_now(at(3))

    incident = _only(await fleet.incidents())
    assert incident.type == "power_outage"
    assert "node-b/" in incident.devices and "node-b/kiosk-1" in incident.devices
    outages = {(o.node_id, o.device_id): o for o in await fleet.outages()}
    assert outages[("node-b", "")].cause == "power"
    assert outages[("node-b", "kiosk-1")].cause == "power"


async def test_a_node_lost_before_its_sites_power_outage_is_absorbed_and_its_outage_becomes_power(
    env: IncidentEnv,
) -> None:
    fleet, engine = env.fleet, env.engine
    await _fleet_with_cameras(env, "node-a")
    await fleet.node("node-b", since=at(-3600))
    await fleet.node("node-b", online=False, reason="last_will", since=at(0))
    await engine.evaluate_now(at(1))
    assert _only(await fleet.incidents("open")).type == "node_down"

    await fleet.ups("node-a", "on_battery", since=at(2))  # the other node's UPS tells what it was
    await engine.evaluate_now(at(3))

    open_now = _only(await fleet.incidents("open"))
    assert open_now.type == "power_outage"
    assert open_now.devices == ["node-a/", "node-b/"]
    node_down = next(i for i in await fleet.incidents() if i.type == "node_down")
    assert node_down.data["end_code"] == "absorbed"
    assert node_down.end_reason == "Covered by the 'Power outage' incident"
    outage = next(o for o in await fleet.outages() if o.node_id == "node-b")
    assert outage.cause == "power"  # learned later, the open outage's cause is upgraded
    assert outage.ended_at is None


async def test_a_node_still_booting_after_the_mains_came_back_gets_no_node_down_yet(env: IncidentEnv) -> None:
    fleet, engine = env.fleet, env.engine
    await _fleet_with_cameras(env, "node-a")
    await fleet.node("node-b", since=at(-3600))
    await fleet.ups("node-a", "on_battery", since=at(0))
    await fleet.node("node-b", online=False, reason="last_will", since=at(10))
    await engine.evaluate_now(at(11))

    await fleet.ups("node-a", "on_line", since=at(600))
    await engine.evaluate_now(at(601))
    assert await fleet.incidents("open") == []  # node-b is probably booting: the settle delay first

    await engine.evaluate_now(at(600 + 31))
    late = _only(await fleet.incidents("open"))
    assert late.key == "node_down:node-b"
    assert late.started_at == at(10)


async def test_devices_listed_on_an_open_incident_stay_listed_when_they_recover(env: IncidentEnv) -> None:
    fleet, engine = env.fleet, env.engine
    await _fleet_with_cameras(env)
    await fleet.ups("node-a", "on_battery", since=at(0))
    await fleet.device("node-a", "cam-1", "camera", "offline", "unreachable", since=at(1))
    await engine.evaluate_now(at(2))
    assert _only(await fleet.incidents()).devices == ["node-a/", "node-a/cam-1"]

    await fleet.device("node-a", "cam-1", "camera", "online", since=at(20))
    await engine.evaluate_now(at(21))

    incident = _only(await fleet.incidents())
    assert incident.devices == ["node-a/", "node-a/cam-1"]  # a record of what the outage took down
    cam = next(o for o in await fleet.outages() if o.device_id == "cam-1")
    assert cam.ended_at == at(20)
    assert cam.cause == "power"


async def test_one_power_outage_per_site_however_many_nodes_run_on_battery(env: IncidentEnv) -> None:
    fleet, engine = env.fleet, env.engine
    for node in ("node-a", "node-b", "node-c"):
        await fleet.node(node, since=at(-60))
        await fleet.ups(node, "on_battery", since=at({"node-a": 5, "node-b": 2, "node-c": 9}[node]))
    await fleet.node("node-z", "lisove", since=at(-60))
    await fleet.ups("node-z", "on_battery", since=at(3))

    await engine.evaluate_now(at(10))

    incidents = await fleet.incidents()
    assert sorted(i.key for i in incidents) == ["power_outage:lisove", "power_outage:vyshneve"]
    village = next(i for i in incidents if i.site == "vyshneve")
    assert village.started_at == at(2)
    assert village.devices == ["node-a/", "node-b/", "node-c/"]
    assert await fleet.outages() == []  # nodes on battery are up: nothing is down yet


async def test_a_node_back_saying_it_ran_on_battery_turns_its_lost_time_into_a_power_outage(env: IncidentEnv) -> None:
    fleet, engine = env.fleet, env.engine
    await _fleet_with_cameras(env)
    await fleet.node("node-a", online=False, reason="last_will", since=at(10))  # the uplink went with the mains
    await engine.evaluate_now(at(11))
    assert next((o.device_id, o.cause) for o in await fleet.outages()) == ("", "network")

    # Back at 300: its UPS state (replayed from the outbox) says it has been on battery since 5, by its own clock.
    await fleet.node("node-a", online=True, since=at(300))
    await fleet.device(
        "node-a", "ups", "ups", "degraded", "on_battery", since=at(300), attrs={"since": at(5).isoformat()}
    )
    await engine.evaluate_now(at(301))

    incidents = {i.type: i for i in await fleet.incidents()}
    assert incidents["node_down"].ended_at == at(300)
    assert incidents["power_outage"].ended_at is None
    assert incidents["power_outage"].started_at == at(5)
    node_outage = next(o for o in await fleet.outages() if o.device_id == "")
    assert (node_outage.ended_at, node_outage.cause) == (at(300), "power")  # the cause learned at its end


async def test_an_implausible_on_battery_time_from_the_node_is_not_believed(env: IncidentEnv) -> None:
    await _fleet_with_cameras(env)
    await env.fleet.device(
        "node-a", "ups", "ups", "degraded", "on_battery", since=at(100), attrs={"since": "1970-01-01T00:00:00+00:00"}
    )

    await env.engine.evaluate_now(at(101))

    (incident,) = await env.fleet.incidents()
    assert incident.started_at == at(100)
