"""A device down while its node is fine: its own incident, but only after ``camera_fault_delay_s`` (30 s), which
gives a power or node incident the time to arrive and absorb it."""

from __future__ import annotations

from tests.central.incidents.conftest import IncidentEnv
from tests.central.incidents.support import at


async def _node(env: IncidentEnv) -> None:
    await env.fleet.node("node-a", since=at(-3600))
    await env.fleet.ups("node-a", "on_line", since=at(-3600))
    await env.fleet.device("node-a", "cam-1", "camera", "online", since=at(-3600), name="Fountain")


async def test_a_camera_down_opens_camera_fault_only_after_the_delay(env: IncidentEnv) -> None:
    fleet, engine = env.fleet, env.engine
    await _node(env)
    await fleet.device("node-a", "cam-1", "camera", "offline", "unreachable", since=at(0), name="Fountain")

    await engine.evaluate_now(at(29))

    assert await fleet.incidents() == []
    (outage,) = await fleet.outages()  # the outage counts from the start, incident or not
    assert (outage.device_id, outage.cause, outage.started_at, outage.incident_id) == ("cam-1", "device", at(0), None)

    await engine.evaluate_now(at(30))

    (incident,) = await fleet.incidents()
    assert incident.key == "camera_fault:node-a:cam-1"
    assert incident.type == "camera_fault"
    assert incident.severity == "warning"
    assert incident.title == "Camera fault: Fountain at Vyshneve village"
    assert incident.detail == "offline (unreachable)"
    assert incident.started_at == at(0)
    assert incident.devices == ["node-a/cam-1"]
    (outage,) = await fleet.outages()
    assert outage.incident_id == incident.id  # linked once the incident exists


async def test_camera_fault_closes_when_the_camera_is_back(env: IncidentEnv) -> None:
    fleet, engine = env.fleet, env.engine
    await _node(env)
    await fleet.device("node-a", "cam-1", "camera", "offline", "auth_failed", since=at(0))
    await engine.evaluate_now(at(31))

    await fleet.device("node-a", "cam-1", "camera", "online", since=at(200))
    await engine.evaluate_now(at(201))

    (incident,) = await fleet.incidents()
    assert incident.ended_at == at(200)
    assert incident.data["end_code"] == "device_back"
    (outage,) = await fleet.outages()
    assert (outage.started_at, outage.ended_at) == (at(0), at(200))


async def test_a_camera_down_a_moment_before_its_node_goes_on_battery_is_absorbed_with_cause_power(
    env: IncidentEnv,
) -> None:
    fleet, engine = env.fleet, env.engine
    await _node(env)
    await fleet.device("node-a", "cam-1", "camera", "offline", "unreachable", since=at(0))  # its PoE lost mains
    await engine.evaluate_now(at(1))
    assert [o.cause for o in await fleet.outages()] == ["device"]

    await fleet.ups("node-a", "on_battery", since=at(3))  # the UPS reports a poll later
    for t in (4, 40, 400):
        await engine.evaluate_now(at(t))

    (incident,) = await fleet.incidents()
    assert incident.type == "power_outage"
    assert incident.devices == ["node-a/", "node-a/cam-1"]
    (outage,) = await fleet.outages()
    assert outage.cause == "power"  # the cause learned later upgrades the open outage
    assert outage.incident_id == incident.id
    assert outage.started_at == at(0)


async def test_a_camera_broken_long_before_a_blackout_keeps_its_own_fault_and_cause(env: IncidentEnv) -> None:
    fleet, engine = env.fleet, env.engine
    await _node(env)
    await fleet.device("node-a", "cam-1", "camera", "offline", "unreachable", since=at(0))
    await engine.evaluate_now(at(60))

    await fleet.ups("node-a", "on_battery", since=at(3600))
    await engine.evaluate_now(at(3601))
    await fleet.node("node-a", online=False, reason="last_will", since=at(3700))
    await engine.evaluate_now(at(3701))

    incidents = {i.type: i for i in await fleet.incidents()}
    assert set(incidents) == {"camera_fault", "power_outage"}
    assert incidents["camera_fault"].ended_at is None  # it was broken before: not the blackout's doing
    assert "node-a/cam-1" not in incidents["power_outage"].devices
    cam = next(o for o in await fleet.outages() if o.device_id == "cam-1")
    assert cam.cause == "device"
    assert cam.incident_id == incidents["camera_fault"].id


async def test_a_camera_still_booting_after_the_power_came_back_is_not_a_fault_yet(env: IncidentEnv) -> None:
    fleet, engine = env.fleet, env.engine
    await _node(env)
    await fleet.ups("node-a", "on_battery", since=at(0))
    await fleet.device("node-a", "cam-1", "camera", "offline", "unreachable", since=at(1))
    await engine.evaluate_now(at(2))

    await fleet.ups("node-a", "on_line", since=at(600))
    await engine.evaluate_now(at(601))
    assert [i.type for i in await fleet.incidents("open")] == []  # the power outage closed; the camera boots

    await engine.evaluate_now(at(629))
    assert await fleet.incidents("open") == []
    await engine.evaluate_now(at(630))  # 30 s after the mains came back and still down: now it is a fault

    (fault,) = await fleet.incidents("open")
    assert fault.type == "camera_fault"
    assert fault.started_at == at(600)


async def test_kiosks_and_sirens_have_their_own_fault_types(env: IncidentEnv) -> None:
    fleet, engine = env.fleet, env.engine
    await _node(env)
    await fleet.device("node-a", "kiosk-1", "kiosk", "offline", "browser_crashed", since=at(0))
    await fleet.siren("node-a", "siren-1", "unpowered", since=at(0))
    await fleet.siren("node-a", "siren-2", "fault", since=at(0))
    await fleet.siren("node-a", "siren-3", "unknown", since=at(0))  # unreadable inputs: not a fault
    await fleet.device("node-a", "temp-1", "sensor", "offline", since=at(0))
    await fleet.device("node-a", "cam-1", "camera", "degraded", "frozen", since=at(0))  # degraded is not down

    await engine.evaluate_now(at(31))

    found = {i.key: i.severity for i in await fleet.incidents()}
    assert found == {
        "kiosk_fault:node-a:kiosk-1": "warning",
        "siren_fault:node-a:siren-1": "error",
        "siren_fault:node-a:siren-2": "error",
        "device_fault:node-a:temp-1": "warning",
    }
    assert sorted((o.device_id, o.kind) for o in await fleet.outages()) == [
        ("kiosk-1", "kiosk"),
        ("siren-1", "siren"),
        ("siren-2", "siren"),
        ("temp-1", "sensor"),
    ]


async def test_a_ups_gets_no_fault_of_its_own(env: IncidentEnv) -> None:
    await _node(env)
    await env.fleet.device("node-a", "ups", "ups", "offline", "unreachable", since=at(0))

    await env.engine.evaluate_now(at(600))

    assert await env.fleet.incidents() == []
    assert await env.fleet.outages() == []
