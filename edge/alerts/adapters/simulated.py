"""Simulated siren inputs (demo, tests): the contacts are set from code, and a read failure can be injected."""

from __future__ import annotations

from typing import Final

from edge.alerts.config import SimulatedInputs
from edge.alerts.inputs import SIMULATED, RawInputs, ReadError


class _Unset:
    pass


UNSET: Final = _Unset()


class SimulatedReader:
    """A siren whose contacts are whatever :meth:`set` said last."""

    max_read_s = 1.0

    def __init__(self, settings: SimulatedInputs) -> None:
        self._values = RawInputs(supply=settings.supply, contactor=settings.contactor, fault=settings.fault)
        self._wired = (settings.supply is not None, True, settings.fault is not None)
        self._failure: str | None = None
        self.reads = 0

    def set(
        self,
        *,
        supply: bool | _Unset = UNSET,
        contactor: bool | _Unset = UNSET,
        fault: bool | _Unset = UNSET,
    ) -> None:
        """Change some contacts (an input that is not wired stays unwired)."""
        old = self._values
        self._values = RawInputs(
            supply=old.supply if isinstance(supply, _Unset) or not self._wired[0] else supply,
            contactor=old.contactor if isinstance(contactor, _Unset) else contactor,
            fault=old.fault if isinstance(fault, _Unset) or not self._wired[2] else fault,
        )

    def fail(self, detail: str = "simulated I/O failure") -> None:
        """Make every read fail (with *detail*) until :meth:`recover`."""
        self._failure = detail

    def recover(self) -> None:
        """Reads work again."""
        self._failure = None

    @property
    def values(self) -> RawInputs:
        """The contacts as set now."""
        return self._values

    async def read(self) -> RawInputs:
        """The contacts as set now, or the injected failure."""
        self.reads += 1
        if self._failure is not None:
            raise ReadError(SIMULATED, self._failure)
        return self._values

    async def close(self) -> None:
        """Nothing to release."""
