"""``varta demo``: everything built so far on one machine, with simulated devices.

Starts an embedded MQTT broker (amqtt, MQTT 3.1.1, bound to 127.0.0.1 only), central (SQLite file) and simulated
edge nodes in one process, creates demo users and prints the URL and credentials. Production uses Mosquitto (see
docs/deploy-mosquitto.md).
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import socket
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import structlog

from varta.logs import setup_logging

log = structlog.get_logger(__name__)

DEMO_USERS = (
    ("admin", "varta-demo-admin", "admin"),
    ("operator", "varta-demo-operator", "operator"),
    ("dispatcher", "varta-demo-dispatcher", "dispatcher"),
)
DEMO_SITES = ("city-center", "village-north", "village-south")


@dataclass(frozen=True)
class DemoOptions:
    """What ``varta demo`` runs."""

    port: int = 8080
    broker_port: int = 18830
    nodes: int = 3
    data_dir: Path = Path("var/demo")
    health_interval_s: float = 5.0


def _port_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def pick_port(preferred: int) -> int:
    """*preferred* if free on 127.0.0.1, else the next free one above it."""
    for port in range(preferred, preferred + 100):
        if _port_free(port):
            return port
    raise RuntimeError(f"no free port in {preferred}–{preferred + 99}")


def amqtt_config(port: int) -> dict[str, Any]:
    """Embedded broker config: loopback only, anonymous (nothing but this machine can reach it)."""
    return {
        "listeners": {"default": {"type": "tcp", "bind": f"127.0.0.1:{port}", "max_connections": 200}},
        "plugins": {
            "amqtt.plugins.authentication.AnonymousAuthPlugin": {"allow_anonymous": True},
        },
    }


async def run_demo(options: DemoOptions, *, stop: asyncio.Event | None = None) -> None:
    """Run broker, central and simulated nodes until *stop* is set (or the task is cancelled)."""
    import uvicorn
    from amqtt.broker import Broker

    from central.app import create_app
    from central.auth.bootstrap import ensure_user
    from central.auth.roles import Role
    from central.config import CentralConfig, CommandSettings, HttpSettings, IngestSettings
    from central.store import migrate
    from central.store.db import Database
    from edge.agent import run_agent
    from edge.config import EdgeConfig
    from varta.mqtt import MqttSettings
    from varta.signing import load_or_create_signing_key, public_key_text

    stop = stop or asyncio.Event()
    data = options.data_dir.resolve()
    data.mkdir(parents=True, exist_ok=True)
    broker_port = pick_port(options.broker_port)
    http_port = pick_port(options.port)
    broker = Broker(amqtt_config(broker_port))
    await broker.start()

    mqtt = MqttSettings(port=broker_port, protocol="3.1.1", session_expiry_s=3600)
    key_file = data / "central-signing.key"
    config = CentralConfig(
        database_url=f"sqlite+aiosqlite:///{data / 'central.db'}",
        data_dir=data,
        http=HttpSettings(port=http_port),
        mqtt=mqtt.model_dump(),
        ingest=IngestSettings(use_shared_subscription=False),
        commands=CommandSettings(signing_key_file=key_file),
    )
    await asyncio.to_thread(migrate.upgrade, config.database_url)
    db = Database(config.database_url)
    for username, password, role in DEMO_USERS:
        await ensure_user(db, username, password, Role(role))
    await db.dispose()
    key = await asyncio.to_thread(load_or_create_signing_key, key_file)

    server = uvicorn.Server(
        uvicorn.Config(create_app(config), host="127.0.0.1", port=http_port, log_config=None, access_log=False)
    )
    server_task = asyncio.create_task(server.serve(), name="central")
    edge_stop = asyncio.Event()
    edge_tasks = []
    for i in range(options.nodes):
        site = DEMO_SITES[i % len(DEMO_SITES)]
        edge = EdgeConfig(
            node_id=f"node-{i + 1}",
            site=site,
            name=f"Demo node {i + 1} ({site})",
            mqtt=mqtt,
            outbox={"path": data / f"node-{i + 1}" / "outbox.db"},
            health={"interval_s": options.health_interval_s},
            commands={"central_public_keys": [public_key_text(key.verify_key)]},
            simulator={"enabled": True, "cameras": 2 + i, "events_per_s": 0.1},
        )
        edge_tasks.append(asyncio.create_task(run_agent(edge, stop=edge_stop), name=f"edge-{i + 1}"))

    while not server.started and not server_task.done():
        await asyncio.sleep(0.05)
    _banner(http_port, broker_port, data, options.nodes)
    try:
        await stop.wait()
    finally:
        edge_stop.set()
        await asyncio.gather(*edge_tasks, return_exceptions=True)
        server.should_exit = True
        with contextlib.suppress(Exception):
            await asyncio.wait_for(server_task, 10)
        await broker.shutdown()


def _banner(http_port: int, broker_port: int, data: Path, nodes: int) -> None:
    users = "\n".join(f"      {u:<11} / {p:<24} ({r})" for u, p, r in DEMO_USERS)
    print(
        f"""
  Varta demo is running.

    Dashboard:   http://127.0.0.1:{http_port}/
    API docs:    http://127.0.0.1:{http_port}/api/docs
    Log in with (user / password):
{users}

    Embedded MQTT broker (amqtt, MQTT 3.1.1): 127.0.0.1:{broker_port} — loopback only.
    {nodes} simulated edge node(s) with cameras, a kiosk and a siren; data in {data}
    Stop with Ctrl+C.
""",
        flush=True,
    )


def main(options: DemoOptions | None = None) -> int:
    """Entry point of ``varta demo``."""
    setup_logging("WARNING")
    options = options or DemoOptions()

    async def runner() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await run_demo(options, stop=stop)

    try:
        asyncio.run(runner())
    except RuntimeError as exc:
        print(f"varta demo: {exc}", file=sys.stderr)
        return 1
    return 0
