"""Ingest throughput and end-to-end latency against a real Mosquitto, with raw ``mosquitto_sub`` as reference.

Run: ``python -m bench.ingest_throughput [--rate 10000] [--duration 20] [--nodes 500] [--db sqlite|postgresql]``

1. Reference: how fast raw ``mosquitto_sub -q 1`` receives N messages from the same load generator.
2. Varta: central (``python -m central``, 1..n instances sharing the subscription) ingests what N simulated nodes
   publish at ``--rate`` msg/s for ``--duration`` s (health telemetry plus one event per node every few seconds).
   Latency = SSE arrival at a dashboard client − the message's own timestamp (edge publish → central committed →
   SSE), measured for every event. Throughput = messages committed per second while the load runs, and the drain
   rate if a backlog built up.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import multiprocessing
import os
import select
import shutil
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import orjson
import yaml
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from central.auth.bootstrap import ensure_user
from central.auth.roles import Role
from central.auth.tokens import create_token
from central.auth.users import get_by_username
from central.store.db import Database
from central.store.migrate import upgrade
from tests.support.broker import Broker
from tests.support.ports import free_port
from tests.support.processes import end_process
from varta.mqtt311 import remaining_length

ROOT = Path(__file__).resolve().parents[1]
# Unacknowledged QoS 1 messages per generator connection. The generator is a bare socket (not paho): in the field
# every edge node has its own CPU, here the publishers share central's two cores, so they must cost little.
WINDOW = 500
PG_ADMIN = "postgresql+asyncpg://postgres@127.0.0.1:5432/postgres"


# ------------------------------------------------------------------------------------------------ load generator


def _connect(port: int, client_id: str) -> socket.socket:
    """An MQTT 3.1.1 connection (clean session, no keepalive) on a plain socket."""
    sock = socket.create_connection(("127.0.0.1", port))
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    cid = client_id.encode()
    body = b"\x00\x04MQTT\x04\x02\x00\x00" + struct.pack("!H", len(cid)) + cid
    sock.sendall(b"\x10" + remaining_length(len(body)) + body)
    connack = sock.recv(4)
    if len(connack) != 4 or connack[0] != 0x20 or connack[3] != 0:
        raise RuntimeError(f"CONNACK refused: {connack!r}")
    sock.setblocking(False)
    return sock


HEALTH: dict[str, Any] = {
    "v": 1,
    "type": "health",
    "cpu_percent": 12.5,
    "load_1m": 0.4,
    "memory_percent": 41.0,
    "memory_available_mb": 900.0,
    "disk_percent": 55.0,
    "disk_free_mb": 9000.0,
    "temperature_c": 51.0,
    "undervoltage": False,
    "uptime_s": 86400.0,
    "agent_uptime_s": 3600.0,
    "version": "0.1.0",
    "outbox_pending": 0,
    "outbox_dropped_telemetry": 0,
    "outbox_dropped_events": 0,
    "historical": False,
}
EVENT: dict[str, Any] = {
    "v": 1,
    "type": "event",
    "kind": "bench.probe",
    "severity": "info",
    "device_id": None,
    "message": "",
    "data": {},
    "historical": False,
}
TICK_S = 0.005
_SEQ = 987654321987654321  # placeholders, replaced per message
_TS = "2000-01-01T00:00:00.000000+00:00"


def port_topic(node: str, channel: str) -> bytes:
    """A bench node's topic."""
    return f"varta/v1/bench/{node}/{channel}".encode()


@dataclass(frozen=True)
class _Template:
    """One node's message as bytes around its seq and timestamp."""

    head: bytes  # topic length + topic
    before_seq: bytes
    before_ts: bytes
    after_ts: bytes

    def packet(self, packet_id: int, seq: int, ts: bytes) -> bytes:
        seq_text = b"%d" % seq
        body_len = len(self.head) + 2 + len(self.before_seq) + len(seq_text) + len(self.before_ts) + len(ts)
        body_len += len(self.after_ts)
        return b"".join(
            (
                b"\x32",
                remaining_length(body_len),
                self.head,
                packet_id.to_bytes(2, "big"),
                self.before_seq,
                seq_text,
                self.before_ts,
                ts,
                self.after_ts,
            )
        )


def _template(topic: bytes, fields: dict[str, Any], node: str, boot: str) -> _Template:
    text = orjson.dumps(dict(fields, node_id=node, boot_id=boot, seq=_SEQ, ts=_TS))
    before_seq, rest = text.split(b"%d" % _SEQ)
    between, after_ts = rest.split(_TS.encode())
    return _Template(struct.pack("!H", len(topic)) + topic, before_seq, between, after_ts)


def _generator(
    port: int, nodes: list[str], rate: float, duration: float, events_every_s: float, limit: int, out: Any
) -> None:
    """One publisher process: health from *nodes* round-robin at *rate* msg/s, plus periodic events (QoS 1).

    Stops after *duration* s or *limit* messages. At most WINDOW messages are unacknowledged at once, so a
    message's timestamp is close to when it really left (no hidden queue inside the generator).
    """
    sock = _connect(port, f"gen-{uuid.uuid4().hex[:8]}")
    acked = 0
    leftover = 0  # bytes of a PUBACK split across reads

    def read_acks() -> None:
        nonlocal acked, leftover
        while True:
            try:
                data = sock.recv(65536)
            except BlockingIOError:
                return
            if not data:
                raise RuntimeError("broker closed the connection")
            leftover += len(data)
            acked += leftover // 4  # MQTT 3.1.1 PUBACK: 4 bytes
            leftover %= 4

    boot = uuid.uuid4().hex[:16]
    seqs = dict.fromkeys(nodes, 0)
    # Each message is a per-node template with its seq and timestamp spliced in: building JSON and packets per
    # message cost the generators ~50 µs each, half a core at 10k msg/s taken from the broker and central.
    templates = {
        n: (_template(port_topic(n, "health"), HEALTH, n, boot), _template(port_topic(n, "event"), EVENT, n, boot))
        for n in nodes
    }
    sent = 0
    start = time.perf_counter()
    next_event = {n: start + (i % 97) / 97 * events_every_s for i, n in enumerate(nodes)}
    i = 0
    packet_id = 0
    pending = bytearray()
    while sent < limit:
        read_acks()
        elapsed = time.perf_counter() - start
        if elapsed >= duration:
            break
        due = min(int(elapsed * rate) - sent, limit - sent, WINDOW - (sent - acked))
        if due <= 0:
            # Messages go out in ticks of ~TICK_S (50 per tick at 10k msg/s): one send() each, not one per message.
            select.select([sock], [], [], TICK_S)
            continue
        now = time.perf_counter()
        ts = datetime.now(UTC).isoformat().encode()
        for _ in range(min(due, 500)):
            node = nodes[i % len(nodes)]
            i += 1
            seq = seqs[node] = seqs[node] + 1
            packet_id = packet_id % 65535 + 1
            if now >= next_event[node]:
                next_event[node] = now + events_every_s
                template = templates[node][1]
            else:
                template = templates[node][0]
            pending += template.packet(packet_id, seq, ts)
            sent += 1
        while pending:
            try:
                n = sock.send(pending)
                del pending[:n]
            except BlockingIOError:
                select.select([sock], [sock], [], 0.01)
                read_acks()
    deadline = time.monotonic() + 60
    while acked < sent and time.monotonic() < deadline:
        select.select([sock], [], [], 0.01)
        read_acks()
    with contextlib.suppress(OSError):
        sock.sendall(b"\xe0\x00")  # DISCONNECT
    sock.close()
    out.put((sent, time.perf_counter() - start))


def run_load(
    port: int, total_nodes: int, rate: float, duration: float, procs: int, events_every_s: float, limit: int = 10**12
) -> int:
    """Start *procs* generator processes; returns messages sent."""
    nodes = [f"n{i:05d}" for i in range(total_nodes)]
    queue: Any = multiprocessing.Queue()
    workers = [
        multiprocessing.Process(
            target=_generator,
            args=(port, nodes[k::procs], rate / procs, duration, events_every_s, limit // procs, queue),
        )
        for k in range(procs)
    ]
    for w in workers:
        w.start()
    results = [queue.get() for _ in workers]
    for w in workers:
        w.join()
    return sum(r[0] for r in results)


# ------------------------------------------------------------------------------------------------ reference


def reference_mosquitto_sub(broker: Broker, messages: int, nodes: int, procs: int) -> float:
    """Messages/s that raw ``mosquitto_sub -q 1`` receives from the same generator at full speed."""
    sub = subprocess.Popen(
        [
            "mosquitto_sub",
            "-h",
            "127.0.0.1",
            "-p",
            str(broker.port),
            "-q",
            "1",
            "-V",
            "mqttv5",
            "-t",
            "varta/v1/+/+/health",
            "-t",
            "varta/v1/+/+/event",
            "-C",
            str(messages),
        ],
        stdout=subprocess.DEVNULL,
    )
    time.sleep(0.5)
    start = time.perf_counter()
    sent = run_load(broker.port, nodes, rate=1e9, duration=300, procs=procs, events_every_s=5.0, limit=messages)
    try:
        sub.wait(120)
    except subprocess.TimeoutExpired:
        sub.kill()
        raise RuntimeError("mosquitto_sub did not receive every message") from None
    return sent / (time.perf_counter() - start)


# ------------------------------------------------------------------------------------------------ central


@dataclass
class Central:
    procs: list[subprocess.Popen[bytes]]
    urls: list[str]
    token: str


async def _prepare_db(url: str) -> str:
    await asyncio.to_thread(upgrade, url)
    db = Database(url)
    await ensure_user(db, "bench", "bench-password-1", Role.OPERATOR)
    async with db.session() as session:
        user = await get_by_username(session, "bench")
        assert user is not None
        secret, _ = await create_token(session, user, name="bench")
        await session.commit()
    await db.dispose()
    return secret


async def _pg(sql: str) -> None:
    engine = create_async_engine(PG_ADMIN, isolation_level="AUTOCOMMIT")
    async with engine.connect() as conn:
        await conn.execute(text(sql))
    await engine.dispose()


def start_central(
    workdir: Path, broker: Broker, database_url: str, instances: int, cpus: set[int] | None = None
) -> Central:
    token = asyncio.run(_prepare_db(database_url))
    procs, urls = [], []
    env = {k: v for k, v in os.environ.items() if not k.startswith("VARTA_")}
    env["PYTHONPATH"] = str(ROOT)
    for i in range(instances):
        port = free_port()
        config = {
            "instance_id": f"bench-{i}",
            "database_url": database_url,
            "data_dir": str(workdir),
            "http": {"port": port},
            "mqtt": {"port": broker.port},
            "commands": {"signing_key_file": str(workdir / "signing.key")},
            "ingest": {"use_shared_subscription": instances > 1},
            "log_level": "WARNING",
        }
        path = workdir / f"central-{i}.yaml"
        path.write_text(yaml.safe_dump(config))
        log = (workdir / f"central-{i}.log").open("wb")
        procs.append(
            subprocess.Popen(
                [sys.executable, "-m", "central", "--config", str(path)],
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                preexec_fn=(lambda: os.sched_setaffinity(0, cpus)) if cpus else None,  # noqa: PLW1509
            )
        )
        urls.append(f"http://127.0.0.1:{port}")
    for url in urls:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{url}/healthz", timeout=1).json().get("mqtt_connected"):
                    break
            except (httpx.HTTPError, ValueError):
                pass
            time.sleep(0.2)
        else:
            raise RuntimeError(f"central at {url} did not come up")
    return Central(procs, urls, token)


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process (all its threads) so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_mb(pid: int) -> float:
    """Resident memory of a process, MB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def stored(central: Central) -> int:
    total = 0
    for url in central.urls:
        r = httpx.get(f"{url}/api/v1/system/ingest", headers={"Authorization": f"Bearer {central.token}"}, timeout=5)
        total += r.json()["stored"]
    return total


class SseLatency(threading.Thread):
    """Collects edge-timestamp → SSE-arrival latency of every ``event`` on every central's stream."""

    def __init__(self, central: Central) -> None:
        super().__init__(daemon=True)
        self.central = central
        self.latencies: list[float] = []
        self.reconnects = 0
        self.ready = threading.Event()

    def run(self) -> None:
        threads = [threading.Thread(target=self._one, args=(u,), daemon=True) for u in self.central.urls]
        for t in threads:
            t.start()
        for t in threads:
            t.join()

    def _one(self, url: str) -> None:
        headers = {"Authorization": f"Bearer {self.central.token}"}
        while True:  # like a browser's EventSource: reconnect if the server drops a lagging stream
            try:
                with httpx.stream("GET", f"{url}/api/v1/stream", headers=headers, timeout=None) as response:
                    name = ""
                    for line in response.iter_lines():
                        self.ready.set()
                        if line.startswith("event: "):
                            name = line[7:]
                        elif line.startswith("data: ") and name == "event":
                            data = json.loads(line[6:])
                            if data.get("kind") == "bench.probe":
                                sent = datetime.fromisoformat(data["ts"])
                                self.latencies.append((datetime.now(UTC) - sent).total_seconds())
            except httpx.HTTPError:
                self.reconnects += 1
                time.sleep(0.5)


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))] if ordered else float("nan")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rate", type=float, default=10_000, help="offered messages/s")
    parser.add_argument("--duration", type=float, default=20, help="seconds of load")
    parser.add_argument("--nodes", type=int, default=500, help="simulated nodes")
    parser.add_argument("--generators", type=int, default=2, help="publisher processes (one offers ~5k msg/s)")
    parser.add_argument("--db", choices=["sqlite", "postgresql"], default="sqlite")
    parser.add_argument("--instances", type=int, default=1, help="central processes sharing the subscription")
    parser.add_argument("--reference-messages", type=int, default=100_000)
    parser.add_argument("--show-logs", action="store_true", help="print the end of each central's log at the end")
    parser.add_argument(
        "--pin",
        action="store_true",
        help="central on CPU 1; broker, load generators and reference on CPU 0 (as if the nodes were elsewhere)",
    )
    args = parser.parse_args()
    central_cpus: set[int] | None = None
    if args.pin:
        os.sched_setaffinity(0, {0})  # inherited by the broker, the generators and mosquitto_sub
        central_cpus = {1}
    if args.instances > 1 and args.db == "sqlite":
        parser.error("several central instances need PostgreSQL (--db postgresql)")

    work = Path(tempfile.mkdtemp(prefix="varta-bench-"))
    broker = Broker(workdir=work / "mosquitto", autosave_interval_s=60).start()
    pg_name = None
    procs: list[subprocess.Popen[bytes]] = []
    try:
        ref = reference_mosquitto_sub(broker, args.reference_messages, args.nodes, args.generators)
        print(f"reference: mosquitto_sub -q 1 received {ref:,.0f} msg/s")
        broker.stop()
        shutil.rmtree(work / "mosquitto")
        broker = Broker(workdir=work / "mosquitto", autosave_interval_s=60).start()
        if args.db == "postgresql":
            pg_name = f"varta_bench_{uuid.uuid4().hex[:8]}"
            asyncio.run(_pg(f'CREATE DATABASE "{pg_name}"'))
            url = f"postgresql+asyncpg://postgres@127.0.0.1:5432/{pg_name}"
        else:
            url = f"sqlite+aiosqlite:///{work}/central.db"
        central = start_central(work, broker, url, args.instances, central_cpus)
        procs.extend(central.procs)
        sse = SseLatency(central)
        sse.start()
        sse.ready.wait(10)
        base = stored(central)
        samples: list[tuple[float, int]] = []
        stop = threading.Event()

        def sample() -> None:
            while not stop.is_set():
                samples.append((time.perf_counter(), stored(central) - base))
                time.sleep(0.5)

        sampler = threading.Thread(target=sample, daemon=True)
        cpu_before = [cpu_seconds(p.pid) for p in central.procs]
        start = time.perf_counter()
        sampler.start()
        sent = run_load(broker.port, args.nodes, args.rate, args.duration, args.generators, events_every_s=5.0)
        load_end = time.perf_counter()
        deadline = time.monotonic() + 300
        while stored(central) - base < sent and time.monotonic() < deadline:
            time.sleep(0.2)
        done = time.perf_counter()
        cpu_used = [cpu_seconds(p.pid) - before for p, before in zip(central.procs, cpu_before, strict=True)]
        memory = [rss_mb(p.pid) for p in central.procs]
        stop.set()
        sampler.join()
        total = stored(central) - base
        during = max((n for t, n in samples if t <= load_end), default=0)
        steady = [(t, n) for t, n in samples if start + 3 <= t <= load_end]
        steady_rate = (steady[-1][1] - steady[0][1]) / (steady[-1][0] - steady[0][0]) if len(steady) > 1 else 0.0
        lat = sse.latencies
        print(
            f"offered:   {sent:,} messages from {args.nodes} nodes in {load_end - start:.1f} s "
            f"({sent / (load_end - start):,.0f} msg/s), db={args.db}, instances={args.instances}, "
            f"{'pinned: central on CPU 1, the rest on CPU 0' if args.pin else 'not pinned'}"
        )
        print(
            f"committed: {total:,} ({total / max(sent, 1):.1%}); during load {during:,}; "
            f"steady ingest {steady_rate:,.0f} msg/s; all committed after {done - start:.1f} s "
            f"(overall {total / (done - start):,.0f} msg/s)"
        )
        if lat:
            print(
                f"latency edge→commit→SSE ({len(lat)} events): p50 {statistics.median(lat) * 1000:.0f} ms, "
                f"p95 {percentile(lat, 95) * 1000:.0f} ms, p99 {percentile(lat, 99) * 1000:.0f} ms, "
                f"max {max(lat) * 1000:.0f} ms"
            )
        print(
            f"central CPU: {sum(cpu_used):.1f} s for {total:,} messages = "
            f"{sum(cpu_used) / max(total, 1) * 1000:.3f} CPU-s per 1,000 messages "
            f"({', '.join(f'{c:.1f} s' for c in cpu_used)} per instance); "
            f"RSS {', '.join(f'{m:.0f} MB' for m in memory)}"
        )
        print(f"ratio to raw mosquitto_sub: {steady_rate / ref:.2f}; SSE reconnects: {sse.reconnects}")
    finally:
        for p in procs:
            end_process(p, timeout=15)
        if args.show_logs:
            for log_file in sorted(work.glob("central-*.log")):
                print(log_file.read_text()[-3000:])
        broker.stop()
        if pg_name:
            asyncio.run(_pg(f'DROP DATABASE IF EXISTS "{pg_name}" WITH (FORCE)'))
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
