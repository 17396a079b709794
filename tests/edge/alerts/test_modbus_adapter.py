"""The Modbus TCP adapter against pymodbus's own server: it reads (only reads), and every garbage is a counted error."""

from __future__ import annotations

import asyncio
import re
import struct
import time
from pathlib import Path
from typing import Any

import pytest
from pymodbus.constants import ExcCodes

from edge.alerts.adapters.modbus import ModbusReader
from edge.alerts.config import ModbusInputs
from edge.alerts.inputs import (
    CONNECT_FAILED,
    CONNECTION_LOST,
    EXCEPTION_RESPONSE,
    NO_RESPONSE,
    SHORT_RESPONSE,
    WRONG_RESPONSE,
    RawInputs,
    ReadError,
)
from tests.edge.support import eventually
from tests.support.modbus_server import ModbusTestServer
from tests.support.ports import free_port

READS = {1, 2, 3, 4}


def reader(port: int, **overrides: Any) -> ModbusReader:
    data: dict[str, Any] = {
        "kind": "modbus",
        "host": "127.0.0.1",
        "port": port,
        "supply": 10,
        "contactor": 11,
        "fault": 13,
        "timeout_s": 1.0,
        "reconnect_min_s": 0.3,
        "reconnect_max_s": 1.0,
    }
    data.update(overrides)
    return ModbusReader(ModbusInputs.model_validate(data))


async def read_error(r: ModbusReader) -> ReadError:
    with pytest.raises(ReadError) as info:
        await r.read()
    return info.value


async def test_it_reads_every_input_with_one_request_per_poll(modbus_server: ModbusTestServer) -> None:
    r = reader(modbus_server.port)
    try:
        await modbus_server.set_bits("discrete_inputs", 10, True, False, False, False)
        assert await r.read() == RawInputs(supply=True, contactor=False, fault=False)
        await modbus_server.set_bits("discrete_inputs", 11, True, True, True)  # 12 is not ours
        assert await r.read() == RawInputs(supply=True, contactor=True, fault=True)
        await modbus_server.set_bits("discrete_inputs", 10, False)
        assert await r.read() == RawInputs(supply=False, contactor=True, fault=True)
        assert modbus_server.requests == [2, 2, 2]  # function 2 (read discrete inputs), once per read
        assert r.connects == 1
    finally:
        await r.close()


async def test_normally_closed_contacts_are_inverted(modbus_server: ModbusTestServer) -> None:
    r = reader(modbus_server.port, invert=["supply", "fault"])
    try:
        await modbus_server.set_bits("discrete_inputs", 10, False, True, False, False)
        assert await r.read() == RawInputs(supply=True, contactor=True, fault=True)
    finally:
        await r.close()


@pytest.mark.parametrize(("table", "code"), [("coils", 1), ("input_registers", 4), ("holding_registers", 3)])
async def test_coils_and_registers_are_read_where_a_module_shows_its_inputs(
    modbus_server: ModbusTestServer, table: str, code: int
) -> None:
    r = reader(modbus_server.port, table=table, supply=None, contactor=3, fault=1)
    try:
        if table == "coils":
            await modbus_server.set_bits("coils", 1, False, False, True)
        else:
            await modbus_server.set_registers(table, 1, 0, 0, 7)  # type: ignore[arg-type]
        assert await r.read() == RawInputs(supply=None, contactor=True, fault=False)
        assert modbus_server.requests == [code]
    finally:
        await r.close()


async def test_an_exception_response_is_counted_and_the_connection_kept(modbus_server: ModbusTestServer) -> None:
    r = reader(modbus_server.port)
    try:
        await r.read()
        modbus_server.exception_code = ExcCodes.DEVICE_FAILURE
        error = await read_error(r)
        assert (error.reason, error.counted) == (EXCEPTION_RESPONSE, True)
        assert "4" in error.detail and "device_failure" in error.detail
        modbus_server.exception_code = None
        assert await r.read() == RawInputs(supply=False, contactor=False, fault=False)
        assert r.connects == 1
    finally:
        await r.close()


async def test_an_address_the_module_does_not_have_is_an_exception_response(modbus_server: ModbusTestServer) -> None:
    r = reader(modbus_server.port, supply=None, contactor=62, fault=70)  # the module has 64 inputs
    try:
        error = await read_error(r)
        assert error.reason == EXCEPTION_RESPONSE and "illegal_address" in error.detail
    finally:
        await r.close()


def _without_data(packet: bytes) -> bytes:
    """A read reply whose byte count says 0: no values at all."""
    tid, pid, _length, unit, function = struct.unpack(">HHHBB", packet[:8])
    return struct.pack(">HHHBBB", tid, pid, 3, unit, function, 0)


def _other_function(packet: bytes) -> bytes:
    """The same reply, labelled as an answer to another function (coils instead of discrete inputs)."""
    return packet[:7] + bytes([1]) + packet[8:]


@pytest.mark.parametrize("table", ["discrete_inputs", "holding_registers"])
async def test_a_reply_with_too_few_values_is_a_short_response(modbus_server: ModbusTestServer, table: str) -> None:
    r = reader(modbus_server.port, table=table)
    try:
        modbus_server.corrupt_reply = _without_data
        assert (await read_error(r)).reason == SHORT_RESPONSE
        modbus_server.corrupt_reply = None
        await r.read()
    finally:
        await r.close()


async def test_a_reply_to_another_function_is_a_wrong_response(modbus_server: ModbusTestServer) -> None:
    r = reader(modbus_server.port)
    try:
        modbus_server.corrupt_reply = _other_function
        assert (await read_error(r)).reason == WRONG_RESPONSE
    finally:
        await r.close()


async def test_bytes_that_are_no_modbus_reply_are_counted_and_the_connection_renewed(
    modbus_server: ModbusTestServer,
) -> None:
    r = reader(modbus_server.port)
    try:
        await r.read()
        modbus_server.corrupt_reply = lambda _packet: b"\xde\xad\xbe\xef garbage \x00\x00\x00"
        error = await read_error(r)
        assert error.reason == NO_RESPONSE and error.counted
        modbus_server.corrupt_reply = None
        assert await r.read() == RawInputs(supply=False, contactor=False, fault=False)
        assert r.connects == 2  # the confused connection was dropped and a new one opened
    finally:
        await r.close()


async def test_connection_refused_is_counted_once_per_attempt_and_retried_with_back_off() -> None:
    port = free_port()
    r = reader(port, reconnect_min_s=0.5)
    try:
        first = await read_error(r)
        assert (first.reason, first.counted) == (CONNECT_FAILED, True)
        server = await ModbusTestServer(port=port).start()
        try:
            waiting = await read_error(r)  # within the back-off: no attempt, nothing new to count
            assert (waiting.reason, waiting.counted) == (CONNECT_FAILED, False)
            assert server.requests == []
            deadline = time.monotonic() + 5
            while True:
                try:
                    await r.read()
                    break
                except ReadError as exc:
                    assert not exc.counted and time.monotonic() < deadline
                    await asyncio.sleep(0.05)
            assert r.connects == 1
        finally:
            await server.stop()
    finally:
        await r.close()


async def test_a_stopped_module_is_a_lost_connection_and_is_read_again_once_it_is_back(
    modbus_server: ModbusTestServer,
) -> None:
    r = reader(modbus_server.port)
    try:
        await modbus_server.set_bits("discrete_inputs", 11, True)
        assert (await r.read()).contactor is True
        await modbus_server.stop()
        await asyncio.sleep(0.2)  # the client sees the connection close
        reasons = []
        for _ in range(3):
            error = await read_error(r)
            reasons.append((error.reason, error.counted))
            await asyncio.sleep(0.05)
        assert reasons[0] == (CONNECTION_LOST, True)  # it had been working: one attempt to reconnect at once...
        assert reasons[1] == (CONNECT_FAILED, True)  # ... refused, then back-off
        assert reasons[2] == (CONNECT_FAILED, False)
        await modbus_server.start()
        values: list[RawInputs] = []

        async def read_ok() -> bool:
            try:
                values.append(await r.read())
            except ReadError:
                return False
            return True

        deadline = time.monotonic() + 5
        while not await read_ok():
            assert time.monotonic() < deadline, "the adapter never reconnected"
            await asyncio.sleep(0.05)
        assert values[-1].contactor is True and r.connects == 2
    finally:
        await r.close()


async def test_the_adapter_only_ever_reads(modbus_server: ModbusTestServer) -> None:
    for table in ("discrete_inputs", "coils", "holding_registers", "input_registers"):
        r = reader(modbus_server.port, table=table)
        try:
            for _ in range(3):
                await r.read()
        finally:
            await r.close()
    await eventually(lambda: len(modbus_server.requests) == 12, what="12 requests")
    assert set(modbus_server.requests) == READS
    assert modbus_server.writes() == []


def test_no_siren_code_can_drive_an_output() -> None:
    """Varta only monitors sirens: no write request, no output device anywhere in the siren package."""
    package = Path(__file__).resolve().parents[3] / "edge" / "alerts"
    forbidden = re.compile(r"\bwrite_(coil|coils|register|registers)\b|readwrite_registers|mask_write|OutputDevice|"
                           r"\bLED\b|\bRelay\b|\.on\(\)|\.off\(\)|drive_(high|low)")  # fmt: skip
    offenders = [
        f"{path.relative_to(package)}: {line.strip()}"
        for path in sorted(package.rglob("*.py"))
        for line in path.read_text(encoding="utf-8").splitlines()
        if forbidden.search(line)
    ]
    assert offenders == []
