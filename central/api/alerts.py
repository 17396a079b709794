"""Official alert API (observer and up): alerts active per site, alert history, and how each feed is doing.

Informational only: official alerts are compared with what the sirens do; nothing here triggers anything.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Query

from central.alerts import queries
from central.alerts.poller import AlertService, period_view
from central.api.alert_schemas import AlertHistoryItem, AlertSourcesView, SiteAlertsView, SourceStatus
from central.api.camera_schemas import strip_credentials
from central.auth.deps import Principal, require_role
from central.auth.roles import Role
from central.config import CentralConfig
from central.deps import SessionDep, get_services
from central.services import Services
from varta.contract import ID_PATTERN, utcnow

router = APIRouter(prefix="/api/v1", tags=["alerts"])

Observer = Annotated[Principal, Depends(require_role(Role.OBSERVER))]
ServicesDep = Annotated[Services, Depends(get_services)]
MAX_HISTORY = timedelta(days=400)
UNKNOWN_SITE: dict[int | str, dict[str, Any]] = {404: {"description": "unknown site"}}


def alert_service(services: Services) -> AlertService | None:
    """The running alert service of this process, if the app started one (``services.alerts``)."""
    service = getattr(services, "alerts", None)
    return service if isinstance(service, AlertService) else None


def _site_or_404(config: CentralConfig, site: str | None) -> None:
    if site is not None and site not in config.sites:
        raise HTTPException(404, f"unknown site {site}")


@router.get("/alerts/active", response_model=list[SiteAlertsView], responses=UNKNOWN_SITE)
async def active(
    session: SessionDep,
    services: ServicesDep,
    _: Observer,
    site: Annotated[str | None, Query(pattern=ID_PATTERN, description="only this site")] = None,
) -> list[SiteAlertsView]:
    """Every configured site with the official alerts active in its regions now (calm sites have none)."""
    config = services.config
    _site_or_404(config, site)
    sites = {k: v for k, v in config.sites.items() if site is None or k == site}
    per_site = await queries.site_alerts(session, sites)
    return [
        SiteAlertsView(
            site=site_id,
            name=settings.name or site_id,
            regions=list(settings.regions),
            alerts=[period_view(p) for p in per_site.get(site_id, [])],
        )
        for site_id, settings in sorted(sites.items())
    ]


@router.get("/alerts", response_model=list[AlertHistoryItem], responses=UNKNOWN_SITE)
async def history(
    session: SessionDep,
    services: ServicesDep,
    _: Observer,
    since: Annotated[datetime | None, Query(description="from (default: 7 days ago)")] = None,
    until: Annotated[datetime | None, Query(description="to (default: now)")] = None,
    site: Annotated[str | None, Query(pattern=ID_PATTERN, description="only alerts covering this site")] = None,
    alert_type: Annotated[
        str | None, Query(pattern=r"^[a-z_]{1,32}$", description="air_raid, artillery_shelling, …")
    ] = None,
    limit: Annotated[int, Query(ge=1, le=5000)] = 500,
) -> list[AlertHistoryItem]:
    """Alert periods overlapping ``[since, until)``, newest first, each with the configured sites it covered."""
    config = services.config
    _site_or_404(config, site)
    end = until or utcnow()
    start = since or end - timedelta(days=7)
    if start.tzinfo is None or end.tzinfo is None:
        raise HTTPException(422, "since and until need a time zone (e.g. 2025-03-01T00:00:00Z)")
    if start >= end:
        raise HTTPException(422, "since must be before until")
    if end - start > MAX_HISTORY:
        raise HTTPException(422, f"at most {MAX_HISTORY.days} days at a time")
    regions = config.sites[site].regions if site is not None else None
    rows = await queries.history(
        session,
        start,
        end,
        regions=regions,
        alert_types=[alert_type] if alert_type else None,
        limit=limit,
    )
    return [
        AlertHistoryItem(
            **period_view(row).model_dump(),
            sites=sorted(k for k, v in config.sites.items() if queries.covers(row, v.regions)),
        )
        for row in rows
    ]


@router.get("/alerts/sources", response_model=AlertSourcesView)
async def sources(services: ServicesDep, _: Observer) -> AlertSourcesView:
    """Each configured feed: last good answer, last error, counters by reason, and whether it is stale."""
    service = alert_service(services)
    if service is not None:
        return service.stats()
    config = services.config
    return AlertSourcesView(
        polling=False,
        stale_after_s=config.alerts.stale_after_s,
        sources=[
            SourceStatus(name=s.name, kind=s.kind, url=strip_credentials(s.url), poll_interval_s=s.poll_interval_s)
            for s in config.alerts.sources
        ],
    )
