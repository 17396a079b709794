"""The engine as a whole: level-triggered (no duplicates over repeats, restarts or two instances), announcing on the
bus, queueing notifications with the change, evaluating on events and on its timer, surviving failures."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable

from sqlalchemy import text

from central.bus import Bus, BusEvent
from central.config import IncidentSettings, NotificationSettings, TelegramTarget, WebhookTarget
from central.incidents.engine import IncidentEngine
from central.notify.service import NotificationService
from central.store.db import Database
from central.store.incident_models import Incident
from tests.central.incidents.conftest import IncidentEnv
from tests.central.incidents.support import Fleet, at, make_config
from tests.support.http_sink import HttpSink
from varta.contract import utcnow


async def eventually(check: Callable[[], Awaitable[bool]], timeout: float = 10.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not await check():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {timeout} s")
        await asyncio.sleep(0.02)


@contextlib.asynccontextmanager
async def collecting(bus: Bus) -> AsyncIterator[list[BusEvent]]:
    seen: list[BusEvent] = []

    async def listen() -> None:
        async with bus.subscribe() as events:
            async for event in events:
                seen.append(event)

    task = asyncio.create_task(listen())
    await asyncio.sleep(0)
    try:
        yield seen
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def _blackout(fleet: Fleet) -> None:
    await fleet.node("node-a", since=at(-3600))
    await fleet.device("node-a", "cam-1", "camera", since=at(-3600))
    await fleet.ups("node-a", "on_battery", since=at(0))
    await fleet.node("node-a", online=False, reason="last_will", since=at(10))


async def test_repeated_evaluations_change_nothing_once_the_store_matches(env: IncidentEnv) -> None:
    await _blackout(env.fleet)
    first = await env.engine.evaluate_now(at(11))
    before = [(i.id, i.updated_at, i.devices) for i in await env.fleet.incidents()]

    again = [await env.engine.evaluate_now(at(t)) for t in range(12, 22)]

    assert first.summary()["opened"] == 1
    assert not any(again)
    assert [(i.id, i.updated_at, i.devices) for i in await env.fleet.incidents()] == before
    assert len(await env.fleet.outages()) == 2
    assert env.engine.stats()["evaluations"] == 11
    assert env.engine.stats()["writes"] == 1


async def test_a_restarted_engine_takes_over_the_open_incidents_and_closes_them(env: IncidentEnv) -> None:
    await _blackout(env.fleet)
    await env.engine.evaluate_now(at(11))

    restarted = IncidentEngine(env.config, env.db, env.bus)
    await restarted.evaluate_now(at(12))
    await env.fleet.node("node-a", online=True, since=at(100))
    await env.fleet.ups("node-a", "on_line", since=at(101))
    await restarted.evaluate_now(at(102))

    (incident,) = await env.fleet.incidents()
    assert incident.ended_at == at(101)
    assert all(o.ended_at is not None for o in await env.fleet.outages())


async def test_two_engines_evaluating_at_once_open_each_incident_once(env: IncidentEnv) -> None:
    fleet = env.fleet
    other_db = Database(env.config.database_url)  # a second instance: its own connections
    other = IncidentEngine(env.config, other_db, Bus())
    try:
        for n in range(6):
            await fleet.node(f"node-{n}", "vyshneve" if n % 2 else "lisove", since=at(-3600))
            await fleet.device(f"node-{n}", "cam-1", "camera", "offline", "unreachable", since=at(0))
        await fleet.node("node-0", online=False, reason="last_will", since=at(5))
        await fleet.ups("node-1", "on_battery", since=at(5))
        for t in range(40, 50):
            await asyncio.gather(env.engine.evaluate_now(at(t)), other.evaluate_now(at(t)))
    finally:
        await other_db.dispose()

    keys = [i.key for i in await fleet.incidents()]
    assert sorted(keys) == sorted(set(keys))
    assert sorted(keys) == [
        "camera_fault:node-2:cam-1",
        "camera_fault:node-3:cam-1",
        "camera_fault:node-4:cam-1",
        "camera_fault:node-5:cam-1",
        "node_down:node-0",
        "power_outage:vyshneve",
    ]
    refs = [(o.node_id, o.device_id) for o in await fleet.outages()]
    assert sorted(refs) == sorted(set(refs))
    assert len(refs) == 7  # node-0 and the six cameras


async def test_duplicate_open_incidents_left_in_the_store_are_closed_keeping_the_oldest(env: IncidentEnv) -> None:
    await env.fleet.node("node-a", online=False, reason="last_will", since=at(0))
    await env.engine.evaluate_now(at(1))
    async with env.db.session() as s:  # as a bug or a manual edit could leave it
        original = (await env.fleet.incidents())[0]
        s.add(
            Incident(
                key=original.key,
                type=original.type,
                severity=original.severity,
                site=original.site,
                node_id=original.node_id,
                devices=[],
                title="",
                detail="",
                data={},
                started_at=at(0),
                notes=[],
                updated_at=at(1),
            )
        )
        await s.commit()

    await env.engine.evaluate_now(at(2))

    first, second = await env.fleet.incidents()
    assert first.ended_at is None
    assert second.ended_at == at(2) and second.data["end_code"] == "duplicate"


async def test_every_change_is_announced_on_the_bus_after_the_commit(env: IncidentEnv) -> None:
    await env.fleet.node("node-a", since=at(-3600))
    await env.fleet.device("node-a", "cam-1", "camera", since=at(-3600))
    async with collecting(env.bus) as seen:
        await env.fleet.node("node-a", online=False, reason="last_will", since=at(0))
        await env.engine.evaluate_now(at(1))
        await env.fleet.node("node-a", online=True, since=at(50))
        await env.engine.evaluate_now(at(51))
        await asyncio.sleep(0.05)

    incidents = [e.data for e in seen if e.kind == "incident"]
    assert [(v["type"], v["open"]) for v in incidents] == [("node_down", True), ("node_down", False)]
    assert incidents[1]["ended_at"] == at(50).isoformat()
    assert incidents[1]["duration_s"] == 50.0


async def test_notifications_are_queued_for_targets_whose_minimum_severity_is_met(database_url: str) -> None:
    config = make_config(
        database_url,
        notifications=NotificationSettings(
            webhooks=[
                WebhookTarget(name="all", url="http://127.0.0.1:9/a", min_severity="info"),
                WebhookTarget(name="serious", url="http://127.0.0.1:9/b", min_severity="error"),
            ],
            telegram=[TelegramTarget(name="duty", bot_token="1:x", chat_id="-1", min_severity="critical")],
        ),
    )
    db = Database(database_url)
    try:
        fleet = Fleet(db)
        engine = IncidentEngine(config, db, Bus())
        await fleet.node("node-a", since=at(-3600))
        await fleet.device("node-a", "cam-1", "camera", "offline", since=at(0))  # warning
        await fleet.siren("node-a", "siren-1", "idle", since=at(-3600))
        await fleet.alert(started=at(0))  # critical after 60 s
        await engine.evaluate_now(at(60))
        await fleet.device("node-a", "cam-1", "camera", "online", since=at(70))
        await engine.evaluate_now(at(71))

        rows = [(d.incident_id, d.channel, d.target, d.transition) for d in await fleet.deliveries()]
        by_type = {i.type: i.id for i in await fleet.incidents()}
    finally:
        await db.dispose()

    cam, siren = by_type["camera_fault"], by_type["siren_failure"]
    assert sorted(rows) == sorted(
        [
            (cam, "webhook", "all", "opened"),
            (siren, "webhook", "all", "opened"),
            (siren, "webhook", "serious", "opened"),
            (siren, "telegram", "duty", "opened"),
            (cam, "webhook", "all", "closed"),
        ]
    )


async def test_the_loop_evaluates_soon_after_a_bus_event_without_waiting_for_its_timer(database_url: str) -> None:
    config = make_config(database_url, incidents=IncidentSettings(evaluate_interval_s=60))
    db = Database(database_url)
    bus = Bus()
    engine = IncidentEngine(config, db, bus)
    fleet = Fleet(db)
    task = asyncio.create_task(engine.run())
    try:
        await eventually(lambda: _true(engine.evaluations >= 1), what="the first evaluation")
        await fleet.node("node-a", online=False, reason="last_will", since=utcnow())
        bus.publish("health", {"node_id": "node-a"})  # not a trigger
        await asyncio.sleep(0.3)
        assert await fleet.incidents() == []

        bus.touch("node")  # what ingest says when no dashboard streams (no payload built)

        await eventually(lambda: _has_incidents(fleet), timeout=5, what="node_down opened after the bus event")
        assert bus.subscribers == 0, "the engine watches the bus; it holds no stream of its own"
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await db.dispose()


async def test_the_loop_evaluates_on_its_timer_too(database_url: str) -> None:
    config = make_config(database_url, incidents=IncidentSettings(evaluate_interval_s=0.1))
    db = Database(database_url)
    engine = IncidentEngine(config, db, Bus())
    fleet = Fleet(db)
    task = asyncio.create_task(engine.run())
    try:
        await fleet.node("node-a", online=False, reason="stale", since=utcnow())  # nobody publishes anything

        await eventually(lambda: _has_incidents(fleet), timeout=5, what="node_down opened by the timer")
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await db.dispose()


async def test_the_loop_survives_a_failing_store_and_carries_on(sqlite_url: str) -> None:
    config = make_config(sqlite_url, incidents=IncidentSettings(evaluate_interval_s=0.05))
    db = Database(sqlite_url)
    engine = IncidentEngine(config, db, Bus())
    fleet = Fleet(db)
    await fleet.node("node-a", online=False, reason="last_will", since=utcnow())
    async with db.session() as s:
        await s.execute(text("ALTER TABLE incidents RENAME TO incidents_away"))
        await s.commit()
    task = asyncio.create_task(engine.run())
    try:
        await eventually(lambda: _true(engine.stats()["errors"] >= 2), what="failed evaluations counted")
        assert "incidents" in engine.stats()["last_error"]
        assert not task.done()
        async with db.session() as s:
            await s.execute(text("ALTER TABLE incidents_away RENAME TO incidents"))
            await s.commit()

        await eventually(lambda: _has_incidents(fleet), timeout=10, what="recovered and opened node_down")
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await db.dispose()


async def test_a_hanging_webhook_does_not_delay_the_engine(database_url: str) -> None:
    sink = HttpSink().start()
    sink.hang()
    config = make_config(
        database_url,
        incidents=IncidentSettings(evaluate_interval_s=0.05),
        notifications=NotificationSettings(
            webhooks=[WebhookTarget(name="slow", url=f"{sink.url}/hook", min_severity="info", timeout_s=30)]
        ),
    )
    db = Database(database_url)
    notifier = NotificationService(config, db, poll_interval_s=0.05)
    engine = IncidentEngine(config, db, Bus(), on_notifications=notifier.wake)
    fleet = Fleet(db)
    tasks = [asyncio.create_task(notifier.run()), asyncio.create_task(engine.run())]
    try:
        await fleet.node("node-a", online=False, reason="last_will", since=utcnow())
        await sink.wait_for(1)  # the first notification is now stuck in a request that never gets an answer

        await fleet.node("node-a", online=True, since=utcnow())
        await fleet.node("node-b", online=False, reason="stale", since=utcnow())

        async def engine_kept_going() -> bool:
            incidents = await fleet.incidents()
            return {(i.key, i.ended_at is None) for i in incidents} == {
                ("node_down:node-a", False),
                ("node_down:node-b", True),
            }

        await eventually(engine_kept_going, timeout=5, what="the engine closing and opening while the hook hangs")
        assert len(sink.requests) == 1  # still the one stuck request
        assert {d.status for d in await fleet.deliveries()} == {"pending"}
    finally:
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        sink.stop()
        await db.dispose()


async def _true(value: bool) -> bool:
    return value


async def _has_incidents(fleet: Fleet) -> bool:
    return bool(await fleet.incidents())


async def test_titles_and_end_reasons_are_written_in_the_default_language_ukrainian(database_url: str) -> None:
    config = make_config(database_url, default_language="uk")
    db = Database(database_url)
    try:
        fleet = Fleet(db)
        engine = IncidentEngine(config, db, Bus())
        await fleet.node("node-a", since=at(-60))
        await fleet.ups("node-a", "on_battery", since=at(0))
        await engine.evaluate_now(at(1))
        await fleet.ups("node-a", "on_line", since=at(30))
        await engine.evaluate_now(at(31))

        (incident,) = await fleet.incidents()
    finally:
        await db.dispose()

    assert incident.title == "Відключення живлення: Vyshneve village"
    assert incident.end_reason == "Живлення відновлено, вузли на зв'язку"
    assert incident.data["end_code"] == "power_back"  # the code behind the words, for pages in another language
