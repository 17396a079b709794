"""A kiosk's browser for tests: the real Chromium in kiosk mode with its DevTools port on 127.0.0.1, as on the Pi.

Playwright attaches to it over CDP (``connect_over_cdp``) to look at the page; the node under test takes its own
screenshots through the same port, like it does in the field.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from tests.support.ports import free_port

CHROMIUM = "/usr/bin/chromium"


@dataclass
class KioskBrowser:
    """``chromium --kiosk`` showing *url*; :meth:`stop` kills it and its children."""

    url: str
    workdir: Path
    width: int = 1280
    height: int = 720
    port: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = None

    @property
    def devtools_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 30.0) -> KioskBrowser:
        if not os.access(CHROMIUM, os.X_OK):
            raise RuntimeError(f"{CHROMIUM} is not installed (apt-get install chromium)")
        self.workdir.mkdir(parents=True, exist_ok=True)
        log = (self.workdir / "chromium.log").open("ab")
        self.proc = subprocess.Popen(
            [
                CHROMIUM,
                "--headless=new",
                "--kiosk",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-component-update",
                "--no-first-run",
                "--autoplay-policy=no-user-gesture-required",
                f"--remote-debugging-port={self.port}",
                "--remote-debugging-address=127.0.0.1",
                f"--user-data-dir={self.workdir / 'profile'}",
                f"--window-size={self.width},{self.height}",
                self.url,
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"chromium exited: {self.log_tail()}")
            try:
                with urllib.request.urlopen(f"{self.devtools_url}/json/version", timeout=1.0):
                    return self
            except OSError:
                time.sleep(0.1)
        raise TimeoutError(f"chromium's DevTools port did not answer: {self.log_tail()}")

    def log_tail(self) -> str:
        path = self.workdir / "chromium.log"
        return path.read_text(errors="replace")[-2000:] if path.exists() else ""

    def stop(self) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=10)
        self.proc = None
