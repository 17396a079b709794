"""The notification sender: delivers queued :class:`NotificationDelivery` rows to webhooks and Telegram.

One worker per configured target, so a dead or hanging endpoint delays only its own rows (and never the incident
engine or ingest, which only insert rows). A worker claims its due rows (``status = pending``,
``next_attempt_at <= now``; PostgreSQL ``FOR UPDATE SKIP LOCKED``, so several central instances never send the
same row at once) by pushing their ``next_attempt_at`` past a lease in a short transaction, sends them with
httpx (a time limit per target), and records the outcome: ``sent``, or a retry after
``retry_base_s · 2^(attempts-1)`` (capped at ``retry_max_s``; a 429's ``Retry-After`` is honoured), or ``failed``
after ``max_attempts``. A central that dies mid-send re-sends after the lease: delivery is at least once (webhooks
get ``X-Varta-Delivery: <row id>`` to drop repeats). Bot tokens and webhook secrets are never logged: errors are
scrubbed of the token before they are stored or logged.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Final

import httpx
import orjson
import structlog
from sqlalchemy import func, select, text
from sqlalchemy.ext.asyncio import AsyncSession

from central.config import CentralConfig, TelegramTarget, WebhookTarget
from central.notify.messages import SIGNATURE_HEADER, signature, telegram_text, webhook_body
from central.store.db import Database
from central.store.incident_models import NotificationDelivery
from varta import __version__
from varta.aio import wait_event, wait_for
from varta.contract import utcnow

log = structlog.get_logger(__name__)

#: Rows one worker claims at a time.
CLAIM_BATCH: Final = 5
#: Extra seconds of a claim's lease beyond the sends' own time limits.
LEASE_MARGIN_S: Final = 30.0
#: How often an idle worker looks for due rows (besides being woken).
POLL_INTERVAL_S: Final = 1.0
ERROR_BACKOFF_MAX_S: Final = 30.0
_NUMERIC_CHAT = re.compile(r"^-?[0-9]+$")


@dataclass(frozen=True, slots=True)
class _Claimed:
    id: int
    incident_id: int
    transition: str
    payload: dict[str, Any]
    attempts: int


@dataclass(frozen=True, slots=True)
class Outcome:
    """The result of one send: ok, or an error reason (a counter key), its text and an optional retry delay."""

    ok: bool
    reason: str = ""
    error: str = ""
    retry_after_s: float | None = None


class SendError(Exception):
    """A send that failed, with a counter key."""

    def __init__(self, reason: str, error: str, retry_after_s: float | None = None) -> None:
        super().__init__(error)
        self.reason = reason
        self.error = error
        self.retry_after_s = retry_after_s


Target = WebhookTarget | TelegramTarget


def _channel(target: Target) -> str:
    return "webhook" if isinstance(target, WebhookTarget) else "telegram"


def _retry_after(response: httpx.Response) -> float | None:
    value = response.headers.get("retry-after", "")
    try:
        seconds = float(value)
    except ValueError:
        return None
    return seconds if 0 <= seconds <= 86_400 else None


class NotificationService:
    """Delivers queued notifications, one worker per configured target (see the module docstring)."""

    def __init__(
        self,
        config: CentralConfig,
        db: Database,
        *,
        clock: Callable[[], datetime] = utcnow,
        poll_interval_s: float = POLL_INTERVAL_S,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.config = config
        self.settings = config.notifications
        self.db = db
        self.clock = clock
        self.poll_interval_s = poll_interval_s
        self._transport = transport
        self.targets: list[Target] = [*self.settings.webhooks, *self.settings.telegram]
        self._wake = {(_channel(t), t.name): asyncio.Event() for t in self.targets}
        self.sent: Counter[str] = Counter()
        self.retried: Counter[str] = Counter()
        self.failed: Counter[str] = Counter()
        self.errors: Counter[str] = Counter()  # by "<target>:<reason>"
        self.abandoned = 0
        self._client: httpx.AsyncClient | None = None

    # ------------------------------------------------------------------------------------------ public

    def wake(self) -> None:
        """New rows are queued: every worker looks now."""
        for event in self._wake.values():
            event.set()

    def stats(self) -> dict[str, Any]:
        """Counters per target: sent, retried, failed; errors by target and reason; rows of unknown targets."""
        return {
            "targets": [f"{_channel(t)}:{t.name}" for t in self.targets],
            "sent": dict(self.sent),
            "retried": dict(self.retried),
            "failed": dict(self.failed),
            "errors": dict(self.errors),
            "abandoned": self.abandoned,
        }

    async def run(self) -> None:
        """Deliver until cancelled: one worker per target (each survives its own failures)."""
        async with self._http() as client:
            self._client = client
            try:
                await self.abandon_unknown_targets()
            except Exception:
                log.exception("notify.cleanup_failed")
            workers = [asyncio.create_task(self._worker(t), name=f"notify-{t.name}") for t in self.targets]
            try:
                if workers:
                    await asyncio.gather(*workers)
                else:
                    await asyncio.Event().wait()
            finally:
                for worker in workers:
                    worker.cancel()
                for worker in workers:
                    with contextlib.suppress(asyncio.CancelledError):
                        await worker
                self._client = None

    async def deliver_due(self, target: Target) -> int:
        """One pass for *target*: claim its due rows, send them, record the outcomes; returns how many."""
        if self._client is None:
            async with self._http() as client:
                self._client = client
                try:
                    return await self._pass(target)
                finally:
                    self._client = None
        return await self._pass(target)

    async def abandon_unknown_targets(self) -> int:
        """Pending rows for targets no longer configured become ``failed`` (they could never be sent)."""
        known = {(_channel(t), t.name) for t in self.targets}
        now = self.clock()
        count = 0
        async with self.db.session() as session:
            rows = await session.scalars(select(NotificationDelivery).where(NotificationDelivery.status == "pending"))
            for row in rows.all():
                if (row.channel, row.target) not in known:
                    row.status = "failed"
                    row.last_error = "target no longer configured"
                    row.next_attempt_at = now
                    count += 1
            await session.commit()
        if count:
            self.abandoned += count
            log.warning("notify.abandoned_unknown_targets", rows=count)
        return count

    # ------------------------------------------------------------------------------------------ worker

    def _http(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(
            transport=self._transport,
            trust_env=False,  # no proxy or netrc from the environment
            follow_redirects=False,
            headers={"user-agent": f"varta-central/{__version__}"},
        )

    async def _worker(self, target: Target) -> None:
        wake = self._wake[(_channel(target), target.name)]
        failures = 0
        while True:
            try:
                done = await self._pass(target)
                failures = 0
            except asyncio.CancelledError:
                raise
            except Exception:
                failures += 1
                self.errors[f"{target.name}:internal"] += 1
                delay = min(ERROR_BACKOFF_MAX_S, 2.0**failures)
                log.exception("notify.worker_failed", target=target.name, retry_in_s=delay)
                await asyncio.sleep(delay)
                continue
            if done == 0:
                await wait_event(wake, self.poll_interval_s)
                wake.clear()

    async def _pass(self, target: Target) -> int:
        claimed = await self._claim(target)
        for row in claimed:
            outcome = await self._send(target, row)
            await self._record(target, row, outcome)
        return len(claimed)

    async def _claim(self, target: Target) -> list[_Claimed]:
        now = self.clock()
        lease = timedelta(seconds=CLAIM_BATCH * (target.timeout_s + 5) + LEASE_MARGIN_S)
        async with self.db.session() as session:
            query = (
                select(NotificationDelivery)
                .where(
                    NotificationDelivery.status == "pending",
                    NotificationDelivery.channel == _channel(target),
                    NotificationDelivery.target == target.name,
                    NotificationDelivery.next_attempt_at <= now,
                )
                .order_by(NotificationDelivery.id)
                .limit(CLAIM_BATCH)
            )
            if self.db.dialect == "postgresql":
                query = query.with_for_update(skip_locked=True)
            else:  # SQLite: take the write lock before reading, so two senders cannot claim the same rows
                await session.execute(text("UPDATE notification_deliveries SET id = id WHERE id < 0"))
            rows = list((await session.scalars(query)).all())
            claimed = []
            for row in rows:
                row.next_attempt_at = now + lease
                claimed.append(_Claimed(row.id, row.incident_id, row.transition, dict(row.payload), row.attempts))
            await session.commit()
        return claimed

    async def _send(self, target: Target, row: _Claimed) -> Outcome:
        secret = ""
        try:
            if isinstance(target, WebhookTarget):
                await self._send_webhook(target, row)
            else:
                token: str | None = await asyncio.to_thread(target.read_token)
                secret = token or ""
                if not secret:
                    raise SendError("no_token", "no bot token configured")
                await self._send_telegram(target, row, secret)
        except SendError as exc:
            return Outcome(False, exc.reason, _scrub(exc.error, secret), exc.retry_after_s)
        except (httpx.TimeoutException, TimeoutError):
            return Outcome(False, "timeout", f"no answer within {target.timeout_s} s")
        except httpx.HTTPError as exc:
            return Outcome(False, "connect", _scrub(f"{type(exc).__name__}: {exc}", secret))
        except OSError as exc:
            return Outcome(False, "secret_unreadable", _scrub(f"{type(exc).__name__}: {exc.strerror}", secret))
        return Outcome(True)

    async def _post(self, target: Target, url: str, body: bytes, headers: dict[str, str]) -> httpx.Response:
        assert self._client is not None
        request = self._client.post(url, content=body, headers=headers, timeout=target.timeout_s)
        return await wait_for(request, target.timeout_s + 1.0)

    async def _send_webhook(self, target: WebhookTarget, row: _Claimed) -> None:
        body = webhook_body(row.payload, self.clock())
        headers = {
            "content-type": "application/json",
            "x-varta-event": str(row.payload.get("event", "")),
            "x-varta-delivery": str(row.id),
        }
        if target.secret_file is not None:
            key = await asyncio.to_thread(_read_secret, target.secret_file)
            headers[SIGNATURE_HEADER] = signature(key, body)
        response = await self._post(target, target.url, body, headers)
        if response.status_code // 100 != 2:
            reason = "http_429" if response.status_code == 429 else f"http_{response.status_code // 100}xx"
            raise SendError(reason, f"HTTP {response.status_code}", _retry_after(response))

    async def _send_telegram(self, target: TelegramTarget, row: _Claimed, token: str) -> None:
        message = telegram_text(row.payload, row.transition, target.language, self.config.sites)
        chat: int | str = int(target.chat_id) if _NUMERIC_CHAT.match(target.chat_id) else target.chat_id
        body = orjson.dumps({"chat_id": chat, "text": message, "disable_web_page_preview": True})
        url = f"{target.api_url.rstrip('/')}/bot{token}/sendMessage"
        response = await self._post(target, url, body, {"content-type": "application/json"})
        try:
            reply = orjson.loads(response.content)
        except orjson.JSONDecodeError:
            reply = None
        if not isinstance(reply, dict):
            raise SendError("bad_reply", f"HTTP {response.status_code}: not a Bot API reply")
        if response.status_code // 100 == 2 and reply.get("ok") is True:
            return
        params = reply.get("parameters")
        retry = params.get("retry_after") if isinstance(params, dict) else None
        description = str(reply.get("description") or "")[:200]
        reason = "http_429" if response.status_code == 429 else f"http_{response.status_code // 100}xx"
        raise SendError(
            reason,
            f"HTTP {response.status_code}: {description}",
            float(retry) if isinstance(retry, int | float) else _retry_after(response),
        )

    async def _record(self, target: Target, row: _Claimed, outcome: Outcome) -> None:
        now = self.clock()
        attempts = row.attempts + 1
        async with self.db.session() as session:
            record = await session.get(NotificationDelivery, row.id)
            if record is None:
                return
            record.attempts = attempts
            if outcome.ok:
                record.status = "sent"
                record.sent_at = now
                record.last_error = ""
                self.sent[target.name] += 1
                log.info("notify.sent", target=target.name, incident_id=row.incident_id, transition=row.transition)
            else:
                self.errors[f"{target.name}:{outcome.reason}"] += 1
                record.last_error = outcome.error[:500]
                if attempts >= self.settings.max_attempts:
                    record.status = "failed"
                    record.next_attempt_at = now
                    self.failed[target.name] += 1
                    log.error(
                        "notify.gave_up",
                        target=target.name,
                        incident_id=row.incident_id,
                        attempts=attempts,
                        error=record.last_error,
                    )
                else:
                    delay = min(self.settings.retry_base_s * 2 ** (attempts - 1), self.settings.retry_max_s)
                    if outcome.retry_after_s is not None:
                        delay = max(delay, min(outcome.retry_after_s, self.settings.retry_max_s))
                    record.next_attempt_at = now + timedelta(seconds=delay)
                    self.retried[target.name] += 1
                    log.warning(
                        "notify.retry",
                        target=target.name,
                        incident_id=row.incident_id,
                        attempts=attempts,
                        retry_in_s=round(delay, 3),
                        reason=outcome.reason,
                        error=record.last_error,
                    )
            await session.commit()


def _read_secret(path: Path) -> bytes:
    return path.read_bytes().strip()


def _scrub(message: str, secret: str) -> str:
    return message.replace(secret, "***") if secret else message


async def pending_count(session: AsyncSession) -> int:
    """How many notifications wait to be sent (for status pages)."""
    count = await session.scalar(
        select(func.count()).select_from(NotificationDelivery).where(NotificationDelivery.status == "pending")
    )
    return int(count or 0)


__all__ = ["NotificationService", "Outcome", "SendError", "pending_count"]
