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


async def test_a_lagging_consumer_bounds_the_buffer_and_loses_nothing(broker: Broker) -> None:
    """Reading stops at the inbound limit (TCP pushes back, the broker queues); nothing is dropped or lost."""
    consumer = MqttClient(broker.settings(protocol="3.1.1"), client_id="slow-consumer", inbound_limit=200)
    consumer.add_subscription("bp/#", qos=1)
    publisher = MqttClient(broker.settings(), client_id="bp-publisher", clean_start=True)
    tasks = [asyncio.create_task(consumer.run()), asyncio.create_task(publisher.run())]
    try:
        await consumer.wait_connected(10)
        await publisher.wait_connected(10)
        total = 1500
        await asyncio.gather(*(publisher.publish(f"bp/{i}", str(i).encode(), qos=1) for i in range(total)))
        await asyncio.sleep(1.0)  # the consumer takes nothing meanwhile
        assert consumer.inbound_paused >= 1
        assert len(consumer._inbound) <= 200
        received: list[int] = []
        deadline = time.monotonic() + 30
        while len(received) < total and time.monotonic() < deadline:
            batch = await consumer.next_batch(100, timeout=1.0)
            received.extend(int(m.payload) for m in batch)
            consumer.ack_many(batch)
        assert sorted(received) == list(range(total))
    finally:
        await consumer.stop()
        await publisher.stop()
        for task in tasks:
            task.cancel()
