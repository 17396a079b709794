"""One RTSP connection read by OpenCV (FFmpeg backend, TCP) in its own thread, sampled cheaply.

The capture runs in *raw* mode: every packet is read (that gives the frame rate and notices a dead stream at once)
but nothing is decoded, except one keyframe every ``sample_interval_s``, decoded on its own (SPS/PPS + IDR) into a
small grayscale sample for :mod:`edge.cameras.frame_checks`, or into a JPEG when a snapshot is asked for. Decoding
1080p25 H.264 continuously costs ~11 % of a core here; this costs ~2.2 % (see docs/performance.md).

The credentials live only inside the blocking thread (in the URL OpenCV gets); FFmpeg's own log is silenced so it
cannot print that URL, and nothing this module reports contains it.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import ctypes
import ctypes.util
import os
import shutil
import tempfile
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import cast
from urllib.parse import quote, urlsplit, urlunsplit

os.environ.setdefault("OPENCV_FFMPEG_CAPTURE_OPTIONS", "rtsp_transport;tcp|analyzeduration;0|probesize;32")
os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")  # AV_LOG_QUIET: FFmpeg may print URLs with credentials

import cv2  # after the FFmpeg options above
import numpy as np
import numpy.typing as npt
import structlog

from edge.cameras.frame_checks import Gray, to_sample
from varta.contract import CameraReason
from varta.sealing import Credentials

log = structlog.get_logger(__name__)
cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_ERROR)  # timeouts are reported by us, not on stderr

FPS_WINDOW_S = 5.0  # frame rate measured over the packets of the last few seconds
DRAIN_S = 1.0  # packets buffered before the connection opened arrive in a burst: ignored for the frame rate
QUICK_OPEN_RETRIES = 2  # a stream refused at once is opened again this many times (0.3 s apart)
MAX_DECODE_FAILURES = 5  # keyframes in a row that cannot be decoded → stream_error
_H264 = {"h264", "avc1", "x264", "H264"}
_HEVC = {"hevc", "h265", "hev1", "hvc1", "HEVC"}
_JPEG = {"MJPG", "mjpg", "jpeg"}

_SHM = "/dev/shm"  # noqa: S108  (mkdtemp makes a private 0700 directory in it; RAM, not the SD card)

Jpeg = tuple[bytes, int, int]
Frame = npt.NDArray[np.uint8]

# One keyframe decode at a time in the whole process: a 1080p decode briefly needs ~18 MB (decoder + BGR frame);
# serialised, that peak is paid once, not once per camera. Each decode takes ~15 ms, so even 16 cameras sampled
# every 2 s keep the lock busy only ~12 % of the time.
_DECODE_LOCK = threading.Lock()


def _load_malloc_trim() -> Callable[[int], int] | None:
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name) if name else None
        return cast(Callable[[int], int], libc.malloc_trim) if libc is not None else None
    except (OSError, AttributeError):  # not glibc
        return None


_malloc_trim = _load_malloc_trim()  # hands freed decoder buffers back to the OS (glibc keeps them per thread arena)


def _frame(arr: object) -> Frame | None:
    """*arr* as a non-empty uint8 image, or None."""
    if not isinstance(arr, np.ndarray) or arr.size == 0 or arr.dtype != np.uint8:
        return None
    return cast(Frame, arr)


def url_with_credentials(uri: str, credentials: Credentials | None) -> str:
    """*uri* with ``user:password@`` in it, for OpenCV only (never log or keep the result)."""
    parts = urlsplit(uri)
    host = parts.netloc.rsplit("@", 1)[-1]
    if credentials is None:
        return urlunsplit(parts._replace(netloc=host))
    user = quote(credentials.username, safe="")
    password = quote(credentials.password.get_secret_value(), safe="")
    return urlunsplit(parts._replace(netloc=f"{user}:{password}@{host}"))


def encode_jpeg(frame: Frame, max_width: int, quality: int = 80) -> Jpeg | None:
    """A JPEG of *frame* at most *max_width* pixels wide: (bytes, width, height)."""
    h, w = frame.shape[:2]
    if w > max_width:
        frame = cast(
            Frame, cv2.resize(frame, (max_width, max(1, round(h * max_width / w))), interpolation=cv2.INTER_AREA)
        )
    ok, buf = cv2.imencode(".jpg", frame, [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        return None
    return bytes(buf), int(frame.shape[1]), int(frame.shape[0])


def _resolve(fut: concurrent.futures.Future[Jpeg | None], value: Jpeg | None) -> None:
    """Complete *fut* unless the waiter gave up (cancelled) meanwhile."""
    with contextlib.suppress(concurrent.futures.InvalidStateError):
        if not fut.done():
            fut.set_result(value)


@dataclass
class SessionReport:
    """What the capture thread learnt since the last report (the monitor's only view of the thread)."""

    opened: bool = False
    open_ms: float | None = None
    width: int | None = None
    height: int | None = None
    codec: str = ""
    stream_fps: float | None = None
    fps: float | None = None
    packets: int = 0
    last_packet: float | None = None  # monotonic
    samples: list[tuple[float, Gray]] = field(default_factory=list)
    ended: bool = False
    end_reason: CameraReason | None = None
    end_detail: str = ""


class CaptureSession:
    """Reads one RTSP stream in a daemon thread until stopped or the stream fails; see the module doc."""

    def __init__(
        self,
        device_id: str,
        url: str,
        *,
        open_timeout_s: float,
        read_timeout_s: float,
        sample_interval_s: float,
        sample_width: int = 320,
    ) -> None:
        self.device_id = device_id
        self._url = url  # may contain credentials: never log, never put in a report
        self.open_timeout_s = open_timeout_s
        self.read_timeout_s = read_timeout_s
        self.sample_interval_s = sample_interval_s
        self.sample_width = sample_width
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._report = SessionReport()
        self._times: deque[float] = deque(maxlen=512)  # enough for FPS_WINDOW_S at 100 fps
        self._opened_at: float | None = None
        self._snapshots: list[tuple[int, concurrent.futures.Future[Jpeg | None]]] = []
        self._thread = threading.Thread(target=self._run, name=f"camera-{device_id}", daemon=True)

    def __repr__(self) -> str:
        return f"CaptureSession({self.device_id!r})"

    # --- called from the event loop -----------------------------------------------------------------------------

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        """Ask the thread to end (it does within ``read_timeout_s``); safe to call more than once."""
        self._stop.set()

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    def join(self, timeout: float) -> bool:
        """Wait (blocking) up to *timeout* s for the thread to end; True if it did."""
        self._thread.join(timeout)
        return not self._thread.is_alive()

    def take_report(self) -> SessionReport:
        """A copy of the state, with the samples gathered since the previous call (they are handed over once)."""
        with self._lock:
            r = self._report
            report = SessionReport(**{**r.__dict__, "samples": list(r.samples)})
            r.samples.clear()
            report.fps = self._fps_locked(time.monotonic())
        return report

    def request_snapshot(self, max_width: int) -> concurrent.futures.Future[Jpeg | None]:
        """A JPEG of the next keyframe (None if the stream ends first)."""
        fut: concurrent.futures.Future[Jpeg | None] = concurrent.futures.Future()
        with self._lock:
            if self._report.ended:
                fut.set_result(None)
            else:
                self._snapshots.append((max_width, fut))
        return fut

    # --- the capture thread -------------------------------------------------------------------------------------

    def _fps_locked(self, now: float) -> float | None:
        if self._opened_at is None:
            return None
        start = max(self._opened_at + DRAIN_S, now - FPS_WINDOW_S)
        if now - start < 1.0:
            return None
        count = sum(1 for t in self._times if t > start)
        return round(count / (now - start), 2)

    def _end(self, reason: CameraReason | None, detail: str) -> None:
        with self._lock:
            if not self._report.ended:
                self._report.ended = True
                self._report.end_reason = reason
                self._report.end_detail = detail
            pending, self._snapshots = self._snapshots, []
        for _, fut in pending:
            _resolve(fut, None)

    def _run(self) -> None:
        workdir = Path(tempfile.mkdtemp(prefix="varta-cam-", dir=_SHM if os.path.isdir(_SHM) else None))
        try:
            cap = self._open()
            if cap is not None:
                try:
                    self._read_loop(cap, workdir)
                finally:
                    cap.release()
        except Exception as exc:  # the thread must end with a reason, whatever OpenCV does
            log.warning("camera capture failed", device_id=self.device_id, error=type(exc).__name__)
            self._end(CameraReason.STREAM_ERROR, f"capture failed ({type(exc).__name__})")
        finally:
            self._end(None, "stopped")
            shutil.rmtree(workdir, ignore_errors=True)

    def _open(self) -> cv2.VideoCapture | None:
        t0 = time.monotonic()
        params = [
            cv2.CAP_PROP_OPEN_TIMEOUT_MSEC,
            int(self.open_timeout_s * 1000),
            cv2.CAP_PROP_READ_TIMEOUT_MSEC,
            int(self.read_timeout_s * 1000),
            cv2.CAP_PROP_N_THREADS,
            1,
        ]
        cap = cv2.VideoCapture(self._url, cv2.CAP_FFMPEG, params)
        for _ in range(QUICK_OPEN_RETRIES):  # a refusal within a second (server still setting up): try again
            if cap.isOpened() or time.monotonic() - t0 > 1.0 or self._stop.wait(0.3):
                break
            cap.release()
            cap = cv2.VideoCapture(self._url, cv2.CAP_FFMPEG, params)
        open_ms = (time.monotonic() - t0) * 1000
        if not cap.isOpened():
            cap.release()
            slow = open_ms >= self.open_timeout_s * 900
            self._end(
                CameraReason.TIMEOUT if slow else CameraReason.STREAM_ERROR,
                f"no stream within {self.open_timeout_s:g} s" if slow else "the stream cannot be opened",
            )
            return None
        fourcc = int(cap.get(cv2.CAP_PROP_FOURCC)).to_bytes(4, "little").decode("latin-1").strip("\x00 ")
        fps = float(cap.get(cv2.CAP_PROP_FPS) or 0)
        raw = fourcc in _H264 | _HEVC | _JPEG and cap.set(cv2.CAP_PROP_FORMAT, -1)
        with self._lock:
            self._opened_at = time.monotonic()
            r = self._report
            r.opened, r.open_ms = True, round(open_ms, 1)
            r.width = int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)) or None
            r.height = int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT)) or None
            r.codec = fourcc
            r.stream_fps = round(fps, 2) if 0 < fps <= 240 else None
        self._raw = raw
        self._fourcc = fourcc
        self._extradata = b""
        if raw and fourcc not in _JPEG:
            idx = int(cap.get(cv2.CAP_PROP_CODEC_EXTRADATA_INDEX))
            ok, extra = cap.retrieve(flag=idx)
            if ok and extra is not None:
                self._extradata = bytes(np.asarray(extra).ravel())
        return cap

    def _read_loop(self, cap: cv2.VideoCapture, workdir: Path) -> None:
        last_sample = 0.0
        failures = 0
        decoder_file = workdir / ("key.hevc" if self._fourcc in _HEVC else "key.h264")
        while not self._stop.is_set():
            t0 = time.monotonic()
            if self._raw:
                ok, packet = cap.read()
            else:
                ok, packet = cap.grab(), None
            now = time.monotonic()
            if not ok:
                if now - t0 >= self.read_timeout_s * 0.9:
                    self._end(CameraReason.NO_FRAMES, f"no frame for {self.read_timeout_s:g} s")
                else:
                    self._end(CameraReason.UNREACHABLE, "the stream ended")
                return
            with self._lock:
                self._times.append(now)
                self._report.packets += 1
                self._report.last_packet = now
                want_snapshot = bool(self._snapshots)
            if not (want_snapshot or now - last_sample >= self.sample_interval_s * 0.9):
                continue
            if self._raw and not cap.get(cv2.CAP_PROP_LRF_HAS_KEY_FRAME):
                continue
            frame = self._decode(cap, packet, decoder_file)
            if frame is None:
                failures += 1
                if failures >= MAX_DECODE_FAILURES:
                    self._end(CameraReason.STREAM_ERROR, f"{failures} keyframes in a row cannot be decoded")
                    return
                continue
            failures = 0
            last_sample = now
            sample = to_sample(frame, self.sample_width)
            with self._lock:
                if frame.shape[1] and frame.shape[0]:
                    self._report.width, self._report.height = int(frame.shape[1]), int(frame.shape[0])
                self._report.samples.append((now, sample))
                del self._report.samples[:-8]  # bounded if nobody takes them
                pending, self._snapshots = self._snapshots, []
            for max_width, fut in pending:
                _resolve(fut, encode_jpeg(frame, max_width))
            del frame
            if _malloc_trim is not None:
                _malloc_trim(0)

    def _decode(self, cap: cv2.VideoCapture, packet: object, decoder_file: Path) -> Frame | None:
        if not self._raw:
            ok, frame = cap.retrieve()
            return _frame(frame) if ok else None
        data = bytes(np.asarray(packet, dtype=np.uint8).ravel())
        if self._fourcc in _JPEG:
            return _frame(cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR))
        decoder_file.write_bytes(self._extradata + data)
        with _DECODE_LOCK:
            dec = cv2.VideoCapture(str(decoder_file), cv2.CAP_FFMPEG, [cv2.CAP_PROP_N_THREADS, 1])
            try:
                ok, frame = dec.read()
            finally:
                dec.release()
        return _frame(frame) if ok else None
