"""Line charts of node health as plain SVG geometry (rendered by a Jinja macro; no JS chart library).

Samples are averaged into time buckets; an empty bucket breaks the line, so a node that was offline shows a gap
instead of a misleading straight line.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

WIDTH = 960
HEIGHT = 240
MARGIN_LEFT = 64
MARGIN_RIGHT = 24
MARGIN_TOP = 16
MARGIN_BOTTOM = 40
MAX_BUCKETS = 288


@dataclass(frozen=True, slots=True)
class Stats:
    """Summary of the plotted values."""

    minimum: float
    average: float
    maximum: float
    last: float


@dataclass(frozen=True, slots=True)
class Chart:
    """Everything the SVG macro draws, in viewBox coordinates."""

    width: int
    height: int
    left: float
    top: float
    right: float
    bottom: float
    lines: list[str] = field(default_factory=list)
    dots: list[tuple[float, float]] = field(default_factory=list)
    y_ticks: list[tuple[float, str]] = field(default_factory=list)
    x_ticks: list[tuple[float, int]] = field(default_factory=list)
    threshold: tuple[float, str] | None = None
    stats: Stats | None = None

    @property
    def empty(self) -> bool:
        """True when there is nothing to draw."""
        return self.stats is None


def _fmt(value: float) -> str:
    return f"{value:.1f}".rstrip("0").rstrip(".")


def line_chart(
    samples: Sequence[tuple[datetime, float | None]],
    *,
    start: datetime,
    end: datetime,
    y_min: float,
    y_max: float,
    min_bucket: timedelta = timedelta(minutes=5),
    max_gap: timedelta | None = None,
    threshold: float | None = None,
    x_tick_hours: int = 6,
) -> Chart:
    """Chart of *samples* (time, value; ``None`` values skipped) between *start* and *end*.

    Samples are averaged per bucket (at least *min_bucket* wide); the line breaks where no sample arrived for
    longer than *max_gap* (default: two buckets).
    """
    left, top = float(MARGIN_LEFT), float(MARGIN_TOP)
    right, bottom = float(WIDTH - MARGIN_RIGHT), float(HEIGHT - MARGIN_BOTTOM)
    span = (end - start).total_seconds()
    bucket_s = max(min_bucket.total_seconds(), span / MAX_BUCKETS)
    count = max(1, int(span // bucket_s))
    sums = [0.0] * count
    ns = [0] * count
    values: list[float] = []
    for ts, value in samples:
        if value is None or ts < start or ts > end:
            continue
        index = min(count - 1, int((ts - start).total_seconds() // bucket_s))
        sums[index] += value
        ns[index] += 1
        values.append(value)

    def x_of(seconds: float) -> float:
        return left + (right - left) * seconds / span

    def y_of(value: float) -> float:
        clamped = min(max(value, y_min), y_max)
        return bottom - (bottom - top) * (clamped - y_min) / (y_max - y_min)

    gap_buckets = max(2, math.ceil((max_gap.total_seconds() if max_gap else 0) / bucket_s))
    runs: list[list[tuple[float, float]]] = []
    current: list[tuple[float, float]] = []
    last = -1
    for i in range(count):
        if ns[i] == 0:
            continue
        if current and i - last > gap_buckets:
            runs.append(current)
            current = []
        current.append((round(x_of((i + 0.5) * bucket_s), 1), round(y_of(sums[i] / ns[i]), 1)))
        last = i
    if current:
        runs.append(current)

    y_ticks = [
        (round(y_of(y_min + (y_max - y_min) * k / 4), 1), _fmt(y_min + (y_max - y_min) * k / 4)) for k in range(5)
    ]
    hours = int(span // 3600)
    x_ticks = [(round(x_of(span - h * 3600), 1), h) for h in range(0, hours + 1, x_tick_hours)]
    stats = Stats(min(values), sum(values) / len(values), max(values), values[-1]) if values else None
    return Chart(
        width=WIDTH,
        height=HEIGHT,
        left=left,
        top=top,
        right=right,
        bottom=bottom,
        lines=[" ".join(f"{x},{y}" for x, y in run) for run in runs if len(run) > 1],
        dots=[run[0] for run in runs if len(run) == 1],
        y_ticks=y_ticks,
        x_ticks=x_ticks,
        threshold=(round(y_of(threshold), 1), _fmt(threshold)) if threshold is not None else None,
        stats=stats,
    )
