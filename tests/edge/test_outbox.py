"""The durable outbox: commit before publish, order, delete after PUBACK, replay flags, bounds, restarts."""

from __future__ import annotations

import asyncio
import signal
import sqlite3
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import orjson
import pytest

from edge.config import OutboxSettings
from edge.outbox import MessageClass, Outbox, OutboxPublisher
from tests.edge.support import Collector, eventually
from tests.support.broker import Broker
from varta.contract import Channel, Event, Health, topic, utcnow
from varta.mqtt import MqttClient, MqttSettings

SITE, NODE, BOOT = "site-a", "node-1", "boot-1"
EVENT_TOPIC = topic(SITE, NODE, Channel.EVENT)
HEALTH_TOPIC = topic(SITE, NODE, Channel.HEALTH)


def event(n: int = 0) -> Event:
    return Event(node_id=NODE, boot_id=BOOT, seq=0, ts=utcnow(), kind="test.event", data={"n": n})


def health() -> Health:
    return Health(
        node_id=NODE,
        boot_id=BOOT,
        seq=0,
        ts=utcnow(),
        cpu_percent=1,
        memory_percent=1,
        memory_available_mb=1,
        disk_percent=1,
        disk_free_mb=1,
        uptime_s=1,
        agent_uptime_s=1,
        version="test",
    )


def settings(tmp_path: Path, **overrides: Any) -> OutboxSettings:
    return OutboxSettings(path=tmp_path / "outbox.db", **overrides)


def db_rows(path: Path) -> list[tuple[int, str, dict[str, Any]]]:
    """(id, class, payload) of every stored row, read through a separate connection."""
    with sqlite3.connect(path) as conn:
        rows = conn.execute("SELECT id, class, payload FROM outbox ORDER BY id").fetchall()
    return [(i, c, orjson.loads(p)) for i, c, p in rows]


@asynccontextmanager
async def publishing(outbox: Outbox, mqtt: MqttSettings, **kwargs: Any) -> AsyncIterator[OutboxPublisher]:
    client = MqttClient(mqtt, client_id="outbox-test-node")
    publisher = OutboxPublisher(outbox, client, **kwargs)
    tasks = [asyncio.create_task(client.run()), asyncio.create_task(publisher.run())]
    try:
        yield publisher
    finally:
        tasks[1].cancel()
        await asyncio.gather(tasks[1], return_exceptions=True)
        await client.stop()
        tasks[0].cancel()
        await asyncio.gather(tasks[0], return_exceptions=True)


# --------------------------------------------------------------------------------------------- storage


async def test_put_commits_the_row_before_returning_its_seq(tmp_path: Path) -> None:
    outbox = await Outbox.open(settings(tmp_path))
    try:
        seq = await outbox.put(EVENT_TOPIC, event(7), cls=MessageClass.EVENT)
        rows = db_rows(outbox.path)  # another connection sees it: committed, not just buffered
        assert seq == 1
        assert len(rows) == 1
        assert rows[0][1] == "event"
        assert rows[0][2]["seq"] == 1 and rows[0][2]["data"] == {"n": 7} and rows[0][2]["historical"] is False
        assert outbox.stats().pending == 1
    finally:
        await outbox.close()


async def test_seq_order_equals_row_order_and_no_seq_is_reused_under_concurrent_puts(tmp_path: Path) -> None:
    outbox = await Outbox.open(settings(tmp_path))
    try:
        seqs = await asyncio.gather(*(outbox.put(EVENT_TOPIC, event(i), cls=MessageClass.EVENT) for i in range(300)))
        assert sorted(seqs) == list(range(1, 301))
        stored = [payload["seq"] for _, _, payload in db_rows(outbox.path)]
        assert stored == list(range(1, 301))  # ordered by row id == ordered by seq
    finally:
        await outbox.close()


async def test_oversized_message_is_refused_without_consuming_a_seq(tmp_path: Path) -> None:
    outbox = await Outbox.open(settings(tmp_path))
    try:
        big = Event(node_id=NODE, boot_id=BOOT, seq=0, ts=utcnow(), kind="big", data={"x": "y" * 70_000})
        with pytest.raises(ValueError, match="exceeds"):
            await outbox.put(EVENT_TOPIC, big, cls=MessageClass.EVENT)
        assert await outbox.put(EVENT_TOPIC, event(), cls=MessageClass.EVENT) == 1
    finally:
        await outbox.close()


async def test_rows_and_counters_survive_reopening_and_a_new_boot_restarts_seq(tmp_path: Path) -> None:
    outbox = await Outbox.open(settings(tmp_path, max_rows=10))
    for i in range(12):
        await outbox.put(
            HEALTH_TOPIC if i < 2 else EVENT_TOPIC,
            health() if i < 2 else event(i),
            cls=MessageClass.TELEMETRY if i < 2 else MessageClass.EVENT,
        )
    await outbox.close()

    reopened = await Outbox.open(settings(tmp_path, max_rows=10))
    try:
        stats = reopened.stats()
        assert (stats.pending, stats.dropped_telemetry, stats.dropped_events) == (10, 2, 0)
        rows = await reopened.fetch()
        assert [orjson.loads(r.payload)["data"]["n"] for r in rows] == list(range(2, 12))
        assert await reopened.put(EVENT_TOPIC, event(), cls=MessageClass.EVENT) == 1  # per-boot seq
        assert (await reopened.fetch(after_id=rows[-1].id))[0].id > rows[-1].id  # ids never reused
    finally:
        await reopened.close()


async def test_row_bound_drops_oldest_telemetry_before_any_event(tmp_path: Path) -> None:
    outbox = await Outbox.open(settings(tmp_path, max_rows=10))
    try:
        for i in range(6):
            await outbox.put(EVENT_TOPIC, event(i), cls=MessageClass.EVENT)
            await outbox.put(HEALTH_TOPIC, health(), cls=MessageClass.TELEMETRY)
        # 12 rows > 10: the two oldest telemetry rows went, every event stayed.
        classes = [c for _, c, _ in db_rows(outbox.path)]
        assert classes.count("event") == 6 and classes.count("telemetry") == 4
        stats = outbox.stats()
        assert (stats.pending, stats.dropped_telemetry, stats.dropped_events) == (10, 2, 0)
        seqs = [p["seq"] for _, c, p in db_rows(outbox.path) if c == "telemetry"]
        assert seqs == [6, 8, 10, 12]  # the oldest (seq 2 and 4) were dropped

        for i in range(6, 14):
            await outbox.put(EVENT_TOPIC, event(i), cls=MessageClass.EVENT)
        # All telemetry is gone before the oldest events are dropped.
        rows = db_rows(outbox.path)
        assert [c for _, c, _ in rows] == ["event"] * 10
        assert [p["data"]["n"] for _, _, p in rows] == list(range(4, 14))
        stats = outbox.stats()
        assert (stats.pending, stats.dropped_telemetry, stats.dropped_events) == (10, 6, 4)
    finally:
        await outbox.close()


async def test_byte_bound_drops_telemetry_first(tmp_path: Path) -> None:
    max_bytes = 4 * 64 * 1024
    outbox = await Outbox.open(settings(tmp_path, max_bytes=max_bytes))
    try:
        filler = "x" * 20_000
        for _ in range(8):
            h = health().model_copy(update={"version": "t"})
            await outbox.put(HEALTH_TOPIC, h, cls=MessageClass.TELEMETRY)
        for i in range(15):
            big = Event(node_id=NODE, boot_id=BOOT, seq=0, ts=utcnow(), kind="big", data={"i": i, "f": filler})
            await outbox.put(EVENT_TOPIC, big, cls=MessageClass.EVENT)
        stats = outbox.stats()
        assert stats.pending_bytes <= max_bytes
        assert stats.pending_telemetry == 0 and stats.dropped_telemetry == 8
        assert stats.dropped_events > 0  # 15 × 20 kB does not fit in 256 kB even without telemetry
        kept = [p["data"]["i"] for _, _, p in db_rows(outbox.path)]
        assert kept == list(range(15 - len(kept), 15))  # the newest events are the ones kept
    finally:
        await outbox.close()


async def test_age_bounds_drop_old_telemetry_and_much_older_events(tmp_path: Path) -> None:
    now = [1_000_000.0]
    clock: Callable[[], float] = lambda: now[0]  # noqa: E731
    outbox = await Outbox.open(settings(tmp_path, telemetry_max_age_s=100, event_max_age_s=1000), clock=clock)
    try:
        await outbox.put(HEALTH_TOPIC, health(), cls=MessageClass.TELEMETRY)
        await outbox.put(EVENT_TOPIC, event(1), cls=MessageClass.EVENT)
        now[0] += 50
        await outbox.put(HEALTH_TOPIC, health(), cls=MessageClass.TELEMETRY)
        now[0] += 60  # first telemetry is 110 s old, second 60 s
        assert await outbox.prune() == {MessageClass.TELEMETRY: 1, MessageClass.EVENT: 0}
        now[0] += 1000
        assert await outbox.prune() == {MessageClass.TELEMETRY: 1, MessageClass.EVENT: 1}
        stats = outbox.stats()
        assert (stats.pending, stats.dropped_telemetry, stats.dropped_events) == (0, 2, 1)
    finally:
        await outbox.close()


async def test_companion_tables_share_the_database(tmp_path: Path) -> None:
    outbox = await Outbox.open(settings(tmp_path))
    try:
        await outbox.call(lambda conn: conn.execute("CREATE TABLE extra (x INTEGER)"))
        await outbox.call(lambda conn: conn.execute("INSERT INTO extra VALUES (42)"))
        assert await outbox.call(lambda conn: conn.execute("SELECT x FROM extra").fetchone()[0]) == 42
    finally:
        await outbox.close()


async def test_a_corrupt_database_is_set_aside_and_replaced(tmp_path: Path) -> None:
    (tmp_path / "outbox.db").write_bytes(b"this is not an sqlite database" * 100)
    outbox = await Outbox.open(settings(tmp_path))
    try:
        assert await outbox.put(EVENT_TOPIC, event(), cls=MessageClass.EVENT) == 1
        aside = await asyncio.to_thread(lambda: list(tmp_path.glob("outbox.db.corrupt-*")))
        assert len(aside) == 1
    finally:
        await outbox.close()


# --------------------------------------------------------------------------------------------- publishing


async def test_rows_are_published_in_order_and_deleted_after_puback(broker: Broker, tmp_path: Path) -> None:
    outbox = await Outbox.open(settings(tmp_path))
    try:
        async with Collector(broker.settings(), EVENT_TOPIC) as sub:
            async with publishing(outbox, broker.settings(), window=16) as publisher:
                await eventually(publisher.client.connected.is_set)  # rows put before connecting count as replays
                for i in range(500):
                    await outbox.put(EVENT_TOPIC, event(i), cls=MessageClass.EVENT)
                await sub.wait_for(lambda p: len(p) >= 500)
                assert await outbox.wait_empty(5)
                assert publisher.published == 500
            got = sub.payloads()
        assert [p["data"]["n"] for p in got] == list(range(500))
        assert [p["seq"] for p in got] == list(range(1, 501))
        assert not any(p["historical"] for p in got)  # published live
        assert db_rows(outbox.path) == []
    finally:
        await outbox.close()


async def test_rows_stay_stored_until_the_broker_acknowledges_them(broker: Broker, tmp_path: Path) -> None:
    outbox = await Outbox.open(settings(tmp_path))
    try:
        async with (
            Collector(broker.settings(), EVENT_TOPIC) as sub,
            publishing(outbox, broker.settings()) as publisher,
        ):
            await eventually(publisher.client.connected.is_set)
            assert broker.proc is not None
            broker.proc.send_signal(signal.SIGSTOP)  # the broker stops answering: no PUBACK
            try:
                for i in range(20):
                    await outbox.put(EVENT_TOPIC, event(i), cls=MessageClass.EVENT)
                await asyncio.sleep(0.5)
                assert len(db_rows(outbox.path)) == 20
                assert publisher.published == 0
            finally:
                broker.proc.send_signal(signal.SIGCONT)
            assert await outbox.wait_empty(10)
            await sub.wait_for(lambda p: len(p) >= 20)
        assert publisher.published == 20
        assert [p["data"]["n"] for p in sub.payloads()] == list(range(20))
    finally:
        await outbox.close()


async def test_rows_queued_while_offline_are_replayed_flagged_historical(broker: Broker, tmp_path: Path) -> None:
    outbox = await Outbox.open(settings(tmp_path))
    try:
        fast = broker.settings(reconnect_min_s=0.1, reconnect_max_s=0.3)
        async with Collector(fast, EVENT_TOPIC, client_id="sub-1", clean_start=False) as sub:
            await asyncio.to_thread(broker.stop)
            async with publishing(outbox, fast) as publisher:
                for i in range(5):
                    await outbox.put(EVENT_TOPIC, event(i), cls=MessageClass.EVENT)
                await asyncio.sleep(0.3)
                assert outbox.stats().pending == 5
                await asyncio.to_thread(broker.start)
                await eventually(publisher.client.connected.is_set, what="publisher reconnect")
                await eventually(lambda: outbox.stats().pending == 0, what="replay")
                for i in range(5, 8):
                    await outbox.put(EVENT_TOPIC, event(i), cls=MessageClass.EVENT)
                got = await sub.wait_for(lambda p: len({x["seq"] for x in p}) >= 8)
        by_seq = {p["seq"]: p for p in got}
        assert sorted(by_seq) == list(range(1, 9))
        assert all(by_seq[s]["historical"] for s in range(1, 6))
        assert not any(by_seq[s]["historical"] for s in range(6, 9))
    finally:
        await outbox.close()


async def test_rows_left_by_a_previous_run_are_replayed_historical(broker: Broker, tmp_path: Path) -> None:
    first = await Outbox.open(settings(tmp_path))
    for i in range(3):
        await first.put(EVENT_TOPIC, event(i), cls=MessageClass.EVENT)
    await first.close()  # "crash" before anything was published

    outbox = await Outbox.open(settings(tmp_path))
    try:
        async with Collector(broker.settings(), EVENT_TOPIC) as sub, publishing(outbox, broker.settings()):
            got = await sub.wait_for(lambda p: len(p) >= 3)
            await outbox.put(EVENT_TOPIC, event(99), cls=MessageClass.EVENT)
            got = await sub.wait_for(lambda p: len(p) >= 4)
        assert [(p["data"]["n"], p["historical"]) for p in got] == [(0, True), (1, True), (2, True), (99, False)]
    finally:
        await outbox.close()


async def test_a_publish_refused_by_the_broker_is_dropped_and_counted(tmp_path: Path) -> None:
    acl = tmp_path / "acl"
    acl.write_text(f"topic readwrite {EVENT_TOPIC}\ntopic readwrite test/probe/#\n")
    broker = Broker(workdir=tmp_path / "mosquitto", extra_conf=f"allow_anonymous true\nacl_file {acl}\n")
    broker.start()
    outbox = await Outbox.open(settings(tmp_path))
    try:
        async with (
            Collector(broker.settings(protocol="5"), EVENT_TOPIC) as sub,
            publishing(outbox, broker.settings(protocol="5")) as publisher,
        ):
            await outbox.put(EVENT_TOPIC, event(1), cls=MessageClass.EVENT)
            await outbox.put(topic(SITE, "other-node", Channel.EVENT), event(2), cls=MessageClass.EVENT)
            await outbox.put(EVENT_TOPIC, event(3), cls=MessageClass.EVENT)
            await sub.wait_for(lambda p: len(p) >= 2)
            await eventually(lambda: outbox.stats().pending == 0)
            assert publisher.rejected == 1
        assert [p["data"]["n"] for p in sub.payloads()] == [1, 3]
        assert outbox.stats().rejected == 1
        await outbox.close()
        outbox = await Outbox.open(settings(tmp_path))
        assert outbox.stats().rejected == 1  # persisted
    finally:
        await outbox.close()
        broker.stop()


async def test_outbox_throughput_to_mosquitto(broker: Broker, tmp_path: Path) -> None:
    """Rows committed in groups and drained through a real broker; prints rows/s for the record."""
    total = 20_000
    outbox = await Outbox.open(settings(tmp_path))
    try:
        async with Collector(broker.settings(), EVENT_TOPIC) as sub:
            started = time.perf_counter()
            for start in range(0, total, 1000):
                await asyncio.gather(
                    *(outbox.put(EVENT_TOPIC, event(i), cls=MessageClass.EVENT) for i in range(start, start + 1000))
                )
            committed = time.perf_counter() - started
            async with publishing(outbox, broker.settings()) as publisher:
                started = time.perf_counter()
                await eventually(lambda: outbox.stats().pending == 0, timeout=60, what="drain")
                drained = time.perf_counter() - started
                assert publisher.published == total
            await sub.wait_for(lambda p: len(p) >= total, timeout=30)
        print(f"\noutbox: commit {total / committed:,.0f} rows/s; drain to Mosquitto {total / drained:,.0f} rows/s")
        assert [p["seq"] for p in sub.payloads()] == list(range(1, total + 1))
        assert total / drained > 1000
    finally:
        await outbox.close()
