"""The alert service: one supervised polling loop per configured feed, reconciling stored alert periods.

Informational only: the feeds' alerts are stored and compared with what the sirens do, nothing physical is ever
triggered from them. An unreadable feed (garbage, HTML error page, 5xx, timeout, oversized body) is counted by
reason, logged (at most once a minute per reason) and retried with back-off; it never ends a stored alert.
Polling respects the feed's limits: never faster than ``poll_interval_s``, never more than :data:`MAX_PER_MINUTE`
requests a minute per source, and a 429's ``Retry-After`` is honoured.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Final, Protocol

import httpx
import structlog

from central.alerts.alerts_in_ua import AlertsInUaClient
from central.alerts.cap import CapClient
from central.alerts.feed import FeedDocument, FeedError
from central.alerts.http import make_client
from central.alerts.queries import covers
from central.alerts.reconcile import Reconciled, close_orphans, reconcile
from central.api.alert_schemas import AlertChange, AlertPeriodView, AlertSourcesView, SourceStatus
from central.api.camera_schemas import strip_credentials
from central.bus import Bus
from central.config import AlertSourceSettings, CentralConfig, SiteSettings
from central.store.alert_models import AlertPeriod
from central.store.db import Database
from varta.aio import wait_for
from varta.contract import utcnow
from varta.supervise import supervise
from varta.throttle import LogThrottle

log = structlog.get_logger(__name__)

MAX_PER_MINUTE: Final = 8
#: The shortest time between two requests to one source by default (alerts.in.ua: ~8-10 a minute per IP).
MIN_INTERVAL_S: Final = 60.0 / MAX_PER_MINUTE
MAX_BACKOFF_S: Final = 300.0
LOG_EVERY_S: Final = 60.0
TOKEN_READ_TIMEOUT_S: Final = 5.0
#: Longest a reconcile may take (a hung database must not hold the loop forever; the next poll retries).
STORE_TIMEOUT_S: Final = 30.0
#: How often a sleeping loop re-checks whether its source became stale (for the dashboard's grey note).
STALE_CHECK_S: Final = 15.0


class FeedClient(Protocol):
    """A protocol client: one poll, the current document and whether it changed; raises FeedError."""

    http: httpx.AsyncClient

    async def poll(self, token: str | None) -> tuple[FeedDocument, bool]: ...


@dataclass
class _Counters:
    polls: int = 0
    documents: int = 0
    not_modified: int = 0
    errors: Counter[str] = field(default_factory=Counter)
    skipped: Counter[str] = field(default_factory=Counter)
    ignored: Counter[str] = field(default_factory=Counter)
    opened: int = 0
    closed: int = 0


def period_view(row: AlertPeriod) -> AlertPeriodView:
    """The API/SSE view of a stored period."""
    return AlertPeriodView.model_validate(row)


class SourcePoller:
    """Polls one source in a loop and reconciles its periods (see the module docstring)."""

    def __init__(
        self,
        settings: AlertSourceSettings,
        client: FeedClient,
        db: Database,
        bus: Bus,
        *,
        sites: dict[str, SiteSettings],
        stale_after_s: float,
        min_interval_s: float = MIN_INTERVAL_S,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self.settings = settings
        self.name = settings.name
        self.client = client
        self.db = db
        self.bus = bus
        self.sites = sites
        self.stale_after_s = stale_after_s
        self.interval_s = max(settings.poll_interval_s, min_interval_s)
        if self.interval_s > settings.poll_interval_s:
            log.warning(
                "alerts.poll_interval_raised",
                source=self.name,
                configured_s=settings.poll_interval_s,
                used_s=round(self.interval_s, 2),
                detail="the feed allows about 8 requests a minute",
            )
        self.clock = clock
        self.counters = _Counters()
        self.started_at: datetime | None = None
        self.last_attempt_at: datetime | None = None
        self.last_ok_at: datetime | None = None
        self.last_change_at: datetime | None = None
        self.last_error_at: datetime | None = None
        self.last_error: str | None = None
        self.last_error_detail = ""
        self.next_poll_at: datetime | None = None
        self.consecutive_errors = 0
        self.active = 0
        self._stale_announced = False
        self._logs = LogThrottle(LOG_EVERY_S)

    # ------------------------------------------------------------------------------------------ status

    def is_stale(self, now: datetime | None = None) -> bool:
        """True when no readable answer came for longer than ``stale_after_s`` (counted from the start)."""
        reference = self.last_ok_at or self.started_at
        if reference is None:
            return False
        return ((now or self.clock()) - reference).total_seconds() > self.stale_after_s

    def status(self) -> SourceStatus:
        """The source's status for the API and the dashboard."""
        c = self.counters
        return SourceStatus(
            name=self.name,
            kind=self.settings.kind,
            url=strip_credentials(self.settings.url),
            poll_interval_s=self.interval_s,
            started_at=self.started_at,
            last_attempt_at=self.last_attempt_at,
            last_ok_at=self.last_ok_at,
            last_change_at=self.last_change_at,
            last_error_at=self.last_error_at,
            last_error=self.last_error,
            last_error_detail=self.last_error_detail,
            next_poll_at=self.next_poll_at,
            consecutive_errors=self.consecutive_errors,
            polls=c.polls,
            documents=c.documents,
            not_modified=c.not_modified,
            errors=dict(c.errors),
            skipped=dict(c.skipped),
            ignored=dict(c.ignored),
            opened=c.opened,
            closed=c.closed,
            active=self.active,
            stale=self.is_stale(),
        )

    # ------------------------------------------------------------------------------------------ loop

    async def run(self) -> None:
        """Poll until cancelled; no request starts sooner than the interval after the previous one."""
        if self.started_at is None:
            self.started_at = self.clock()
        while True:
            started = time.monotonic()
            delay = await self.poll_once()
            self.next_poll_at = self.clock() + timedelta(seconds=max(0.0, delay - (time.monotonic() - started)))
            deadline = started + delay
            while (left := deadline - time.monotonic()) > 0:
                await asyncio.sleep(min(left, STALE_CHECK_S))
                self._announce_staleness()

    async def poll_once(self) -> float:
        """One poll and reconcile; returns the seconds until the next poll may start. Never raises (but cancel)."""
        if self.started_at is None:
            self.started_at = self.clock()
        self.counters.polls += 1
        self.last_attempt_at = self.clock()
        try:
            token = await self._token()
            document, changed = await self.client.poll(token)
        except FeedError as exc:
            return self._failed(exc)
        except Exception as exc:  # a parser bug must not stop the source: counted like garbage
            log.exception("alerts.poll_crashed", source=self.name)
            return self._failed(FeedError("internal", f"{type(exc).__name__}: {exc}"))
        polled_at = self.clock()
        if changed:
            self.counters.documents += 1
            self.counters.skipped.update(document.skipped)
            self.counters.ignored.update(document.ignored)
            if document.skipped:
                self._log_rate_limited(
                    "skipped", "alerts.entries_skipped", source=self.name, reasons=dict(document.skipped)
                )
        else:
            self.counters.not_modified += 1
        try:
            result = await wait_for(self._store(document, polled_at), STORE_TIMEOUT_S)
        except Exception as exc:  # the database is down or refused: the feed's news waits for the next poll
            held = self._logs.allow("db_error", time.monotonic())
            if held is not None:
                log.exception("alerts.store_failed", source=self.name, suppressed=held)
            return self._failed(FeedError("db_error", f"{type(exc).__name__}: {exc}"), logged=True)
        self._succeeded(polled_at, changed, result)
        return self.interval_s

    # ------------------------------------------------------------------------------------------ helpers

    async def _store(self, document: FeedDocument, polled_at: datetime) -> Reconciled:
        async with self.db.session() as session:
            result = await reconcile(session, self.name, document, polled_at, dialect=self.db.dialect)
            await session.commit()
        return result

    async def _token(self) -> str | None:
        try:
            return await wait_for(asyncio.to_thread(self.settings.read_token), TOKEN_READ_TIMEOUT_S)
        except TimeoutError:
            raise FeedError("token_unreadable", "reading the token file timed out") from None
        except (OSError, UnicodeError) as exc:
            raise FeedError("token_unreadable", f"{type(exc).__name__}: {exc}") from None

    def _succeeded(self, now: datetime, changed: bool, result: Reconciled) -> None:
        if self.consecutive_errors:
            log.info("alerts.source_recovered", source=self.name, after_errors=self.consecutive_errors)
        self.consecutive_errors = 0
        self.last_ok_at = now
        if changed:
            self.last_change_at = now
        self.active = result.active
        self.counters.opened += len(result.opened) + len(result.reopened)
        self.counters.closed += len(result.closed)
        for row in result.opened:
            log.info("alerts.period_opened", source=self.name, region=row.region_uid, alert_type=row.alert_type)
            self._publish("opened", row)
        for row in result.reopened:
            log.info("alerts.period_reopened", source=self.name, region=row.region_uid, alert_type=row.alert_type)
            self._publish("reopened", row)
        for row in result.closed:
            log.info("alerts.period_closed", source=self.name, region=row.region_uid, alert_type=row.alert_type)
            self._publish("closed", row)
        self._announce_staleness()

    def _failed(self, exc: FeedError, *, logged: bool = False) -> float:
        now = self.clock()
        self.consecutive_errors += 1
        self.counters.errors[exc.reason] += 1
        self.last_error, self.last_error_detail, self.last_error_at = exc.reason, exc.detail, now
        delay = min(self.interval_s * 2.0 ** min(self.consecutive_errors - 1, 10), MAX_BACKOFF_S)
        delay = max(delay, self.interval_s)
        if exc.retry_after_s is not None:
            delay = max(delay if exc.reason != "rate_limited" else self.interval_s, exc.retry_after_s)
        if not logged:
            self._log_rate_limited(
                exc.reason,
                "alerts.poll_failed",
                source=self.name,
                reason=exc.reason,
                detail=exc.detail,
                retry_in_s=round(delay, 1),
                consecutive=self.consecutive_errors,
            )
        self._announce_staleness()
        return delay

    def _log_rate_limited(self, key: str, event: str, **fields: object) -> None:
        held = self._logs.allow(key, time.monotonic())
        if held is not None:
            log.warning(event, suppressed=held, **fields)

    def _publish(self, change: str, row: AlertPeriod) -> None:
        sites = sorted(site_id for site_id, site in self.sites.items() if covers(row, site.regions))
        data = AlertChange.model_validate({"change": change, "period": period_view(row), "sites": sites})
        self.bus.publish("alert", data.model_dump(mode="json"))

    def _announce_staleness(self) -> None:
        stale = self.is_stale()
        if stale == self._stale_announced:
            return
        self._stale_announced = stale
        if stale:
            log.warning("alerts.source_stale", source=self.name, last_ok_at=self.last_ok_at, error=self.last_error)
        else:
            log.info("alerts.source_fresh", source=self.name)
        self.bus.publish("alert", AlertChange(change="source", source=self.status()).model_dump(mode="json"))


def _client(settings: AlertSourceSettings, http: httpx.AsyncClient) -> FeedClient:
    if settings.kind == "alerts_in_ua":
        return AlertsInUaClient(settings, http)
    return CapClient(settings, http)


class AlertService:
    """Every configured alert source, polled in its own supervised loop (``await run()``; ``stats()``)."""

    def __init__(
        self,
        config: CentralConfig,
        db: Database,
        bus: Bus,
        *,
        min_interval_s: float = MIN_INTERVAL_S,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self.config = config
        self.db = db
        self.bus = bus
        self.clock = clock
        self.http = make_client()
        self.pollers: dict[str, SourcePoller] = {
            s.name: SourcePoller(
                s,
                _client(s, self.http),
                db,
                bus,
                sites=dict(config.sites),
                stale_after_s=config.alerts.stale_after_s,
                min_interval_s=min_interval_s,
                clock=clock,
            )
            for s in config.alerts.sources
        }
        self.running = False

    def stats(self) -> AlertSourcesView:
        """The status of every source."""
        return AlertSourcesView(
            polling=self.running,
            stale_after_s=self.config.alerts.stale_after_s,
            sources=[p.status() for p in self.pollers.values()],
        )

    def known_until(self) -> datetime | None:
        """Until when the official alert state is confirmed: the oldest last successful poll over the sources.

        A source never read yet: nothing is confirmed (the earliest possible time). No source configured: None —
        there is no feed to wait for, and every siren activation counts as one without an official alert.
        """
        polled = [p.last_ok_at for p in self.pollers.values()]
        if not polled:
            return None
        if any(at is None for at in polled):
            return datetime.min.replace(tzinfo=UTC)
        return min(at for at in polled if at is not None)

    def stale_sources(self) -> list[SourceStatus]:
        """The sources without a readable answer for longer than ``alerts.stale_after_s``."""
        return [p.status() for p in self.pollers.values() if p.is_stale()]

    async def poll_once(self, name: str) -> float:
        """One poll of source *name* (what the loop does each time); returns the seconds to the next poll."""
        self._ensure_http()
        return await self.pollers[name].poll_once()

    async def close_orphans(self) -> list[AlertPeriod]:
        """End the open periods of sources no longer configured (done once when the service starts)."""
        async with self.db.session() as session:
            closed = await close_orphans(session, self.pollers, self.clock())
            await session.commit()
        for row in closed:
            log.info("alerts.orphan_closed", source=row.source, region=row.region_uid)
            self.bus.publish(
                "alert",
                AlertChange.model_validate(
                    {"change": "closed", "period": period_view(row), "sites": self._sites_of(row)}
                ).model_dump(mode="json"),
            )
        return closed

    async def run(self) -> None:
        """Poll every source until cancelled (each loop supervised: a crash restarts it after a back-off)."""
        self._ensure_http()
        self.running = True
        try:
            try:
                await self.close_orphans()
            except Exception:
                log.exception("alerts.orphans_failed")
            if not self.pollers:
                log.info("alerts.no_sources")
                await asyncio.Event().wait()
            async with asyncio.TaskGroup() as group:
                for name, poller in self.pollers.items():
                    group.create_task(supervise(f"alerts-{name}", poller.run), name=f"alerts-{name}")
        finally:
            self.running = False
            await self.http.aclose()

    async def aclose(self) -> None:
        """Close the HTTP client (when :meth:`run` was never started, e.g. tests using :meth:`poll_once`)."""
        await self.http.aclose()

    def _ensure_http(self) -> None:
        if self.http.is_closed:
            self.http = make_client()
            for poller in self.pollers.values():
                poller.client.http = self.http

    def _sites_of(self, row: AlertPeriod) -> list[str]:
        return sorted(site_id for site_id, site in self.config.sites.items() if covers(row, site.regions))


__all__ = ["MAX_PER_MINUTE", "MIN_INTERVAL_S", "AlertService", "SourcePoller", "period_view"]
