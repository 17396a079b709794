"""What the dashboard's alert banner shows: one strip per site under an official alert, and stale feeds.

The dashboard calls :func:`banner_context` for every page and passes the result to ``_alert_banner.html`` as
``alert_banner``; ``alert_banner.js`` keeps it current from the ``alert`` events of the live stream.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, tzinfo
from functools import cache
from typing import TYPE_CHECKING, Final
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from sqlalchemy.ext.asyncio import AsyncSession

from central.alerts.feed import AIR_RAID
from central.alerts.queries import site_alerts
from central.config import CentralConfig
from central.store.alert_models import AlertPeriod
from varta.contract import utcnow

if TYPE_CHECKING:
    from central.alerts.poller import AlertService

#: The banner's server-side times are Kyiv time (the browser script rewrites them in the viewer's own zone).
ZONE: Final = "Europe/Kyiv"


@cache
def local_zone() -> tzinfo:
    """Kyiv time, or UTC where the system has no time-zone data."""
    try:
        return ZoneInfo(ZONE)
    except ZoneInfoNotFoundError:
        return UTC


def since_text(when: datetime, now: datetime) -> str:
    """``14:05`` for today, ``12.03 14:05`` for an earlier day (local time)."""
    zone = local_zone()
    local, today = when.astimezone(zone), now.astimezone(zone)
    return local.strftime("%H:%M") if local.date() == today.date() else local.strftime("%d.%m %H:%M")


@dataclass(frozen=True, slots=True)
class BannerAlert:
    """One site under alert: the alert shown is its air-raid alert if any, else its oldest."""

    site: str
    site_name: str
    region_name: str
    alert_type: str
    started_at: datetime
    since: str
    count: int = 1  # active periods covering the site (from every source)


@dataclass(frozen=True, slots=True)
class BannerSource:
    """A feed without a readable answer for longer than ``alerts.stale_after_s``."""

    name: str
    last_ok_at: datetime | None
    since: str


@dataclass(frozen=True, slots=True)
class AlertBanner:
    """The banner's content; ``enabled`` is False when no alert feed is configured (nothing to keep current)."""

    enabled: bool
    alerts: list[BannerAlert] = field(default_factory=list)
    stale: list[BannerSource] = field(default_factory=list)


def _shown(periods: list[AlertPeriod]) -> AlertPeriod:
    return min(periods, key=lambda p: (p.alert_type != AIR_RAID, p.started_at, p.id))


async def banner_context(
    session: AsyncSession,
    config: CentralConfig,
    service: AlertService | None = None,
    *,
    now: datetime | None = None,
) -> AlertBanner:
    """The banner for one page (sites under alert, oldest alert first; stale sources when *service* runs)."""
    now = now or utcnow()
    enabled = bool(config.alerts.sources)
    if not config.sites:
        return AlertBanner(enabled=enabled)
    per_site = await site_alerts(session, config.sites)
    alerts: list[BannerAlert] = []
    for site_id, periods in per_site.items():
        if not periods:
            continue
        shown = _shown(periods)
        alerts.append(
            BannerAlert(
                site=site_id,
                site_name=config.sites[site_id].name or site_id,
                region_name=shown.region_name or shown.region_uid,
                alert_type=shown.alert_type,
                started_at=shown.started_at,
                since=since_text(shown.started_at, now),
                count=len(periods),
            )
        )
    alerts.sort(key=lambda a: (a.started_at, a.site))
    stale: list[BannerSource] = []
    if service is not None:
        for status in service.stale_sources():
            stale.append(
                BannerSource(
                    name=status.name,
                    last_ok_at=status.last_ok_at,
                    since=since_text(status.last_ok_at, now) if status.last_ok_at else "",
                )
            )
    return AlertBanner(enabled=enabled or bool(alerts), alerts=alerts, stale=stale)


__all__ = ["AlertBanner", "BannerAlert", "BannerSource", "banner_context", "since_text"]
