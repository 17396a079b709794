"""Official air-raid alert periods, as polled from the alert feeds (informational: they never trigger anything)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Index, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from central.store.base import Base
from central.store.fleet_models import BigId


class AlertPeriod(Base):
    """One official alert in one region, from its start to its end (``ended_at`` NULL while it lasts)."""

    __tablename__ = "alert_periods"
    __table_args__ = (
        UniqueConstraint("source", "source_id", name="uq_alert_periods_source_id"),
        Index("ix_alert_periods_open", "ended_at", "region_uid"),
        Index("ix_alert_periods_started", "started_at"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    source: Mapped[str] = mapped_column(String(32))  # alerts_in_ua | cap
    source_id: Mapped[str] = mapped_column(String(200))  # the feed's own id of this alert (stable across polls)
    region_uid: Mapped[str] = mapped_column(String(64))  # the feed's region id (alerts.in.ua location_uid, CAP geocode)
    region_name: Mapped[str] = mapped_column(String(200), default="")
    region_type: Mapped[str] = mapped_column(String(32), default="")  # oblast | raion | hromada | city | …
    oblast_uid: Mapped[str | None] = mapped_column(String(64))  # the oblast the region lies in, when the feed says
    alert_type: Mapped[str] = mapped_column(String(32), default="air_raid")
    started_at: Mapped[datetime]
    ended_at: Mapped[datetime | None]
    updated_at: Mapped[datetime]  # last time a poll confirmed or changed it
