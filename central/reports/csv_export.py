"""The availability report as CSV for spreadsheets.

UTF-8 with a byte-order mark (so Excel opens Cyrillic names correctly), fields separated by ``;`` and lines by
CRLF, numbers with a decimal comma in Ukrainian and a decimal point in English: the way Excel and LibreOffice read
CSV in those locales. Text that a spreadsheet would take for a formula (``=``, ``+``, ``-``, ``@``) is prefixed
with ``'``: device names come from the nodes.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Mapping
from typing import Final

from central.reports import labels as words
from central.reports.availability import CAUSES, AvailabilityReport, hours, minutes, uptime_percent
from central.reports.labels import ReportLabels

BOM: Final = "\ufeff"
DELIMITER: Final = ";"
_FORMULA_START: Final = ("=", "+", "-", "@", "\t", "\r")


def safe_text(value: str) -> str:
    """*value* made harmless for spreadsheets (no formula injection)."""
    return "'" + value if value.startswith(_FORMULA_START) else value


def header(labels: ReportLabels) -> list[str]:
    """The column titles."""
    columns = [
        labels(words.SITE),
        labels(words.NODE),
        labels(words.DEVICE),
        labels(words.KIND),
        labels(words.NAME),
        labels(words.OBSERVED_H),
        labels(words.UPTIME) + ", %",
        labels(words.DOWN_MIN),
    ]
    for cause in CAUSES:
        columns += [f"{labels.cause(cause)}: {labels(words.COUNT)}", f"{labels.cause(cause)}: {labels(words.MINUTES)}"]
    return columns


def availability_csv(report: AvailabilityReport, labels: ReportLabels, sites: Mapping[str, str]) -> bytes:
    """*report* as CSV bytes (see the module docstring); *sites* maps site ids to names."""
    out = io.StringIO()
    writer = csv.writer(out, delimiter=DELIMITER, lineterminator="\r\n", quoting=csv.QUOTE_MINIMAL)
    writer.writerow(header(labels))
    for row in report.rows:
        d = row.device
        site = sites.get(d.site) or d.site
        cells = [
            safe_text(site),
            safe_text(d.node_id),
            safe_text(d.device_id),
            labels.kind(d.kind),
            safe_text(d.name),
            labels.number(hours(row.observed_s), 2),
            labels.number(uptime_percent(row.uptime, row.down_s), 2),
            labels.number(minutes(row.down_s), 1),
        ]
        for cause in CAUSES:
            total = row.by_cause[cause]
            cells += [str(total.outages), labels.number(minutes(total.down_s), 1)]
        writer.writerow(cells)
    return (BOM + out.getvalue()).encode("utf-8")
