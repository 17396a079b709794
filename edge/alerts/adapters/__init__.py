"""Siren input adapters; :func:`open_reader` imports gpiozero or pymodbus only for sirens that need them."""

from __future__ import annotations

from typing import Any

from edge.alerts.config import GpioInputs, ModbusInputs, SimulatedInputs, SirenSettings
from edge.alerts.inputs import InputReader
from varta.settings import ConfigError


def open_reader(siren: SirenSettings, *, pin_factory: Any | None = None) -> InputReader:
    """The adapter for one siren's inputs (nothing is opened yet: the first read does it).

    Raises :class:`~varta.settings.ConfigError` when the library a siren needs is not installed.
    """
    inputs = siren.inputs
    try:
        if isinstance(inputs, GpioInputs):
            from edge.alerts.adapters.gpio import GpioReader

            return GpioReader(inputs, pin_factory)
        if isinstance(inputs, ModbusInputs):
            from edge.alerts.adapters.modbus import ModbusReader

            return ModbusReader(inputs)
    except ImportError as exc:
        raise ConfigError(
            f"siren {siren.device_id} ({inputs.kind}) needs the 'alerts' extra: pip install 'varta[alerts]' "
            f"(missing module {exc.name!r})"
        ) from None
    assert isinstance(inputs, SimulatedInputs)
    from edge.alerts.adapters.simulated import SimulatedReader

    return SimulatedReader(inputs)
