"""Availability arithmetic: a scripted month of outages gives the uptime and durations worked out by hand.

The month is May 2025 in Kyiv (UTC+3 all month): it runs from 2025-04-30 21:00 UTC to 2025-05-31 21:00 UTC,
31 days = 744 h = 2,678,400 s. Every expected number below was worked out by hand from the table of outages.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from central.reports.availability import (
    BadMonth,
    DeviceAvailability,
    OutageSpan,
    ReportDevice,
    compute_availability,
    current_month,
    merge,
    month_length,
    month_period,
    parse_month,
    subtract,
    summarize,
    uptime_percent,
)

MAY = date(2025, 5, 1)
LONG_AGO = datetime(2025, 3, 1, tzinfo=UTC)
AFTER_MAY = datetime(2025, 6, 15, 12, 0, tzinfo=UTC)


def at(day: str) -> datetime:
    """``"05-05 08:00"`` → 2025-05-05 08:00 UTC."""
    return datetime.strptime(f"2025-{day}", "%Y-%m-%d %H:%M").replace(tzinfo=UTC)


NODE = ReportDevice("school", "school-01", "", "node", "Школа №3", LONG_AGO)
CAM1 = ReportDevice("school", "school-01", "cam-1", "camera", "Вхід", LONG_AGO)
CAM2 = ReportDevice("school", "school-01", "cam-2", "camera", "Двір", LONG_AGO)
SIREN = ReportDevice("school", "school-01", "siren-1", "siren", "Сирена", LONG_AGO)
KIOSK = ReportDevice("school", "school-01", "kiosk-1", "kiosk", "Кіоск", at("05-16 21:00"))  # added on 17 May
LATE_NODE = ReportDevice("park", "park-02", "", "node", "Парк", at("06-03 09:00"))  # first heard of in June

OUTAGES = [
    # The node: a blackout across the month boundary (20:00-23:00 UTC on 30 April, the month starts at 21:00),
    # then half an hour without uplink.
    OutageSpan("school-01", "", "power", at("04-30 20:00"), at("04-30 23:00")),
    OutageSpan("school-01", "", "network", at("05-10 10:00"), at("05-10 10:30")),
    # cam-1: broken 08:00-12:00, a power cut 10:00-11:00 inside it, broken again 11:30-13:00 (overlapping).
    OutageSpan("school-01", "cam-1", "device", at("05-05 08:00"), at("05-05 12:00")),
    OutageSpan("school-01", "cam-1", "power", at("05-05 10:00"), at("05-05 11:00")),
    OutageSpan("school-01", "cam-1", "device", at("05-05 11:30"), at("05-05 13:00")),
    # cam-2: only an April outage (outside the month).
    OutageSpan("school-01", "cam-2", "device", at("04-10 08:00"), at("04-10 09:00")),
    # siren-1: fails at 18:00 UTC on 31 May and is still down.
    OutageSpan("school-01", "siren-1", "device", at("05-31 18:00"), None),
    # kiosk-1 (observed from 16 May 21:00): a power cut from 20:00 (before it was known) to 22:00, then 6 h of network.
    OutageSpan("school-01", "kiosk-1", "power", at("05-16 20:00"), at("05-16 22:00")),
    OutageSpan("school-01", "kiosk-1", "network", at("05-20 00:00"), at("05-20 06:00")),
    # An outage of a device the report does not list is ignored.
    OutageSpan("school-01", "ups-1", "power", at("05-02 00:00"), at("05-02 01:00")),
]
DEVICES = [KIOSK, SIREN, CAM2, CAM1, NODE, LATE_NODE]


def report_rows() -> dict[str, DeviceAvailability]:
    report = compute_availability(DEVICES, OUTAGES, MAY, AFTER_MAY)
    return {r.device.device_id or r.device.node_id: r for r in report.rows}


def test_may_in_kyiv_starts_and_ends_at_local_midnight() -> None:
    start, end = month_period(MAY)

    assert start == datetime(2025, 4, 30, 21, 0, tzinfo=UTC)
    assert end == datetime(2025, 5, 31, 21, 0, tzinfo=UTC)
    assert (end - start).total_seconds() == 2_678_400


def test_daylight_saving_months_are_an_hour_short_or_long() -> None:
    assert month_length(date(2025, 3, 1)) == timedelta(hours=743)  # clocks go forward on 30 March
    assert month_length(date(2025, 10, 1)) == timedelta(hours=745)  # and back on 26 October
    assert month_period(date(2025, 12, 1)) == (
        datetime(2025, 11, 30, 22, 0, tzinfo=UTC),
        datetime(2025, 12, 31, 22, 0, tzinfo=UTC),
    )


def test_an_outage_across_the_month_boundary_counts_only_its_part_in_the_month() -> None:
    node = report_rows()["school-01"]

    assert node.observed_s == 2_678_400
    # power 21:00-23:00 = 7,200 s, network 10:00-10:30 = 1,800 s.
    assert node.by_cause["power"].down_s == 7_200
    assert node.by_cause["power"].outages == 1
    assert node.by_cause["network"].down_s == 1_800
    assert node.by_cause["device"].outages == 0
    assert node.down_s == 9_000
    # 1 - 9,000 / 2,678,400 = 0.996639785…
    assert node.uptime == pytest.approx(0.996639785, abs=1e-9)
    assert uptime_percent(node.uptime, node.down_s) == 99.66


def test_overlapping_outages_never_count_twice() -> None:
    cam = report_rows()["cam-1"]

    # Union 08:00-13:00 = 18,000 s. Power owns 10:00-11:00 = 3,600 s; the rest, 14,400 s, is the device's.
    assert cam.down_s == 18_000
    assert cam.by_cause["power"].down_s == 3_600
    assert cam.by_cause["device"].down_s == 14_400
    # The two overlapping device outages are one outage; the power cut is another.
    assert cam.by_cause["device"].outages == 1
    assert cam.by_cause["power"].outages == 1
    assert cam.outages == 2
    # 1 - 18,000 / 2,678,400 = 0.993279569…
    assert uptime_percent(cam.uptime, cam.down_s) == 99.33


def test_an_open_outage_counts_until_the_end_of_the_month() -> None:
    siren = report_rows()["siren-1"]

    # 18:00 to the month's end at 21:00 = 10,800 s; 1 - 10,800 / 2,678,400 = 0.995967741…
    assert siren.down_s == 10_800
    assert siren.by_cause["device"].outages == 1
    assert uptime_percent(siren.uptime, siren.down_s) == 99.60


def test_a_device_added_mid_month_is_observed_from_when_it_appeared() -> None:
    kiosk = report_rows()["kiosk-1"]

    # Observed 16 May 21:00 → 31 May 21:00 = 15 days = 1,296,000 s.
    assert kiosk.observed_from == at("05-16 21:00")
    assert kiosk.observed_s == 1_296_000
    # Power only from 21:00 to 22:00 = 3,600 s (the hour before it was known does not count); network 21,600 s.
    assert kiosk.by_cause["power"].down_s == 3_600
    assert kiosk.by_cause["network"].down_s == 21_600
    assert kiosk.down_s == 25_200
    # 1 - 25,200 / 1,296,000 = 0.980555…
    assert uptime_percent(kiosk.uptime, kiosk.down_s) == 98.06


def test_a_device_without_outages_in_the_month_is_fully_up_and_one_not_yet_known_is_left_out() -> None:
    rows = report_rows()

    assert rows["cam-2"].down_s == 0
    assert uptime_percent(rows["cam-2"].uptime, 0) == 100.0
    assert "park-02" not in rows
    assert "ups-1" not in rows


def test_rows_are_ordered_node_first_then_cameras_kiosks_sirens() -> None:
    report = compute_availability(DEVICES, OUTAGES, MAY, AFTER_MAY)

    assert [r.device.device_id for r in report.rows] == ["", "cam-1", "cam-2", "kiosk-1", "siren-1"]


def test_the_summary_weights_each_kind_by_observed_time() -> None:
    report = compute_availability(DEVICES, OUTAGES, MAY, AFTER_MAY)
    summary = {s.kind: s for s in summarize(report)}

    assert list(summary) == ["node", "camera", "kiosk", "siren"]
    cameras = summary["camera"]
    assert cameras.devices == 2
    assert cameras.observed_s == 5_356_800  # 2 x 2,678,400
    assert cameras.down_s == 18_000
    # 1 - 18,000 / 5,356,800 = 0.996639785…
    assert uptime_percent(cameras.uptime, cameras.down_s) == 99.66
    assert cameras.outages == 2
    assert cameras.by_cause["device"].down_s == 14_400


def test_a_month_in_progress_runs_up_to_now() -> None:
    now = at("05-11 21:00")  # local midnight starting 12 May: 11 days of May have passed
    outages = [OutageSpan("school-01", "siren-1", "device", at("05-10 21:00"), None)]

    report = compute_availability([SIREN, KIOSK], outages, MAY, now)

    assert [r.device.device_id for r in report.rows] == ["siren-1"]  # the kiosk is not known yet
    siren = report.rows[0]
    assert siren.observed_s == 950_400  # 11 x 86,400
    assert siren.down_s == 86_400
    # 1 - 86,400 / 950,400 = 0.909090…
    assert uptime_percent(siren.uptime, siren.down_s) == 90.91


def test_a_second_of_downtime_is_never_shown_as_100_percent() -> None:
    outages = [OutageSpan("school-01", "cam-2", "device", at("05-05 08:00"), at("05-05 08:00") + timedelta(seconds=1))]

    row = compute_availability([CAM2], outages, MAY, AFTER_MAY).rows[0]

    assert row.down_s == 1
    assert uptime_percent(row.uptime, row.down_s) == 99.99


def test_an_unknown_cause_is_counted_as_the_device() -> None:
    outages = [OutageSpan("school-01", "cam-2", "gremlins", at("05-05 08:00"), at("05-05 09:00"))]

    row = compute_availability([CAM2], outages, MAY, AFTER_MAY).rows[0]

    assert row.by_cause["device"].down_s == 3_600
    assert set(row.by_cause) == {"power", "network", "device"}


@pytest.mark.parametrize(
    "text", ["2025-5", "25-05", "2025-13", "2025-00", "abcd-ef", "2025-05-01", "", "1999-12", "２０２５-05"]
)
def test_bad_months_are_refused(text: str) -> None:
    with pytest.raises(BadMonth):
        parse_month(text)


def test_months_parse_and_the_current_month_is_the_local_one() -> None:
    assert parse_month("2025-05") == MAY
    # 30 April 22:00 UTC is already 1 May in Kyiv.
    assert current_month(datetime(2025, 4, 30, 22, 0, tzinfo=UTC)) == MAY


def test_merge_and_subtract() -> None:
    a, b, c, d = at("05-01 00:00"), at("05-01 01:00"), at("05-01 02:00"), at("05-01 03:00")

    assert merge([(c, d), (a, b), (b, c)]) == [(a, d)]  # touching intervals join
    assert merge([(b, a)]) == []  # empty or reversed ones vanish
    assert subtract([(a, d)], [(b, c)]) == [(a, b), (c, d)]
    assert subtract([(a, b)], [(a, d)]) == []


# ------------------------------------------------------------------------------------- against brute force

MINUTE = timedelta(minutes=1)
BASE = datetime(2025, 4, 30, 20, 0, tzinfo=UTC)  # an hour before May starts in Kyiv
SPAN_MIN = 32 * 24 * 60  # outages may lie anywhere from then to after the month


outage_strategy = st.tuples(
    st.sampled_from(["power", "network", "device"]),
    st.integers(0, SPAN_MIN),
    st.one_of(st.none(), st.integers(0, 3000)),
)


@settings(max_examples=200, deadline=None)
@given(
    spans=st.lists(outage_strategy, max_size=8),
    first_seen_min=st.integers(0, SPAN_MIN),
    now_min=st.integers(0, SPAN_MIN + 120),
)
def test_downtime_matches_a_minute_by_minute_count(
    spans: list[tuple[str, int, int | None]], first_seen_min: int, now_min: int
) -> None:
    device = ReportDevice("s", "n", "d", "camera", "", BASE + first_seen_min * MINUTE)
    outages = [
        OutageSpan("n", "d", cause, BASE + start * MINUTE, None if length is None else BASE + (start + length) * MINUTE)
        for cause, start, length in spans
    ]
    now = BASE + now_min * MINUTE

    report = compute_availability([device], outages, MAY, now)

    start, end = month_period(MAY)
    lo, hi = max(start, device.first_seen), min(end, now)
    if hi <= lo:
        assert report.rows == []
        return
    row = report.rows[0]
    down_minutes = 0
    by_cause = {"power": 0, "network": 0, "device": 0}
    t = lo
    while t < hi:
        covering = [o.cause for o in outages if o.started_at <= t and (o.ended_at is None or t < o.ended_at)]
        if covering:
            down_minutes += 1
            by_cause[next(c for c in ("power", "network", "device") if c in covering)] += 1
        t += MINUTE
    assert row.down_s == down_minutes * 60
    assert {c: row.by_cause[c].down_s for c in by_cause} == {c: m * 60 for c, m in by_cause.items()}
    assert 0.0 <= row.uptime <= 1.0
