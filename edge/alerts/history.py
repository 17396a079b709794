"""When each siren last sounded, kept across agent restarts ("last test" on the dashboard's siren panel).

One small JSON file (``sirens.json`` in the node's data folder) holding ``{siren: {last_sounded_at,
last_sounding_s}}``, kept with :class:`~edge.statefile.StateFile` (atomic, in a thread, with a time limit). A file
that cannot be read is counted, logged and moved aside; a write that fails is logged and counted, the values stay in
memory. None of this ever stops a siren.
"""

from __future__ import annotations

import asyncio
from datetime import datetime
from pathlib import Path
from typing import Final

import structlog
from pydantic import BaseModel, ConfigDict, Field

from edge.statefile import StateFile

log = structlog.get_logger(__name__)

FILE_NAME: Final = "sirens.json"


class SirenRecord(BaseModel):
    """What is remembered of one siren."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    last_sounded_at: datetime | None = Field(default=None, description="when it last began to sound")
    last_sounding_s: float | None = Field(default=None, ge=0, description="how long its last (ended) sounding lasted")


class _HistoryFile(BaseModel):
    model_config = ConfigDict(extra="forbid")

    sirens: dict[str, SirenRecord] = Field(default_factory=dict)


class SirenHistory:
    """Sirens' records by device id, persisted in *path* (None: kept in memory only)."""

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self._file = StateFile(path, _HistoryFile) if path is not None else None
        self._records: dict[str, SirenRecord] = {}
        self._lock = asyncio.Lock()
        self.load_failures = 0
        self.save_failures = 0

    def get(self, device_id: str) -> SirenRecord:
        """The record of one siren (empty when it never sounded here)."""
        return self._records.get(device_id) or SirenRecord()

    async def load(self) -> None:
        """Read the file (missing: nothing remembered; unreadable: logged, counted, moved aside)."""
        if self._file is None:
            return
        async with self._lock:
            corrupt = len(self._file.corrupt_files)
            try:
                document = await self._file.load()
            except Exception as exc:  # the disk fails, the folder is not one, the read hangs
                self.load_failures += 1
                log.error("siren.history_unreadable", path=str(self.path), reason=str(exc)[:200] or type(exc).__name__)
                return
            if len(self._file.corrupt_files) > corrupt:
                self.load_failures += 1
            self._records = dict(document.sirens) if document is not None else {}

    async def sounded(self, device_id: str, at: datetime) -> None:
        """The siren began to sound at *at*."""
        await self._update(device_id, self.get(device_id).model_copy(update={"last_sounded_at": at}))

    async def silenced(self, device_id: str, duration_s: float) -> None:
        """The siren stopped sounding after *duration_s*."""
        await self._update(device_id, self.get(device_id).model_copy(update={"last_sounding_s": max(0.0, duration_s)}))

    async def _update(self, device_id: str, record: SirenRecord) -> None:
        async with self._lock:
            self._records[device_id] = record
            if self._file is None:
                return
            try:
                await self._file.save(_HistoryFile(sirens=dict(self._records)))
            except Exception as exc:
                self.save_failures += 1
                log.error("siren.history_not_saved", path=str(self.path), error=str(exc)[:200] or type(exc).__name__)
