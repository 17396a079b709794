"""Simulated devices for ``varta demo`` and tests: cameras, kiosks and sirens with outages and events.

Each device publishes its state at start; now and then one fails (a camera becomes ``offline``/``unreachable``, a
kiosk or siren ``degraded``) and recovers later. Events (``camera.motion``, ``kiosk.touch``, …) arrive at a mean
rate of ``events_per_s``; every event's ``data`` carries ``sim_index`` (0, 1, 2, … over the simulator's life), so a
test can check that nothing was lost and that order was kept.

Given a ``publish`` function (the agent's :meth:`~edge.agent.EdgeAgent.publish_message`), simulated cameras also
describe themselves (retained ``CameraInfo``), send a thumbnail (a test card with the camera's name and the time)
every ``snapshot_interval_s`` while online, and a start-up ``DiscoveryReport`` lists ``discovered`` unadopted
cameras, so the dashboard's camera wall and discovery inbox have something to show.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import structlog

from edge.config import SimulatorSettings
from edge.devices import Attrs, DeviceSink
from varta.contract import (
    CameraInfo,
    CameraProfile,
    Channel,
    DeviceKind,
    DeviceStatus,
    DiscoveredDevice,
    DiscoveryReport,
    Envelope,
    PtzPreset,
    Severity,
    SirenState,
    utcnow,
)

log = structlog.get_logger(__name__)

FIRST_SNAPSHOT_DELAY_S = 5.0
Publish = Callable[..., Awaitable[int]]
"""``publish(channel, message, device=...)``: puts a contract message on one of the node's channels."""


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
    DeviceKind.SIREN: (DeviceStatus.OFFLINE, SirenState.UNPOWERED.value, "no supply: the phase-loss relay tripped"),
}
#: The reason a healthy device of a kind reports (a siren's state is its reason: ``SirenState``).
_HEALTHY_REASON: dict[DeviceKind, str] = {DeviceKind.SIREN: SirenState.IDLE.value}


def build_devices(settings: SimulatorSettings) -> list[SimulatedDevice]:
    """The simulated devices described by *settings*."""
    devices: list[SimulatedDevice] = []
    for i in range(1, settings.cameras + 1):
        devices.append(
            SimulatedDevice(
                f"sim-cam-{i}",
                DeviceKind.CAMERA,
                f"Simulated camera {i}",
                {
                    "model": "SimCam 2000",
                    "address": f"192.0.2.{10 + i}",
                    "ptz": i % 2 == 1,
                    "width": 1920,
                    "height": 1080,
                    "fps": 25.0,
                },
            )
        )
    for i in range(1, settings.kiosks + 1):
        devices.append(SimulatedDevice(f"sim-kiosk-{i}", DeviceKind.KIOSK, f"Simulated kiosk {i}", {"screen": "on"}))
    for i in range(1, settings.sirens + 1):
        devices.append(
            SimulatedDevice(
                f"sim-siren-{i}",
                DeviceKind.SIREN,
                f"Simulated siren {i}",
                {"zone": f"zone-{i}"},
                reason=SirenState.IDLE.value,
            )
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
        publish: Publish | None = None,
    ) -> None:
        self.settings = settings
        self.sink = sink
        self.clock = clock
        self.publish = publish
        self.snapshots_sent = 0
        self.rng = random.Random(settings.seed)  # simulation, not cryptography
        self.devices = build_devices(settings)
        self.sim_index = 0
        """Index the next event will carry (= number of events emitted so far)."""

    async def run(self) -> None:
        """Publish every device's state, then emit events and outages until cancelled."""
        log.info("simulator.started", devices=len(self.devices), events_per_s=self.settings.events_per_s)
        for device in self.devices:
            await self._publish_state(device)
        media = asyncio.create_task(self._camera_media(), name="simulator-cameras") if self.publish else None
        try:
            await self._loop()
        finally:
            if media is not None:
                media.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await media

    async def _loop(self) -> None:
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
            "" if device.status is DeviceStatus.ONLINE else _FAILURES[device.kind][2],
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
        device.status, device.reason, device.recover_at = DeviceStatus.ONLINE, _HEALTHY_REASON.get(device.kind), None
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

    # ---------------------------------------------------------------------------------------------- camera media

    def _envelope(self) -> dict[str, Any]:
        node_id = getattr(self.sink, "node_id", "sim")
        boot_id = getattr(self.sink, "boot_id", "sim")
        return {"node_id": node_id, "boot_id": boot_id, "seq": 0, "ts": utcnow()}

    async def _send(self, channel: Channel, message: Envelope, device: str | None = None) -> None:
        assert self.publish is not None
        await self.publish(channel, message, device=device)

    async def _camera_media(self) -> None:
        """Describe the cameras, report the discovered ones, then send thumbnails while cameras are online."""
        cameras = [d for d in self.devices if d.kind is DeviceKind.CAMERA]
        for number, device in enumerate(cameras, start=1):
            await self._send(Channel.INFO, _camera_info(self._envelope(), device, number), device.device_id)
        found = [_discovered(i) for i in range(1, self.settings.discovered + 1)]
        await self._send(Channel.DISCOVERY, DiscoveryReport(**self._envelope(), trigger="startup", devices=found))
        interval = self.settings.snapshot_interval_s
        if interval <= 0 or not cameras:
            return
        try:
            from edge.cameras.snapshots import snapshot_message, test_card
        except ImportError:  # pragma: no cover - the lean install has no cameras support
            log.info("simulator.no_snapshots", detail="edge.cameras unavailable")
            return
        # The first pictures wait a moment: drawing them loads OpenCV, which must not slow the node's start-up.
        await asyncio.sleep(min(interval, FIRST_SNAPSHOT_DELAY_S))
        while True:
            for device in cameras:
                if device.status is DeviceStatus.OFFLINE:
                    continue
                taken = utcnow()
                try:
                    jpeg = await asyncio.to_thread(
                        functools.partial(
                            test_card,
                            device.name,
                            f"{taken:%Y-%m-%d %H:%M:%S} UTC  {device.attrs.get('address', '')}",
                            seed=f"{self._envelope()['node_id']}/{device.device_id}",
                        )
                    )
                except ImportError:  # no OpenCV: the demo runs without pictures
                    log.info("simulator.no_snapshots", detail="OpenCV is not installed")
                    return
                message = snapshot_message(
                    self._envelope(),
                    device.device_id,
                    jpeg,
                    640,
                    360,
                    taken_at=taken,
                    source="onvif",
                    purpose="periodic",
                )
                await self._send(Channel.SNAPSHOT, message, device.device_id)
                self.snapshots_sent += 1
            await asyncio.sleep(interval)


def _camera_info(envelope: dict[str, Any], device: SimulatedDevice, number: int) -> CameraInfo:
    address = str(device.attrs.get("address", "192.0.2.1"))
    ptz = bool(device.attrs.get("ptz"))
    return CameraInfo(
        **envelope,
        device_id=device.device_id,
        name=device.name,
        onvif_address=f"http://{address}/onvif/device_service",
        manufacturer="Varta Simulations",
        model=str(device.attrs.get("model", "SimCam")),
        firmware="1.0.0",
        serial=f"SIM-{number:05d}",
        hardware_id="SC2000",
        profiles=[
            CameraProfile(token="main", name="Main", encoding="H264", width=1920, height=1080, fps=25, role="main"),
            CameraProfile(token="sub", name="Sub", encoding="H264", width=640, height=360, fps=10, role="sub"),
        ],
        main_profile="main",
        sub_profile="sub",
        stream_uri=f"rtsp://{address}:554/main",
        snapshot_uri=f"http://{address}/onvif/snapshot",
        ptz=ptz,
        presets=[PtzPreset(token="1", name="Entrance"), PtzPreset(token="2", name="Crossing")] if ptz else [],
        events=True,
        clock_skew_s=0.0,
    )


def _discovered(index: int) -> DiscoveredDevice:
    address = f"192.0.2.{100 + index}"
    return DiscoveredDevice(
        endpoint=f"urn:uuid:00000000-0000-4000-8000-{index:012d}",
        address=address,
        xaddrs=[f"http://{address}/onvif/device_service"],
        scopes=[
            "onvif://www.onvif.org/Profile/Streaming",
            f"onvif://www.onvif.org/name/SimCam%20{index}",
            "onvif://www.onvif.org/hardware/SC2000",
        ],
        types=["dn:NetworkVideoTransmitter"],
        name=f"SimCam {index}",
        hardware="SC2000",
    )
