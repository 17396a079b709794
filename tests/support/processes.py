"""Ending a child process the tests started."""

from __future__ import annotations

import signal
import subprocess
from typing import Any


def end_process(proc: subprocess.Popen[Any] | None, sig: int = signal.SIGTERM, timeout: float = 10.0) -> None:
    """Send *sig* (SIGTERM: a clean stop; SIGKILL: a crash), then SIGKILL if it is still there after *timeout* s."""
    if proc is None or proc.poll() is not None:
        return
    proc.send_signal(sig)
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
