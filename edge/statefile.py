"""A small JSON state document kept on the node's disk (what must survive a reboot: outage starts, when sirens
last sounded).

Written to a temporary file in the same folder, fsynced and renamed over the old one, so a power cut leaves either
the old or the new version. A file that cannot be read is moved aside (``<name>.corrupt-<time>``) with a log line
and treated as absent. Every read and write runs in a thread, with a time limit.
"""

from __future__ import annotations

import asyncio
import os
import time
import uuid
from pathlib import Path
from typing import Final, Generic, TypeVar

import structlog
from pydantic import BaseModel, ValidationError

from varta.aio import wait_for

log = structlog.get_logger(__name__)

M = TypeVar("M", bound=BaseModel)

MAX_STATE_BYTES: Final = 64 * 1024
IO_TIMEOUT_S: Final = 10.0


class StateFile(Generic[M]):
    """One document of type *model* in *path* (load, save, clear; each atomic and off the event loop)."""

    def __init__(self, path: Path, model: type[M], *, io_timeout_s: float = IO_TIMEOUT_S) -> None:
        self.path = path
        self.model = model
        self.io_timeout_s = io_timeout_s
        self.corrupt_files: list[Path] = []
        """Files moved aside because they could not be read."""

    async def load(self) -> M | None:
        """The stored document; None when there is none (or it was corrupt and has been moved aside)."""
        return await wait_for(asyncio.to_thread(self._load_sync), self.io_timeout_s)

    async def save(self, document: M) -> None:
        """Replace the stored document atomically (raises OSError / TimeoutError when the disk fails)."""
        data = document.model_dump_json().encode()
        await wait_for(asyncio.to_thread(self._save_sync, data), self.io_timeout_s)

    async def clear(self) -> None:
        """Remove the stored document (nothing happens when there is none)."""
        await wait_for(asyncio.to_thread(self._clear_sync), self.io_timeout_s)

    # ---------------------------------------------------------------------------------------------- file

    def _load_sync(self) -> M | None:
        try:
            size = self.path.stat().st_size
        except FileNotFoundError:
            return None
        try:
            if size > MAX_STATE_BYTES:
                raise ValueError(f"{size} bytes is more than a state file can be")
            return self.model.model_validate_json(self.path.read_bytes())
        except (OSError, ValueError, ValidationError) as exc:
            reason = type(exc).__name__ if isinstance(exc, ValidationError) else str(exc)[:200]
            self._move_aside(reason)
            return None

    def _move_aside(self, reason: str) -> None:
        stamp = time.strftime("%Y%m%dT%H%M%S")
        target = self.path.with_name(f"{self.path.name}.corrupt-{stamp}")
        n = 1
        while target.exists():  # several in one second: keep them all
            n += 1
            target = self.path.with_name(f"{self.path.name}.corrupt-{stamp}-{n}")
        try:
            os.replace(self.path, target)
        except OSError as exc:
            log.error("state_file.corrupt_not_moved", path=str(self.path), reason=reason, error=str(exc)[:200])
            return
        self.corrupt_files.append(target)
        log.error("state_file.corrupt", path=str(self.path), moved_to=str(target), reason=reason)

    def _save_sync(self, data: bytes) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(
            f".{self.path.name}.{uuid.uuid4().hex[:8]}.tmp"
        )  # unique: a timed-out write may still run
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, self.path)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        self._sync_dir()

    def _clear_sync(self) -> None:
        try:
            self.path.unlink()
        except FileNotFoundError:
            return
        self._sync_dir()

    def _sync_dir(self) -> None:
        dir_fd = os.open(self.path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
