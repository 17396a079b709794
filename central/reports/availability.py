"""Monthly availability per device: a pure computation over plain inputs (outages, devices, a period).

Rules (the report's footnote says the same):

* The month runs from local midnight on its first day to local midnight on the first day of the next month in
  **Europe/Kyiv** time (so a month with a daylight-saving change has 743 or 745 hours, not 744).
* A device is *observed* from ``max(month start, first_seen)`` to ``min(month end, now)``; ``first_seen`` is when
  central first heard of it (its node's first message, or later for a device added later).
* Its *downtime* is the union of its outages clipped to the observed period: overlapping outages never count
  twice, an outage still open counts up to the end of the observed period. ``uptime = 1 - down / observed``.
* Per cause (``power``, ``network``, ``device``): *outages* is how many outages of that cause touch the observed
  period (overlapping outages of the same cause count as one), *down* is the time put down to that cause. Time
  covered by outages of several causes goes to the first of power, network, device (a camera that is already
  broken when the power fails is down for power while the power is out), so the three add up to the downtime.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Final
from zoneinfo import ZoneInfo

REPORT_TZ: Final = ZoneInfo("Europe/Kyiv")
#: Causes in order of precedence: time covered by several causes goes to the first.
CAUSES: Final = ("power", "network", "device")
#: What the report covers, in the order it lists them within a node.
REPORT_KINDS: Final = ("node", "camera", "kiosk", "siren")

Interval = tuple[datetime, datetime]
_DIGITS: Final = re.compile(r"([0-9]+)")
_MONTH: Final = re.compile(r"([0-9]{4})-([0-9]{2})")


@dataclass(frozen=True, slots=True)
class ReportDevice:
    """A device the report covers (``device_id`` '' and ``kind`` 'node': the node itself)."""

    site: str
    node_id: str
    device_id: str
    kind: str
    name: str
    first_seen: datetime

    @property
    def key(self) -> tuple[str, str]:
        """``(node_id, device_id)``: how outages name it."""
        return (self.node_id, self.device_id)


@dataclass(frozen=True, slots=True)
class OutageSpan:
    """One outage of one device (``ended_at`` None: still down)."""

    node_id: str
    device_id: str
    cause: str
    started_at: datetime
    ended_at: datetime | None


@dataclass(frozen=True, slots=True)
class CauseTotal:
    """Outages of one cause: how many, and how long the device was down for that cause."""

    outages: int = 0
    down_s: float = 0.0


@dataclass(frozen=True, slots=True)
class DeviceAvailability:
    """One line of the report."""

    device: ReportDevice
    observed_from: datetime
    observed_to: datetime
    down_s: float
    by_cause: dict[str, CauseTotal]

    @property
    def observed_s(self) -> float:
        """Length of the observed period in seconds."""
        return (self.observed_to - self.observed_from).total_seconds()

    @property
    def uptime(self) -> float:
        """Fraction of the observed period the device was up (0..1)."""
        observed = self.observed_s
        return 1.0 - self.down_s / observed if observed > 0 else 1.0

    @property
    def outages(self) -> int:
        """Outages of every cause."""
        return sum(c.outages for c in self.by_cause.values())


@dataclass(frozen=True, slots=True)
class AvailabilityReport:
    """The report of one month: the period, when it was computed, and one line per observed device."""

    month: date
    start: datetime
    end: datetime
    generated_at: datetime
    rows: list[DeviceAvailability] = field(default_factory=list)


class BadMonth(ValueError):
    """A month that is not ``YYYY-MM`` (or out of range)."""


def parse_month(text: str) -> date:
    """``2025-05`` → ``date(2025, 5, 1)``; raises :class:`BadMonth`."""
    match = _MONTH.fullmatch(text)
    if match is None:
        raise BadMonth(f"month must be YYYY-MM, not {text[:20]!r}")
    year, month = int(match[1]), int(match[2])
    if not 2000 <= year <= 9998 or not 1 <= month <= 12:
        raise BadMonth(f"no such month {text!r}")
    return date(year, month, 1)


def month_period(month: date, tz: ZoneInfo = REPORT_TZ) -> tuple[datetime, datetime]:
    """``[start, end)`` of *month* in UTC, its boundaries at local midnight in *tz*."""
    first = date(month.year, month.month, 1)
    following = date(first.year + first.month // 12, first.month % 12 + 1, 1)
    start = datetime(first.year, first.month, 1, tzinfo=tz).astimezone(UTC)
    end = datetime(following.year, following.month, 1, tzinfo=tz).astimezone(UTC)
    return start, end


def current_month(now: datetime, tz: ZoneInfo = REPORT_TZ) -> date:
    """The month *now* falls in, in *tz*."""
    local = now.astimezone(tz)
    return date(local.year, local.month, 1)


def merge(intervals: Iterable[Interval]) -> list[Interval]:
    """Sorted, non-overlapping union of *intervals* (touching ones are joined; empty ones dropped)."""
    merged: list[Interval] = []
    for start, end in sorted(i for i in intervals if i[1] > i[0]):
        if merged and start <= merged[-1][1]:
            if end > merged[-1][1]:
                merged[-1] = (merged[-1][0], end)
        else:
            merged.append((start, end))
    return merged


def subtract(intervals: list[Interval], taken: list[Interval]) -> list[Interval]:
    """*intervals* minus *taken* (both sorted and non-overlapping, as :func:`merge` returns them)."""
    result: list[Interval] = []
    for start, end in intervals:
        cursor = start
        for t_start, t_end in taken:
            if t_end <= cursor or t_start >= end:
                continue
            if t_start > cursor:
                result.append((cursor, t_start))
            cursor = max(cursor, t_end)
            if cursor >= end:
                break
        if cursor < end:
            result.append((cursor, end))
    return result


def _length(intervals: Iterable[Interval]) -> float:
    return sum((end - start).total_seconds() for start, end in intervals)


def device_availability(
    device: ReportDevice, outages: Sequence[OutageSpan], start: datetime, end: datetime, now: datetime
) -> DeviceAvailability | None:
    """One device's line for ``[start, end)`` as of *now*; None when it was not observed at all in the period."""
    observed_from = max(start, device.first_seen)
    observed_to = min(end, now)
    if observed_to <= observed_from:
        return None
    per_cause: dict[str, list[Interval]] = defaultdict(list)
    for outage in outages:
        clipped = (max(outage.started_at, observed_from), min(outage.ended_at or observed_to, observed_to))
        if clipped[1] > clipped[0]:
            per_cause[outage.cause if outage.cause in CAUSES else "device"].append(clipped)
    by_cause: dict[str, CauseTotal] = {}
    taken: list[Interval] = []
    for cause in CAUSES:
        episodes = merge(per_cause.get(cause, []))
        own = subtract(episodes, taken)
        by_cause[cause] = CauseTotal(outages=len(episodes), down_s=_length(own))
        taken = merge([*taken, *own])
    return DeviceAvailability(device, observed_from, observed_to, _length(taken), by_cause)


def compute_availability(
    devices: Iterable[ReportDevice],
    outages: Iterable[OutageSpan],
    month: date,
    now: datetime,
    tz: ZoneInfo = REPORT_TZ,
) -> AvailabilityReport:
    """The availability report of *month*: one line per device observed in it, by site, node, kind and id."""
    start, end = month_period(month, tz)
    by_device: dict[tuple[str, str], list[OutageSpan]] = defaultdict(list)
    for outage in outages:
        by_device[(outage.node_id, outage.device_id)].append(outage)
    rows = [
        row
        for device in devices
        if (row := device_availability(device, by_device.get(device.key, []), start, end, now)) is not None
    ]
    rows.sort(
        key=lambda r: (
            natural_key(r.device.site),
            natural_key(r.device.node_id),
            _kind_rank(r.device.kind),
            natural_key(r.device.device_id),
        )
    )
    return AvailabilityReport(month=date(month.year, month.month, 1), start=start, end=end, generated_at=now, rows=rows)


def natural_key(text: str) -> tuple[tuple[int, int, str], ...]:
    """Sort key that puts ``cam-2`` before ``cam-10``."""
    return tuple(
        (0, int(part), "") if part.isascii() and part.isdigit() else (1, 0, part)
        for part in _DIGITS.split(text)
        if part
    )


def _kind_rank(kind: str) -> int:
    return REPORT_KINDS.index(kind) if kind in REPORT_KINDS else len(REPORT_KINDS)


def hours(seconds: float) -> float:
    """Seconds as hours."""
    return seconds / 3600.0


def minutes(seconds: float) -> float:
    """Seconds as minutes."""
    return seconds / 60.0


def month_length(month: date, tz: ZoneInfo = REPORT_TZ) -> timedelta:
    """How long *month* really is in *tz* (daylight-saving months are an hour shorter or longer)."""
    start, end = month_period(month, tz)
    return end - start


@dataclass(frozen=True, slots=True)
class KindSummary:
    """All devices of one kind together: time-weighted uptime and outages by cause."""

    kind: str
    devices: int
    observed_s: float
    down_s: float
    by_cause: dict[str, CauseTotal]

    @property
    def uptime(self) -> float:
        """Fraction of all observed device-time that was up (0..1)."""
        return 1.0 - self.down_s / self.observed_s if self.observed_s > 0 else 1.0

    @property
    def outages(self) -> int:
        """Outages of every cause."""
        return sum(c.outages for c in self.by_cause.values())


def summarize(report: AvailabilityReport) -> list[KindSummary]:
    """One line per kind present in *report*, in :data:`REPORT_KINDS` order."""
    groups: dict[str, list[DeviceAvailability]] = defaultdict(list)
    for row in report.rows:
        groups[row.device.kind].append(row)
    summaries: list[KindSummary] = []
    for kind in sorted(groups, key=_kind_rank):
        rows = groups[kind]
        by_cause = {
            cause: CauseTotal(
                outages=sum(r.by_cause[cause].outages for r in rows),
                down_s=sum(r.by_cause[cause].down_s for r in rows),
            )
            for cause in CAUSES
        }
        summaries.append(
            KindSummary(
                kind=kind,
                devices=len(rows),
                observed_s=sum(r.observed_s for r in rows),
                down_s=sum(r.down_s for r in rows),
                by_cause=by_cause,
            )
        )
    return summaries


def uptime_percent(uptime: float, down_s: float) -> float:
    """*uptime* as a percentage rounded to 2 decimals, never shown as 100 when there was any downtime."""
    value = round(uptime * 100.0, 2)
    return min(value, 99.99) if down_s > 0 else value
