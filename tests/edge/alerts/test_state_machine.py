"""The pure siren state machine: debouncing, the state each input combination means, unknown and recovery."""

from __future__ import annotations

from collections.abc import Collection
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edge.alerts.config import InputName
from edge.alerts.inputs import RawInputs
from edge.alerts.state_machine import EPSILON_S, Instant, SirenStateMachine, derive_state
from varta.contract import SirenChanged, SirenInputs, SirenState

EPOCH = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
DEBOUNCE = 0.3
UNKNOWN_AFTER = 5.0
ALL: tuple[InputName, ...] = ("supply", "contactor", "fault")


def t(seconds: float) -> Instant:
    return Instant(seconds, EPOCH + timedelta(seconds=seconds))


def machine(wired: Collection[InputName] = ALL, start: float = 0.0) -> SirenStateMachine:
    return SirenStateMachine(debounce_s=DEBOUNCE, unknown_after_s=UNKNOWN_AFTER, start=t(start), wired=wired)


def seconds(at: datetime | None) -> float:
    assert at is not None
    return (at - EPOCH).total_seconds()


def raw(supply: bool | None = True, contactor: bool | None = False, fault: bool | None = False) -> RawInputs:
    return RawInputs(supply=supply, contactor=contactor, fault=fault)


def feed_steady(
    m: SirenStateMachine, sample: RawInputs, start: float, end: float, step: float = 0.05
) -> list[SirenChanged]:
    """Feed the same sample every *step* seconds from *start* to *end* (inclusive); the changes it caused."""
    changes = []
    n = round((end - start) / step)
    for i in range(n + 1):
        change = m.feed(sample, t(start + i * step))
        if change is not None:
            changes.append(change)
    return changes


def settled_idle(start: float = 0.0) -> SirenStateMachine:
    m = machine()
    assert [c.state for c in feed_steady(m, raw(), start, start + 1)] == [SirenState.IDLE]
    return m


# ------------------------------------------------------------------------------------------------ state mapping


@pytest.mark.parametrize(
    ("supply", "contactor", "fault", "state"),
    [
        (True, False, False, SirenState.IDLE),
        (True, True, False, SirenState.SOUNDING),
        (True, False, True, SirenState.FAULT),
        (True, True, True, SirenState.SOUNDING),  # sounding wins over fault: the noise is what counts in an alert
        (False, False, False, SirenState.UNPOWERED),
        (False, True, False, SirenState.UNPOWERED),  # a contactor without supply makes no sound
        (False, False, True, SirenState.UNPOWERED),
        (False, True, True, SirenState.UNPOWERED),
        (None, True, None, SirenState.SOUNDING),  # supply and fault not wired
        (None, False, None, SirenState.IDLE),
    ],
)
def test_each_combination_of_settled_inputs_means_one_state(
    supply: bool | None, contactor: bool, fault: bool | None, state: SirenState
) -> None:
    assert derive_state(SirenInputs(supply=supply, contactor=contactor, fault=fault))[0] == state


def test_a_siren_sounding_with_its_fault_input_set_says_so_in_the_detail() -> None:
    state, detail = derive_state(SirenInputs(supply=True, contactor=True, fault=True))
    assert state == SirenState.SOUNDING and "fault" in detail
    assert derive_state(SirenInputs(supply=True, contactor=True, fault=False))[1] == ""


# ------------------------------------------------------------------------------------------------ debouncing


def test_the_state_is_unknown_until_every_wired_input_has_been_stable_for_the_debounce_time() -> None:
    m = machine()
    assert m.state == SirenState.UNKNOWN
    assert feed_steady(m, raw(), 0.0, 0.25) == []
    change = m.feed(raw(), t(0.3))
    assert change is not None and (change.previous, change.state) == (SirenState.UNKNOWN, SirenState.IDLE)
    assert change.changed_at == EPOCH + timedelta(seconds=0.3)  # dated when the inputs had settled
    assert change.inputs == SirenInputs(supply=True, contactor=False, fault=False)


def test_a_change_is_reported_once_after_the_debounce_time_and_dated_when_it_settled() -> None:
    m = settled_idle()
    changes = feed_steady(m, raw(contactor=True), 2.0, 4.0)
    assert len(changes) == 1
    change = changes[0]
    assert (change.previous, change.state) == (SirenState.IDLE, SirenState.SOUNDING)
    assert seconds(change.changed_at) == pytest.approx(2.3)
    assert seconds(change.previous_since) == pytest.approx(0.3)
    assert change.previous_duration_s == pytest.approx(2.0)
    assert m.state == SirenState.SOUNDING and m.since.mono == pytest.approx(2.3)


def test_contact_bounce_that_settles_on_the_new_value_gives_exactly_one_change() -> None:
    m = settled_idle()
    changes = []
    for i in range(10):  # 10 toggles within 50 ms
        change = m.feed(raw(contactor=i % 2 == 0), t(2.0 + i * 0.005))
        changes.append(change)
    changes += feed_steady(m, raw(contactor=True), 2.05, 3.0, step=0.01)
    real = [c for c in changes if c is not None]
    assert [c.state for c in real] == [SirenState.SOUNDING]
    assert seconds(real[0].changed_at) == pytest.approx(2.35)  # debounce_s after the bouncing stopped


def test_a_glitch_shorter_than_the_debounce_time_changes_nothing() -> None:
    m = settled_idle()
    assert feed_steady(m, raw(contactor=True), 2.0, 2.25) == []
    assert feed_steady(m, raw(), 2.3, 5.0) == []
    assert m.state == SirenState.IDLE


def test_with_no_debounce_the_first_sample_counts() -> None:
    m = SirenStateMachine(debounce_s=0, unknown_after_s=1, start=t(0), wired=ALL)
    assert m.feed(raw(), t(0.0)) is not None
    change = m.feed(raw(contactor=True), t(0.1))
    assert change is not None and change.state == SirenState.SOUNDING


def test_inputs_that_are_not_wired_count_as_supply_present_and_no_fault() -> None:
    only_contactor: tuple[InputName, ...] = ("contactor",)
    m = machine(wired=only_contactor)
    # whatever an adapter says for an unwired input is ignored
    changes = feed_steady(m, raw(supply=False, contactor=True, fault=True), 0, 1)
    assert [c.state for c in changes] == [SirenState.SOUNDING]
    assert changes[0].inputs == SirenInputs(supply=None, contactor=True, fault=None)


def test_an_input_change_that_keeps_the_state_is_no_change_but_shows_in_the_settled_inputs() -> None:
    m = settled_idle()
    assert len(feed_steady(m, raw(contactor=True), 2, 3)) == 1
    assert feed_steady(m, raw(contactor=True, fault=True), 3, 4) == []
    assert m.state == SirenState.SOUNDING and m.settled_inputs().fault is True and "fault" in m.detail
    changes = feed_steady(m, raw(fault=True), 4, 5)
    assert [(c.previous, c.state) for c in changes] == [(SirenState.SOUNDING, SirenState.FAULT)]


# ------------------------------------------------------------------------------------------------ unknown


def test_reads_failing_for_unknown_after_s_make_the_state_unknown() -> None:
    m = settled_idle()
    assert m.fail("connect_failed: refused", t(10.0)) is None
    assert m.fail("connect_failed: refused", t(14.9)) is None
    change = m.fail("connect_failed: refused", t(15.0))
    assert change is not None
    assert (change.previous, change.state) == (SirenState.IDLE, SirenState.UNKNOWN)
    assert seconds(change.changed_at) == pytest.approx(15.0)
    assert change.previous_duration_s == pytest.approx(14.7)
    assert change.detail == "connect_failed: refused"
    assert change.inputs == SirenInputs()  # nothing is known any more
    assert m.fail("connect_failed: refused", t(20.0)) is None  # reported once


def test_a_good_read_between_failures_restarts_the_unknown_timer() -> None:
    m = settled_idle()
    for second in (10.0, 12.0, 14.0):
        assert m.fail("no_response", t(second)) is None
    assert m.feed(raw(), t(14.5)) is None
    for second in (15.0, 17.0, 19.0):
        assert m.fail("no_response", t(second)) is None
    assert m.state == SirenState.IDLE


def test_after_unknown_the_first_good_reads_settle_like_at_start_up() -> None:
    m = settled_idle()
    m.fail("connection_lost", t(10.0))
    assert m.fail("connection_lost", t(16.0)) is not None
    assert feed_steady(m, raw(contactor=True), 20.0, 20.25) == []
    assert m.state == SirenState.UNKNOWN
    change = m.feed(raw(contactor=True), t(20.3))
    assert change is not None
    assert (change.previous, change.state) == (SirenState.UNKNOWN, SirenState.SOUNDING)
    assert seconds(change.changed_at) == pytest.approx(20.3)
    assert change.previous_duration_s == pytest.approx(4.3)  # unknown from 16 s


def test_failures_before_the_first_good_read_keep_the_state_unknown_and_say_why() -> None:
    m = machine()
    assert m.fail("connect_failed: refused", t(0)) is None
    assert m.fail("connect_failed: refused", t(60)) is None
    assert m.state == SirenState.UNKNOWN and m.detail == "connect_failed: refused"


# ------------------------------------------------------------------------------------------------ properties

steps = st.lists(st.tuples(st.floats(min_value=0.001, max_value=0.2), st.booleans()), min_size=1, max_size=60)


def _runs_of(value: bool, samples: list[tuple[float, bool]]) -> list[float]:
    """How long each run of consecutive samples equal to *value* lasted (first to last sample)."""
    spans, first, last = [], None, None
    for at, v in samples:
        if v == value:
            first = at if first is None else first
            last = at
        elif first is not None and last is not None:
            spans.append(last - first)
            first = last = None
    if first is not None and last is not None:
        spans.append(last - first)
    return spans


@settings(max_examples=300, deadline=None)
@given(steps)
def test_property_a_contact_never_holding_a_new_value_for_the_debounce_time_changes_nothing(
    deltas: list[tuple[float, bool]],
) -> None:
    m = settled_idle()
    now, samples = 2.0, []
    for dt, contactor in deltas:
        now += dt
        samples.append((now, contactor))
    if any(span >= DEBOUNCE - EPSILON_S for span in _runs_of(True, samples)):
        return  # a run that long is a real change, not bounce
    for at, contactor in samples:
        assert m.feed(raw(contactor=contactor), t(at)) is None
    assert m.state == SirenState.IDLE


@settings(max_examples=300, deadline=None)
@given(steps)
def test_property_any_bounce_then_a_steady_new_value_gives_exactly_one_change(
    deltas: list[tuple[float, bool]],
) -> None:
    m = settled_idle()
    now = 2.0
    changes = []
    burst_end = 2.0 + DEBOUNCE * 0.99
    for dt, contactor in deltas:  # a burst kept shorter than the debounce time
        now += dt
        if now >= burst_end:
            break
        changes.append(m.feed(raw(contactor=contactor), t(now)))
    changes += feed_steady(m, raw(contactor=True), burst_end + 0.001, burst_end + 1.0, step=0.02)
    real = [c for c in changes if c is not None]
    assert [(c.previous, c.state) for c in real] == [(SirenState.IDLE, SirenState.SOUNDING)]


@settings(max_examples=200, deadline=None)
@given(st.lists(st.floats(min_value=0.001, max_value=UNKNOWN_AFTER * 0.99), min_size=1, max_size=30))
def test_property_failures_shorter_than_unknown_after_s_never_change_the_state(gaps: list[float]) -> None:
    m = settled_idle()
    now = 2.0
    for gap in gaps:  # a run of failures lasting `gap`, then one good read
        assert m.fail("no_response", t(now)) is None
        assert m.fail("no_response", t(now + gap)) is None
        now += gap + 0.01
        assert m.feed(raw(), t(now)) is None
    assert m.state == SirenState.IDLE
