"""The MQTT communicator never stalls the event loop, and resumes by itself when the broker returns."""

from __future__ import annotations

import asyncio
import time

from tests.support.broker import Broker
from varta.mqtt import MqttClient, NotConnected


async def test_event_loop_stays_responsive_while_the_broker_disappears_and_returns(broker: Broker) -> None:
    client = MqttClient(broker.settings(reconnect_min_s=0.1, reconnect_max_s=0.3), client_id="lag-probe")
    task = asyncio.create_task(client.run())
    await client.wait_connected(10)
    worst = 0.0

    async def probe() -> None:
        nonlocal worst
        while True:
            started = time.perf_counter()
            await asyncio.sleep(0.01)
            worst = max(worst, time.perf_counter() - started - 0.01)

    prober = asyncio.create_task(probe())
    try:
        await asyncio.to_thread(broker.stop)
        await asyncio.sleep(2.0)  # several failed reconnect attempts
        assert not client.connected.is_set()
        try:
            await client.publish("varta/x", b"1")
            raise AssertionError("publish while disconnected must fail")
        except NotConnected:
            pass
        await asyncio.to_thread(broker.start)
        await client.wait_connected(10)
        await client.publish("varta/x", b"2")
    finally:
        prober.cancel()
        await client.stop()
        task.cancel()
    assert worst < 0.25, f"event loop blocked for {worst * 1000:.0f} ms"
    assert client.connections >= 2
