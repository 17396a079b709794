"""Pure rendering helpers: "2 хв тому" ages, uptimes, and the SVG health charts."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from central.dashboard.charts import line_chart
from central.dashboard.i18n import translations
from central.dashboard.templating import duration, relative_time

NOW = datetime(2025, 5, 1, 12, 0, tzinfo=UTC)
UK = translations("uk").gettext
EN = translations("en").gettext


@pytest.mark.parametrize(
    ("age", "uk", "en"),
    [
        (timedelta(seconds=10), "щойно", "just now"),
        (timedelta(seconds=50), "1 хв тому", "1 min ago"),
        (timedelta(minutes=2, seconds=59), "2 хв тому", "2 min ago"),
        (timedelta(minutes=59), "59 хв тому", "59 min ago"),
        (timedelta(hours=3, minutes=7), "3 год 7 хв тому", "3 h 7 min ago"),
        (timedelta(hours=47), "47 год 0 хв тому", "47 h 0 min ago"),
        (timedelta(days=3, hours=5), "3 д 5 год тому", "3 d 5 h ago"),
        (timedelta(seconds=-30), "щойно", "just now"),  # a clock slightly ahead is "now", not the future
    ],
)
def test_relative_time_reads_like_a_person_would_say_it(age: timedelta, uk: str, en: str) -> None:
    assert relative_time(NOW - age, UK, NOW) == uk
    assert relative_time(NOW - age, EN, NOW) == en


def test_relative_time_of_nothing_is_never() -> None:
    assert relative_time(None, UK, NOW) == "ніколи"


def test_uptime_is_days_and_hours_or_hours_and_minutes() -> None:
    assert duration(3 * 86400 + 4 * 3600 + 59, UK) == "3 д 4 год"
    assert duration(2 * 3600 + 5 * 60, UK) == "2 год 5 хв"
    assert duration(59, EN) == "0 min"
    assert duration(None, EN) == "—"


def samples(minutes: range, value: float = 50.0) -> list[tuple[datetime, float | None]]:
    return [(NOW - timedelta(minutes=m), value) for m in minutes]


def test_chart_draws_one_line_for_regular_samples() -> None:
    chart = line_chart(samples(range(0, 24 * 60, 1)), start=NOW - timedelta(hours=24), end=NOW, y_min=0, y_max=100)

    assert len(chart.lines) == 1
    assert chart.dots == []
    points = [tuple(map(float, p.split(","))) for p in chart.lines[0].split()]
    assert all(chart.left <= x <= chart.right for x, _ in points)
    assert {y for _, y in points} == {(chart.top + chart.bottom) / 2}  # 50 % is half-way up
    assert chart.stats is not None
    assert (chart.stats.minimum, chart.stats.maximum) == (50.0, 50.0)
    assert [label for _, label in chart.y_ticks] == ["0", "25", "50", "75", "100"]
    assert [h for _, h in chart.x_ticks] == [0, 6, 12, 18, 24]


def test_chart_breaks_the_line_where_reports_stopped() -> None:
    data = samples(range(0, 300)) + samples(range(600, 24 * 60))  # nothing between 5 h and 10 h ago

    chart = line_chart(data, start=NOW - timedelta(hours=24), end=NOW, y_min=0, y_max=100)

    assert len(chart.lines) == 2
    older, newer = ([float(p.split(",")[0]) for p in line.split()] for line in chart.lines)
    gap_start = chart.left + (chart.right - chart.left) * (14 / 24)
    gap_end = chart.left + (chart.right - chart.left) * (19 / 24)
    assert max(older) < gap_start + 10 and min(newer) > gap_end - 10


def test_sparse_but_regular_samples_still_make_a_line() -> None:
    chart = line_chart(
        samples(range(0, 24 * 60, 10)),
        start=NOW - timedelta(hours=24),
        end=NOW,
        y_min=0,
        y_max=100,
        max_gap=timedelta(minutes=15),
    )

    assert len(chart.lines) == 1


def test_chart_clamps_values_and_skips_missing_ones() -> None:
    data: list[tuple[datetime, float | None]] = [(NOW - timedelta(minutes=1), 250.0), (NOW, None)]

    chart = line_chart(data, start=NOW - timedelta(hours=1), end=NOW, y_min=0, y_max=100)

    assert chart.lines == []
    assert chart.dots == [(chart.dots[0][0], chart.top)]  # drawn at the top edge, not off the chart
    assert chart.stats is not None and chart.stats.maximum == 250.0  # the caption still tells the truth


def test_empty_chart_says_so() -> None:
    chart = line_chart([], start=NOW - timedelta(hours=24), end=NOW, y_min=0, y_max=100, threshold=80)

    assert chart.empty
    assert chart.lines == []
    assert chart.dots == []
    assert chart.threshold is not None and chart.threshold[1] == "80"
