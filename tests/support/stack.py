"""Real Varta processes for end-to-end tests: central (``python -m central``) and edge (``python -m edge.agent``)."""

from __future__ import annotations

import asyncio
import os
import signal
import sqlite3
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import yaml

from central.auth.bootstrap import ensure_user
from central.auth.roles import Role
from central.auth.tokens import create_token
from central.auth.users import get_by_username
from central.store.db import Database
from central.store.migrate import upgrade
from tests.support.broker import Broker
from tests.support.ports import free_port
from tests.support.processes import end_process
from varta.signing import load_or_create_signing_key, public_key_text

ROOT = Path(__file__).resolve().parents[2]
#: Every process these helpers started and nobody stopped yet; the e2e conftest reaps them after each test,
#: so a failing test never leaves an agent or central running.
LIVE: list[subprocess.Popen[bytes]] = []


def terminate(proc: subprocess.Popen[bytes] | None, timeout: float = 10.0) -> None:
    """SIGTERM (a clean shutdown), then SIGKILL if the process is still there after *timeout* seconds."""
    end_process(proc, signal.SIGTERM, timeout)


def sigkill(proc: subprocess.Popen[bytes] | None) -> None:
    """SIGKILL: what a power cut, a crash or the OOM killer does."""
    if proc is not None:
        proc.send_signal(signal.SIGKILL)
        proc.wait()


def reap_all() -> None:
    """Stop (SIGTERM, then SIGKILL) every process started here that is still running."""
    while LIVE:
        terminate(LIVE.pop())


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("VARTA_")}
    env["PYTHONPATH"] = str(ROOT)
    env["PYTHONUNBUFFERED"] = "1"
    return env


@dataclass
class CentralProcess:
    """``python -m central`` on a free port, with an operator user and API token made beforehand."""

    workdir: Path
    broker: Broker
    port: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = None
    token: str = ""
    admin_token: str = ""
    extra: dict[str, Any] = field(default_factory=dict)
    """More config sections (``sites``, ``alerts``, ``incidents``, …), merged over the defaults."""

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def database_url(self) -> str:
        return f"sqlite+aiosqlite:///{self.workdir}/central.db"

    @property
    def key_file(self) -> Path:
        return self.workdir / "signing.key"

    def public_key(self) -> str:
        return public_key_text(load_or_create_signing_key(self.key_file).verify_key)

    def prepare(self) -> None:
        """Migrate the database, create users ``op`` (operator) and ``chief`` (admin) with API tokens, write the
        config."""
        self.workdir.mkdir(parents=True, exist_ok=True)
        upgrade(self.database_url)
        self.token, self.admin_token = asyncio.run(self._make_tokens())
        load_or_create_signing_key(self.key_file)
        config = {
            "database_url": self.database_url,
            "data_dir": str(self.workdir),
            "http": {"host": "127.0.0.1", "port": self.port},
            "mqtt": {"host": "127.0.0.1", "port": self.broker.port, "reconnect_max_s": 1.0},
            "commands": {"signing_key_file": str(self.key_file)},
            "ingest": {"batch_wait_s": 0.01},
        }
        config.update(self.extra)
        (self.workdir / "central.yaml").write_text(yaml.safe_dump(config))

    async def _make_tokens(self) -> tuple[str, str]:
        db = Database(self.database_url)
        secrets = []
        for username, role in (("op", Role.OPERATOR), ("chief", Role.ADMIN)):
            await ensure_user(db, username, f"{role.value}-password-1", role)
            async with db.session() as session:
                user = await get_by_username(session, username)
                assert user is not None
                secret, _ = await create_token(session, user, name="e2e")
                await session.commit()
            secrets.append(secret)
        await db.dispose()
        return secrets[0], secrets[1]

    def start(self, timeout: float = 30.0) -> CentralProcess:
        """Start and wait until /healthz says the broker is connected."""
        if not self.token:
            self.prepare()
        log = (self.workdir / "central.log").open("ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "central", "--config", str(self.workdir / "central.yaml")],
            cwd=self.workdir,
            env=_env(),
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        LIVE.append(self.proc)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"central exited: {self.log_tail()}")
            try:
                r = httpx.get(f"{self.url}/healthz", timeout=1.0)
                if r.status_code == 200 and r.json()["mqtt_connected"]:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise TimeoutError(f"central not ready: {self.log_tail()}")

    def log_tail(self, lines: int = 40) -> str:
        path = self.workdir / "central.log"
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:]) if path.exists() else ""

    def api(self) -> httpx.Client:
        """An API client authenticated with the operator's bearer token."""
        return httpx.Client(base_url=self.url, headers={"Authorization": f"Bearer {self.token}"}, timeout=10.0)

    def kill(self) -> None:
        """SIGKILL central mid-work (a crash, the OOM killer, a power cut of the server)."""
        sigkill(self.proc)
        self.proc = None

    def stop(self) -> None:
        """SIGTERM: clean shutdown."""
        terminate(self.proc, 10)
        self.proc = None


@dataclass
class EdgeProcess:
    """``python -m edge.agent`` with simulated devices."""

    workdir: Path
    broker: Broker
    central_key: str
    node_id: str = "node-a"
    site: str = "site-a"
    events_per_s: float = 0.0
    health_interval_s: float = 1.0
    proc: subprocess.Popen[bytes] | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    environ: dict[str, str] = field(default_factory=dict)  # added to the process's environment

    @property
    def outbox_path(self) -> Path:
        return self.workdir / "outbox.db"

    def write_config(self) -> Path:
        self.workdir.mkdir(parents=True, exist_ok=True)
        config: dict[str, Any] = {
            "node_id": self.node_id,
            "site": self.site,
            "mqtt": {"host": "127.0.0.1", "port": self.broker.port, "reconnect_max_s": 1.0},
            "outbox": {"path": str(self.outbox_path)},
            "health": {"interval_s": self.health_interval_s},
            "commands": {"central_public_keys": [self.central_key]},
            "simulator": {
                "enabled": True,
                "seed": 7,
                "cameras": 1,
                "kiosks": 0,
                "sirens": 0,
                "events_per_s": self.events_per_s,
                "status_change_interval_s": 0,
            },
        }
        config.update(self.extra)
        path = self.workdir / "edge.yaml"
        path.write_text(yaml.safe_dump(config))
        return path

    def start(self) -> EdgeProcess:
        path = self.write_config()
        log = (self.workdir / "edge.log").open("ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "edge", "--config", str(path)],
            cwd=self.workdir,
            env=_env() | self.environ,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        LIVE.append(self.proc)
        return self

    def kill(self) -> None:
        """SIGKILL, as a power cut or OOM killer would."""
        sigkill(self.proc)
        self.proc = None

    def stop(self) -> None:
        """SIGTERM: clean shutdown."""
        terminate(self.proc, 15)
        self.proc = None

    def pending_rows(self) -> list[tuple[int, str, bytes]]:
        """Rows still in the outbox (id, topic, payload), read from a copy of the database files."""
        if not self.outbox_path.exists():
            return []
        with sqlite3.connect(f"file:{self.outbox_path}?mode=ro", uri=True) as conn:
            return [(r[0], r[1], r[2]) for r in conn.execute("SELECT id, topic, payload FROM outbox ORDER BY id")]

    def log_tail(self, lines: int = 40) -> str:
        path = self.workdir / "edge.log"
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:]) if path.exists() else ""


def wait_until(check: Any, timeout: float, interval: float = 0.05, what: str = "condition") -> Any:
    """Poll *check* until it returns something truthy; returns that value (AssertionError on timeout)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"{what} not met within {timeout} s")


async def rtsp_camera_edge(
    workdir: Path,
    broker: Broker,
    central_key_file: Path,
    *,
    node_id: str,
    site: str,
    device_id: str,
    name: str,
    stream_uri: str,
    live: dict[str, Any] | None = None,
    health_interval_s: float = 5.0,
) -> EdgeProcess:
    """An edge agent (not started yet) managing one RTSP-only camera already adopted in its store."""
    from edge.cameras.store import CameraStore, StoredCamera

    await asyncio.to_thread(workdir.mkdir, parents=True, exist_ok=True)
    store = CameraStore(workdir / "cameras.json")
    await store.load()
    await store.put(StoredCamera(device_id=device_id, name=name, stream_uri=stream_uri))
    return EdgeProcess(
        workdir=workdir,
        broker=broker,
        central_key=public_key_text(load_or_create_signing_key(central_key_file).verify_key),
        node_id=node_id,
        site=site,
        health_interval_s=health_interval_s,
        extra={
            "simulator": {"enabled": False},
            "cameras": {
                "enabled": True,
                "store_path": str(workdir / "cameras.json"),
                "discovery_interval_s": 0,
                "live": live or {},
            },
        },
    )


async def wait_camera_online(db: Database, node_id: str, device_id: str, timeout: float, edge: EdgeProcess) -> None:
    """Wait until central shows the camera ``online`` (AssertionError naming the edge's log if it never does)."""
    from central.store import camera_queries

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        async with db.session() as session:
            camera = await camera_queries.get_camera(session, node_id, device_id)
        if camera is not None and camera.status == "online":
            return
        await asyncio.sleep(0.2)
    raise AssertionError(f"camera {node_id}/{device_id} never came online at central; edge log:\n{edge.log_tail()}")
