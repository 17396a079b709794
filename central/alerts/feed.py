"""What every alert feed parser produces, and the one error type a feed may raise.

A feed document becomes a :class:`FeedDocument`: the alerts it lists (one :class:`FeedAlert` per alert and
region), the ids it listed but could not read (kept open: an unreadable entry does not end an alert), the alerts
it explicitly ended (CAP ``Cancel``), and per-reason counts of what was skipped.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Final

#: alerts.in.ua's alert types (CAP events are mapped onto them, anything else is ``other``).
ALERT_TYPES: Final = ("air_raid", "artillery_shelling", "urban_fights", "chemical", "nuclear", "other")
AIR_RAID: Final = "air_raid"


class FeedError(Exception):
    """A feed could not be read: *reason* is a short counter key (``timeout``, ``http_5xx``, ``bad_json``, …)."""

    def __init__(self, reason: str, detail: str = "", *, retry_after_s: float | None = None) -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail[:300]
        self.retry_after_s = retry_after_s


@dataclass(frozen=True, slots=True)
class FeedAlert:
    """One alert in one region, as the feed describes it now (normalised for storage)."""

    source_id: str
    region_uid: str
    region_name: str
    region_type: str
    oblast_uid: str | None
    alert_type: str
    started_at: datetime
    ended_at: datetime | None = None  # the feed says it finished (alerts.in.ua finished_at)
    expires_at: datetime | None = None  # CAP expires: the alert ends by itself at that time

    def end_at(self, now: datetime) -> datetime | None:
        """When this alert ended, as of *now* (None while it lasts); never before it started."""
        end = self.ended_at
        if end is None and self.expires_at is not None and self.expires_at <= now:
            end = self.expires_at
        return None if end is None else max(end, self.started_at)


@dataclass
class FeedDocument:
    """One parsed feed document.

    ``complete``: the document lists every alert still active, so a stored alert absent from it has ended.
    ``unreadable_ids``: source ids of entries present but unreadable (their stored periods stay as they are).
    ``ended_keys``: alert keys the feed explicitly ended (a CAP ``Cancel``): every period whose ``source_id``
    starts with ``<key>#`` ends at the given time.
    """

    alerts: list[FeedAlert] = field(default_factory=list)
    unreadable_ids: set[str] = field(default_factory=set)
    ended_keys: dict[str, datetime] = field(default_factory=dict)
    skipped: Counter[str] = field(default_factory=Counter)
    ignored: Counter[str] = field(default_factory=Counter)
    complete: bool = True


def as_utc(value: datetime) -> datetime:
    """*value* in UTC (a naive value is taken as UTC, as alerts.in.ua's ``…Z`` times are)."""
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
