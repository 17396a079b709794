"""Siren contacts on a Modbus TCP I/O module, read with pymodbus's asyncio client (imported only here).

One read request per poll covers every wired input (the span from the lowest to the highest address). The adapter
only ever sends read requests (functions 1, 2, 3 or 4): Varta monitors sirens, it never switches anything.

Failures are :class:`~edge.alerts.inputs.ReadError` with a counter reason: ``connect_failed`` (refused, no route,
timeout), ``connection_lost``, ``no_response``, ``exception_response`` (the module's Modbus exception, e.g. illegal
address), ``short_response`` (fewer values than asked for), ``wrong_response`` (not an answer to the request),
``protocol_error`` (a reply pymodbus cannot decode). Connection-level failures close the connection; the next one
is opened with back-off (``reconnect_min_s`` doubling to ``reconnect_max_s``; an established connection that drops
after good reads is retried at the next poll). pymodbus's own reconnect loop is switched off so that this back-off
is the only one.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Final

from pymodbus.client import AsyncModbusTcpClient
from pymodbus.constants import ExcCodes
from pymodbus.exceptions import ConnectionException, ModbusException, ModbusIOException
from pymodbus.pdu import ModbusPDU

from edge.alerts.config import ModbusInputs
from edge.alerts.inputs import (
    CONNECT_FAILED,
    CONNECTION_LOST,
    EXCEPTION_RESPONSE,
    NO_RESPONSE,
    PROTOCOL_ERROR,
    SHORT_RESPONSE,
    WRONG_RESPONSE,
    RawInputs,
    ReadError,
)
from varta.aio import wait_for

FUNCTION_CODES: Final = {"coils": 1, "discrete_inputs": 2, "holding_registers": 3, "input_registers": 4}
"""The only Modbus functions this adapter sends: reads."""


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"[:300]


def _exception_name(code: int) -> str:
    try:
        return ExcCodes(code).name.lower()
    except ValueError:
        return "unknown"


class ModbusReader:
    """Reads a siren's contacts from a Modbus TCP I/O module (see the module docstring)."""

    def __init__(self, settings: ModbusInputs) -> None:
        self.settings = settings
        self.addresses = settings.addresses()
        self.start = min(self.addresses.values())
        self.count = max(self.addresses.values()) - self.start + 1
        self.function_code = FUNCTION_CODES[settings.table]
        self.max_read_s = 2 * settings.timeout_s + 1.0
        self._client: AsyncModbusTcpClient | None = None
        self._good_reads_on_connection = 0
        self._backoff = settings.reconnect_min_s
        self._retry_at = 0.0
        self._last = ReadError(CONNECT_FAILED, "not connected yet")
        self.connects = 0
        """Connections opened (for tests and stats)."""

    async def read(self) -> RawInputs:
        """One read request covering every wired input."""
        client = self._client
        if client is not None and not client.connected:  # it dropped since the last read (the socket closed)
            raise self._drop(ReadError(CONNECTION_LOST, "the module closed the connection"))
        if client is None:
            client = await self._connect()
        try:
            response = await self._request(client)
        except asyncio.CancelledError:
            self._close()  # a request may be outstanding: never reuse this connection
            raise
        except ConnectionException as exc:
            raise self._drop(ReadError(CONNECTION_LOST, _describe(exc))) from None
        except ModbusIOException as exc:
            raise self._drop(ReadError(NO_RESPONSE, _describe(exc))) from None
        except (ModbusException, OSError) as exc:
            raise self._drop(ReadError(PROTOCOL_ERROR, _describe(exc))) from None
        except Exception as exc:  # pymodbus failing to decode garbage (struct.error, IndexError, ...)
            raise self._drop(ReadError(PROTOCOL_ERROR, f"undecodable reply: {_describe(exc)}")) from None
        values = self._values(response)
        self._good_reads_on_connection += 1
        self._backoff = self.settings.reconnect_min_s
        return values

    async def close(self) -> None:
        """Close the connection (the next read opens a new one)."""
        self._close()

    # ---------------------------------------------------------------------------------------------- internals

    async def _connect(self) -> AsyncModbusTcpClient:
        s = self.settings
        if time.monotonic() < self._retry_at:
            raise ReadError(self._last.reason, self._last.detail, counted=False)
        client = AsyncModbusTcpClient(
            s.host, port=s.port, timeout=s.timeout_s, retries=0, reconnect_delay=0, name=f"siren-{s.host}"
        )
        try:
            connected = await wait_for(client.connect(), s.timeout_s + 0.5)
        except asyncio.CancelledError:
            client.close()
            raise
        except Exception as exc:
            client.close()
            raise self._backoff_after(ReadError(CONNECT_FAILED, _describe(exc))) from None
        if not connected:
            client.close()
            raise self._backoff_after(ReadError(CONNECT_FAILED, f"cannot connect to {s.host}:{s.port}"))
        self._client = client
        self._good_reads_on_connection = 0
        self.connects += 1
        return client

    def _request(self, client: AsyncModbusTcpClient) -> Awaitable[ModbusPDU]:
        reads: dict[int, Callable[..., Awaitable[ModbusPDU]]] = {
            1: client.read_coils,
            2: client.read_discrete_inputs,
            3: client.read_holding_registers,
            4: client.read_input_registers,
        }
        return reads[self.function_code](self.start, count=self.count, device_id=self.settings.unit)

    def _values(self, response: ModbusPDU) -> RawInputs:
        if response.isError():
            code = int(response.exception_code)
            raise ReadError(EXCEPTION_RESPONSE, f"Modbus exception {code} ({_exception_name(code)})")
        if response.function_code != self.function_code:
            raise ReadError(WRONG_RESPONSE, f"function {response.function_code} answered function {self.function_code}")
        if self.function_code in (1, 2):
            raw: list[bool] = [bool(b) for b in response.bits]
            if len(raw) < self.count:
                raise ReadError(SHORT_RESPONSE, f"{len(raw)} bits for {self.count} asked")
        else:
            registers = list(response.registers)
            if len(registers) != self.count:
                raise ReadError(SHORT_RESPONSE, f"{len(registers)} registers for {self.count} asked")
            raw = [r != 0 for r in registers]
        invert = self.settings.invert
        values = {name: raw[address - self.start] != (name in invert) for name, address in self.addresses.items()}
        return RawInputs(supply=values.get("supply"), contactor=values.get("contactor"), fault=values.get("fault"))

    def _drop(self, error: ReadError) -> ReadError:
        """Close the connection after a connection-level failure; reconnect at once only after good reads."""
        good = self._good_reads_on_connection > 0
        self._close()
        if good:
            self._last, self._retry_at = error, 0.0
            return error
        return self._backoff_after(error)

    def _backoff_after(self, error: ReadError) -> ReadError:
        self._last = error
        self._retry_at = time.monotonic() + self._backoff
        self._backoff = min(self._backoff * 2, self.settings.reconnect_max_s)
        return error

    def _close(self) -> None:
        client, self._client = self._client, None
        self._good_reads_on_connection = 0
        if client is not None:
            client.close()
