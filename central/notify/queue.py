"""Queueing notifications: one :class:`NotificationDelivery` row per configured target an incident change concerns,
added to the caller's session so it commits (or not) together with the change itself."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Final, Literal

from sqlalchemy.ext.asyncio import AsyncSession

from central.config import NotificationSettings
from central.store.incident_models import NotificationDelivery

Transition = Literal["opened", "closed", "acknowledged"]

SEVERITY_RANK: Final[dict[str, int]] = {"info": 0, "warning": 1, "error": 2, "critical": 3}


def meets(severity: str, minimum: str) -> bool:
    """True when an incident of *severity* is at least *minimum* (an unknown severity counts as ``info``)."""
    return SEVERITY_RANK.get(severity, 0) >= SEVERITY_RANK.get(minimum, 0)


def queue_notifications(
    session: AsyncSession,
    settings: NotificationSettings,
    view: dict[str, Any],
    transition: Transition,
    now: datetime,
) -> int:
    """Add a pending delivery for every webhook and Telegram target whose ``min_severity`` the incident meets.

    *view* is :func:`central.incidents.queries.incident_view` of the incident (its id must be known: flush first).
    Returns how many rows were added; the caller commits.
    """
    payload = {"event": f"incident.{transition}", "incident": view}
    targets: list[tuple[str, str, str]] = [("webhook", t.name, t.min_severity) for t in settings.webhooks]
    targets += [("telegram", t.name, t.min_severity) for t in settings.telegram]
    added = 0
    for channel, name, minimum in targets:
        if not meets(str(view.get("severity", "")), minimum):
            continue
        session.add(
            NotificationDelivery(
                incident_id=int(view["id"]),
                channel=channel,
                target=name,
                transition=transition,
                payload=payload,
                status="pending",
                attempts=0,
                next_attempt_at=now,
                last_error="",
                created_at=now,
                sent_at=None,
            )
        )
        added += 1
    return added


__all__ = ["SEVERITY_RANK", "Transition", "meets", "queue_notifications"]
