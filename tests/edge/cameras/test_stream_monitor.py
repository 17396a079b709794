"""Stream health of a camera, end to end against a real GStreamer RTSP server (the issue's must-show list)."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import signal
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field

import cv2
import numpy as np
import pytest
import structlog

from edge.cameras.stream_monitor import StreamHealth, StreamMonitor
from tests.support.rtsp_server import RtspServer, SilentTcpServer
from varta.contract import CameraReason, CameraThresholds, DeviceStatus
from varta.sealing import Credentials

PASSWORD = "Zx9-very-secret"
# Quick samples for short tests; a lenient frame-rate floor so that a busy CI machine (the encoder shares its two
# cores) does not turn a test about something else into low_fps (the low_fps test sets its own).
FAST = CameraThresholds(probe_interval_s=1, frozen_after_s=3, resend_interval_s=5, min_fps_ratio=0.2)


@dataclass
class Recorder:
    """Collects every ``on_change`` call and lets a test wait for a state."""

    seen: list[tuple[float, StreamHealth]] = field(default_factory=list)
    changed: asyncio.Event = field(default_factory=asyncio.Event)

    async def __call__(self, health: StreamHealth) -> None:
        self.seen.append((time.monotonic(), health))
        self.changed.set()

    async def wait_for(self, match: Callable[[StreamHealth], bool], timeout: float) -> StreamHealth:
        deadline = time.monotonic() + timeout
        while True:
            for _, health in reversed(self.seen[-1:]):
                if match(health):
                    return health
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                last = self.seen[-1][1] if self.seen else None
                raise AssertionError(f"no matching health within {timeout} s; last: {last}")
            self.changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.changed.wait(), remaining)


def status(s: DeviceStatus, reason: CameraReason | None = None) -> Callable[[StreamHealth], bool]:
    return lambda h: h.status is s and h.reason is reason


@contextlib.asynccontextmanager
async def monitoring(
    uri: str,
    *,
    credentials: Credentials | None = None,
    thresholds: CameraThresholds = FAST,
    nominal_fps: float | None = None,
) -> AsyncIterator[tuple[StreamMonitor, Recorder]]:
    recorder = Recorder()
    monitor = StreamMonitor(
        "cam-1", uri, credentials=credentials, thresholds=thresholds, on_change=recorder, nominal_fps=nominal_fps
    )
    task = asyncio.create_task(monitor.run())
    try:
        yield monitor, recorder
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        assert task.cancelled()  # run() ends only by cancellation, never by an exception


@pytest.fixture
def server() -> Iterator[RtspServer]:
    srv = RtspServer(width=1280, height=720, fps=25).start()
    try:
        yield srv
    finally:
        srv.stop()


async def test_a_working_camera_is_online_with_its_resolution_and_frame_rate(server: RtspServer) -> None:
    async with monitoring(server.url()) as (monitor, recorder):
        online = await recorder.wait_for(status(DeviceStatus.ONLINE), timeout=15)
        assert (online.width, online.height) == (1280, 720)
        assert online.connect_ms is not None and online.connect_ms < 2000
        await asyncio.sleep(3)  # the frame rate is measured over a few seconds of arrivals
        health = monitor.health
        assert health.status is DeviceStatus.ONLINE
        assert health.fps is not None and 20 <= health.fps <= 30  # 25 fps served
        attrs = health.attrs()
        assert attrs["width"] == 1280 and attrs["height"] == 720 and attrs["fps"] == health.fps
        assert isinstance(attrs["last_frame_at"], str)
        assert monitor.counters["connects"] == 1


async def test_state_is_re_sent_every_resend_interval(server: RtspServer) -> None:
    async with monitoring(server.url()) as (_, recorder):
        await recorder.wait_for(status(DeviceStatus.ONLINE), timeout=15)
        start = len(recorder.seen) - 1
        await asyncio.sleep(11)
        sent = recorder.seen[start:]
        gaps = [b[0] - a[0] for a, b in itertools.pairwise(sent) if a[1].same_state(b[1])]
        assert len(gaps) >= 2, sent  # unchanged, yet sent again at ~5 s and ~10 s (FAST.resend_interval_s = 5)
        assert all(4.5 < gap < 6.5 for gap in gaps), gaps


async def test_a_stopped_server_is_unreachable_within_10_s_and_back_online_by_itself(server: RtspServer) -> None:
    async with monitoring(server.url(), thresholds=FAST) as (monitor, recorder):
        await recorder.wait_for(status(DeviceStatus.ONLINE), timeout=15)
        server.stop(signal.SIGKILL)  # power cut
        stopped = time.monotonic()
        offline = await recorder.wait_for(status(DeviceStatus.OFFLINE, CameraReason.UNREACHABLE), timeout=10)
        assert time.monotonic() - stopped < 10
        assert offline.fps is None
        server.start()
        await recorder.wait_for(status(DeviceStatus.ONLINE), timeout=25)  # back-off retries 1 s, 5 s, 10 s
        assert monitor.counters["connects"] == 2


async def test_a_still_picture_is_frozen_and_recovers(server: RtspServer) -> None:
    async with monitoring(server.url()) as (_, recorder):
        await recorder.wait_for(status(DeviceStatus.ONLINE), timeout=15)
        server.set_pattern("still")
        switched = time.monotonic()
        frozen = await recorder.wait_for(status(DeviceStatus.DEGRADED, CameraReason.FROZEN), timeout=15)
        assert time.monotonic() - switched >= FAST.frozen_after_s - 1.5
        assert "unchanged" in frozen.detail
        assert frozen.fps is not None and frozen.fps > 20  # frames keep arriving: frame rate alone misses this
        server.set_pattern("moving")
        await recorder.wait_for(status(DeviceStatus.ONLINE), timeout=10)


async def test_a_black_picture_is_black(server: RtspServer) -> None:
    async with monitoring(server.url()) as (_, recorder):
        await recorder.wait_for(status(DeviceStatus.ONLINE), timeout=15)
        server.set_pattern("black")
        black = await recorder.wait_for(status(DeviceStatus.DEGRADED, CameraReason.BLACK), timeout=10)
        assert "black" in black.detail


async def test_frames_below_the_nominal_rate_are_low_fps() -> None:
    with RtspServer(fps=5) as slow:
        async with monitoring(slow.url(), nominal_fps=25) as (_, recorder):
            low = await recorder.wait_for(status(DeviceStatus.DEGRADED, CameraReason.LOW_FPS), timeout=15)
            assert "fps" in low.detail


async def test_wrong_password_is_auth_failed_and_the_right_one_works(capfd: pytest.CaptureFixture[str]) -> None:
    with (
        RtspServer(user="viewer", password=PASSWORD) as secured,
        structlog.testing.capture_logs() as logs,
    ):
        wrong = Credentials(username="viewer", password="wrong-" + PASSWORD)
        async with monitoring(secured.url(), credentials=wrong) as (monitor, recorder):
            failed = await recorder.wait_for(status(DeviceStatus.OFFLINE, CameraReason.AUTH_FAILED), timeout=10)
            monitor.update(credentials=Credentials(username="viewer", password=PASSWORD))
            await recorder.wait_for(status(DeviceStatus.ONLINE), timeout=15)
            shot = await monitor.snapshot_jpeg(max_width=320)
            text = repr(monitor) + repr(failed) + repr(recorder.seen) + repr(logs)
    captured = capfd.readouterr()
    assert shot is not None
    assert PASSWORD not in text + captured.out + captured.err
    assert any(entry.get("status") == "online" for entry in logs)


async def test_a_port_that_never_speaks_rtsp_is_a_timeout() -> None:
    with SilentTcpServer() as silent:
        async with monitoring(silent.url(), thresholds=CameraThresholds(connect_timeout_s=2)) as (_, recorder):
            timeout = await recorder.wait_for(status(DeviceStatus.OFFLINE, CameraReason.TIMEOUT), timeout=10)
            assert "RTSP" in timeout.detail


async def test_snapshot_is_a_jpeg_of_the_live_picture(server: RtspServer) -> None:
    async with monitoring(server.url()) as (monitor, recorder):
        await recorder.wait_for(status(DeviceStatus.ONLINE), timeout=15)
        shot = await monitor.snapshot_jpeg(max_width=640, timeout_s=5)
        assert shot is not None
        data, width, height = shot
        assert (width, height) == (640, 360)
        img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
        assert img is not None
        assert img.shape == (360, 640, 3)
        assert img.mean() > 40  # the colour bars, not a grey or black error frame
    server.stop()
    assert await monitor.snapshot_jpeg() is None  # not streaming


async def test_a_hung_camera_never_stalls_the_event_loop_nor_piles_up_threads(server: RtspServer) -> None:
    """SIGSTOP freezes the server: TCP stays open, nothing arrives. The loop keeps ticking; one thread at most."""
    thresholds = FAST.model_copy(update={"read_timeout_s": 2, "connect_timeout_s": 2})
    async with monitoring(server.url(), thresholds=thresholds) as (monitor, recorder):
        await recorder.wait_for(status(DeviceStatus.ONLINE), timeout=15)
        threads_before = threading.active_count()
        assert server.proc is not None
        server.proc.send_signal(signal.SIGSTOP)
        hung = time.monotonic()
        try:
            max_lag = 0.0
            while time.monotonic() - hung < 20:
                t0 = time.monotonic()
                await asyncio.sleep(0.02)
                max_lag = max(max_lag, time.monotonic() - t0 - 0.02)
                assert threading.active_count() <= threads_before + 1
            offline = [(t - hung, h) for t, h in recorder.seen if t > hung and h.status is DeviceStatus.OFFLINE]
            assert offline, recorder.seen[-1]
            assert offline[0][0] < thresholds.offline_after_s
            assert offline[0][1].reason in {CameraReason.NO_FRAMES, CameraReason.TIMEOUT}
            assert max_lag < 0.1
        finally:
            server.proc.send_signal(signal.SIGCONT)
        await recorder.wait_for(status(DeviceStatus.ONLINE), timeout=30)
        assert monitor.health.status is DeviceStatus.ONLINE


async def test_a_camera_without_address_waits_and_update_switches_streams_live() -> None:
    with RtspServer(paths=("main", "sub")) as cams:
        async with monitoring("") as (monitor, recorder):
            await recorder.wait_for(status(DeviceStatus.OFFLINE, CameraReason.NOT_CONFIGURED), timeout=5)
            monitor.update(stream_uri=cams.url("main"))
            await recorder.wait_for(status(DeviceStatus.ONLINE), timeout=15)
            assert monitor.stream_uri == cams.url("main")
            monitor.update(stream_uri=cams.url("missing"))
            error = await recorder.wait_for(status(DeviceStatus.OFFLINE, CameraReason.STREAM_ERROR), timeout=10)
            assert "404" in error.detail
            monitor.update(stream_uri=cams.url("sub"))
            await recorder.wait_for(status(DeviceStatus.ONLINE), timeout=15)  # at once, not after the back-off
            assert monitor.counters["connects"] == 2
