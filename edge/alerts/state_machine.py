"""A siren's debounced state machine: pure (no I/O, no clock of its own; every call says what time it is).

**Debouncing.** Each input's new value is accepted only once every sample for ``debounce_s`` has shown it: a
contact that bounces (or a glitch shorter than ``debounce_s``) never changes the state. A change is dated when the
inputs have settled (``SirenChanged.changed_at``: the sample that completed ``debounce_s`` of stability), so it
follows the contact by ``debounce_s`` plus at most one poll interval; both ends of every duration carry that lag.

**State** from the debounced inputs, in this order of precedence:

1. supply False → ``unpowered``: without supply a siren cannot sound, whatever its contactor says;
2. contactor True → ``sounding``, even when the fault input is also set. During an air-raid alert "is it making
   noise?" is what counts: central's rules (``siren_failure``: not sounding within N s of an alert;
   ``unexpected_activation``: sounding without one) key off ``sounding``, and reporting ``fault`` instead would
   raise a false failure and hide an unexpected activation. The fault is not hidden: the inputs (``fault: true``)
   and the detail say so, and once the contactor drops the state becomes ``fault``;
3. fault True → ``fault``;
4. otherwise ``idle``.

An input that is not wired (``None``) counts as supply present / no fault. **Unknown:** reads failing for
``unknown_after_s`` → ``unknown`` (dated when that time has passed), and the debounced inputs are forgotten; the first
good reads then settle like at start-up (the state starts ``unknown`` until every wired input has settled).
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime

from edge.alerts.config import INPUT_NAMES, InputName
from edge.alerts.inputs import RawInputs
from varta.contract import SirenChanged, SirenInputs, SirenState

DETAIL_MAX = 500
EPSILON_S = 1e-6  # a sample taken "exactly" debounce_s later counts, whatever floating point makes of the difference


@dataclass(frozen=True, slots=True)
class Instant:
    """A point in time: ``mono`` (monotonic seconds) for durations and debouncing, ``wall`` (UTC) for messages."""

    mono: float
    wall: datetime


def derive_state(inputs: SirenInputs) -> tuple[SirenState, str]:
    """The state (and a short detail) shown by settled inputs; see the module docstring for the precedence."""
    if inputs.supply is False:
        return SirenState.UNPOWERED, "contactor engaged but no supply" if inputs.contactor else "no supply"
    if inputs.contactor:
        return SirenState.SOUNDING, "sounding with the fault input set" if inputs.fault else ""
    if inputs.fault:
        return SirenState.FAULT, "the siren controller reports a fault"
    return SirenState.IDLE, ""


class Debouncer:
    """One input: a new value is accepted after it was the only one seen for ``debounce_s``."""

    def __init__(self, debounce_s: float) -> None:
        self.debounce_s = debounce_s
        self.value: bool | None = None
        """The accepted value (None: not settled yet, or not wired)."""
        self._candidate: bool | None = None
        self._candidate_since: Instant | None = None

    def feed(self, raw: bool | None, at: Instant) -> bool:
        """Take one sample; True when the accepted value changed with it."""
        if raw is None:  # not wired
            changed = self.value is not None
            self.reset()
            return changed
        if raw == self.value:  # back to the accepted value: whatever was bouncing did not last
            self._candidate = self._candidate_since = None
            return False
        if raw != self._candidate or self._candidate_since is None:
            self._candidate, self._candidate_since = raw, at
        if at.mono - self._candidate_since.mono >= self.debounce_s - EPSILON_S:
            self.value = raw
            self._candidate = self._candidate_since = None
            return True
        return False

    def reset(self) -> None:
        """Forget the accepted value and any candidate (the input is unreadable)."""
        self.value = self._candidate = self._candidate_since = None


class SirenStateMachine:
    """Debounced inputs → :class:`SirenState`; :meth:`feed` and :meth:`fail` return a change or None."""

    def __init__(
        self, *, debounce_s: float, unknown_after_s: float, start: Instant, wired: Collection[InputName]
    ) -> None:
        self.unknown_after_s = unknown_after_s
        self.wired = tuple(name in wired for name in INPUT_NAMES)
        """Which inputs are wired (supply, contactor, fault)."""
        self.inputs = (Debouncer(debounce_s), Debouncer(debounce_s), Debouncer(debounce_s))
        self.state = SirenState.UNKNOWN
        self.since = start
        self.detail = "not read yet"
        self.failing_since: Instant | None = None
        """When the current run of failed reads began (None: the last read worked)."""

    def settled_inputs(self) -> SirenInputs:
        """The debounced inputs (None for an input not wired or not settled)."""
        supply, contactor, fault = (d.value for d in self.inputs)
        return SirenInputs(supply=supply, contactor=contactor, fault=fault)

    def feed(self, sample: RawInputs, at: Instant) -> SirenChanged | None:
        """A good read: debounce it; returns the change when the state changed."""
        self.failing_since = None
        raws = (sample.supply, sample.contactor, sample.fault)
        for d, raw, wired in zip(self.inputs, raws, self.wired, strict=True):
            d.feed(raw if wired else None, at)
        settled = all(d.value is not None for d, wired in zip(self.inputs, self.wired, strict=True) if wired)
        if not settled:
            return None
        inputs = self.settled_inputs()
        state, detail = derive_state(inputs)
        if state == self.state:
            self.detail = detail
            return None
        return self._change(state, detail, at, inputs)

    def fail(self, detail: str, at: Instant) -> SirenChanged | None:
        """A failed read: after ``unknown_after_s`` of them the state becomes ``unknown`` (returned once)."""
        if self.failing_since is None:
            self.failing_since = at
        if self.state == SirenState.UNKNOWN:
            self.detail = detail[:DETAIL_MAX] or self.detail
            return None
        if at.mono - self.failing_since.mono < self.unknown_after_s:
            return None
        for d in self.inputs:
            d.reset()
        return self._change(SirenState.UNKNOWN, detail or "the inputs cannot be read", at, SirenInputs())

    def _change(self, state: SirenState, detail: str, at: Instant, inputs: SirenInputs) -> SirenChanged:
        if at.mono < self.since.mono:  # never date a change before the state it ends began
            at = self.since
        change = SirenChanged(
            state=state,
            previous=self.state,
            changed_at=at.wall,
            previous_since=self.since.wall,
            previous_duration_s=round(at.mono - self.since.mono, 3),
            inputs=inputs,
            detail=detail[:DETAIL_MAX],
        )
        self.state, self.since, self.detail = state, at, detail[:DETAIL_MAX]
        return change
