"""Live-view sessions: who watched which camera, when, and how it ended (listed for admins)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from central.store.base import Base


class LiveSession(Base):
    """One viewer's live view of one camera (a WHEP session), from the node's answer to its end."""

    __tablename__ = "live_sessions"
    __table_args__ = (
        Index("ix_live_sessions_camera", "node_id", "device_id", "started_at"),
        Index("ix_live_sessions_started", "started_at"),
        Index("ix_live_sessions_open", "ended_at"),
    )

    session_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    node_id: Mapped[str] = mapped_column(String(63))
    device_id: Mapped[str] = mapped_column(String(63))
    site: Mapped[str] = mapped_column(String(63), default="")
    stream: Mapped[str] = mapped_column(String(8), default="main")
    username: Mapped[str] = mapped_column(String(64), index=True)
    ip: Mapped[str | None] = mapped_column(String(64))
    user_agent: Mapped[str] = mapped_column(String(300), default="")
    codec: Mapped[str] = mapped_column(String(100), default="")
    started_at: Mapped[datetime]
    ended_at: Mapped[datetime | None]
    end_reason: Mapped[str | None] = mapped_column(String(32))
    end_detail: Mapped[str] = mapped_column(Text, default="")
    frames_sent: Mapped[int | None] = mapped_column(Integer)
