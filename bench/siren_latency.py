"""Siren state change at the edge → the event on the dashboard's SSE stream, over Mosquitto on loopback.

Run: ``python -m bench.siren_latency [--changes 300] [--interval 0.35] [--debounce 0.1] [--sirens 4]``

Everything is real and on this machine: a Mosquitto broker of its own, central (``python -m central``, its own
process, SQLite) and an edge agent (in this process) watching ``--sirens`` simulated sirens through the same
monitor, state machine and outbox a Raspberry Pi uses (only the contacts are simulated). An SSE client (httpx, in
this process) listens on ``GET /api/v1/stream`` as the dashboard does.

The bench flips one siren's contactor every ``--interval`` seconds (round-robin over the sirens, so each one
alternates ``sounding`` / ``idle``) and, for each change, measures

* **edge → SSE**: the debounced state change at the edge (``SirenChanged.changed_at``, stamped by the state
  machine when the contact has been stable for ``debounce_s``) → the ``event`` frame read from the SSE stream:
  outbox commit (fsync), MQTT publish, Mosquitto, central's ingest batch and transaction, the bus, the HTTP
  stream. Target: p99 ≤ 300 ms.
* **contact → SSE**: the same, from the moment the contact flipped (adds the debounce and the poll interval).

Both clocks are this machine's wall clock (one host, so no skew).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import platform
import statistics
import tempfile
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import psutil

from edge.agent import EdgeAgent
from edge.config import EdgeConfig
from tests.support.broker import Broker
from tests.support.stack import CentralProcess
from varta.aio import wait_for
from varta.contract import SIREN_CHANGED_EVENT
from varta.logs import setup_logging

NODE, SITE = "bench-node", "bench"
TARGET_P99_MS = 300.0


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))]


def _edge_config(workdir: Path, broker: Broker, central: CentralProcess, sirens: int, debounce: float) -> EdgeConfig:
    return EdgeConfig(
        node_id=NODE,
        site=SITE,
        mqtt={"host": "127.0.0.1", "port": broker.port, "reconnect_max_s": 1.0},
        outbox={"path": workdir / "edge" / "outbox.db"},
        health={"interval_s": 30},
        commands={"central_public_keys": [central.public_key()]},
        sirens={
            "enabled": True,
            "sirens": [
                {
                    "device_id": f"siren-{i + 1}",
                    "name": f"Bench siren {i + 1}",
                    "inputs": {"kind": "simulated"},
                    "debounce_s": debounce,
                    "poll_interval_s": 0.02,
                }
                for i in range(sirens)
            ],
        },
    )


async def _listen(central: CentralProcess, arrived: dict[tuple[str, str], float], ready: asyncio.Event) -> None:
    """Read the SSE stream; record when each siren change (siren, changed_at) arrived."""
    headers = {"Authorization": f"Bearer {central.token}", "Accept": "text/event-stream"}
    async with (
        httpx.AsyncClient(base_url=central.url, headers=headers, timeout=None) as client,
        client.stream("GET", "/api/v1/stream") as response,
    ):
        response.raise_for_status()
        kind = ""
        async for line in response.aiter_lines():
            if line.startswith(": connected"):
                ready.set()
            elif line.startswith("event: "):
                kind = line[7:]
            elif line.startswith("data: ") and kind == "event":
                event = json.loads(line[6:])
                if event.get("kind") == SIREN_CHANGED_EVENT and not event.get("historical"):
                    arrived[(event["device_id"], event["data"]["changed_at"])] = time.time()


async def run(changes: int, interval: float, debounce: float, sirens: int) -> dict[str, Any]:
    """Run the benchmark; returns its figures."""
    with tempfile.TemporaryDirectory(prefix="varta-bench-siren-") as tmp:
        workdir = Path(tmp)
        broker = Broker(workdir / "broker", autosave_interval_s=60).start()
        # central's own default ingest batching (the test stack's 10 ms would flatter the figure)
        central = CentralProcess(workdir / "central", broker, extra={"ingest": {"batch_wait_s": 0.05}})
        try:
            await asyncio.to_thread(central.start)
            agent = EdgeAgent(_edge_config(workdir, broker, central, sirens, debounce))
            stop = asyncio.Event()
            agent_task = asyncio.create_task(agent.run(stop))
            arrived: dict[tuple[str, str], float] = {}
            ready = asyncio.Event()
            listener = asyncio.create_task(_listen(central, arrived, ready))
            try:
                await agent.wait_ready(30)
                await agent.client.wait_connected(30)
                await wait_for(ready.wait(), 30)
                monitor = agent.sirens
                assert monitor is not None
                ids = sorted(monitor.workers)
                await asyncio.sleep(max(2.0, debounce * 4))  # every siren settled in idle, startup events drained
                sounding = dict.fromkeys(ids, False)
                flips: list[tuple[str, float]] = []
                for i in range(changes):
                    siren = ids[i % len(ids)]
                    sounding[siren] = not sounding[siren]
                    flipped = time.time()
                    monitor.simulated(siren).set(contactor=sounding[siren])
                    flips.append((siren, flipped))
                    await asyncio.sleep(interval)
                await asyncio.sleep(2.0)
            finally:
                listener.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await listener
                stop.set()
                await agent_task
        finally:
            central.stop()
            broker.stop()

    by_siren: dict[str, list[tuple[float, float]]] = {}
    for (siren, changed_at), received in arrived.items():
        by_siren.setdefault(siren, []).append((datetime.fromisoformat(changed_at).timestamp(), received))
    edge_ms: list[float] = []
    contact_ms: list[float] = []
    for siren, flipped in flips:  # each flip's change: the siren's first change at or after the flip
        later = sorted(c for c in by_siren.get(siren, []) if c[0] >= flipped)
        if later:
            changed, received = later[0]
            edge_ms.append((received - changed) * 1000)
            contact_ms.append((received - flipped) * 1000)
    return {
        "changes": changes,
        "received": len(edge_ms),  # changes seen on the SSE stream
        "lost": changes - len(edge_ms),
        "edge_to_sse_ms": _summary(edge_ms),
        "contact_to_sse_ms": _summary(contact_ms),
        "debounce_s": debounce,
        "interval_s": interval,
        "sirens": sirens,
    }


def _summary(values: list[float]) -> dict[str, float]:
    if not values:
        return {}
    return {
        "p50": round(_pct(values, 50), 1),
        "p95": round(_pct(values, 95), 1),
        "p99": round(_pct(values, 99), 1),
        "max": round(max(values), 1),
        "mean": round(statistics.fmean(values), 1),
    }


def main() -> None:
    """Command line."""
    parser = argparse.ArgumentParser(prog="python -m bench.siren_latency", description=__doc__.splitlines()[0])
    parser.add_argument("--changes", type=int, default=300, help="siren state changes to time")
    parser.add_argument("--interval", type=float, default=0.35, help="seconds between contact flips")
    parser.add_argument("--debounce", type=float, default=0.1, help="the sirens' debounce_s")
    parser.add_argument("--sirens", type=int, default=4, help="simulated sirens on the node")
    args = parser.parse_args()
    setup_logging("WARNING")
    result = asyncio.run(run(args.changes, args.interval, args.debounce, args.sirens))
    print(f"machine: {platform.machine()}, {psutil.cpu_count()} CPUs, Python {platform.python_version()}")
    print(json.dumps(result, indent=2))
    p99 = result["edge_to_sse_ms"].get("p99")
    verdict = "met" if p99 is not None and p99 <= TARGET_P99_MS and result["lost"] == 0 else "NOT met"
    print(f"siren change at the edge → SSE: p99 {p99} ms (target ≤ {TARGET_P99_MS:.0f} ms): {verdict}")


if __name__ == "__main__":
    main()
