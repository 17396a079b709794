"""What device integrations (and the demo's simulated devices) need from the edge agent to report devices."""

from __future__ import annotations

from typing import Any, Protocol

from varta.contract import DeviceKind, DeviceStatus, Severity

Attrs = dict[str, str | int | float | bool | None]
"""A device state's attributes (``DeviceState.attrs``)."""


class DeviceSink(Protocol):
    """Where devices report to: events and current states (the :class:`~edge.agent.EdgeAgent` provides it)."""

    async def emit_event(
        self,
        kind: str,
        severity: Severity = Severity.INFO,
        device_id: str | None = None,
        message: str = "",
        data: dict[str, Any] | None = None,
    ) -> int: ...

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
    ) -> int: ...
