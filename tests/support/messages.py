"""Builders of valid contract messages for tests."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from varta.contract import Availability, Event, Health, utcnow


def health(node: str, boot: str, seq: int, **kw: Any) -> Health:
    """A plausible health message."""
    data: dict[str, Any] = dict(
        node_id=node,
        boot_id=boot,
        seq=seq,
        ts=utcnow(),
        cpu_percent=12.5,
        memory_percent=40.0,
        memory_available_mb=900.0,
        disk_percent=55.0,
        disk_free_mb=10_000.0,
        temperature_c=48.0,
        uptime_s=3600.0,
        agent_uptime_s=60.0,
        version="0.1.0",
    )
    data.update(kw)
    return Health(**data)


def event(node: str, boot: str, seq: int, index: int = 0, **kw: Any) -> Event:
    """An event carrying *index* in its data (to check order and completeness)."""
    data: dict[str, Any] = dict(
        node_id=node,
        boot_id=boot,
        seq=seq,
        ts=utcnow(),
        kind="test.tick",
        message=f"tick {index}",
        data={"index": index},
    )
    data.update(kw)
    return Event(**data)


def availability(node: str, boot: str, state: str, reason: str = "connected", age_s: float = 0) -> Availability:
    """An availability message (seq 0)."""
    return Availability(
        node_id=node, boot_id=boot, seq=0, ts=utcnow() - timedelta(seconds=age_s), state=state, reason=reason
    )  # type: ignore[arg-type]
