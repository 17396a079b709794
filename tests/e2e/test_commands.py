"""Signed commands end to end: central API → broker → edge → result back at central; forgeries are refused."""

from __future__ import annotations

import asyncio
import secrets
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.test_pipeline import node_events
from tests.support.broker import Broker
from tests.support.stack import CentralProcess, EdgeProcess, wait_until
from varta.contract import Channel, Command, decode, encode, subscription, topic, utcnow
from varta.mqtt import MqttClient
from varta.signing import generate_signing_key, load_signing_key, sign_command

pytestmark = pytest.mark.slow


@pytest.fixture
def edge(central: CentralProcess, broker: Broker, tmp_path: Path) -> Any:
    proc = EdgeProcess(tmp_path / "edge", broker, central.public_key(), health_interval_s=5).start()
    with central.api() as api:
        wait_until(
            lambda: (
                api.get("/api/v1/nodes/node-a").status_code == 200 and api.get("/api/v1/nodes/node-a").json()["online"]
            ),
            20,
            0.1,
            "node online",
        )
    yield proc
    proc.stop()


async def _capture_and_publish(broker: Broker, action: Any) -> list[bytes]:
    """Subscribe to node-a's command topic, run *action(client)*, return the commands seen on the wire."""
    client = MqttClient(broker.settings(), client_id=f"spy-{secrets.token_hex(3)}", clean_start=True)
    client.add_subscription(subscription(Channel.COMMAND, "site-a", "node-a"))
    task = asyncio.create_task(client.run())
    await client.wait_connected(10)
    seen: list[bytes] = []
    try:
        await action(client)
        deadline = time.monotonic() + 3
        while time.monotonic() < deadline:
            for m in await client.next_batch(100, timeout=0.2):
                seen.append(m.payload)
                client.ack(m)
    finally:
        await client.stop()
        task.cancel()
    return seen


def _rejections(central: CentralProcess) -> list[dict[str, Any]]:
    with central.api() as api:
        return [e for e in node_events(api, "node-a") if e["kind"] == "command.rejected"]


def test_valid_command_runs_once_and_its_result_reaches_central(
    central: CentralProcess, broker: Broker, edge: EdgeProcess
) -> None:
    with central.api() as api:
        r = api.post("/api/v1/nodes/node-a/commands", json={"command": "ping", "params": {}})
        assert r.status_code == 202, r.text
        request_id = r.json()["request_id"]

        def answered() -> dict[str, Any] | None:
            cmd = api.get(f"/api/v1/commands/{request_id}").json()
            return cmd if cmd["status"] != "sent" else None

        cmd = wait_until(answered, 15, 0.1, "command result")
        audit = api.get("/api/v1/audit")
    assert cmd["status"] == "ok"
    assert cmd["result"]["node_id"] == "node-a"
    assert cmd["issued_by"] == "op"
    assert audit.status_code == 403  # the operator may send commands but not read the audit log


def test_forged_expired_and_replayed_commands_are_rejected_and_reported_at_central(
    central: CentralProcess, broker: Broker, edge: EdgeProcess
) -> None:
    central_key = load_signing_key(central.key_file)
    now = utcnow()

    def command(**kw: Any) -> Command:
        fields: dict[str, Any] = dict(
            node_id="node-a",
            boot_id="attacker",
            seq=1,
            ts=now,
            request_id=secrets.token_urlsafe(12),
            command="ping",
            expires_at=now + timedelta(seconds=60),
        )
        fields.update(kw)
        return Command(**fields)

    cmd_topic = topic("site-a", "node-a", Channel.COMMAND)
    unsigned = command()
    forged = sign_command(command(), generate_signing_key())
    expired = sign_command(command(ts=now - timedelta(minutes=10), expires_at=now - timedelta(minutes=5)), central_key)

    async def attack(client: MqttClient) -> None:
        for cmd in (unsigned, forged, expired):
            await client.publish(cmd_topic, encode(cmd))

    asyncio.run(_capture_and_publish(broker, attack))
    # A genuine command, captured on the wire and played back by an attacker.
    with central.api() as api:
        genuine: dict[str, str] = {}

        async def send_genuine(client: MqttClient) -> None:
            r = await asyncio.to_thread(
                api.post, "/api/v1/nodes/node-a/commands", json={"command": "ping", "params": {}}
            )
            genuine["id"] = r.json()["request_id"]

        wire = asyncio.run(_capture_and_publish(broker, send_genuine))
        captured = [p for p in wire if decode(Channel.COMMAND, p).request_id == genuine["id"]]  # type: ignore[attr-defined]
        assert len(captured) == 1
        wait_until(lambda: api.get(f"/api/v1/commands/{genuine['id']}").json()["status"] == "ok", 15, 0.1, "genuine ok")

        async def replay(client: MqttClient) -> None:
            await client.publish(cmd_topic, captured[0])

        asyncio.run(_capture_and_publish(broker, replay))
        reasons = wait_until(
            lambda: (
                {e["data"]["request_id"]: e["data"]["reason"] for e in _rejections(central)}
                if len(_rejections(central)) >= 4
                else None
            ),
            15,
            0.2,
            "four rejections reported",
        )
        genuine_after = api.get(f"/api/v1/commands/{genuine['id']}").json()
    assert reasons[unsigned.request_id] == "unsigned"
    assert reasons[forged.request_id] == "bad_signature"
    assert reasons[expired.request_id] == "expired"
    assert reasons[genuine["id"]] == "replayed"
    # The replay did not run the command again: the stored result is the first one.
    assert genuine_after["status"] == "ok"
