"""The ``sirens:`` configuration: one adapter per siren chosen by ``kind``, contactor always wired, no stray keys."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from edge.alerts.config import GpioInputs, ModbusInputs, SimulatedInputs, SirenSettings, SirensSettings


def sirens(*items: dict[str, Any], **extra: Any) -> SirensSettings:
    return SirensSettings.model_validate({"enabled": True, "sirens": list(items), **extra})


def test_sirens_are_off_by_default_with_sensible_timings() -> None:
    s = SirensSettings()
    assert s.enabled is False and s.sirens == []
    one = SirenSettings.model_validate({"device_id": "siren-1", "inputs": {"kind": "simulated"}})
    assert (one.debounce_s, one.unknown_after_s, one.resend_interval_s) == (0.3, 5.0, 300.0)
    assert one.interval_s == 0.05
    modbus = SirenSettings.model_validate(
        {"device_id": "siren-2", "inputs": {"kind": "modbus", "host": "h", "contactor": 0}}
    )
    assert modbus.interval_s == 0.1
    chosen = SirenSettings.model_validate(
        {"device_id": "siren-3", "inputs": {"kind": "simulated"}, "poll_interval_s": 1}
    )
    assert chosen.interval_s == 1


def test_the_inputs_kind_picks_the_adapter_settings() -> None:
    s = sirens(
        {"device_id": "siren-a", "inputs": {"kind": "gpio", "contactor_pin": 17, "supply_pin": "GPIO27"}},
        {"device_id": "siren-b", "inputs": {"kind": "modbus", "host": "10.0.0.5", "contactor": 0, "fault": 2}},
        {"device_id": "siren-c", "inputs": {"kind": "simulated"}},
    )
    a, b, c = (x.inputs for x in s.sirens)
    assert isinstance(a, GpioInputs) and a.pins() == {"supply": "GPIO27", "contactor": 17}
    assert a.wired() == {"supply", "contactor"}
    assert isinstance(b, ModbusInputs) and (b.port, b.unit, b.table) == (502, 1, "discrete_inputs")
    assert b.addresses() == {"contactor": 0, "fault": 2}
    assert isinstance(c, SimulatedInputs) and c.wired() == {"supply", "contactor", "fault"}


@pytest.mark.parametrize(
    "inputs",
    [
        {"kind": "gpio", "supply_pin": 17},
        {"kind": "modbus", "host": "10.0.0.5", "supply": 0, "fault": 1},
    ],
)
def test_a_siren_without_its_contactor_wired_is_rejected(inputs: dict[str, Any]) -> None:
    with pytest.raises(ValidationError, match="contactor"):
        sirens({"device_id": "siren-1", "inputs": inputs})


@pytest.mark.parametrize(
    ("item", "problem"),
    [
        ({"device_id": "siren-1", "inputs": {"kind": "simulated"}, "colour": "red"}, "Extra inputs"),
        ({"device_id": "siren-1", "inputs": {"kind": "gpio", "contactor_pin": 17, "led_pin": 5}}, "Extra inputs"),
        ({"device_id": "siren-1", "inputs": {"kind": "relay", "contactor": 1}}, "does not match any of the expected"),
        ({"device_id": "Siren 1", "inputs": {"kind": "simulated"}}, "pattern"),
        ({"device_id": "siren-1", "inputs": {"kind": "gpio", "contactor_pin": 17, "fault_pin": 17}}, "own pin"),
        ({"device_id": "siren-1", "inputs": {"kind": "gpio", "contactor_pin": 17, "pull_up": None}}, "active_high"),
        (
            {"device_id": "siren-1", "inputs": {"kind": "gpio", "contactor_pin": 17, "active_high": True}},
            "active_high",
        ),
        (
            {"device_id": "siren-1", "inputs": {"kind": "modbus", "host": "h", "contactor": 3, "fault": 3}},
            "own address",
        ),
        (
            {
                "device_id": "siren-1",
                "inputs": {"kind": "modbus", "host": "h", "table": "holding_registers", "contactor": 0, "fault": 200},
            },
            "within 125",
        ),
        ({"device_id": "siren-1", "inputs": {"kind": "modbus", "host": "h", "contactor": 0, "port": 0}}, "port"),
        ({"device_id": "siren-1", "inputs": {"kind": "simulated"}, "debounce_s": -1}, "debounce_s"),
    ],
)
def test_impossible_siren_settings_are_rejected_with_the_setting_named(item: dict[str, Any], problem: str) -> None:
    with pytest.raises(ValidationError, match=problem):
        sirens(item)


def test_two_sirens_cannot_share_an_id_or_a_gpio_pin() -> None:
    with pytest.raises(ValidationError, match="unique"):
        sirens(
            {"device_id": "siren-1", "inputs": {"kind": "simulated"}},
            {"device_id": "siren-1", "inputs": {"kind": "simulated"}},
        )
    with pytest.raises(ValidationError, match="one siren input"):
        sirens(
            {"device_id": "siren-1", "inputs": {"kind": "gpio", "contactor_pin": 17}},
            {"device_id": "siren-2", "inputs": {"kind": "gpio", "contactor_pin": 22, "fault_pin": 17}},
        )


def test_the_section_itself_rejects_unknown_keys() -> None:
    with pytest.raises(ValidationError, match="Extra inputs"):
        SirensSettings.model_validate({"enabled": True, "sirenz": []})
