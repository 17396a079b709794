"""Response schemas of the report API (availability per device and month)."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime

from pydantic import BaseModel, Field

from central.reports.availability import (
    CAUSES,
    REPORT_TZ,
    AvailabilityReport,
    CauseTotal,
    DeviceAvailability,
    KindSummary,
    summarize,
    uptime_percent,
)


class CauseTotalView(BaseModel):
    """Outages of one cause."""

    outages: int = Field(description="outages of this cause in the observed period (overlapping ones count once)")
    down_s: float = Field(description="seconds down put down to this cause")


class DeviceAvailabilityView(BaseModel):
    """One device's month."""

    site: str
    site_name: str
    node_id: str
    device_id: str = Field(description="'' for the node itself")
    kind: str = Field(description="node | camera | kiosk | siren")
    name: str
    observed_from: datetime
    observed_to: datetime
    observed_s: float
    down_s: float = Field(description="union of the outages within the observed period")
    uptime_percent: float = Field(description="rounded to 2 decimals; below 100 whenever there was any downtime")
    outages: int
    by_cause: dict[str, CauseTotalView] = Field(description="power, network, device")


class KindSummaryView(BaseModel):
    """All devices of one kind: time-weighted uptime and outages by cause."""

    kind: str
    devices: int
    observed_s: float
    down_s: float
    uptime_percent: float
    outages: int
    by_cause: dict[str, CauseTotalView]


class AvailabilityReportView(BaseModel):
    """The availability report of one calendar month (boundaries at local midnight in ``time_zone``)."""

    month: str = Field(description="YYYY-MM")
    time_zone: str
    start: datetime
    end: datetime
    generated_at: datetime
    in_progress: bool = Field(description="the month has not ended yet: figures run up to generated_at")
    summary: list[KindSummaryView]
    devices: list[DeviceAvailabilityView]


def _causes(by_cause: Mapping[str, CauseTotal]) -> dict[str, CauseTotalView]:
    return {c: CauseTotalView(outages=by_cause[c].outages, down_s=by_cause[c].down_s) for c in CAUSES}


def device_view(row: DeviceAvailability, sites: Mapping[str, str]) -> DeviceAvailabilityView:
    """One report line as the API shows it."""
    d = row.device
    return DeviceAvailabilityView(
        site=d.site,
        site_name=sites.get(d.site, d.site),
        node_id=d.node_id,
        device_id=d.device_id,
        kind=d.kind,
        name=d.name,
        observed_from=row.observed_from,
        observed_to=row.observed_to,
        observed_s=row.observed_s,
        down_s=row.down_s,
        uptime_percent=uptime_percent(row.uptime, row.down_s),
        outages=row.outages,
        by_cause=_causes(row.by_cause),
    )


def summary_view(summary: KindSummary) -> KindSummaryView:
    """One kind's totals as the API shows them."""
    return KindSummaryView(
        kind=summary.kind,
        devices=summary.devices,
        observed_s=summary.observed_s,
        down_s=summary.down_s,
        uptime_percent=uptime_percent(summary.uptime, summary.down_s),
        outages=summary.outages,
        by_cause=_causes(summary.by_cause),
    )


def report_view(report: AvailabilityReport, sites: Mapping[str, str]) -> AvailabilityReportView:
    """The whole report as the API shows it; *sites* maps site ids to names."""
    return AvailabilityReportView(
        month=report.month.strftime("%Y-%m"),
        time_zone=str(REPORT_TZ.key),
        start=report.start,
        end=report.end,
        generated_at=report.generated_at,
        in_progress=report.generated_at < report.end,
        summary=[summary_view(s) for s in summarize(report)],
        devices=[device_view(r, sites) for r in report.rows],
    )
