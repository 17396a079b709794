"""The UPS monitor inside a running edge agent: real NUT (dummy-ups + upsd) stepped through a blackout, a real
Mosquitto receiving the events, states and the node's status; garbage from a fake NUT server."""

from __future__ import annotations

import asyncio
import sys
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
import structlog

from edge.agent import EdgeAgent
from edge.config import EdgeConfig
from edge.power.nut import NutErrorReason
from edge.power.ups import UpsMonitor
from tests.edge.support import NODE, SITE, Collector, edge_config, eventually, running_agent
from tests.support.broker import Broker
from tests.support.nut import FakeNutServer, NutServer, ThenClose, list_reply
from varta.contract import (
    GOING_DOWN_EVENT,
    LOW_BATTERY_EVENT,
    MAINS_LOST_EVENT,
    MAINS_RESTORED_EVENT,
    Channel,
    Event,
    event_data,
    node_prefix,
    topic,
)

ALL = f"{node_prefix(SITE, NODE)}/#"
STATUS = topic(SITE, NODE, Channel.STATUS)
POLL_S = 0.3
#: A monitor sees a step at most one poll after upsd serves it; the test sees it within ~0.1 s of that (plus slack
#: for a busy machine).
TOLERANCE_S = POLL_S + 0.5
POWER_KINDS = {MAINS_LOST_EVENT, MAINS_RESTORED_EVENT, LOW_BATTERY_EVENT, GOING_DOWN_EVENT}


def power_config(broker: Broker, tmp_path: Path, ups: dict[str, Any], **low_battery: Any) -> EdgeConfig:
    return edge_config(
        broker,
        tmp_path,
        power={"enabled": True, "ups": {"poll_interval_s": POLL_S, **ups}, "on_low_battery": low_battery},
    )


def events(sub: Collector, *kinds: str) -> list[dict[str, Any]]:
    """Power events received, first copy of each (boot, seq), in arrival order."""
    seen: set[tuple[str, int]] = set()
    out = []
    for p in sub.payloads("/event"):
        if p["kind"] in (kinds or POWER_KINDS) and (p["boot_id"], p["seq"]) not in seen:
            seen.add((p["boot_id"], p["seq"]))
            out.append(p)
    return out


def ts(text: str) -> float:
    return datetime.fromisoformat(text).timestamp()


def has_event(kind: str, count: int = 1) -> Any:
    return lambda payloads: sum(1 for p in payloads if p["kind"] == kind) >= count


def ups_reasons(sub: Collector) -> list[str]:
    """The UPS's published state reasons, repeats collapsed."""
    out: list[str] = []
    for p in sub.payloads("/state/ups"):
        if not out or out[-1] != p["reason"]:
            out.append(p["reason"])
    return out


async def test_a_blackout_drives_mains_lost_low_battery_going_down_and_mains_restored_with_its_duration(
    broker: Broker, nut: NutServer, tmp_path: Path
) -> None:
    marker = tmp_path / "shutdown-ran"
    shutdown = [sys.executable, "-c", f"open({str(marker)!r}, 'w').write('bye')"]
    config = power_config(broker, tmp_path, nut.ups_settings(), flush_timeout_s=5, shutdown_command=shutdown)
    async with Collector(broker.settings(), ALL) as sub, running_agent(config) as agent:
        await sub.wait_for(lambda p: any(x["reason"] == "on_line" for x in p), suffix="/state/ups")
        lost = await nut.step("OB DISCHRG", charge=64, runtime=900, voltage=0)
        await sub.wait_for(has_event(MAINS_LOST_EVENT), suffix="/event")
        assert not marker.exists()
        await nut.step("OB DISCHRG LB", charge=9, runtime=100, voltage=0)
        await sub.wait_for(lambda p: any(x["reason"] == "power_loss" for x in p), suffix="/status")
        await eventually(marker.exists, what="the shutdown command")
        assert agent.power_loss
        restored = await nut.step("OL CHRG", charge=10, runtime=120, voltage=229.5)
        await sub.wait_for(has_event(MAINS_RESTORED_EVENT), suffix="/event")
        await sub.wait_for(lambda p: p[-1]["state"] == "online", suffix="/status")
        await sub.wait_for(lambda p: p[-1]["reason"] == "on_line", suffix="/state/ups")
        assert not agent.power_loss

    got = events(sub)
    assert [e["kind"] for e in got] == [MAINS_LOST_EVENT, LOW_BATTERY_EVENT, GOING_DOWN_EVENT, MAINS_RESTORED_EVENT]
    mains_lost, low_battery, going_down, mains_restored = got
    for event in got:
        event_data(Event.model_validate(event))  # every payload fits the contract
        assert event["device_id"] == "ups"
    assert (mains_lost["severity"], low_battery["severity"], going_down["severity"], mains_restored["severity"]) == (
        "warning",
        "critical",
        "critical",
        "info",
    )
    assert mains_lost["data"]["reading"] == {
        "status": "OB DISCHRG",
        "battery_charge": 64.0,
        "battery_runtime_s": 900.0,
        "input_voltage": 0.0,
    }
    lost_at = ts(mains_lost["data"]["lost_at"])
    assert lost - 0.2 <= lost_at <= lost + TOLERANCE_S
    assert low_battery["data"]["lost_at"] == mains_lost["data"]["lost_at"]
    assert low_battery["data"]["reading"]["status"] == "OB DISCHRG LB"
    # Going down: everything before was delivered, then the goodbye, then offline/power_loss (in that order).
    assert going_down["data"]["flushed"] is True
    assert going_down["data"]["reading"]["battery_charge"] == 9.0
    arrival = [(m.topic, m.payload) for m in sub.messages]
    going_down_at = next(i for i, (t, p) in enumerate(arrival) if t.endswith("/event") and b"node.going_down" in p)
    power_loss_at = next(i for i, (t, p) in enumerate(arrival) if t == STATUS and b"power_loss" in p)
    assert going_down_at < power_loss_at
    statuses = [(p["state"], p["reason"]) for p in sub.payloads("/status") if p["reason"] != "shutdown"]
    assert statuses[-2:] == [("offline", "power_loss"), ("online", "connected")]
    # Restored: the right duration on the stepped timeline.
    data = mains_restored["data"]
    assert data["lost_at"] == mains_lost["data"]["lost_at"]
    assert data["duration_s"] == pytest.approx(ts(data["restored_at"]) - lost_at, abs=1e-3)
    assert abs(data["duration_s"] - (restored - lost)) <= TOLERANCE_S
    assert data["reading"]["status"] == "OL CHRG"
    # The retained device state followed: on mains → on battery → low battery → on mains.
    assert ups_reasons(sub) == ["on_line", "on_battery", "low_battery", "on_line"]
    last = sub.payloads("/state/ups")[-1]
    assert (last["kind"], last["status"]) == ("ups", "online")
    assert last["attrs"]["ups_status"] == "OL CHRG" and last["attrs"]["on_battery"] is False
    assert last["attrs"]["input_voltage"] == 229.5 and ts(str(last["attrs"]["since"])) >= lost_at
    low_state = next(p for p in sub.payloads("/state/ups") if p["reason"] == "low_battery")
    assert (low_state["status"], low_state["attrs"]["on_battery"]) == ("degraded", True)
    assert not (tmp_path / "edge" / "power.json").exists()


async def test_an_outage_is_reported_once_with_its_full_duration_across_agent_restarts(
    broker: Broker, nut: NutServer, tmp_path: Path
) -> None:
    config = power_config(broker, tmp_path, nut.ups_settings())
    state_file = tmp_path / "edge" / "power.json"
    async with Collector(broker.settings(), ALL) as sub:
        async with running_agent(config):
            await sub.wait_for(lambda p: any(x["reason"] == "on_line" for x in p), suffix="/state/ups")
            lost = await nut.step("OB DISCHRG", charge=80)
            await sub.wait_for(has_event(MAINS_LOST_EVENT), suffix="/event")
        assert state_file.exists()  # the agent stopped during the blackout
        async with running_agent(EdgeAgent(config)) as second:  # a new boot, still on battery
            await sub.wait_for(
                lambda p: any(x["boot_id"] == second.boot_id and x["reason"] == "on_battery" for x in p),
                suffix="/state/ups",
            )
            assert second.ups is not None and second.ups.lost_at is not None
        restored = await nut.step("OL")  # mains is back while the node is down
        async with running_agent(EdgeAgent(config)) as third:
            await sub.wait_for(has_event(MAINS_RESTORED_EVENT), suffix="/event")
            await sub.wait_for(
                lambda p: any(x["boot_id"] == third.boot_id and x["reason"] == "on_line" for x in p),
                suffix="/state/ups",
            )
        await sub.barrier()
    got = events(sub)
    assert [e["kind"] for e in got] == [MAINS_LOST_EVENT, MAINS_RESTORED_EVENT]  # no second mains_lost
    mains_lost, mains_restored = got
    assert mains_restored["boot_id"] == third.boot_id != mains_lost["boot_id"]
    assert mains_restored["data"]["lost_at"] == mains_lost["data"]["lost_at"]
    lost_at = ts(mains_lost["data"]["lost_at"])
    assert abs(lost_at - lost) <= TOLERANCE_S
    # The third agent saw mains only when it started: the outage lasted at least until then, from its true start.
    assert mains_restored["data"]["duration_s"] >= restored - lost - TOLERANCE_S
    restored_at = ts(mains_restored["data"]["restored_at"])
    assert mains_restored["data"]["duration_s"] == pytest.approx(restored_at - lost_at, abs=1e-3)
    assert not state_file.exists()


async def test_low_charge_counts_as_low_battery_only_on_battery(broker: Broker, nut: NutServer, tmp_path: Path) -> None:
    config = power_config(broker, tmp_path, nut.ups_settings(low_battery_charge=20), flush_timeout_s=1)
    await nut.step("OL CHRG", charge=12)  # charging after an earlier blackout: not about to die
    async with Collector(broker.settings(), ALL) as sub, running_agent(config) as agent:
        await sub.wait_for(lambda p: any(x["reason"] == "on_line" for x in p), suffix="/state/ups")
        await nut.step("OB DISCHRG", charge=30)
        await sub.wait_for(has_event(MAINS_LOST_EVENT), suffix="/event")
        await nut.step("OB DISCHRG", charge=19)  # no LB flag from the UPS: the threshold says low
        await sub.wait_for(has_event(GOING_DOWN_EVENT), suffix="/event")
        await sub.wait_for(lambda p: p[-1]["reason"] == "power_loss", suffix="/status")
        assert agent.power_loss
    assert [e["kind"] for e in events(sub)] == [MAINS_LOST_EVENT, LOW_BATTERY_EVENT, GOING_DOWN_EVENT]
    assert ups_reasons(sub) == ["on_line", "on_battery", "low_battery"]


async def test_a_stopped_upsd_makes_the_ups_unreachable_after_the_delay_and_it_recovers_after_restart(
    broker: Broker, nut: NutServer, tmp_path: Path
) -> None:
    delay = 1.5
    config = power_config(broker, tmp_path, nut.ups_settings(unreachable_after_s=delay, timeout_s=1))
    async with Collector(broker.settings(), ALL) as sub, running_agent(config) as agent:
        await sub.wait_for(lambda p: any(x["reason"] == "on_line" for x in p), suffix="/state/ups")
        await asyncio.to_thread(nut.stop_upsd)
        stopped = time.time()
        got = await sub.wait_for(lambda p: p[-1]["reason"] == "unreachable", suffix="/state/ups")
        unreachable = got[-1]
        await asyncio.to_thread(nut.start_upsd)
        await sub.wait_for(lambda p: p[-1]["reason"] == "on_line", suffix="/state/ups")
        assert agent.ups is not None
        stats = agent.ups.stats()
    assert unreachable["status"] == "unknown" and unreachable["attrs"]["on_battery"] is False
    assert unreachable["attrs"]["error"] in {"connect_failed", "closed"}
    assert ts(unreachable["ts"]) - stopped >= delay - 0.3  # not before the configured delay
    assert ups_reasons(sub) == ["on_line", "unreachable", "on_line"]
    assert stats["errors"].get("connect_failed", 0) >= 2
    assert not events(sub)  # an unreachable UPS is not a blackout


async def test_nut_garbage_is_counted_and_logged_and_never_stops_the_monitor(broker: Broker, tmp_path: Path) -> None:
    good = list_reply("ups", {"ups.status": "OL", "battery.charge": "97", "input.voltage": "231"})
    silent = b"(never answers)"
    script: list[bytes | None] = [
        b"NONSENSE\n",
        silent,
        b"ERR DATA-STALE\n",
        ThenClose(b"BEGIN LIST VAR ups\n"),
        list_reply("ups", {"battery.charge": "50"}),
        list_reply("ups", {"ups.status": "OL OB"}),
        list_reply("ups", {"ups.status": "OL", "battery.charge": "ninety"}),
        None,
        b"\xff\xfe\n",
    ]
    answers = iter(script)

    async def answer(line: str) -> bytes | None:
        if line == "LOGOUT":
            return None
        reply = next(answers, good)
        if reply is silent:
            await asyncio.sleep(3600)
        return reply

    async with FakeNutServer(answer) as server:
        config = power_config(
            broker,
            tmp_path,
            {"name": "ups", "port": server.port, "poll_interval_s": 0.1, "timeout_s": 0.5, "unreachable_after_s": 60},
        )
        with structlog.testing.capture_logs() as logs:
            async with Collector(broker.settings(), ALL) as sub, running_agent(config) as agent:
                state = await sub.wait_for(lambda p: any(x["reason"] == "on_line" for x in p), suffix="/state/ups")
                monitor = agent.ups
                assert isinstance(monitor, UpsMonitor)
                await eventually(lambda: monitor.readings >= 5, what="good readings after the garbage")
    assert monitor.stats()["errors"] == {
        NutErrorReason.MALFORMED.value: 2,
        NutErrorReason.TIMEOUT.value: 1,
        NutErrorReason.STALE.value: 1,
        NutErrorReason.CLOSED.value: 2,
        NutErrorReason.NO_STATUS.value: 1,
        NutErrorReason.BAD_STATUS.value: 1,
        NutErrorReason.BAD_VALUE.value: 1,
    }
    first = next(p for p in state if p["reason"] == "on_line")
    assert (first["attrs"]["ups_status"], first["attrs"]["battery_charge"]) == ("OL", None)  # "ninety" dropped
    failures = [entry for entry in logs if entry["event"] == "ups.read_failed"]
    assert {f["reason"] for f in failures} == {
        "malformed",
        "timeout",
        "stale",
        "closed",
        "no_status",
        "bad_status",
        "bad_value",
    }
    assert len(failures) == 7  # the second malformed and closed are counted, not logged again within a minute


@pytest.mark.slow
async def test_a_node_going_down_still_says_power_loss_after_a_reconnect(
    broker: Broker, nut: NutServer, tmp_path: Path
) -> None:
    config = power_config(broker, tmp_path, nut.ups_settings(), flush_timeout_s=1)
    fast = broker.settings(reconnect_min_s=0.1, reconnect_max_s=0.3)
    async with (
        Collector(fast, STATUS, client_id="status-watcher", clean_start=False) as sub,
        running_agent(config) as agent,
    ):
        await nut.step("OB DISCHRG LB", charge=5)
        await sub.wait_for(lambda p: any(x["reason"] == "power_loss" for x in p))
        await asyncio.to_thread(broker.stop)
        await asyncio.to_thread(broker.start)
        await sub.wait_for(lambda p: sum(x["reason"] == "power_loss" for x in p) >= 2, timeout=15)
        async with Collector(broker.settings(), STATUS) as late:
            retained = await late.wait_for(lambda p: len(p) >= 1)
        assert agent.power_loss
    assert (retained[-1]["state"], retained[-1]["reason"], retained[-1]["boot_id"]) == (
        "offline",
        "power_loss",
        agent.boot_id,
    )
    said = [(p["state"], p["reason"]) for p in sub.payloads() if p["reason"] != "shutdown"]
    # (The broker's restart makes it publish the agent's will meanwhile; the agent's reconnect then corrects it.)
    assert said[:2] == [("online", "connected"), ("offline", "power_loss")]
    assert said[-1] == ("offline", "power_loss") and ("online", "connected") not in said[1:]
