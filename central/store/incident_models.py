"""Incidents (what a dispatcher acts on), device outages (what the availability report counts) and the
notifications sent about incidents."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from central.store.base import Base, JsonDict
from central.store.fleet_models import BigId


class Incident(Base):
    """One problem a dispatcher should know about, opened and closed by the incident rules.

    ``key`` identifies the condition (``power_outage:<site>``, ``node_down:<node>``, ``camera_fault:<node>:<device>``,
    ``siren_failure:<node>:<siren>:<alert period id>``, ``unexpected_activation:<node>:<siren>:<start>``; see
    :mod:`central.incidents.rules`): at most one incident per key is open at a time. ``devices`` lists every device
    (``node/device``; a node itself is ``node/``) the incident covers, including the outages it absorbed; it only
    grows while the incident is open. ``title``, ``detail`` and ``end_reason`` are written in central's
    ``default_language``; ``data`` keeps the codes behind them (``end_code``, ``alert_period_id``, …).
    """

    __tablename__ = "incidents"
    __table_args__ = (
        Index("ix_incidents_open", "ended_at", "key"),
        Index("ix_incidents_started", "started_at"),
        Index("ix_incidents_site", "site", "started_at"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    key: Mapped[str] = mapped_column(String(300))
    type: Mapped[str] = mapped_column(String(32))  # siren_failure | unexpected_activation | power_outage | …
    severity: Mapped[str] = mapped_column(String(16))  # info | warning | error | critical
    site: Mapped[str] = mapped_column(String(63))
    node_id: Mapped[str | None] = mapped_column(String(63))
    device_id: Mapped[str | None] = mapped_column(String(63))
    devices: Mapped[list[str]] = mapped_column(default=list)
    title: Mapped[str] = mapped_column(String(300), default="")
    detail: Mapped[str] = mapped_column(Text, default="")
    data: Mapped[dict[str, Any]] = mapped_column(default=dict)
    started_at: Mapped[datetime]
    ended_at: Mapped[datetime | None]
    end_reason: Mapped[str] = mapped_column(String(200), default="")
    acknowledged_by: Mapped[str | None] = mapped_column(String(64))
    acknowledged_at: Mapped[datetime | None]
    notes: Mapped[list[Any]] = mapped_column(JsonDict, default=list)  # [{"at": iso, "by": username, "text": …}]
    updated_at: Mapped[datetime]


class Outage(Base):
    """One period a device (or a node, ``device_id`` = '') was down, with its cause, for the availability report.

    ``cause`` is ``power`` (its node ran on battery or went down for power), ``network`` (its node lost its uplink
    or vanished without a power reason) or ``device`` (the device itself failed while its node was fine).
    """

    __tablename__ = "outages"
    __table_args__ = (
        Index("ix_outages_device", "node_id", "device_id", "started_at"),
        Index("ix_outages_period", "started_at", "ended_at"),
        Index("ix_outages_open", "ended_at"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    node_id: Mapped[str] = mapped_column(String(63))
    device_id: Mapped[str] = mapped_column(String(63), default="")
    kind: Mapped[str] = mapped_column(String(16))  # node | camera | kiosk | siren | ups | sensor
    site: Mapped[str] = mapped_column(String(63))
    cause: Mapped[str] = mapped_column(String(16))  # power | network | device
    reason: Mapped[str] = mapped_column(String(64), default="")  # the device's reason code when it went down
    started_at: Mapped[datetime]
    ended_at: Mapped[datetime | None]
    incident_id: Mapped[int | None] = mapped_column(BigId)


class NotificationDelivery(Base):
    """One outbound notification (webhook or Telegram) about an incident, kept until delivered or given up."""

    __tablename__ = "notification_deliveries"
    __table_args__ = (Index("ix_notification_deliveries_due", "status", "next_attempt_at"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    incident_id: Mapped[int] = mapped_column(BigId, index=True)
    channel: Mapped[str] = mapped_column(String(16))  # webhook | telegram
    target: Mapped[str] = mapped_column(String(100))  # the configured endpoint's name (never its secret)
    transition: Mapped[str] = mapped_column(String(16))  # opened | closed | acknowledged
    payload: Mapped[dict[str, Any]] = mapped_column(default=dict)
    status: Mapped[str] = mapped_column(String(16), default="pending")  # pending | sent | failed
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime]
    last_error: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime]
    sent_at: Mapped[datetime | None]
