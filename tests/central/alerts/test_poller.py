"""The alert service against a real HTTP feed and a real database: periods open, close, survive garbage."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import structlog
from sqlalchemy import select

from central.alerts.cap import alert_key
from central.alerts.poller import AlertService
from central.store.alert_models import AlertPeriod
from central.store.db import Database
from tests.central.alerts.conftest import (
    BUCHA,
    IRPIN,
    KYIV_OBLAST,
    LVIV_OBLAST,
    TOKEN,
    AlertEnv,
    alert_config,
    source,
)
from tests.support.alert_feed import ACTIVE_PATH, CAP_PATH, AlertFeedServer, Reply, api_alert, atom_feed, cap_alert


async def periods(env: AlertEnv) -> list[AlertPeriod]:
    async with env.db.session() as session:
        return list(await session.scalars(select(AlertPeriod).order_by(AlertPeriod.id)))


async def open_periods(env: AlertEnv) -> list[AlertPeriod]:
    return [p for p in await periods(env) if p.ended_at is None]


# --------------------------------------------------------------------------------------------------- open / close


async def test_an_alert_that_starts_opens_a_period_and_announces_it(
    any_alert_env: AlertEnv, feed: AlertFeedServer
) -> None:
    service = any_alert_env.service(source(feed))
    started = any_alert_env.clock.now - timedelta(minutes=2)
    feed.set_active(
        [api_alert(101, BUCHA, title="Бучанська громада", location_type="hromada", oblast_uid=14, started_at=started)]
    )
    await service.poll_once("aiu")

    [period] = await periods(any_alert_env)
    assert (period.source, period.source_id, period.region_uid) == ("aiu", "101", BUCHA)
    assert (period.region_name, period.region_type, period.oblast_uid) == ("Бучанська громада", "hromada", "14")
    assert period.alert_type == "air_raid"
    assert period.started_at == started.replace(microsecond=0)
    assert period.ended_at is None
    [event] = any_alert_env.bus.alerts("opened")
    assert event["period"]["region_uid"] == BUCHA
    assert event["sites"] == ["bucha-school"]
    assert service.stats().sources[0].active == 1


async def test_an_alert_that_leaves_the_list_is_closed_at_the_poll_time(
    any_alert_env: AlertEnv, feed: AlertFeedServer
) -> None:
    service = any_alert_env.service(source(feed))
    feed.set_active([api_alert(101, BUCHA, started_at=any_alert_env.clock.now)])
    await service.poll_once("aiu")
    closed_at = any_alert_env.clock.advance(600)
    feed.set_active([])
    await service.poll_once("aiu")

    [period] = await periods(any_alert_env)
    assert period.ended_at == closed_at
    assert [e["period"]["source_id"] for e in any_alert_env.bus.alerts("closed")] == ["101"]


async def test_an_alert_listed_with_finished_at_is_closed_at_that_time(
    alert_env: AlertEnv, feed: AlertFeedServer
) -> None:
    service = alert_env.service(source(feed))
    start = alert_env.clock.now - timedelta(minutes=30)
    feed.set_active([api_alert(5, KYIV_OBLAST, location_type="oblast", started_at=start)])
    await service.poll_once("aiu")
    finished = alert_env.clock.now - timedelta(minutes=1)
    feed.set_active([api_alert(5, KYIV_OBLAST, location_type="oblast", started_at=start, finished_at=finished)])
    alert_env.clock.advance(60)
    await service.poll_once("aiu")

    [period] = await periods(alert_env)
    assert period.ended_at == finished.replace(microsecond=0)


async def test_polling_the_same_document_again_changes_nothing(alert_env: AlertEnv, feed: AlertFeedServer) -> None:
    service = alert_env.service(source(feed))
    feed.set_active([api_alert(1, BUCHA, started_at=alert_env.clock.now), api_alert(2, IRPIN)])
    for _ in range(3):
        await service.poll_once("aiu")
        alert_env.clock.advance(20)
    assert len(await open_periods(alert_env)) == 2
    assert len(alert_env.bus.alerts("opened")) == 2
    assert alert_env.bus.alerts("closed") == []


async def test_an_alert_back_in_the_list_reopens_its_period(any_alert_env: AlertEnv, feed: AlertFeedServer) -> None:
    service = any_alert_env.service(source(feed))
    entry = api_alert(1, BUCHA, started_at=any_alert_env.clock.now)
    feed.set_active([entry])
    await service.poll_once("aiu")
    feed.set_active([])
    await service.poll_once("aiu")
    feed.set_active([entry])
    await service.poll_once("aiu")

    [period] = await periods(any_alert_env)
    assert period.ended_at is None
    assert len(any_alert_env.bus.alerts("reopened")) == 1


# --------------------------------------------------------------------------------------------------- HTTP manners


async def test_the_token_is_sent_as_a_bearer_and_if_modified_since_follows_last_modified(
    alert_env: AlertEnv, feed: AlertFeedServer
) -> None:
    service = alert_env.service(source(feed))
    feed.set_active([api_alert(1, BUCHA, started_at=alert_env.clock.now)])
    await service.poll_once("aiu")
    await service.poll_once("aiu")

    first, second = feed.requests_to(ACTIVE_PATH)
    assert first.header("authorization") == f"Bearer {TOKEN}"
    assert first.header("if-modified-since") is None
    assert second.header("if-modified-since") is not None
    status = service.stats().sources[0]
    assert (status.documents, status.not_modified) == (1, 1)
    assert len(await open_periods(alert_env)) == 1  # a 304 keeps the state
    assert status.last_ok_at == alert_env.clock.now


async def test_a_change_after_a_304_is_fetched_in_full(alert_env: AlertEnv, feed: AlertFeedServer) -> None:
    service = alert_env.service(source(feed))
    feed.set_active([api_alert(1, BUCHA, started_at=alert_env.clock.now)])
    await service.poll_once("aiu")
    await service.poll_once("aiu")
    feed.set_active([api_alert(2, IRPIN, started_at=alert_env.clock.now)])
    await service.poll_once("aiu")
    assert [p.region_uid for p in await open_periods(alert_env)] == [IRPIN]


async def test_a_wrong_token_is_counted_as_unauthorized_and_changes_nothing(
    alert_env: AlertEnv, feed: AlertFeedServer, tmp_path: Path
) -> None:
    token_file = tmp_path / "token"
    token_file.write_text("wrong-token\n")
    service = alert_env.service(source(feed, token=None, token_file=token_file))
    feed.set_active([api_alert(1, BUCHA)])
    await service.poll_once("aiu")
    assert feed.requests_to(ACTIVE_PATH)[0].header("authorization") == "Bearer wrong-token"
    status = service.stats().sources[0]
    assert status.errors == {"unauthorized": 1}
    assert await periods(alert_env) == []

    token_file.write_text(TOKEN)  # the token file is read on every poll: a new token needs no restart
    await service.poll_once("aiu")
    assert len(await open_periods(alert_env)) == 1


async def test_no_token_means_no_request(alert_env: AlertEnv, feed: AlertFeedServer) -> None:
    service = alert_env.service(source(feed, token=None))
    await service.poll_once("aiu")
    assert feed.requests_to(ACTIVE_PATH) == []
    assert service.stats().sources[0].errors == {"no_token": 1}


async def test_429_waits_for_retry_after(alert_env: AlertEnv, feed: AlertFeedServer) -> None:
    service = alert_env.service(source(feed, poll_interval_s=2))
    feed.queue(Reply(429, b'{"message": "Too many requests"}', {"Retry-After": "45"}))
    delay = await service.poll_once("aiu")
    assert delay == 45.0
    assert service.stats().sources[0].errors == {"rate_limited": 1}
    feed.queue(Reply(429, b"{}"))
    assert await service.poll_once("aiu") >= 4.0  # no Retry-After: backed off beyond the interval


async def test_consecutive_failures_back_off_and_success_resets_the_interval(
    alert_env: AlertEnv, feed: AlertFeedServer
) -> None:
    service = alert_env.service(source(feed, poll_interval_s=10))
    feed.override(Reply(500, b"oops"))
    delays = [await service.poll_once("aiu") for _ in range(7)]
    assert delays == [10.0, 20.0, 40.0, 80.0, 160.0, 300.0, 300.0]
    feed.override(None)
    assert await service.poll_once("aiu") == 10.0
    assert service.stats().sources[0].consecutive_errors == 0


async def test_the_loop_never_polls_faster_than_the_interval(feed: AlertFeedServer, alert_env: AlertEnv) -> None:
    service = alert_env.service(source(feed, poll_interval_s=1))
    feed.set_active([])
    task = asyncio.create_task(service.run())
    try:
        await asyncio.to_thread(feed.wait_for_requests, 3, ACTIVE_PATH, 15.0)
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    times = [r.at for r in feed.requests_to(ACTIVE_PATH)]
    gaps = [b - a for a, b in itertools.pairwise(times)]
    assert all(gap >= 0.95 for gap in gaps), gaps


async def test_by_default_a_source_is_polled_at_most_eight_times_a_minute(
    alert_env: AlertEnv, feed: AlertFeedServer
) -> None:
    config = alert_config(alert_env.database_url, [source(feed, poll_interval_s=1)])
    service = AlertService(config, alert_env.db, alert_env.bus)
    try:
        feed.set_active([])
        assert await service.poll_once("aiu") == 7.5
        assert service.stats().sources[0].poll_interval_s == 7.5
    finally:
        await service.aclose()


# --------------------------------------------------------------------------------------------------- garbage


async def test_a_failing_feed_keeps_periods_open_and_counts_each_reason(
    alert_env: AlertEnv, feed: AlertFeedServer
) -> None:
    service = alert_env.service(source(feed, timeout_s=0.5))
    feed.set_active([api_alert(1, BUCHA, started_at=alert_env.clock.now)])
    await service.poll_once("aiu")
    feed.queue(
        Reply(500, b"Internal Server Error", content_type="text/plain"),
        Reply(200, b"<html><body>Cloudflare error</body></html>", content_type="text/html"),
        Reply(200, b'{"alerts": '),
        Reply(200, b'{"alerts": "none"}'),
        Reply(200, b'{"alerts": []}', delay_s=1.5),
        Reply(200, b"[" + b" " * (3 * 1024 * 1024) + b"]"),
        Reply(404, b"{}"),
    )
    for _ in range(7):
        alert_env.clock.advance(30)
        await service.poll_once("aiu")

    assert len(await open_periods(alert_env)) == 1  # an unreadable feed does not end alerts
    assert alert_env.bus.alerts("closed") == []
    errors = service.stats().sources[0].errors
    assert errors == {
        "http_5xx": 1,
        "not_json": 1,
        "bad_json": 1,
        "bad_shape": 1,
        "timeout": 1,
        "too_large": 1,
        "http_status": 1,
    }


async def test_an_unreadable_entry_keeps_its_period_open(alert_env: AlertEnv, feed: AlertFeedServer) -> None:
    service = alert_env.service(source(feed))
    feed.set_active([api_alert(1, BUCHA, started_at=alert_env.clock.now), api_alert(2, IRPIN)])
    await service.poll_once("aiu")
    broken = api_alert(2, IRPIN)
    broken["started_at"] = "garbage"
    feed.set_active([api_alert(1, BUCHA, started_at=alert_env.clock.now), broken])
    await service.poll_once("aiu")

    assert sorted(p.region_uid for p in await open_periods(alert_env)) == sorted([BUCHA, IRPIN])
    assert service.stats().sources[0].skipped == {"bad_alert": 1}


async def test_an_unreachable_feed_is_counted_and_goes_stale(alert_env: AlertEnv, feed: AlertFeedServer) -> None:
    service = alert_env.service(source(feed), stale_after_s=60)
    feed.set_active([])
    await service.poll_once("aiu")
    feed.stop()
    alert_env.clock.advance(30)
    await service.poll_once("aiu")
    assert service.stats().sources[0].stale is False
    alert_env.clock.advance(60)
    await service.poll_once("aiu")

    status = service.stats().sources[0]
    assert status.errors == {"connect": 2}
    assert status.stale is True
    [event] = alert_env.bus.alerts("source")
    assert event["source"]["name"] == "aiu" and event["source"]["stale"] is True
    assert [s.name for s in service.stale_sources()] == ["aiu"]

    feed.start()
    await service.poll_once("aiu")
    assert service.stats().sources[0].stale is False
    assert [e["source"]["stale"] for e in alert_env.bus.alerts("source")] == [True, False]


# --------------------------------------------------------------------------------------------------- restarts


async def test_a_restarted_service_reconciles_with_what_is_stored(
    any_alert_env: AlertEnv, feed: AlertFeedServer
) -> None:
    first = any_alert_env.service(source(feed))
    feed.set_active([api_alert(1, BUCHA, started_at=any_alert_env.clock.now), api_alert(2, IRPIN)])
    await first.poll_once("aiu")
    await first.aclose()

    # While central was down, alert 1 ended and alert 3 began.
    feed.set_active([api_alert(2, IRPIN), api_alert(3, KYIV_OBLAST, location_type="oblast")])
    restarted_at = any_alert_env.clock.advance(900)
    second = any_alert_env.service(source(feed))
    await second.poll_once("aiu")

    by_id = {p.source_id: p for p in await periods(any_alert_env)}
    assert set(by_id) == {"1", "2", "3"}
    assert by_id["1"].ended_at == restarted_at
    assert by_id["2"].ended_at is None and by_id["3"].ended_at is None


async def test_periods_of_a_source_no_longer_configured_are_closed_at_start(
    any_alert_env: AlertEnv, feed: AlertFeedServer
) -> None:
    old = any_alert_env.service(source(feed, name="old"))
    feed.set_active([api_alert(1, BUCHA, started_at=any_alert_env.clock.now)])
    await old.poll_once("old")
    current = any_alert_env.service(source(feed, name="new"))
    feed.set_active([])
    now = any_alert_env.clock.advance(60)
    closed = await current.close_orphans()
    assert [p.source for p in closed] == ["old"]
    [period] = await periods(any_alert_env)
    assert period.ended_at == now


async def test_two_instances_polling_at_once_store_each_alert_once(
    any_alert_env: AlertEnv, feed: AlertFeedServer
) -> None:
    env = any_alert_env
    a = env.service(source(feed))
    other_db = Database(env.database_url)  # a second central: its own connections
    b = AlertService(alert_config(env.database_url, [source(feed)]), other_db, env.bus, min_interval_s=0.0)
    try:
        feed.set_active([api_alert(n, str(n)) for n in range(1, 30)])
        for _ in range(3):
            await asyncio.gather(a.poll_once("aiu"), b.poll_once("aiu"))
        feed.set_active([])
        await asyncio.gather(a.poll_once("aiu"), b.poll_once("aiu"))
    finally:
        await b.aclose()
        await other_db.dispose()
    rows = await periods(env)
    assert len(rows) == 29
    assert all(r.ended_at is not None for r in rows)
    opened = a.stats().sources[0].opened + b.stats().sources[0].opened
    assert opened == 29  # each period was announced by exactly one instance


# --------------------------------------------------------------------------------------------------- CAP


async def test_a_cap_alert_opens_and_its_cancel_closes_it(any_alert_env: AlertEnv, feed: AlertFeedServer) -> None:
    service = any_alert_env.service(source(feed, name="dsns", kind="cap"))
    sent = any_alert_env.clock.now - timedelta(minutes=3)
    original = cap_alert("A-1", sent=sent, areas=[("Київська область", [("UA", KYIV_OBLAST)])])
    feed.set_cap(atom_feed([original]))
    await service.poll_once("dsns")
    [period] = await open_periods(any_alert_env)
    assert period.source_id == f"{alert_key('dsns@example.gov.ua', 'A-1')}#{KYIV_OBLAST}"
    assert period.started_at == sent.replace(microsecond=0)

    cancelled_at = any_alert_env.clock.now - timedelta(seconds=20)
    cancel = cap_alert(
        "A-1-c", sent=cancelled_at, msg_type="Cancel", references=[("dsns@example.gov.ua", "A-1", sent)], areas=[]
    )
    feed.set_cap(atom_feed([original, cancel]))
    await service.poll_once("dsns")
    [period] = await periods(any_alert_env)
    assert period.ended_at == cancelled_at.replace(microsecond=0)
    assert feed.requests_to(CAP_PATH)[1].header("if-none-match") is not None


async def test_a_cap_alert_past_its_expiry_is_closed_at_expires_even_without_a_new_document(
    alert_env: AlertEnv, feed: AlertFeedServer
) -> None:
    service = alert_env.service(source(feed, name="dsns", kind="cap"))
    expires = alert_env.clock.now + timedelta(minutes=10)
    feed.set_cap(cap_alert("X", sent=alert_env.clock.now, expires=expires, areas=[("Lviv", [("UA", LVIV_OBLAST)])]))
    await service.poll_once("dsns")
    assert len(await open_periods(alert_env)) == 1
    alert_env.clock.advance(11 * 60)
    await service.poll_once("dsns")  # 304: the same document, but now past its expiry
    assert service.stats().sources[0].not_modified == 1
    [period] = await periods(alert_env)
    assert period.ended_at == expires.replace(microsecond=0)


async def test_a_cap_document_with_a_doctype_is_refused_and_changes_nothing(
    alert_env: AlertEnv, feed: AlertFeedServer
) -> None:
    service = alert_env.service(source(feed, name="dsns", kind="cap"))
    feed.set_cap(cap_alert("A", areas=[("Lviv", [("UA", LVIV_OBLAST)])]))
    await service.poll_once("dsns")
    feed.set_cap('<?xml version="1.0"?><!DOCTYPE a [<!ENTITY e SYSTEM "file:///etc/passwd">]><a>&e;</a>')
    await service.poll_once("dsns")
    assert len(await open_periods(alert_env)) == 1
    assert service.stats().sources[0].errors == {"doctype": 1}


async def test_the_service_runs_every_source_and_stops_cleanly(alert_env: AlertEnv, feed: AlertFeedServer) -> None:
    service = alert_env.service(source(feed), source(feed, name="dsns", kind="cap"))
    feed.set_active([api_alert(1, BUCHA)])
    feed.set_cap(cap_alert("A", areas=[("Lviv", [("UA", LVIV_OBLAST)])]))
    task = asyncio.create_task(service.run())
    deadline = time.monotonic() + 15
    while len(await open_periods(alert_env)) < 2 and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    assert service.stats().polling is True
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    assert sorted(p.source for p in await open_periods(alert_env)) == ["aiu", "dsns"]
    assert service.stats().polling is False


async def test_a_database_failure_is_counted_and_the_document_applied_once_it_is_back(
    alert_env: AlertEnv, feed: AlertFeedServer, tmp_path: Path
) -> None:
    broken = Database(f"sqlite+aiosqlite:///{tmp_path}/missing-dir/central.db")
    config = alert_config(alert_env.database_url, [source(feed)])
    service = AlertService(config, broken, alert_env.bus, min_interval_s=0.0, clock=alert_env.clock)
    try:
        feed.set_active([api_alert(1, BUCHA, started_at=alert_env.clock.now)])
        await service.poll_once("aiu")
        status = service.stats().sources[0]
        assert status.errors == {"db_error": 1}
        assert status.last_ok_at is None
        service.pollers["aiu"].db = alert_env.db  # the database is back
        await service.poll_once("aiu")  # 304 from the feed: the document read before is applied now
    finally:
        await service.aclose()
        await broken.dispose()
    assert service.stats().sources[0].not_modified == 1
    assert [p.region_uid for p in await open_periods(alert_env)] == [BUCHA]


# --------------------------------------------------------------------------------------------------- known until


async def test_the_alert_state_is_known_until_the_oldest_successful_poll_of_every_source(
    alert_env: AlertEnv, feed: AlertFeedServer
) -> None:
    assert alert_env.service().known_until() is None, "no source: nothing to wait for"
    service = alert_env.service(source(feed, "one"), source(feed, "two"))
    assert service.known_until() == datetime.min.replace(tzinfo=UTC), "never read: nothing is confirmed yet"

    await service.poll_once("one")
    assert service.known_until() == datetime.min.replace(tzinfo=UTC)
    first = alert_env.clock.now
    await service.poll_once("two")
    assert service.known_until() == first

    alert_env.clock.now += timedelta(seconds=30)
    feed.override(Reply(500, b"oops"))
    await service.poll_once("one")
    assert service.known_until() == first, "a failed poll confirms nothing"


async def test_a_poll_interval_faster_than_the_feed_allows_is_raised_and_said(
    alert_env: AlertEnv, feed: AlertFeedServer
) -> None:
    config = alert_config(alert_env.database_url, [source(feed, poll_interval_s=2.0)])
    with structlog.testing.capture_logs() as logs:
        service = AlertService(config, alert_env.db, alert_env.bus, clock=alert_env.clock)
    assert service.pollers["aiu"].interval_s == 7.5
    [raised] = [e for e in logs if e["event"] == "alerts.poll_interval_raised"]
    assert (raised["configured_s"], raised["used_s"], raised["log_level"]) == (2.0, 7.5, "warning")
