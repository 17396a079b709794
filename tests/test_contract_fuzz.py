"""Property tests: whatever arrives on a Varta topic, decoding either succeeds or raises ContractError with a reason.

A receiver (central's ingest, the edge's command handler) counts and logs rejects by reason; any other exception
would take its consumer loop down.
"""

from __future__ import annotations

from typing import Any

import orjson
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

import varta.contract as contract
from varta.asyncapi import example_message
from varta.contract import (
    CHANNEL_MODELS,
    DEVICE_CHANNELS,
    SCHEMA_VERSION,
    Channel,
    ContractError,
    Envelope,
    RejectReason,
    decode_for_topic,
    topic,
)

SITE, NODE, DEVICE = "site-1", "node-1", "dev-1"
FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])

channels = st.sampled_from(list(Channel))

json_scalars = st.none() | st.booleans() | st.integers(-(2**63), 2**64 - 1) | st.floats(allow_nan=False) | st.text()
json_values = st.recursive(
    json_scalars,
    lambda children: st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=12), children, max_size=5),
    max_leaves=25,
)


def _topic(channel: Channel) -> str:
    return topic(SITE, NODE, channel, DEVICE if channel in DEVICE_CHANNELS else None)


def _valid(channel: Channel) -> dict[str, Any]:
    data: dict[str, Any] = orjson.loads(
        contract.encode(example_message(channel, site=SITE, node_id=NODE, device_id=DEVICE))
    )
    return data


def _outcome(topic_name: str, payload: bytes, **kwargs: Any) -> Envelope | ContractError:
    """The decoded message, or the ContractError; any other exception fails the test."""
    try:
        return decode_for_topic(topic_name, payload, **kwargs)
    except ContractError as exc:
        assert isinstance(exc.reason, RejectReason)
        return exc


def _assert_belongs(message: Envelope, channel: Channel) -> None:
    assert type(message) is CHANNEL_MODELS[channel]
    assert message.node_id == NODE
    assert message.v == SCHEMA_VERSION


@FUZZ
@given(channel=channels, payload=st.binary(max_size=2048))
@example(channel=Channel.HEALTH, payload=b"[" * 100_000)
@example(channel=Channel.HEALTH, payload=b'{"v": 1, "seq": 1' + b"0" * 500 + b"}")
@example(channel=Channel.EVENT, payload=b'{"v": 1, "ts": NaN}')
def test_arbitrary_bytes_never_raise_anything_else(channel: Channel, payload: bytes) -> None:
    outcome = _outcome(_topic(channel), payload)
    if isinstance(outcome, Envelope):
        _assert_belongs(outcome, channel)


@FUZZ
@given(channel=channels, value=json_values)
def test_arbitrary_json_never_raises_anything_else(channel: Channel, value: Any) -> None:
    payload = orjson.dumps(value)
    outcome = _outcome(_topic(channel), payload)
    if isinstance(outcome, Envelope):
        _assert_belongs(outcome, channel)
    elif not isinstance(value, dict):
        assert outcome.reason is RejectReason.NOT_AN_OBJECT


@st.composite
def mutated_payloads(draw: st.DrawFn) -> tuple[Channel, dict[str, Any]]:
    """A valid payload with a few fields removed, replaced by arbitrary JSON, or added."""
    channel = draw(channels)
    data = _valid(channel)
    for _ in range(draw(st.integers(1, 4))):
        action = draw(st.sampled_from(["drop", "replace", "add"]))
        if action == "drop" and data:
            data.pop(draw(st.sampled_from(sorted(data))))
        elif action == "replace" and data:
            data[draw(st.sampled_from(sorted(data)))] = draw(json_values)
        else:
            data[draw(st.text(max_size=12))] = draw(json_values)
    return channel, data


@FUZZ
@given(case=mutated_payloads())
def test_mutated_valid_payloads_decode_or_are_rejected_with_a_reason(case: tuple[Channel, dict[str, Any]]) -> None:
    channel, data = case
    outcome = _outcome(_topic(channel), orjson.dumps(data))
    if isinstance(outcome, Envelope):
        _assert_belongs(outcome, channel)
    elif data.get("v", None) != SCHEMA_VERSION:
        assert outcome.reason is RejectReason.UNSUPPORTED_VERSION


@FUZZ
@given(channel=channels, version=json_values.filter(lambda v: v != SCHEMA_VERSION))
def test_unknown_schema_version_is_unsupported_version(channel: Channel, version: Any) -> None:
    data = _valid(channel) | {"v": version}
    outcome = _outcome(_topic(channel), orjson.dumps(data))
    assert isinstance(outcome, ContractError)
    assert outcome.reason is RejectReason.UNSUPPORTED_VERSION


@FUZZ
@given(
    name=st.text(max_size=80) | st.lists(st.sampled_from(["varta", "v1", "s", "n", "+", "#", "", "cmd"])).map("/".join)
)
def test_arbitrary_topics_are_bad_topic_or_parsed(name: str) -> None:
    outcome = _outcome(name, orjson.dumps(_valid(Channel.HEALTH)))
    if isinstance(outcome, ContractError):
        assert outcome.reason in {
            RejectReason.BAD_TOPIC,
            RejectReason.INVALID_SCHEMA,
            RejectReason.NODE_MISMATCH,
        }
    else:
        assert name == _topic(Channel.HEALTH)


@FUZZ
@given(channel=channels, limit=st.integers(0, 4096), extra=st.integers(1, 4096), garbage=st.booleans())
def test_oversized_payloads_are_rejected_before_parsing(
    channel: Channel, limit: int, extra: int, garbage: bool
) -> None:
    """Both a valid message padded with whitespace and plain garbage are OVERSIZED, never decoded or MALFORMED."""
    body = b"\xff" if garbage else orjson.dumps(_valid(channel))
    payload = body + b" " * max(0, limit + extra - len(body))
    assert len(payload) > limit
    outcome = _outcome(_topic(channel), payload, max_bytes=limit)
    assert isinstance(outcome, ContractError)
    assert outcome.reason is RejectReason.OVERSIZED


def test_a_padded_valid_payload_within_the_limit_decodes() -> None:
    """The control for the test above: the same padding is fine when the limit allows it."""
    payload = orjson.dumps(_valid(Channel.EVENT)) + b" " * 100
    _assert_belongs(decode_for_topic(_topic(Channel.EVENT), payload, max_bytes=len(payload)), Channel.EVENT)
