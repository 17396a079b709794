"""Sirens end to end: their contacts (Modbus TCP I/O module, GPIO) → edge agent → Mosquitto → central, and the
official alert feed compared with what the sirens do.

Real parts: pymodbus's own Modbus TCP server as the I/O module, gpiozero's mock pins (the only simulated thing is
the hardware), an edge agent (in this process, so the test can drive the mock pins), Mosquitto, central as its own
process, and a local HTTP server answering like alerts.in.ua.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest
from gpiozero import Device
from gpiozero.pins.mock import MockFactory

from edge.agent import EdgeAgent
from edge.config import EdgeConfig
from tests.support.alert_feed import AlertFeedServer, api_alert
from tests.support.broker import Broker
from tests.support.modbus_server import ModbusTestServer
from tests.support.stack import CentralProcess
from varta.contract import SIREN_CHANGED_EVENT

pytestmark = pytest.mark.slow

SITE, NODE = "village-south", "node-vs"
OBLAST = "14"
MODBUS_SIREN, GPIO_SIREN = "siren-school", "siren-square"
SUPPLY_PIN, CONTACTOR_PIN, FAULT_PIN = 5, 6, 13
SIREN_FAILURE_DELAY_S = 3.0
T = TypeVar("T")


async def until(check: Callable[[], Awaitable[T]], timeout: float, what: str) -> T:
    """Poll the async *check* until it returns something truthy (without blocking the agent's loop)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = await check()
        if value:
            return value
        await asyncio.sleep(0.1)
    raise AssertionError(f"{what} not met within {timeout} s")


@pytest.fixture
def pins() -> AsyncIterator[MockFactory]:
    factory = MockFactory()
    previous, Device.pin_factory = Device.pin_factory, factory
    try:
        yield factory  # type: ignore[misc]
    finally:
        factory.close()
        Device.pin_factory = previous


async def _siren_changes(api: httpx.AsyncClient, device_id: str) -> list[str]:
    events = (await api.get("/api/v1/events", params={"limit": 1000})).json()
    changes = [e for e in reversed(events) if e["kind"] == SIREN_CHANGED_EVENT and e["device_id"] == device_id]
    return [e["data"]["state"] for e in changes]


async def _incidents(api: httpx.AsyncClient, kind: str) -> list[dict[str, Any]]:
    response = await api.get("/api/v1/incidents", params={"state": "all", "type": kind})
    assert response.status_code == 200, response.text
    return list(response.json())


async def test_every_siren_change_reaches_central_and_alerts_are_compared_with_what_sirens_do(
    broker: Broker, tmp_path: Path, pins: MockFactory
) -> None:
    feed = AlertFeedServer(token="feed-token").start()
    modbus = await ModbusTestServer().start()
    await modbus.set_bits("discrete_inputs", 0, True, False, False)  # supply present, not sounding, no fault
    central = CentralProcess(
        tmp_path / "central",
        broker,
        extra={
            "sites": {SITE: {"name": "Village South", "regions": [OBLAST, "1401"]}},
            "alerts": {"sources": [{"name": "ua", "kind": "alerts_in_ua", "url": feed.url, "token": "feed-token"}]},
            "incidents": {
                "siren_failure_delay_s": SIREN_FAILURE_DELAY_S,
                "unexpected_activation_delay_s": 1.0,
                "evaluate_interval_s": 0.2,
            },
        },
    )
    await asyncio.to_thread(central.start)
    # The GPIO siren's contacts, with internal pull-ups: a closed contact pulls its pin low.
    supply, contactor, fault = (pins.pin(n) for n in (SUPPLY_PIN, CONTACTOR_PIN, FAULT_PIN))
    config = EdgeConfig(
        node_id=NODE,
        site=SITE,
        mqtt={"host": "127.0.0.1", "port": broker.port, "reconnect_max_s": 1.0},
        outbox={"path": tmp_path / "edge" / "outbox.db"},
        commands={"central_public_keys": [central.public_key()]},
        sirens={
            "enabled": True,
            "sirens": [
                {
                    "device_id": MODBUS_SIREN,
                    "name": "School siren",
                    "inputs": {
                        "kind": "modbus",
                        "host": "127.0.0.1",
                        "port": modbus.port,
                        "supply": 0,
                        "contactor": 1,
                        "fault": 2,
                    },
                    "debounce_s": 0.2,
                },
                {
                    "device_id": GPIO_SIREN,
                    "name": "Square siren",
                    "inputs": {
                        "kind": "gpio",
                        "supply_pin": SUPPLY_PIN,
                        "contactor_pin": CONTACTOR_PIN,
                        "fault_pin": FAULT_PIN,
                    },
                    "debounce_s": 0.2,
                },
            ],
        },
    )
    agent = EdgeAgent(config)
    stop = asyncio.Event()
    running = asyncio.create_task(agent.run(stop))
    try:
        async with httpx.AsyncClient(
            base_url=central.url, headers={"Authorization": f"Bearer {central.token}"}, timeout=10
        ) as api:
            await agent.wait_ready(20)
            # gpiozero sets a pulled-up pin high when it opens it: the supply contact closes once it is open.
            await until(lambda: _changes_seen(api, GPIO_SIREN), 30, "the GPIO siren's first state at central")
            supply.drive_low()
            for siren in (MODBUS_SIREN, GPIO_SIREN):
                await until(lambda s=siren: _ends_with(api, s, ["idle"]), 30, f"{siren} idle at central")

            # ---- every state change reaches central, in order; contact bounce adds nothing
            async def modbus_contacts(supply_on: bool, sounding: bool, faulty: bool) -> None:
                await modbus.set_bits("discrete_inputs", 0, supply_on, sounding, faulty)

            async def gpio_contacts(supply_on: bool, sounding: bool, faulty: bool) -> None:
                for pin, closed in ((supply, supply_on), (contactor, sounding), (fault, faulty)):
                    if closed:
                        pin.drive_low()
                    else:
                        pin.drive_high()

            async def bounce_contactor() -> None:  # a relay contact chattering for 60 ms, then settling closed
                for i in range(12):
                    contactor.drive_low() if i % 2 == 0 else contactor.drive_high()
                    await asyncio.sleep(0.005)
                contactor.drive_low()

            steps = [
                ((True, True, False), "sounding"),
                ((True, False, False), "idle"),
                ((True, False, True), "fault"),
                ((True, False, False), "idle"),
                ((False, False, False), "unpowered"),
                ((True, False, False), "idle"),
            ]
            expected = ["idle"]
            for (supply_on, sounding, faulty), state in steps:
                expected.append(state)
                await modbus_contacts(supply_on, sounding, faulty)
                if state == "sounding":
                    await bounce_contactor()
                else:
                    await gpio_contacts(supply_on, sounding, faulty)
                for siren in (MODBUS_SIREN, GPIO_SIREN):
                    await until(lambda s=siren, e=list(expected): _ends_with(api, s, e), 15, f"{siren} {state}")
            await asyncio.sleep(1.0)  # anything extra (a bounce turned into events) would have arrived by now
            for siren in (MODBUS_SIREN, GPIO_SIREN):
                changes = await _siren_changes(api, siren)
                settled = changes.index("idle")  # before it: the start-up (unknown; the GPIO supply not yet closed)
                assert changes[settled:] == expected, (siren, changes)
                assert set(changes[:settled]) <= {"unknown", "unpowered"}, (siren, changes)
            devices = (await api.get(f"/api/v1/nodes/{NODE}")).json()["devices"]
            states = {d["device_id"]: (d["kind"], d["status"], d["reason"]) for d in devices}
            assert states[MODBUS_SIREN] == states[GPIO_SIREN] == ("siren", "online", "idle")
            assert modbus.writes() == [], "Varta never writes to the I/O module"

            # ---- an official alert starts; the school siren sounds, the square siren stays silent
            feed.set_active([api_alert(101, OBLAST, title="Київська область", location_type="oblast", oblast_uid=14)])
            await modbus_contacts(True, True, False)
            await until(lambda: _active_alert(api), 30, "the official alert at central")
            [failure] = await until(lambda: _incidents(api, "siren_failure"), 30, "siren_failure for the silent siren")
            assert (failure["device_id"], failure["open"], failure["severity"]) == (GPIO_SIREN, True, "critical")
            assert not [i for i in await _incidents(api, "siren_failure") if i["device_id"] == MODBUS_SIREN]
            assert await _incidents(api, "unexpected_activation") == []
            # the silent siren sounds at last: its failure closes, saying so
            await gpio_contacts(True, True, False)
            closed = await until(lambda: _closed(api, failure["id"]), 15, "siren_failure closed once the siren sounded")
            assert closed["end_reason"]
            await modbus_contacts(True, False, False)
            await gpio_contacts(True, False, False)

            # ---- the alert ends; then the square siren sounds with no alert: unexpected activation
            feed.set_active([])
            await until(lambda: _no_active_alert(api), 30, "the alert ended at central")
            await gpio_contacts(True, True, False)
            [activation] = await until(lambda: _incidents(api, "unexpected_activation"), 20, "unexpected_activation")
            assert (activation["device_id"], activation["open"]) == (GPIO_SIREN, True)
            await gpio_contacts(True, False, False)
            await until(lambda: _closed(api, activation["id"]), 15, "unexpected_activation closed when it stopped")
            assert len(await _incidents(api, "siren_failure")) == 1
            assert len(await _incidents(api, "unexpected_activation")) == 1
    finally:
        stop.set()
        await running
        await asyncio.to_thread(central.stop)
        await modbus.stop()
        feed.stop()


async def _ends_with(api: httpx.AsyncClient, siren: str, expected: list[str]) -> bool:
    changes = await _siren_changes(api, siren)
    return changes[-len(expected) :] == expected


async def _changes_seen(api: httpx.AsyncClient, siren: str) -> bool:
    return bool(await _siren_changes(api, siren))


async def _active_alert(api: httpx.AsyncClient) -> bool:
    sites = (await api.get("/api/v1/alerts/active")).json()
    return any(site["site"] == SITE and site["alerts"] for site in sites)


async def _no_active_alert(api: httpx.AsyncClient) -> bool:
    return not await _active_alert(api)


async def _closed(api: httpx.AsyncClient, incident_id: int) -> dict[str, Any] | None:
    incident = (await api.get(f"/api/v1/incidents/{incident_id}")).json()
    return None if incident["open"] else dict(incident)
