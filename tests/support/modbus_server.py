"""pymodbus's own Modbus TCP server, in-process on a free loopback port, standing in for a siren's I/O module.

The test flips the module's inputs (:meth:`ModbusTestServer.set_bits`, :meth:`ModbusTestServer.set_registers`),
makes it misbehave (a Modbus exception for every read, a corrupted reply) and stops / restarts it on the same
port. Every request that reaches it is recorded by function code (``requests``), so a test can prove that the
adapter only ever reads.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

from pymodbus.constants import ExcCodes
from pymodbus.pdu import ModbusPDU
from pymodbus.server import ModbusTcpServer
from pymodbus.simulator import DataType, SimData, SimDevice

from tests.support.ports import free_port

Table = Literal["coils", "discrete_inputs", "holding_registers", "input_registers"]
WRITE_FUNCTION_CODES = frozenset({5, 6, 15, 16, 22, 23})
_SET_CODES: dict[Table, int] = {"coils": 1, "discrete_inputs": 2, "holding_registers": 3, "input_registers": 4}


class ModbusTestServer:
    """A Modbus TCP I/O module: 64 coils, 64 discrete inputs, 32 holding and 32 input registers, all 0."""

    def __init__(self, *, port: int | None = None, device_id: int = 1) -> None:
        self.port = port or free_port()
        self.device_id = device_id
        self.requests: list[int] = []
        """Function codes of every request received from a client, in order."""
        self.exception_code: ExcCodes | None = None
        """When set, every client read is answered with this Modbus exception."""
        self.corrupt_reply: Callable[[bytes], bytes] | None = None
        """When set, every reply's bytes pass through it before they are sent."""
        self._bits: dict[Table, dict[int, bool]] = {"coils": {}, "discrete_inputs": {}}
        self._registers: dict[Table, dict[int, int]] = {"holding_registers": {}, "input_registers": {}}
        self._server: ModbusTcpServer | None = None

    @property
    def running(self) -> bool:
        """Whether it is listening."""
        return self._server is not None

    async def start(self) -> ModbusTestServer:
        """Listen on 127.0.0.1:``port`` (the values set so far are kept across restarts)."""
        device = SimDevice(
            id=self.device_id,
            simdata=(
                [SimData(0, count=64, values=False, datatype=DataType.BITS)],
                [SimData(0, count=64, values=False, datatype=DataType.BITS)],
                [SimData(0, count=32, values=0, datatype=DataType.REGISTERS)],
                [SimData(0, count=32, values=0, datatype=DataType.REGISTERS)],
            ),
            action=self._action,
        )
        server = ModbusTcpServer(
            device, address=("127.0.0.1", self.port), trace_pdu=self._trace_pdu, trace_packet=self._trace_packet
        )
        await server.serve_forever(background=True)
        self._server = server
        for table, bits in self._bits.items():
            for address, value in bits.items():
                await server.async_setValues(self.device_id, _SET_CODES[table], address, [value])
        for table, registers in self._registers.items():
            for address, number in registers.items():
                await server.async_setValues(self.device_id, _SET_CODES[table], address, [number])
        return self

    async def stop(self) -> None:
        """Stop listening and drop every client connection (like the module losing power)."""
        server, self._server = self._server, None
        if server is not None:
            await server.shutdown()

    async def set_bits(self, table: Table, address: int, *values: bool) -> None:
        """Set coils or discrete inputs from *address* on (as the module's terminals would)."""
        for offset, value in enumerate(values):
            self._bits[table][address + offset] = value
        if self._server is not None:
            await self._server.async_setValues(self.device_id, _SET_CODES[table], address, list(values))

    async def set_registers(self, table: Table, address: int, *values: int) -> None:
        """Set holding or input registers from *address* on."""
        for offset, value in enumerate(values):
            self._registers[table][address + offset] = value
        if self._server is not None:
            await self._server.async_setValues(self.device_id, _SET_CODES[table], address, list(values))

    def writes(self) -> list[int]:
        """Function codes of the write requests received (a monitor must never send one)."""
        return [code for code in self.requests if code in WRITE_FUNCTION_CODES]

    # ---------------------------------------------------------------------------------------------- hooks

    async def _action(
        self,
        function_code: int,
        start_address: int,
        address: int,
        count: int,
        registers: list[int],
        set_values: list[int] | list[bool] | None,
    ) -> ExcCodes | None:
        if set_values is None and self.exception_code is not None:
            return self.exception_code
        return None

    def _trace_pdu(self, sending: bool, pdu: ModbusPDU) -> ModbusPDU:
        if not sending:
            self.requests.append(pdu.function_code)
        return pdu

    def _trace_packet(self, sending: bool, data: bytes) -> bytes:
        if sending and self.corrupt_reply is not None:
            return self.corrupt_reply(data)
        return data
