"""Siren monitoring at the edge: every configured siren watched concurrently, each in its own supervised task.

:class:`SirenMonitor` is built by the edge agent when ``sirens.enabled`` and run as one supervised agent loop. It
builds each siren's input adapter at once (gpiozero / pymodbus are imported only for sirens that use them; a
missing library is a :class:`~varta.settings.ConfigError`), opens nothing until :meth:`SirenMonitor.run`, and runs
one :class:`~edge.alerts.worker.SirenWorker` per siren. A siren whose worker fails is restarted on its own with
back-off; it never stalls the others. Varta only monitors sirens: nothing here writes an output.
"""

from __future__ import annotations

import asyncio
import collections
from collections.abc import Callable
from pathlib import Path
from typing import Any

import structlog

from edge.alerts.adapters import open_reader
from edge.alerts.adapters.simulated import SimulatedReader
from edge.alerts.config import SirensSettings
from edge.alerts.history import FILE_NAME, SirenHistory
from edge.alerts.inputs import InputReader
from edge.alerts.worker import Clock, SirenWorker, system_clock
from edge.devices import DeviceSink
from varta.contract import SirenState
from varta.supervise import supervise

log = structlog.get_logger(__name__)


class SirenMonitor:
    """All sirens of one node (see the module docstring).

    *pin_factory* is handed to gpiozero (tests: ``MockFactory()``); *data_dir* is where ``sirens.json`` keeps when
    each siren last sounded across restarts (None: remembered in memory only).
    """

    def __init__(
        self,
        settings: SirensSettings,
        sink: DeviceSink,
        *,
        pin_factory: Any | None = None,
        clock: Clock = system_clock,
        data_dir: Path | None = None,
    ) -> None:
        self.settings = settings
        self.sink = sink
        self.history = SirenHistory(data_dir / FILE_NAME if data_dir is not None else None)
        self.readers: dict[str, InputReader] = {
            s.device_id: open_reader(s, pin_factory=pin_factory) for s in settings.sirens
        }
        self.listeners: list[Callable[[str, SirenState], None]] = []
        """Called with (siren id, new state) the moment a siren's state settles (before it is published)."""
        self.workers: dict[str, SirenWorker] = {
            s.device_id: SirenWorker(
                s, self.readers[s.device_id], sink, history=self.history, clock=clock, on_change=self._tell
            )
            for s in settings.sirens
        }

    def _tell(self, device_id: str, state: SirenState) -> None:
        for listener in list(self.listeners):
            listener(device_id, state)

    def simulated(self, device_id: str) -> SimulatedReader:
        """The inputs of a simulated siren, to set from code (KeyError: no such siren; TypeError: not simulated)."""
        reader = self.readers[device_id]
        if not isinstance(reader, SimulatedReader):
            raise TypeError(f"siren {device_id} is not simulated")
        return reader

    async def run(self) -> None:
        """Watch every siren until cancelled (each publishes ``unknown`` at once, then its first settled state)."""
        await self.history.load()
        tasks = [
            asyncio.create_task(supervise(f"siren-{device_id}", worker.run), name=f"siren-{device_id}")
            for device_id, worker in self.workers.items()
        ]
        log.info("sirens.started", sirens=len(tasks))
        try:
            await asyncio.Event().wait()
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            log.info("sirens.stopped", sirens=len(tasks))

    def stats(self) -> dict[str, Any]:
        """Counters: per siren (state, reads, failures by reason, events and states sent) and failures in total."""
        failures: collections.Counter[str] = collections.Counter()
        for worker in self.workers.values():
            failures.update(worker.stats.failures)
        return {
            "sirens": {device_id: worker.stats.as_dict() for device_id, worker in self.workers.items()},
            "failures": dict(failures),
            "history_load_failures": self.history.load_failures,
            "history_save_failures": self.history.save_failures,
        }
