"""What every siren input adapter provides: one raw sample of the three contacts per read, or a counted error."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final, Protocol

# Why a read failed (the keys of the failure counters in ``SirenMonitor.stats()``).
CONNECT_FAILED: Final = "connect_failed"  # the I/O module refused or did not answer the connection
CONNECTION_LOST: Final = "connection_lost"  # the connection dropped (module restarted, cable pulled)
NO_RESPONSE: Final = "no_response"  # connected, but no reply within the timeout
TIMEOUT: Final = "timeout"  # the read as a whole took too long (the monitor's own limit)
EXCEPTION_RESPONSE: Final = "exception_response"  # the module answered with a Modbus exception
SHORT_RESPONSE: Final = "short_response"  # the reply carried fewer values than asked for
WRONG_RESPONSE: Final = "wrong_response"  # the reply does not answer the request (function code, type)
PROTOCOL_ERROR: Final = "protocol_error"  # any other Modbus error
OPEN_FAILED: Final = "open_failed"  # the GPIO pins could not be claimed (no pin factory, pin in use, bad name)
READ_FAILED: Final = "read_failed"  # a GPIO read raised
SIMULATED: Final = "simulated"  # a failure injected into a simulated siren
UNEXPECTED: Final = "unexpected"  # an adapter raised something it should not have (a bug): logged with its trace


@dataclass(frozen=True, slots=True)
class RawInputs:
    """One sample of a siren's contacts as read, before debouncing (``None``: that input is not wired)."""

    supply: bool | None = None
    contactor: bool | None = None
    fault: bool | None = None


class ReadError(Exception):
    """A read that gave no usable sample. ``reason`` is a counter key (see the constants above).

    ``counted`` is False for a read that did not touch the I/O at all because the adapter is waiting out its
    reconnect back-off: the siren still has no reading (it goes ``unknown`` in time), but no new failure happened.
    """

    def __init__(self, reason: str, detail: str, *, counted: bool = True) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail[:400]
        self.counted = counted


class InputReader(Protocol):
    """A siren's input adapter. ``read`` never writes anything to the I/O (Varta only monitors sirens)."""

    max_read_s: float
    """The longest one ``read`` may take (connecting included); the monitor gives up after it (``timeout``)."""

    async def read(self) -> RawInputs:
        """Read every wired input once; raises :class:`ReadError` when that is impossible."""
        ...

    async def close(self) -> None:
        """Release the I/O (connections, pins). ``read`` may be called again afterwards and reopens it."""
        ...
