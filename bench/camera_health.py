"""CPU and memory of camera stream-health monitoring per 1080p25 H.264 camera, and time to detect a dead camera.

Run: ``python -m bench.camera_health [--cameras 1,4,8] [--seconds 30] [--kills 3]``

A GStreamer RTSP server (a separate process, its CPU is not counted) serves a 1080p25 H.264 test pattern; for
each camera count N a fresh child process (``--child N``) runs N :class:`~edge.cameras.stream_monitor.StreamMonitor`
each on its own RTSP connection, waits until all are ``online``, lets them settle, then measures its own CPU time
(user + system, all threads, minus the idle process's own) and memory (median of RSS and USS sampled every second,
and the largest USS) over ``--seconds``, against the same process before the monitors started. The event loop's
worst lag is recorded too. Then the server is SIGKILLed (a power cut) and the time until ``offline`` is measured
``--kills`` times, plus once for a server that hangs (SIGSTOP: TCP stays up). For reference, the cost of decoding
every frame (``cv2.VideoCapture.read()``) of one camera is measured too.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import signal
import statistics
import subprocess
import sys
import time
from typing import Any

import psutil

from tests.support.rtsp_server import RtspServer

WIDTH, HEIGHT, FPS = 1920, 1080, 25


def _cpu_s(proc: psutil.Process) -> float:
    t = proc.cpu_times()
    return float(t.user + t.system)


def _memory_mb(proc: psutil.Process) -> tuple[float, float]:
    info = proc.memory_full_info()
    return info.rss / 2**20, info.uss / 2**20


async def _lag_probe(worst: list[float]) -> None:
    while True:
        t0 = time.monotonic()
        await asyncio.sleep(0.1)
        worst[0] = max(worst[0], time.monotonic() - t0 - 0.1)


async def _child(url: str, cameras: int, seconds: float, probe_interval_s: float) -> dict[str, Any]:
    """Monitor *cameras* connections to *url*; return this process's CPU and memory figures."""
    from edge.cameras.stream_monitor import StreamHealth, StreamMonitor
    from varta.contract import CameraThresholds, DeviceStatus

    me = psutil.Process()
    worst = [0.0]
    lag = asyncio.create_task(_lag_probe(worst))
    await asyncio.sleep(1.0)
    rss0, uss0 = _memory_mb(me)
    idle0, t_idle = _cpu_s(me), time.monotonic()
    await asyncio.sleep(5.0)  # the process's own idle cost (event loop, lag probe), subtracted below
    idle_pct = 100 * (_cpu_s(me) - idle0) / (time.monotonic() - t_idle)
    states: dict[str, StreamHealth] = {}

    def recorder(name: str) -> Any:
        async def on_change(health: StreamHealth) -> None:
            states[name] = health

        return on_change

    thresholds = CameraThresholds(probe_interval_s=probe_interval_s)
    monitors = [
        StreamMonitor(f"cam-{i}", url, credentials=None, thresholds=thresholds, on_change=recorder(f"cam-{i}"))
        for i in range(cameras)
    ]
    tasks = [asyncio.create_task(m.run()) for m in monitors]
    try:
        deadline = time.monotonic() + 30
        while sum(1 for h in states.values() if h.status is DeviceStatus.ONLINE) < cameras:
            if time.monotonic() > deadline:
                raise RuntimeError(f"not all cameras online: {states}")
            await asyncio.sleep(0.2)
        await asyncio.sleep(5)  # settle: buffers, baselines, first samples
        worst[0] = 0.0
        cpu0, t0 = _cpu_s(me), time.monotonic()
        memory: list[tuple[float, float]] = []
        while time.monotonic() - t0 < seconds:
            await asyncio.sleep(1.0)
            memory.append(_memory_mb(me))
        cpu1, t1 = _cpu_s(me), time.monotonic()
        rss1 = statistics.median(m[0] for m in memory)
        uss1 = statistics.median(m[1] for m in memory)
        online = sum(1 for m in monitors if m.health.status is DeviceStatus.ONLINE)
        fps = [m.health.fps or 0.0 for m in monitors]
        return {
            "cameras": cameras,
            "online": online,
            "cpu_pct_total": 100 * (cpu1 - cpu0) / (t1 - t0) - idle_pct,
            "idle_pct": idle_pct,
            "rss_mb_delta": rss1 - rss0,
            "uss_mb_delta": uss1 - uss0,
            "rss_mb": rss1,
            "uss_mb_delta_max": max(m[1] for m in memory) - uss0,
            "loop_lag_max_ms": worst[0] * 1000,
            "fps_min": min(fps),
            "threads": me.num_threads(),
        }
    finally:
        lag.cancel()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, lag, return_exceptions=True)


def _naive_decode(url: str, seconds: float) -> float:
    """CPU % of one core to decode every frame of one camera (what sampling avoids)."""
    import cv2

    import edge.cameras.stream_probe  # noqa: F401  (sets the FFmpeg options before cv2 opens anything)

    me = psutil.Process()
    cap = cv2.VideoCapture(url, cv2.CAP_FFMPEG, [cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, 5000])
    try:
        for _ in range(FPS * 2):
            cap.read()
        cpu0, t0 = _cpu_s(me), time.monotonic()
        while time.monotonic() - t0 < seconds:
            cap.read()
        return 100 * (_cpu_s(me) - cpu0) / (time.monotonic() - t0)
    finally:
        cap.release()


async def _detect(server: RtspServer, kills: int) -> dict[str, list[float]]:
    """Seconds from SIGKILL (and from SIGSTOP) of the server to ``offline``."""
    from edge.cameras.stream_monitor import StreamHealth, StreamMonitor
    from varta.contract import CameraThresholds, DeviceStatus

    changes: list[tuple[float, StreamHealth]] = []

    async def on_change(health: StreamHealth) -> None:
        changes.append((time.monotonic(), health))

    async def wait(status: DeviceStatus, since: float, timeout: float) -> float:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for t, h in changes:
                if t >= since and h.status is status:
                    return t - since
            await asyncio.sleep(0.05)
        raise RuntimeError(f"no {status.value} within {timeout} s")

    monitor = StreamMonitor("cam-0", server.url(), credentials=None, thresholds=CameraThresholds(), on_change=on_change)
    task = asyncio.create_task(monitor.run())
    out: dict[str, list[float]] = {"kill": [], "hang": [], "back_online": []}
    try:
        await wait(DeviceStatus.ONLINE, 0, 30)
        for i in range(kills + 1):
            await asyncio.sleep(3)
            t0 = time.monotonic()
            assert server.proc is not None
            hang = i == kills
            server.proc.send_signal(signal.SIGSTOP if hang else signal.SIGKILL)
            out["hang" if hang else "kill"].append(await wait(DeviceStatus.OFFLINE, t0, 30))
            if hang:
                server.proc.send_signal(signal.SIGCONT)
            else:
                server.stop()
                server.start()
            t1 = time.monotonic()
            out["back_online"].append(await wait(DeviceStatus.ONLINE, t1, 90))
        return out
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--cameras", default="1,4,8", help="comma-separated camera counts")
    parser.add_argument("--seconds", type=float, default=30.0, help="measuring window per camera count")
    parser.add_argument("--kills", type=int, default=3, help="dead-camera detections to time")
    parser.add_argument("--probe-interval", type=float, default=3.0, help="CameraThresholds.probe_interval_s")
    parser.add_argument("--child", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(asyncio.run(_child(args.url, args.child, args.seconds, args.probe_interval))))
        return

    print(
        f"machine: {platform.machine()}, {os.cpu_count()} CPU, {platform.platform()}, Python {sys.version.split()[0]}"
    )
    print(
        f"command: python -m bench.camera_health --cameras {args.cameras} --seconds {args.seconds:g}"
        f" --kills {args.kills} --probe-interval {args.probe_interval:g}"
    )
    with RtspServer(width=WIDTH, height=HEIGHT, fps=FPS, bitrate_kbps=4096) as server:
        assert server.proc is not None
        gst = psutil.Process(server.proc.pid)
        print(
            f"camera: {WIDTH}x{HEIGHT} @ {FPS} fps H.264 (x264 ultrafast, 4 Mbit/s, 1 s GOP), GStreamer RTSP over TCP"
        )
        print(
            "\ncameras | monitor CPU % of one core (total / per camera) | RSS Δ MB / per camera"
            " | USS Δ MB / per camera | loop lag max ms | server CPU %"
        )
        for n in [int(x) for x in args.cameras.split(",")]:
            gst_cpu0, t0 = _cpu_s(gst), time.monotonic()
            out = subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "bench.camera_health",
                    f"--child={n}",
                    f"--url={server.url()}",
                    f"--seconds={args.seconds}",
                    f"--probe-interval={args.probe_interval}",
                ],
                capture_output=True,
                text=True,
                timeout=args.seconds + 120,
                check=False,
            )
            gst_pct = 100 * (_cpu_s(gst) - gst_cpu0) / (time.monotonic() - t0)
            if out.returncode != 0:
                print(f"{n}: child failed: {out.stderr[-2000:]}")
                continue
            r = json.loads(out.stdout.strip().splitlines()[-1])
            print(
                f"{n:7d} | {r['cpu_pct_total']:6.2f} / {r['cpu_pct_total'] / n:5.2f}"
                f" | {r['rss_mb_delta']:6.1f} / {r['rss_mb_delta'] / n:5.1f}"
                f" | {r['uss_mb_delta']:6.1f} / {r['uss_mb_delta'] / n:5.1f} (max {r['uss_mb_delta_max']:.1f})"
                f" | {r['loop_lag_max_ms']:5.1f} | {gst_pct:5.1f}"
                f"   (online {r['online']}/{n}, min fps {r['fps_min']}, threads {r['threads']},"
                f" idle process {r['idle_pct']:.2f} % subtracted)"
            )
        naive = _naive_decode(server.url(), min(args.seconds, 10))
        print(f"\nreference: decoding every frame of one camera (cv2 read()): {naive:.1f} % of one core")
        det = asyncio.run(_detect(server, args.kills))
    if det["kill"]:
        kill = ", ".join(f"{x:.2f}" for x in det["kill"])
        print(f"\ndead camera (SIGKILL) → offline: {kill} s (max {max(det['kill']):.2f} s; target ≤ 10 s)")
    print(f"hung camera (SIGSTOP, TCP open) → offline: {det['hang'][0]:.2f} s")
    print("camera back → online: " + ", ".join(f"{x:.2f}" for x in det["back_online"]) + " s (back-off 1, 5, 10, 60 s)")


if __name__ == "__main__":
    main()
