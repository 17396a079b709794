"""The node's UPS through NUT: its retained state, mains lost / restored and low-battery events, going down.

:class:`UpsMonitor` (a supervised agent loop) reads the UPS every ``power.ups.poll_interval_s`` (``LIST VAR``) and

* keeps ``state/<device_id>`` (kind ``ups``) current: ``online``/``on_line`` on mains, ``degraded``/``on_battery``
  or ``degraded``/``low_battery`` on battery, ``unknown``/``unreachable`` once NUT has failed for
  ``unreachable_after_s``; attrs ``ups_status``, ``battery_charge``, ``battery_runtime_s``, ``input_voltage``,
  ``on_battery``, ``since`` (re-published at once on a status change, figures at most every ``state_interval_s``);
* emits ``power.mains_lost`` (OL → OB), ``power.low_battery`` (LB appears, or the charge falls to
  ``low_battery_charge`` on battery) and ``power.mains_restored`` (OB → OL, ``duration_s`` = restored_at −
  lost_at) through the durable outbox, and asks its host to go down (:meth:`PowerHost.going_down`) on low battery
  and to carry on (:meth:`PowerHost.power_back`) when mains returns first;
* persists the outage (``lost_at``, ``low_battery_at``) in a small state file, so a node that reboots during a
  blackout reports the whole outage once, with its true start, when mains returns.

A UPS that stays unreachable keeps the outage open: mains is "restored" only when the UPS says OL again. Every NUT
failure and every bad figure is counted by reason (:meth:`UpsMonitor.stats`) and logged at most once a minute per
reason; nothing stops the loop.
"""

from __future__ import annotations

import asyncio
import collections
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Final, Literal, Protocol

import structlog
from pydantic import BaseModel, ConfigDict

from edge.devices import Attrs, DeviceSink
from edge.power.config import UpsSettings
from edge.power.nut import NutClient, NutError, UpsVariables, parse_reading, parse_status
from edge.statefile import StateFile
from varta.contract import (
    LOW_BATTERY_EVENT,
    MAINS_LOST_EVENT,
    MAINS_RESTORED_EVENT,
    DeviceKind,
    DeviceStatus,
    LowBattery,
    MainsLost,
    MainsRestored,
    PowerReason,
    Severity,
    UpsReading,
    utcnow,
)
from varta.throttle import LogThrottle

log = structlog.get_logger(__name__)

LOG_EVERY_S: Final = 60.0  # one log line per failure reason at most this often
INTERNAL: Final = "internal"  # counted when something other than NUT fails (outbox, disk)

REASON_STATUS: Final[dict[PowerReason, DeviceStatus]] = {
    PowerReason.ON_LINE: DeviceStatus.ONLINE,
    PowerReason.ON_BATTERY: DeviceStatus.DEGRADED,
    PowerReason.LOW_BATTERY: DeviceStatus.DEGRADED,
    PowerReason.UNREACHABLE: DeviceStatus.UNKNOWN,
}


class PowerHost(DeviceSink, Protocol):
    """What the UPS monitor needs from the agent: events, device states, and going down / carrying on."""

    async def going_down(self, reading: UpsReading, device_id: str) -> None:
        """The battery is about to run out: flush, say ``node.going_down`` and ``power_loss``, maybe shut down."""
        ...

    async def power_back(self, reading: UpsReading, device_id: str) -> None:
        """Mains came back after :meth:`going_down` began: say ``online`` again and carry on."""
        ...


class PowerStateFile(BaseModel):
    """What survives a reboot: the open outage of one UPS."""

    model_config = ConfigDict(extra="forbid")

    version: Literal[1] = 1
    device_id: str
    lost_at: datetime
    low_battery_at: datetime | None = None


@dataclass(slots=True)
class _Outage:
    lost_at: datetime
    lost_sent: bool = False
    low_battery_at: datetime | None = None
    low_sent: bool = False
    restored_at: datetime | None = None
    persisted: bool = False
    from_file: bool = False


class UpsMonitor:
    """Watches one UPS through NUT for its host (the edge agent); run :meth:`run` as a supervised loop."""

    def __init__(
        self,
        settings: UpsSettings,
        host: PowerHost,
        *,
        state_path: Path,
        client: UpsVariables | None = None,
    ) -> None:
        self.settings = settings
        self.host = host
        self.device_id = settings.device_id
        self.state_file = StateFile(state_path, PowerStateFile)
        self.client: UpsVariables | None = client
        self.errors: collections.Counter[str] = collections.Counter()
        """Failures by reason (:class:`~edge.power.nut.NutErrorReason` values and ``internal``)."""
        self.polls = 0
        self.readings = 0
        self.reading: UpsReading | None = None
        """The last good reading."""
        self.reason: PowerReason | None = None
        """The UPS's current state as published (None until the first reading or unreachable)."""
        self._outage: _Outage | None = None
        self._loaded = False
        self._failing_since: float | None = None
        self._last_error: NutError | None = None
        self._since_reason: PowerReason | None = None
        self._reason_since = utcnow()
        self._published: tuple[DeviceStatus, PowerReason, Attrs] | None = None
        self._published_at = -1e18
        self._going_down: asyncio.Task[None] | None = None
        self._background: set[asyncio.Task[None]] = set()
        self._logs = LogThrottle(LOG_EVERY_S)

    # ---------------------------------------------------------------------------------------------- public API

    def stats(self) -> dict[str, Any]:
        """Counters for health and tests: polls, good readings, failures by reason, the current state."""
        return {
            "polls": self.polls,
            "readings": self.readings,
            "errors": dict(self.errors),
            "reason": self.reason.value if self.reason is not None else None,
            "on_battery": self._outage is not None,
            "lost_at": self._outage.lost_at.isoformat() if self._outage is not None else None,
            "going_down": self._going_down is not None and not self._going_down.done(),
            "last_error": str(self._last_error) if self._last_error is not None else None,
        }

    @property
    def lost_at(self) -> datetime | None:
        """When mains was lost, while an outage is open (also one that began before a restart)."""
        return self._outage.lost_at if self._outage is not None else None

    async def run(self) -> None:
        """Poll the UPS until cancelled; every failure is counted and logged, none ends the loop."""
        if self.client is None:
            s = self.settings
            password = await asyncio.to_thread(s.resolved_password)
            self.client = NutClient(s.host, s.port, timeout_s=s.timeout_s, username=s.username, password=password)
        try:
            next_at = time.monotonic()
            while True:
                await self.poll_once()
                next_at = max(next_at + self.settings.poll_interval_s, time.monotonic())
                await asyncio.sleep(next_at - time.monotonic())
        finally:
            await self.client.close()
            for task in list(self._background):
                task.cancel()
            await asyncio.gather(*self._background, return_exceptions=True)

    async def poll_once(self) -> None:
        """Read the UPS once and act on it (never raises, except cancellation)."""
        self.polls += 1
        try:
            if not self._loaded:
                await self._load()
            assert self.client is not None
            try:
                values = await self.client.list_vars(self.settings.name)
                reading, problems = parse_reading(values)
            except NutError as exc:
                self._count(exc)
                await self._failed(exc)
                return
            for problem in problems:
                self._count(problem)
            self.readings += 1
            await self._apply(reading)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # the outbox, the disk: try again on the next poll
            self.errors[INTERNAL] += 1
            if (suppressed := self._logs.allow(INTERNAL, time.monotonic())) is not None:
                log.exception("ups.poll_failed", device_id=self.device_id, error=str(exc)[:200], suppressed=suppressed)

    # ---------------------------------------------------------------------------------------------- reading

    async def _load(self) -> None:
        try:
            stored = await self.state_file.load()
        except (OSError, TimeoutError) as exc:  # an unreadable disk must not stop the UPS from being watched
            self.errors[INTERNAL] += 1
            log.error("ups.state_not_loaded", device_id=self.device_id, path=str(self.state_file.path), error=str(exc))
            stored = None
        if stored is not None and stored.device_id == self.device_id:
            self._outage = _Outage(
                lost_at=stored.lost_at,
                lost_sent=True,  # persisted before it was emitted (see _on_battery)
                low_battery_at=stored.low_battery_at,
                low_sent=stored.low_battery_at is not None,
                persisted=True,
                from_file=True,
            )
            log.info("ups.outage_resumed", device_id=self.device_id, lost_at=stored.lost_at.isoformat())
        self._loaded = True

    def _count(self, exc: NutError) -> None:
        self.errors[exc.reason.value] += 1
        self._last_error = exc
        if (suppressed := self._logs.allow(exc.reason.value, time.monotonic())) is not None:
            log.warning(
                "ups.read_failed",
                device_id=self.device_id,
                ups=self.settings.name,
                reason=exc.reason.value,
                code=exc.code,
                detail=exc.detail,
                suppressed=suppressed,
            )

    async def _failed(self, exc: NutError) -> None:
        now = time.monotonic()
        if self._failing_since is None:
            self._failing_since = now
        if now - self._failing_since < self.settings.unreachable_after_s:
            return
        attrs: Attrs = {"error": exc.reason.value, "on_battery": self._outage is not None}
        await self._publish(PowerReason.UNREACHABLE, attrs, detail=str(exc)[:1000])

    def _low(self, flags: frozenset[str], reading: UpsReading) -> bool:
        if "LB" in flags:
            return True
        threshold = self.settings.low_battery_charge
        return threshold is not None and reading.battery_charge is not None and reading.battery_charge <= threshold

    async def _apply(self, reading: UpsReading) -> None:
        self._failing_since = None
        self.reading = reading
        flags = parse_status(reading.status)
        now = utcnow()
        if "OB" in flags:
            low = self._low(flags, reading)
            await self._on_battery(reading, now, low=low)
            reason = PowerReason.LOW_BATTERY if low else PowerReason.ON_BATTERY
        else:
            await self._on_line(reading, now)
            reason = PowerReason.ON_LINE
        attrs: Attrs = {
            "ups_status": reading.status,
            "battery_charge": reading.battery_charge,
            "battery_runtime_s": reading.battery_runtime_s,
            "input_voltage": reading.input_voltage,
            "on_battery": reason is not PowerReason.ON_LINE,
        }
        await self._publish(reason, attrs)

    async def _on_battery(self, reading: UpsReading, now: datetime, *, low: bool) -> None:
        outage = self._outage
        if outage is None:
            outage = self._outage = _Outage(lost_at=now)
            log.warning("ups.mains_lost", device_id=self.device_id, status=reading.status)
        outage.restored_at = None  # OL seen, then OB again before the restore could be reported: one outage
        if not outage.persisted:
            await self._persist(outage)  # before the event: a crash in between must not give a second mains_lost
        if not outage.lost_sent:
            data = MainsLost(lost_at=outage.lost_at, reading=reading)
            await self.host.emit_event(
                MAINS_LOST_EVENT,
                Severity.WARNING,
                self.device_id,
                f"mains lost: running on the UPS battery ({_figures(reading)})",
                data.model_dump(mode="json"),
            )
            outage.lost_sent = True
        if not low:
            return
        if outage.low_battery_at is None:
            outage.low_battery_at = now
            outage.persisted = False
            log.error("ups.low_battery", device_id=self.device_id, status=reading.status)
        if not outage.persisted:
            await self._persist(outage)  # as for mains_lost: on disk first, so a restart does not repeat it
        if not outage.low_sent:
            low_data = LowBattery(lost_at=outage.lost_at, reading=reading)
            await self.host.emit_event(
                LOW_BATTERY_EVENT,
                Severity.CRITICAL,
                self.device_id,
                f"UPS battery low: the node will lose power soon ({_figures(reading)})",
                low_data.model_dump(mode="json"),
            )
            outage.low_sent = True
        if self._going_down is None:
            task = asyncio.create_task(self._go_down(reading), name="ups-going-down")
            self._going_down = task
            self._background.add(task)
            task.add_done_callback(self._background.discard)

    async def _on_line(self, reading: UpsReading, now: datetime) -> None:
        outage = self._outage
        if outage is None:
            return
        if outage.restored_at is None:
            outage.restored_at = now
        restored_at = outage.restored_at
        duration = max(0.0, (restored_at - outage.lost_at).total_seconds())
        data = MainsRestored(lost_at=outage.lost_at, restored_at=restored_at, duration_s=duration, reading=reading)
        await self.host.emit_event(
            MAINS_RESTORED_EVENT,
            Severity.INFO,
            self.device_id,
            f"mains restored after {_duration_text(duration)}",
            data.model_dump(mode="json"),
        )
        log.info(
            "ups.mains_restored", device_id=self.device_id, duration_s=round(duration, 1), resumed=outage.from_file
        )
        self._outage = None
        going_down, self._going_down = self._going_down, None
        try:
            await self.state_file.clear()
        except (OSError, TimeoutError) as exc:  # the next restart would resume a finished outage: say so
            self.errors[INTERNAL] += 1
            log.error("ups.state_not_cleared", device_id=self.device_id, path=str(self.state_file.path), error=str(exc))
        if going_down is not None:
            if not going_down.done():
                going_down.cancel()
                await asyncio.gather(going_down, return_exceptions=True)
            await self.host.power_back(reading, self.device_id)

    async def _persist(self, outage: _Outage) -> None:
        document = PowerStateFile(
            device_id=self.device_id, lost_at=outage.lost_at, low_battery_at=outage.low_battery_at
        )
        try:
            await self.state_file.save(document)
        except (OSError, TimeoutError) as exc:  # tried again on the next poll; the events still go out
            self.errors[INTERNAL] += 1
            log.error("ups.state_not_saved", device_id=self.device_id, path=str(self.state_file.path), error=str(exc))
            return
        outage.persisted = True

    async def _go_down(self, reading: UpsReading) -> None:
        try:
            await self.host.going_down(reading, self.device_id)
        except asyncio.CancelledError:
            raise
        except Exception:
            self.errors[INTERNAL] += 1
            log.exception("ups.going_down_failed", device_id=self.device_id)

    async def _publish(self, reason: PowerReason, attrs: Attrs, *, detail: str = "") -> None:
        status = REASON_STATUS[reason]
        if self._since_reason is not reason:
            self._since_reason, self._reason_since = reason, utcnow()
        previous = self._published
        changed = previous is None or previous[:2] != (status, reason)
        if not changed and (
            previous is None
            or previous[2] == attrs
            or time.monotonic() - self._published_at < self.settings.state_interval_s
        ):
            self.reason = reason
            return
        full: Attrs = {**attrs, "since": self._reason_since.isoformat()}
        await self.host.set_device_state(
            self.device_id, DeviceKind.UPS, status, reason.value, detail, full, name=self.settings.name
        )
        self.reason = reason
        self._published = (status, reason, attrs)
        self._published_at = time.monotonic()


def _figures(reading: UpsReading) -> str:
    parts = [f"status {reading.status}"]
    if reading.battery_charge is not None:
        parts.append(f"charge {reading.battery_charge:g} %")
    if reading.battery_runtime_s is not None:
        parts.append(f"runtime {_duration_text(reading.battery_runtime_s)}")
    return ", ".join(parts)


def _duration_text(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"
