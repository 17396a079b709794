"""The node's cameras as the agent sees them: the ``camera.*`` commands, discovery, and one worker per camera.

:class:`CameraManager` is built by the edge agent when ``cameras.enabled``; it registers the ``camera.*`` command
handlers and announces the ``camera`` capability. :meth:`CameraManager.run` (a supervised agent loop) loads the
adopted cameras from the node's :class:`~edge.cameras.store.CameraStore`, starts one
:class:`~edge.cameras.worker.CameraWorker` per camera and probes the LAN at start-up and every
``cameras.discovery_interval_s``. Credentials are opened from sealed boxes with the node's key and kept only in
the store; they never appear in a message, a command result, an exception or a log line.
"""

from __future__ import annotations

import asyncio
import contextlib
import urllib.parse
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, Final, Literal, TypeVar

import structlog
from pydantic import BaseModel, ValidationError

from edge.cameras.config import CameraSettings
from edge.cameras.live.sessions import LiveManager
from edge.cameras.live.source import StreamAddress
from edge.cameras.store import CameraStore, StoredCamera
from edge.cameras.worker import CameraHost, CameraWorker
from edge.cameras.wsdiscovery import DiscoveryStats, probe
from edge.commands import CommandFailed, CommandRegistry
from varta.aio import wait_for
from varta.contract import (
    LIVE_ENDED_EVENT,
    AdoptCameraParams,
    CameraCredentialsParams,
    CameraRef,
    Channel,
    Command,
    CommandType,
    DiscoveryReport,
    LiveEnded,
    LiveEndReason,
    LiveError,
    LiveStartParams,
    LiveStopParams,
    LiveStream,
    PtzMoveParams,
    PtzPresetParams,
    Severity,
)
from varta.sealing import Credentials, SealingError, open_credentials

log = structlog.get_logger(__name__)

M = TypeVar("M", bound=BaseModel)

CAPABILITY: Final = "camera"
READY_TIMEOUT_S: Final = 10.0
ADOPT_WAIT_MAX_S: Final = 8.0


def _has_userinfo(uri: str) -> bool:
    return "@" in urllib.parse.urlsplit(uri).netloc


def _params(model: type[M], command: Command) -> M:
    """Validate a command's params; the error names fields and problems, never the values given."""
    try:
        return model.model_validate(command.params)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e.get('loc', ())) or 'params'}: {e.get('msg', '')}" for e in exc.errors()[:5]
        )
        raise CommandFailed(f"invalid parameters: {problems}"[:1000]) from None


class CameraManager:
    """All cameras of one node; see the module docstring."""

    def __init__(self, host: CameraHost, settings: CameraSettings, *, store_path: Path | None = None) -> None:
        self.host = host
        self.settings = settings
        self.store = CameraStore(store_path or settings.store_path or host.data_dir / "cameras.json")
        self.workers: dict[str, CameraWorker] = {}
        self.discovery_stats = DiscoveryStats()
        self.last_discovery: list[str] = []
        """Endpoints the last probe found."""
        self._loaded = asyncio.Event()
        self._probe_lock = asyncio.Lock()
        self._adopt_lock = asyncio.Lock()
        self.live = LiveManager(settings.live, self._live_ended, request_keyframe=self._request_keyframe)
        """Live-view sessions (WebRTC passthrough); aiortc is imported on the first ``camera.live.start``."""
        if CAPABILITY not in host.capabilities:
            host.capabilities.append(CAPABILITY)
        self._register(host.registry)

    # ---------------------------------------------------------------------------------------------- loop

    async def run(self) -> None:
        """Load the adopted cameras, start them, then discover at start-up and periodically (until cancelled)."""
        try:
            self.live.resume()
            for camera in await self.store.load():
                self._start(camera)
            self._loaded.set()
            log.info("cameras.started", cameras=len(self.workers))
            interval = self.settings.discovery_interval_s
            trigger: Literal["startup", "periodic"] = "startup"
            while interval > 0:
                try:
                    await self.discover(trigger)
                except Exception:
                    log.exception("cameras.discovery_failed")
                trigger = "periodic"
                await asyncio.sleep(interval)
            await asyncio.Event().wait()
        finally:
            self._loaded.clear()
            try:
                await self.live.close()
            except Exception:
                log.exception("cameras.live_close_failed")
            workers, self.workers = list(self.workers.values()), {}
            await asyncio.gather(*(w.stop() for w in workers), return_exceptions=True)

    async def _retire(self, worker: CameraWorker) -> None:
        """Stop a worker that is being forgotten or replaced, and end its live sessions (``camera_removed``)."""
        await self.live.stop_camera(worker.device_id, LiveEndReason.CAMERA_REMOVED)
        await worker.stop()

    def _start(self, camera: StoredCamera) -> CameraWorker:
        worker = CameraWorker(self.host, self.settings, camera)
        self.workers[camera.device_id] = worker
        worker.start()
        return worker

    async def discover(self, trigger: Literal["startup", "periodic", "command"]) -> int:
        """Probe the LAN now and publish a ``DiscoveryReport``; returns how many devices answered."""
        s = self.settings
        async with self._probe_lock:
            found = await probe(
                s.discovery_timeout_s,
                multicast=s.discovery_multicast,
                unicast=s.discovery_unicast,
                scope=s.discovery_scope or None,
                interfaces=[str(ip) for ip in s.discovery_interfaces],
                stats=self.discovery_stats,
            )
        report = DiscoveryReport(**self.host.envelope(), trigger=trigger, devices=found[:256])
        await self.host.publish_message(Channel.DISCOVERY, report)
        self.last_discovery = [d.endpoint for d in found]
        log.info("cameras.discovered", trigger=trigger, found=len(found), garbage=self.discovery_stats.garbage)
        return len(found)

    # ---------------------------------------------------------------------------------------------- commands

    def _register(self, registry: CommandRegistry) -> None:
        handlers: dict[CommandType, Callable[[Command], Awaitable[dict[str, Any]]]] = {
            CommandType.CAMERA_DISCOVER: self._cmd_discover,
            CommandType.CAMERA_ADOPT: self._cmd_adopt,
            CommandType.CAMERA_FORGET: self._cmd_forget,
            CommandType.CAMERA_SET_CREDENTIALS: self._cmd_credentials,
            CommandType.CAMERA_SNAPSHOT: self._cmd_snapshot,
            CommandType.CAMERA_PTZ_MOVE: self._cmd_ptz_move,
            CommandType.CAMERA_PTZ_STOP: self._cmd_ptz_stop,
            CommandType.CAMERA_PTZ_GOTO_PRESET: self._cmd_goto_preset,
            CommandType.CAMERA_PTZ_SET_PRESET: self._cmd_set_preset,
            CommandType.CAMERA_REBOOT: self._cmd_reboot,
            CommandType.CAMERA_SYNC_TIME: self._cmd_sync_time,
            CommandType.CAMERA_LIVE_START: self._cmd_live_start,
            CommandType.CAMERA_LIVE_STOP: self._cmd_live_stop,
        }
        # Slow, and their order relative to other commands does not matter: they run beside the queue, so a
        # camera slow to open never holds up a PTZ stop.
        concurrent = {
            CommandType.CAMERA_DISCOVER,
            CommandType.CAMERA_SNAPSHOT,
            CommandType.CAMERA_LIVE_START,
            CommandType.CAMERA_LIVE_STOP,
        }
        for name, handler in handlers.items():
            registry.register(name.value, handler, concurrent=name in concurrent)

    async def _ready(self) -> None:
        try:
            await wait_for(self._loaded.wait(), READY_TIMEOUT_S)
        except TimeoutError:
            raise CommandFailed("the camera manager is not running") from None

    async def _worker(self, device_id: str) -> CameraWorker:
        await self._ready()
        worker = self.workers.get(device_id)
        if worker is None:
            raise CommandFailed(f"unknown camera {device_id}")
        return worker

    def _open(self, sealed: str) -> Credentials:
        if self.host.box_key is None:
            raise CommandFailed("the node has no key to open sealed credentials")
        try:
            return open_credentials(self.host.box_key, sealed)
        except SealingError as exc:
            raise CommandFailed(str(exc)) from None

    @property
    def _describe_wait_s(self) -> float:
        """How long adoption waits for the first description (commands run one at a time: keep it short)."""
        return min(self.settings.onvif_timeout_s + 2, ADOPT_WAIT_MAX_S)

    async def _cmd_discover(self, command: Command) -> dict[str, Any]:
        await self._ready()
        count = await self.discover("command")
        return {"found": count, "endpoints": self.last_discovery[:32]}

    async def _cmd_adopt(self, command: Command) -> dict[str, Any]:
        params = _params(AdoptCameraParams, command)
        await self._ready()
        if not params.onvif_address and not params.stream_uri:
            raise CommandFailed("give an ONVIF address or a stream URI")
        for uri in (params.onvif_address, params.stream_uri or ""):
            if _has_userinfo(uri):
                raise CommandFailed("addresses must not carry credentials: send them sealed")
        async with self._adopt_lock:
            old = self.workers.get(params.device_id)
            credentials = (
                self._open(params.sealed_credentials)
                if params.sealed_credentials
                else (old.camera.credentials if old is not None else None)
            )
            camera = StoredCamera(
                device_id=params.device_id,
                name=params.name,
                onvif_address=params.onvif_address,
                endpoint=params.endpoint,
                stream_uri=params.stream_uri,
                thresholds=params.thresholds,
                credentials=credentials,
            )
            await self.store.put(camera)
            if old is not None:
                self.workers.pop(params.device_id, None)
                await self._retire(old)
            worker = self._start(camera)
        log.info("camera.adopted", device_id=camera.device_id, readopted=old is not None)
        with contextlib.suppress(TimeoutError):
            await wait_for(worker.described_once.wait(), self._describe_wait_s)
        await self.host.emit_event(
            "camera.adopted", Severity.INFO, camera.device_id, f"camera adopted: {camera.name}"[:200]
        )
        return worker.summary()

    async def _cmd_forget(self, command: Command) -> dict[str, Any]:
        params = _params(CameraRef, command)
        await self._ready()
        async with self._adopt_lock:
            worker = self.workers.pop(params.device_id, None)
            if worker is not None:
                await self._retire(worker)
            known = await self.store.remove(params.device_id)
        # Idempotent: forgetting an unknown camera still clears what the broker may retain about it.
        cleared = all([await self.host.clear_retained(ch, params.device_id) for ch in (Channel.STATE, Channel.INFO)])
        if known:
            await self.host.emit_event("camera.forgotten", Severity.INFO, params.device_id, "camera forgotten")
        log.info("camera.forgotten", device_id=params.device_id, known=known)
        return {"device_id": params.device_id, "forgotten": known, "retained_cleared": cleared}

    async def _cmd_credentials(self, command: Command) -> dict[str, Any]:
        params = _params(CameraCredentialsParams, command)
        old = await self._worker(params.device_id)
        credentials = self._open(params.sealed_credentials)
        async with self._adopt_lock:
            camera = old.camera.model_copy(update={"credentials": credentials})
            await self.store.put(camera)
            self.workers.pop(params.device_id, None)
            await self._retire(old)
            worker = self._start(camera)
        log.info("camera.credentials_changed", device_id=params.device_id)
        with contextlib.suppress(TimeoutError):
            await wait_for(worker.described_once.wait(), self._describe_wait_s)
        return worker.summary()

    async def _cmd_snapshot(self, command: Command) -> dict[str, Any]:
        params = _params(CameraRef, command)
        worker = await self._worker(params.device_id)
        return {"device_id": params.device_id, **await worker.snapshot("on_demand")}

    async def _cmd_ptz_move(self, command: Command) -> dict[str, Any]:
        params = _params(PtzMoveParams, command)
        worker = await self._worker(params.device_id)
        onvif = worker.require_ptz()
        await worker.call(onvif.ptz_move(params.pan, params.tilt, params.zoom, params.timeout_s))
        return {"device_id": params.device_id, "moving": True}

    async def _cmd_ptz_stop(self, command: Command) -> dict[str, Any]:
        params = _params(CameraRef, command)
        worker = await self._worker(params.device_id)
        await worker.call(worker.require_ptz().ptz_stop())
        return {"device_id": params.device_id, "stopped": True}

    async def _cmd_goto_preset(self, command: Command) -> dict[str, Any]:
        params = _params(PtzPresetParams, command)
        if not params.token:
            raise CommandFailed("invalid parameters: token: a preset token is required")
        worker = await self._worker(params.device_id)
        await worker.call(worker.require_ptz().goto_preset(params.token))
        return {"device_id": params.device_id, "token": params.token}

    async def _cmd_set_preset(self, command: Command) -> dict[str, Any]:
        params = _params(PtzPresetParams, command)
        if not params.name:
            raise CommandFailed("invalid parameters: name: a preset name is required")
        worker = await self._worker(params.device_id)
        token = await worker.call(worker.require_ptz().set_preset(params.name))
        await worker.refresh_info()  # the preset list changed: CameraInfo lists it
        return {"device_id": params.device_id, "token": str(token)[:64], "name": params.name}

    async def _cmd_reboot(self, command: Command) -> dict[str, Any]:
        params = _params(CameraRef, command)
        worker = await self._worker(params.device_id)
        await worker.call(worker.require_onvif().reboot())
        await self.host.emit_event("camera.reboot", Severity.WARNING, params.device_id, "reboot requested")
        return {"device_id": params.device_id, "rebooting": True}

    async def _cmd_sync_time(self, command: Command) -> dict[str, Any]:
        params = _params(CameraRef, command)
        worker = await self._worker(params.device_id)
        onvif = worker.require_onvif()
        await worker.call(onvif.sync_time())
        skew = await worker.call(onvif.clock_skew())
        return {"device_id": params.device_id, "synced": True, "clock_skew_s": skew}

    # ---------------------------------------------------------------------------------------------- live view

    async def _request_keyframe(self, device_id: str, stream: LiveStream) -> bool:
        worker = self.workers.get(device_id)
        return await worker.request_keyframe(stream) if worker is not None else False

    async def _cmd_live_start(self, command: Command) -> dict[str, Any]:
        params = _params(LiveStartParams, command)
        await self._ready()
        if params.device_id not in self.workers:
            raise CommandFailed(f"unknown camera {params.device_id}", reason=LiveError.UNKNOWN_CAMERA.value)

        def uri_for(device_id: str, stream: LiveStream) -> StreamAddress | None:
            worker = self.workers.get(device_id)
            return worker.live_address(stream) if worker is not None else None

        result = await self.live.start(params, uri_for)
        return result.model_dump(mode="json")

    async def _cmd_live_stop(self, command: Command) -> dict[str, Any]:
        params = _params(LiveStopParams, command)
        stopped = await self.live.stop(params.session_id, LiveEndReason.VIEWER_LEFT, device_id=params.device_id)
        return {"device_id": params.device_id, "session_id": params.session_id, "stopped": stopped}

    async def _live_ended(self, device_id: str, ended: LiveEnded) -> None:
        """Publish a ``camera.live.ended`` event (warning when the camera's stream was lost)."""
        severity = Severity.WARNING if ended.reason is LiveEndReason.SOURCE_LOST else Severity.INFO
        message = f"live view ended: {ended.reason.value}" + (f" ({ended.detail})" if ended.detail else "")
        await self.host.emit_event(LIVE_ENDED_EVENT, severity, device_id, message[:300], ended.model_dump(mode="json"))
