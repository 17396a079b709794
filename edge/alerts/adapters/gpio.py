"""Siren contacts on the node's GPIO pins, read with gpiozero (imported only here: nodes without sirens skip it).

Each wired input is a gpiozero ``InputDevice`` (the base of ``DigitalInputDevice``, without edge detection: the
monitor polls, so no callback thread is needed). Pins are only ever claimed as inputs; nothing here can drive one.

Opening the pins (pin-factory detection reads /proc and /dev) runs in a thread with a time limit; a failure is a
counted ``open_failed`` and is retried with back-off. Reading a level runs in the event loop, which is safe: it is
one ``ioctl`` on the GPIO character device (lgpio), one memory-mapped register read (RPi.GPIO) or an attribute
(mock pins), microseconds that never wait on anything outside the process. A read that raises (a pin closed under
us, a driver error) is a counted ``read_failed``, the pins are released and reopened.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any, Final

import structlog
from gpiozero import InputDevice  # type: ignore[import-untyped]

from edge.alerts.config import GpioInputs, InputName
from edge.alerts.inputs import OPEN_FAILED, READ_FAILED, RawInputs, ReadError
from varta.aio import wait_for

log = structlog.get_logger(__name__)

OPEN_TIMEOUT_S: Final = 5.0
REOPEN_MIN_S: Final = 1.0
REOPEN_MAX_S: Final = 30.0


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"[:300]


class GpioReader:
    """Reads a siren's contacts from GPIO pins (see the module docstring)."""

    max_read_s = OPEN_TIMEOUT_S + 1.0

    def __init__(self, settings: GpioInputs, pin_factory: Any | None = None) -> None:
        self.settings = settings
        self.pin_factory = pin_factory
        """A gpiozero pin factory (tests: ``MockFactory()``); None: gpiozero's default for this board."""
        self._devices: dict[InputName, Any] | None = None
        self._retry_at = 0.0
        self._backoff = REOPEN_MIN_S
        self._last_error = ""

    async def read(self) -> RawInputs:
        """Read every wired input once (opening the pins first when needed)."""
        devices = self._devices if self._devices is not None else await self._open()
        try:
            levels = {name: bool(device.is_active) for name, device in devices.items()}
        except Exception as exc:
            self._last_error = _describe(exc)
            await self.close()
            raise ReadError(READ_FAILED, self._last_error) from None
        self._backoff = REOPEN_MIN_S
        values = {name: level != (name in self.settings.invert) for name, level in levels.items()}
        return RawInputs(supply=values.get("supply"), contactor=values.get("contactor"), fault=values.get("fault"))

    async def close(self) -> None:
        """Release the pins."""
        devices, self._devices = self._devices, None
        if devices:
            try:
                await wait_for(asyncio.to_thread(_close_all, list(devices.values())), OPEN_TIMEOUT_S)
            except Exception as exc:
                log.warning("siren.gpio_close_failed", error=_describe(exc))

    async def _open(self) -> dict[InputName, Any]:
        now = time.monotonic()
        if now < self._retry_at:
            raise ReadError(OPEN_FAILED, self._last_error, counted=False)
        opening = asyncio.ensure_future(asyncio.to_thread(self._open_sync))
        try:
            devices = await wait_for(asyncio.shield(opening), OPEN_TIMEOUT_S)
        except BaseException as exc:
            # A thread that finishes after we gave up must not keep the pins claimed.
            opening.add_done_callback(_close_late)
            if isinstance(exc, asyncio.CancelledError):
                raise
            detail = "opening the pins timed out" if isinstance(exc, TimeoutError) else _describe(exc)
            self._last_error = detail
            self._retry_at = time.monotonic() + self._backoff
            self._backoff = min(self._backoff * 2, REOPEN_MAX_S)
            raise ReadError(OPEN_FAILED, detail) from None
        self._devices = devices
        return devices

    def _open_sync(self) -> dict[InputName, Any]:
        s = self.settings
        devices: dict[InputName, Any] = {}
        try:
            for name, pin in s.pins().items():
                devices[name] = InputDevice(
                    pin, pull_up=s.pull_up, active_state=s.active_high, pin_factory=self.pin_factory
                )
        except BaseException:
            _close_all(list(devices.values()))
            raise
        return devices


def _close_all(devices: list[Any]) -> None:
    for device in devices:
        try:
            device.close()
        except Exception as exc:
            log.warning("siren.gpio_close_failed", error=_describe(exc))


def _close_late(future: asyncio.Future[dict[InputName, Any]]) -> None:
    if future.cancelled() or future.exception() is not None:
        return
    _close_all(list(future.result().values()))
