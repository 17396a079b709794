"""Whether the node's clock is synchronised (a kiosk's schedules go by it).

Asked of ``timedatectl show -p NTPSynchronized --value`` first (the kernel's "synchronised" flag, whatever NTP
client keeps it: systemd-timesyncd or chrony); when timedatectl is missing or fails (no systemd, no D-Bus), of
``chronyc -n tracking`` (its ``Leap status``). When neither answers, the state is unknown, with both reasons.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final, Literal

import structlog

from edge.kiosks.commands import CommandResult, run_command

log = structlog.get_logger(__name__)

DEFAULT_TIMEOUT_S: Final = 5.0
TIMEDATECTL: Final = ("timedatectl", "show", "-p", "NTPSynchronized", "--value")
CHRONYC: Final = ("chronyc", "-n", "tracking")

_LEAP_STATUS = re.compile(r"^Leap status\s*:\s*(?P<status>.+?)\s*$", re.MULTILINE)
_SYNCED_LEAP: Final = frozenset({"normal", "insert second", "delete second"})


@dataclass(frozen=True, slots=True)
class ClockStatus:
    """``synced`` None: it cannot be told (``detail`` says why). ``source`` is the tool that answered."""

    synced: bool | None
    source: Literal["timedatectl", "chronyc", "none"]
    detail: str = ""


def _failure(result: CommandResult) -> str:
    if result.not_found:
        return f"{result.argv[0]} is not installed"
    return result.describe()


def parse_timedatectl(text: str) -> bool | None:
    """``yes`` / ``no`` from ``timedatectl show -p NTPSynchronized --value``; None for anything else."""
    return {"yes": True, "no": False}.get(text.strip().lower())


def parse_chronyc_tracking(text: str) -> bool | None:
    """From ``chronyc tracking``'s ``Leap status`` line: ``Normal`` (or a leap second pending) is synchronised,
    ``Not synchronised`` is not; None when there is no such line."""
    match = _LEAP_STATUS.search(text)
    if match is None:
        return None
    status = match["status"].lower()
    if status in _SYNCED_LEAP:
        return True
    if status.startswith("not sync"):
        return False
    return None


async def clock_synchronised(timeout_s: float = DEFAULT_TIMEOUT_S) -> ClockStatus:
    """Whether the system clock is NTP-synchronised; each tool gets at most *timeout_s* seconds. Never raises."""
    result = await run_command(TIMEDATECTL, timeout_s=timeout_s)
    if result.ok:
        synced = parse_timedatectl(result.stdout_text)
        if synced is not None:
            return ClockStatus(synced, "timedatectl", f"NTPSynchronized={result.stdout_text.strip()}")
        first = f"timedatectl answered {result.stdout_text.strip()[:80]!r}"
    else:
        first = _failure(result)

    result = await run_command(CHRONYC, timeout_s=timeout_s)
    if result.ok:
        synced = parse_chronyc_tracking(result.stdout_text)
        if synced is not None:
            leap = _LEAP_STATUS.search(result.stdout_text)
            return ClockStatus(synced, "chronyc", f"Leap status: {leap['status'] if leap else '?'}")
        second = "chronyc tracking has no Leap status line"
    else:
        second = _failure(result)
    detail = f"{first}; {second}"
    log.debug("kiosk.clock_unknown", detail=detail)
    return ClockStatus(None, "none", detail)
