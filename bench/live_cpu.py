"""Live view: CPU per stream-viewer at the node, passthrough versus decode + re-encode, measured in the same run.

Run: ``python -m bench.live_cpu [--width 1280 --height 720 --fps 25 --bitrate 2048] [--viewers 1,4,8] [--seconds 20]
[--modes passthrough,transcode]`` (about 3.5 minutes)

GStreamer's RTSP server (its own process, not counted) serves an H.264 test pattern (x264 ultrafast, 1 s GOP, RTSP
over TCP). For each viewer count N and each mode a fresh SENDER child process (``--child sender``) plays the node:

* **passthrough** — the product: :class:`~edge.cameras.live.sessions.LiveManager` answers N offers for one camera
  (one shared RTSP pull, the camera's H.264 forwarded, never decoded);
* **transcode** — what a naive node does: aiortc's ``MediaPlayer`` (RTSP over TCP, decodes every frame), one
  ``MediaRelay`` (unbuffered: an encoder that lags skips frames instead of queueing them) and aiortc's own H.264
  encoder in each viewer's sender (aiortc encodes per sender), same resolution.

The sender starts a RECEIVER child (``--child receiver``, separate, not counted) holding N recvonly aiortc peer
connections that offer H.264 only, exchanges SDP with it over its stdin/stdout (JSON lines), and asks it for frame
counts. The receiver decodes the first few frames of each viewer (to check the picture size), then only counts the
frames aiortc reassembles (its decoder is replaced in that process alone: the machine has 2 cores). Once every viewer
receives, the sender settles 5 s, then measures its own CPU time (user + system, all threads) over ``--seconds``
minus the same process's idle cost (5 s before the mode started), its RSS (median of 1 s samples, minus RSS before
the mode started), and the frames and bytes each viewer received per second, which proves both modes delivered video
(and shows when one cannot keep up).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import re
import statistics
import subprocess
import sys
import time
from typing import TYPE_CHECKING, Any, cast

import psutil

if TYPE_CHECKING:
    from aiortc import RTCPeerConnection, RTCRtpCodecParameters
    from aiortc.codecs.base import Decoder
    from aiortc.jitterbuffer import JitterFrame
    from aiortc.mediastreams import MediaStreamTrack

DEVICE = "cam-bench"
SETTLE_S = 5.0
IDLE_S = 5.0
FLOW_TIMEOUT_S = 40.0
DECODE_CHECK_FRAMES = 3
"""Frames each receiving viewer decodes (picture size check) before it only counts."""
KEEPS_UP = 0.96
"""A mode keeps up when every viewer received at least this share of the camera's frame rate."""
_FMTP_PLID = re.compile(r"^(a=fmtp:\d+ .*profile-level-id=)([0-9a-fA-F]{6})", re.MULTILINE)


def _cpu_s(proc: psutil.Process) -> float:
    t = proc.cpu_times()
    return float(t.user + t.system)


def _rss_mb(proc: psutil.Process) -> float:
    return float(proc.memory_info().rss) / 2**20


def _machine_busy() -> tuple[float, float]:
    """(busy, total) CPU seconds of the whole machine, all cores."""
    t = psutil.cpu_times()
    idle = t.idle + getattr(t, "iowait", 0.0)
    total = float(sum(t))
    return total - idle, total


# ---------------------------------------------------------------------------------------------------- receiver


class _CountingDecoder:
    """Decodes a viewer's first frames (their size proves a picture arrived), then hands on the encoded frames."""

    def __init__(self, codec: RTCRtpCodecParameters, real: Any) -> None:
        self.codec = codec
        self.real: Any = real(codec)
        self.decoded = 0
        self.tries = 0

    def decode(self, encoded_frame: JitterFrame) -> list[Any]:
        if self.real is not None:
            self.tries += 1
            try:
                frames: list[Any] = self.real.decode(encoded_frame)
            except Exception:
                frames = []
            self.decoded += len(frames)
            if self.decoded >= DECODE_CHECK_FRAMES or self.tries > 100:
                self.real = None
            if frames:
                return frames
        return [encoded_frame]


class _Viewer:
    """One recvonly peer connection counting the frames it receives."""

    def __init__(self) -> None:
        from aiortc import RTCConfiguration, RTCPeerConnection, RTCRtpReceiver

        self.pc: RTCPeerConnection = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        transceiver = self.pc.addTransceiver("video", direction="recvonly")
        caps = RTCRtpReceiver.getCapabilities("video")
        assert caps is not None
        h264 = [c for c in caps.codecs if c.mimeType.lower() in ("video/h264", "video/rtx")]
        transceiver.setCodecPreferences(h264)  # H.264 only, in both modes (no VP8)
        self.frames = 0
        self.bytes = 0
        self.size: tuple[int, int] | None = None
        self.ended = False
        self.tasks: list[asyncio.Task[None]] = []
        self.pc.on("track", self._on_track)

    def _on_track(self, track: MediaStreamTrack) -> None:
        self.tasks.append(asyncio.ensure_future(self._pump(track)))

    async def _pump(self, track: MediaStreamTrack) -> None:
        from aiortc.mediastreams import MediaStreamError

        try:
            while True:
                frame: Any = await track.recv()
                self.frames += 1
                data = getattr(frame, "data", None)
                if isinstance(data, bytes):
                    self.bytes += len(data)
                elif self.size is None and hasattr(frame, "width"):
                    self.size = (int(frame.width), int(frame.height))
        except MediaStreamError:
            self.ended = True

    def counts(self) -> dict[str, Any]:
        return {"frames": self.frames, "bytes": self.bytes, "size": self.size, "ended": self.ended}


def _emit(obj: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


async def _receiver(viewers: int) -> None:
    """N counting viewers; SDP and commands as JSON lines on stdin, replies on stdout."""
    import aiortc.rtcrtpreceiver as rtcrtpreceiver
    from aiortc import RTCSessionDescription

    real = getattr(rtcrtpreceiver, "get_decoder")  # noqa: B009  (not re-exported, for mypy)

    def counting_decoder(codec: RTCRtpCodecParameters) -> Decoder:
        return cast("Decoder", _CountingDecoder(codec, real))

    setattr(rtcrtpreceiver, "get_decoder", counting_decoder)  # noqa: B010  (this bench process only: no decoding)

    group = [_Viewer() for _ in range(viewers)]
    offers = []
    for v in group:
        await v.pc.setLocalDescription(await v.pc.createOffer())
        offers.append(v.pc.localDescription.sdp)
    _emit({"offers": offers})
    me = psutil.Process()
    try:
        while True:
            line = await asyncio.to_thread(sys.stdin.readline)
            if not line:
                break
            msg = json.loads(line)
            if "answers" in msg:
                for v, answer in zip(group, msg["answers"], strict=True):
                    # aiortc knows H.264 only as 42e01f/42001f; its FFmpeg decoder takes any profile (as browsers do)
                    sdp = _FMTP_PLID.sub(r"\g<1>42e01f", answer)
                    await v.pc.setRemoteDescription(RTCSessionDescription(sdp=sdp, type="answer"))
                _emit({"accepted": len(group)})
            elif msg.get("cmd") == "count":
                _emit({"t": time.monotonic(), "cpu_s": _cpu_s(me), "viewers": [v.counts() for v in group]})
            elif msg.get("cmd") == "quit":
                break
    finally:
        await asyncio.gather(*(v.pc.close() for v in group), return_exceptions=True)
        for v in group:
            for task in v.tasks:
                task.cancel()
        await asyncio.gather(*(t for v in group for t in v.tasks), return_exceptions=True)
    _emit({"bye": True})


# ---------------------------------------------------------------------------------------------------- sender


class _Peer:
    """The sender's end of the pipe to the receiver child."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc

    async def read(self, timeout: float = 30.0) -> dict[str, Any]:
        assert self.proc.stdout is not None
        while True:
            line = await asyncio.wait_for(self.proc.stdout.readline(), timeout)
            if not line:
                raise RuntimeError("the receiver ended")
            with contextlib.suppress(ValueError):
                return cast("dict[str, Any]", json.loads(line))

    async def ask(self, msg: dict[str, Any], timeout: float = 30.0) -> dict[str, Any]:
        assert self.proc.stdin is not None
        self.proc.stdin.write((json.dumps(msg) + "\n").encode())
        await self.proc.stdin.drain()
        return await self.read(timeout)


async def _passthrough(url: str, offers: list[str], on_exit: list[Any]) -> tuple[list[str], dict[str, Any]]:
    """The product: LiveManager answers every offer (one shared pull of the camera, no decoding)."""
    from edge.cameras.config import LiveSettings
    from edge.cameras.live.sessions import LiveManager
    from edge.cameras.live.source import StreamAddress
    from varta.contract import LiveEnded, LiveStartParams, LiveStream

    endings: list[LiveEnded] = []

    async def on_ended(_device_id: str, ended: LiveEnded) -> None:
        endings.append(ended)

    def uri_for(device_id: str, _stream: LiveStream) -> StreamAddress | None:
        return StreamAddress(url) if device_id == DEVICE else None

    n = len(offers)
    manager = LiveManager(LiveSettings(max_viewers_per_camera=n, max_viewers_per_node=n, linger_s=0), on_ended)
    on_exit.append(manager.close)
    answers = []
    codec = ""
    for i, offer in enumerate(offers):
        params = LiveStartParams(device_id=DEVICE, session_id=f"bench-session-{i:04d}", offer_sdp=offer)
        result = await manager.start(params, uri_for)
        answers.append(result.answer_sdp)
        codec = result.codec

    def info() -> dict[str, Any]:
        stats = manager.stats()
        return {
            "codec": codec,
            "pulls_opened": stats["pulls_opened"],
            "drops": sum(s["drops"] for s in stats["sources"].values()),
            "sessions_ended": [f"{e.reason.value}: {e.detail}" for e in endings],
        }

    return answers, {"info": info}


async def _transcode(url: str, offers: list[str], on_exit: list[Any]) -> tuple[list[str], dict[str, Any]]:
    """The naive node: MediaPlayer decodes, one MediaRelay, aiortc's H.264 encoder in every viewer's sender."""
    from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription
    from aiortc.contrib.media import MediaPlayer, MediaRelay

    player = await asyncio.to_thread(MediaPlayer, url, options={"rtsp_transport": "tcp"}, timeout=10)
    assert player.video is not None
    relay = MediaRelay()
    pcs: list[RTCPeerConnection] = []

    async def close() -> None:
        await asyncio.gather(*(pc.close() for pc in pcs), return_exceptions=True)
        if player.video is not None:
            await asyncio.to_thread(player.video.stop)

    on_exit.append(close)
    answers = []
    for offer in offers:
        pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        pcs.append(pc)
        await pc.setRemoteDescription(RTCSessionDescription(sdp=offer, type="offer"))
        pc.addTrack(relay.subscribe(player.video, buffered=False))
        await pc.setLocalDescription(await pc.createAnswer())
        answers.append(pc.localDescription.sdp)

    def info() -> dict[str, Any]:
        return {"codec": "H264 (aiortc libx264 encoder, per viewer)"}

    return answers, {"info": info}


async def _sender(mode: str, url: str, viewers: int, seconds: float) -> dict[str, Any]:
    """Play the node in *mode* for *viewers* viewers; return this process's CPU and memory and the viewers' rates."""
    import aiortc  # noqa: F401  (imported before the idle measurement)
    import av  # noqa: F401

    import edge.cameras.live.sessions
    import edge.cameras.live.track  # noqa: F401
    from varta.logs import setup_logging

    setup_logging("WARNING")
    me = psutil.Process()
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bench.live_cpu",
        "--child=receiver",
        f"--viewers={viewers}",
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
    )
    peer = _Peer(proc)
    receiver = psutil.Process(proc.pid)
    on_exit: list[Any] = []
    try:
        offers: list[str] = (await peer.read(60))["offers"]
        await asyncio.sleep(1.0)
        idle0, t_idle = _cpu_s(me), time.monotonic()
        await asyncio.sleep(IDLE_S)  # this process's own idle cost (event loop, the receiver's pipe): subtracted
        idle_pct = 100 * (_cpu_s(me) - idle0) / (time.monotonic() - t_idle)
        rss0 = _rss_mb(me)

        began = time.monotonic()
        answers, extra = await (_passthrough if mode == "passthrough" else _transcode)(url, offers, on_exit)
        answer_s = time.monotonic() - began
        await peer.ask({"answers": answers})
        deadline = time.monotonic() + FLOW_TIMEOUT_S
        while True:
            counts = await peer.ask({"cmd": "count"})
            if all(v["frames"] > 0 for v in counts["viewers"]):
                break
            if time.monotonic() > deadline:
                raise RuntimeError(f"not every viewer receives frames: {counts['viewers']}")
            await asyncio.sleep(0.2)
        flowing_s = time.monotonic() - began
        await asyncio.sleep(SETTLE_S)

        busy0, total0 = _machine_busy()
        cpu0, t0 = _cpu_s(me), time.monotonic()
        before = await peer.ask({"cmd": "count"})
        rss: list[float] = []
        while time.monotonic() - t0 < seconds:
            await asyncio.sleep(1.0)
            rss.append(_rss_mb(me))
        cpu1, t1 = _cpu_s(me), time.monotonic()
        after = await peer.ask({"cmd": "count"})
        busy1, total1 = _machine_busy()

        span = after["t"] - before["t"]
        pairs = list(zip(after["viewers"], before["viewers"], strict=True))
        fps = [(a["frames"] - b["frames"]) / span for a, b in pairs]
        kbps = [8 * (a["bytes"] - b["bytes"]) / span / 1000 for a, b in pairs]
        cpu_total = 100 * (cpu1 - cpu0) / (t1 - t0) - idle_pct
        return {
            "mode": mode,
            "viewers": viewers,
            "cpu_pct_total": cpu_total,
            "cpu_pct_per_viewer": cpu_total / viewers,
            "idle_pct": idle_pct,
            "rss_mb_delta": statistics.median(rss) - rss0,
            "rss_mb": statistics.median(rss),
            "fps_min": min(fps),
            "fps_mean": statistics.mean(fps),
            "kbps_mean": statistics.mean(kbps),
            "sizes": sorted({tuple(v["size"]) if v["size"] else None for v in after["viewers"]}, key=str),
            "viewers_ended": sum(1 for v in after["viewers"] if v["ended"]),
            "receiver_cpu_pct": 100 * (after["cpu_s"] - before["cpu_s"]) / span,
            "machine_busy_pct": 100 * (psutil.cpu_count() or 1) * (busy1 - busy0) / max(total1 - total0, 1e-9),
            "answers_s": answer_s,
            "first_frames_s": flowing_s,
            "threads": me.num_threads(),
            "receiver_rss_mb": _rss_mb(receiver),
            **extra["info"](),
        }
    finally:
        with contextlib.suppress(Exception):
            await peer.ask({"cmd": "quit"}, timeout=10)
        for close in reversed(on_exit):
            with contextlib.suppress(Exception):
                await asyncio.wait_for(close(), 15)
        try:
            await asyncio.wait_for(proc.wait(), 15)
        except TimeoutError:
            proc.kill()
            await proc.wait()


# ---------------------------------------------------------------------------------------------------- parent


def _run_child(mode: str, url: str, viewers: int, seconds: float) -> dict[str, Any] | str:
    """One sender child; its result, or the tail of its stderr if it failed."""
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "bench.live_cpu",
            "--child=sender",
            f"--modes={mode}",
            f"--url={url}",
            f"--viewers={viewers}",
            f"--seconds={seconds}",
        ],
        capture_output=True,
        text=True,
        timeout=seconds + 240,
        check=False,
    )
    for line in reversed(out.stdout.strip().splitlines()):
        with contextlib.suppress(ValueError):
            result = json.loads(line)
            if isinstance(result, dict) and "mode" in result:
                return result
    return f"exit {out.returncode}: {out.stderr[-3000:]}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--width", type=int, default=1280)
    parser.add_argument("--height", type=int, default=720)
    parser.add_argument("--fps", type=int, default=25)
    parser.add_argument("--bitrate", type=int, default=2048, help="camera bitrate, kbit/s")
    parser.add_argument("--viewers", default="1,4,8", help="comma-separated viewer counts (of one camera)")
    parser.add_argument("--seconds", type=float, default=20.0, help="measuring window per run")
    parser.add_argument("--modes", default="passthrough,transcode", help="passthrough and/or transcode")
    parser.add_argument("--child", choices=["sender", "receiver"], help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child == "receiver":
        asyncio.run(_receiver(int(args.viewers)))
        return
    if args.child == "sender":
        _emit(asyncio.run(_sender(args.modes, args.url, int(args.viewers), args.seconds)))
        return

    from tests.support.rtsp_server import RtspServer

    modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    if not set(modes) <= {"passthrough", "transcode"}:
        parser.error("--modes: passthrough and/or transcode")
    counts = [int(x) for x in args.viewers.split(",")]
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} CPU, {platform.platform()}, Python {sys.version.split()[0]}",
        flush=True,
    )
    print(
        f"command: python -m bench.live_cpu --width {args.width} --height {args.height} --fps {args.fps}"
        f" --bitrate {args.bitrate} --viewers {args.viewers} --seconds {args.seconds:g} --modes {args.modes}",
        flush=True,
    )
    results: list[dict[str, Any]] = []
    failures: list[str] = []
    with RtspServer(width=args.width, height=args.height, fps=args.fps, bitrate_kbps=args.bitrate) as server:
        assert server.proc is not None
        gst = psutil.Process(server.proc.pid)
        print(
            f"camera: {args.width}x{args.height} @ {args.fps} fps H.264 (x264 ultrafast, {args.bitrate} kbit/s,"
            " 1 s GOP), GStreamer RTSP over TCP\n",
            flush=True,
        )
        print(
            "mode        | viewers | node CPU % of one core: total / per viewer | RSS Δ MB | frames/s per viewer"
            " min / mean | kbit/s per viewer | receiver CPU % | camera CPU % | machine busy % (of 200)",
            flush=True,
        )
        for n in counts:
            for mode in modes:
                gst0, t0 = _cpu_s(gst), time.monotonic()
                r = _run_child(mode, server.url(), n, args.seconds)
                gst_pct = 100 * (_cpu_s(gst) - gst0) / (time.monotonic() - t0)
                if isinstance(r, str):
                    failures.append(f"{mode} x{n}: {r}")
                    print(f"{mode:<11} | {n:7d} | FAILED: {r[-1500:]}", flush=True)
                    continue
                r["camera_cpu_pct"] = gst_pct
                results.append(r)
                print(
                    f"{mode:<11} | {n:7d} | {r['cpu_pct_total']:7.1f} / {r['cpu_pct_per_viewer']:6.2f}"
                    f" | {r['rss_mb_delta']:8.1f} | {r['fps_min']:5.1f} / {r['fps_mean']:5.1f}"
                    f" | {r['kbps_mean']:7.0f} | {r['receiver_cpu_pct']:6.1f} | {gst_pct:5.1f}"
                    f" | {r['machine_busy_pct']:5.1f}"
                    f"   (sizes {r['sizes']}, idle {r['idle_pct']:.2f} % subtracted, answers {r['answers_s']:.2f} s,"
                    f" {r.get('drops', '-')} drops, ended {r['viewers_ended']}"
                    + (f", sessions ended: {r['sessions_ended']}" if r.get("sessions_ended") else "")
                    + ")",
                    flush=True,
                )
    ratios: list[dict[str, Any]] = []
    by = {(r["mode"], r["viewers"]): r for r in results}
    if {"passthrough", "transcode"} <= set(modes):
        print(
            "\nviewers | per viewer: passthrough / transcode (% of one core) | transcode ÷ passthrough"
            f" | per frame delivered | transcode frames/s (camera: {args.fps})"
        )
        for n in counts:
            p, t = by.get(("passthrough", n)), by.get(("transcode", n))
            if p is None or t is None:
                continue
            ratio = t["cpu_pct_per_viewer"] / max(p["cpu_pct_per_viewer"], 1e-9)
            per_frame = (t["cpu_pct_per_viewer"] / max(t["fps_mean"], 1e-9)) / max(
                p["cpu_pct_per_viewer"] / max(p["fps_mean"], 1e-9), 1e-9
            )
            ratios.append({"viewers": n, "ratio": ratio, "ratio_per_frame": per_frame, "transcode_fps": t["fps_mean"]})
            keeps_up = "keeps up" if t["fps_min"] >= KEEPS_UP * args.fps else "CANNOT keep up"
            print(
                f"{n:7d} | {p['cpu_pct_per_viewer']:6.2f} / {t['cpu_pct_per_viewer']:6.2f}"
                f" | {ratio:5.1f}× ({'≥' if ratio >= 15 else '<'} 15×) | {per_frame:5.1f}×"
                f" | {t['fps_mean']:5.1f} ({keeps_up})"
            )
    marginal = {}  # the cost of one more viewer, from the runs that delivered the camera's frame rate
    for mode in modes:
        runs = sorted((r for r in results if r["mode"] == mode), key=lambda r: r["viewers"])
        full = [r for r in runs if r["fps_min"] >= KEEPS_UP * args.fps]
        if len(full) >= 2:
            lo, hi = full[0], full[-1]
            marginal[mode] = (hi["cpu_pct_total"] - lo["cpu_pct_total"]) / (hi["viewers"] - lo["viewers"])
            print(
                f"{mode}: each further viewer costs {marginal[mode]:.2f} % of one core"
                f" ({hi['viewers']} viewers minus {lo['viewers']}, divided by {hi['viewers'] - lo['viewers']})"
            )
        elif runs:
            kept = ", ".join(str(r["viewers"]) for r in full) or "none"
            print(f"{mode}: cost of a further viewer not computed: the camera's frame rate was delivered for {kept}")
    if len(marginal) == 2:
        extra = marginal["transcode"] / max(marginal["passthrough"], 1e-9)
        print(f"extra viewer: transcode ÷ passthrough = {extra:.1f}×")
    print(
        json.dumps(
            {
                "bench": "live_cpu",
                "camera": {"width": args.width, "height": args.height, "fps": args.fps, "kbps": args.bitrate},
                "seconds": args.seconds,
                "results": results,
                "ratios": ratios,
                "marginal_pct_per_viewer": marginal,
                "failures": failures,
            }
        )
    )
    if failures:
        sys.exit(1)


if __name__ == "__main__":
    main()
