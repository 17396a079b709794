"""Imports every table module so ``Base.metadata`` is complete (Alembic and tests use this)."""

from central.auth import models as auth_models
from central.store import (
    alert_models,
    camera_models,
    fleet_models,
    incident_models,
    kiosk_models,
    kiosk_screen_models,
    live_models,
)
from central.store.base import Base

__all__ = [
    "Base",
    "alert_models",
    "auth_models",
    "camera_models",
    "fleet_models",
    "incident_models",
    "kiosk_models",
    "kiosk_screen_models",
    "live_models",
]
