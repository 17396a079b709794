"""Edge process → Mosquitto → central process: the foundation's delivery guarantees, end to end."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.broker import Broker
from tests.support.stack import CentralProcess, EdgeProcess, wait_until

pytestmark = pytest.mark.slow


class SseRecorder(threading.Thread):
    """Reads /api/v1/stream in the background, recording (arrival time, event, data)."""

    def __init__(self, central: CentralProcess) -> None:
        super().__init__(daemon=True)
        self.central = central
        self.events: list[tuple[float, str, dict[str, Any]]] = []
        self.connected = threading.Event()
        self.stopped = False

    def run(self) -> None:
        headers = {"Authorization": f"Bearer {self.central.token}", "Accept": "text/event-stream"}
        with httpx.stream("GET", f"{self.central.url}/api/v1/stream", headers=headers, timeout=None) as response:
            assert response.status_code == 200
            name = ""
            for line in response.iter_lines():
                self.connected.set()
                if self.stopped:
                    return
                if line.startswith("event: "):
                    name = line[7:]
                elif line.startswith("data: "):
                    self.events.append((time.monotonic(), name, json.loads(line[6:])))

    def first(self, name: str, predicate: Any) -> float | None:
        for at, event, data in list(self.events):
            if event == name and predicate(data):
                return at
        return None


def node_events(api: httpx.Client, node_id: str) -> list[dict[str, Any]]:
    """Every event of a node, oldest first."""
    events: list[dict[str, Any]] = []
    before: int | None = None
    while True:
        params: dict[str, Any] = {"limit": 1000}
        if before is not None:
            params["before_id"] = before
        page = api.get(f"/api/v1/nodes/{node_id}/events", params=params).json()
        events.extend(page)
        if len(page) < 1000:
            return list(reversed(events))
        before = page[-1]["id"]


def sim_ticks(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Events of the simulator (each carries an increasing ``sim_index``)."""
    return [e for e in events if e["source"] == "node" and "sim_index" in e["data"]]


def settled_ticks(api: httpx.Client, node_id: str = "node-a") -> list[dict[str, Any]]:
    """The node's simulator events once their count stops changing (the pipeline has drained)."""

    def settled() -> list[dict[str, Any]] | None:
        first = sim_ticks(node_events(api, node_id))
        time.sleep(1.0)
        second = sim_ticks(node_events(api, node_id))
        return second if len(first) == len(second) else None

    result: list[dict[str, Any]] = wait_until(settled, 30, 0.1, "event count settled")
    return result


def outbox_indexes(rows: list[tuple[int, str, bytes]]) -> list[int]:
    """``sim_index`` of the simulator events still waiting in an edge outbox, in outbox order."""
    payloads = [json.loads(payload) for _, t, payload in rows if t.endswith("/event")]
    return [p["data"]["sim_index"] for p in payloads if "sim_index" in p.get("data", {})]


def test_node_appears_online_with_health_in_api_and_sse_within_2s(
    central: CentralProcess, broker: Broker, tmp_path: Path
) -> None:
    sse = SseRecorder(central)
    sse.start()
    assert sse.connected.wait(10)
    edge = EdgeProcess(tmp_path / "edge", broker, central.public_key())
    started = time.monotonic()
    edge.start()
    try:
        with central.api() as api:

            def online_with_health() -> bool:
                r = api.get("/api/v1/nodes/node-a")
                return r.status_code == 200 and r.json()["online"] and r.json()["last_health"] is not None

            wait_until(online_with_health, timeout=10, interval=0.02, what="node online with health in the API")
            api_after = time.monotonic() - started
            # Identity comes with the birth message, which may be committed a moment after the first health.
            node = wait_until(
                lambda: (n := api.get("/api/v1/nodes/node-a").json())["version"] and n["hostname"] and n,
                5,
                0.05,
                "node identity from its birth message",
            )
        sse_online = wait_until(
            lambda: sse.first("node", lambda d: d["node_id"] == "node-a" and d["online"]), 5, what="SSE node online"
        )
        sse_health = wait_until(lambda: sse.first("health", lambda d: d["node_id"] == "node-a"), 5, what="SSE health")
        print(
            f"API {api_after:.2f} s, SSE online {sse_online - started:.2f} s, SSE health {sse_health - started:.2f} s"
        )
        assert api_after < 2.0
        assert sse_online - started < 2.0
        assert sse_health - started < 2.0
        assert node["site"] == "site-a" and node["version"] and node["hostname"]
        assert 0 <= node["last_health"]["cpu_percent"] <= 100
    finally:
        sse.stopped = True
        edge.stop()


def test_broker_down_30s_while_edge_emits_every_event_arrives_exactly_once_in_order(
    central: CentralProcess, broker: Broker, tmp_path: Path
) -> None:
    edge = EdgeProcess(tmp_path / "edge", broker, central.public_key(), events_per_s=20, health_interval_s=2)
    edge.start()
    with central.api() as api:
        wait_until(lambda: len(sim_ticks(node_events(api, "node-a"))) >= 10, 20, 0.2, "first events")
        broker.stop()
        time.sleep(30)
        broker.start()
        # Keep emitting a little after the outage, then stop the agent cleanly.
        wait_until(lambda: api.get("/healthz").json()["mqtt_connected"], 30, 0.2, "central reconnected")
        time.sleep(3)
        edge.stop()
        leftover = edge.pending_rows()

        ticks = settled_ticks(api)
        gaps = api.get("/api/v1/nodes/node-a/gaps").json()
        stats = api.get("/api/v1/system/ingest").json()
    indexes = [e["data"]["sim_index"] for e in ticks]
    leftover_indexes = outbox_indexes(leftover)
    print(f"{len(indexes)} events at central, {len(leftover_indexes)} left in the outbox, stats {stats}")
    # Exactly once, in order: central holds a gap-free prefix 0..n-1, the outbox holds the rest.
    assert indexes == list(range(len(indexes)))
    assert leftover_indexes == list(range(len(indexes), len(indexes) + len(leftover_indexes)))
    assert len(indexes) > 10 + 20 * 25  # the ~30 s outage's events came through
    assert any(e["historical"] for e in ticks)  # the ones replayed from the outbox are flagged
    assert gaps == []


def test_sigkill_edge_while_emitting_loses_nothing_accepted_and_central_drops_replays(
    central: CentralProcess, broker: Broker, tmp_path: Path
) -> None:
    edge = EdgeProcess(tmp_path / "edge", broker, central.public_key(), events_per_s=300, health_interval_s=1)
    edge.start()
    with central.api() as api:
        wait_until(lambda: len(sim_ticks(node_events(api, "node-a"))) >= 200, 30, 0.2, "events flowing")
        edge.kill()
        pending = [json.loads(p) for _, t, p in edge.pending_rows()]
        first_boot = api.get("/api/v1/nodes/node-a").json()["boot_id"]
        at_kill = {e["data"]["sim_index"] for e in sim_ticks(node_events(api, "node-a"))}
        pending_ticks = [
            p for p in pending if p.get("type") == "event" and "sim_index" in p["data"] and p["boot_id"] == first_boot
        ]
        already_there = [p for p in pending_ticks if p["data"]["sim_index"] in at_kill]
        duplicates_before = api.get("/api/v1/system/ingest").json()["duplicates"]
        edge.events_per_s = 0
        edge.start()  # same outbox: the new boot replays what the old one had not delivered
        try:
            wait_until(lambda: api.get("/api/v1/nodes/node-a").json()["boot_id"] != first_boot, 20, 0.1, "second boot")
            wait_until(lambda: not edge.pending_rows(), 30, 0.2, "outbox drained")
            time.sleep(1.0)
            ticks = sim_ticks(node_events(api, "node-a"))
            gaps = api.get("/api/v1/nodes/node-a/gaps").json()
            stats = api.get("/api/v1/system/ingest").json()
        finally:
            edge.stop()
    print(f"{len(pending_ticks)} pending at kill, {len(already_there)} already at central; stats {stats}")
    # Nothing accepted into the outbox was lost: every pending event reached central, once.
    received = [e["data"]["sim_index"] for e in ticks]
    for p in pending_ticks:
        assert received.count(p["data"]["sim_index"]) == 1
    assert received and received == list(range(len(received)))  # first boot: 0..n-1, no holes, no repeats
    assert [g for g in gaps if g["boot_id"] == first_boot] == []
    assert stats["duplicates"] - duplicates_before >= len(already_there)


def test_power_cut_marks_node_offline_from_last_will_within_30s(
    central: CentralProcess, broker: Broker, tmp_path: Path
) -> None:
    edge = EdgeProcess(tmp_path / "edge", broker, central.public_key())
    edge.start()
    with central.api() as api:
        wait_until(
            lambda: (
                api.get("/api/v1/nodes/node-a").status_code == 200 and api.get("/api/v1/nodes/node-a").json()["online"]
            ),
            20,
            0.1,
            "node online",
        )
        killed = time.monotonic()
        edge.kill()

        def offline() -> dict[str, Any] | None:
            node = api.get("/api/v1/nodes/node-a").json()
            return node if not node["online"] else None

        node = wait_until(offline, 30, 0.1, "node offline")
        took = time.monotonic() - killed
        events = node_events(api, "node-a")
    print(f"offline after {took:.2f} s")
    assert took < 30
    assert node["offline_reason"] == "last_will"
    assert events[-1]["kind"] == "node.offline" and events[-1]["severity"] == "critical"


def test_sigkill_central_mid_ingest_loses_nothing_the_broker_accepted(
    central: CentralProcess, broker: Broker, tmp_path: Path
) -> None:
    edge = EdgeProcess(tmp_path / "edge", broker, central.public_key(), events_per_s=100, health_interval_s=1)
    edge.start()
    with central.api() as api:
        wait_until(lambda: len(sim_ticks(node_events(api, "node-a"))) >= 100, 30, 0.2, "events flowing")
    central.kill()  # batches in flight were never acknowledged: the broker must deliver them again
    time.sleep(3)  # the edge keeps publishing; the broker queues it in central's persistent session
    central.start()
    time.sleep(2)
    edge.stop()
    leftover = edge.pending_rows()
    with central.api() as api:
        ticks = settled_ticks(api)
        gaps = api.get("/api/v1/nodes/node-a/gaps").json()
    indexes = [e["data"]["sim_index"] for e in ticks]
    leftover_indexes = outbox_indexes(leftover)
    print(f"{len(indexes)} events at central after its SIGKILL and restart, {len(leftover_indexes)} in the outbox")
    assert indexes == list(range(len(indexes)))
    assert leftover_indexes == list(range(len(indexes), len(indexes) + len(leftover_indexes)))
    assert len(indexes) > 100 + 100 * 3  # what was sent while central was dead arrived
    assert gaps == []
