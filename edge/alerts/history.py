"""When each siren last sounded, kept across agent restarts ("last test" on the dashboard's siren panel).

One small JSON file (``sirens.json`` in the node's data folder) holding ``{siren: {last_sounded_at,
last_sounding_s}}``. It is written to a temporary file in the same folder, fsynced and renamed over the old one, in
a thread, with a time limit. A file that cannot be read is logged and ignored (it is overwritten on the next
change); a write that fails is logged and counted, the values stay in memory. None of this ever stops a siren.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from datetime import datetime
from pathlib import Path
from typing import Final

import orjson
import structlog
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from varta.aio import wait_for

log = structlog.get_logger(__name__)

FILE_NAME: Final = "sirens.json"
MAX_FILE_BYTES: Final = 1024 * 1024
IO_TIMEOUT_S: Final = 10.0


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
        self._records: dict[str, SirenRecord] = {}
        self._lock = asyncio.Lock()
        self.load_failures = 0
        self.save_failures = 0

    def get(self, device_id: str) -> SirenRecord:
        """The record of one siren (empty when it never sounded here)."""
        return self._records.get(device_id) or SirenRecord()

    async def load(self) -> None:
        """Read the file (missing: nothing remembered; unreadable: logged, counted, nothing remembered)."""
        if self.path is None:
            return
        async with self._lock:
            try:
                self._records = await wait_for(asyncio.to_thread(self._load_sync, self.path), IO_TIMEOUT_S)
            except Exception as exc:
                self.load_failures += 1
                reason = (
                    type(exc).__name__ if isinstance(exc, ValidationError) else str(exc)[:200] or type(exc).__name__
                )
                log.error("siren.history_unreadable", path=str(self.path), reason=reason)

    async def sounded(self, device_id: str, at: datetime) -> None:
        """The siren began to sound at *at*."""
        await self._update(device_id, self.get(device_id).model_copy(update={"last_sounded_at": at}))

    async def silenced(self, device_id: str, duration_s: float) -> None:
        """The siren stopped sounding after *duration_s*."""
        await self._update(device_id, self.get(device_id).model_copy(update={"last_sounding_s": max(0.0, duration_s)}))

    async def _update(self, device_id: str, record: SirenRecord) -> None:
        async with self._lock:
            self._records[device_id] = record
            if self.path is None:
                return
            data = orjson.dumps(
                _HistoryFile(sirens=dict(self._records)).model_dump(mode="json"), option=orjson.OPT_INDENT_2
            )
            try:
                await wait_for(asyncio.to_thread(_save_sync, self.path, data), IO_TIMEOUT_S)
            except Exception as exc:
                self.save_failures += 1
                log.error("siren.history_not_saved", path=str(self.path), error=str(exc)[:200] or type(exc).__name__)

    @staticmethod
    def _load_sync(path: Path) -> dict[str, SirenRecord]:
        try:
            size = path.stat().st_size
        except FileNotFoundError:
            return {}
        if size > MAX_FILE_BYTES:
            raise ValueError(f"{size} bytes is more than a siren history can be")
        return _HistoryFile.model_validate_json(path.read_bytes()).sirens


def _save_sync(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp")  # unique: a timed-out write may still run
    try:
        with open(tmp, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
