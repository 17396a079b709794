"""The GPIO adapter on gpiozero's mock pins: dry contacts read as closed/open, pins only ever inputs, errors counted."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from gpiozero import InputDevice
from gpiozero.pins.mock import MockFactory

from edge.alerts.adapters.gpio import GpioReader
from edge.alerts.config import GpioInputs
from edge.alerts.inputs import OPEN_FAILED, READ_FAILED, RawInputs, ReadError


def reader(factory: MockFactory, **overrides: Any) -> GpioReader:
    data: dict[str, Any] = {"kind": "gpio", "supply_pin": 5, "contactor_pin": 6, "fault_pin": 13}
    data.update(overrides)
    return GpioReader(GpioInputs.model_validate(data), pin_factory=factory)


async def test_contacts_closing_to_ground_read_as_closed_with_the_internal_pull_up(pin_factory: MockFactory) -> None:
    r = reader(pin_factory)
    try:
        assert await r.read() == RawInputs(supply=False, contactor=False, fault=False)  # all open: pulled high
        pin_factory.pin(5).drive_low()
        pin_factory.pin(6).drive_low()
        assert await r.read() == RawInputs(supply=True, contactor=True, fault=False)
        pin_factory.pin(6).drive_high()
        assert await r.read() == RawInputs(supply=True, contactor=False, fault=False)
    finally:
        await r.close()


async def test_every_pin_is_claimed_as_an_input_and_released_on_close(pin_factory: MockFactory) -> None:
    r = reader(pin_factory)
    await r.read()
    assert {n: pin_factory.pin(n).function for n in (5, 6, 13)} == {5: "input", 6: "input", 13: "input"}
    assert pin_factory.pin(6).pull == "up"
    await r.close()
    InputDevice(6, pin_factory=pin_factory).close()  # free again


async def test_normally_closed_contacts_and_external_pulls_follow_the_settings(pin_factory: MockFactory) -> None:
    r = reader(pin_factory, pull_up=None, active_high=True, invert=["supply"], fault_pin=None)
    try:
        assert await r.read() == RawInputs(supply=True, contactor=False, fault=None)
        pin_factory.pin(5).drive_high()
        pin_factory.pin(6).drive_high()
        assert await r.read() == RawInputs(supply=False, contactor=True, fault=None)
        assert pin_factory.pin(6).pull == "floating"
    finally:
        await r.close()


async def test_a_pin_in_use_is_a_counted_open_failure_retried_with_back_off(pin_factory: MockFactory) -> None:
    squatter = InputDevice(6, pin_factory=pin_factory)
    r = reader(pin_factory)
    try:
        with pytest.raises(ReadError) as first:
            await r.read()
        assert (first.value.reason, first.value.counted) == (OPEN_FAILED, True)
        assert "GPIOPinInUse" in first.value.detail
        InputDevice(5, pin_factory=pin_factory).close()  # the pins claimed before the failure were released
        with pytest.raises(ReadError) as again:
            await r.read()
        assert (again.value.reason, again.value.counted) == (OPEN_FAILED, False)  # waiting: no new attempt
        squatter.close()
        await asyncio.sleep(1.1)  # the first back-off
        assert await r.read() == RawInputs(supply=False, contactor=False, fault=False)
    finally:
        squatter.close()
        await r.close()


async def test_a_pin_that_does_not_exist_is_a_counted_open_failure(pin_factory: MockFactory) -> None:
    r = reader(pin_factory, fault_pin="GPIO99")
    with pytest.raises(ReadError) as info:
        await r.read()
    assert info.value.reason == OPEN_FAILED and "GPIO99" in info.value.detail
    InputDevice(5, pin_factory=pin_factory).close()  # what was claimed before the failure was released


async def test_a_read_that_raises_is_counted_and_the_pins_reopened(pin_factory: MockFactory) -> None:
    r = reader(pin_factory)
    try:
        await r.read()
        assert r._devices is not None
        r._devices["contactor"].close()  # the device vanished under the adapter
        with pytest.raises(ReadError) as info:
            await r.read()
        assert info.value.reason == READ_FAILED and "Closed" in info.value.detail
        assert await r.read() == RawInputs(supply=False, contactor=False, fault=False)  # reopened at once
        pin_factory.pin(6).drive_low()
        assert (await r.read()).contactor is True
    finally:
        await r.close()
