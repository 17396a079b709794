"""Helpers for edge tests: a collecting MQTT subscriber, configs, a running in-process agent, polling."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import orjson

from edge.agent import EdgeAgent
from edge.config import EdgeConfig
from tests.support.broker import Broker
from varta.mqtt import InboundMessage, MqttClient, MqttSettings

SITE = "site-a"
NODE = "node-1"


async def eventually(predicate: Callable[[], bool], timeout: float = 10.0, what: str = "condition") -> None:
    """Poll *predicate* until it is true (fails the test after *timeout*)."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        await asyncio.sleep(0.02)


class Collector:
    """A subscriber that records (and acknowledges) every message on its filters.

    On entry it waits until its subscriptions are active (a probe message round-trips), so nothing published
    afterwards can be missed.
    """

    def __init__(
        self,
        settings: MqttSettings,
        *filters: str,
        client_id: str | None = None,
        clean_start: bool = True,
    ) -> None:
        self.client = MqttClient(settings, client_id=client_id, clean_start=clean_start)
        self.probe_topic = f"test/probe/{uuid.uuid4().hex}"
        for topic_filter in filters:
            self.client.add_subscription(topic_filter)
        self.client.add_subscription(self.probe_topic)
        self.messages: list[InboundMessage] = []
        self._probes = 0
        self._tasks: list[asyncio.Task[None]] = []

    async def __aenter__(self) -> Collector:
        self._tasks = [asyncio.create_task(self.client.run()), asyncio.create_task(self._pump())]
        await self.client.wait_connected(10)
        await self.barrier()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.client.stop()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _pump(self) -> None:
        while True:
            for message in await self.client.next_batch(timeout=0.5):
                if message.topic == self.probe_topic:
                    self._probes += 1
                else:
                    self.messages.append(message)
                self.client.ack(message)

    async def barrier(self, timeout: float = 10.0) -> None:
        """Round-trip a probe: every subscription is active and everything published before has arrived."""
        seen = self._probes
        await self.client.publish(self.probe_topic, b"probe", qos=1)
        await eventually(lambda: self._probes > seen, timeout, "the probe message")

    def payloads(self, suffix: str = "") -> list[dict[str, Any]]:
        """Decoded payloads of messages whose topic ends with *suffix*, in arrival order."""
        return [orjson.loads(m.payload) for m in self.messages if m.topic.endswith(suffix) and m.payload]

    async def wait_for(
        self, predicate: Callable[[list[dict[str, Any]]], bool], suffix: str = "", timeout: float = 10.0
    ) -> list[dict[str, Any]]:
        """Wait until *predicate* holds for the payloads on *suffix*; returns them."""
        await eventually(lambda: predicate(self.payloads(suffix)), timeout, f"messages on *{suffix}")
        return self.payloads(suffix)


def edge_config(broker: Broker, tmp_path: Path, **overrides: Any) -> EdgeConfig:
    """An agent config for the test broker, with its outbox in *tmp_path*; *overrides* replace top-level keys."""
    data: dict[str, Any] = {
        "node_id": NODE,
        "site": SITE,
        "name": "Test node",
        "mqtt": broker.settings(reconnect_min_s=0.1, reconnect_max_s=0.5),
        "outbox": {"path": tmp_path / "edge" / "outbox.db"},
        "health": {"interval_s": 30},
    }
    data.update(overrides)
    return EdgeConfig(**data)


@asynccontextmanager
async def running_agent(config: EdgeConfig | EdgeAgent, *, connected: bool = True) -> AsyncIterator[EdgeAgent]:
    """An :class:`EdgeAgent` (built from *config* unless given) running in this event loop, stopped on exit."""
    agent = config if isinstance(config, EdgeAgent) else EdgeAgent(config)
    stop = asyncio.Event()
    task = asyncio.create_task(agent.run(stop))
    try:
        await agent.wait_ready(10)
        if connected:
            await agent.client.wait_connected(10)
        yield agent
    finally:
        stop.set()
        await asyncio.wait_for(task, 20)
