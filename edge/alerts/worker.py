"""One siren: poll its inputs, debounce them, and report every change to the agent (event + retained state).

Two tasks per siren. The **poll loop** reads the adapter every ``poll_interval_s`` (each read bounded by the
adapter's ``max_read_s``), feeds the pure :class:`~edge.alerts.state_machine.SirenStateMachine` and queues what
changed; a failed read is counted by reason and logged at most once a minute per reason. The **publisher** hands
the queued changes to the :class:`~edge.devices.DeviceSink` in order (``siren.state_changed`` events, then the
retained state), retrying with back-off when the sink fails (a change is dropped from the queue only once the
sink's durable outbox has it), and re-sends the state every ``resend_interval_s``. A slow sink therefore never
delays the reads, and a failing I/O module never delays the publishing.
"""

from __future__ import annotations

import asyncio
import collections
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Final

import structlog

from edge.alerts.config import SirenSettings
from edge.alerts.history import SirenHistory
from edge.alerts.inputs import TIMEOUT, UNEXPECTED, InputReader, RawInputs, ReadError
from edge.alerts.state_machine import Instant, SirenStateMachine
from edge.devices import Attrs, DeviceSink
from varta.aio import wait_event, wait_for
from varta.contract import (
    SIREN_CHANGED_EVENT,
    SIREN_STATUS,
    DeviceKind,
    Severity,
    SirenChanged,
    SirenInputs,
    SirenState,
    utcnow,
)
from varta.throttle import LogThrottle

log = structlog.get_logger(__name__)

Clock = Callable[[], Instant]
"""What time it is (monotonic and wall clock); tests pass their own."""

SEVERITY: Final[dict[SirenState, Severity]] = {
    SirenState.IDLE: Severity.INFO,
    SirenState.SOUNDING: Severity.WARNING,
    SirenState.FAULT: Severity.CRITICAL,
    SirenState.UNPOWERED: Severity.CRITICAL,
    SirenState.UNKNOWN: Severity.WARNING,
}
"""Severity of the ``siren.state_changed`` event entering each state (the contract has no 'error' level: a siren
that cannot sound is critical)."""

PUBLISH_RETRY_MIN_S: Final = 0.5
PUBLISH_RETRY_MAX_S: Final = 30.0
FLUSH_ON_STOP_S: Final = 2.0
CLOSE_TIMEOUT_S: Final = 5.0


def system_clock() -> Instant:
    """The real time."""
    return Instant(time.monotonic(), utcnow())


def _check_cancelled() -> None:
    """Re-raise a cancellation that a library swallowed (Python 3.11's ``asyncio.wait_for``, used inside pymodbus,
    can return a result and drop a cancellation arriving at the same moment): the loop must still stop."""
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError


@dataclass
class SirenStats:
    """Counters of one siren (``SirenMonitor.stats()``)."""

    state: SirenState = SirenState.UNKNOWN
    reads: int = 0
    failures: collections.Counter[str] = field(default_factory=collections.Counter)
    """Failed reads by reason (see :mod:`edge.alerts.inputs`)."""
    changes: int = 0
    events_sent: int = 0
    states_sent: int = 0
    publish_failures: int = 0
    pending_events: int = 0

    def as_dict(self) -> dict[str, Any]:
        """A JSON-able copy."""
        return {
            "state": self.state.value,
            "reads": self.reads,
            "failures": dict(self.failures),
            "changes": self.changes,
            "events_sent": self.events_sent,
            "states_sent": self.states_sent,
            "publish_failures": self.publish_failures,
            "pending_events": self.pending_events,
        }


class SirenWorker:
    """Watches one siren until cancelled (see the module docstring)."""

    def __init__(
        self,
        settings: SirenSettings,
        reader: InputReader,
        sink: DeviceSink,
        *,
        history: SirenHistory,
        clock: Clock = system_clock,
        on_change: Callable[[str, SirenState], None] | None = None,
    ) -> None:
        self.settings = settings
        self.on_change = on_change
        """Told of every settled state change at once, on the node (the kiosk's takeover), before any publishing."""
        self.device_id = settings.device_id
        self.reader = reader
        self.sink = sink
        self.history = history
        self.clock = clock
        self.stats = SirenStats()
        self.machine = SirenStateMachine(
            debounce_s=settings.debounce_s,
            unknown_after_s=settings.unknown_after_s,
            start=clock(),
            wired=settings.inputs.wired(),
        )
        self._events: collections.deque[SirenChanged] = collections.deque()
        self._dirty = True
        self._wake = asyncio.Event()
        self._throttle = LogThrottle()
        self._publish_throttle = LogThrottle()
        self._failing_reason: str | None = None
        self._failures_in_run = 0

    # ---------------------------------------------------------------------------------------------- loops

    async def run(self) -> None:
        """Start at ``unknown`` (published at once), then poll and publish until cancelled."""
        s = self.settings
        self.machine = SirenStateMachine(
            debounce_s=s.debounce_s, unknown_after_s=s.unknown_after_s, start=self.clock(), wired=s.inputs.wired()
        )
        self.stats.state = self.machine.state
        self._dirty = True
        self._wake.set()
        publisher = asyncio.create_task(self._publish_loop(), name=f"siren-{self.device_id}-publish")
        try:
            await self._poll_loop()
        finally:
            publisher.cancel()
            await asyncio.gather(publisher, return_exceptions=True)
            await self._flush_on_stop()
            try:
                await wait_for(self.reader.close(), CLOSE_TIMEOUT_S)
            except Exception as exc:
                log.warning("siren.close_failed", siren_id=self.device_id, error=str(exc)[:200])

    async def _poll_loop(self) -> None:
        interval = self.settings.interval_s
        while True:
            started = time.monotonic()
            await self.poll_once()
            _check_cancelled()
            await asyncio.sleep(max(0.0, interval - (time.monotonic() - started)))

    async def poll_once(self) -> None:
        """Read the inputs once and feed the result to the state machine (never raises but for cancellation)."""
        limit = self.reader.max_read_s
        try:
            sample = await wait_for(self.reader.read(), limit)
        except ReadError as exc:
            self._failed(exc.reason, exc.detail, counted=exc.counted)
        except TimeoutError:
            self._failed(TIMEOUT, f"no reading within {limit:g} s", counted=True)
            try:
                await wait_for(self.reader.close(), CLOSE_TIMEOUT_S)  # start afresh: whatever hung is abandoned
            except Exception as exc:
                log.warning("siren.close_failed", siren_id=self.device_id, error=str(exc)[:200])
        except Exception as exc:  # an adapter bug: count it, log its trace, keep going
            self._failed(UNEXPECTED, f"{type(exc).__name__}: {exc}"[:300], counted=True, trace=True)
        else:
            self._good(sample)

    async def _publish_loop(self) -> None:
        s = self.settings
        retry = PUBLISH_RETRY_MIN_S
        last_state_sent = float("-inf")
        while True:
            wait = last_state_sent + s.resend_interval_s - time.monotonic()
            await wait_event(self._wake, max(0.0, wait))
            self._wake.clear()
            if time.monotonic() - last_state_sent >= s.resend_interval_s:
                self._dirty = True
            try:
                if await self._flush():
                    last_state_sent = time.monotonic()
                if retry > PUBLISH_RETRY_MIN_S:
                    log.info("siren.publish_recovered", siren_id=self.device_id)
                    self._publish_throttle.reset()
                retry = PUBLISH_RETRY_MIN_S
            except Exception as exc:
                self.stats.publish_failures += 1
                held = self._publish_throttle.allow("publish", time.monotonic())
                if held is not None:
                    log.error(
                        "siren.publish_failed",
                        siren_id=self.device_id,
                        error=f"{type(exc).__name__}: {exc}"[:300],
                        pending_events=len(self._events),
                        retry_in_s=retry,
                        held_back=held,
                    )
                await asyncio.sleep(retry)
                retry = min(retry * 2, PUBLISH_RETRY_MAX_S)
                self._wake.set()

    async def _flush(self) -> bool:
        """Hand queued events, then the state when due, to the sink; True when the state was sent."""
        while self._events:
            change = self._events[0]
            await self.sink.emit_event(
                SIREN_CHANGED_EVENT,
                SEVERITY[change.state],
                self.device_id,
                f"siren {self.settings.name or self.device_id}: {change.previous.value} → {change.state.value}",
                data=change.model_dump(mode="json"),
            )
            self._events.popleft()
            self.stats.events_sent += 1
            self.stats.pending_events = len(self._events)
            await self._remember(change)
        if not self._dirty:
            return False
        self._dirty = False
        try:
            await self._send_state()
        except BaseException:
            self._dirty = True
            raise
        self.stats.states_sent += 1
        return True

    async def _flush_on_stop(self) -> None:
        """Stopping: give the sink a last short chance to take changes still queued."""
        if not self._events:
            return
        try:
            await wait_for(self._flush(), FLUSH_ON_STOP_S)
        except Exception as exc:
            log.error("siren.events_unsent", siren_id=self.device_id, events=len(self._events), error=str(exc)[:200])

    # ---------------------------------------------------------------------------------------------- readings

    def _good(self, sample: RawInputs) -> None:
        now = self.clock()
        self.stats.reads += 1
        if self._failing_reason is not None:
            log.info("siren.read_recovered", siren_id=self.device_id, failed_reads=self._failures_in_run)
            self._failing_reason, self._failures_in_run = None, 0
            self._throttle.reset()
        before = self.machine.settled_inputs()
        change = self.machine.feed(sample, now)
        if change is not None:
            self._changed(change)
        elif self.machine.settled_inputs() != before:  # same state, other inputs (e.g. fault while sounding)
            self._mark_dirty()

    def _failed(self, reason: str, detail: str, *, counted: bool, trace: bool = False) -> None:
        """A failed read: count it, log it (at most once a minute per reason; *trace*: with the traceback)."""
        now = self.clock()
        if counted:
            self.stats.failures[reason] += 1
            self._failures_in_run += 1
            held = self._throttle.allow(reason, now.mono)
            if held is not None:
                (log.exception if trace else log.warning)(
                    "siren.read_failed", siren_id=self.device_id, reason=reason, detail=detail, held_back=held
                )
        reason_changed = reason != self._failing_reason
        self._failing_reason = reason
        change = self.machine.fail(f"{reason}: {detail}", now)
        if change is not None:
            self._changed(change)
        elif reason_changed and self.machine.state == SirenState.UNKNOWN:
            self._mark_dirty()  # say why it is unknown

    def _changed(self, change: SirenChanged) -> None:
        self.stats.changes += 1
        self.stats.state = change.state
        log.info(
            "siren.state_changed",
            siren_id=self.device_id,
            state=change.state.value,
            previous=change.previous.value,
            previous_duration_s=change.previous_duration_s,
            detail=change.detail,
        )
        self._events.append(change)
        self.stats.pending_events = len(self._events)
        self._mark_dirty()
        if self.on_change is not None:
            try:
                self.on_change(self.device_id, change.state)
            except Exception:  # a listener's bug must not stop the siren being watched
                log.exception("siren.listener_failed", siren_id=self.device_id)

    def _mark_dirty(self) -> None:
        self._dirty = True
        self._wake.set()

    # ---------------------------------------------------------------------------------------------- reporting

    async def _remember(self, change: SirenChanged) -> None:
        if change.state == SirenState.SOUNDING:
            await self.history.sounded(self.device_id, change.changed_at)
        elif change.previous == SirenState.SOUNDING and change.previous_duration_s is not None:
            await self.history.silenced(self.device_id, change.previous_duration_s)

    def state_attrs(self) -> Attrs:
        """The retained state's attributes: settled inputs, since when, and when the siren last sounded."""
        inputs: SirenInputs = self.machine.settled_inputs()
        record = self.history.get(self.device_id)
        return {
            "supply": inputs.supply,
            "contactor": inputs.contactor,
            "fault": inputs.fault,
            "since": self.machine.since.wall.isoformat(),
            "last_sounded_at": record.last_sounded_at.isoformat() if record.last_sounded_at else None,
            "last_sounding_s": record.last_sounding_s,
        }

    async def _send_state(self) -> None:
        state = self.machine.state
        await self.sink.set_device_state(
            self.device_id,
            DeviceKind.SIREN,
            SIREN_STATUS[state],
            reason=state.value,
            detail=self.machine.detail,
            attrs=self.state_attrs(),
            name=self.settings.name,
        )
