"""Node health samples, including a faked sysfs tree for temperatures and the Pi under-voltage alarm."""

from __future__ import annotations

from pathlib import Path

import varta
from edge.config import OutboxSettings
from edge.health import HealthSampler, read_temperature, read_undervoltage
from edge.outbox import MessageClass, Outbox
from varta.contract import Channel, Event, Health, decode, encode, topic, utcnow


def fake_sysfs(root: Path, *, thermal: list[str], hwmon: list[dict[str, str]]) -> Path:
    """Write ``class/thermal/thermal_zoneN/temp`` and ``class/hwmon/hwmonN/<file>`` under *root*."""
    for i, value in enumerate(thermal):
        zone = root / "class" / "thermal" / f"thermal_zone{i}"
        zone.mkdir(parents=True)
        (zone / "temp").write_text(value + "\n")
    for i, files in enumerate(hwmon):
        device = root / "class" / "hwmon" / f"hwmon{i}"
        device.mkdir(parents=True)
        for name, value in files.items():
            (device / name).write_text(value + "\n")
    return root


def test_temperature_is_the_highest_sensible_reading_of_thermal_zones_and_hwmon(tmp_path: Path) -> None:
    root = fake_sysfs(
        tmp_path,
        thermal=["45000", "-273000", "garbage"],  # absurd and unreadable values are ignored
        hwmon=[{"name": "cpu_thermal", "temp1_input": "51234"}, {"name": "nvme", "temp1_input": "999999"}],
    )
    assert read_temperature(root) == 51.2


def test_no_sensors_means_no_temperature(tmp_path: Path) -> None:
    assert read_temperature(fake_sysfs(tmp_path, thermal=[], hwmon=[{"name": "x", "in0_input": "5000"}])) is None


def test_undervoltage_alarm_is_read_from_the_rpi_volt_device(tmp_path: Path) -> None:
    on = fake_sysfs(
        tmp_path / "on", thermal=[], hwmon=[{"name": "cpu_thermal"}, {"name": "rpi_volt", "in0_lcrit_alarm": "1"}]
    )
    off = fake_sysfs(tmp_path / "off", thermal=[], hwmon=[{"name": "rpi_volt", "in0_lcrit_alarm": "0"}])
    assert read_undervoltage(on) is True
    assert read_undervoltage(off) is False


def test_undervoltage_is_unknown_without_an_rpi_volt_device(tmp_path: Path) -> None:
    assert read_undervoltage(fake_sysfs(tmp_path, thermal=["40000"], hwmon=[{"name": "acpitz"}])) is None
    assert read_undervoltage(tmp_path / "empty") is None


async def test_sample_reports_sane_host_values_and_the_faked_sensors(tmp_path: Path) -> None:
    root = fake_sysfs(tmp_path / "sys", thermal=["61500"], hwmon=[{"name": "rpi_volt", "in0_lcrit_alarm": "1"}])
    outbox = await Outbox.open(OutboxSettings(path=tmp_path / "data" / "outbox.db", max_rows=10))
    try:
        for _ in range(12):
            event = Event(node_id="n", boot_id="b", seq=0, ts=utcnow(), kind="x")
            await outbox.put(topic("s", "n", Channel.EVENT), event, cls=MessageClass.EVENT)
        sampler = HealthSampler(data_dir=tmp_path / "data" / "not-yet-created", sysfs_root=root)
        await sampler.prime()
        sample = await sampler.sample(node_id="n", boot_id="b", outbox=outbox.stats())
    finally:
        await outbox.close()
    assert isinstance(decode(Channel.HEALTH, encode(sample)), Health)  # valid on the wire
    assert sample.temperature_c == 61.5
    assert sample.undervoltage is True
    assert 0 <= sample.cpu_percent <= 100
    assert 0 < sample.memory_percent < 100 and sample.memory_available_mb > 0
    assert 0 < sample.disk_percent <= 100 and sample.disk_free_mb > 0
    assert sample.load_1m is not None and sample.load_1m >= 0
    assert sample.uptime_s > sample.agent_uptime_s >= 0
    assert sample.version == varta.__version__
    assert (sample.outbox_pending, sample.outbox_dropped_events, sample.outbox_dropped_telemetry) == (10, 2, 0)
