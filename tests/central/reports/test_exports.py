"""The availability report as CSV (for spreadsheets) and PDF (for the annual report), Ukrainian by default."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from central.dashboard.i18n import extract_msgids
from central.reports import labels as report_label_module
from central.reports.availability import AvailabilityReport, OutageSpan, ReportDevice, compute_availability
from central.reports.csv_export import availability_csv
from central.reports.labels import report_labels
from central.reports.pdf_export import ReportFontMissing, availability_pdf
from tests.central.reports.pdf_text import page_count, page_texts
from tests.central.reports.test_availability import AFTER_MAY, DEVICES, MAY, OUTAGES

SITES = {"school": "Школа №3 на Подолі"}


def may_report() -> AvailabilityReport:
    return compute_availability(DEVICES, OUTAGES, MAY, AFTER_MAY)


def csv_rows(data: bytes) -> list[list[str]]:
    assert data.startswith("\ufeff".encode())  # the BOM that makes Excel read UTF-8
    text = data.decode("utf-8").removeprefix("\ufeff")
    assert "\r\n" in text
    return list(csv.reader(io.StringIO(text, newline=""), delimiter=";"))


def flat(text: str) -> str:
    """*text* with every run of white space (also where a table cell wrapped) as one space."""
    return " ".join(text.split())


def big_report(devices: int) -> AvailabilityReport:
    first = datetime(2025, 3, 1, tzinfo=UTC)
    devs = [
        ReportDevice(
            f"site-{i % 4}",
            f"node-{i // 5}",
            "" if i % 5 == 0 else f"cam-{i}",
            "node" if i % 5 == 0 else "camera",
            f"Камера {i}",
            first,
        )
        for i in range(devices)
    ]
    outs = [
        OutageSpan(
            d.node_id, d.device_id, "power", datetime(2025, 5, 3, tzinfo=UTC), datetime(2025, 5, 3, 4, tzinfo=UTC)
        )
        for d in devs[::3]
    ]
    return compute_availability(devs, outs, MAY, AFTER_MAY)


# --------------------------------------------------------------------------------------------------- CSV


def test_csv_is_excel_friendly_ukrainian_with_hand_computed_figures() -> None:
    rows = csv_rows(availability_csv(may_report(), report_labels("uk"), SITES))

    header = rows[0]
    assert header[:8] == [
        "Об’єкт",
        "Вузол",
        "Пристрій",
        "Тип",
        "Назва",
        "Спостереження, год",
        "Доступність, %",
        "Простій, хв",
    ]
    assert header[8:] == [
        "Живлення: кількість",
        "Живлення: хв",
        "Мережа: кількість",
        "Мережа: хв",
        "Несправність пристрою: кількість",
        "Несправність пристрою: хв",
    ]
    by_device = {r[2]: r for r in rows[1:]}
    assert list(by_device) == ["", "cam-1", "cam-2", "kiosk-1", "siren-1"]
    # The node: 744 h observed, 9,000 s = 150 min down (power 120 min, network 30 min), 99.66 %.
    assert by_device[""] == [
        "Школа №3 на Подолі",
        "school-01",
        "",
        "Вузол",
        "Школа №3",
        "744,00",
        "99,66",
        "150,0",
        "1",
        "120,0",
        "1",
        "30,0",
        "0",
        "0,0",
    ]
    # cam-1: 300 min down: 60 for power, 240 for the device.
    assert by_device["cam-1"][6:] == ["99,33", "300,0", "1", "60,0", "0", "0,0", "1", "240,0"]
    # The kiosk added on 17 May: 360 h observed, 420 min down.
    assert by_device["kiosk-1"][3:9] == ["Кіоск", "Кіоск", "360,00", "98,06", "420,0", "1"]
    assert by_device["siren-1"][3] == "Сирена"


def test_csv_in_english_uses_a_decimal_point() -> None:
    rows = csv_rows(availability_csv(may_report(), report_labels("en"), {}))

    assert rows[0][:3] == ["Site", "Node", "Device"]
    assert rows[0][8] == "Power: count"
    node = rows[1]
    assert node[:7] == ["school", "school-01", "", "Node", "Школа №3", "744.00", "99.66"]


def test_csv_defuses_names_a_spreadsheet_would_run_as_formulas() -> None:
    devices = [
        ReportDevice(
            "s", "n-1", "cam-1", "camera", '=HYPERLINK("http://evil.example","x")', AFTER_MAY - timedelta(days=90)
        )
    ]

    rows = csv_rows(availability_csv(compute_availability(devices, [], MAY, AFTER_MAY), report_labels("en"), {}))

    assert rows[1][4] == '\'=HYPERLINK("http://evil.example","x")'


# --------------------------------------------------------------------------------------------------- PDF


def test_pdf_is_one_page_with_ukrainian_headings_and_figures() -> None:
    data = availability_pdf(may_report(), report_labels("uk"), SITES, compress=False)

    assert data.startswith(b"%PDF-1.")
    assert data.rstrip().endswith(b"%%EOF")
    assert page_count(data) == 1
    text = page_texts(data)[0]
    assert "Звіт про доступність: травень 2025" in text
    assert "Період: 2025-05-01 00:00 – 2025-06-01 00:00" in text
    for heading in ("Вузол", "Пристрій", "Живлення", "Мережа", "кількість"):
        assert heading in text.splitlines(), heading
    for heading in ("Доступність, %", "Спостереження, год", "Несправність пристрою", "Середня доступність, %"):
        assert heading in flat(text), heading
    assert "Об’єкт: Школа №3 на Подолі (school)" in text
    assert "Школа №3" in text.splitlines()
    assert "99,66" in text.splitlines()  # the node's uptime
    assert "99,33" in text.splitlines()  # cam-1
    assert flat(text).endswith("Сторінка 1 з 1")


def test_pdf_in_english() -> None:
    data = availability_pdf(may_report(), report_labels("en"), SITES, compress=False)

    text = page_texts(data)[0]
    assert "Availability report: May 2025" in text
    assert "Availability, %" in flat(text)
    assert "99.66" in text.splitlines()
    assert flat(text).endswith("Page 1 of 1")


def test_a_long_pdf_numbers_its_pages_and_repeats_the_table_heading() -> None:
    data = availability_pdf(big_report(200), report_labels("uk"), {}, compress=False)

    pages = page_count(data)
    assert pages >= 4  # 200 lines and 4 site headings at about 35 lines a page
    texts = page_texts(data)
    for number, text in enumerate(texts, start=1):
        assert flat(text).endswith(f"Сторінка {number} з {pages}"), number
        assert "Доступність, %" in flat(text), number
    everything = "\n".join(texts)
    assert everything.count("Камера 199") == 1
    assert all(f"Об’єкт: site-{i}" in everything for i in range(4))


def test_the_compressed_pdf_reads_the_same() -> None:
    report = big_report(60)
    plain = availability_pdf(report, report_labels("uk"), {}, compress=False)
    packed = availability_pdf(report, report_labels("uk"), {})

    assert len(packed) < len(plain)
    assert page_count(packed) == page_count(plain)
    assert page_texts(packed) == page_texts(plain)


def test_an_empty_month_says_so() -> None:
    report = compute_availability([], [], MAY, AFTER_MAY)

    text = page_texts(availability_pdf(report, report_labels("uk"), {}, compress=False))[0]

    assert "Жоден пристрій не спостерігався в цьому місяці." in text


def test_a_missing_font_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(
        ReportFontMissing, match=r"DejaVuSans\.ttf is missing: install the Debian package fonts-dejavu-core"
    ):
        availability_pdf(may_report(), report_labels("uk"), {}, font_dir=tmp_path)


names = st.text(st.characters(blacklist_categories=("Cs",)), max_size=200)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(name=names, node_name=names, site_name=names)
def test_any_device_name_renders_in_both_formats(name: str, node_name: str, site_name: str) -> None:
    first = datetime(2025, 3, 1, tzinfo=UTC)
    devices = [
        ReportDevice("s", "n-1", "", "node", node_name, first),
        ReportDevice("s", "n-1", "cam-1", "camera", name, first),
    ]
    report = compute_availability(devices, [], MAY, AFTER_MAY)

    pdf = availability_pdf(report, report_labels("uk"), {"s": site_name})
    rows = csv_rows(availability_csv(report, report_labels("uk"), {"s": site_name}))

    assert page_count(pdf) >= 1
    assert len(rows) == 3


def test_every_report_word_is_extracted_for_the_catalogs() -> None:
    msgids = {v for k, v in vars(report_label_module).items() if k.isupper() and isinstance(v, str)}
    msgids |= set(report_label_module.KIND_MSGIDS.values()) | set(report_label_module.CAUSE_MSGIDS.values())

    assert msgids - extract_msgids() == set()
