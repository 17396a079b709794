"""One adopted camera at the edge: ONVIF description, stream health, thumbnails and events (:class:`CameraWorker`).

Each part runs in its own supervised task, so one misbehaving camera never stalls the others or the agent:

* describe over ONVIF (retried with back-off while unreachable), then retained ``CameraInfo`` on ``info/<device>``;
* a :class:`~edge.cameras.stream_monitor.StreamMonitor` whose health becomes the retained ``DeviceState``
  (status, reason, resolution, fps, connect time), with a ``camera.status`` event on every status/reason change
  and a re-send every ``thresholds.resend_interval_s``;
* a thumbnail every ``thresholds.snapshot_interval_s`` (ONVIF snapshot URI, the RTSP frame as fallback);
* ONVIF PullPoint events as ``camera.<kind>`` events; an active tamper makes the state ``degraded``/``tamper``.

Credentials are handed to the ONVIF client and the stream monitor only; :class:`Scrubber` keeps them out of every
message, command result, exception text and log line.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import urllib.parse
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, Final, Literal, Protocol, TypeVar

import structlog
from nacl.public import PrivateKey

from edge.cameras.config import CameraSettings
from edge.cameras.live.source import StreamAddress
from edge.cameras.onvif_client import CameraDescription, CameraEvent, OnvifCamera, OnvifError
from edge.cameras.rtsp_check import strip_credentials
from edge.cameras.snapshots import SnapshotError, snapshot_message, thumbnail
from edge.cameras.store import StoredCamera
from edge.cameras.stream_monitor import StreamHealth, StreamMonitor
from edge.cameras.stream_probe import url_with_credentials
from edge.commands import CommandFailed, CommandRegistry
from edge.devices import Attrs, DeviceSink
from edge.outbox import MessageClass
from varta.aio import wait_for
from varta.contract import (
    CameraInfo,
    CameraReason,
    Channel,
    DeviceKind,
    DeviceStatus,
    Envelope,
    LiveStream,
    Severity,
    utcnow,
)
from varta.sealing import Credentials
from varta.supervise import supervise

log = structlog.get_logger(__name__)

T = TypeVar("T")

DESCRIBE_BACKOFF_S: Final = (1.0, 5.0, 10.0, 30.0, 60.0)
FIRST_SNAPSHOT_DELAY_S: Final = 1.0
EVENT_RETRY_S: Final = (1.0, 5.0, 10.0, 60.0)
_KIND_RE: Final = re.compile(r"[^a-z0-9_.]+")

Published = tuple[DeviceStatus, str | None]


class CameraHost(DeviceSink, Protocol):
    """What the manager needs from the edge agent (:class:`~edge.agent.EdgeAgent` provides it)."""

    node_id: str
    registry: CommandRegistry
    capabilities: list[str]
    box_key: PrivateKey | None

    @property
    def data_dir(self) -> Path: ...

    def envelope(self) -> dict[str, Any]: ...

    async def publish_message(
        self, channel: Channel, message: Envelope, *, device: str | None = None, cls: MessageClass | None = None
    ) -> int: ...

    async def clear_retained(self, channel: Channel, device: str) -> bool: ...


class Scrubber:
    """Removes a camera's user name and password (and any ``user:pass@`` in URLs) from text meant for others."""

    def __init__(self, credentials: Credentials | None) -> None:
        self._secrets = []
        if credentials is not None:
            password = credentials.password.get_secret_value()
            self._secrets = [s for s in (password, urllib.parse.quote(password, safe="")) if len(s) >= 1]

    def __call__(self, text: str, limit: int = 1000) -> str:
        for secret in self._secrets:
            text = text.replace(secret, "***")
        text = re.sub(r"(\w+://)[^/@\s]*@", r"\1", text)
        return text[:limit]


def _severity(status: DeviceStatus) -> Severity:
    if status is DeviceStatus.OFFLINE:
        return Severity.CRITICAL
    return Severity.WARNING if status is DeviceStatus.DEGRADED else Severity.INFO


class CameraWorker:
    """One adopted camera: its ONVIF client, stream monitor, state, thumbnails and events."""

    def __init__(self, host: CameraHost, settings: CameraSettings, camera: StoredCamera) -> None:
        self.host = host
        self.settings = settings
        self.camera = camera
        self.device_id = camera.device_id
        self.scrub = Scrubber(camera.credentials)
        self.onvif: OnvifCamera | None = None
        self.description: CameraDescription | None = None
        self.onvif_problem: tuple[CameraReason, str] | None = None
        self.monitor: StreamMonitor | None = None
        self.health: StreamHealth | None = None
        self.tamper_active = False
        self.described_once = asyncio.Event()
        """Set after the first description attempt (success or failure)."""
        self.published: Published | None = None
        self.snapshots_sent = 0
        self.events_received = 0
        self._event_states: dict[str, bool] = {}
        self._stop = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._state_lock = asyncio.Lock()
        self._snapshot_lock = asyncio.Lock()

    # ---------------------------------------------------------------------------------------------- life cycle

    @property
    def stream_uri(self) -> str:
        """The RTSP address monitored (the override, else what ONVIF said), without credentials."""
        if self.camera.stream_uri:
            return strip_credentials(self.camera.stream_uri)
        return strip_credentials(self.description.stream_uri) if self.description is not None else ""

    def live_address(self, stream: LiveStream) -> StreamAddress:
        """The main or sub stream's RTSP address WITH credentials, for live view only (never log or keep it).

        The operator's ``stream_uri`` override serves both; without a sub stream the main one is used; the URL is
        empty while the camera has no address (not described yet).
        """
        d = self.description
        if self.camera.stream_uri:
            uri = self.camera.stream_uri
        elif d is None:
            uri = ""
        else:
            uri = (d.sub_stream_uri if stream is LiveStream.SUB else "") or d.stream_uri
        return StreamAddress(url_with_credentials(uri, self.camera.credentials) if uri else "", self.scrub)

    async def request_keyframe(self, stream: LiveStream) -> bool:
        """Ask the camera over ONVIF for a keyframe on *stream* now (a late live viewer then waits ~0.1 s instead
        of a keyframe interval); False when it cannot be asked (no ONVIF, an RTSP override, not described)."""
        d = self.description
        if self.onvif is None or d is None or self.camera.stream_uri:
            return False
        token = (d.sub_profile if stream is LiveStream.SUB else None) or d.main_profile
        if not token:
            return False
        try:
            await self._onvif_call(self.onvif.request_keyframe(token), factor=1.0)
        except (OnvifError, TimeoutError) as exc:
            log.debug("camera.keyframe_request_failed", device_id=self.device_id, error=self.scrub(str(exc))[:200])
            return False
        return True

    def start(self) -> None:
        """Start the camera's loops."""
        if self.camera.onvif_address:
            self.onvif = OnvifCamera(
                self.camera.onvif_address, self.camera.credentials, timeout_s=self.settings.onvif_timeout_s
            )
            self._spawn("describe", self._describe_loop)
        else:
            self.described_once.set()
            self._spawn("describe", self._without_onvif)
        self._spawn("resend", self._resend_loop)

    async def stop(self) -> None:
        """Stop every loop and close the ONVIF client."""
        self._stop.set()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()
        if self.onvif is not None:
            with contextlib.suppress(Exception):
                await wait_for(self.onvif.close(), 5)

    def _spawn(self, name: str, loop: Callable[[], Awaitable[None]]) -> None:
        label = f"camera-{self.device_id}-{name}"
        self._tasks.append(asyncio.create_task(supervise(label, loop, self._stop), name=label))

    async def _sleep(self, seconds: float) -> bool:
        """Sleep unless stopped; True when stopped."""
        with contextlib.suppress(TimeoutError):
            await wait_for(self._stop.wait(), seconds)
        return self._stop.is_set()

    async def _onvif_call(self, call: Awaitable[T], *, factor: float = 2.0) -> T:
        """An ONVIF call bounded in time even if the client's own timeout does not fire."""
        return await wait_for(call, self.settings.onvif_timeout_s * factor + 1)

    # ---------------------------------------------------------------------------------------------- describe

    async def _without_onvif(self) -> None:
        await self.publish_info()
        if self.stream_uri:
            self._start_stream()
        await self.publish_state()
        await self._stop.wait()

    async def _describe_loop(self) -> None:
        attempt = 0
        while self.description is None:
            if await self.describe():
                break
            await self.publish_state()
            self.described_once.set()
            delay = min(DESCRIBE_BACKOFF_S[min(attempt, len(DESCRIBE_BACKOFF_S) - 1)], self.settings.describe_retry_s)
            attempt += 1
            if await self._sleep(delay):
                return
        self.described_once.set()
        await self._stop.wait()

    async def describe(self) -> bool:
        """Ask the camera who it is; on success publish its info and start monitoring. False on failure."""
        assert self.onvif is not None
        try:
            description = await self._onvif_call(self.onvif.describe(), factor=4)
        except OnvifError as exc:
            self.onvif_problem = (exc.reason, self.scrub(f"ONVIF: {exc.detail}"))
            log.info("camera.describe_failed", device_id=self.device_id, reason=exc.reason.value)
            return False
        except TimeoutError:
            self.onvif_problem = (CameraReason.TIMEOUT, "ONVIF: no answer in time")
            log.info("camera.describe_failed", device_id=self.device_id, reason="timeout")
            return False
        self.description, self.onvif_problem = description, None
        log.info(
            "camera.described",
            device_id=self.device_id,
            model=description.model,
            ptz=description.ptz,
            events=description.events,
        )
        await self.publish_info()
        if self.stream_uri:
            self._start_stream()
        else:
            await self.publish_state()
        if description.events:
            self._spawn("events", self._events_loop)
        return True

    async def refresh_info(self) -> None:
        """Describe an already described camera again (e.g. new presets) and republish its info."""
        if self.onvif is None:
            return
        try:
            self.description = await self._onvif_call(self.onvif.describe(), factor=4)
        except (OnvifError, TimeoutError) as exc:
            log.info("camera.refresh_failed", device_id=self.device_id, error=type(exc).__name__)
            return
        await self.publish_info()

    async def publish_info(self) -> None:
        """Publish the retained ``CameraInfo`` (what ONVIF told us, or what the operator gave)."""
        d = self.description
        info = CameraInfo(
            **self.host.envelope(),
            device_id=self.device_id,
            name=self.camera.name,
            onvif_address=strip_credentials(self.camera.onvif_address),
            manufacturer=d.manufacturer[:100] if d else "",
            model=d.model[:100] if d else "",
            firmware=d.firmware[:100] if d else "",
            serial=d.serial[:100] if d else "",
            hardware_id=d.hardware_id[:100] if d else "",
            profiles=list(d.profiles)[:32] if d else [],
            main_profile=d.main_profile if d else None,
            sub_profile=d.sub_profile if d else None,
            stream_uri=self.stream_uri[:500],
            snapshot_uri=strip_credentials(d.snapshot_uri or "")[:500] if d else "",
            ptz=bool(d.ptz) if d else False,
            presets=list(d.presets)[:64] if d else [],
            events=bool(d.events) if d else False,
            clock_skew_s=d.clock_skew_s if d else None,
            thresholds=self.camera.thresholds,
        )
        await self.host.publish_message(Channel.INFO, info, device=self.device_id)

    # ---------------------------------------------------------------------------------------------- stream health

    def _nominal_fps(self) -> float | None:
        d = self.description
        if d is None:
            return None
        for profile in d.profiles:
            if profile.token == d.main_profile and profile.fps:
                return float(profile.fps)
        return None

    def _start_stream(self) -> None:
        if self.monitor is not None:
            return
        self.monitor = StreamMonitor(
            self.device_id,
            self.stream_uri,
            credentials=self.camera.credentials,
            thresholds=self.camera.thresholds,
            on_change=self._on_health,
            nominal_fps=self._nominal_fps(),
        )
        self._spawn("stream", self.monitor.run)
        if self.camera.thresholds.snapshot_interval_s > 0:
            self._spawn("snapshots", self._snapshot_loop)

    async def _on_health(self, health: StreamHealth) -> None:
        self.health = health
        await self.publish_state()

    def current(self) -> tuple[DeviceStatus, str | None, str, Attrs]:
        """The camera's state now: (status, reason, detail, attrs)."""
        attrs: Attrs = {}
        d = self.description
        if d is not None:
            attrs.update({"model": d.model[:100], "ptz": bool(d.ptz)})
        host = urllib.parse.urlsplit(self.camera.onvif_address or self.stream_uri).hostname
        if host:
            attrs["address"] = host
        if self.health is not None:
            health = self.health
            attrs.update(health.attrs())
            status = DeviceStatus(health.status)
            reason = health.reason.value if isinstance(health.reason, CameraReason) else health.reason
            detail = health.detail
        elif self.onvif_problem is not None:
            status, reason, detail = DeviceStatus.OFFLINE, self.onvif_problem[0].value, self.onvif_problem[1]
        elif not self.stream_uri and (d is not None or not self.camera.onvif_address):
            status, reason = DeviceStatus.OFFLINE, CameraReason.NOT_CONFIGURED.value
            detail = "no stream address: the camera offers none and none was given"
        else:
            status, reason, detail = DeviceStatus.UNKNOWN, None, "connecting"
        if self.tamper_active and status is DeviceStatus.ONLINE:
            status, reason, detail = DeviceStatus.DEGRADED, CameraReason.TAMPER.value, "the camera reports tampering"
        return status, reason, self.scrub(detail), attrs

    async def publish_state(self, *, force_event: bool = False) -> None:
        """Publish the retained state; a ``camera.status`` event when status or reason changed."""
        async with self._state_lock:
            status, reason, detail, attrs = self.current()
            await self.host.set_device_state(
                self.device_id, DeviceKind.CAMERA, status, reason, detail, attrs, name=self.camera.name
            )
            previous = self.published
            if previous != (status, reason) or force_event:
                self.published = (status, reason)
                await self.host.emit_event(
                    "camera.status",
                    _severity(status),
                    self.device_id,
                    f"{status.value}" + (f": {reason}" if reason else ""),
                    {
                        "status": status.value,
                        "reason": reason,
                        "previous_status": previous[0].value if previous else None,
                        "previous_reason": previous[1] if previous else None,
                        "detail": detail[:300],
                    },
                )

    async def _resend_loop(self) -> None:
        # While the stream is monitored, the monitor re-sends its health (and with it this state) by itself.
        while not await self._sleep(self.camera.thresholds.resend_interval_s):
            if self.published is not None and self.monitor is None:
                await self.publish_state()

    # ---------------------------------------------------------------------------------------------- snapshots

    async def _snapshot_loop(self) -> None:
        if await self._sleep(FIRST_SNAPSHOT_DELAY_S):
            return
        while True:
            if self.health is None or self.health.status != DeviceStatus.OFFLINE.value:
                try:
                    await self.snapshot("periodic")
                except CommandFailed as exc:
                    log.info("camera.snapshot_failed", device_id=self.device_id, detail=str(exc)[:200])
            if await self._sleep(self.camera.thresholds.snapshot_interval_s):
                return

    async def snapshot(self, purpose: Literal["periodic", "on_demand"]) -> dict[str, Any]:
        """Take a thumbnail (ONVIF snapshot URI, else an RTSP frame) and publish it; returns its description."""
        async with self._snapshot_lock:
            taken_at = utcnow()
            picture: tuple[bytes, int, int] | None = None
            source: Literal["onvif", "rtsp"] = "onvif"
            problems: list[str] = []
            d = self.description
            if d is not None and d.snapshot_uri and self.onvif is not None:
                try:
                    raw = await self._onvif_call(self.onvif.snapshot())
                    picture = await wait_for(
                        asyncio.to_thread(
                            thumbnail, raw, self.settings.snapshot_max_width, self.settings.snapshot_jpeg_quality
                        ),
                        10,
                    )
                except OnvifError as exc:
                    problems.append(f"ONVIF snapshot: {exc.reason.value}")
                except (TimeoutError, SnapshotError) as exc:
                    problems.append(f"ONVIF snapshot: {type(exc).__name__} {exc}"[:200])
            if picture is None and self.monitor is not None:
                source = "rtsp"
                try:
                    picture = await wait_for(
                        self.monitor.snapshot_jpeg(max_width=self.settings.snapshot_max_width, timeout_s=5), 8
                    )
                except TimeoutError:
                    picture = None
                if picture is None:
                    problems.append("RTSP frame: none available")
            if picture is None:
                raise CommandFailed(self.scrub("no picture: " + ("; ".join(problems) or "camera not described yet")))
            jpeg, width, height = picture
            message = snapshot_message(
                self.host.envelope(),
                self.device_id,
                jpeg,
                width,
                height,
                taken_at=taken_at,
                source=source,
                purpose=purpose,
            )
            seq = await self.host.publish_message(Channel.SNAPSHOT, message, device=self.device_id)
            self.snapshots_sent += 1
            return {
                "seq": seq,
                "source": source,
                "width": width,
                "height": height,
                "bytes": len(jpeg),
                "taken_at": taken_at.isoformat(),
            }

    # ---------------------------------------------------------------------------------------------- ONVIF events

    async def _events_loop(self) -> None:
        assert self.onvif is not None
        failures = 0
        while not self._stop.is_set():
            try:
                async with self.onvif.events() as stream:
                    failures = 0
                    async for event in stream:
                        await self._on_event(event)
            except OnvifError as exc:
                log.info("camera.events_failed", device_id=self.device_id, reason=exc.reason.value)
            delay = EVENT_RETRY_S[min(failures, len(EVENT_RETRY_S) - 1)]
            failures += 1
            if await self._sleep(delay):
                return

    async def _on_event(self, event: CameraEvent) -> None:
        self.events_received += 1
        kind = event.kind if event.kind.startswith("camera.") else f"camera.{event.kind}"
        kind = _KIND_RE.sub("_", kind.lower())[:64].strip("_.") or "camera.event"
        active = event.active
        if active is not None:
            if self._event_states.get(kind) == active:
                return  # the same state again (a renewed subscription repeats the current state)
            self._event_states[kind] = active
        tamper = kind == "camera.tamper"
        data: dict[str, Any] = {"active": active, "topic": str(event.topic)[:200]}
        for key, value in list((event.data or {}).items())[:16]:
            data[f"onvif_{_KIND_RE.sub('_', str(key).lower())[:40]}"] = str(value)[:200]
        label = kind.removeprefix("camera.").replace("_", " ")
        state = "" if active is None else (" started" if active else " ended")
        await self.host.emit_event(
            kind,
            Severity.WARNING if tamper and active else Severity.INFO,
            self.device_id,
            self.scrub(f"{label}{state}"),
            data,
        )
        if tamper and active is not None and active != self.tamper_active:
            self.tamper_active = active
            await self.publish_state()

    # ---------------------------------------------------------------------------------------------- commands

    def require_onvif(self) -> OnvifCamera:
        """The ONVIF client of a described camera (else :class:`CommandFailed` naming the reason)."""
        if self.onvif is None:
            raise CommandFailed(f"camera {self.device_id} has no ONVIF address")
        if self.description is None:
            problem = self.onvif_problem[0].value if self.onvif_problem else "not described yet"
            raise CommandFailed(f"camera {self.device_id} is not reachable over ONVIF ({problem})")
        return self.onvif

    def require_ptz(self) -> OnvifCamera:
        """The ONVIF client of a PTZ camera (else :class:`CommandFailed`)."""
        onvif = self.require_onvif()
        assert self.description is not None
        if not self.description.ptz:
            raise CommandFailed(f"camera {self.device_id} has no PTZ")
        return onvif

    async def call(self, call: Awaitable[T]) -> T:
        """Run an ONVIF command; failures become :class:`CommandFailed` with the reason code."""
        try:
            return await self._onvif_call(call)
        except OnvifError as exc:
            raise CommandFailed(self.scrub(f"{exc.reason.value}: {exc.detail}")) from None
        except TimeoutError:
            raise CommandFailed("timeout: the camera did not answer in time") from None

    def summary(self) -> dict[str, Any]:
        """A credential-free description for command results."""
        status, reason, detail, _ = self.current()
        d = self.description
        return {
            **self.camera.public(),
            "onvif_address": strip_credentials(self.camera.onvif_address),
            "stream_uri": self.stream_uri,
            "status": status.value,
            "reason": reason,
            "detail": detail[:300],
            "described": d is not None,
            "manufacturer": d.manufacturer[:100] if d else "",
            "model": d.model[:100] if d else "",
            "ptz": bool(d.ptz) if d else False,
        }
