"""Signed commands against a real broker: every command gets exactly one result, and only valid ones run."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest
from nacl.signing import SigningKey

from edge.agent import EdgeAgent
from edge.commands import CommandFailed
from tests.edge.support import NODE, SITE, Collector, edge_config, eventually, running_agent
from tests.support.broker import Broker
from varta.contract import Channel, Command, CommandRejection, encode, topic, utcnow
from varta.mqtt import MqttClient
from varta.signing import generate_signing_key, public_key_text, sign_command

CMD_TOPIC = topic(SITE, NODE, Channel.COMMAND)
RESULT_TOPIC = topic(SITE, NODE, Channel.COMMAND_RESULT)


class Central:
    """Plays central: signs and publishes commands, collects results."""

    def __init__(self, key: SigningKey, sender: MqttClient, results: Collector) -> None:
        self.key = key
        self.sender = sender
        self.results = results

    def command(self, name: str = "ping", *, sign: bool = True, **fields: Any) -> Command:
        now = utcnow()
        data: dict[str, Any] = {
            "node_id": NODE,
            "boot_id": "central-boot",
            "seq": 1,
            "ts": now,
            "request_id": uuid.uuid4().hex,
            "command": name,
            "expires_at": now + timedelta(seconds=60),
            "issued_by": "dispatcher@test",
        }
        data.update(fields)
        command = Command.model_validate(data)
        return sign_command(command, self.key) if sign else command

    async def send(self, command: Command | bytes) -> None:
        payload = command if isinstance(command, bytes) else encode(command)
        await self.sender.publish(CMD_TOPIC, payload, qos=1)

    async def results_for(self, request_id: str, count: int = 1) -> list[dict[str, Any]]:
        got = await self.results.wait_for(lambda p: sum(r["request_id"] == request_id for r in p) >= count)
        return [r for r in got if r["request_id"] == request_id]

    async def call(self, command: Command | bytes, request_id: str | None = None) -> dict[str, Any]:
        rid = request_id or (command.request_id if isinstance(command, Command) else "")
        await self.send(command)
        return (await self.results_for(rid))[0]

    async def assert_no_more_results(self, request_id: str, expected: int) -> None:
        """A later command's result arrives after any stray result for *request_id* would have (outbox order)."""
        marker = self.command("ping")
        await self.call(marker)
        assert sum(r["request_id"] == request_id for r in self.results.payloads()) == expected


class Env:
    def __init__(self, agent: EdgeAgent, central: Central, calls: list[dict[str, Any]]) -> None:
        self.agent = agent
        self.central = central
        self.calls = calls


@pytest.fixture
async def env(broker: Broker, tmp_path: Path) -> AsyncIterator[Env]:
    """A running agent that trusts a fresh central key and has test handlers, plus a central that uses that key."""
    key = generate_signing_key()
    config = edge_config(broker, tmp_path, commands={"central_public_keys": [public_key_text(key.verify_key)]})
    agent = EdgeAgent(config)
    calls: list[dict[str, Any]] = []

    async def count(command: Command) -> dict[str, Any]:
        calls.append(dict(command.params))
        return {"calls": len(calls)}

    async def fail(command: Command) -> dict[str, Any]:
        raise CommandFailed("camera refused the preset")

    async def crash(command: Command) -> dict[str, Any]:
        raise RuntimeError("secret internals")

    agent.registry.register("test.count", count)
    agent.registry.register("test.fail", fail)
    agent.registry.register("test.crash", crash)
    sender = MqttClient(broker.settings(), client_id="central-test", clean_start=True)
    sender_task = asyncio.create_task(sender.run())
    try:
        async with Collector(broker.settings(), RESULT_TOPIC) as results, running_agent(agent):
            await sender.wait_connected(10)
            central = Central(key, sender, results)
            await central.call(central.command("ping"))  # the agent's subscription is live
            yield Env(agent, central, calls)
    finally:
        await sender.stop()
        sender_task.cancel()
        await asyncio.gather(sender_task, return_exceptions=True)


def rejected(result: dict[str, Any], reason: CommandRejection) -> bool:
    return bool(result["status"] == "rejected" and result["reason"] == reason.value)


# ------------------------------------------------------------------------------------------------- accepted


async def test_valid_command_runs_exactly_once_and_returns_ok(env: Env) -> None:
    command = env.central.command("test.count", params={"preset": 3})
    result = await env.central.call(command)
    assert result["status"] == "ok" and result["reason"] is None
    assert result["result"] == {"calls": 1}
    assert result["node_id"] == NODE and result["boot_id"] == env.agent.boot_id and result["seq"] > 0
    assert result["command"] == "test.count"
    assert env.calls == [{"preset": 3}]
    await env.central.assert_no_more_results(command.request_id, expected=1)


async def test_ping_answers_with_node_info(env: Env) -> None:
    result = await env.central.call(env.central.command("ping"))
    assert result["status"] == "ok"
    assert result["result"]["pong"] is True
    assert result["result"]["node_id"] == NODE and result["result"]["site"] == SITE
    assert result["result"]["boot_id"] == env.agent.boot_id
    assert result["result"]["version"]


async def test_health_publish_and_outbox_stats_builtins(env: Env, broker: Broker) -> None:
    async with Collector(broker.settings(), topic(SITE, NODE, Channel.HEALTH)) as health:
        result = await env.central.call(env.central.command("health.publish"))
        assert result["status"] == "ok"
        await health.wait_for(lambda p: any(h["seq"] == result["result"]["seq"] for h in p))
    stats = await env.central.call(env.central.command("outbox.stats"))
    assert stats["status"] == "ok"
    assert {"pending", "dropped_events", "dropped_telemetry", "rejected", "last_seq"} <= set(stats["result"])
    assert stats["result"]["last_seq"] >= result["seq"]


async def test_command_that_expired_within_the_clock_skew_is_still_accepted(env: Env) -> None:
    now = utcnow()
    command = env.central.command("test.count", ts=now - timedelta(seconds=30), expires_at=now - timedelta(seconds=10))
    assert (await env.central.call(command))["status"] == "ok"


async def test_handler_failure_gives_an_error_result_without_internals(env: Env) -> None:
    failed = await env.central.call(env.central.command("test.fail"))
    assert (failed["status"], failed["detail"]) == ("error", "camera refused the preset")
    crashed = await env.central.call(env.central.command("test.crash"))
    assert crashed["status"] == "error"
    assert "secret internals" not in crashed["detail"] and "RuntimeError" in crashed["detail"]


# ------------------------------------------------------------------------------------------------- rejected


async def test_unsigned_command_is_rejected(env: Env) -> None:
    command = env.central.command("test.count", sign=False)
    assert rejected(await env.central.call(command), CommandRejection.UNSIGNED)
    assert env.calls == []


async def test_command_signed_with_another_key_is_rejected(env: Env) -> None:
    command = sign_command(env.central.command("test.count", sign=False), generate_signing_key())
    assert rejected(await env.central.call(command), CommandRejection.BAD_SIGNATURE)
    assert env.calls == []


async def test_command_with_tampered_params_is_rejected(env: Env) -> None:
    signed = env.central.command("test.count", params={"preset": 1})
    tampered = signed.model_copy(update={"params": {"preset": 9}})
    assert rejected(await env.central.call(tampered), CommandRejection.BAD_SIGNATURE)
    assert env.calls == []


async def test_expired_command_is_rejected(env: Env) -> None:
    now = utcnow()
    command = env.central.command("test.count", ts=now - timedelta(minutes=5), expires_at=now - timedelta(minutes=1))
    assert rejected(await env.central.call(command), CommandRejection.EXPIRED)
    assert env.calls == []


async def test_command_issued_in_the_future_is_rejected(env: Env) -> None:
    now = utcnow()
    command = env.central.command("test.count", ts=now + timedelta(minutes=5), expires_at=now + timedelta(minutes=6))
    assert rejected(await env.central.call(command), CommandRejection.NOT_YET_VALID)
    assert env.calls == []


async def test_replayed_command_is_rejected_and_its_handler_ran_once(env: Env) -> None:
    command = env.central.command("test.count")
    await env.central.send(command)
    await env.central.send(command)
    first, second = await env.central.results_for(command.request_id, count=2)
    assert first["status"] == "ok"
    assert rejected(second, CommandRejection.REPLAYED)
    assert len(env.calls) == 1
    await env.central.assert_no_more_results(command.request_id, expected=2)


async def test_replay_is_rejected_after_an_agent_restart(broker: Broker, tmp_path: Path) -> None:
    key = generate_signing_key()
    config = edge_config(broker, tmp_path, commands={"central_public_keys": [public_key_text(key.verify_key)]})
    sender = MqttClient(broker.settings(), client_id="central-test", clean_start=True)
    sender_task = asyncio.create_task(sender.run())
    try:
        async with Collector(broker.settings(), RESULT_TOPIC) as results:
            await sender.wait_connected(10)
            central = Central(key, sender, results)
            command = central.command("ping")
            async with running_agent(config):
                await central.call(central.command("ping"))  # subscription is live
                assert (await central.call(command))["status"] == "ok"
            async with running_agent(config) as second_boot:
                await central.send(command)
                again = (await central.results_for(command.request_id, count=2))[1]
        assert rejected(again, CommandRejection.REPLAYED)
        assert again["boot_id"] == second_boot.boot_id
    finally:
        await sender.stop()
        sender_task.cancel()
        await asyncio.gather(sender_task, return_exceptions=True)


async def test_command_for_another_node_is_rejected(env: Env) -> None:
    command = env.central.command("test.count", node_id="node-2")
    assert rejected(await env.central.call(command), CommandRejection.WRONG_NODE)
    assert env.calls == []


async def test_unknown_command_is_rejected(env: Env) -> None:
    assert rejected(
        await env.central.call(env.central.command("camera.selfdestruct")), CommandRejection.UNKNOWN_COMMAND
    )


async def test_malformed_command_with_a_readable_request_id_gets_a_malformed_result(env: Env) -> None:
    payload = orjson.dumps({"v": 1, "type": "command", "request_id": "req-malformed-1", "command": "ping"})
    result = await env.central.call(payload, request_id="req-malformed-1")
    assert rejected(result, CommandRejection.MALFORMED)
    assert result["command"] == "ping" and "invalid_schema" in result["detail"]


async def test_garbage_without_request_id_is_counted_and_gets_no_result(env: Env) -> None:
    processor = env.agent.commands
    assert processor is not None
    await env.central.send(b"\x00not json at all")
    await eventually(lambda: processor.unanswerable == 1, what="the garbage to be counted")
    await env.central.call(env.central.command("ping"))  # still alive afterwards
    assert all(r["status"] == "ok" for r in env.central.results.payloads())


async def test_every_command_gets_exactly_one_result_and_rejections_are_counted(env: Env) -> None:
    now = utcnow()
    commands = [
        env.central.command("test.count"),
        env.central.command("test.count", sign=False),
        env.central.command("test.count", node_id="node-9"),
        env.central.command("test.count", expires_at=now - timedelta(hours=1), ts=now - timedelta(hours=2)),
        env.central.command("no.such"),
        env.central.command("test.count"),
    ]
    for command in commands:
        await env.central.send(command)
    for command in commands:
        await env.central.results_for(command.request_id)
    for command in commands:
        await env.central.assert_no_more_results(command.request_id, expected=1)
    processor = env.agent.commands
    assert processor is not None
    assert processor.rejections == {
        CommandRejection.UNSIGNED: 1,
        CommandRejection.WRONG_NODE: 1,
        CommandRejection.EXPIRED: 1,
        CommandRejection.UNKNOWN_COMMAND: 1,
    }
    assert len(env.calls) == 2


async def test_a_slow_concurrent_command_does_not_hold_up_the_queue(env: Env) -> None:
    release = asyncio.Event()
    order: list[str] = []

    async def slow(command: Command) -> dict[str, Any]:  # e.g. a live view whose camera is slow to open
        order.append("slow started")
        await release.wait()
        order.append("slow done")
        return {"slow": True}

    async def ptz(command: Command) -> dict[str, Any]:
        order.append(f"ptz {command.params['step']}")
        return {}

    env.agent.registry.register("test.slow", slow, concurrent=True)
    env.agent.registry.register("test.ptz", ptz)
    central = env.central
    first = central.command("test.slow")
    await central.send(first)
    moves = [central.command("test.ptz", params={"step": step}) for step in ("move", "stop")]
    for command in moves:
        result = await central.call(command)  # answered while the slow one still runs
        assert result["status"] == "ok"
    assert order == ["slow started", "ptz move", "ptz stop"]  # the serial ones kept their order
    release.set()
    (slow_result,) = await central.results_for(first.request_id)
    assert slow_result["status"] == "ok" and slow_result["result"] == {"slow": True}
    assert order[-1] == "slow done"
    # Delivered twice, a concurrent command still runs once.
    await central.send(first)
    await central.assert_no_more_results(first.request_id, expected=2)  # the second is the 'replayed' rejection
    assert order.count("slow started") == 1
