"""Uplink outages: the edge agent against its own Mosquitto, stopped and started under it."""

from __future__ import annotations

import asyncio
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from edge.agent import EdgeAgent
from edge.uplink import UplinkStateFile
from tests.edge.support import NODE, SITE, Collector, edge_config, eventually, running_agent
from tests.support.broker import Broker
from varta.contract import UPLINK_RESTORED_EVENT, Channel, Event, UplinkRestored, event_data, topic, utcnow

EVENTS = topic(SITE, NODE, Channel.EVENT)


def watcher(broker: Broker) -> Collector:
    """A subscriber whose session survives the broker's restart (the broker queues what it misses)."""
    return Collector(
        broker.settings(reconnect_min_s=0.1, reconnect_max_s=0.3), EVENTS, client_id="watcher", clean_start=False
    )


def restored_events(sub: Collector) -> list[dict[str, Any]]:
    seen: set[tuple[str, int]] = set()
    out = []
    for p in sub.payloads():
        if p["kind"] == UPLINK_RESTORED_EVENT and (p["boot_id"], p["seq"]) not in seen:
            seen.add((p["boot_id"], p["seq"]))
            out.append(p)
    return out


def data_of(event: dict[str, Any]) -> UplinkRestored:
    data = event_data(Event.model_validate(event))
    assert isinstance(data, UplinkRestored)
    return data


def has_restored(payloads: list[dict[str, Any]]) -> bool:
    return any(p["kind"] == UPLINK_RESTORED_EVENT for p in payloads)


@pytest.mark.slow
async def test_a_broker_outage_is_reported_on_reconnect_with_its_duration(broker: Broker, tmp_path: Path) -> None:
    state_file = tmp_path / "edge" / "uplink.json"
    async with watcher(broker) as sub, running_agent(edge_config(broker, tmp_path)) as agent:
        await asyncio.to_thread(broker.stop)
        stopped = time.time()
        await eventually(lambda: agent.uplink.stats()["persisted"], what="the outage on disk")
        assert state_file.exists()
        await asyncio.sleep(2)
        await asyncio.to_thread(broker.start)
        started = time.time()
        await sub.wait_for(has_restored, timeout=15)
        await eventually(lambda: not state_file.exists(), what="the outage file removed")
    [event] = restored_events(sub)
    data = data_of(event)
    assert (event["severity"], event["device_id"], event["boot_id"]) == ("info", None, agent.boot_id)
    # Slack for scheduling only: the socket closes with the broker, and the agent retries every ≤ 0.5 s.
    assert stopped - 0.5 <= data.lost_at.timestamp() <= stopped + 1
    assert started - 0.5 <= data.restored_at.timestamp() <= started + 2
    assert data.duration_s == pytest.approx((data.restored_at - data.lost_at).total_seconds(), abs=1e-3)
    assert 2 <= data.duration_s <= started - stopped + 2
    assert data.attempts >= 1
    assert data.across_restart is False
    assert agent.uplink.stats()["reported"] == 1


@pytest.mark.slow
async def test_an_outage_across_an_agent_restart_is_reported_once_with_its_true_start(
    broker: Broker, tmp_path: Path
) -> None:
    config = edge_config(broker, tmp_path)
    async with watcher(broker) as sub:
        async with running_agent(config) as first:
            await asyncio.to_thread(broker.stop)
            await eventually(lambda: first.uplink.stats()["persisted"], what="the outage on disk")
            lost_at = first.uplink.lost_at
        second = EdgeAgent(config)  # started while the broker is still down
        async with running_agent(second, connected=False):
            await eventually(lambda: second.client.failed_attempts >= 1, what="a failed attempt")
            await asyncio.to_thread(broker.start)
            await second.client.wait_connected(10)
            await sub.wait_for(has_restored, timeout=15)
            await asyncio.sleep(1)  # time for a second report, if there were one
        await sub.barrier()
    [event] = restored_events(sub)
    data = data_of(event)
    assert event["boot_id"] == second.boot_id != first.boot_id
    assert data.lost_at == lost_at
    assert data.across_restart is True
    assert data.attempts >= 1
    assert data.duration_s == pytest.approx((data.restored_at - data.lost_at).total_seconds(), abs=1e-3)
    assert not (tmp_path / "edge" / "uplink.json").exists()


@pytest.mark.slow
async def test_an_agent_that_cannot_reach_the_broker_at_start_reports_the_outage_from_its_start(
    broker: Broker, tmp_path: Path
) -> None:
    config = edge_config(broker, tmp_path)
    async with watcher(broker) as sub:
        await asyncio.to_thread(broker.stop)
        agent = EdgeAgent(config)
        async with running_agent(agent, connected=False):
            await eventually(lambda: agent.uplink.stats()["persisted"], what="the outage on disk")
            await asyncio.to_thread(broker.start)
            await sub.wait_for(has_restored, timeout=15)
    [event] = restored_events(sub)
    data = data_of(event)
    assert data.lost_at == agent.started_at
    assert data.across_restart is False and data.attempts >= 1


async def test_a_clean_restart_is_not_an_outage(broker: Broker, tmp_path: Path) -> None:
    config = edge_config(broker, tmp_path)
    async with Collector(broker.settings(), EVENTS) as sub:
        async with running_agent(config) as first:
            await first.emit_event("test.marker")
        async with running_agent(EdgeAgent(config)) as second:
            await second.emit_event("test.marker")
            await sub.wait_for(lambda p: len(p) >= 2)
            await asyncio.sleep(1)
            assert second.uplink.stats()["reported"] == 0
        await sub.barrier()
    assert [p["kind"] for p in sub.payloads()] == ["test.marker", "test.marker"]
    assert not (tmp_path / "edge" / "uplink.json").exists()


async def test_an_outage_longer_than_a_minute_is_a_warning(broker: Broker, tmp_path: Path) -> None:
    state_file = tmp_path / "edge" / "uplink.json"
    state_file.parent.mkdir(parents=True)
    lost_at = utcnow() - timedelta(minutes=3)  # the node lost its link three minutes ago, then restarted
    state_file.write_text(UplinkStateFile(lost_at=lost_at).model_dump_json())
    async with Collector(broker.settings(), EVENTS) as sub, running_agent(edge_config(broker, tmp_path)):
        await sub.wait_for(has_restored)
    [event] = restored_events(sub)
    data = data_of(event)
    assert event["severity"] == "warning"
    assert data.lost_at == lost_at and data.across_restart is True
    assert 180 <= data.duration_s <= 240


async def test_a_corrupt_outage_file_is_moved_aside_and_reports_nothing(broker: Broker, tmp_path: Path) -> None:
    state_file = tmp_path / "edge" / "uplink.json"
    state_file.parent.mkdir(parents=True)
    state_file.write_bytes(b'{"version": 1, "lost_at": "yesterday"')
    async with Collector(broker.settings(), EVENTS) as sub, running_agent(edge_config(broker, tmp_path)) as agent:
        await agent.emit_event("test.marker")
        await sub.wait_for(lambda p: len(p) >= 1)
        await asyncio.sleep(0.5)
        moved = agent.uplink.state_file.corrupt_files
    assert [p["kind"] for p in sub.payloads()] == ["test.marker"]
    assert len(moved) == 1 and moved[0].read_bytes().startswith(b'{"version": 1')
    assert not state_file.exists()
