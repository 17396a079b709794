"""A real NUT server for the tests (Debian ``nut-server``): ``dummy-ups`` + ``upsd`` in a temp dir on a free port;
and a fake NUT server that answers whatever a test scripts (garbage, ERR, silence, a connection closed mid-reply).

How NUT 2.8.0 runs here (checked on Debian 12, as root):

* Both programs are started directly from ``/lib/nut`` — ``/sbin/upsd`` is a wrapper that refuses to run unless
  ``MODE`` is set in ``/etc/nut/nut.conf``. ``-F`` keeps them in the foreground (so the test owns the process),
  ``-u root`` stops them from switching to the ``nut`` user (which could not read the temp dir).
* ``NUT_CONFPATH`` points both at the temp dir (``ups.conf``, ``upsd.conf``, ``upsd.users``); ``NUT_STATEPATH`` and
  ``NUT_ALTPIDPATH`` at a private state folder (the driver's socket ``dummy-ups-<ups>`` and pid files) so nothing
  touches ``/run/nut``. ``upsd.conf`` sets ``LISTEN 127.0.0.1 <free port>`` and ``STATEPATH`` as well.
* The driver must be up (its socket exists) before ``upsd`` starts, or ``upsd`` serves ``ERR DRIVER-NOT-CONNECTED``
  until it retries.
* ``dummy-ups`` with a ``.dev`` file runs in ``dummy-once`` mode: it re-reads the file when its modification time
  changes — compared in whole seconds — so :meth:`NutServer.set` rewrites the file and moves its mtime forward by
  at least a second each time. With ``pollinterval = 1`` a step shows in ``upsc``/``LIST VAR`` within ~1–1.5 s.
* A stopped driver gives ``ERR DRIVER-NOT-CONNECTED``; a stopped ``upsd`` refuses connections.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import subprocess
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.support.ports import free_port, wait_for_port
from tests.support.processes import end_process
from varta.aio import wait_for

NUT_DIR = Path("/lib/nut")
UPSD = NUT_DIR / "upsd"
DUMMY_UPS = NUT_DIR / "dummy-ups"
USER = "monitor"
PASSWORD = 'se cret"\\pw'  # a space, a quote and a backslash: quoting must be right


def nut_installed() -> bool:
    """Both programs are there (the tests fail, never skip, when they are not)."""
    return UPSD.exists() and DUMMY_UPS.exists()


@dataclass
class NutServer:
    """``dummy-ups`` + ``upsd`` serving one UPS (*ups*) on 127.0.0.1:*port*, stepped with :meth:`set`."""

    workdir: Path
    ups: str = "dummy"
    port: int = field(default_factory=free_port)
    driver: subprocess.Popen[bytes] | None = None
    upsd: subprocess.Popen[bytes] | None = None
    _mtime: int = 0
    _written_status: str = "OL"

    @property
    def dev_path(self) -> Path:
        return self.workdir / f"{self.ups}.dev"

    @property
    def state_dir(self) -> Path:
        return self.workdir / "state"

    def _env(self) -> dict[str, str]:
        state = str(self.state_dir)
        return {**os.environ, "NUT_CONFPATH": str(self.workdir), "NUT_STATEPATH": state, "NUT_ALTPIDPATH": state}

    def write_conf(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.state_dir.mkdir(mode=0o700, exist_ok=True)
        quoted_password = PASSWORD.replace("\\", "\\\\").replace('"', '\\"')
        files = {
            "ups.conf": (
                f'[{self.ups}]\n  driver = dummy-ups\n  port = {self.dev_path}\n  pollinterval = 1\n  desc = "test"\n'
            ),
            "upsd.conf": f"LISTEN 127.0.0.1 {self.port}\nSTATEPATH {self.state_dir}\n",
            "upsd.users": f'[{USER}]\n  password = "{quoted_password}"\n  upsmon primary\n',
        }
        for name, text in files.items():
            path = self.workdir / name
            path.write_text(text)
            path.chmod(0o600)

    def set(
        self,
        status: str = "OL",
        *,
        charge: float | str | None = 100,
        runtime: float | str | None = 1800,
        voltage: float | str | None = 230.0,
        extra: dict[str, str] | None = None,
    ) -> float:
        """Step the UPS: rewrite its ``.dev`` file (new mtime, whole seconds later); returns the time.time() of it."""
        values: dict[str, Any] = {
            "ups.status": status,
            "battery.charge": charge,
            "battery.runtime": runtime,
            "input.voltage": voltage,
            **(extra or {}),
        }
        self._written_status = status
        text = "".join(f"{k}: {v}\n" for k, v in values.items() if v is not None)
        self.workdir.mkdir(parents=True, exist_ok=True)
        tmp = self.dev_path.with_suffix(".tmp")
        tmp.write_text(text)
        stepped = time.time()
        self._mtime = max(int(stepped) + 1, self._mtime + 1)
        os.utime(tmp, (self._mtime, self._mtime))
        os.replace(tmp, self.dev_path)
        return stepped

    def start(self) -> NutServer:
        """Start the driver (if not running) and upsd; wait until upsd serves the UPS."""
        if not nut_installed():
            raise RuntimeError(f"NUT is not installed ({UPSD}, {DUMMY_UPS}): apt-get install nut-server nut-client")
        self.write_conf()
        if not self.dev_path.exists():
            self.set("OL")
        if self.driver is None or self.driver.poll() is not None:
            self.start_driver()
        return self.start_upsd()

    def start_driver(self) -> None:
        """Start ``dummy-ups`` and wait for its socket."""
        self.driver = subprocess.Popen(
            [str(DUMMY_UPS), "-a", self.ups, "-u", "root", "-F"],
            env=self._env(),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        sock = self.state_dir / f"dummy-ups-{self.ups}"
        deadline = time.monotonic() + 10
        while not sock.exists():
            if self.driver.poll() is not None or time.monotonic() > deadline:
                err = (
                    self.driver.stderr.read().decode() if self.driver.stderr and self.driver.poll() is not None else ""
                )
                raise RuntimeError(f"dummy-ups did not start: {err}")
            time.sleep(0.05)

    def start_upsd(self) -> NutServer:
        """Start ``upsd`` (again) and wait until it answers for the UPS."""
        if self.upsd is not None and self.upsd.poll() is None:
            return self
        self.upsd = subprocess.Popen(
            [str(UPSD), "-u", "root", "-F"], env=self._env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
        )
        try:
            wait_for_port(self.port, timeout=10)
        except TimeoutError:
            err = self.upsd.stderr.read().decode() if self.upsd.stderr and self.upsd.poll() is not None else ""
            raise RuntimeError(f"upsd did not start: {err}") from None
        served = self._written_status
        self.wait_var("ups.status", lambda v: v == served)  # "WAIT" until the driver's data arrived
        return self

    def stop_upsd(self, sig: int = signal.SIGTERM) -> None:
        """Stop ``upsd`` (the driver keeps running)."""
        end_process(self.upsd, sig)
        self.upsd = None

    def stop(self) -> None:
        """Stop both."""
        self.stop_upsd()
        end_process(self.driver)
        self.driver = None

    def query(self, command: str) -> list[str]:
        """Send one command over the NUT protocol (blocking); the reply lines (a LIST up to its END)."""
        with socket.create_connection(("127.0.0.1", self.port), timeout=5) as sock, sock.makefile("rwb") as fh:
            fh.write(command.encode() + b"\n")
            fh.flush()
            lines = [fh.readline().decode().rstrip("\n")]
            if lines[0].startswith("BEGIN "):
                while not lines[-1].startswith("END "):
                    lines.append(fh.readline().decode().rstrip("\n"))
            return lines

    def var(self, name: str) -> str | None:
        """One variable's value as upsd serves it now (None when upsd has none or answers ERR)."""
        reply = self.query(f"GET VAR {self.ups} {name}")[0]
        prefix = f"VAR {self.ups} {name} "
        return reply[len(prefix) :].strip('"') if reply.startswith(prefix) else None

    def wait_var(self, name: str, predicate: Callable[[str | None], bool], timeout: float = 10.0) -> str | None:
        """Poll until the variable satisfies *predicate* (blocking; raises AssertionError after *timeout*)."""
        deadline = time.monotonic() + timeout
        while True:
            with contextlib.suppress(OSError):
                value = self.var(name)
                if predicate(value):
                    return value
            if time.monotonic() > deadline:
                raise AssertionError(f"{name} of {self.ups} did not become as expected in {timeout} s")
            time.sleep(0.1)

    async def step(self, status: str, poll_s: float = 0.05, **kwargs: Any) -> float:
        """Step the UPS and wait until upsd serves the new status; returns the time.time() it was first seen served
        (within *poll_s* of when a client could first read it: the timeline a monitor's durations are checked on).
        """
        self.set(status, **kwargs)
        deadline = time.monotonic() + 10
        while True:
            value = await asyncio.to_thread(self.var, "ups.status")
            if value == status:
                return time.time()
            if time.monotonic() > deadline:
                raise AssertionError(f"upsd still serves ups.status {value!r}, not {status!r}")
            await asyncio.sleep(poll_s)

    def ups_settings(self, **overrides: Any) -> dict[str, Any]:
        """``power.ups`` settings pointing at this server."""
        return {"name": self.ups, "host": "127.0.0.1", "port": self.port, **overrides}


# ------------------------------------------------------------------------------------------------ fake server


class ThenClose(bytes):
    """A reply after which the fake server closes the connection."""


Reply = Callable[[str], Awaitable[bytes | None]]
"""Given one request line, the bytes to send back (None: close the connection; :class:`ThenClose`: send, close)."""


class FakeNutServer:
    """An asyncio TCP server speaking (or mis-speaking) NUT: *reply* decides the answer to every request line."""

    def __init__(self, reply: Reply) -> None:
        self.reply = reply
        self.port = 0
        self.requests: list[str] = []
        self.connections = 0
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()

    async def __aenter__(self) -> FakeNutServer:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        for writer in list(self._writers):
            writer.close()
        with contextlib.suppress(Exception):
            await wait_for(self._server.wait_closed(), 2)

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        self._writers.add(writer)
        try:
            while line := await reader.readline():
                request = line.decode(errors="replace").rstrip("\r\n")
                self.requests.append(request)
                answer = await self.reply(request)
                if answer is None:
                    break
                writer.write(answer)
                await writer.drain()
                if isinstance(answer, ThenClose):
                    break
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            self._writers.discard(writer)
            writer.close()


def list_reply(ups: str, values: dict[str, str]) -> bytes:
    """A well-formed ``LIST VAR`` answer."""
    body = "".join(f'VAR {ups} {k} "{v}"\n' for k, v in values.items())
    return f"BEGIN LIST VAR {ups}\n{body}END LIST VAR {ups}\n".encode()
