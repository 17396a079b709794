"""Response and request schemas of the fleet API (also the payloads of the SSE stream)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class _View(BaseModel):
    model_config = ConfigDict(from_attributes=True)


class HealthPoint(_View):
    """One health sample of a node."""

    ts: datetime
    cpu_percent: float
    memory_percent: float
    disk_percent: float
    temperature_c: float | None = None
    undervoltage: bool | None = None
    uptime_s: float
    historical: bool = False


class DeviceView(_View):
    """Current state of one device."""

    device_id: str
    kind: str
    name: str
    status: str
    reason: str | None
    detail: str
    status_since: datetime
    ts: datetime


class NodeView(_View):
    """A node as dispatchers see it."""

    node_id: str
    site: str
    name: str
    online: bool
    offline_reason: str | None = None
    status_since: datetime | None
    last_seen: datetime | None
    hostname: str
    version: str
    boot_id: str
    started_at: datetime | None = None
    health_interval_s: float = 30.0
    last_health: HealthPoint | None = None
    devices: list[DeviceView] = Field(default_factory=list)


class SiteView(BaseModel):
    """A site and its nodes (offline ones first)."""

    site: str
    nodes: list[NodeView]
    online: int
    offline: int


class EventView(_View):
    """One entry of the event log."""

    id: int
    node_id: str
    site: str
    ts: datetime
    received_at: datetime
    source: str
    kind: str
    severity: str
    device_id: str | None
    message: str
    historical: bool
    data: dict[str, Any] = Field(default_factory=dict)


class SeqGapView(_View):
    """Messages a node sent that never arrived."""

    boot_id: str
    first_seq: int
    last_seq: int
    detected_at: datetime


class CommandRequest(BaseModel):
    """Ask a node to run a command."""

    model_config = ConfigDict(extra="forbid")

    command: str = Field(min_length=1, max_length=64, pattern=r"^[a-z0-9_.]+$")
    params: dict[str, Any] = Field(default_factory=dict, max_length=64)
    ttl_s: int | None = Field(default=None, ge=1, le=86_400, description="deadline, default from config")


class CommandView(_View):
    """A command and, once the node answered, its result."""

    request_id: str
    node_id: str
    command: str
    params: dict[str, Any]
    issued_by: str
    issued_at: datetime
    expires_at: datetime
    status: str
    reason: str | None
    detail: str
    result: dict[str, Any] | None
    result_at: datetime | None


class IngestStats(BaseModel):
    """Counters of the MQTT ingest since this process started."""

    received: int
    stored: int
    duplicates: int
    rejected: dict[str, int]
    gaps_recorded: int
    batches: int
    last_batch_size: int
    db_errors: int
    retained_cleared: int = Field(description="empty retained messages (a node withdrawing a device's state)")
    mqtt_connected: bool
    mqtt_protocol: str
    inbound_paused: int
    mqtt_protocol_errors: int = Field(
        default=0, description="ingest connections left because the broker broke the MQTT protocol"
    )
