"""Request and response schemas of the incident API (the response is :func:`central.incidents.queries.incident_view`,
also the payload of the ``incident`` SSE event and of outbound notifications)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from central.incidents.queries import NOTE_MAX_CHARS


class IncidentNote(BaseModel):
    """A dispatcher's note on an incident."""

    at: datetime
    by: str
    text: str


class IncidentView(BaseModel):
    """One incident: what, where, which devices, since when, until when and why it ended, who acknowledged it."""

    id: int
    key: str = Field(description="the condition: at most one open incident per key")
    type: str = Field(description="siren_failure, unexpected_activation, power_outage, node_down, *_fault")
    severity: Literal["info", "warning", "error", "critical"]
    site: str
    site_name: str
    node_id: str | None
    device_id: str | None
    devices: list[str] = Field(description="every device it covers, as node/device ('node/' is the node itself)")
    title: str
    detail: str
    data: dict[str, Any]
    open: bool
    started_at: datetime = Field(description="when the condition began")
    ended_at: datetime | None
    duration_s: float | None
    end_reason: str
    acknowledged: bool
    acknowledged_by: str | None
    acknowledged_at: datetime | None
    notes: list[IncidentNote]
    updated_at: datetime


NoteText = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=NOTE_MAX_CHARS)]


class NoteRequest(BaseModel):
    """A note to add to an incident."""

    model_config = ConfigDict(extra="forbid")

    text: NoteText = Field(description=f"1 to {NOTE_MAX_CHARS} characters")


class IncidentSystemStats(BaseModel):
    """The incident engine's and the notification sender's counters (null when not running here)."""

    engine: dict[str, Any] | None
    notifications: dict[str, Any] | None
    pending_notifications: int
