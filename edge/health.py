"""A node health sample: CPU, load, memory, disk, temperature, Pi under-voltage, uptime, version, outbox counts.

Everything is read in a worker thread (psutil and sysfs are file I/O). Temperatures come from
``<sysfs>/class/thermal/thermal_zone*/temp`` and ``<sysfs>/class/hwmon/hwmon*/temp*_input`` (millidegrees); the
Pi's under-voltage alarm from the ``rpi_volt`` hwmon device's ``in0_lcrit_alarm``. The sysfs root is a parameter
so tests can fake the tree.
"""

from __future__ import annotations

import asyncio
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import psutil
import structlog

import varta
from edge.outbox import OutboxStats
from varta.contract import Health, utcnow

log = structlog.get_logger(__name__)

#: Temperatures outside this range (°C) are sensor glitches or unconnected inputs and are ignored.
SENSIBLE_TEMPERATURE_C: Final = (-40.0, 150.0)
_MB: Final = 1024 * 1024


@dataclass(frozen=True, slots=True)
class HostReadings:
    """Raw readings of the host (what :class:`HealthSampler` turns into a :class:`~varta.contract.Health`)."""

    cpu_percent: float
    load_1m: float | None
    memory_percent: float
    memory_available_mb: float
    disk_percent: float
    disk_free_mb: float
    temperature_c: float | None
    undervoltage: bool | None
    uptime_s: float


def _read_text(path: Path) -> str | None:
    try:
        return path.read_text().strip()
    except (OSError, UnicodeDecodeError):
        return None


def read_temperature(sysfs_root: Path) -> float | None:
    """The highest sensible temperature (°C) of the thermal zones and hwmon sensors; None when there is none."""
    candidates = [
        *sysfs_root.glob("class/thermal/thermal_zone*/temp"),
        *sysfs_root.glob("class/hwmon/hwmon*/temp*_input"),
    ]
    values: list[float] = []
    low, high = SENSIBLE_TEMPERATURE_C
    for path in candidates:
        text = _read_text(path)
        if text is None:
            continue
        try:
            celsius = int(text) / 1000.0
        except ValueError:
            continue
        if low <= celsius <= high:
            values.append(celsius)
    return round(max(values), 1) if values else None


def read_undervoltage(sysfs_root: Path) -> bool | None:
    """The Raspberry Pi under-voltage alarm (``rpi_volt`` hwmon ``in0_lcrit_alarm``); None when absent."""
    for hwmon in sorted(sysfs_root.glob("class/hwmon/hwmon*")):
        if _read_text(hwmon / "name") != "rpi_volt":
            continue
        alarm = _read_text(hwmon / "in0_lcrit_alarm")
        if alarm in {"0", "1"}:
            return alarm == "1"
        return None
    return None


def _existing(path: Path) -> Path:
    """*path* or its nearest existing ancestor (the data folder may not exist yet)."""
    path = path.absolute()
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


class HealthSampler:
    """Takes :class:`~varta.contract.Health` samples of this node."""

    def __init__(self, *, data_dir: Path, sysfs_root: Path = Path("/sys")) -> None:
        self.data_dir = data_dir
        self.sysfs_root = sysfs_root
        self.started = time.monotonic()
        self._primed = False

    def read_host(self) -> HostReadings:
        """Read the host (blocking: call it in a thread, as :meth:`sample` does)."""
        if not self._primed:
            # psutil's non-blocking cpu_percent compares with the previous call; the first one returns 0.0.
            psutil.cpu_percent(interval=None)
            self._primed = True
        memory = psutil.virtual_memory()
        disk = psutil.disk_usage(str(_existing(self.data_dir)))
        try:
            load: float | None = os.getloadavg()[0]
        except OSError:
            load = None
        return HostReadings(
            cpu_percent=min(100.0, max(0.0, psutil.cpu_percent(interval=None))),
            load_1m=load,
            memory_percent=min(100.0, max(0.0, float(memory.percent))),
            memory_available_mb=round(memory.available / _MB, 1),
            disk_percent=min(100.0, max(0.0, float(disk.percent))),
            disk_free_mb=round(disk.free / _MB, 1),
            temperature_c=read_temperature(self.sysfs_root),
            undervoltage=read_undervoltage(self.sysfs_root),
            uptime_s=max(0.0, time.time() - psutil.boot_time()),
        )

    async def prime(self) -> None:
        """Start CPU accounting so the first real sample measures something."""
        if not self._primed:
            await asyncio.to_thread(psutil.cpu_percent, None)
            self._primed = True

    async def sample(self, *, node_id: str, boot_id: str, outbox: OutboxStats | None = None) -> Health:
        """A health sample (``seq`` 0: the outbox assigns the real one)."""
        r = await asyncio.to_thread(self.read_host)
        return Health(
            node_id=node_id,
            boot_id=boot_id,
            seq=0,
            ts=utcnow(),
            cpu_percent=r.cpu_percent,
            load_1m=r.load_1m,
            memory_percent=r.memory_percent,
            memory_available_mb=r.memory_available_mb,
            disk_percent=r.disk_percent,
            disk_free_mb=r.disk_free_mb,
            temperature_c=r.temperature_c,
            undervoltage=r.undervoltage,
            uptime_s=round(r.uptime_s, 1),
            agent_uptime_s=round(time.monotonic() - self.started, 1),
            version=varta.__version__[:64],
            outbox_pending=outbox.pending if outbox else 0,
            outbox_dropped_telemetry=outbox.dropped_telemetry if outbox else 0,
            outbox_dropped_events=outbox.dropped_events if outbox else 0,
        )
