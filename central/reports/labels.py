"""The words of the availability report (CSV, PDF and the dashboard page), in the report's language.

msgids are English and live in the dashboard's gettext catalogs; the report page's template uses the same msgids,
so the catalog extraction finds them there too.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import date
from typing import Final

from babel.dates import format_date

from central.dashboard.i18n import N_, translations

KIND_MSGIDS: Final = {"node": N_("Node"), "camera": N_("Camera"), "kiosk": N_("Kiosk"), "siren": N_("Siren")}
CAUSE_MSGIDS: Final = {"power": N_("Power"), "network": N_("Network"), "device": N_("Device fault")}

TITLE: Final = N_("Availability report")
SITE: Final = N_("Site")
NODE: Final = N_("Node")
DEVICE: Final = N_("Device")
KIND: Final = N_("Kind")
NAME: Final = N_("Name")
OBSERVED_H: Final = N_("Observed, h")
UPTIME: Final = N_("Availability")
DOWN_MIN: Final = N_("Down, min")
OUTAGES: Final = N_("Outages")
MINUTES: Final = N_("minutes")
COUNT: Final = N_("count")
PERIOD: Final = N_("Period")
GENERATED: Final = N_("Generated")
TIME_ZONE_NOTE: Final = N_(
    "Times are local time in Kyiv (Europe/Kyiv); the month runs from local midnight to midnight."
)
RULES_NOTE: Final = N_(
    "Availability is the share of the observed time a device was up. A device is observed from the start of the month,"
    " or from when central first heard of it, until the end of the month or now. Overlapping outages count once;"
    " time covered by outages of several causes counts for the first of power, network, device."
)
NO_DEVICES: Final = N_("No device was observed in this month.")
PAGE_OF: Final = N_("Page %(page)s of %(pages)s")
DEVICES_OBSERVED: Final = N_("Devices observed")
AVERAGE_UPTIME: Final = N_("Average availability")
IN_PROGRESS: Final = N_("(month in progress)")


@dataclass(frozen=True, slots=True)
class ReportLabels:
    """Every word the CSV and PDF need, translated, plus how numbers and months are written."""

    language: str
    gettext: Callable[[str], str]

    def __call__(self, msgid: str) -> str:
        """The translation of *msgid*."""
        return self.gettext(msgid)

    def kind(self, kind: str) -> str:
        """``camera`` → "Камера"."""
        return self.gettext(KIND_MSGIDS[kind]) if kind in KIND_MSGIDS else kind

    def cause(self, cause: str) -> str:
        """``power`` → "Живлення"."""
        return self.gettext(CAUSE_MSGIDS[cause]) if cause in CAUSE_MSGIDS else cause

    def number(self, value: float, digits: int) -> str:
        """*value* rounded to *digits*, with a decimal comma in Ukrainian."""
        text = f"{value:.{digits}f}"
        return text.replace(".", ",") if self.language == "uk" else text

    def month(self, month: date) -> str:
        """``травень 2025`` / ``May 2025``."""
        return str(format_date(month, "LLLL y", locale=self.language))


def report_labels(language: str) -> ReportLabels:
    """The labels of *language* (``uk`` or ``en``)."""
    return ReportLabels(language, translations(language).gettext)
