"""Report API: monthly availability per device as JSON, CSV and PDF (observer and up: the IT staff's account).

``month`` is ``YYYY-MM`` (the current month when absent), in Europe/Kyiv local time; ``lang`` (``uk`` or ``en``)
picks the language of the CSV and PDF, central's ``default_language`` when absent. The PDF is rendered in a worker
thread with a time limit. Refused requests are counted by reason (``GET /api/v1/reports/stats``) and logged.
"""

from __future__ import annotations

import asyncio
import threading
from collections import Counter
from datetime import date
from typing import Annotated, Final, Literal

import structlog
from fastapi import APIRouter, Depends, HTTPException, Query, Response
from pydantic import BaseModel
from sqlalchemy.ext.asyncio import AsyncSession

from central.api.report_schemas import AvailabilityReportView, report_view
from central.auth.deps import require_role
from central.auth.roles import Role
from central.deps import SessionDep, get_services
from central.reports import pdf_export
from central.reports.availability import AvailabilityReport, BadMonth, current_month, parse_month
from central.reports.csv_export import availability_csv
from central.reports.labels import report_labels
from central.reports.loader import availability_report, site_names
from central.reports.pdf_export import ReportFontMissing
from central.services import Services
from varta.aio import wait_for
from varta.contract import utcnow

log = structlog.get_logger(__name__)

router = APIRouter(prefix="/api/v1/reports", tags=["reports"])

#: Longest a PDF may take to render (a thread cannot be stopped; the request gives up and says so).
PDF_TIMEOUT_S: Final = 60.0
#: PDFs rendered at once (each takes a core): the rest wait for a turn in their thread.
_PDF_SLOTS = threading.BoundedSemaphore(2)

Observer = Depends(require_role(Role.OBSERVER))
Month = Annotated[str | None, Query(description="YYYY-MM; the current month when absent")]
Lang = Annotated[Literal["uk", "en"] | None, Query(description="language of the file; central's default if absent")]
ServicesDep = Annotated[Services, Depends(get_services)]


class ReportStats(BaseModel):
    """Reports served by format, and requests refused or failed by reason."""

    served: dict[str, int]
    refused: dict[str, int]


_served: Counter[str] = Counter()
_refused: Counter[str] = Counter()


def stats() -> ReportStats:
    """Counters of this process's report API."""
    return ReportStats(served=dict(_served), refused=dict(_refused))


def _refuse(reason: str, status: int, detail: str, **fields: object) -> HTTPException:
    _refused[reason] += 1
    log.warning("report.refused", reason=reason, detail=detail, **fields)
    return HTTPException(status, detail)


def _month(text: str | None) -> date:
    if text is None or text == "":
        return current_month(utcnow())
    try:
        return parse_month(text)
    except BadMonth as exc:
        raise _refuse("bad_month", 422, str(exc), month=text[:20]) from None


async def _report(session: AsyncSession, month: date) -> AvailabilityReport:
    return await availability_report(session, month, utcnow())


def _filename(month: date, language: str, extension: str) -> str:
    return f"varta-availability-{month:%Y-%m}-{language}.{extension}"


@router.get("/availability", response_model=AvailabilityReportView, dependencies=[Observer])
async def availability_json(session: SessionDep, services: ServicesDep, month: Month = None) -> AvailabilityReportView:
    """Availability of every node, camera, kiosk and siren in *month*: uptime and outages by cause."""
    report = await _report(session, _month(month))
    _served["json"] += 1
    return report_view(report, site_names(services.config.sites))


@router.get(
    "/availability.csv",
    response_class=Response,
    dependencies=[Observer],
    responses={200: {"content": {"text/csv": {}}, "description": "UTF-8 with BOM, ';'-separated"}},
)
async def availability_csv_file(
    session: SessionDep, services: ServicesDep, month: Month = None, lang: Lang = None
) -> Response:
    """The report as CSV (UTF-8 with BOM, ``;``, decimal comma in Ukrainian) for spreadsheets."""
    the_month = _month(month)
    language = lang or services.config.default_language
    report = await _report(session, the_month)
    body = availability_csv(report, report_labels(language), site_names(services.config.sites))
    _served["csv"] += 1
    return Response(
        body,
        media_type="text/csv; charset=utf-8",
        headers={"content-disposition": f'attachment; filename="{_filename(the_month, language, "csv")}"'},
    )


def _render_pdf(report: AvailabilityReport, language: str, sites: dict[str, str]) -> bytes:
    with _PDF_SLOTS:
        return pdf_export.availability_pdf(report, report_labels(language), sites, font_dir=pdf_export.FONT_DIR)


@router.get(
    "/availability.pdf",
    response_class=Response,
    dependencies=[Observer],
    responses={
        200: {"content": {"application/pdf": {}}, "description": "A4 landscape"},
        503: {"description": "the PDF fonts are not installed, or rendering took too long"},
    },
)
async def availability_pdf_file(
    session: SessionDep, services: ServicesDep, month: Month = None, lang: Lang = None
) -> Response:
    """The report as a PDF (A4 landscape, DejaVu Sans so Ukrainian renders)."""
    the_month = _month(month)
    language = lang or services.config.default_language
    report = await _report(session, the_month)
    sites = site_names(services.config.sites)
    try:
        body = await wait_for(asyncio.to_thread(_render_pdf, report, language, sites), PDF_TIMEOUT_S)
    except ReportFontMissing as exc:
        raise _refuse("font_missing", 503, str(exc)) from None
    except TimeoutError:
        raise _refuse("pdf_timeout", 503, f"the PDF took longer than {PDF_TIMEOUT_S:.0f} s to render") from None
    except Exception as exc:
        log.exception("report.pdf_failed", month=f"{the_month:%Y-%m}")
        raise _refuse("pdf_failed", 500, f"the PDF could not be rendered: {type(exc).__name__}") from None
    _served["pdf"] += 1
    return Response(
        body,
        media_type="application/pdf",
        headers={"content-disposition": f'attachment; filename="{_filename(the_month, language, "pdf")}"'},
    )


@router.get("/stats", response_model=ReportStats, dependencies=[Depends(require_role(Role.OPERATOR))])
async def report_stats() -> ReportStats:
    """Reports served by format and requests refused by reason, since this process started."""
    return stats()
