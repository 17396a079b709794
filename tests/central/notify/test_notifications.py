"""Outbound notifications over real HTTP (a loopback sink): webhooks signed with HMAC, Telegram Bot API messages,
retries with exponential back-off, giving up, and a dead endpoint delaying only its own rows."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import structlog
from sqlalchemy import select

from central.config import CentralConfig, NotificationSettings, TelegramTarget, WebhookTarget
from central.incidents.queries import incident_view
from central.notify.queue import Transition, queue_notifications
from central.notify.service import NotificationService
from central.store.db import Database
from central.store.incident_models import Incident, NotificationDelivery
from tests.central.incidents.support import SITES
from tests.support.http_sink import TELEGRAM_OK, HttpSink
from tests.support.ports import free_port

T0 = datetime(2025, 11, 23, 12, 5, 0, tzinfo=UTC)  # 14:05 in Kyiv; in the past: due at once
TOKEN = "987654:SECRET-bot-token-value"


class Clock:
    """A clock the test moves."""

    def __init__(self, now: datetime = T0) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


@pytest.fixture
def sink() -> Iterator[HttpSink]:
    server = HttpSink(reply=TELEGRAM_OK).start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
async def db(database_url: str) -> AsyncIterator[Database]:
    database = Database(database_url)
    try:
        yield database
    finally:
        await database.dispose()


def config_for(db: Database, **notifications: Any) -> CentralConfig:
    return CentralConfig(
        database_url=db.url, sites=SITES, notifications=NotificationSettings(**notifications), default_language="uk"
    )


async def incident(db: Database, config: CentralConfig, transition: Transition = "opened", **values: Any) -> int:
    """An incident row and the notifications its change queues; returns the incident id."""
    data: dict[str, Any] = {
        "key": "power_outage:vyshneve",
        "type": "power_outage",
        "severity": "error",
        "site": "vyshneve",
        "devices": ["node-a/", "node-a/cam-1", "node-a/cam-2"],
        "title": "Відключення живлення: Vyshneve village",
        "detail": "",
        "data": {"site_name": "Vyshneve village"},
        "started_at": T0,
        "notes": [],
        "updated_at": T0,
    }
    data.update(values)
    async with db.session() as s:
        row = Incident(**data)
        s.add(row)
        await s.flush()
        queue_notifications(s, config.notifications, incident_view(row), transition, T0)
        await s.commit()
        return row.id


async def deliveries(db: Database) -> list[NotificationDelivery]:
    async with db.session() as s:
        return list((await s.scalars(select(NotificationDelivery).order_by(NotificationDelivery.id))).all())


async def test_a_webhook_receives_the_incident_signed_with_hmac(db: Database, sink: HttpSink, tmp_path: Path) -> None:
    secret = tmp_path / "hook.key"
    secret.write_text("s3cr3t-hmac-key\n")
    config = config_for(db, webhooks=[WebhookTarget(name="ops", url=f"{sink.url}/varta", secret_file=secret)])
    incident_id = await incident(db, config)
    service = NotificationService(config, db, clock=Clock())

    sent = await service.deliver_due(config.notifications.webhooks[0])

    assert sent == 1
    (request,) = sink.requests
    assert (request.method, request.path) == ("POST", "/varta")
    assert request.headers["content-type"] == "application/json"
    expected = "sha256=" + hmac.new(b"s3cr3t-hmac-key", request.body, hashlib.sha256).hexdigest()
    assert request.headers["x-varta-signature"] == expected
    assert request.headers["x-varta-event"] == "incident.opened"
    body = request.json()
    assert body["event"] == "incident.opened"
    assert body["sent_at"] == T0.isoformat()
    assert body["incident"]["id"] == incident_id
    assert body["incident"]["type"] == "power_outage"
    assert body["incident"]["devices"] == ["node-a/", "node-a/cam-1", "node-a/cam-2"]
    (row,) = await deliveries(db)
    assert (row.status, row.attempts, row.sent_at, row.last_error) == ("sent", 1, T0, "")
    assert request.headers["x-varta-delivery"] == str(row.id)
    assert service.stats()["sent"] == {"ops": 1}


async def test_an_unsigned_webhook_has_no_signature_header(db: Database, sink: HttpSink) -> None:
    config = config_for(db, webhooks=[WebhookTarget(name="ops", url=f"{sink.url}/varta")])
    await incident(db, config)

    await NotificationService(config, db).deliver_due(config.notifications.webhooks[0])

    assert "x-varta-signature" not in sink.requests[0].headers


async def test_telegram_gets_a_short_ukrainian_message_from_the_bot_api(db: Database, sink: HttpSink) -> None:
    target = TelegramTarget(name="duty", api_url=sink.url, bot_token=TOKEN, chat_id="-100123", min_severity="error")
    config = config_for(db, telegram=[target])
    await incident(db, config, "acknowledged", acknowledged_by="olena", acknowledged_at=T0)

    await NotificationService(config, db, clock=Clock()).deliver_due(target)

    (request,) = sink.requests
    assert request.path == f"/bot{TOKEN}/sendMessage"
    body = request.json()
    assert body["chat_id"] == -100123
    assert body["disable_web_page_preview"] is True
    assert body["text"].splitlines() == [
        "👁 Інцидент підтверджено: Відключення живлення",
        "Об'єкт: Vyshneve village",
        "Пристроїв: 3",
        "Початок: 23.11.2025 14:05 (Київ)",
        "Підтвердив: olena",
    ]


async def test_telegram_in_english_when_the_target_says_so(db: Database, sink: HttpSink) -> None:
    target = TelegramTarget(name="duty", api_url=sink.url, bot_token=TOKEN, chat_id="@varta_duty", language="en")
    config = config_for(db, telegram=[target])
    await incident(
        db,
        config,
        "closed",
        type="camera_fault",
        severity="error",
        ended_at=T0 + timedelta(minutes=30),
        end_reason="Пристрій знову працює",  # stored in central's language (uk); the message speaks the target's
        data={"site_name": "Vyshneve village", "device_name": "Fountain", "end_code": "device_back", "end_values": {}},
    )

    await NotificationService(config, db).deliver_due(target)

    body = sink.requests[0].json()
    assert body["chat_id"] == "@varta_duty"
    assert body["text"].splitlines() == [
        "✅ Incident closed: Camera fault",
        "Site: Vyshneve village",
        "Device: Fountain",
        "Devices: 3",
        "Started: 23.11.2025 14:05 (Kyiv)",
        "Ended: 23.11.2025 14:35 — The device works again",
    ]


async def test_failures_are_retried_with_exponential_back_off_then_delivered(db: Database, sink: HttpSink) -> None:
    config = config_for(
        db, webhooks=[WebhookTarget(name="ops", url=f"{sink.url}/h")], retry_base_s=10, retry_max_s=25, max_attempts=5
    )
    target = config.notifications.webhooks[0]
    await incident(db, config)
    clock = Clock()
    service = NotificationService(config, db, clock=clock)
    sink.fail(3, status=503)

    due_times = []
    for _ in range(3):
        await service.deliver_due(target)
        (row,) = await deliveries(db)
        due_times.append((row.next_attempt_at - clock.now).total_seconds())
        assert await service.deliver_due(target) == 0  # not due yet: nothing is sent
        clock.now = row.next_attempt_at
    await service.deliver_due(target)

    assert due_times == [10.0, 20.0, 25.0]  # 10·2^n, capped at retry_max_s
    assert [r.status for r in sink.requests] == [503, 503, 503, 200]
    (row,) = await deliveries(db)
    assert (row.status, row.attempts) == ("sent", 4)
    assert service.stats()["retried"] == {"ops": 3}
    assert service.stats()["errors"] == {"ops:http_5xx": 3}


async def test_after_max_attempts_a_notification_is_given_up_and_logged(db: Database, sink: HttpSink) -> None:
    config = config_for(db, webhooks=[WebhookTarget(name="ops", url=f"{sink.url}/h")], retry_base_s=1, max_attempts=3)
    target = config.notifications.webhooks[0]
    await incident(db, config)
    clock = Clock()
    service = NotificationService(config, db, clock=clock)
    sink.fail(100, status=500)

    with structlog.testing.capture_logs() as logs:
        for _ in range(5):
            await service.deliver_due(target)
            clock.advance(3600)

    assert len(sink.requests) == 3
    (row,) = await deliveries(db)
    assert (row.status, row.attempts, row.last_error) == ("failed", 3, "HTTP 500")
    assert service.stats()["failed"] == {"ops": 1}
    assert [e["event"] for e in logs if e["log_level"] == "error"] == ["notify.gave_up"]


async def test_a_429_retry_after_is_honoured(db: Database, sink: HttpSink) -> None:
    target = TelegramTarget(name="duty", api_url=sink.url, bot_token=TOKEN, chat_id="-1")
    config = config_for(db, telegram=[target], retry_base_s=1)
    await incident(db, config)
    clock = Clock()
    sink.fail_reply = {"ok": False, "error_code": 429, "parameters": {"retry_after": 42}}
    sink.fail(1, status=429)

    await NotificationService(config, db, clock=clock).deliver_due(target)

    (row,) = await deliveries(db)
    assert row.next_attempt_at == T0 + timedelta(seconds=42)
    assert row.status == "pending"


async def test_the_bot_token_never_reaches_logs_or_stored_errors(db: Database, sink: HttpSink) -> None:
    dead = free_port()
    targets = [
        TelegramTarget(name="echo", api_url=sink.url, bot_token=TOKEN, chat_id="-1"),
        TelegramTarget(name="dead", api_url=f"http://127.0.0.1:{dead}", bot_token=TOKEN, chat_id="-1"),
    ]
    config = config_for(db, telegram=targets)
    await incident(db, config)
    sink.fail_reply = {"ok": False, "description": f"Unauthorized: bot{TOKEN} is not valid"}
    sink.fail(1, status=401)
    service = NotificationService(config, db)

    with structlog.testing.capture_logs() as logs:
        for target in targets:
            await service.deliver_due(target)

    rows = await deliveries(db)
    assert [r.status for r in rows] == ["pending", "pending"]
    assert "Unauthorized" in rows[0].last_error and "***" in rows[0].last_error
    assert rows[1].last_error  # connection refused, said without the URL's token
    for text in [r.last_error for r in rows] + [repr(e) for e in logs]:
        assert TOKEN not in text
    assert service.stats()["errors"] == {"echo:http_4xx": 1, "dead:connect": 1}


async def test_a_reply_that_is_not_the_bot_api_is_counted_as_bad(db: Database, sink: HttpSink) -> None:
    target = TelegramTarget(name="duty", api_url=sink.url, bot_token=TOKEN, chat_id="-1")
    config = config_for(db, telegram=[target])
    await incident(db, config)
    sink.reply = ["not", "a", "bot", "reply"]

    service = NotificationService(config, db)
    await service.deliver_due(target)

    (row,) = await deliveries(db)
    assert row.status == "pending"
    assert service.stats()["errors"] == {"duty:bad_reply": 1}


async def test_a_missing_bot_token_file_is_a_counted_error(db: Database, sink: HttpSink, tmp_path: Path) -> None:
    target = TelegramTarget(name="duty", api_url=sink.url, bot_token_file=tmp_path / "absent", chat_id="-1")
    config = config_for(db, telegram=[target])
    await incident(db, config)

    service = NotificationService(config, db)
    await service.deliver_due(target)

    assert sink.requests == []
    assert service.stats()["errors"] == {"duty:secret_unreadable": 1}


async def test_a_dead_endpoint_delays_only_its_own_rows(db: Database, sink: HttpSink) -> None:
    hanging = HttpSink().start()
    hanging.hang()
    config = config_for(
        db,
        webhooks=[
            WebhookTarget(name="stuck", url=f"{hanging.url}/h", timeout_s=30),
            WebhookTarget(name="gone", url=f"http://127.0.0.1:{free_port()}/h"),
            WebhookTarget(name="fine", url=f"{sink.url}/h"),
        ],
    )
    service = NotificationService(config, db, poll_interval_s=0.05)
    task = asyncio.create_task(service.run())
    try:
        for n in range(3):
            await incident(db, config, key=f"node_down:node-{n}", type="node_down")
        service.wake()

        received = await sink.wait_for(3, timeout=10)

        assert sorted(r.json()["incident"]["key"] for r in received) == [f"node_down:node-{n}" for n in range(3)]
        assert len(hanging.requests) == 1  # its first row is stuck; the others wait behind it

        async def statuses() -> dict[str, list[str]]:
            by_target: dict[str, list[str]] = {}
            for row in await deliveries(db):
                by_target.setdefault(row.target, []).append(row.status)
            return by_target

        deadline = asyncio.get_running_loop().time() + 5
        while (await statuses())["fine"] != ["sent"] * 3 and asyncio.get_running_loop().time() < deadline:
            await asyncio.sleep(0.02)
        by_target = await statuses()
        assert by_target["fine"] == ["sent"] * 3
        assert by_target["stuck"] == ["pending"] * 3
        assert by_target["gone"] == ["pending"] * 3
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        hanging.stop()


async def test_two_senders_deliver_each_row_once(db: Database, sink: HttpSink) -> None:
    config = config_for(db, webhooks=[WebhookTarget(name="ops", url=f"{sink.url}/h")])
    for n in range(12):
        await incident(db, config, key=f"node_down:node-{n}", type="node_down")
    other_db = Database(db.url)
    services = [
        NotificationService(config, db, poll_interval_s=0.05),
        NotificationService(config, other_db, poll_interval_s=0.05),
    ]
    tasks = [asyncio.create_task(s.run()) for s in services]
    try:
        await sink.wait_for(12, timeout=15)
        await asyncio.sleep(0.3)  # a duplicate would arrive now
    finally:
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await other_db.dispose()

    ids = [r.headers["x-varta-delivery"] for r in sink.requests]
    assert len(ids) == 12 == len(set(ids))
    assert {r.status for r in await deliveries(db)} == {"sent"}


async def test_rows_for_a_target_no_longer_configured_are_given_up(db: Database, sink: HttpSink) -> None:
    old = config_for(db, webhooks=[WebhookTarget(name="retired", url=f"{sink.url}/h")])
    await incident(db, old)
    new = config_for(db, webhooks=[WebhookTarget(name="current", url=f"{sink.url}/h")])

    abandoned = await NotificationService(new, db).abandon_unknown_targets()

    assert abandoned == 1
    (row,) = await deliveries(db)
    assert (row.status, row.last_error) == ("failed", "target no longer configured")
