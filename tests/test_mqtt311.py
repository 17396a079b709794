"""Central's ingest subscriber (MQTT 3.1.1 on asyncio's transport): receives everything exactly as the broker
sends it, acknowledges only what the consumer stored, survives broker restarts, silence and garbage."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import struct
import subprocess
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.support.broker import Broker
from tests.support.mqtt_client import MqttTestClient
from tests.support.ports import free_port
from varta.mqtt import InboundMessage, MqttSettings
from varta.mqtt311 import Mqtt311Subscriber, _Link, _Protocol, packet

TOPIC = "varta/v1/s1/n1/event"


@contextlib.asynccontextmanager
async def running(sub: Mqtt311Subscriber) -> AsyncIterator[asyncio.Task[None]]:
    task = asyncio.create_task(sub.run())
    try:
        yield task
    finally:
        await sub.stop()
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


def publisher(broker: Broker) -> MqttTestClient:
    """A node publishing QoS 1 messages."""
    return MqttTestClient(broker.settings())


def subscriber(settings: MqttSettings, client_id: str = "ingest-1", **kw: int) -> Mqtt311Subscriber:
    sub = Mqtt311Subscriber(settings, client_id=client_id, **kw)
    sub.add_subscription("varta/v1/+/+/event", qos=1)
    return sub


async def collect(sub: Mqtt311Subscriber, count: int, timeout: float = 15.0) -> list[InboundMessage]:
    got: list[InboundMessage] = []
    deadline = time.monotonic() + timeout
    while len(got) < count and time.monotonic() < deadline:
        got.extend(await sub.next_batch(1000, timeout=0.2))
    return got


async def quiet(sub: Mqtt311Subscriber, seconds: float = 0.5) -> list[InboundMessage]:
    """What arrives within *seconds* (expected: nothing)."""
    got: list[InboundMessage] = []
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        got.extend(await sub.next_batch(1000, timeout=0.1))
    return got


async def publish_numbered(pub: MqttTestClient, numbers: range, topic: str = TOPIC, size: int = 0) -> None:
    for i in numbers:
        await pub.publish(topic, (b"%d" % i).ljust(size))


async def test_receives_every_message_in_order_with_topic_payload_and_qos(broker: Broker) -> None:
    sub = subscriber(broker.settings())
    async with running(sub), publisher(broker) as pub:
        await sub.wait_connected(10)
        await publish_numbered(pub, range(500))
        await pub.publish("varta/v1/s1/n1/event", b"", qos=0)
        got = await collect(sub, 501)
        sub.ack_many(got)
    assert [m.payload for m in got[:500]] == [b"%d" % i for i in range(500)]
    assert {m.topic for m in got} == {TOPIC}
    assert {m.qos for m in got[:500]} == {1} and got[500].qos == 0 and got[500].payload == b""
    assert sub.protocol_errors == 0 and sub.protocol_name == "3.1.1"


async def test_only_acknowledged_messages_are_gone_after_a_reconnect(broker: Broker) -> None:
    first = subscriber(broker.settings())
    async with running(first), publisher(broker) as pub:
        await first.wait_connected(10)
        await publish_numbered(pub, range(20))
        got = await collect(first, 20)
        first.ack_many(got[:10])  # the consumer stored only the first ten
        await asyncio.sleep(0.3)
    assert len(got) == 20
    second = subscriber(broker.settings())  # same client id: the broker's persistent session
    async with running(second):
        again = await collect(second, 10)
        second.ack_many(again)
        extra = await quiet(second)
    assert sorted(int(m.payload) for m in again) == list(range(10, 20))
    assert extra == []


async def test_acks_for_an_older_connection_are_not_sent_on_the_new_one(broker: Broker) -> None:
    sub = subscriber(broker.settings(reconnect_min_s=0.1))
    async with running(sub), publisher(broker) as pub:
        await sub.wait_connected(10)
        await publish_numbered(pub, range(5))
        old = await collect(sub, 5)
        broker.stop(signal.SIGTERM)  # saves the session with its five unacknowledged deliveries
        broker.start()
        await asyncio.sleep(0.5)
        await sub.wait_connected(15)
        sub.ack_many(old)  # stale: packet ids of a dead connection
        redelivered = await collect(sub, 5)
        sub.ack_many(redelivered)
    assert sorted(int(m.payload) for m in redelivered) == list(range(5))
    assert all(m.connection == sub.connection_number for m in redelivered)
    assert sub.connections == 2


async def test_messages_queued_while_away_and_across_a_broker_restart_arrive(broker: Broker) -> None:
    sub = subscriber(broker.settings())
    async with running(sub):
        await sub.wait_connected(10)
    async with publisher(broker) as pub:
        await publish_numbered(pub, range(100))
    broker.stop(signal.SIGTERM)  # persists the session and its queue
    broker.start()
    sub = subscriber(broker.settings())
    async with running(sub):
        got = await collect(sub, 100)
        sub.ack_many(got)
    assert [int(m.payload) for m in got] == list(range(100))


async def test_a_lagging_consumer_pauses_reading_and_loses_nothing(broker: Broker) -> None:
    sub = subscriber(broker.settings())
    async with running(sub):
        await sub.wait_connected(10)
    async with publisher(broker) as pub:  # a backlog the broker sends at once, far beyond what we take
        await asyncio.gather(*(publish_numbered(pub, range(k, 3000, 10), size=400) for k in range(10)))
    sub = subscriber(broker.settings(), inbound_limit=200)
    async with running(sub):
        got: list[InboundMessage] = []
        peak = 0
        while len(got) < 3000:
            peak = max(peak, len(sub._inbound))
            batch = await sub.next_batch(50, timeout=5)
            assert batch, "nothing arrived for 5 s"
            sub.ack_many(batch)
            got.extend(batch)
            await asyncio.sleep(0.002)  # a slow consumer
    assert sorted(int(m.payload) for m in got) == list(range(3000))
    assert sub.inbound_paused > 0
    # Bounded by the limit plus what one read delivered (256 KiB: ~600 of these), never the whole backlog.
    assert peak < 200 + 700


async def test_a_silent_broker_is_noticed_within_one_and_a_half_keepalives(broker: Broker) -> None:
    sub = subscriber(broker.settings(keepalive_s=2, reconnect_min_s=0.2))
    async with running(sub):
        await sub.wait_connected(10)
        assert broker.proc is not None
        broker.proc.send_signal(signal.SIGSTOP)  # TCP stays open, nothing answers
        try:
            start = time.monotonic()
            await asyncio.wait_for(sub.disconnected.wait(), 10)
            noticed = time.monotonic() - start
        finally:
            broker.proc.send_signal(signal.SIGCONT)
        await sub.wait_connected(15)
    assert noticed <= 1.5 * 2 + 1.0 + 0.5  # 1.5 keepalives, plus one check interval (keepalive / 2), plus slack


@pytest.fixture
def password_broker(tmp_path: Path) -> Iterator[Broker]:
    """A broker that takes only user ``central`` with the password ``right``."""
    subprocess.run(["mosquitto_passwd", "-c", "-b", str(tmp_path / "passwd"), "central", "right"], check=True)
    extra = f"allow_anonymous false\npassword_file {tmp_path}/passwd\n"
    broker = Broker(workdir=tmp_path / "mosquitto", extra_conf=extra).start()
    try:
        yield broker
    finally:
        broker.stop()


async def test_a_wrong_password_is_a_failed_attempt_not_a_crash(password_broker: Broker) -> None:
    bad = subscriber(password_broker.settings(username="central", password="wrong", reconnect_min_s=0.1))
    async with running(bad) as task:
        await asyncio.sleep(1.0)
        assert not bad.connected.is_set() and not task.done()
        assert bad.failed_attempts >= 2
    good = subscriber(password_broker.settings(username="central", password="right"), client_id="ingest-2")
    async with running(good):
        await good.wait_connected(10)
    assert good.connections == 1


# ------------------------------------------------------------------------------------------ a broker gone wrong


def publish_packet(topic: str, payload: bytes, mid: int) -> bytes:
    name = topic.encode()
    return packet(0x32, struct.pack("!H", len(name)) + name + struct.pack("!H", mid) + payload)


CONNACK = b"\x20\x02\x00\x00"
SUBACK = b"\x90\x03\x00\x01\x01"


@contextlib.asynccontextmanager
async def fake_broker(after_subscribe: Callable[[], bytes]) -> AsyncIterator[int]:
    """A TCP server that accepts CONNECT and SUBSCRIBE, then sends ``after_subscribe()`` (each connection)."""

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(OSError, asyncio.IncompleteReadError):
            await reader.read(1024)  # CONNECT
            writer.write(CONNACK)
            await reader.read(1024)  # SUBSCRIBE
            writer.write(SUBACK + after_subscribe())
            await writer.drain()
            await reader.read(1024)
        writer.close()

    port = free_port()
    server = await asyncio.start_server(serve, "127.0.0.1", port)
    try:
        yield port
    finally:
        server.close()


@pytest.mark.parametrize(
    ("garbage", "detail"),
    [
        (b"\x32\xff\xff\xff\xff\x01", "remaining length"),
        (packet(0x32, b"\x00"), "too short"),
        (packet(0x34, b"\x00\x01t\x00\x01x"), "QoS 2"),
        (packet(0x50, b"\x00\x01"), "unexpected packet type 5"),
        (b"\x32\xff\xff\xff\x7f", "over the limit"),
        (CONNACK, "unexpected CONNACK"),
    ],
)
async def test_a_broker_that_breaks_the_protocol_is_counted_and_left(
    garbage: bytes, detail: str, caplog: pytest.LogCaptureFixture
) -> None:
    good = publish_packet(TOPIC, b"before", 7)
    async with fake_broker(lambda: good + garbage) as port:
        sub = subscriber(MqttSettings(port=port, reconnect_min_s=0.1, reconnect_max_s=0.2))
        async with running(sub) as task:
            got = await collect(sub, 2, timeout=5)
            deadline = time.monotonic() + 5
            while (
                sub.protocol_errors < 2 or sub.connections + sub.failed_attempts < 2
            ) and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
            assert not task.done()
    assert sub.protocol_errors >= 2  # every connection got the garbage, and every time it was left and retried
    assert [m.payload for m in got] == [b"before", b"before"]  # what came before the garbage is still delivered
    assert sub.connections + sub.failed_attempts >= 2  # left and tried again (before or after "connected")


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(garbage=st.binary(min_size=1, max_size=300))
def test_any_bytes_from_the_broker_never_crash_the_parser(garbage: bytes) -> None:
    async def scenario() -> tuple[int, int]:
        sub = subscriber(MqttSettings())
        link = _Link(number=1, ready=True)
        proto = _Protocol(sub, link)
        proto.data_received(garbage)
        return len(sub._inbound), sub.protocol_errors

    delivered, errors = asyncio.run(scenario())
    assert delivered >= 0 and errors in (0, 1)


@settings(max_examples=40, deadline=None)
@given(cuts=st.lists(st.integers(min_value=1, max_value=40), max_size=30), payload=st.binary(max_size=300))
def test_packets_split_anywhere_are_reassembled(cuts: list[int], payload: bytes) -> None:
    stream = b"".join(publish_packet(f"varta/v1/s/n{i}/event", payload, i + 1) for i in range(3)) + b"\xd0\x00"

    async def scenario() -> list[InboundMessage]:
        sub = subscriber(MqttSettings())
        proto = _Protocol(sub, _Link(number=1, ready=True))
        pos = 0
        for cut in cuts:
            proto.data_received(stream[pos : pos + cut])
            pos += cut
            # The consumer is woken as soon as a whole message is in, even when the read ends mid-packet.
            assert sub._wake.is_set() == bool(sub._inbound)
        proto.data_received(stream[pos:])
        assert sub.protocol_errors == 0
        return list(sub._inbound)

    got = asyncio.run(scenario())
    assert [(m.topic, m.payload, m.mid) for m in got] == [(f"varta/v1/s/n{i}/event", payload, i + 1) for i in range(3)]
