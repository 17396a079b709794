"""What the rest of central asks about official alerts: what is active, where, and what was.

Matching rule (a site is "under alert" when one of its configured regions is):

- a site lists the feed's region ids that cover it, widest first (``SiteSettings.regions``: its oblast, raion,
  hromada or city — alerts.in.ua ``location_uid`` values or CAP geocode values);
- an active alert period covers the site when its ``region_uid`` is one of those ids: an oblast-wide alert
  covers every site that lists that oblast, a raion alert every site that lists that raion, a hromada alert
  only the sites that list that hromada;
- an **oblast-wide** period (``region_type == "oblast"``) also covers the site when its ``oblast_uid`` is listed
  (a feed may give the oblast alert a location id of its own);
- a raion/hromada/city alert elsewhere in the same oblast does NOT cover the site: its ``oblast_uid`` alone is
  not enough, or every siren of the oblast would be expected to sound for one hromada's alert.

Active means ``ended_at IS NULL``. Several sources may report the same alert: each source's period is returned.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from datetime import datetime

from sqlalchemy import ColumnElement, Select, and_, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from central.config import SiteSettings
from central.store.alert_models import AlertPeriod

OBLAST = "oblast"


def covers(period: AlertPeriod, regions: Iterable[str]) -> bool:
    """True when *period* is an alert for a site that lies in *regions* (see the module's matching rule)."""
    wanted = set(regions)
    if period.region_uid in wanted:
        return True
    return period.region_type == OBLAST and period.oblast_uid is not None and period.oblast_uid in wanted


def _in_regions(wanted: set[str]) -> ColumnElement[bool]:
    """SQL form of :func:`covers` for any of the regions in *wanted*."""
    return or_(
        AlertPeriod.region_uid.in_(wanted),
        and_(AlertPeriod.region_type == OBLAST, AlertPeriod.oblast_uid.in_(wanted)),
    )


def _order(periods: Iterable[AlertPeriod]) -> list[AlertPeriod]:
    return sorted(periods, key=lambda p: (p.started_at, p.id))


async def active_alerts(session: AsyncSession) -> list[AlertPeriod]:
    """Every alert period still open, oldest first."""
    rows = await session.scalars(select(AlertPeriod).where(AlertPeriod.ended_at.is_(None)))
    return _order(rows)


async def site_alerts(
    session: AsyncSession,
    sites: Mapping[str, SiteSettings],
    *,
    alert_types: Collection[str] | None = None,
) -> dict[str, list[AlertPeriod]]:
    """For every site in *sites*: its open alert periods, oldest first (an empty list when it is calm).

    *alert_types* keeps only those types (e.g. ``{"air_raid"}`` for the siren rules); None keeps every type.
    """
    result: dict[str, list[AlertPeriod]] = {site_id: [] for site_id in sites}
    wanted = {uid for site in sites.values() for uid in site.regions}
    if not wanted:
        return result
    query = select(AlertPeriod).where(AlertPeriod.ended_at.is_(None), _in_regions(wanted))
    if alert_types is not None:
        query = query.where(AlertPeriod.alert_type.in_(list(alert_types)))
    periods = _order(await session.scalars(query))
    for site_id, site in sites.items():
        result[site_id] = [p for p in periods if covers(p, site.regions)]
    return result


async def periods_between(
    session: AsyncSession,
    start: datetime,
    end: datetime,
    regions: Iterable[str] | None = None,
    *,
    alert_types: Collection[str] | None = None,
) -> list[AlertPeriod]:
    """Alert periods that overlap ``[start, end)`` (open ones included), oldest first.

    With *regions*, only the periods that cover a site lying in those regions (same rule as :func:`site_alerts`);
    with *alert_types*, only those types.
    """
    query = _overlapping(start, end, regions, alert_types)
    return [] if query is None else _order(await session.scalars(query))


async def history(
    session: AsyncSession,
    start: datetime,
    end: datetime,
    *,
    regions: Iterable[str] | None = None,
    alert_types: Collection[str] | None = None,
    limit: int = 1000,
) -> list[AlertPeriod]:
    """Like :func:`periods_between`, newest first and at most *limit* (the API's history)."""
    query = _overlapping(start, end, regions, alert_types)
    if query is None:
        return []
    query = query.order_by(AlertPeriod.started_at.desc(), AlertPeriod.id.desc()).limit(limit)
    return list(await session.scalars(query))


def _overlapping(
    start: datetime, end: datetime, regions: Iterable[str] | None, alert_types: Collection[str] | None
) -> Select[AlertPeriod] | None:
    """The periods overlapping ``[start, end)``, filtered by *regions* and *alert_types*; None: none can match."""
    query = select(AlertPeriod).where(
        AlertPeriod.started_at < end,
        or_(AlertPeriod.ended_at.is_(None), AlertPeriod.ended_at > start),
    )
    if regions is not None:
        wanted = set(regions)
        if not wanted:
            return None
        query = query.where(_in_regions(wanted))
    if alert_types is not None:
        query = query.where(AlertPeriod.alert_type.in_(list(alert_types)))
    return query


__all__ = ["active_alerts", "covers", "history", "periods_between", "site_alerts"]
