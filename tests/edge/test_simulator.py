"""Simulated devices: initial states, outages and recoveries, and an unbroken stream of indexed events."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from edge.config import SimulatorSettings
from edge.devices import Attrs
from edge.simulator import Simulator
from tests.edge.support import eventually
from varta.contract import DeviceKind, DeviceStatus, Severity


class Sink:
    """Records what the simulator reports, in order."""

    def __init__(self) -> None:
        self.log: list[tuple[str, dict[str, Any]]] = []

    async def emit_event(
        self,
        kind: str,
        severity: Severity = Severity.INFO,
        device_id: str | None = None,
        message: str = "",
        data: dict[str, Any] | None = None,
    ) -> int:
        self.log.append(("event", {"kind": kind, "severity": severity, "device_id": device_id, "data": data or {}}))
        return len(self.log)

    async def set_device_state(
        self,
        device_id: str,
        kind: DeviceKind,
        status: DeviceStatus,
        reason: str | None = None,
        detail: str = "",
        attrs: Attrs | None = None,
        *,
        name: str = "",
    ) -> int:
        self.log.append(("state", {"device_id": device_id, "kind": kind, "status": status, "reason": reason}))
        return len(self.log)

    def events(self) -> list[dict[str, Any]]:
        return [e for t, e in self.log if t == "event"]

    def states(self) -> list[dict[str, Any]]:
        return [s for t, s in self.log if t == "state"]


async def run_for(sim: Simulator, done: Any, timeout: float = 10.0) -> None:
    task = asyncio.create_task(sim.run())
    try:
        await eventually(done, timeout)
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def test_every_device_reports_its_state_first() -> None:
    sink = Sink()
    sim = Simulator(SimulatorSettings(enabled=True, cameras=2, kiosks=1, sirens=1, events_per_s=0), sink)
    await run_for(sim, lambda: len(sink.log) >= 4)
    assert [(s["device_id"], s["kind"], s["status"]) for s in sink.states()] == [
        ("sim-cam-1", DeviceKind.CAMERA, DeviceStatus.ONLINE),
        ("sim-cam-2", DeviceKind.CAMERA, DeviceStatus.ONLINE),
        ("sim-kiosk-1", DeviceKind.KIOSK, DeviceStatus.ONLINE),
        ("sim-siren-1", DeviceKind.SIREN, DeviceStatus.ONLINE),
    ]
    assert sink.events() == []  # events_per_s 0: none


async def test_events_carry_consecutive_sim_indexes_from_known_kinds() -> None:
    sink = Sink()
    sim = Simulator(SimulatorSettings(enabled=True, seed=1, events_per_s=500, status_change_interval_s=0), sink)
    await run_for(sim, lambda: len(sink.events()) >= 300)
    events = sink.events()
    assert [e["data"]["sim_index"] for e in events] == list(range(len(events)))
    assert sim.sim_index == len(events)
    assert {e["kind"] for e in events} <= {
        "camera.motion",
        "camera.tamper",
        "kiosk.touch",
        "kiosk.call",
        "siren.self_test",
    }
    assert {"camera.motion", "kiosk.touch"} <= {e["kind"] for e in events}


async def test_a_camera_goes_offline_unreachable_and_comes_back() -> None:
    sink = Sink()
    settings = SimulatorSettings(
        enabled=True,
        seed=2,
        cameras=1,
        kiosks=0,
        sirens=0,
        events_per_s=200,
        status_change_interval_s=0.05,
        outage_s=0.1,
    )
    sim = Simulator(settings, sink)

    def recovered() -> bool:
        statuses = [(s["status"], s["reason"]) for s in sink.states()]
        return (DeviceStatus.OFFLINE, "unreachable") in statuses and statuses[-1] == (DeviceStatus.ONLINE, None)

    await run_for(sim, lambda: len(sink.states()) >= 3 and recovered())
    # No events from the camera while it was offline: outside outages its events flow, inside only node ticks.
    offline = False
    for kind, item in sink.log:
        if kind == "state":
            offline = item["status"] is DeviceStatus.OFFLINE
        elif offline:
            assert item["device_id"] is None and item["kind"] == "sim.tick"
    indexes = [e["data"]["sim_index"] for e in sink.events()]
    assert indexes == list(range(len(indexes)))
