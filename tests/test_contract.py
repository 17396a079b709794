"""The MQTT contract: topics, message (de)coding and what a command signature covers."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import orjson
import pytest
from pydantic import BaseModel

from varta.asyncapi import example_message
from varta.contract import (
    CHANNEL_MODELS,
    DEVICE_CHANNELS,
    MAX_PAYLOAD_BYTES,
    RETAINED_CHANNELS,
    Channel,
    Command,
    ContractError,
    RejectReason,
    TopicParts,
    decode,
    decode_for_topic,
    encode,
    parse_topic,
    signing_bytes,
    subscription,
    topic,
)
from varta.signing import generate_signing_key, sign_command, verify_command

SITE, NODE, DEVICE = "kyiv-podil", "node-7", "cam_2"


def _topic_for(channel: Channel, node: str = NODE, device: str = DEVICE) -> str:
    return topic(SITE, node, channel, device if channel in DEVICE_CHANNELS else None)


def _payload(channel: Channel, **changes: Any) -> dict[str, Any]:
    """A valid payload for *channel* (node NODE, device DEVICE) as a JSON object, with *changes* applied."""
    data: dict[str, Any] = orjson.loads(encode(example_message(channel, site=SITE, node_id=NODE, device_id=DEVICE)))
    data.update(changes)
    return data


def _reason(topic_name: str, payload: bytes, **kwargs: Any) -> RejectReason:
    with pytest.raises(ContractError) as info:
        decode_for_topic(topic_name, payload, **kwargs)
    return info.value.reason


# ---------------------------------------------------------------------------------------------------- topics


@pytest.mark.parametrize("channel", list(Channel))
def test_topic_parses_back_into_its_parts(channel: Channel) -> None:
    name = _topic_for(channel)
    device = DEVICE if channel in DEVICE_CHANNELS else None
    assert parse_topic(name) == TopicParts(site=SITE, node=NODE, channel=channel, device=device)
    assert name.startswith(f"varta/v1/{SITE}/{NODE}/")


def test_topic_layout_is_the_documented_one() -> None:
    assert topic("s", "n", Channel.STATUS) == "varta/v1/s/n/status"
    assert topic("s", "n", Channel.STATE, "d") == "varta/v1/s/n/state/d"
    assert topic("s", "n", Channel.COMMAND_RESULT) == "varta/v1/s/n/cmd/result"


def test_state_topic_needs_a_device() -> None:
    with pytest.raises(ValueError, match="device"):
        topic(SITE, NODE, Channel.STATE)


@pytest.mark.parametrize("channel", list(Channel))
def test_subscription_filter_covers_every_node_and_device(channel: Channel) -> None:
    levels = subscription(channel).split("/")
    concrete = _topic_for(channel).split("/")
    assert len(levels) == len(concrete)
    assert all(f in ("+", c) for f, c in zip(levels, concrete, strict=True))
    assert levels[2:4] == ["+", "+"]
    assert subscription(channel, site=SITE, node=NODE).split("/")[2:4] == [SITE, NODE]


@pytest.mark.parametrize(
    "name",
    [
        "",
        "varta",
        "varta/v1/site/node",
        "varta/v2/site/node/status",
        "other/v1/site/node/status",
        "varta/v1/Site/node/status",
        "varta/v1/site/Node/status",
        "varta/v1/site/+/status",
        "varta/v1/site/#",
        "varta/v1//node/status",
        "varta/v1/site/node/unknown",
        "varta/v1/site/node/status/extra",
        "varta/v1/site/node/state",
        "varta/v1/site/node/state/",
        "varta/v1/site/node/state/Cam",
        "varta/v1/site/node/state/a/b",
        "varta/v1/site/node/cmd/other",
        "varta/v1/site/node/cmd/result/x",
        f"varta/v1/site/{'n' * 64}/status",
        "/varta/v1/site/node/status",
    ],
)
def test_parse_topic_refuses_anything_else(name: str) -> None:
    assert parse_topic(name) is None


def test_retained_channels_are_the_state_like_ones() -> None:
    assert {Channel.STATUS, Channel.BIRTH, Channel.STATE, Channel.INFO} == RETAINED_CHANNELS


# ---------------------------------------------------------------------------------------------------- decoding


@pytest.mark.parametrize("channel", list(Channel))
@pytest.mark.parametrize("historical", [False, True])
def test_every_channel_decodes_its_own_encoding(channel: Channel, historical: bool) -> None:
    message = example_message(channel, site=SITE, node_id=NODE, device_id=DEVICE, historical=historical)
    assert type(message) is CHANNEL_MODELS[channel]
    decoded = decode_for_topic(_topic_for(channel), encode(message))
    assert decoded == message
    assert type(decoded) is CHANNEL_MODELS[channel]
    assert decoded.historical is historical


def test_every_channel_has_a_model_and_models_are_distinct() -> None:
    assert set(CHANNEL_MODELS) == set(Channel)
    assert len(set(CHANNEL_MODELS.values())) == len(Channel)


@pytest.mark.parametrize("channel", list(Channel))
def test_payload_for_another_node_is_rejected(channel: Channel) -> None:
    payload = orjson.dumps(_payload(channel))
    assert _reason(_topic_for(channel, node="node-8"), payload) is RejectReason.NODE_MISMATCH


def test_device_state_on_another_devices_topic_is_rejected() -> None:
    payload = orjson.dumps(_payload(Channel.STATE))
    assert _reason(topic(SITE, NODE, Channel.STATE, "cam_3"), payload) is RejectReason.DEVICE_MISMATCH


@pytest.mark.parametrize(
    ("source", "target"),
    [(Channel.HEALTH, Channel.EVENT), (Channel.EVENT, Channel.STATUS), (Channel.COMMAND, Channel.COMMAND_RESULT)],
)
def test_message_on_the_wrong_channel_is_rejected(source: Channel, target: Channel) -> None:
    payload = orjson.dumps(_payload(source))
    assert _reason(_topic_for(target), payload) is RejectReason.INVALID_SCHEMA


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        (b"", RejectReason.MALFORMED_JSON),
        (b"{", RejectReason.MALFORMED_JSON),
        (b"\xff\xfe{}", RejectReason.MALFORMED_JSON),
        (b"[1, 2]", RejectReason.NOT_AN_OBJECT),
        (b'"text"', RejectReason.NOT_AN_OBJECT),
        (b"null", RejectReason.NOT_AN_OBJECT),
        (b"{}", RejectReason.UNSUPPORTED_VERSION),
        (orjson.dumps(_payload(Channel.HEALTH, v=2)), RejectReason.UNSUPPORTED_VERSION),
        (orjson.dumps(_payload(Channel.HEALTH, v="1")), RejectReason.UNSUPPORTED_VERSION),
        (orjson.dumps(_payload(Channel.HEALTH, v=None)), RejectReason.UNSUPPORTED_VERSION),
        (orjson.dumps(_payload(Channel.HEALTH, surprise=1)), RejectReason.INVALID_SCHEMA),
        (orjson.dumps(_payload(Channel.HEALTH, seq=-1)), RejectReason.INVALID_SCHEMA),
        (orjson.dumps(_payload(Channel.HEALTH, cpu_percent=101)), RejectReason.INVALID_SCHEMA),
        (orjson.dumps(_payload(Channel.HEALTH, ts="yesterday")), RejectReason.INVALID_SCHEMA),
        (
            orjson.dumps({k: v for k, v in _payload(Channel.HEALTH).items() if k != "boot_id"}),
            RejectReason.INVALID_SCHEMA,
        ),
    ],
)
def test_broken_payloads_are_rejected_with_their_reason(payload: bytes, reason: RejectReason) -> None:
    assert _reason(_topic_for(Channel.HEALTH), payload) is reason


def test_bad_topic_is_rejected_before_the_payload_is_looked_at() -> None:
    assert _reason("varta/v1/site/node/nonsense", b"not json") is RejectReason.BAD_TOPIC


def test_oversized_payload_is_rejected_even_when_valid() -> None:
    payload = encode(example_message(Channel.EVENT, site=SITE, node_id=NODE))
    assert decode(Channel.EVENT, payload, max_bytes=len(payload))
    assert _reason(_topic_for(Channel.EVENT), payload, max_bytes=len(payload) - 1) is RejectReason.OVERSIZED
    assert _reason(_topic_for(Channel.EVENT), b" " * (MAX_PAYLOAD_BYTES + 1)) is RejectReason.OVERSIZED


def test_contract_error_reads_reason_and_detail() -> None:
    error = ContractError(RejectReason.NODE_MISMATCH, "payload a on topic of b")
    assert str(error) == "node_mismatch: payload a on topic of b"
    assert str(ContractError(RejectReason.OVERSIZED)) == "oversized"
    assert isinstance(error, ValueError)


# ---------------------------------------------------------------------------------------------------- signatures


def _tampered(value: Any) -> Any:
    """A different value of the same kind."""
    if isinstance(value, bool):
        return not value
    if isinstance(value, int):
        return value + 1
    if isinstance(value, str):
        return value[:-1] + ("x" if not value.endswith("x") else "y") if value else "x"
    if isinstance(value, datetime):
        return value + timedelta(seconds=1)
    if isinstance(value, dict):
        return {**value, "tampered": True}
    if value is None:
        return "x"
    raise AssertionError(f"no tampering for {type(value).__name__}")


def _signed_command() -> Command:
    command = example_message(Channel.COMMAND, site=SITE, node_id=NODE)
    assert isinstance(command, Command)
    return command.model_copy(update={"params": {"preset": 3}, "issued_by": "operator-1"})


UNSIGNED_FIELDS = {"sig", "historical"}


def test_signature_verifies_with_the_signing_key_only() -> None:
    key, other = generate_signing_key(), generate_signing_key()
    command = sign_command(_signed_command(), key)
    assert verify_command(command, [key.verify_key])
    assert verify_command(command, [other.verify_key, key.verify_key])  # key rotation: any listed key
    assert not verify_command(command, [other.verify_key])
    assert not verify_command(command, [])
    assert not verify_command(command.model_copy(update={"sig": None}), [key.verify_key])
    assert not verify_command(command.model_copy(update={"sig": "not base64!"}), [key.verify_key])


@pytest.mark.parametrize("field", sorted(set(Command.model_fields) - UNSIGNED_FIELDS))
def test_signature_covers_every_field(field: str) -> None:
    key = generate_signing_key()
    command = sign_command(_signed_command(), key)
    forged = command.model_copy(update={field: _tampered(getattr(command, field))})
    assert getattr(forged, field) != getattr(command, field)
    assert signing_bytes(forged) != signing_bytes(command)
    assert not verify_command(forged, [key.verify_key])


def test_only_sig_and_the_replay_flag_are_outside_the_signature() -> None:
    command = _signed_command()
    signed = orjson.loads(signing_bytes(command))
    assert set(Command.model_fields) - set(signed) == UNSIGNED_FIELDS
    key = generate_signing_key()
    replayed = sign_command(command, key).model_copy(update={"historical": True})
    assert verify_command(replayed, [key.verify_key])


def test_signature_survives_the_wire_and_a_tampered_wire_payload_fails() -> None:
    key = generate_signing_key()
    command = sign_command(_signed_command(), key)
    received = decode_for_topic(_topic_for(Channel.COMMAND), encode(command))
    assert isinstance(received, Command)
    assert verify_command(received, [key.verify_key])

    raw = orjson.loads(encode(command))
    raw["params"]["preset"] = 4
    forged = decode_for_topic(_topic_for(Channel.COMMAND), orjson.dumps(raw))
    assert isinstance(forged, Command)
    assert not verify_command(forged, [key.verify_key])


def test_signing_bytes_are_canonical_sorted_json() -> None:
    command = _signed_command()
    data = signing_bytes(command)
    assert data == orjson.dumps(orjson.loads(data), option=orjson.OPT_SORT_KEYS)
    shuffled = Command.model_validate(dict(reversed(list(command.model_dump().items()))))
    assert signing_bytes(shuffled) == data


def test_models_are_immutable() -> None:
    message = example_message(Channel.HEALTH)
    assert isinstance(message, BaseModel)
    with pytest.raises(ValueError, match="frozen"):
        message.seq = 99  # type: ignore[misc]
