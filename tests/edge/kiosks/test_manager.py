"""The kiosk manager's own bookkeeping, without a browser: status with a reason, proof of play and touch sessions
per day, commands from central checked before they act."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from edge.commands import CommandFailed
from edge.kiosks.config import KioskSettings
from edge.kiosks.director import KioskDirector, OfficialAlert
from edge.kiosks.manager import KioskManager
from edge.kiosks.screen import SimulatedScreen
from edge.kiosks.server import Heartbeat, Played
from tests.edge.alerts.conftest import RecordingSink
from varta.contract import Channel, Command, DeviceStatus, Envelope, SirenState, utcnow


class Host(RecordingSink):
    """The recording sink plus what the kiosk needs to publish snapshots."""

    def envelope(self) -> dict[str, Any]:
        return {"node_id": "node-1", "boot_id": "boot", "seq": 0, "ts": utcnow()}

    async def publish_message(self, channel: Channel, message: Envelope, **_: Any) -> int:
        return 1


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def kiosk(tmp_path: Path, clock: Clock) -> tuple[KioskManager, Host]:
    host = Host()
    settings = KioskSettings(
        enabled=True, content_dir=tmp_path / "kiosk", heartbeat_interval_s=1, heartbeat_timeout_s=5
    )
    manager = KioskManager(
        settings, host, central_public_keys=[], kiosk_id="node-1", data_dir=tmp_path, boot_id="b", monotonic=clock
    )
    return manager, host


def beat(**kw: Any) -> Heartbeat:
    return Heartbeat(generation=1, mode="playlist", **kw)


def played(src: str, seconds: float) -> Played:
    start = datetime.now(UTC)
    return Played(src=src, kind="image", started_at=start, ended_at=start + timedelta(seconds=seconds))


def test_the_status_says_why_a_kiosk_is_not_online(kiosk: tuple[KioskManager, Host], clock: Clock) -> None:
    manager, _ = kiosk
    assert manager.status()[:2] == (DeviceStatus.UNKNOWN, "starting")
    manager._heartbeat(beat())
    assert manager.status() == (DeviceStatus.ONLINE, None, "")
    manager._heartbeat(beat(errors=["image failed: /content/x"]))
    assert manager.status()[:2] == (DeviceStatus.DEGRADED, "page_errors")
    clock.now += 60  # errors age out, but the page has gone quiet
    assert manager.status()[:2] == (DeviceStatus.DEGRADED, "no_heartbeat")
    manager.health.capped = True
    assert manager.status()[:2] == (DeviceStatus.OFFLINE, "browser_unresponsive")
    manager._heartbeat(beat())  # it came back
    assert manager.status()[0] == DeviceStatus.ONLINE and not manager.health.capped
    manager.health.clock_synced = False
    assert manager.status()[:2] == (DeviceStatus.DEGRADED, "clock_unsynchronised")


async def test_proof_of_play_and_touch_sessions_are_reported_for_the_day(kiosk: tuple[KioskManager, Host]) -> None:
    manager, host = kiosk
    manager._heartbeat(beat(played=[played("/content/a", 10), played("/content/b", 5)]))
    manager._heartbeat(beat(played=[played("/content/a", 10)]))
    touch = datetime.now(UTC)
    manager._heartbeat(beat(touching=True, last_touch_at=touch))
    manager._heartbeat(beat(touching=True, last_touch_at=touch + timedelta(seconds=3)))  # the same session
    manager._heartbeat(beat(touching=False, last_touch_at=touch + timedelta(seconds=3)))  # back to the loop
    manager._heartbeat(beat(touching=True, last_touch_at=touch + timedelta(seconds=90)))  # a second person
    await manager._daily_report(force=True)
    report = next(s.event for s in host.sent if s.event is not None and s.event.kind == "kiosk.day_report")
    assert report.data["touch_sessions"] == 2
    assert report.data["items"] == {
        "/content/a": {"plays": 2, "seconds": 20.0},
        "/content/b": {"plays": 1, "seconds": 5.0},
    }
    assert manager.day_items == {}  # a new day starts empty


async def test_commands_for_another_kiosk_are_refused(kiosk: tuple[KioskManager, Host]) -> None:
    manager, _ = kiosk
    command = Command.model_construct(params={"device_id": "other", "alerts": []})
    with pytest.raises(CommandFailed, match="not other"):
        await manager._cmd_alerts_set(command)
    ok = Command.model_construct(params={"device_id": "kiosk", "alerts": []})
    assert (await manager._cmd_alerts_set(ok))["alerts"] == 0


async def test_the_screen_follows_its_hours_but_an_alert_turns_it_on_at_any_hour(tmp_path: Path) -> None:
    now = datetime.now(UTC).astimezone(ZoneInfo("Europe/Kyiv"))
    later = (now + timedelta(hours=2)).strftime("%H:%M")
    much_later = (now + timedelta(hours=3)).strftime("%H:%M")
    settings = KioskSettings(
        enabled=True, content_dir=tmp_path / "kiosk", screen_on_windows=[{"start": later, "end": much_later}]
    )
    manager = KioskManager(settings, Host(), central_public_keys=[], kiosk_id="node-1", data_dir=tmp_path, boot_id="b")
    screen = manager.screen
    assert isinstance(screen, SimulatedScreen)
    await manager._apply_screen()
    assert manager.screen_on is False and await screen.get_power() is False  # outside its hours: off

    manager.siren_changed("siren-1", SirenState.SOUNDING)
    await manager._apply_screen()
    assert manager.screen_on is True and await screen.get_power() is True  # people must see where to go

    manager.siren_changed("siren-1", SirenState.IDLE)
    await manager._apply_screen()
    assert await screen.get_power() is False


def test_a_drill_is_shown_as_a_drill_and_a_real_alert_outranks_it(tmp_path: Path) -> None:
    director = KioskDirector(KioskSettings(enabled=True, content_dir=tmp_path))
    started = datetime.now(UTC)
    director.official_alert(OfficialAlert(alert_id="drill-1", drill=True, started_at=started))
    assert director.state.mode == "alert" and director.state.alert is not None and director.state.alert.drill
    director.official_alert(OfficialAlert(alert_id="real-1", region="Поділ", started_at=started + timedelta(minutes=1)))
    assert director.state.alert is not None and director.state.alert.alert_id == "real-1"
    assert not director.state.alert.drill
    director.siren_changed("siren-1", True)  # the siren right here outranks both
    assert director.state.alert is not None and director.state.alert.source == "siren"
    director.siren_changed("siren-1", False)
    director.set_official_alerts({})  # the all-clear
    assert director.state.mode == "blank"  # no content yet: a blank (clock) screen, never the old alert
