"""A real RTSP camera for tests, benchmarks and the demo: GStreamer's RTSP server in its own process.

``RtspServer(...).start()`` runs ``tests/support/gst_rtsp_server.py`` with the system Python (PyGObject comes from
Debian, it has no wheels), waits for ``ready``, and can switch the picture live (``moving``, ``still``, ``black`` or
any ``videotestsrc`` pattern) and count its RTSP clients (``clients()``). ``stop()`` ends the process and frees the
port; ``start()`` again serves on the same port. ``SilentTcpServer`` accepts TCP connections and never says a word
(an RTSP client must time out).
"""

from __future__ import annotations

import os
import select
import signal
import socket
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote

from tests.support.ports import free_port
from tests.support.processes import end_process

SCRIPT = Path(__file__).resolve().with_name("gst_rtsp_server.py")
SYSTEM_PYTHON = "/usr/bin/python3"


class RtspServerError(RuntimeError):
    """The GStreamer RTSP server could not start or refused a command."""


@dataclass
class RtspServer:
    """One GStreamer RTSP server process on 127.0.0.1:``port`` serving ``paths`` (default ``/stream``)."""

    port: int = field(default_factory=free_port)
    width: int = 640
    height: int = 360
    fps: int = 25
    paths: tuple[str, ...] = ("stream",)
    user: str = ""
    password: str = ""
    auth: str = "digest"
    bitrate_kbps: int = 2048
    pattern: str = "moving"
    profile: str = ""
    """``high``, ``main`` or ``baseline`` (4:2:0); empty: x264's choice (Constrained Baseline here)."""
    key_int: int = 0
    """Frames between keyframes; 0: one a second (``fps``)."""
    config_interval: int = 1
    """rtph264pay's ``config-interval``: 0 = the payloader never re-sends SPS/PPS in-band."""
    repeat_headers: bool = True
    """x264 writes SPS/PPS before every keyframe; False (with ``config_interval=0``): they are only in the SDP."""
    proc: subprocess.Popen[str] | None = None

    def url(self, path: str | None = None, *, user: str | None = None, password: str | None = None) -> str:
        """``rtsp://127.0.0.1:<port>/<path>``; with *user*/*password* embedded if given (tests only)."""
        cred = ""
        if user is not None:
            cred = quote(user, safe="") + (":" + quote(password, safe="") if password is not None else "") + "@"
        return f"rtsp://{cred}127.0.0.1:{self.port}/{path or self.paths[0]}"

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def start(self, timeout: float = 10.0) -> RtspServer:
        """Start (or restart on the same port) and wait until it accepts connections."""
        if self.running:
            return self
        if not Path(SYSTEM_PYTHON).exists():
            raise RtspServerError(f"{SYSTEM_PYTHON} is missing (apt-get install python3-gi)")
        cmd = [
            SYSTEM_PYTHON,
            str(SCRIPT),
            f"--port={self.port}",
            f"--paths={','.join(self.paths)}",
            f"--width={self.width}",
            f"--height={self.height}",
            f"--fps={self.fps}",
            f"--bitrate={self.bitrate_kbps}",
            f"--key-int={self.key_int}",
            f"--config-interval={self.config_interval}",
        ]
        if self.profile:
            cmd.append(f"--profile={self.profile}")
        if not self.repeat_headers:
            cmd.append("--repeat-headers=0")
        if self.user:
            cmd += [f"--user={self.user}", f"--password={self.password}", f"--auth={self.auth}"]
        env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
        self.proc = subprocess.Popen(
            cmd,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
            start_new_session=True,
        )
        line = self._read_line(timeout)
        if not line.startswith("ready"):
            err = self._stop_and_collect_stderr()
            raise RtspServerError(f"GStreamer RTSP server did not start ({line!r}): {err}")
        if self.pattern != "moving":
            self.set_pattern(self.pattern)
        return self

    def set_pattern(self, pattern: str, timeout: float = 5.0) -> None:
        """Switch the picture of every path live: ``moving``, ``still``, ``black`` or a videotestsrc pattern."""
        if not self.running or self.proc is None or self.proc.stdin is None:
            raise RtspServerError("the RTSP server is not running")
        self.proc.stdin.write(f"pattern {pattern}\n")
        self.proc.stdin.flush()
        reply = self._read_line(timeout)
        if not reply.startswith("ok"):
            raise RtspServerError(f"pattern {pattern!r} refused: {reply}")
        self.pattern = pattern

    def keyframe(self, timeout: float = 5.0) -> int:
        """Make every running encoder send a keyframe now (as ONVIF SetSynchronizationPoint does); how many."""
        return int(self._command("keyframe", timeout).split()[2])

    def clients(self, timeout: float = 5.0) -> tuple[int, int]:
        """RTSP client connections: (open now, opened since start)."""
        reply = self._command("clients", timeout)
        _, _, now, ever = reply.split()
        return int(now), int(ever)

    def _command(self, line: str, timeout: float) -> str:
        if not self.running or self.proc is None or self.proc.stdin is None:
            raise RtspServerError("the RTSP server is not running")
        self.proc.stdin.write(f"{line}\n")
        self.proc.stdin.flush()
        reply = self._read_line(timeout)
        if not reply.startswith("ok"):
            raise RtspServerError(f"{line!r} refused: {reply}")
        return reply

    def stop(self, sig: int = signal.SIGTERM) -> None:
        """End the process (SIGKILL simulates a power cut) and wait until the port is closed."""
        if self.proc is None:
            return
        end_process(self.proc, sig)
        for stream in (self.proc.stdin, self.proc.stdout, self.proc.stderr):
            if stream is not None:
                stream.close()
        self.proc = None
        _wait_port_closed(self.port)

    def __enter__(self) -> RtspServer:
        return self.start()

    def __exit__(self, *_exc: object) -> None:
        self.stop()

    def _read_line(self, timeout: float) -> str:
        assert self.proc is not None and self.proc.stdout is not None
        ready, _, _ = select.select([self.proc.stdout], [], [], timeout)
        if not ready:
            return "<no answer>"
        return self.proc.stdout.readline().strip()

    def _stop_and_collect_stderr(self) -> str:
        assert self.proc is not None
        self.proc.kill()
        _, err = self.proc.communicate(timeout=10)
        self.proc = None
        return err[-2000:]


def _wait_port_closed(port: int, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                pass
        except OSError:
            return
        time.sleep(0.05)
    raise RtspServerError(f"port {port} still open after the server stopped")


class SilentTcpServer:
    """Accepts TCP connections on 127.0.0.1 and never answers (a hung camera); a background thread holds them."""

    def __init__(self, port: int | None = None) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", port or 0))
        self.sock.listen(16)
        self.sock.settimeout(0.2)
        self.port = int(self.sock.getsockname()[1])
        self.accepted = 0
        self._conns: list[socket.socket] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, name=f"silent-tcp-{self.port}", daemon=True)

    def url(self, path: str = "stream") -> str:
        return f"rtsp://127.0.0.1:{self.port}/{path}"

    def start(self) -> SilentTcpServer:
        self._thread.start()
        return self

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            self.accepted += 1
            self._conns.append(conn)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        for conn in self._conns:
            conn.close()
        self.sock.close()

    def __enter__(self) -> SilentTcpServer:
        return self.start()

    def __exit__(self, *_exc: object) -> None:
        self.stop()
