"""Simulated devices for ``varta demo`` and tests: cameras, kiosks and sirens with outages and events.

Each device publishes its state at start; now and then one fails (a camera becomes ``offline``/``unreachable``, a
kiosk or siren ``degraded``) and recovers later. Events (``camera.motion``, ``kiosk.touch``, …) arrive at a mean
rate of ``events_per_s``; every event's ``data`` carries ``sim_index`` (0, 1, 2, … over the simulator's life), so a
test can check that nothing was lost and that order was kept.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import structlog

from edge.config import SimulatorSettings
from varta.contract import DeviceKind, DeviceStatus, Severity

log = structlog.get_logger(__name__)

Attrs = dict[str, str | int | float | bool | None]


class DeviceSink(Protocol):
    """Where simulated devices report to (the :class:`~edge.agent.EdgeAgent`)."""

    async def emit_event(
        self,
        kind: str,
        severity: Severity = Severity.INFO,
        device_id: str | None = None,
        message: str = "",
        data: dict[str, Any] | None = None,
    ) -> int: ...

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
    ) -> int: ...


@dataclass(slots=True)
class SimulatedDevice:
    """One simulated device and its current state."""

    device_id: str
    kind: DeviceKind
    name: str
    attrs: Attrs
    status: DeviceStatus = DeviceStatus.ONLINE
    reason: str | None = None
    recover_at: float | None = None


@dataclass(frozen=True, slots=True)
class _EventKind:
    kind: str
    severity: Severity
    weight: float
    message: str
    data: Callable[[random.Random], dict[str, Any]] = field(default=lambda rng: {})


_EVENTS: dict[DeviceKind, list[_EventKind]] = {
    DeviceKind.CAMERA: [
        _EventKind(
            "camera.motion",
            Severity.INFO,
            20,
            "motion detected",
            lambda rng: {"zone": f"zone-{rng.randint(1, 4)}", "score": round(rng.uniform(0.3, 1.0), 2)},
        ),
        _EventKind("camera.tamper", Severity.WARNING, 1, "camera view obstructed or moved"),
    ],
    DeviceKind.KIOSK: [
        _EventKind(
            "kiosk.touch",
            Severity.INFO,
            10,
            "screen touched",
            lambda rng: {"screen": rng.choice(["home", "map", "shelters", "contacts"])},
        ),
        _EventKind("kiosk.call", Severity.CRITICAL, 0.5, "emergency call button pressed"),
    ],
    DeviceKind.SIREN: [
        _EventKind("siren.self_test", Severity.INFO, 1, "self-test passed", lambda rng: {"result": "pass"}),
    ],
}

#: (status, reason) of a failing device of each kind.
_FAILURES: dict[DeviceKind, tuple[DeviceStatus, str, str]] = {
    DeviceKind.CAMERA: (DeviceStatus.OFFLINE, "unreachable", "no answer to ONVIF requests"),
    DeviceKind.KIOSK: (DeviceStatus.DEGRADED, "browser_unresponsive", "kiosk browser stopped responding"),
    DeviceKind.SIREN: (DeviceStatus.DEGRADED, "supply_lost", "mains phase-loss relay tripped"),
}


def build_devices(settings: SimulatorSettings) -> list[SimulatedDevice]:
    """The simulated devices described by *settings*."""
    devices: list[SimulatedDevice] = []
    for i in range(1, settings.cameras + 1):
        devices.append(
            SimulatedDevice(
                f"sim-cam-{i}",
                DeviceKind.CAMERA,
                f"Simulated camera {i}",
                {"model": "SimCam 2000", "address": f"192.0.2.{10 + i}", "ptz": i % 2 == 1},
            )
        )
    for i in range(1, settings.kiosks + 1):
        devices.append(SimulatedDevice(f"sim-kiosk-{i}", DeviceKind.KIOSK, f"Simulated kiosk {i}", {"screen": "on"}))
    for i in range(1, settings.sirens + 1):
        devices.append(
            SimulatedDevice(f"sim-siren-{i}", DeviceKind.SIREN, f"Simulated siren {i}", {"zone": f"zone-{i}"})
        )
    return devices


class Simulator:
    """Drives the simulated devices against a :class:`DeviceSink`. :meth:`run` may be restarted after a failure."""

    def __init__(
        self,
        settings: SimulatorSettings,
        sink: DeviceSink,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.settings = settings
        self.sink = sink
        self.clock = clock
        self.rng = random.Random(settings.seed)  # simulation, not cryptography
        self.devices = build_devices(settings)
        self.sim_index = 0
        """Index the next event will carry (= number of events emitted so far)."""

    async def run(self) -> None:
        """Publish every device's state, then emit events and outages until cancelled."""
        log.info("simulator.started", devices=len(self.devices), events_per_s=self.settings.events_per_s)
        for device in self.devices:
            await self._publish_state(device)
        now = self.clock()
        next_event = now + self._event_gap()
        next_failure = now + self._failure_gap()
        while True:
            now = self.clock()
            wake = min(next_event, next_failure, *(d.recover_at for d in self.devices if d.recover_at is not None))
            if wake > now:
                await asyncio.sleep(wake - now)
                now = self.clock()
            for device in self.devices:
                if device.recover_at is not None and device.recover_at <= now:
                    await self._recover(device)
            if next_failure <= now:
                await self._fail_one(now)
                next_failure = now + self._failure_gap()
            if next_event <= now:
                await self._emit_one()
                # Catch up after a slow write, but never build a backlog of more than a second.
                next_event = max(next_event, now - 1.0) + self._event_gap()

    def _event_gap(self) -> float:
        rate = self.settings.events_per_s
        return self.rng.expovariate(rate) if rate > 0 else float("inf")

    def _failure_gap(self) -> float:
        every = self.settings.status_change_interval_s
        return self.rng.expovariate(1.0 / every) if every > 0 else float("inf")

    async def _publish_state(self, device: SimulatedDevice) -> None:
        await self.sink.set_device_state(
            device.device_id,
            device.kind,
            device.status,
            device.reason,
            "" if device.reason is None else _FAILURES[device.kind][2],
            dict(device.attrs),
            name=device.name,
        )

    async def _fail_one(self, now: float) -> None:
        healthy = [d for d in self.devices if d.status is DeviceStatus.ONLINE]
        if not healthy:
            return
        device = self.rng.choice(healthy)
        device.status, device.reason, _ = _FAILURES[device.kind]
        device.recover_at = now + self.rng.expovariate(1.0 / self.settings.outage_s)
        log.info("simulator.device_failed", device_id=device.device_id, status=device.status.value)
        await self._publish_state(device)

    async def _recover(self, device: SimulatedDevice) -> None:
        device.status, device.reason, device.recover_at = DeviceStatus.ONLINE, None, None
        log.info("simulator.device_recovered", device_id=device.device_id)
        await self._publish_state(device)

    async def _emit_one(self) -> None:
        """Emit one event from a random online device (or a node-level ``sim.tick`` when there is none)."""
        online = [d for d in self.devices if d.status is not DeviceStatus.OFFLINE]
        index = self.sim_index
        if online:
            device = self.rng.choice(online)
            options = _EVENTS[device.kind]
            spec = self.rng.choices(options, weights=[o.weight for o in options])[0]
            data = {**spec.data(self.rng), "sim_index": index}
            await self.sink.emit_event(spec.kind, spec.severity, device.device_id, spec.message, data)
        else:
            await self.sink.emit_event("sim.tick", Severity.INFO, None, "simulator tick", {"sim_index": index})
        self.sim_index = index + 1
