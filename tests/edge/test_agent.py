"""The whole edge agent against a real broker: availability, birth, health, shutdown, outages, SIGKILL."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from edge.agent import EdgeAgent, main
from tests.edge.support import NODE, SITE, Collector, edge_config, eventually, running_agent
from tests.support.broker import Broker
from varta.contract import UPLINK_RESTORED_EVENT, Channel, DeviceKind, DeviceStatus, Severity, node_prefix, topic

REPO = Path(__file__).resolve().parents[2]
ALL = f"{node_prefix(SITE, NODE)}/#"
STATUS = topic(SITE, NODE, Channel.STATUS)


def first_by_seq(payloads: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The first copy of each (boot_id, seq) in arrival order (at-least-once delivery may repeat some)."""
    seen: set[tuple[str, int]] = set()
    out = []
    for p in payloads:
        key = (p["boot_id"], p["seq"])
        if key not in seen:
            seen.add(key)
            out.append(p)
    return out


async def test_agent_announces_itself_online_with_birth_and_periodic_health(broker: Broker, tmp_path: Path) -> None:
    config = edge_config(broker, tmp_path, health={"interval_s": 1})
    async with Collector(broker.settings(), ALL) as sub, running_agent(config) as agent:
        await sub.wait_for(lambda p: len(p) >= 2, suffix="/health", timeout=5)
        status = sub.payloads("/status")
        birth = sub.payloads("/birth")
    assert status[0]["state"] == "online" and status[0]["seq"] == 0 and status[0]["boot_id"] == agent.boot_id
    assert len(birth) == 1
    assert birth[0]["site"] == SITE and birth[0]["name"] == "Test node" and birth[0]["historical"] is False
    assert {"ping", "health.publish", "outbox.stats"} <= set(birth[0]["capabilities"])
    assert birth[0]["health_interval_s"] == 1
    retained = {m.topic: m.retain for m in sub.messages}
    assert retained[STATUS] is False  # live delivery: retain flag cleared for existing subscribers
    health = sub.payloads("/health")
    assert health[0]["node_id"] == NODE and health[0]["seq"] >= 1 and health[0]["version"]
    seqs = [p["seq"] for p in sub.payloads() if p["seq"]]
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)


async def test_retained_status_birth_and_device_state_reach_a_late_subscriber(broker: Broker, tmp_path: Path) -> None:
    async with running_agent(edge_config(broker, tmp_path)) as agent:
        seq = await agent.set_device_state(
            "cam-1",
            DeviceKind.CAMERA,
            DeviceStatus.OFFLINE,
            "unreachable",
            "no answer",
            {"ip": "192.0.2.1"},
            name="Gate",
        )
        await agent.emit_event("camera.tamper", Severity.WARNING, "cam-1", "moved", {"angle": 12})
        await eventually(lambda: agent.outbox.stats().pending == 0, what="outbox drained")
        async with Collector(broker.settings(), ALL) as late:
            await late.wait_for(lambda p: {"availability", "birth", "device_state"} <= {x["type"] for x in p})
    state = late.payloads("/state/cam-1")[0]
    assert (state["seq"], state["status"], state["reason"], state["attrs"], state["name"]) == (
        seq,
        "offline",
        "unreachable",
        {"ip": "192.0.2.1"},
        "Gate",
    )
    assert not late.payloads("/event")  # events are not retained


async def test_clean_shutdown_publishes_retained_offline(broker: Broker, tmp_path: Path) -> None:
    async with Collector(broker.settings(), STATUS) as sub:
        async with running_agent(edge_config(broker, tmp_path)) as agent:
            await sub.wait_for(lambda p: any(x["state"] == "online" for x in p))
        got = await sub.wait_for(lambda p: any(x["state"] == "offline" for x in p))
    assert got[-1] == {**got[-1], "state": "offline", "reason": "shutdown", "boot_id": agent.boot_id, "seq": 0}
    async with Collector(broker.settings(), STATUS) as late:
        retained = await late.wait_for(lambda p: len(p) >= 1)
    assert retained[0]["state"] == "offline" and retained[0]["reason"] == "shutdown"


async def test_cancelled_agent_still_publishes_offline(broker: Broker, tmp_path: Path) -> None:
    agent = EdgeAgent(edge_config(broker, tmp_path))
    async with Collector(broker.settings(), STATUS) as sub:
        task = asyncio.create_task(agent.run(asyncio.Event()))
        await sub.wait_for(lambda p: any(x["state"] == "online" for x in p))
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        got = await sub.wait_for(lambda p: any(x["state"] == "offline" for x in p))
    assert (got[-1]["reason"], got[-1]["boot_id"]) == ("shutdown", agent.boot_id)


async def test_a_crashing_loop_is_logged_and_restarted(broker: Broker, tmp_path: Path) -> None:
    config = edge_config(
        broker, tmp_path, simulator={"enabled": True, "events_per_s": 50, "status_change_interval_s": 0}
    )
    agent = EdgeAgent(config)
    assert agent.simulator is not None
    real_run, attempts = agent.simulator.run, []

    async def flaky() -> None:
        attempts.append(1)
        if len(attempts) == 1:
            raise RuntimeError("device driver blew up")
        await real_run()

    agent.simulator.run = flaky  # type: ignore[method-assign]
    async with Collector(broker.settings(), topic(SITE, NODE, Channel.EVENT)) as sub, running_agent(agent):
        await sub.wait_for(lambda p: len(p) >= 5, timeout=10)
        assert agent.client.connected.is_set()  # the rest of the agent kept running
    assert len(attempts) == 2


@pytest.mark.slow
async def test_events_survive_a_broker_outage_in_order_and_replays_are_historical(
    broker: Broker, tmp_path: Path
) -> None:
    config = edge_config(
        broker, tmp_path, simulator={"enabled": True, "seed": 7, "events_per_s": 200, "status_change_interval_s": 0}
    )
    fast = broker.settings(reconnect_min_s=0.1, reconnect_max_s=0.3)
    async with (
        Collector(fast, topic(SITE, NODE, Channel.EVENT), client_id="watcher", clean_start=False) as sub,
        running_agent(config) as agent,
    ):
        sim = agent.simulator
        assert sim is not None
        await sub.wait_for(lambda p: len(p) >= 100)
        await asyncio.to_thread(broker.stop)  # never block the loop the agent runs in
        stopped_at = sim.sim_index
        await asyncio.sleep(3)
        assert agent.outbox.stats().pending >= 200  # the simulator kept going into the outbox
        restarted_at = sim.sim_index
        await asyncio.to_thread(broker.start)
        await eventually(lambda: sim.sim_index > restarted_at + 200, what="more live events")
        target = sim.sim_index
        await sub.wait_for(lambda p: any(x["data"].get("sim_index", -1) >= target for x in p), timeout=20)
    # The outage itself is reported too (uplink.restored); the simulated events are what this test follows.
    events = [e for e in first_by_seq(sub.payloads()) if e["kind"] != UPLINK_RESTORED_EVENT]
    indexes = [e["data"]["sim_index"] for e in events]
    assert indexes == list(range(len(indexes))), "an event was lost or reordered"
    assert [e["seq"] for e in events] == sorted(e["seq"] for e in events)
    outage = [e for e in events if stopped_at <= e["data"]["sim_index"] < restarted_at]
    assert len(outage) == restarted_at - stopped_at >= 200
    assert all(e["historical"] for e in outage)
    assert events[-1]["historical"] is False  # live again after the replay
    assert {e["boot_id"] for e in events} == {agent.boot_id}


def test_main_reports_a_config_error_and_returns_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "edge.yaml"
    bad.write_text("node_id: n1\nsite: s1\nmqtt:\n  hots: x\n")
    assert main(bad) == 2
    err = capsys.readouterr().err
    assert "invalid edge configuration" in err and "mqtt.hots: Extra inputs are not permitted" in err


# ------------------------------------------------------------------------------------------------- subprocess


@pytest.fixture
def agent_config_file(broker: Broker, tmp_path: Path) -> Path:
    path = tmp_path / "edge.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "node_id": NODE,
                "site": SITE,
                "mqtt": {"host": "127.0.0.1", "port": broker.port, "reconnect_min_s": 0.1, "reconnect_max_s": 0.5},
                "outbox": {"path": str(tmp_path / "edge" / "outbox.db")},
                "health": {"interval_s": 1},
                "simulator": {"enabled": True, "seed": 3, "events_per_s": 100, "status_change_interval_s": 0},
                "log_format": "json",
            }
        )
    )
    return path


@pytest.fixture
def spawn(tmp_path: Path) -> Iterator[Any]:
    procs: list[subprocess.Popen[bytes]] = []

    def start(config: Path) -> subprocess.Popen[bytes]:
        log = (tmp_path / f"agent-{len(procs)}.log").open("wb")
        env = {k: v for k, v in os.environ.items() if not k.startswith("VARTA_EDGE__")}
        proc = subprocess.Popen(
            [sys.executable, "-m", "edge.agent", "--config", str(config)], cwd=REPO, stderr=log, env=env
        )
        procs.append(proc)
        return proc

    yield start
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
        proc.wait()


@pytest.mark.slow
async def test_killed_agent_leaves_its_last_will_and_the_next_boot_replays_its_outbox(
    broker: Broker, agent_config_file: Path, spawn: Any
) -> None:
    async with Collector(broker.settings(), ALL) as sub:
        first = spawn(agent_config_file)
        online = await sub.wait_for(lambda p: any(x.get("state") == "online" for x in p), suffix="/status")
        boot1 = online[0]["boot_id"]
        await sub.wait_for(lambda p: len(p) >= 50, suffix="/event")
        first.send_signal(signal.SIGKILL)
        first.wait()
        await sub.wait_for(lambda p: any(x.get("reason") == "last_will" for x in p), suffix="/status", timeout=5)

        second = spawn(agent_config_file)
        births = await sub.wait_for(lambda p: any(x["boot_id"] != boot1 for x in p), suffix="/birth")
        boot2 = next(b["boot_id"] for b in births if b["boot_id"] != boot1)
        await sub.wait_for(lambda p: any(x["boot_id"] == boot2 for x in p), suffix="/event")
        second.send_signal(signal.SIGTERM)
        assert await asyncio.to_thread(second.wait, 15) == 0
        await sub.wait_for(lambda p: any(x.get("reason") == "shutdown" for x in p), suffix="/status")

    statuses = [(s["boot_id"], s["state"], s["reason"]) for s in sub.payloads("/status")]
    assert statuses == [
        (boot1, "online", "connected"),
        (boot1, "offline", "last_will"),
        (boot2, "online", "connected"),
        (boot2, "offline", "shutdown"),
    ]
    messages = first_by_seq([p for p in sub.payloads() if p["seq"] > 0])
    boot1_seqs = [m["seq"] for m in messages if m["boot_id"] == boot1]
    assert boot1_seqs == list(range(1, len(boot1_seqs) + 1)), "boot 1 lost a committed message"
    # Boot 1's leftovers (if the kill left any) arrive after boot 2 started, flagged historical, before boot 2's birth.
    boot2_start = next(i for i, m in enumerate(messages) if m["boot_id"] == boot2)
    leftovers = [m for m in messages[boot2_start:] if m["boot_id"] == boot1]
    assert all(m["historical"] for m in leftovers)
    birth2 = next(i for i, m in enumerate(messages) if m["boot_id"] == boot2 and m["type"] == "birth")
    assert all(m["boot_id"] == boot2 for m in messages[birth2:])


async def test_a_simulated_camera_answers_a_live_view_with_a_clear_no(tmp_path: Path, broker: Broker) -> None:
    from edge.commands import CommandFailed
    from varta.contract import Command, CommandType, LiveError, utcnow

    config = edge_config(broker, tmp_path, simulator={"enabled": True, "cameras": 1, "kiosks": 0, "sirens": 0})
    agent = EdgeAgent(config)
    handler = agent.registry.get(CommandType.CAMERA_LIVE_START.value)
    assert handler is not None
    command = Command(
        node_id=NODE,
        boot_id="central",
        seq=1,
        ts=utcnow(),
        request_id="req-live-0001",
        command=CommandType.CAMERA_LIVE_START.value,
        expires_at=utcnow(),
    )
    with pytest.raises(CommandFailed) as failed:
        await handler(command)
    assert failed.value.reason == LiveError.LIVE_DISABLED.value and "simulated camera" in str(failed.value)
    # Without the simulator (and without cameras) there is no handler: central says "update the agent".
    assert EdgeAgent(edge_config(broker, tmp_path / "plain")).registry.get("camera.live.start") is None
