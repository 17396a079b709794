"""clock_synchronised: timedatectl first, chronyc when timedatectl cannot answer, unknown (with why) otherwise."""

from __future__ import annotations

import time

from edge.kiosks.clock import ClockStatus, clock_synchronised, parse_chronyc_tracking, parse_timedatectl
from tests.edge.kiosks.fakebin import HANG, FakeBin, all_gone, fails_with, fakes

__all__ = ["fakes"]  # the fixture

# chronyc 4.3 (bookworm) ``chronyc -n tracking``, synchronised and not.
TRACKING_SYNCED = """\
Reference ID    : A29FC87B (162.159.200.123)
Stratum         : 4
Ref time (UTC)  : Mon Dec 08 01:10:12 2025
System time     : 0.000012345 seconds fast of NTP time
Last offset     : +0.000006789 seconds
RMS offset      : 0.000123456 seconds
Frequency       : 2.345 ppm slow
Residual freq   : +0.001 ppm
Skew            : 0.045 ppm
Root delay      : 0.012345678 seconds
Root dispersion : 0.000456789 seconds
Update interval : 1025.3 seconds
Leap status     : Normal
"""
TRACKING_UNSYNCED = """\
Reference ID    : 00000000 ()
Stratum         : 0
Ref time (UTC)  : Thu Jan 01 00:00:00 1970
System time     : 0.000000000 seconds fast of NTP time
Last offset     : +0.000000000 seconds
RMS offset      : 0.000000000 seconds
Frequency       : 0.000 ppm slow
Residual freq   : +0.000 ppm
Skew            : 0.000 ppm
Root delay      : 1.000000000 seconds
Root dispersion : 1.000000000 seconds
Update interval : 0.0 seconds
Leap status     : Not synchronised
"""


def prints(text: str) -> str:
    return f"print({text!r}, end='')\n"


async def test_timedatectl_yes_is_synchronised(fakes: FakeBin) -> None:
    fakes.install("timedatectl", prints("yes\n"))
    fakes.install("chronyc", prints(TRACKING_UNSYNCED))
    assert await clock_synchronised() == ClockStatus(True, "timedatectl", "NTPSynchronized=yes")
    assert [c.args for c in fakes.calls()] == [["show", "-p", "NTPSynchronized", "--value"]]  # chronyc not asked


async def test_timedatectl_no_is_not_synchronised(fakes: FakeBin) -> None:
    fakes.install("timedatectl", prints("no\n"))
    status = await clock_synchronised()
    assert (status.synced, status.source) == (False, "timedatectl")


async def test_without_timedatectl_chronyc_answers(fakes: FakeBin) -> None:
    fakes.install("chronyc", prints(TRACKING_SYNCED))
    assert await clock_synchronised() == ClockStatus(True, "chronyc", "Leap status: Normal")
    assert [c.args for c in fakes.calls("chronyc")] == [["-n", "tracking"]]
    fakes.install("chronyc", prints(TRACKING_UNSYNCED))
    assert await clock_synchronised() == ClockStatus(False, "chronyc", "Leap status: Not synchronised")


async def test_a_failing_timedatectl_falls_back_to_chronyc(fakes: FakeBin) -> None:
    fakes.install("timedatectl", fails_with("System has not been booted with systemd as init system (PID 1)."))
    fakes.install("chronyc", prints(TRACKING_UNSYNCED))
    status = await clock_synchronised()
    assert (status.synced, status.source) == (False, "chronyc")
    assert len(fakes.calls("timedatectl")) == 1


async def test_an_odd_timedatectl_answer_falls_back_to_chronyc(fakes: FakeBin) -> None:
    fakes.install("timedatectl", prints("\n"))  # an old systemd without the property
    fakes.install("chronyc", prints(TRACKING_SYNCED))
    assert (await clock_synchronised()).source == "chronyc"


async def test_a_hanging_timedatectl_times_out_then_chronyc_answers(fakes: FakeBin) -> None:
    fakes.install("timedatectl", HANG)
    fakes.install("chronyc", prints(TRACKING_SYNCED))
    started = time.monotonic()
    status = await clock_synchronised(timeout_s=1.5)
    assert (status.synced, status.source) == (True, "chronyc")
    assert time.monotonic() - started < 6
    assert await all_gone(fakes.hung_pids())


async def test_neither_tool_means_unknown_with_both_reasons(fakes: FakeBin) -> None:
    status = await clock_synchronised()
    assert (status.synced, status.source) == (None, "none")
    assert status.detail == "timedatectl is not installed; chronyc is not installed"


async def test_chronyd_not_running_means_unknown_with_its_error(fakes: FakeBin) -> None:
    fakes.install("timedatectl", fails_with("Failed to connect to bus: No such file or directory"))
    fakes.install("chronyc", fails_with("506 Cannot talk to daemon"))
    status = await clock_synchronised()
    assert status.synced is None
    assert status.detail == (
        "timedatectl exited with status 1: Failed to connect to bus: No such file or directory; "
        "chronyc exited with status 1: 506 Cannot talk to daemon"
    )


def test_answers_are_parsed_strictly() -> None:
    assert [parse_timedatectl(t) for t in ("yes\n", "no", "", "maybe")] == [True, False, None, None]
    assert parse_chronyc_tracking(TRACKING_SYNCED) is True
    assert parse_chronyc_tracking(TRACKING_UNSYNCED) is False
    assert parse_chronyc_tracking(TRACKING_SYNCED.replace("Normal", "Insert second")) is True
    assert parse_chronyc_tracking(TRACKING_SYNCED.replace("Normal", "Something new")) is None
    assert parse_chronyc_tracking("Reference ID    : 00000000 ()\n") is None
