"""``varta demo``: everything built so far on one machine, with simulated devices.

Starts an embedded MQTT broker (amqtt, MQTT 3.1.1, bound to 127.0.0.1 only), central (SQLite file) and simulated
edge nodes in one process, creates demo users and prints the URL and credentials. Production uses Mosquitto (see
docs/deploy-mosquitto.md).

Simulated cameras describe themselves, send test-card thumbnails and a discovery report (see ``edge.simulator``).
When Debian's GStreamer RTSP server is installed, one more node (``camera-node``) looks after one real camera after
the banner is printed: GStreamer's RTSP server with a moving test pattern behind the project's ONVIF simulator,
adopted and monitored like a real one. Without GStreamer the demo runs without it.

Every node watches one simulated siren, the third one also a simulated UPS, and central polls a local alert feed
that answers like alerts.in.ua: :mod:`varta.demo_scenario` plays alerts, a silent siren, an unannounced one and a
blackout every ten minutes, so the incident list, the siren panel, the alert banner and the report have something
to show.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import signal
import socket
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import structlog

from varta.aio import wait_for
from varta.logs import setup_logging

log = structlog.get_logger(__name__)

DEMO_USERS = (
    ("admin", "varta-demo-admin", "admin"),
    ("operator", "varta-demo-operator", "operator"),
    ("dispatcher", "varta-demo-dispatcher", "dispatcher"),
    ("observer", "varta-demo-observer", "observer"),
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
    real_camera: bool = True


#: GStreamer's RTSP test server (run with Debian's Python, which has PyGObject); present in a source checkout.
GST_SCRIPT = Path(__file__).resolve().parents[1] / "tests" / "support" / "gst_rtsp_server.py"
SYSTEM_PYTHON = Path("/usr/bin/python3")
REAL_CAMERA_NODE = "camera-node"
REAL_CAMERA_ID = "cam-square-rtsp"


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
    from edge.agent import EdgeAgent
    from edge.config import EdgeConfig
    from varta.demo_kiosk import demo_content
    from varta.demo_scenario import DEMO_REGIONS, DEMO_SIRENS, DemoAlertFeed, DemoUps, play
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
    feed = DemoAlertFeed()
    feed_port = await feed.start()
    config = CentralConfig(
        database_url=f"sqlite+aiosqlite:///{data / 'central.db'}",
        data_dir=data,
        http=HttpSettings(port=http_port),
        mqtt=mqtt.model_dump(),
        ingest=IngestSettings(use_shared_subscription=False),
        commands=CommandSettings(signing_key_file=key_file),
        sites={site: {"name": name, "regions": regions} for site, (name, regions) in DEMO_REGIONS.items()},
        alerts={
            "sources": [
                {
                    "name": "demo",
                    "kind": "alerts_in_ua",
                    "url": f"http://127.0.0.1:{feed_port}",
                    "token": feed.token,
                    "poll_interval_s": 7.5,
                }
            ]
        },
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
    agents: list[EdgeAgent] = []
    ups = DemoUps()
    kiosk_port = pick_port(8090)
    for i in range(options.nodes):
        site = DEMO_SITES[i % len(DEMO_SITES)]
        blackout_node = i == min(2, options.nodes - 1)  # the village south's node runs on a (simulated) UPS
        edge = EdgeConfig(
            node_id=f"node-{i + 1}",
            site=site,
            name=f"Demo node {i + 1} ({site})",
            mqtt=mqtt,
            outbox={"path": data / f"node-{i + 1}" / "outbox.db"},
            health={"interval_s": options.health_interval_s},
            commands={"central_public_keys": [public_key_text(key.verify_key)]},
            simulator={"enabled": True, "cameras": 2 + i, "sirens": 0, "events_per_s": 0.1},
            sirens={
                "enabled": True,
                "sirens": [{"device_id": f"siren-{i + 1}", "name": DEMO_SIRENS[site], "inputs": {"kind": "simulated"}}],
            },
            power={"enabled": blackout_node, "ups": {"name": "demo", "poll_interval_s": 2.0}},
            kiosk=_demo_kiosk(data / f"node-{i + 1}", kiosk_port) if i == 0 else {},
        )
        agent = EdgeAgent(edge)
        if agent.ups is not None:
            agent.ups.client = ups  # answers like NUT; the scenario switches it to battery and back
        agents.append(agent)
        edge_tasks.append(asyncio.create_task(agent.run(edge_stop), name=f"edge-{i + 1}"))
    scenario = asyncio.create_task(play(feed, agents, ups if options.nodes >= 3 else None), name="demo-scenario")
    kiosk_agent = agents[0]
    if kiosk_agent.kiosk is not None:
        await kiosk_agent.wait_ready(20)
        signed, files = await asyncio.to_thread(demo_content, key, kiosk_agent.node_id, data / "kiosk-media")
        await kiosk_agent.kiosk.install_content(signed, files)

    while not server.started and not server_task.done():
        await asyncio.sleep(0.05)
    _banner(http_port, broker_port, data, options.nodes, kiosk_port)
    camera_task: asyncio.Task[None] | None = None
    if options.real_camera:
        camera_task = asyncio.create_task(
            _real_camera_node(data, mqtt, public_key_text(key.verify_key), edge_stop), name="real-camera"
        )
    try:
        await stop.wait()
    finally:
        scenario.cancel()
        edge_stop.set()
        await asyncio.gather(*edge_tasks, return_exceptions=True)
        if camera_task is not None:
            with contextlib.suppress(Exception):
                await wait_for(camera_task, 15)
        server.should_exit = True
        with contextlib.suppress(Exception):
            await wait_for(server_task, 10)
        await broker.shutdown()
        await feed.stop()


def gstreamer_available() -> bool:
    """True when the GStreamer RTSP server can run here (Debian's python3-gi and gir1.2-gst-rtsp-server-1.0)."""
    if not GST_SCRIPT.exists() or not SYSTEM_PYTHON.exists():
        return False
    check = "import gi; gi.require_version('GstRtspServer', '1.0')"
    try:
        argv = [str(SYSTEM_PYTHON), "-c", check]  # fixed interpreter and code: no outside input
        result = subprocess.run(argv, capture_output=True, timeout=15, check=False)  # noqa: S603
    except (OSError, subprocess.TimeoutExpired):
        return False
    return result.returncode == 0


@contextlib.asynccontextmanager
async def rtsp_test_server(port: int, user: str, password: str, path: str = "cam") -> AsyncIterator[str]:
    """GStreamer's RTSP server with a moving test pattern on 127.0.0.1:*port*; yields its URI (no credentials)."""
    proc = await asyncio.create_subprocess_exec(
        str(SYSTEM_PYTHON),
        str(GST_SCRIPT),
        f"--port={port}",
        f"--paths={path}",
        "--width=640",
        "--height=360",
        "--fps=25",  # the ONVIF simulator's main profile says 25 fps: anything less is low_fps
        "--bitrate=512",
        f"--user={user}",
        f"--password={password}",
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        assert proc.stdout is not None
        line = await wait_for(proc.stdout.readline(), 15)
        if not line.startswith(b"ready"):
            raise RuntimeError(f"the GStreamer RTSP server did not start ({line[:80]!r})")
        yield f"rtsp://127.0.0.1:{port}/{path}"
    finally:
        if proc.returncode is None:
            proc.terminate()
            try:
                await wait_for(proc.wait(), 5)
            except TimeoutError:
                proc.kill()
                await proc.wait()


async def _real_camera_node(data: Path, mqtt: Any, central_key: str, stop: asyncio.Event) -> None:
    """One more node with one real camera (RTSP test pattern + ONVIF simulator); skipped without GStreamer."""
    if not await asyncio.to_thread(gstreamer_available):
        log.warning(
            "demo.real_camera_skipped", detail="GStreamer RTSP server not installed (gir1.2-gst-rtsp-server-1.0)"
        )
        return
    try:
        from pydantic import SecretStr

        from edge.agent import run_agent
        from edge.cameras.onvif_simulator import OnvifSimulator
        from edge.cameras.store import CameraStore, StoredCamera
        from edge.cameras.wsdiscovery import STREAMING_SCOPE, DiscoveryResponder
        from edge.config import EdgeConfig
        from varta.contract import CameraThresholds
        from varta.sealing import Credentials
    except ImportError as exc:  # the cameras extra is not installed
        log.warning("demo.real_camera_skipped", detail=f"missing module {exc.name}")
        return
    user, password = "demo", secrets.token_urlsafe(12)  # a fresh password every run, never shown
    node_dir = data / REAL_CAMERA_NODE
    try:
        async with contextlib.AsyncExitStack() as stack:
            rtsp_uri = await stack.enter_async_context(rtsp_test_server(pick_port(18554), user, password))
            onvif = OnvifSimulator(
                username=user, password=SecretStr(password), rtsp_uri=rtsp_uri, model="SimCam-1 (GStreamer)"
            )
            await stack.enter_async_context(onvif)
            endpoint = f"urn:uuid:{uuid.uuid5(uuid.NAMESPACE_URL, onvif.address)}"
            scopes = [
                STREAMING_SCOPE,
                "onvif://www.onvif.org/name/Square%20camera",
                "onvif://www.onvif.org/hardware/SimCam-1",
            ]
            responder = DiscoveryResponder(endpoint, [onvif.address], scopes, port=0)
            await stack.enter_async_context(responder)
            host, port = responder.address
            await CameraStore(node_dir / "cameras.json").put(
                StoredCamera(
                    device_id=REAL_CAMERA_ID,
                    name="Main square (real RTSP stream)",
                    onvif_address=onvif.address,
                    endpoint=endpoint,
                    thresholds=CameraThresholds(snapshot_interval_s=60),
                    credentials=Credentials(username=user, password=SecretStr(password)),
                )
            )
            edge = EdgeConfig(
                node_id=REAL_CAMERA_NODE,
                site=DEMO_SITES[0],
                name="Demo camera node (real RTSP camera)",
                mqtt=mqtt,
                outbox={"path": node_dir / "outbox.db"},
                health={"interval_s": 5.0},
                commands={"central_public_keys": [central_key]},
                cameras={
                    "enabled": True,
                    "discovery_interval_s": 300,
                    "discovery_multicast": False,
                    "discovery_unicast": [f"{host}:{port}"],
                    "discovery_timeout_s": 1.0,
                },
            )
            print(
                f"    Real camera: GStreamer RTSP test pattern behind an ONVIF simulator, on {REAL_CAMERA_NODE};"
                " open it from the camera wall to watch it live (WebRTC)."
            )
            await run_agent(edge, stop=stop)
    except Exception as exc:
        log.warning("demo.real_camera_failed", error=f"{type(exc).__name__}: {exc}"[:300])


def _demo_kiosk(folder: Path, port: int) -> dict[str, Any]:
    """node-1 drives a kiosk: open its player page in a browser (the restart command does nothing in the demo)."""
    return {
        "enabled": True,
        "name": "Kiosk on the square",
        "listen_port": port,
        "content_dir": folder / "kiosk",
        "shelter": {
            "name": "Укриття: підземний перехід біля ратуші",
            "address": "вул. Соборна, 1",
            "directions": "Праворуч від кіоску, 120 м, вхід зі сходами та пандусом",
            "distance_m": 120,
            "name_en": "Shelter: underpass by the town hall",
            "directions_en": "120 m to the right, stairs and ramp",
        },
        "heartbeat_timeout_s": 60,
        "restart": {"command": [sys.executable, "-c", "pass"], "max_per_boot": 100, "min_interval_s": 3600},
    }


def _banner(http_port: int, broker_port: int, data: Path, nodes: int, kiosk_port: int) -> None:
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
    Kiosk player (node-1): http://127.0.0.1:{kiosk_port}/player — open it full screen; it plays signed content
    and turns into the shelter page while node-1's siren sounds or an official alert covers its site.
    Every 10 minutes (first after 45 s): an official air-raid alert from a local feed; one siren sounds, one stays
    silent (siren_failure), later a siren sounds with no alert and the third site has a blackout (power_outage).
    See Incidents, Sirens and Reports in the dashboard.
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
