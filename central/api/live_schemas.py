"""Schemas of the live-view API (sessions list, ICE configuration)."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict

from varta.contract import IceServer


class LiveSessionView(BaseModel):
    """One live view: who watched which camera, from when to when, and how it ended."""

    model_config = ConfigDict(from_attributes=True)

    session_id: str
    node_id: str
    device_id: str
    site: str
    stream: str
    username: str
    ip: str | None
    user_agent: str
    codec: str
    started_at: datetime
    ended_at: datetime | None
    end_reason: str | None
    end_detail: str
    frames_sent: int | None
    duration_s: float | None = None
    camera_name: str = ""


class LiveConfigView(BaseModel):
    """What a browser needs before it makes its offer."""

    ice_servers: list[IceServer]
    max_sessions_per_user: int
