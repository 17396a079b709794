"""From MQTT to incident: real Mosquitto, the real ingest, and the engine's loop woken by ingest's bus events.

A node reports its UPS on battery, then dies (its will arrives): exactly ONE power outage opens, covering the node
and its camera, without waiting for the engine's timer (60 s here).
"""

from __future__ import annotations

import asyncio
import contextlib

from central.config import IncidentSettings
from central.incidents.engine import IncidentEngine
from tests.central.conftest import IngestEnv
from tests.central.incidents.support import Fleet, make_config
from tests.central.incidents.test_engine import eventually
from tests.central.test_cameras_support import CameraNode
from tests.support import messages
from varta.contract import Channel, DeviceKind, DeviceState, DeviceStatus, encode, topic


async def test_ups_on_battery_then_the_will_opens_one_power_outage_via_the_bus(ingest_env: IngestEnv) -> None:
    config = make_config(ingest_env.db.url, incidents=IncidentSettings(evaluate_interval_s=60))
    engine = IncidentEngine(config, ingest_env.db, ingest_env.bus)
    fleet = Fleet(ingest_env.db)
    node = CameraNode(site="vyshneve", node_id="school-1")
    pub = ingest_env.publisher
    status = topic("vyshneve", "school-1", Channel.STATUS)

    async def state(device: str, kind: DeviceKind, status_: DeviceStatus, reason: str | None) -> None:
        message = DeviceState(**node.env(), device_id=device, kind=kind, status=status_, reason=reason)
        await pub.publish(topic("vyshneve", "school-1", Channel.STATE, device), encode(message), retain=True)

    task = asyncio.create_task(engine.run())
    try:
        await eventually(lambda: _true(engine.evaluations >= 1), what="the engine's first evaluation")
        await pub.publish(topic("vyshneve", "school-1", Channel.BIRTH), encode(node.birth()), retain=True)
        await pub.publish(status, encode(messages.availability("school-1", node.boot_id, "online")), retain=True)
        await state("ups", DeviceKind.UPS, DeviceStatus.ONLINE, "on_line")
        await state("cam-1", DeviceKind.CAMERA, DeviceStatus.ONLINE, None)
        await state("ups", DeviceKind.UPS, DeviceStatus.DEGRADED, "on_battery")

        async def power_outage_open() -> bool:
            return [i.key for i in await fleet.incidents("open")] == ["power_outage:vyshneve"]

        await eventually(power_outage_open, timeout=10, what="the power outage opened from the UPS state")
        await pub.publish(
            status, encode(messages.availability("school-1", node.boot_id, "offline", "last_will")), retain=True
        )

        async def camera_absorbed() -> bool:
            incidents = await fleet.incidents()
            return len(incidents) == 1 and "school-1/cam-1" in incidents[0].devices

        await eventually(camera_absorbed, timeout=10, what="the camera absorbed after the will")
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    (incident,) = await fleet.incidents()
    assert incident.devices == ["school-1/", "school-1/cam-1"]
    assert {(o.device_id, o.cause) for o in await fleet.outages()} == {("", "power"), ("cam-1", "power")}


async def _true(value: bool) -> bool:
    return value
