"""BrowserRestarter: restarts within a per-boot cap that survives agent restarts, never too close together."""

from __future__ import annotations

from pathlib import Path

import pytest

from edge.kiosks.restart import (
    BOOT_ID_PATH,
    BrowserRestarter,
    RestartOutcome,
    RestartSettings,
    RestartState,
    RestartStatus,
)
from edge.statefile import StateFile
from tests.edge.kiosks.fakebin import HANG, FakeBin, all_gone, fails_with, fakes

__all__ = ["fakes"]  # the fixture

BOOT_A = "0f6c3f1e-7c1b-4c44-9d7a-1b2f3e4d5a6b"
BOOT_B = "9a8b7c6d-5e4f-4a3b-8c2d-1e0f9a8b7c6d"


class Clock:
    """CLOCK_MONOTONIC as the tests set it."""

    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def kernel_boot_id() -> str:
    return BOOT_ID_PATH.read_text().strip()


@pytest.fixture
def systemctl(fakes: FakeBin) -> FakeBin:
    """A fake ``systemctl`` that records its calls and succeeds."""
    fakes.install("systemctl", "")
    return fakes


def restarter(
    fakes: FakeBin, clock: Clock, *, boot_id: str | None = BOOT_A, boot_id_path: Path = BOOT_ID_PATH, **settings: object
) -> BrowserRestarter:
    return BrowserRestarter(
        RestartSettings.model_validate({"max_per_boot": 3, "min_interval_s": 60, **settings}),
        state_path=fakes.root / "data" / "kiosk-restarts.json",
        boot_id=boot_id,
        boot_id_path=boot_id_path,
        clock=clock,
    )


async def test_a_restart_runs_the_command_and_counts(systemctl: FakeBin) -> None:
    outcome = await restarter(systemctl, Clock()).restart("no heartbeat for 31 s")
    assert outcome == RestartOutcome(RestartStatus.RESTARTED, 1)
    assert [c.args for c in systemctl.calls("systemctl")] == [["restart", "varta-kiosk.service"]]
    stored = await StateFile(systemctl.root / "data" / "kiosk-restarts.json", RestartState).load()
    assert stored == RestartState(boot_id=BOOT_A, count=1, last_at=1000.0, last_reason="no heartbeat for 31 s")


async def test_a_second_restart_within_the_interval_is_too_soon(systemctl: FakeBin) -> None:
    clock = Clock()
    browser = restarter(systemctl, clock)
    await browser.restart("silent")
    clock.now += 45
    outcome = await browser.restart("silent")
    assert (outcome.status, outcome.count, outcome.retry_in_s) == (RestartStatus.TOO_SOON, 1, 15)
    assert len(systemctl.calls("systemctl")) == 1
    clock.now += 15
    assert (await browser.restart("silent")).status is RestartStatus.RESTARTED
    assert len(systemctl.calls("systemctl")) == 2


async def test_the_cap_is_reached_and_nothing_more_runs(systemctl: FakeBin) -> None:
    clock = Clock()
    browser = restarter(systemctl, clock)
    outcomes = []
    for _ in range(5):
        outcomes.append(await browser.restart("silent"))
        clock.now += 61
    assert [(o.status, o.count) for o in outcomes] == [
        (RestartStatus.RESTARTED, 1),
        (RestartStatus.RESTARTED, 2),
        (RestartStatus.RESTARTED, 3),
        (RestartStatus.CAPPED, 3),
        (RestartStatus.CAPPED, 3),
    ]
    assert len(systemctl.calls("systemctl")) == 3
    assert "3 of 3" in outcomes[3].detail


async def test_the_cap_survives_an_agent_restart(systemctl: FakeBin) -> None:
    clock = Clock()
    first = restarter(systemctl, clock)
    for _ in range(2):
        await first.restart("silent")
        clock.now += 61
    second = restarter(systemctl, clock)  # the agent restarted: a new instance, the same state file and boot
    assert await second.count() == 2
    assert (await second.restart("silent")).status is RestartStatus.RESTARTED
    clock.now += 61
    third = restarter(systemctl, clock)
    assert await third.restart("silent") == RestartOutcome(RestartStatus.CAPPED, 3, "3 of 3 restarts used this boot")
    assert len(systemctl.calls("systemctl")) == 3


async def test_the_interval_survives_an_agent_restart(systemctl: FakeBin) -> None:
    clock = Clock()
    await restarter(systemctl, clock).restart("silent")
    clock.now += 10
    assert (await restarter(systemctl, clock).restart("silent")).status is RestartStatus.TOO_SOON


async def test_a_new_boot_starts_a_new_count(systemctl: FakeBin) -> None:
    clock = Clock()
    browser = restarter(systemctl, clock, max_per_boot=1)
    await browser.restart("silent")
    clock.now += 61
    assert (await browser.restart("silent")).status is RestartStatus.CAPPED
    clock.now = 5.0  # after a reboot CLOCK_MONOTONIC starts again near zero
    rebooted = restarter(systemctl, clock, boot_id=BOOT_B, max_per_boot=1)
    assert await rebooted.restart("silent") == RestartOutcome(RestartStatus.RESTARTED, 1)
    assert len(systemctl.calls("systemctl")) == 2


async def test_the_boot_id_is_read_from_the_kernel_file(systemctl: FakeBin) -> None:
    boot_file = systemctl.root / "boot_id"
    boot_file.write_text(BOOT_A + "\n")
    clock = Clock()
    await restarter(systemctl, clock, boot_id=None, boot_id_path=boot_file, max_per_boot=1).restart("silent")
    clock.now += 61
    again = restarter(systemctl, clock, boot_id=None, boot_id_path=boot_file, max_per_boot=1)
    assert (await again.restart("silent")).status is RestartStatus.CAPPED
    boot_file.write_text(BOOT_B + "\n")  # rebooted
    fresh = restarter(systemctl, clock, boot_id=None, boot_id_path=boot_file, max_per_boot=1)
    assert (await fresh.restart("silent")).status is RestartStatus.RESTARTED
    stored = await StateFile(systemctl.root / "data" / "kiosk-restarts.json", RestartState).load()
    assert stored is not None and stored.boot_id == BOOT_B


async def test_the_real_boot_id_file_is_the_default(systemctl: FakeBin) -> None:
    browser = restarter(systemctl, Clock(), boot_id=None)
    assert (await browser.restart("silent")).status is RestartStatus.RESTARTED
    stored = await StateFile(systemctl.root / "data" / "kiosk-restarts.json", RestartState).load()
    assert stored is not None
    assert stored.boot_id == kernel_boot_id()


async def test_an_unreadable_boot_id_caps_in_memory_only(systemctl: FakeBin) -> None:
    clock = Clock()
    browser = restarter(systemctl, clock, boot_id=None, boot_id_path=systemctl.root / "missing", max_per_boot=1)
    assert (await browser.restart("silent")).status is RestartStatus.RESTARTED
    clock.now += 61
    assert (await browser.restart("silent")).status is RestartStatus.CAPPED
    assert not (systemctl.root / "data" / "kiosk-restarts.json").exists()  # nothing that could outlive a reboot


async def test_a_corrupt_state_file_is_moved_aside_and_counting_starts_afresh(systemctl: FakeBin) -> None:
    state = systemctl.root / "data" / "kiosk-restarts.json"
    state.parent.mkdir()
    state.write_bytes(b'{"version": 1, "boot_id": "0f6c3f1e-7c1b-4c44-9d7a-1b2f3e4d5a6b", "count": ')
    browser = restarter(systemctl, Clock())
    assert await browser.restart("silent") == RestartOutcome(RestartStatus.RESTARTED, 1)
    assert len(browser.store.corrupt_files) == 1 and browser.store.corrupt_files[0].exists()
    stored = await StateFile(state, RestartState).load()
    assert stored is not None and stored.count == 1


async def test_an_unwritable_state_file_still_caps_this_run(systemctl: FakeBin) -> None:
    (systemctl.root / "data").write_text("a file where the folder should be")
    clock = Clock()
    browser = restarter(systemctl, clock, max_per_boot=1)
    assert (await browser.restart("silent")).status is RestartStatus.RESTARTED
    clock.now += 61
    assert (await browser.restart("silent")).status is RestartStatus.CAPPED
    assert len(systemctl.calls("systemctl")) == 1


async def test_a_failing_command_is_failed_with_detail_and_counts_towards_the_cap(fakes: FakeBin) -> None:
    fakes.install("systemctl", fails_with("Failed to restart varta-kiosk.service: Unit varta-kiosk.service not found."))
    clock = Clock()
    browser = restarter(fakes, clock, max_per_boot=2)
    outcome = await browser.restart("silent")
    assert (outcome.status, outcome.count) == (RestartStatus.FAILED, 1)
    assert outcome.detail == (
        "systemctl exited with status 1: Failed to restart varta-kiosk.service: Unit varta-kiosk.service not found."
    )
    clock.now += 61
    assert (await browser.restart("silent")).status is RestartStatus.FAILED
    clock.now += 61
    assert (await browser.restart("silent")).status is RestartStatus.CAPPED
    assert len(fakes.calls("systemctl")) == 2


async def test_a_missing_command_is_failed(fakes: FakeBin) -> None:
    outcome = await restarter(fakes, Clock()).restart("silent")
    assert outcome.status is RestartStatus.FAILED and "systemctl: not found" in outcome.detail


async def test_a_hanging_command_is_killed_and_failed(fakes: FakeBin) -> None:
    fakes.install("restart-kiosk", HANG)
    outcome = await restarter(fakes, Clock(), command=["restart-kiosk"], timeout_s=1.5).restart("silent")
    assert outcome.status is RestartStatus.FAILED and "did not finish" in outcome.detail
    assert len(fakes.hung_pids()) == 2 and await all_gone(fakes.hung_pids())


async def test_a_cap_of_zero_never_restarts(systemctl: FakeBin) -> None:
    outcome = await restarter(systemctl, Clock(), max_per_boot=0).restart("silent")
    assert (outcome.status, outcome.count) == (RestartStatus.CAPPED, 0)
    assert systemctl.calls("systemctl") == []


def test_settings_default_to_the_kiosk_unit_and_reject_unknown_fields() -> None:
    settings = RestartSettings()
    assert settings.command == ["systemctl", "restart", "varta-kiosk.service"]
    assert (settings.max_per_boot, settings.timeout_s, settings.min_interval_s) == (3, 30, 60)
    with pytest.raises(ValueError, match="extra"):
        RestartSettings.model_validate({"max_restarts": 5})
    with pytest.raises(ValueError, match="at least 1"):
        RestartSettings(command=[])
