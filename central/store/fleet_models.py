"""Tables for what the fleet reports: nodes, sequence records, health samples, events, device states, commands."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from central.store.base import Base

BigId = BigInteger().with_variant(Integer(), "sqlite")  # SQLite autoincrement needs INTEGER PRIMARY KEY


class Node(Base):
    """One edge node: identity from its birth message, availability from its status topic."""

    __tablename__ = "nodes"

    node_id: Mapped[str] = mapped_column(String(63), primary_key=True)
    site: Mapped[str] = mapped_column(String(63), index=True)
    name: Mapped[str] = mapped_column(String(200), default="")
    hostname: Mapped[str] = mapped_column(String(255), default="")
    version: Mapped[str] = mapped_column(String(64), default="")
    platform: Mapped[str] = mapped_column(String(200), default="")
    capabilities: Mapped[list[str]] = mapped_column(default=list)
    boot_id: Mapped[str] = mapped_column(String(64), default="")
    started_at: Mapped[datetime | None]
    health_interval_s: Mapped[float] = mapped_column(default=30.0)
    online: Mapped[bool] = mapped_column(default=False)
    offline_reason: Mapped[str | None] = mapped_column(String(32))
    status_since: Mapped[datetime | None]
    last_seen: Mapped[datetime | None]
    first_seen: Mapped[datetime]
    last_health_at: Mapped[datetime | None]
    last_health: Mapped[dict[str, Any] | None]
    box_public_key: Mapped[str | None] = mapped_column(String(64))  # X25519 (base64): secrets are sealed to it
    announced_box_key: Mapped[str | None] = mapped_column(String(64))  # the key the node's last birth announced
    box_key_enrolled_at: Mapped[datetime | None]  # set: box_public_key was enrolled by an admin, births cannot move it
    box_key_enrolled_by: Mapped[str | None] = mapped_column(String(64))
    box_key_revoked_at: Mapped[datetime | None]  # set: nothing is sealed to this node until a key is enrolled again


class SeqTrack(Base):
    """Highest sequence number stored per node boot: with :class:`SeqGap`, the idempotency record."""

    __tablename__ = "seq_tracks"

    node_id: Mapped[str] = mapped_column(String(63), primary_key=True)
    boot_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    max_seq: Mapped[int] = mapped_column(BigInteger)
    received: Mapped[int] = mapped_column(BigInteger, default=0)
    updated_at: Mapped[datetime]


class SeqGap(Base):
    """A run of sequence numbers never received (messages really lost), shrunk when late ones arrive."""

    __tablename__ = "seq_gaps"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    node_id: Mapped[str] = mapped_column(String(63), index=True)
    boot_id: Mapped[str] = mapped_column(String(64))
    first_seq: Mapped[int] = mapped_column(BigInteger)
    last_seq: Mapped[int] = mapped_column(BigInteger)
    detected_at: Mapped[datetime]


class HealthSample(Base):
    """One node health report."""

    __tablename__ = "health_samples"
    __table_args__ = (Index("ix_health_samples_node_ts", "node_id", "ts"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    node_id: Mapped[str] = mapped_column(String(63))
    boot_id: Mapped[str] = mapped_column(String(64))
    seq: Mapped[int] = mapped_column(BigInteger)
    ts: Mapped[datetime]
    received_at: Mapped[datetime] = mapped_column(index=True)
    historical: Mapped[bool] = mapped_column(default=False)
    cpu_percent: Mapped[float]
    memory_percent: Mapped[float]
    disk_percent: Mapped[float]
    temperature_c: Mapped[float | None]
    undervoltage: Mapped[bool | None]
    uptime_s: Mapped[float]
    load_1m: Mapped[float | None]
    memory_available_mb: Mapped[float]
    disk_free_mb: Mapped[float]
    agent_uptime_s: Mapped[float]
    version: Mapped[str] = mapped_column(String(64))
    outbox_pending: Mapped[int]
    outbox_dropped_telemetry: Mapped[int]
    outbox_dropped_events: Mapped[int]


class EventRecord(Base):
    """The append-only event log: events from nodes and events central derives (online/offline, boots)."""

    __tablename__ = "events"
    __table_args__ = (
        Index("ix_events_node_id_id", "node_id", "id"),
        Index("ix_events_ts", "ts"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    node_id: Mapped[str] = mapped_column(String(63))
    site: Mapped[str] = mapped_column(String(63))
    boot_id: Mapped[str | None] = mapped_column(String(64))
    seq: Mapped[int | None] = mapped_column(BigInteger)
    ts: Mapped[datetime]
    received_at: Mapped[datetime]
    historical: Mapped[bool] = mapped_column(default=False)
    source: Mapped[str] = mapped_column(String(16), default="node")  # node | central
    kind: Mapped[str] = mapped_column(String(64))
    severity: Mapped[str] = mapped_column(String(16))
    device_id: Mapped[str | None] = mapped_column(String(63))
    message: Mapped[str] = mapped_column(Text, default="")
    data: Mapped[dict[str, Any]]


class DeviceStateRecord(Base):
    """The current state of one device of one node."""

    __tablename__ = "device_states"

    node_id: Mapped[str] = mapped_column(String(63), primary_key=True)
    device_id: Mapped[str] = mapped_column(String(63), primary_key=True)
    kind: Mapped[str] = mapped_column(String(16))
    name: Mapped[str] = mapped_column(String(200), default="")
    status: Mapped[str] = mapped_column(String(16))
    reason: Mapped[str | None] = mapped_column(String(64))
    detail: Mapped[str] = mapped_column(Text, default="")
    attrs: Mapped[dict[str, Any]]
    boot_id: Mapped[str] = mapped_column(String(64))
    seq: Mapped[int] = mapped_column(BigInteger)
    ts: Mapped[datetime]
    status_since: Mapped[datetime]
    updated_at: Mapped[datetime]


class CommandRecord(Base):
    """A command central sent, and the result the node reported."""

    __tablename__ = "commands"
    __table_args__ = (Index("ix_commands_node_issued", "node_id", "issued_at"),)

    request_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    node_id: Mapped[str] = mapped_column(String(63))
    command: Mapped[str] = mapped_column(String(64))
    params: Mapped[dict[str, Any]]
    issued_by: Mapped[str] = mapped_column(String(100))
    issued_at: Mapped[datetime]
    expires_at: Mapped[datetime]
    status: Mapped[str] = mapped_column(String(16))  # sent | ok | error | rejected | send_failed
    reason: Mapped[str | None] = mapped_column(String(64))
    detail: Mapped[str] = mapped_column(Text, default="")
    result: Mapped[dict[str, Any] | None]
    result_at: Mapped[datetime | None]
