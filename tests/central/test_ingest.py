"""Central ingest stores what nodes report exactly once, records gaps, and survives garbage."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

import pytest
from sqlalchemy import func, select

from central.bus import Bus
from central.config import IngestSettings
from central.ingest.service import IngestService
from central.store.db import Database
from central.store.fleet_models import EventRecord, HealthSample, Node, SeqGap
from tests.central.conftest import IngestEnv
from tests.support import messages
from tests.support.broker import Broker
from varta.contract import Channel, encode, topic
from varta.mqtt import MqttClient, Subscriber
from varta.mqtt311 import Mqtt311Subscriber


async def eventually(check: Callable[[], Awaitable[bool]], timeout: float = 30.0) -> None:
    """Poll *check* until it is true (fails the test after *timeout*)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if await check():
            return
        await asyncio.sleep(0.05)
    raise AssertionError("condition not met in time")


async def count(env: IngestEnv, model: type, **where: object) -> int:
    async with env.db.session() as s:
        stmt = select(func.count()).select_from(model)
        for k, v in where.items():
            stmt = stmt.where(getattr(model, k) == v)
        return int((await s.execute(stmt)).scalar_one())


async def test_health_creates_node_and_updates_last_health(ingest_env: IngestEnv) -> None:
    msg = messages.health("n1", "b1", 1, cpu_percent=77.0)
    await ingest_env.publisher.publish(topic("s1", "n1", Channel.HEALTH), encode(msg))

    async def stored() -> bool:
        return await count(ingest_env, HealthSample, node_id="n1") == 1

    await eventually(stored)
    async with ingest_env.db.session() as s:
        node = await s.get(Node, "n1")
    assert node is not None and node.site == "s1"
    assert node.last_health is not None and node.last_health["cpu_percent"] == 77.0


async def test_duplicates_are_dropped_and_gaps_recorded(ingest_env: IngestEnv) -> None:
    t = topic("s1", "n2", Channel.EVENT)
    for seq in (1, 2, 2, 1, 5):
        await ingest_env.publisher.publish(t, encode(messages.event("n2", "b1", seq, index=seq)))

    async def done() -> bool:
        counters = ingest_env.ingest.counters
        return counters.stored + counters.duplicates >= 5

    await eventually(done)
    assert await count(ingest_env, EventRecord, node_id="n2", source="node") == 3
    assert ingest_env.ingest.counters.duplicates == 2
    async with ingest_env.db.session() as s:
        gaps = (await s.scalars(select(SeqGap).where(SeqGap.node_id == "n2"))).all()
    assert [(g.first_seq, g.last_seq) for g in gaps] == [(3, 4)]
    # A late message fills part of the gap.
    await ingest_env.publisher.publish(t, encode(messages.event("n2", "b1", 3, index=3)))

    async def filled() -> bool:
        async with ingest_env.db.session() as s:
            rows = (await s.scalars(select(SeqGap).where(SeqGap.node_id == "n2"))).all()
        return [(g.first_seq, g.last_seq) for g in rows] == [(4, 4)]

    await eventually(filled)


async def test_garbage_is_counted_by_reason_and_ingest_carries_on(ingest_env: IngestEnv) -> None:
    t = topic("s1", "n3", Channel.HEALTH)
    pub = ingest_env.publisher
    await pub.publish(t, b"{not json")
    await pub.publish(t, b"[1,2,3]")
    await pub.publish(t, b'{"v": 99, "node_id": "n3"}')
    await pub.publish(t, b"x" * 70_000)
    await pub.publish(t, encode(messages.health("other", "b1", 1)))
    await pub.publish(t, encode(messages.health("n3", "b1", 1)))

    async def stored() -> bool:
        return await count(ingest_env, HealthSample, node_id="n3") == 1

    await eventually(stored)
    assert ingest_env.ingest.counters.rejected == {
        "malformed_json": 1,
        "not_an_object": 1,
        "unsupported_version": 1,
        "oversized": 1,
        "node_mismatch": 1,
    }


async def test_an_empty_retained_message_withdraws_state_without_counting_as_garbage(ingest_env: IngestEnv) -> None:
    """A node clears a forgotten camera's retained state/info with an empty payload: not an error."""
    pub = ingest_env.publisher
    await pub.publish(topic("s1", "n4", Channel.STATE, "cam-1"), b"", retain=True)
    await pub.publish(topic("s1", "n4", Channel.INFO, "cam-1"), b"", retain=True)
    await pub.publish(topic("s1", "n4", Channel.HEALTH), b"")  # not retained, not a retained channel: garbage
    await pub.publish(topic("s1", "n4", Channel.HEALTH), encode(messages.health("n4", "b1", 1)))

    async def stored() -> bool:
        return await count(ingest_env, HealthSample, node_id="n4") == 1

    await eventually(stored)
    assert ingest_env.ingest.counters.retained_cleared == 2
    assert ingest_env.ingest.counters.rejected == {"malformed_json": 1}


async def test_availability_marks_online_and_offline_with_events(ingest_env: IngestEnv) -> None:
    st = topic("s1", "n4", Channel.STATUS)
    await ingest_env.publisher.publish(st, encode(messages.availability("n4", "b1", "online")), retain=True)

    async def online() -> bool:
        async with ingest_env.db.session() as s:
            node = await s.get(Node, "n4")
        return node is not None and node.online

    await eventually(online)
    await ingest_env.publisher.publish(
        st, encode(messages.availability("n4", "b1", "offline", "last_will")), retain=True
    )

    async def offline() -> bool:
        async with ingest_env.db.session() as s:
            node = await s.get(Node, "n4")
        return node is not None and not node.online and node.offline_reason == "last_will"

    await eventually(offline)
    kinds = []
    async with ingest_env.db.session() as s:
        kinds = list((await s.scalars(select(EventRecord.kind).where(EventRecord.node_id == "n4"))).all())
    assert kinds == ["node.online", "node.offline"]


async def test_will_of_previous_boot_does_not_mark_new_boot_offline(ingest_env: IngestEnv) -> None:
    st = topic("s1", "n5", Channel.STATUS)
    pub = ingest_env.publisher
    await pub.publish(st, encode(messages.availability("n5", "new", "online")), retain=True)
    await pub.publish(st, encode(messages.availability("n5", "old", "offline", "last_will")), retain=True)
    await pub.publish(topic("s1", "n5", Channel.HEALTH), encode(messages.health("n5", "new", 1)))

    async def got_health() -> bool:
        return await count(ingest_env, HealthSample, node_id="n5") == 1

    await eventually(got_health)
    async with ingest_env.db.session() as s:
        node = await s.get(Node, "n5")
    assert node is not None and node.online is True


async def test_late_messages_in_one_batch_fill_a_split_gap_completely(ingest_env: IngestEnv) -> None:
    from varta.mqtt import InboundMessage

    t = topic("s1", "n6", Channel.EVENT)

    def inbound(seq: int) -> InboundMessage:
        return InboundMessage(t, encode(messages.event("n6", "b1", seq, index=seq)), 0, False, 0)

    await ingest_env.ingest.process([inbound(1), inbound(6)])  # gap 2..5
    # 3 splits the gap into 2..2 and 4..5; 4 and 5 then empty the new, not yet flushed, part.
    await ingest_env.ingest.process([inbound(4), inbound(3), inbound(5)])
    await ingest_env.ingest.process([inbound(2)])
    async with ingest_env.db.session() as s:
        gaps = (await s.scalars(select(SeqGap).where(SeqGap.node_id == "n6"))).all()
    assert gaps == []
    assert await count(ingest_env, EventRecord, node_id="n6", source="node") == 6
    assert ingest_env.ingest.counters.db_errors == 0


def ingest_connection(protocol: str, broker: Broker, client_id: str) -> Subscriber:
    """Central's ingest connection for ``ingest.mqtt_protocol``: its own 3.1.1 subscriber, or paho for MQTT 5."""
    if protocol == "3.1.1":
        return Mqtt311Subscriber(broker.settings(), client_id=client_id)
    return MqttClient(broker.settings(protocol="5"), client_id=client_id)


@pytest.mark.parametrize("protocol", ["3.1.1", "5"])
async def test_what_nodes_send_after_a_broker_restart_while_central_is_away_is_not_lost(
    broker: Broker, sqlite_url: str, protocol: str
) -> None:
    """Central's persistent subscription survives a broker restart (a shared one would not, in Mosquitto 2.0)."""
    db = Database(sqlite_url)
    first = ingest_connection(protocol, broker, "central-restart")
    IngestService(first, db, Bus(), IngestSettings()).subscribe()
    task = asyncio.create_task(first.run())
    await first.wait_connected(10)
    await first.stop()
    task.cancel()
    broker.stop()
    broker.start()
    pub = MqttClient(broker.settings(), client_id="node-replaying", clean_start=True)
    pub_task = asyncio.create_task(pub.run())
    await pub.wait_connected(10)
    for seq in range(1, 11):
        await pub.publish(topic("s1", "n7", Channel.EVENT), encode(messages.event("n7", "b1", seq, index=seq)))
    await pub.stop()
    pub_task.cancel()
    second = ingest_connection(protocol, broker, "central-restart")
    ingest = IngestService(second, db, Bus(), IngestSettings(batch_wait_s=0.01))
    ingest.subscribe()
    tasks = [asyncio.create_task(second.run()), asyncio.create_task(ingest.run())]
    try:

        async def all_stored() -> bool:
            return ingest.counters.stored == 10

        await eventually(all_stored, timeout=20)
        assert second.protocol_name == protocol
    finally:
        for t in tasks:
            t.cancel()
        await second.stop()
        await db.dispose()
