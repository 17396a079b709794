"""The node's link to central (the MQTT broker): when it was lost and regained, reported on reconnect.

:class:`UplinkRecorder` (a supervised agent loop) follows the agent's :class:`~varta.mqtt.MqttClient`. When the
connection drops it notes ``lost_at`` and persists it (once per outage, in a small state file in the node's data
folder); when the connection is back it emits ``uplink.restored`` (:class:`~varta.contract.UplinkRestored`: lost_at,
restored_at, duration_s, failed attempts in between) through the durable outbox — severity ``warning`` when the
outage lasted more than a minute, else ``info`` — and removes the file. Every outage is reported, short blips too
(they count in the availability report).

* An outage that spans an agent restart or a reboot is reported once, with its true start, after the first
  connection of the new run (``across_restart: true``); ``attempts`` then counts this run's attempts only.
* An agent whose very first connection attempt fails counts the link as lost since it started.
* A clean stop is not an outage: the agent stops this loop before it disconnects. A stop while the link is down
  leaves the outage on disk for the next run.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Final, Literal, Protocol

import structlog
from pydantic import BaseModel, ConfigDict

from edge.devices import DeviceSink
from edge.statefile import StateFile
from varta.aio import wait_event
from varta.contract import UPLINK_RESTORED_EVENT, Severity, UplinkRestored, utcnow

log = structlog.get_logger(__name__)

WARN_AFTER_S: Final = 60.0  # a longer outage is reported as a warning
CHECK_INTERVAL_S: Final = 1.0  # while disconnected: how often failed attempts (and an unsaved outage) are looked at


class UplinkClient(Protocol):
    """What the recorder reads from the MQTT client (:class:`varta.mqtt.MqttClient` has it)."""

    connected: asyncio.Event
    disconnected: asyncio.Event
    failed_attempts: int


class UplinkStateFile(BaseModel):
    """The open uplink outage, kept across restarts."""

    model_config = ConfigDict(extra="forbid")

    version: Literal[1] = 1
    lost_at: datetime


@dataclass(slots=True)
class _Outage:
    lost_at: datetime
    attempts_base: int  # the client's failed_attempts when the outage began (in this run)
    across_restart: bool = False
    persisted: bool = False


class UplinkRecorder:
    """Records uplink outages for *sink* (the agent) by following *client*; run :meth:`run` as an agent loop."""

    def __init__(
        self,
        client: UplinkClient,
        sink: DeviceSink,
        *,
        state_path: Path,
        started_at: datetime | None = None,
        check_interval_s: float = CHECK_INTERVAL_S,
    ) -> None:
        self.client = client
        self.sink = sink
        self.state_file = StateFile(state_path, UplinkStateFile)
        self.started_at = started_at or utcnow()
        self.check_interval_s = check_interval_s
        self.reported = 0
        """Outages reported so far."""
        self.save_failures = 0
        """State-file writes or removals that failed (each logged)."""
        self._outage: _Outage | None = None
        self._loaded = False
        self._ever_connected = False

    def stats(self) -> dict[str, Any]:
        """Counters for health and tests."""
        outage = self._outage
        return {
            "connected": self.client.connected.is_set(),
            "reported": self.reported,
            "save_failures": self.save_failures,
            "lost_at": outage.lost_at.isoformat() if outage is not None else None,
            "persisted": outage.persisted if outage is not None else False,
        }

    @property
    def lost_at(self) -> datetime | None:
        """When the link was lost, while it is down (or not yet reported)."""
        return self._outage.lost_at if self._outage is not None else None

    async def run(self) -> None:
        """Follow the connection until cancelled."""
        if not self._loaded:
            await self._load()
        while True:
            self._check_first_connection()
            if self.client.connected.is_set():
                self._ever_connected = True
                if self._outage is not None:
                    await self._report(self._outage)
                await self.client.disconnected.wait()
                if self._outage is None:
                    self._outage = _Outage(lost_at=utcnow(), attempts_base=self.client.failed_attempts)
                    log.warning("uplink.lost", lost_at=self._outage.lost_at.isoformat())
                    await self._persist(self._outage)
            else:
                if self._outage is not None and not self._outage.persisted:
                    await self._persist(self._outage)
                await wait_event(self.client.connected, self.check_interval_s)

    # ---------------------------------------------------------------------------------------------- internals

    async def _load(self) -> None:
        try:
            stored = await self.state_file.load()
        except (OSError, TimeoutError) as exc:
            self.save_failures += 1
            log.error("uplink.state_not_loaded", path=str(self.state_file.path), error=str(exc))
            stored = None
        if stored is not None:
            self._outage = _Outage(lost_at=stored.lost_at, attempts_base=0, across_restart=True, persisted=True)
            log.info("uplink.outage_resumed", lost_at=stored.lost_at.isoformat())
        self._loaded = True

    def _check_first_connection(self) -> None:
        """No connection yet in this run and an attempt already failed: the link is down since the start."""
        if self._ever_connected or self._outage is not None or self.client.failed_attempts == 0:
            return
        self._outage = _Outage(lost_at=self.started_at, attempts_base=0)
        log.warning("uplink.down_at_start", lost_at=self.started_at.isoformat())

    async def _report(self, outage: _Outage) -> None:
        restored_at = utcnow()
        duration = max(0.0, (restored_at - outage.lost_at).total_seconds())
        attempts = max(0, self.client.failed_attempts - outage.attempts_base)
        data = UplinkRestored(
            lost_at=outage.lost_at,
            restored_at=restored_at,
            duration_s=duration,
            attempts=attempts,
            across_restart=outage.across_restart,
        )
        await self.sink.emit_event(
            UPLINK_RESTORED_EVENT,
            Severity.WARNING if duration > WARN_AFTER_S else Severity.INFO,
            None,
            f"link to central restored after {duration:.1f} s ({attempts} failed attempts)",
            data.model_dump(mode="json"),
        )
        self._outage = None
        self.reported += 1
        log.info(
            "uplink.restored",
            duration_s=round(duration, 1),
            attempts=attempts,
            across_restart=outage.across_restart,
        )
        if outage.persisted:
            try:
                await self.state_file.clear()
            except (OSError, TimeoutError) as exc:  # reported again after a restart: better than never
                self.save_failures += 1
                log.error("uplink.state_not_cleared", path=str(self.state_file.path), error=str(exc))

    async def _persist(self, outage: _Outage) -> None:
        try:
            await self.state_file.save(UplinkStateFile(lost_at=outage.lost_at))
        except (OSError, TimeoutError) as exc:  # tried again while the link stays down
            self.save_failures += 1
            log.error("uplink.state_not_saved", path=str(self.state_file.path), error=str(exc))
            return
        outage.persisted = True
