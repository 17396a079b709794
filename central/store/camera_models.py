"""Tables for cameras: adopted cameras, their latest pictures, and the discovery inbox."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, Index, Integer, LargeBinary, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from central.store.base import Base
from central.store.fleet_models import BigId


class Camera(Base):
    """One camera of one node: what central was told at adoption, what the node reports (info, state)."""

    __tablename__ = "cameras"
    __table_args__ = (Index("ix_cameras_site_status", "site", "status"),)

    node_id: Mapped[str] = mapped_column(String(63), primary_key=True)
    device_id: Mapped[str] = mapped_column(String(63), primary_key=True)
    site: Mapped[str] = mapped_column(String(63))
    name: Mapped[str] = mapped_column(String(200), default="")
    position: Mapped[str] = mapped_column(String(300), default="", doc="where it is and what it shows, free text")
    latitude: Mapped[float | None]
    longitude: Mapped[float | None]
    endpoint: Mapped[str | None] = mapped_column(String(200), doc="WS-Discovery endpoint it was adopted from")
    adopted_at: Mapped[datetime | None]
    adopted_by: Mapped[str | None] = mapped_column(String(64))
    info: Mapped[dict[str, Any] | None] = mapped_column(doc="the node's CameraInfo (never any credential)")
    info_at: Mapped[datetime | None]
    info_boot_id: Mapped[str | None] = mapped_column(String(64))
    info_seq: Mapped[int | None] = mapped_column(BigInteger)
    status: Mapped[str] = mapped_column(String(16), default="unknown")
    reason: Mapped[str | None] = mapped_column(String(64))
    detail: Mapped[str] = mapped_column(Text, default="")
    attrs: Mapped[dict[str, Any]] = mapped_column(default=dict)
    status_since: Mapped[datetime | None]
    state_at: Mapped[datetime | None]
    snapshot_at: Mapped[datetime | None] = mapped_column(doc="when the latest picture was taken")
    created_at: Mapped[datetime]


class CameraSnapshot(Base):
    """A camera's latest pictures (JPEG); ingest keeps the newest few per camera."""

    __tablename__ = "camera_snapshots"
    __table_args__ = (Index("ix_camera_snapshots_camera", "node_id", "device_id", "taken_at"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    node_id: Mapped[str] = mapped_column(String(63))
    device_id: Mapped[str] = mapped_column(String(63))
    taken_at: Mapped[datetime]
    received_at: Mapped[datetime]
    source: Mapped[str] = mapped_column(String(16))
    purpose: Mapped[str] = mapped_column(String(16))
    content_type: Mapped[str] = mapped_column(String(32))
    width: Mapped[int] = mapped_column(Integer)
    height: Mapped[int] = mapped_column(Integer)
    data: Mapped[bytes] = mapped_column(LargeBinary)


class DiscoveredDeviceRecord(Base):
    """An ONVIF device a node's discovery probe found: the inbox an operator adopts from or ignores."""

    __tablename__ = "discovered_devices"
    __table_args__ = (UniqueConstraint("node_id", "endpoint"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    node_id: Mapped[str] = mapped_column(String(63), index=True)
    site: Mapped[str] = mapped_column(String(63))
    endpoint: Mapped[str] = mapped_column(String(200))
    address: Mapped[str] = mapped_column(String(64), default="")
    xaddrs: Mapped[list[str]] = mapped_column(default=list)
    scopes: Mapped[list[str]] = mapped_column(default=list)
    types: Mapped[list[str]] = mapped_column(default=list)
    name: Mapped[str] = mapped_column(String(200), default="")
    hardware: Mapped[str] = mapped_column(String(200), default="")
    first_seen: Mapped[datetime]
    last_seen: Mapped[datetime]
    state: Mapped[str] = mapped_column(String(16), default="new")  # new | ignored | adopted
    state_by: Mapped[str | None] = mapped_column(String(64))
    state_at: Mapped[datetime | None]
    device_id: Mapped[str | None] = mapped_column(String(63), doc="the camera it became, once adopted")
