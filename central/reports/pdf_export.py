"""The availability report as a PDF (fpdf2), in Ukrainian or English.

The text is set in DejaVu Sans from Debian's ``fonts-dejavu-core`` (the core PDF fonts have no Cyrillic). Rendering
is CPU-bound and synchronous: call :func:`availability_pdf` in a thread.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from pathlib import Path
from typing import Final

from fpdf import FPDF
from fpdf.fonts import FontFace
from fpdf.table import Row

from central.reports import labels as words
from central.reports.availability import (
    CAUSES,
    REPORT_TZ,
    AvailabilityReport,
    DeviceAvailability,
    hours,
    minutes,
    summarize,
    uptime_percent,
)
from central.reports.labels import ReportLabels

FONT_DIR: Final = Path("/usr/share/fonts/truetype/dejavu")
FONT_FILES: Final = {"": "DejaVuSans.ttf", "B": "DejaVuSans-Bold.ttf"}
FAMILY: Final = "DejaVu"

#: Column widths in mm (A4 landscape, 10 mm margins: 277 mm of table); headings wrap between words, never inside.
WIDTHS: Final = (28, 24, 16, 49, 28, 23, 16, 17, 14, 17, 14, 17, 14)
SUMMARY_WIDTHS: Final = (30, 22, 28, 20, 32, 32, 36)
GREY: Final = (235, 235, 235)
SITE_FILL: Final = (214, 226, 240)
WARN_FILL: Final = (255, 236, 179)  # uptime below 99 %
BAD_FILL: Final = (248, 203, 203)  # uptime below 95 %


class ReportFontMissing(RuntimeError):
    """The DejaVu fonts are not installed (Debian package ``fonts-dejavu-core``)."""


def font_paths(font_dir: Path = FONT_DIR) -> dict[str, Path]:
    """Style → font file; raises :class:`ReportFontMissing` naming the missing file and the package to install."""
    paths = {style: font_dir / name for style, name in FONT_FILES.items()}
    for path in paths.values():
        if not path.is_file():
            raise ReportFontMissing(
                f"PDF font {path} is missing: install the Debian package fonts-dejavu-core (apt-get install"
                " fonts-dejavu-core)"
            )
    return paths


class _ReportPdf(FPDF):
    """A4 landscape with a footer: report title, period and "page n of N"."""

    def __init__(self, footer_text: str, page_text: str) -> None:
        super().__init__(orientation="L", unit="mm", format="A4")
        self._footer_text = footer_text
        self._page_text = page_text
        self.set_margins(10, 10, 10)
        self.set_auto_page_break(auto=True, margin=14)

    def footer(self) -> None:
        self.set_y(-10)
        self.set_font(FAMILY, "", 7)
        self.set_text_color(90, 90, 90)
        self.cell(0, 4, self._footer_text, align="L")
        self.set_x(self.l_margin)
        self.cell(0, 4, self._page_text % {"page": self.page_no(), "pages": self.str_alias_nb_pages}, align="R")
        self.set_text_color(0, 0, 0)


def _local(when: datetime) -> str:
    return when.astimezone(REPORT_TZ).strftime("%Y-%m-%d %H:%M")


def _uptime_fill(row_uptime: float) -> tuple[int, int, int] | None:
    if row_uptime < 0.95:
        return BAD_FILL
    if row_uptime < 0.99:
        return WARN_FILL
    return None


def availability_pdf(
    report: AvailabilityReport,
    labels: ReportLabels,
    sites: Mapping[str, str],
    *,
    font_dir: Path = FONT_DIR,
    compress: bool = True,
) -> bytes:
    """*report* as PDF bytes; *sites* maps site ids to names. Raises :class:`ReportFontMissing`."""
    fonts = font_paths(font_dir)
    title = f"{labels(words.TITLE)}: {labels.month(report.month)}"
    in_progress = report.generated_at < report.end
    period = f"{labels(words.PERIOD)}: {_local(report.start)} – {_local(report.end)}"
    if in_progress:
        period += f" {labels(words.IN_PROGRESS)}"
    generated = f"{labels(words.GENERATED)}: {_local(report.generated_at)}"
    pdf = _ReportPdf(f"Varta · {title} · {generated}", labels(words.PAGE_OF))
    for style, path in fonts.items():
        pdf.add_font(FAMILY, style, str(path))
    pdf.set_compression(compress)
    pdf.set_title(title)
    pdf.set_author("Varta")
    pdf.set_creator("Varta")
    pdf.set_lang(labels.language)
    pdf.set_creation_date(report.generated_at)
    pdf.add_page()

    pdf.set_font(FAMILY, "B", 16)
    pdf.cell(0, 9, title, new_x="LMARGIN", new_y="NEXT")
    pdf.set_font(FAMILY, "", 9)
    pdf.cell(0, 5, period, new_x="LMARGIN", new_y="NEXT")
    pdf.cell(0, 5, generated, new_x="LMARGIN", new_y="NEXT")
    pdf.set_font(FAMILY, "", 8)
    pdf.multi_cell(0, 4, f"{labels(words.TIME_ZONE_NOTE)} {labels(words.RULES_NOTE)}", new_x="LMARGIN", new_y="NEXT")
    pdf.ln(3)

    if not report.rows:
        pdf.set_font(FAMILY, "", 11)
        pdf.cell(0, 8, labels(words.NO_DEVICES), new_x="LMARGIN", new_y="NEXT")
        return bytes(pdf.output())

    _summary_table(pdf, report, labels)
    pdf.ln(4)
    _device_table(pdf, report, labels, sites)
    return bytes(pdf.output())


def _summary_table(pdf: FPDF, report: AvailabilityReport, labels: ReportLabels) -> None:
    pdf.set_font(FAMILY, "", 8)
    heading = FontFace(emphasis="BOLD", fill_color=GREY)
    with pdf.table(
        width=sum(SUMMARY_WIDTHS),
        col_widths=SUMMARY_WIDTHS,
        align="LEFT",
        text_align=("LEFT", "RIGHT", "RIGHT", "RIGHT", "RIGHT", "RIGHT", "RIGHT"),
        headings_style=heading,
        line_height=4.5,
    ) as table:
        row = table.row()
        heads = (words.KIND, words.DEVICES_OBSERVED, words.AVERAGE_UPTIME, words.OUTAGES)
        for msgid in heads:
            row.cell(labels(msgid) + (", %" if msgid == words.AVERAGE_UPTIME else ""))
        for cause in CAUSES:
            row.cell(f"{labels.cause(cause)}, {labels(words.MINUTES)}")
        for s in summarize(report):
            row = table.row()
            row.cell(labels.kind(s.kind))
            row.cell(str(s.devices))
            row.cell(labels.number(uptime_percent(s.uptime, s.down_s), 2))
            row.cell(str(s.outages))
            for cause in CAUSES:
                row.cell(labels.number(minutes(s.by_cause[cause].down_s), 1))


def _device_table(pdf: FPDF, report: AvailabilityReport, labels: ReportLabels, sites: Mapping[str, str]) -> None:
    pdf.set_font(FAMILY, "", 7.5)
    heading = FontFace(emphasis="BOLD", fill_color=GREY)
    with pdf.table(
        width=sum(WIDTHS),
        col_widths=WIDTHS,
        align="LEFT",
        text_align=("LEFT", "LEFT", "LEFT", "LEFT", *(["RIGHT"] * 9)),
        headings_style=heading,
        num_heading_rows=2,
        repeat_headings=1,
        line_height=4,
    ) as table:
        top = table.row()
        for text in (labels(words.NODE), labels(words.DEVICE), labels(words.KIND), labels(words.NAME)):
            top.cell(text, rowspan=2)
        for text in (labels(words.OBSERVED_H), labels(words.UPTIME) + ", %", labels(words.DOWN_MIN)):
            top.cell(text, rowspan=2)
        for cause in CAUSES:
            top.cell(labels.cause(cause), colspan=2, align="CENTER")
        sub = table.row()
        for _cause in CAUSES:
            sub.cell(labels(words.COUNT))
            sub.cell(labels(words.MINUTES))

        site_style = FontFace(emphasis="BOLD", fill_color=SITE_FILL)
        current_site: str | None = None
        for item in report.rows:
            if item.device.site != current_site:
                current_site = item.device.site
                name = sites.get(current_site)
                text = f"{labels(words.SITE)}: " + (f"{name} ({current_site})" if name else current_site)
                table.row().cell(text, colspan=len(WIDTHS), style=site_style, align="LEFT")
            _device_row(table.row(), item, labels)


def _device_row(row: Row, item: DeviceAvailability, labels: ReportLabels) -> None:
    d = item.device
    node_style = FontFace(emphasis="BOLD") if d.kind == "node" else None
    row.cell(d.node_id, style=node_style)
    row.cell(d.device_id or "—")
    row.cell(labels.kind(d.kind))
    row.cell(d.name or "")
    row.cell(labels.number(hours(item.observed_s), 1))
    fill = _uptime_fill(item.uptime)
    style = FontFace(emphasis="BOLD", fill_color=fill) if fill is not None else None
    row.cell(labels.number(uptime_percent(item.uptime, item.down_s), 2), style=style)
    row.cell(labels.number(minutes(item.down_s), 1))
    for cause in CAUSES:
        total = item.by_cause[cause]
        row.cell(str(total.outages) if total.outages else "")
        row.cell(labels.number(minutes(total.down_s), 1) if total.outages else "")
