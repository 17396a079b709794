"""Table of what kiosks' screens showed: screenshots the nodes took through the browser's DevTools."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Index, Integer, LargeBinary, String
from sqlalchemy.orm import Mapped, mapped_column

from central.store.base import Base
from central.store.fleet_models import BigId


class KioskScreenshot(Base):
    """One screenshot of one kiosk (the newest few are kept)."""

    __tablename__ = "kiosk_screenshots"
    __table_args__ = (Index("ix_kiosk_screenshots_device_taken", "node_id", "device_id", "taken_at"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    node_id: Mapped[str] = mapped_column(String(63))
    device_id: Mapped[str] = mapped_column(String(63))
    taken_at: Mapped[datetime]
    received_at: Mapped[datetime]
    purpose: Mapped[str] = mapped_column(String(16))
    width: Mapped[int] = mapped_column(Integer)
    height: Mapped[int] = mapped_column(Integer)
    data: Mapped[bytes] = mapped_column(LargeBinary)
