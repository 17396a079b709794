"""The siren monitor end to end at the edge: real adapters (pymodbus server, gpiozero mock pins, simulated) into a
recording device sink that checks every message against the contract."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import structlog
from gpiozero.pins.mock import MockFactory
from pymodbus.constants import ExcCodes

from edge.alerts.adapters.simulated import SimulatedReader
from edge.alerts.config import SimulatedInputs, SirensSettings
from edge.alerts.history import FILE_NAME
from edge.alerts.inputs import RawInputs
from edge.alerts.monitor import SirenMonitor
from tests.edge.alerts.conftest import RecordingSink
from tests.edge.support import eventually
from tests.support.modbus_server import ModbusTestServer
from tests.support.ports import free_port
from varta.aio import wait_for
from varta.contract import DeviceKind, DeviceStatus, Severity, SirenState

FAST = {"debounce_s": 0.1, "poll_interval_s": 0.01, "unknown_after_s": 0.5}


def siren(device_id: str, inputs: dict[str, Any], **overrides: Any) -> dict[str, Any]:
    return {"device_id": device_id, "name": f"Siren {device_id}", "inputs": inputs, **FAST, **overrides}


def sirens(*items: dict[str, Any]) -> SirensSettings:
    return SirensSettings.model_validate({"enabled": True, "sirens": list(items)})


def modbus(port: int, **overrides: Any) -> dict[str, Any]:
    return {
        "kind": "modbus", "host": "127.0.0.1", "port": port, "supply": 0, "contactor": 1, "fault": 2,
        "timeout_s": 1.0, "reconnect_min_s": 0.1, "reconnect_max_s": 0.5, **overrides,
    }  # fmt: skip


@contextlib.asynccontextmanager
async def running(monitor: SirenMonitor) -> AsyncIterator[asyncio.Task[None]]:
    task = asyncio.create_task(monitor.run())
    try:
        yield task
    finally:
        task.cancel()
        await wait_for(asyncio.gather(task, return_exceptions=True), 10)  # it stops, whatever its sirens do


def states_of(sink: RecordingSink, device_id: str) -> list[SirenState]:
    return [c.state for c in sink.changes(device_id)]


async def wait_state(sink: RecordingSink, device_id: str, state: SirenState, timeout: float = 10.0) -> None:
    def reached() -> bool:
        last = sink.last_state(device_id)
        return last is not None and last.reason == state.value

    await eventually(reached, timeout=timeout, what=f"{device_id} {state.value}")


# ------------------------------------------------------------------------------------------------ simulated


async def test_a_siren_starts_unknown_and_reports_its_first_settled_state(sink: RecordingSink) -> None:
    monitor = SirenMonitor(sirens(siren("siren-a", {"kind": "simulated"})), sink)
    async with running(monitor):
        await wait_state(sink, "siren-a", SirenState.IDLE)
    first = sink.states("siren-a")[0]
    assert (first.reason, first.status, first.kind) == ("unknown", DeviceStatus.UNKNOWN, DeviceKind.SIREN)
    assert first.name == "Siren siren-a"
    assert [(c.previous, c.state) for c in sink.changes("siren-a")] == [(SirenState.UNKNOWN, SirenState.IDLE)]


async def test_every_transition_reaches_the_sink_as_an_event_and_a_state(sink: RecordingSink) -> None:
    monitor = SirenMonitor(sirens(siren("siren-a", {"kind": "simulated"})), sink)
    sim = monitor.simulated("siren-a")
    steps: list[tuple[dict[str, bool], SirenState, Severity, DeviceStatus]] = [
        ({"contactor": True}, SirenState.SOUNDING, Severity.WARNING, DeviceStatus.ONLINE),
        ({"contactor": False, "fault": True}, SirenState.FAULT, Severity.CRITICAL, DeviceStatus.DEGRADED),
        ({"supply": False}, SirenState.UNPOWERED, Severity.CRITICAL, DeviceStatus.OFFLINE),
        ({"supply": True, "fault": False}, SirenState.IDLE, Severity.INFO, DeviceStatus.ONLINE),
    ]
    async with running(monitor):
        await wait_state(sink, "siren-a", SirenState.IDLE)
        for change, state, severity, status in steps:
            sim.set(**change)
            await wait_state(sink, "siren-a", state)
            event = sink.events("siren-a")[-1]
            assert event.severity == severity and event.kind == "siren.state_changed"
            assert state.value in event.message
            current = sink.last_state("siren-a")
            assert current is not None and current.status == status
            data = sink.changes("siren-a")[-1]
            assert data.state == state and data.inputs.supply == sim.values.supply
            assert current.attrs["contactor"] == sim.values.contactor and current.attrs["fault"] == sim.values.fault
            assert current.attrs["since"] == data.changed_at.isoformat()
        sim.fail("I/O module unplugged (test)")
        await wait_state(sink, "siren-a", SirenState.UNKNOWN)
        unknown = sink.events("siren-a")[-1]
        assert unknown.severity == Severity.WARNING
        assert "unplugged" in sink.changes("siren-a")[-1].detail
        current = sink.last_state("siren-a")
        assert current is not None and current.status == DeviceStatus.UNKNOWN and "unplugged" in current.detail
        sim.recover()
        await wait_state(sink, "siren-a", SirenState.IDLE)
    assert states_of(sink, "siren-a") == [
        SirenState.IDLE, SirenState.SOUNDING, SirenState.FAULT, SirenState.UNPOWERED, SirenState.IDLE,
        SirenState.UNKNOWN, SirenState.IDLE,
    ]  # fmt: skip
    changes = sink.changes("siren-a")
    for before, after in itertools.pairwise(changes):
        assert after.previous == before.state and after.previous_since == before.changed_at
        assert after.previous_duration_s is not None and after.previous_duration_s >= 0
    stats = monitor.stats()["sirens"]["siren-a"]
    assert stats["changes"] == 7 and stats["events_sent"] == 7 and stats["failures"]["simulated"] > 0


async def test_the_state_is_sent_again_every_resend_interval_even_unchanged(sink: RecordingSink) -> None:
    monitor = SirenMonitor(sirens(siren("siren-a", {"kind": "simulated"}, resend_interval_s=1)), sink)
    async with running(monitor):
        await eventually(lambda: sink.reasons("siren-a").count("idle") >= 3, timeout=10, what="two re-sends")
    assert len(sink.changes("siren-a")) == 1  # re-sending the state is no new event


async def test_changes_wait_for_a_failing_sink_and_arrive_in_order(sink: RecordingSink) -> None:
    monitor = SirenMonitor(sirens(siren("siren-a", {"kind": "simulated"})), sink)
    sim = monitor.simulated("siren-a")
    async with running(monitor):
        await wait_state(sink, "siren-a", SirenState.IDLE)
        sink.fail_next = 2
        sim.set(contactor=True)
        await asyncio.sleep(0.5)
        sim.set(contactor=False)
        await eventually(lambda: states_of(sink, "siren-a")[-1:] == [SirenState.IDLE] and len(sink.changes()) == 3)
    assert states_of(sink, "siren-a") == [SirenState.IDLE, SirenState.SOUNDING, SirenState.IDLE]
    assert sink.failed == 2 and monitor.stats()["sirens"]["siren-a"]["publish_failures"] == 2


async def test_a_stalled_sink_never_stops_the_reads(sink: RecordingSink) -> None:
    monitor = SirenMonitor(sirens(siren("siren-a", {"kind": "simulated"})), sink)
    sim = monitor.simulated("siren-a")
    async with running(monitor):
        await wait_state(sink, "siren-a", SirenState.IDLE)
        sink.block = asyncio.Event()
        reads = monitor.stats()["sirens"]["siren-a"]["reads"]
        sim.set(contactor=True)
        await eventually(lambda: monitor.stats()["sirens"]["siren-a"]["state"] == "sounding")
        await eventually(lambda: monitor.stats()["sirens"]["siren-a"]["reads"] > reads + 20)
        assert monitor.stats()["sirens"]["siren-a"]["pending_events"] == 1
        sink.block.set()
        await wait_state(sink, "siren-a", SirenState.SOUNDING)


async def test_an_adapter_that_raises_anything_is_counted_and_the_siren_keeps_going(sink: RecordingSink) -> None:
    class Broken(SimulatedReader):
        broken = True

        async def read(self) -> RawInputs:
            if self.broken:
                raise RuntimeError("adapter bug (test)")
            return await super().read()

    monitor = SirenMonitor(sirens(siren("siren-a", {"kind": "simulated"})), sink)
    broken = Broken(SimulatedInputs())
    monitor.workers["siren-a"].reader = broken
    async with running(monitor):
        await eventually(lambda: monitor.stats()["failures"].get("unexpected", 0) >= 5)
        broken.broken = False
        await wait_state(sink, "siren-a", SirenState.IDLE)


async def test_repeated_read_failures_are_logged_at_most_once_a_minute(sink: RecordingSink) -> None:
    monitor = SirenMonitor(sirens(siren("siren-a", {"kind": "simulated"})), sink)
    monitor.simulated("siren-a").fail("no reply (test)")
    with structlog.testing.capture_logs() as logs:
        async with running(monitor):
            await eventually(lambda: monitor.stats()["failures"].get("simulated", 0) >= 50)
    failed = [entry for entry in logs if entry["event"] == "siren.read_failed"]
    assert len(failed) == 1 and failed[0]["reason"] == "simulated" and failed[0]["siren_id"] == "siren-a"


async def test_when_a_siren_last_sounded_is_remembered_across_restarts(sink: RecordingSink, tmp_path: Path) -> None:
    config = sirens(siren("siren-a", {"kind": "simulated"}))
    monitor = SirenMonitor(config, sink, data_dir=tmp_path)
    sim = monitor.simulated("siren-a")
    async with running(monitor):
        await wait_state(sink, "siren-a", SirenState.IDLE)
        sim.set(contactor=True)
        await wait_state(sink, "siren-a", SirenState.SOUNDING)
        sounding = sink.changes("siren-a")[-1]
        sim.set(contactor=False)
        await wait_state(sink, "siren-a", SirenState.IDLE)
        duration = sink.changes("siren-a")[-1].previous_duration_s
    assert sorted(os.listdir(tmp_path)) == [FILE_NAME]  # no temporary file left behind

    again = RecordingSink()
    async with running(SirenMonitor(config, again, data_dir=tmp_path)):
        await eventually(lambda: len(again.states("siren-a")) >= 1)
    attrs = again.states("siren-a")[0].attrs
    assert attrs["last_sounded_at"] == sounding.changed_at.isoformat()
    assert attrs["last_sounding_s"] == duration and duration is not None and duration > 0


async def test_a_corrupt_history_file_is_counted_and_ignored(sink: RecordingSink, tmp_path: Path) -> None:
    (tmp_path / FILE_NAME).write_bytes(b"\x00{not json")
    monitor = SirenMonitor(sirens(siren("siren-a", {"kind": "simulated"})), sink, data_dir=tmp_path)
    async with running(monitor):
        await wait_state(sink, "siren-a", SirenState.IDLE)
    assert monitor.stats()["history_load_failures"] == 1
    assert sink.states("siren-a")[0].attrs["last_sounded_at"] is None


async def test_a_history_that_cannot_be_saved_is_counted_and_the_siren_keeps_reporting(
    sink: RecordingSink, tmp_path: Path
) -> None:
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the data folder should be")
    monitor = SirenMonitor(sirens(siren("siren-a", {"kind": "simulated"})), sink, data_dir=blocker)
    async with running(monitor):
        await wait_state(sink, "siren-a", SirenState.IDLE)
        monitor.simulated("siren-a").set(contactor=True)
        await wait_state(sink, "siren-a", SirenState.SOUNDING)
        monitor.simulated("siren-a").set(contactor=False)
        await wait_state(sink, "siren-a", SirenState.IDLE)
    assert monitor.stats()["history_save_failures"] == 2
    last = sink.last_state("siren-a")
    assert last is not None and last.attrs["last_sounded_at"] is not None  # remembered in memory all the same


def test_a_node_without_gpio_or_modbus_sirens_never_imports_their_libraries() -> None:
    code = (
        "import sys\n"
        "from edge.alerts.config import SirensSettings\n"
        "from edge.alerts.monitor import SirenMonitor\n"
        "siren = {'device_id': 's', 'inputs': {'kind': 'simulated'}}\n"
        "s = SirensSettings.model_validate({'enabled': True, 'sirens': [siren]})\n"
        "SirenMonitor(s, None)\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('gpiozero', 'pymodbus')))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert result.stdout.strip() == "[]"


def test_a_missing_library_is_a_configuration_error_naming_the_extra() -> None:
    code = (
        "import sys\n"
        "sys.modules['gpiozero'] = None\n"
        "from edge.alerts.config import SirensSettings\n"
        "from edge.alerts.monitor import SirenMonitor\n"
        "from varta.settings import ConfigError\n"
        "siren = {'device_id': 's', 'inputs': {'kind': 'gpio', 'contactor_pin': 17}}\n"
        "s = SirensSettings.model_validate({'enabled': True, 'sirens': [siren]})\n"
        "try:\n"
        "    SirenMonitor(s, None)\n"
        "except ConfigError as exc:\n"
        "    print(exc)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert "varta[alerts]" in result.stdout and "gpiozero" in result.stdout


# ------------------------------------------------------------------------------------------------ gpio


async def bounce(pin: Any, settle_low: bool, toggles: int = 10, within_s: float = 0.05) -> None:
    """A contact bouncing: *toggles* level changes within *within_s*, ending low (closed) or high (open)."""
    for i in range(toggles):
        if (i % 2 == 0) == settle_low:
            pin.drive_high()
        else:
            pin.drive_low()
        await asyncio.sleep(within_s / toggles)
    if settle_low:
        pin.drive_low()
    else:
        pin.drive_high()


async def test_gpio_contact_bounce_produces_exactly_one_change(sink: RecordingSink, pin_factory: MockFactory) -> None:
    gpio = {"kind": "gpio", "supply_pin": 5, "contactor_pin": 6, "fault_pin": 13}
    # a debounce time ten times the bounce: a busy test machine stretching the burst cannot make it a real change
    monitor = SirenMonitor(sirens(siren("siren-g", gpio, debounce_s=0.5)), sink, pin_factory=pin_factory)
    supply, contactor = pin_factory.pin(5), pin_factory.pin(6)
    async with running(monitor):
        await wait_state(sink, "siren-g", SirenState.UNPOWERED)  # pulled up: every contact open
        supply.drive_low()
        await wait_state(sink, "siren-g", SirenState.IDLE)
        await bounce(contactor, settle_low=True)  # the contactor pulls in, bouncing
        await wait_state(sink, "siren-g", SirenState.SOUNDING)
        await asyncio.sleep(1.0)
        await bounce(contactor, settle_low=True)  # a glitch that ends where it began
        await asyncio.sleep(1.0)
        await bounce(contactor, settle_low=False)  # the contactor drops out, bouncing
        await wait_state(sink, "siren-g", SirenState.IDLE)
        await asyncio.sleep(1.0)
    assert states_of(sink, "siren-g") == [SirenState.UNPOWERED, SirenState.IDLE, SirenState.SOUNDING, SirenState.IDLE]
    assert all(pin_factory.pin(n).function == "input" for n in (5, 6, 13))


# ------------------------------------------------------------------------------------------------ modbus


async def test_a_modbus_siren_reports_each_change_goes_unknown_while_the_module_is_down_and_recovers(
    sink: RecordingSink, modbus_server: ModbusTestServer
) -> None:
    monitor = SirenMonitor(sirens(siren("siren-m", modbus(modbus_server.port))), sink)
    async with running(monitor):
        await wait_state(sink, "siren-m", SirenState.UNPOWERED)
        await modbus_server.set_bits("discrete_inputs", 0, True)
        await wait_state(sink, "siren-m", SirenState.IDLE)
        await modbus_server.set_bits("discrete_inputs", 1, True)
        await wait_state(sink, "siren-m", SirenState.SOUNDING)
        await modbus_server.stop()
        await wait_state(sink, "siren-m", SirenState.UNKNOWN)
        failures = monitor.stats()["sirens"]["siren-m"]["failures"]
        assert failures.get("connect_failed", 0) >= 1
        await modbus_server.start()
        await wait_state(sink, "siren-m", SirenState.SOUNDING)
        await modbus_server.set_bits("discrete_inputs", 1, False)
        await wait_state(sink, "siren-m", SirenState.IDLE)
    assert states_of(sink, "siren-m") == [
        SirenState.UNPOWERED, SirenState.IDLE, SirenState.SOUNDING, SirenState.UNKNOWN, SirenState.SOUNDING,
        SirenState.IDLE,
    ]  # fmt: skip
    assert "connect" in sink.changes("siren-m")[3].detail
    assert modbus_server.writes() == [] and set(modbus_server.requests) == {2}


async def test_modbus_exception_responses_are_counted_and_make_the_siren_unknown_until_they_stop(
    sink: RecordingSink, modbus_server: ModbusTestServer
) -> None:
    monitor = SirenMonitor(sirens(siren("siren-m", modbus(modbus_server.port))), sink)
    await modbus_server.set_bits("discrete_inputs", 0, True)
    async with running(monitor):
        await wait_state(sink, "siren-m", SirenState.IDLE)
        modbus_server.exception_code = ExcCodes.DEVICE_BUSY
        await wait_state(sink, "siren-m", SirenState.UNKNOWN)
        assert "exception_response" in sink.changes("siren-m")[-1].detail
        modbus_server.exception_code = None
        await wait_state(sink, "siren-m", SirenState.IDLE)
    assert monitor.stats()["failures"]["exception_response"] >= 10


async def test_a_hung_io_module_never_stalls_another_siren_nor_the_shutdown(sink: RecordingSink) -> None:
    async def swallow(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(Exception):
            while await reader.read(1024):
                pass  # accepts requests, never answers
        writer.close()

    hole = await asyncio.start_server(swallow, "127.0.0.1", free_port())
    port = hole.sockets[0].getsockname()[1]
    try:
        monitor = SirenMonitor(
            sirens(siren("siren-hung", modbus(port)), siren("siren-ok", {"kind": "simulated"})), sink
        )
        sim = monitor.simulated("siren-ok")
        async with running(monitor) as task:
            await wait_state(sink, "siren-ok", SirenState.IDLE)
            for contactor, state in ((True, SirenState.SOUNDING), (False, SirenState.IDLE)):
                sim.set(contactor=contactor)
                await wait_state(sink, "siren-ok", state)
            await eventually(lambda: monitor.stats()["sirens"]["siren-hung"]["failures"].get("no_response", 0) >= 2)
            assert sink.reasons("siren-hung") and set(sink.reasons("siren-hung")) == {"unknown"}
        assert task.done()
    finally:
        hole.close()
        await hole.wait_closed()
