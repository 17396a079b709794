"""Fixtures for siren monitoring: a recording device sink (checked against the contract), Modbus and GPIO parts."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from gpiozero import Device
from gpiozero.pins.mock import MockFactory

from edge.devices import Attrs
from tests.support.modbus_server import ModbusTestServer
from varta.contract import (
    SIREN_CHANGED_EVENT,
    Channel,
    DeviceKind,
    DeviceState,
    DeviceStatus,
    Event,
    Severity,
    SirenChanged,
    decode,
    encode,
    event_data,
    utcnow,
)


@dataclass
class Sent:
    """One thing a sink received: an event or a device state, as central would decode it."""

    event: Event | None = None
    state: DeviceState | None = None


class RecordingSink:
    """A :class:`~edge.devices.DeviceSink` that encodes every message as the agent would, decodes it as central
    does (so a payload the contract rejects fails the test), and records it. ``fail_next`` makes calls raise."""

    def __init__(self) -> None:
        self.sent: list[Sent] = []
        self.fail_next = 0
        self.failed = 0
        self.block: asyncio.Event | None = None
        """When set to an unset event, every call waits for it (a stalled outbox)."""

    async def _gate(self) -> None:
        if self.block is not None:
            await self.block.wait()
        if self.fail_next > 0:
            self.fail_next -= 1
            self.failed += 1
            raise OSError("disk full (test)")

    async def emit_event(
        self,
        kind: str,
        severity: Severity = Severity.INFO,
        device_id: str | None = None,
        message: str = "",
        data: dict[str, Any] | None = None,
    ) -> int:
        await self._gate()
        event = Event(
            node_id="node-1", boot_id="boot", seq=len(self.sent) + 1, ts=utcnow(), kind=kind, severity=severity,
            device_id=device_id, message=message, data=data or {},
        )  # fmt: skip
        decoded = decode(Channel.EVENT, encode(event))
        assert isinstance(decoded, Event)
        self.sent.append(Sent(event=decoded))
        return len(self.sent)

    async def set_device_state(
        self,
        device_id: str,
        kind: DeviceKind,
        status: DeviceStatus,
        reason: str | None = None,
        detail: str = "",
        attrs: Attrs | None = None,
        *,
        name: str = "",
    ) -> int:
        await self._gate()
        state = DeviceState(
            node_id="node-1", boot_id="boot", seq=len(self.sent) + 1, ts=utcnow(), device_id=device_id, kind=kind,
            name=name, status=status, reason=reason, detail=detail, attrs=attrs or {},
        )  # fmt: skip
        decoded = decode(Channel.STATE, encode(state))
        assert isinstance(decoded, DeviceState)
        self.sent.append(Sent(state=decoded))
        return len(self.sent)

    # -------------------------------------------------------------------------------------------- queries

    def changes(self, device_id: str | None = None) -> list[SirenChanged]:
        """The ``siren.state_changed`` events' data, in order."""
        out = []
        for s in self.sent:
            event = s.event
            if event is not None and event.kind == SIREN_CHANGED_EVENT and device_id in (None, event.device_id):
                data = event_data(event)
                assert isinstance(data, SirenChanged)
                out.append(data)
        return out

    def events(self, device_id: str | None = None) -> list[Event]:
        """The events, in order."""
        return [s.event for s in self.sent if s.event is not None and device_id in (None, s.event.device_id)]

    def states(self, device_id: str | None = None) -> list[DeviceState]:
        """The device states, in order."""
        return [s.state for s in self.sent if s.state is not None and device_id in (None, s.state.device_id)]

    def reasons(self, device_id: str) -> list[str | None]:
        """The reason (siren state) of every device state sent, in order."""
        return [s.reason for s in self.states(device_id)]

    def last_state(self, device_id: str) -> DeviceState | None:
        """The latest device state sent."""
        states = self.states(device_id)
        return states[-1] if states else None


@pytest.fixture
def sink() -> RecordingSink:
    return RecordingSink()


@pytest.fixture
def pin_factory() -> Iterator[MockFactory]:
    """gpiozero's mock pins (no Raspberry Pi needed); the global default is restored afterwards."""
    factory = MockFactory()
    previous = Device.pin_factory
    try:
        yield factory
    finally:
        factory.reset()
        Device.pin_factory = previous


@pytest.fixture
async def modbus_server() -> AsyncIterator[ModbusTestServer]:
    """pymodbus's Modbus TCP server on a free loopback port (stopped afterwards)."""
    server = await ModbusTestServer().start()
    try:
        yield server
    finally:
        await server.stop()
