"""Response schemas of the alert API (also the payloads of the ``alert`` SSE event).

Official alerts are informational: these views describe them, nothing here triggers anything.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class AlertPeriodView(BaseModel):
    """One official alert in one region, from its start to its end (``ended_at`` null while it lasts)."""

    model_config = ConfigDict(from_attributes=True)

    id: int
    source: str = Field(description="the alert source's configured name")
    source_id: str = Field(description="the feed's own id of the alert")
    region_uid: str
    region_name: str
    region_type: str = Field(description="oblast, raion, hromada, city, or empty when the feed does not say")
    oblast_uid: str | None
    alert_type: str = Field(description="air_raid, artillery_shelling, urban_fights, chemical, nuclear or other")
    started_at: datetime
    ended_at: datetime | None
    updated_at: datetime


class SiteAlertsView(BaseModel):
    """A configured site and the official alerts active in its regions now."""

    site: str
    name: str
    regions: list[str]
    alerts: list[AlertPeriodView]


class AlertHistoryItem(AlertPeriodView):
    """A past or current alert period, with the configured sites it covered."""

    sites: list[str] = Field(default_factory=list)


class SourceStatus(BaseModel):
    """How one alert feed is doing: last good answer, last error, counters, and whether it is stale."""

    name: str
    kind: str
    url: str = Field(description="the feed's address (credentials removed)")
    poll_interval_s: float
    started_at: datetime | None = Field(default=None, description="when this central began polling it")
    last_attempt_at: datetime | None = None
    last_ok_at: datetime | None = Field(default=None, description="last readable answer (a 304 counts)")
    last_change_at: datetime | None = Field(default=None, description="last answer with a new document")
    last_error_at: datetime | None = None
    last_error: str | None = Field(default=None, description="reason of the last failure (counter key)")
    last_error_detail: str = ""
    next_poll_at: datetime | None = None
    consecutive_errors: int = 0
    polls: int = 0
    documents: int = Field(default=0, description="answers with a new document")
    not_modified: int = Field(default=0, description="304 answers")
    errors: dict[str, int] = Field(default_factory=dict, description="failed polls by reason")
    skipped: dict[str, int] = Field(default_factory=dict, description="unreadable entries skipped, by reason")
    ignored: dict[str, int] = Field(default_factory=dict, description="entries deliberately left out, by reason")
    opened: int = Field(default=0, description="alert periods this central opened")
    closed: int = Field(default=0, description="alert periods this central closed")
    active: int = Field(default=0, description="open periods from this source after the last poll")
    stale: bool = Field(default=False, description="no readable answer for longer than alerts.stale_after_s")


class AlertSourcesView(BaseModel):
    """Every configured alert source (empty when no alert feed is configured or polling is off)."""

    polling: bool = Field(description="false when this central does not poll (no background tasks)")
    stale_after_s: float
    sources: list[SourceStatus]


class AlertChange(BaseModel):
    """Data of the ``alert`` SSE event: a period opened, closed or reopened, or a source became stale/fresh."""

    change: Literal["opened", "closed", "reopened", "source"]
    period: AlertPeriodView | None = None
    sites: list[str] = Field(default_factory=list, description="configured sites the period covers")
    source: SourceStatus | None = None
