"""The node's adopted cameras, with their credentials: one JSON file (mode 0600), replaced atomically.

This file is the only place a camera password is kept. It is written to a temporary file in the same folder
(mode 0600 from the start), fsynced and renamed over the old one, so a power cut leaves either the old or the new
version. A file that cannot be read as a store is moved aside (``<name>.corrupt-<time>``) with a log line and the
node starts with no cameras; it never stops the agent. Reads and writes run in a thread.
"""

from __future__ import annotations

import asyncio
import os
import time
from datetime import datetime
from pathlib import Path
from typing import Any, Final, Literal

import orjson
import structlog
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from varta.contract import CameraThresholds, Identifier, utcnow
from varta.sealing import Credentials

log = structlog.get_logger(__name__)

STORE_VERSION: Final = 1
MAX_STORE_BYTES: Final = 16 * 1024 * 1024


class StoredCamera(BaseModel):
    """One adopted camera as the node keeps it (``credentials`` never leave this file)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    device_id: Identifier
    name: str = Field(default="", max_length=200)
    onvif_address: str = Field(default="", max_length=500)
    endpoint: str | None = Field(default=None, max_length=200)
    stream_uri: str | None = Field(default=None, max_length=500, description="RTSP override (no credentials)")
    thresholds: CameraThresholds = Field(default_factory=CameraThresholds)
    credentials: Credentials | None = Field(default=None, repr=False)
    adopted_at: datetime = Field(default_factory=utcnow)

    def public(self) -> dict[str, Any]:
        """A credential-free summary (for command results and logs)."""
        return {
            "device_id": self.device_id,
            "name": self.name,
            "onvif_address": self.onvif_address,
            "endpoint": self.endpoint,
            "stream_uri": self.stream_uri,
            "has_credentials": self.credentials is not None,
        }


class _StoreFile(BaseModel):
    model_config = ConfigDict(extra="forbid")

    version: Literal[1] = STORE_VERSION
    cameras: list[StoredCamera] = Field(default_factory=list)


def _dump(cameras: list[StoredCamera]) -> bytes:
    def one(camera: StoredCamera) -> dict[str, Any]:
        data = camera.model_dump(mode="json", exclude={"credentials"})
        if camera.credentials is not None:
            data["credentials"] = {
                "username": camera.credentials.username,
                "password": camera.credentials.password.get_secret_value(),
            }
        else:
            data["credentials"] = None
        return data

    return orjson.dumps({"version": STORE_VERSION, "cameras": [one(c) for c in cameras]}, option=orjson.OPT_INDENT_2)


class CameraStore:
    """Adopted cameras by device id, persisted in *path*."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._cameras: dict[str, StoredCamera] = {}
        self._lock = asyncio.Lock()
        self.corrupt_files: list[Path] = []
        """Files moved aside because they could not be read (since this store was created)."""

    async def load(self) -> list[StoredCamera]:
        """Read the file (a missing file is an empty store; a corrupt one is moved aside); returns the cameras."""
        async with self._lock:
            cameras = await asyncio.to_thread(self._load_sync)
            self._cameras = {c.device_id: c for c in cameras}
            return list(self._cameras.values())

    def all(self) -> list[StoredCamera]:
        """Every adopted camera (as last loaded or saved)."""
        return list(self._cameras.values())

    def get(self, device_id: str) -> StoredCamera | None:
        """One camera, or None."""
        return self._cameras.get(device_id)

    async def put(self, camera: StoredCamera) -> None:
        """Add or replace a camera and save the file."""
        async with self._lock:
            cameras = {**self._cameras, camera.device_id: camera}
            await asyncio.to_thread(self._save_sync, list(cameras.values()))
            self._cameras = cameras

    async def remove(self, device_id: str) -> bool:
        """Forget a camera (and its credentials); False when it was not there."""
        async with self._lock:
            if device_id not in self._cameras:
                return False
            cameras = {k: v for k, v in self._cameras.items() if k != device_id}
            await asyncio.to_thread(self._save_sync, list(cameras.values()))
            self._cameras = cameras
            return True

    # ---------------------------------------------------------------------------------------------- file

    def _load_sync(self) -> list[StoredCamera]:
        try:
            size = self.path.stat().st_size
        except FileNotFoundError:
            return []
        try:
            if size > MAX_STORE_BYTES:
                raise ValueError(f"{size} bytes is more than a camera store can be")
            data = _StoreFile.model_validate_json(self.path.read_bytes())
        except (OSError, ValueError, ValidationError) as exc:
            reason = type(exc).__name__ if isinstance(exc, ValidationError) else str(exc)[:200]
            self._move_aside(reason)
            return []
        if os.stat(self.path).st_mode & 0o077:
            os.chmod(self.path, 0o600)
        return data.cameras

    def _move_aside(self, reason: str) -> None:
        target = self.path.with_name(f"{self.path.name}.corrupt-{time.strftime('%Y%m%dT%H%M%S')}")
        try:
            os.replace(self.path, target)
        except OSError as exc:
            log.error("camera_store.corrupt_not_moved", path=str(self.path), reason=reason, error=str(exc)[:200])
            return
        self.corrupt_files.append(target)
        # Validation errors name the type only: their text could quote a stored password.
        log.error("camera_store.corrupt", path=str(self.path), moved_to=str(target), reason=reason)

    def _save_sync(self, cameras: list[StoredCamera]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(f".{self.path.name}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(_dump(cameras))
                fh.flush()
                os.fsync(fh.fileno())
            os.chmod(tmp, 0o600)
            os.replace(tmp, self.path)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        dir_fd = os.open(self.path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
