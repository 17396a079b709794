"""The ceiling of one Python process: how fast central's MQTT clients alone receive and acknowledge QoS 1 messages.

Run: ``python -m bench.mqtt_receive [--messages 60000]``

A backlog of health messages from 500 nodes is queued in a persistent session, then drained (1) by raw
``mosquitto_sub -q 1`` (C, the reference), (2) by central's ingest subscriber ``varta.mqtt311.Mqtt311Subscriber`` and
(3) by the paho-based ``varta.mqtt.MqttClient`` (3.1.1 and 5), each doing nothing but batched acks — no decoding,
no database. Central's ingest cannot be faster than (2) in one process.
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.ingest_throughput import run_load
from tests.support.broker import Broker
from varta.mqtt import MqttClient, Subscriber
from varta.mqtt311 import Mqtt311Subscriber

FILTERS = ("varta/v1/+/+/health", "varta/v1/+/+/event")


def _queue_backlog(broker: Broker, client_id: str, messages: int, protocol: str = "auto") -> None:
    """Create a persistent session for *client_id*, then publish *messages* while it is away."""

    async def register() -> None:
        client = MqttClient(broker.settings(protocol=protocol), client_id=client_id)
        for f in FILTERS:
            client.add_subscription(f)
        task = asyncio.create_task(client.run())
        await client.wait_connected(10)
        await client.stop()
        task.cancel()

    asyncio.run(register())
    run_load(broker.port, 500, rate=1e9, duration=600, procs=2, events_every_s=5.0, limit=messages)


def reference(broker: Broker, messages: int) -> float:
    """Drain rate of ``mosquitto_sub`` over a queued backlog."""
    client_id = "ref-sub"
    args = [
        "mosquitto_sub",
        "-h",
        "127.0.0.1",
        "-p",
        str(broker.port),
        "-q",
        "1",
        "-V",
        "mqttv5",
        "-i",
        client_id,
        "-c",
        "-x",
        "3600",
    ]
    for f in FILTERS:
        args += ["-t", f]
    register = subprocess.Popen([*args, "-W", "1"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    register.wait()
    run_load(broker.port, 500, rate=1e9, duration=600, procs=2, events_every_s=5.0, limit=messages)
    start = time.perf_counter()
    subprocess.run([*args, "-C", str(messages)], stdout=subprocess.DEVNULL, check=True, timeout=300)
    return messages / (time.perf_counter() - start)


async def drain(
    broker: Broker, client_id: str, messages: int, protocol: str = "auto", *, native: bool = False
) -> float:
    """Drain rate of ``MqttClient`` — or, with *native*, central's ``Mqtt311Subscriber`` — over a queued backlog
    (receive + batched ack only)."""
    client: Subscriber
    if native:
        client = Mqtt311Subscriber(broker.settings(), client_id=client_id)
    else:
        client = MqttClient(broker.settings(protocol=protocol), client_id=client_id)
    for f in FILTERS:
        client.add_subscription(f)
    task = asyncio.create_task(client.run())
    start = time.perf_counter()
    got = 0
    last = start
    while got < messages and time.perf_counter() - last < 10:
        batch = await client.next_batch(2000, timeout=1)
        if batch:
            client.ack_many(batch)
            got += len(batch)
            last = time.perf_counter()
    took = time.perf_counter() - start
    await client.stop()
    task.cancel()
    if got < messages:
        raise RuntimeError(f"received {got} of {messages}")
    return got / took


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=60_000)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="varta-bench-recv-"))
    broker = Broker(workdir=work / "mosquitto", autosave_interval_s=60).start()
    try:
        ref = reference(broker, args.messages)
        print(f"reference: mosquitto_sub -q 1 drained {ref:,.0f} msg/s")
        # Central's ingest default (ingest.mqtt_protocol 3.1.1) is the asyncio subscriber; "5" uses paho.
        for name, protocol, native in (
            ("Mqtt311Subscriber (central's ingest)", "3.1.1", True),
            ("MqttClient (paho) over MQTT 3.1.1", "3.1.1", False),
            ("MqttClient (paho) over MQTT 5", "5", False),
        ):
            client_id = f"varta-recv-{protocol}-{native}"
            _queue_backlog(broker, client_id, args.messages, protocol)
            rate = asyncio.run(drain(broker, client_id, args.messages, protocol, native=native))
            print(
                f"{name} (receive + batched ack, no processing) drained {rate:,.0f} msg/s "
                f"({1e6 / rate:.1f} µs per message); ratio to mosquitto_sub: {rate / ref:.2f}"
            )
    finally:
        broker.stop()
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
