"""Stream health of one camera: ``online`` / ``degraded`` / ``offline`` with a reason code, kept up to date.

:class:`StreamMonitor` runs an RTSP pre-check (:mod:`edge.cameras.rtsp_check`, which names the failure), then one
:class:`~edge.cameras.stream_probe.CaptureSession` thread that reads the stream and hands over small samples; the
samples are judged by :class:`~edge.cameras.frame_checks.FrameAnalyzer`. Every change of status, reason or
resolution is passed to ``on_change``, and the current health is re-sent every ``resend_interval_s``. A lost stream
is retried after 1 s, 5 s, 10 s, then every 60 s (back to 1 s after a success). Nothing the camera does raises out
of :meth:`StreamMonitor.run`, and at most one capture thread per camera exists at any time.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta

import structlog

from edge.cameras.frame_checks import FrameAnalyzer, Verdict
from edge.cameras.rtsp_check import check_rtsp, strip_credentials
from edge.cameras.stream_probe import CaptureSession, Jpeg, SessionReport, url_with_credentials
from varta.aio import wait_for
from varta.contract import CameraReason, CameraThresholds, DeviceStatus
from varta.sealing import Credentials

log = structlog.get_logger(__name__)

BACKOFF_S = (1.0, 5.0, 10.0, 60.0)
TICK_S = 0.5  # how often the monitor looks at its capture thread
OPEN_GRACE_S = 2.0  # beyond connect_timeout_s before a hung open is given up
STALL_GRACE_S = 2.0  # beyond read_timeout_s before a capture thread that reports nothing is given up
FIRST_VERDICT_S = 3.0  # after connecting, wait this long for the first sample before calling the camera online

AttrValue = str | int | float | bool | None


@dataclass(frozen=True)
class StreamHealth:
    """The health of one camera stream as last judged."""

    status: DeviceStatus
    reason: CameraReason | None = None
    detail: str = ""
    width: int | None = None
    height: int | None = None
    fps: float | None = None
    connect_ms: float | None = None
    last_frame_at: datetime | None = None

    def attrs(self) -> dict[str, AttrValue]:
        """Measurements for ``DeviceState.attrs``."""
        return {
            "width": self.width,
            "height": self.height,
            "fps": self.fps,
            "connect_ms": None if self.connect_ms is None else round(self.connect_ms, 1),
            "last_frame_at": self.last_frame_at.isoformat() if self.last_frame_at else None,
        }

    def same_state(self, other: StreamHealth) -> bool:
        """True if *other* differs only in measurements (fps, times, detail), not in what a dispatcher sees."""
        return (self.status, self.reason, self.width, self.height) == (
            other.status,
            other.reason,
            other.width,
            other.height,
        )


UNKNOWN = StreamHealth(DeviceStatus.UNKNOWN, detail="not checked yet")


class StreamMonitor:
    """Watches one camera's RTSP stream until cancelled; see the module doc."""

    def __init__(
        self,
        device_id: str,
        stream_uri: str,
        *,
        credentials: Credentials | None,
        thresholds: CameraThresholds,
        on_change: Callable[[StreamHealth], Awaitable[None]],
        nominal_fps: float | None = None,
    ) -> None:
        self.device_id = device_id
        self._uri = strip_credentials(stream_uri)
        self._credentials = credentials
        self._thresholds = thresholds
        self._on_change = on_change
        self.nominal_fps = nominal_fps
        self._health = UNKNOWN
        self._sent_at = 0.0
        self._emit_lock = asyncio.Lock()
        self._reconfigured = asyncio.Event()
        self._session: CaptureSession | None = None
        self._analyzer = FrameAnalyzer(thresholds)
        self._verdict: Verdict | None = None
        self.counters: dict[str, int] = {"connects": 0, "failures": 0, "callback_errors": 0, "errors": 0}

    def __repr__(self) -> str:
        return f"StreamMonitor({self.device_id!r}, {self._uri!r}, status={self._health.status.value})"

    @property
    def health(self) -> StreamHealth:
        """The current health (``unknown`` until the first check)."""
        return self._health

    @property
    def stream_uri(self) -> str:
        """The stream address without credentials."""
        return self._uri

    def update(
        self,
        *,
        stream_uri: str | None = None,
        credentials: Credentials | None = None,
        clear_credentials: bool = False,
        thresholds: CameraThresholds | None = None,
    ) -> None:
        """Reconfigure live; a new address or new credentials reconnect at once (back-off reset)."""
        reconnect = False
        if stream_uri is not None and strip_credentials(stream_uri) != self._uri:
            self._uri = strip_credentials(stream_uri)
            reconnect = True
        if credentials is not None or clear_credentials:
            self._credentials = credentials
            reconnect = True
        if thresholds is not None and thresholds != self._thresholds:
            self._thresholds = thresholds
            self._analyzer = FrameAnalyzer(thresholds)
            reconnect = True  # the capture thread samples at the new interval
        if reconnect:
            self._analyzer.reset()
            self._verdict = None
            self._reconfigured.set()

    async def snapshot_jpeg(self, max_width: int = 640, timeout_s: float = 5) -> Jpeg | None:
        """A JPEG of the live stream's next keyframe: (bytes, width, height); None if not streaming or too slow."""
        session = self._session
        if session is None or not session.alive:
            return None
        fut = session.request_snapshot(max_width)
        try:
            return await wait_for(asyncio.wrap_future(fut), timeout_s)
        except TimeoutError:
            return None

    async def run(self) -> None:
        """Monitor until cancelled; camera problems become states, never exceptions."""
        resender = asyncio.create_task(self._resend_loop(), name=f"camera-resend-{self.device_id}")
        failures = 0
        try:
            while True:
                self._reconfigured.clear()
                try:
                    streamed = await self._session_once()
                except Exception as exc:  # a bug here must not end the monitoring of this camera
                    self.counters["errors"] += 1
                    log.exception("camera stream monitor failed", device_id=self.device_id)
                    await self._offline(CameraReason.STREAM_ERROR, f"monitor error ({type(exc).__name__})")
                    streamed = False
                if self._reconfigured.is_set():
                    failures = 0
                    continue
                if streamed:
                    failures = 0
                delay = BACKOFF_S[min(failures, len(BACKOFF_S) - 1)]
                failures += 1
                self.counters["failures"] += 1
                with contextlib.suppress(TimeoutError):
                    await wait_for(self._reconfigured.wait(), delay)
        finally:
            resender.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await resender
            await self._end_session()

    async def _end_session(self) -> None:
        """Stop the capture thread and wait (bounded) until it is gone: a thread left inside OpenCV when the
        interpreter exits aborts the process."""
        session = self._session
        if session is None:
            return
        session.stop()
        deadline = time.monotonic() + self._thresholds.read_timeout_s + OPEN_GRACE_S
        with contextlib.suppress(asyncio.CancelledError):
            while session.alive and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
        if session.alive:
            log.warning("camera capture thread still hung after stop", device_id=self.device_id)

    # --- one connection ---------------------------------------------------------------------------------------------

    async def _session_once(self) -> bool:
        """Pre-check, connect and watch until the stream ends; True if frames arrived."""
        t = self._thresholds
        if not self._uri:
            await self._set(StreamHealth(DeviceStatus.OFFLINE, CameraReason.NOT_CONFIGURED, "no stream address"))
            await self._reconfigured.wait()
            return False
        check = await check_rtsp(self._uri, self._credentials, t.connect_timeout_s)
        if check.reason is not None:
            await self._offline(check.reason, check.detail)
            return False
        if self._session is not None and self._session.alive:
            await self._offline(CameraReason.TIMEOUT, "the previous connection is still hung")
            return False
        session = CaptureSession(
            self.device_id,
            url_with_credentials(self._uri, self._credentials),
            open_timeout_s=t.connect_timeout_s,
            read_timeout_s=t.read_timeout_s,
            sample_interval_s=t.probe_interval_s,
        )
        self._session = session
        self._analyzer.new_stream()
        self._verdict = None
        self.counters["connects"] += 1
        session.start()
        try:
            return await self._watch(session)
        finally:
            session.stop()

    async def _watch(self, session: CaptureSession) -> bool:
        t = self._thresholds
        started = time.monotonic()
        opened_at: float | None = None
        last_sample = started
        streamed = False
        while True:
            with contextlib.suppress(TimeoutError):
                await wait_for(self._reconfigured.wait(), TICK_S)
            if self._reconfigured.is_set():
                return streamed
            report = session.take_report()
            now = time.monotonic()
            for at, sample in report.samples:
                self._verdict = self._analyzer.analyse(sample, at)
                last_sample = at
            if report.last_packet is not None:
                streamed = True
            if report.opened and opened_at is None:
                opened_at = now
            if report.ended:
                if report.end_reason == CameraReason.UNREACHABLE and streamed:
                    return True  # the stream dropped: the next pre-check (after 1 s) tells why
                await self._offline(report.end_reason or CameraReason.STREAM_ERROR, report.end_detail, report)
                return streamed
            if opened_at is None:
                if now - started > t.connect_timeout_s + OPEN_GRACE_S:
                    await self._offline(CameraReason.TIMEOUT, f"opening the stream took over {t.connect_timeout_s:g} s")
                    return False
                continue
            quiet = now - (report.last_packet or opened_at)
            if quiet > min(t.offline_after_s, t.read_timeout_s + STALL_GRACE_S):
                await self._offline(CameraReason.NO_FRAMES, f"no frame for {quiet:.0f} s", report)
                return streamed
            health = self._judge(report, now, opened_at, last_sample)
            if health is not None:
                await self._set(health)

    def _judge(self, report: SessionReport, now: float, opened_at: float, last_sample: float) -> StreamHealth | None:
        """The health while frames arrive; None while it is too early to say."""
        t = self._thresholds
        base = self._measured(DeviceStatus.ONLINE, None, "", report)
        verdict = self._verdict
        if verdict is None:
            if now - opened_at < max(FIRST_VERDICT_S, 2 * t.probe_interval_s):
                return None
            return replace(base, status=DeviceStatus.DEGRADED, reason=CameraReason.STREAM_ERROR, detail="no picture")
        no_sample_for = now - last_sample
        if no_sample_for > max(10.0, 3 * t.probe_interval_s):
            detail = f"no decodable picture for {no_sample_for:.0f} s"
            return replace(base, status=DeviceStatus.DEGRADED, reason=CameraReason.STREAM_ERROR, detail=detail)
        if verdict.reason is not None:
            return replace(base, status=DeviceStatus.DEGRADED, reason=verdict.reason, detail=verdict.detail)
        nominal = self.nominal_fps or report.stream_fps
        if nominal and report.fps is not None and report.fps < nominal * t.min_fps_ratio:
            detail = f"{report.fps:.1f} fps of {nominal:g} expected"
            return replace(base, status=DeviceStatus.DEGRADED, reason=CameraReason.LOW_FPS, detail=detail)
        return base

    def _measured(
        self, status: DeviceStatus, reason: CameraReason | None, detail: str, report: SessionReport | None
    ) -> StreamHealth:
        if report is None or not report.opened:
            old = self._health
            return StreamHealth(status, reason, detail, old.width, old.height, None, None, old.last_frame_at)
        last_frame_at = self._health.last_frame_at
        if report.last_packet is not None:
            last_frame_at = datetime.now(UTC) - timedelta(seconds=time.monotonic() - report.last_packet)
        return StreamHealth(
            status, reason, detail, report.width, report.height, report.fps, report.open_ms, last_frame_at
        )

    async def _offline(self, reason: CameraReason, detail: str, report: SessionReport | None = None) -> None:
        health = self._measured(DeviceStatus.OFFLINE, reason, detail, report)
        await self._set(replace(health, fps=None))

    # --- publishing -------------------------------------------------------------------------------------------------

    async def _set(self, health: StreamHealth) -> None:
        old, self._health = self._health, health
        if not old.same_state(health):
            log.info(
                "camera stream health",
                device_id=self.device_id,
                status=health.status.value,
                reason=health.reason.value if health.reason else None,
                detail=health.detail,
            )
            await self._emit()

    async def _resend_loop(self) -> None:
        while True:
            due = self._sent_at + self._thresholds.resend_interval_s - time.monotonic()
            if due > 0:
                await asyncio.sleep(min(due, 5.0))
                continue
            if self._health.status is not DeviceStatus.UNKNOWN:
                await self._emit()
            else:
                await asyncio.sleep(1.0)

    async def _emit(self) -> None:
        async with self._emit_lock:
            self._sent_at = time.monotonic()
            try:
                await self._on_change(self._health)
            except Exception:  # a failing subscriber must not stop the monitor
                self.counters["callback_errors"] += 1
                log.exception("camera health callback failed", device_id=self.device_id)
