"""The MQTT contract between edge nodes and central: every topic and every message.

This is the ONE module both sides import. Topics are per node::

    varta/v1/<site>/<node>/status           retained availability (online / offline; offline is the last will)
    varta/v1/<site>/<node>/birth            retained birth message, once per boot
    varta/v1/<site>/<node>/health           periodic node health (telemetry)
    varta/v1/<site>/<node>/state/<device>   retained current state of one device (camera, kiosk, siren, …)
    varta/v1/<site>/<node>/event            events (append-only)
    varta/v1/<site>/<node>/cmd              signed commands, central → edge
    varta/v1/<site>/<node>/cmd/result       one result for every command received, edge → central

Every payload is a JSON object carrying ``v`` (the schema version), ``type``, ``node_id``, ``boot_id``, a per-boot
sequence number ``seq`` and a timestamp ``ts`` (UTC). ``docs/asyncapi.yaml`` is generated from these models
(``python -m varta.asyncapi``) and a test fails when it is stale.
"""

from __future__ import annotations

import functools
import re
from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated, Any, Final, Literal, NamedTuple

import orjson
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError, field_validator

SCHEMA_VERSION: Final = 1
TOPIC_ROOT: Final = "varta"
TOPIC_VERSION: Final = "v1"
#: Largest payload either side accepts. Anything bigger is rejected before parsing.
MAX_PAYLOAD_BYTES: Final = 64 * 1024

#: Site, node and device identifiers: lower-case, digits, '-' and '_' — safe as one MQTT topic level and in URLs.
ID_PATTERN: Final = r"^[a-z0-9][a-z0-9_-]{0,62}$"
_ID_RE: Final = re.compile(ID_PATTERN)

Identifier = Annotated[str, Field(pattern=ID_PATTERN, description="lower-case id, one topic level")]


def is_valid_id(value: str) -> bool:
    """True when *value* is a valid site/node/device identifier."""
    return bool(_ID_RE.match(value))


def utcnow() -> datetime:
    """Timezone-aware current UTC time (the only clock messages use)."""
    return datetime.now(UTC)


class Channel(StrEnum):
    """The last topic level(s) of a node topic."""

    STATUS = "status"
    BIRTH = "birth"
    HEALTH = "health"
    STATE = "state"
    EVENT = "event"
    COMMAND = "cmd"
    COMMAND_RESULT = "cmd/result"


# --------------------------------------------------------------------------------------------------- topics


def node_prefix(site: str, node: str) -> str:
    """``varta/v1/<site>/<node>``."""
    return f"{TOPIC_ROOT}/{TOPIC_VERSION}/{site}/{node}"


def topic(site: str, node: str, channel: Channel, device: str | None = None) -> str:
    """The topic of *channel* for one node (``device`` only for :attr:`Channel.STATE`)."""
    base = f"{node_prefix(site, node)}/{channel.value}"
    if channel is Channel.STATE:
        if device is None:
            raise ValueError("state topics need a device id")
        return f"{base}/{device}"
    return base


def subscription(channel: Channel, site: str = "+", node: str = "+") -> str:
    """A subscription filter for *channel* over all (or one) site/node."""
    base = f"{node_prefix(site, node)}/{channel.value}"
    return f"{base}/+" if channel is Channel.STATE else base


class TopicParts(NamedTuple):
    """A node topic taken apart."""

    site: str
    node: str
    channel: Channel
    device: str | None = None


@functools.lru_cache(maxsize=65_536)
def parse_topic(name: str) -> TopicParts | None:
    """Split a Varta topic into its parts; ``None`` for anything that is not a valid Varta node topic."""
    parts = name.split("/")
    if len(parts) < 5 or parts[0] != TOPIC_ROOT or parts[1] != TOPIC_VERSION:
        return None
    site, node, rest = parts[2], parts[3], parts[4:]
    if not (is_valid_id(site) and is_valid_id(node)):
        return None
    device: str | None = None
    if rest == ["cmd", "result"]:
        channel = Channel.COMMAND_RESULT
    elif len(rest) == 2 and rest[0] == "state" and is_valid_id(rest[1]):
        channel, device = Channel.STATE, rest[1]
    elif len(rest) == 1 and rest[0] in {"status", "birth", "health", "event", "cmd"}:
        channel = Channel(rest[0])
    else:
        return None
    return TopicParts(site=site, node=node, channel=channel, device=device)


# --------------------------------------------------------------------------------------------------- messages


class Envelope(BaseModel):
    """Fields every message carries. Unknown fields are rejected."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    v: Literal[1] = Field(default=SCHEMA_VERSION, description="schema version of this payload")
    node_id: Identifier = Field(description="the node that sent (or, for commands, receives) the message")
    boot_id: str = Field(min_length=1, max_length=64, description="random id of the sender's current boot")
    seq: int = Field(ge=0, description="per-boot sequence number; 0 for availability messages")
    ts: datetime = Field(description="when the message was created (UTC, ISO 8601)")
    historical: bool = Field(
        default=False, description="true when replayed from the outbox after a reconnect, not live"
    )

    @field_validator("v", mode="before")
    @classmethod
    def _integer_version(cls, value: Any) -> Any:
        # JSON true and 1.0 compare equal to 1 in Python; a schema version is an integer and nothing else.
        if type(value) is not int:
            raise ValueError("the schema version must be an integer")
        return value


class Availability(Envelope):
    """Retained on ``…/status``. ``offline`` with ``reason="last_will"`` is the broker-delivered last will."""

    type: Literal["availability"] = "availability"
    state: Literal["online", "offline"]
    reason: Literal["connected", "shutdown", "last_will"] = "connected"


class Birth(Envelope):
    """Retained on ``…/birth``: who this node is, published once per boot."""

    type: Literal["birth"] = "birth"
    site: Identifier
    name: str = Field(default="", max_length=200)
    hostname: str = Field(max_length=255)
    version: str = Field(max_length=64)
    started_at: datetime
    platform: str = Field(default="", max_length=200)
    capabilities: list[str] = Field(default_factory=list, max_length=64)
    health_interval_s: float = Field(gt=0, le=3600)


class Health(Envelope):
    """Periodic node health on ``…/health`` (telemetry: the first thing dropped if the outbox is full)."""

    type: Literal["health"] = "health"
    cpu_percent: float = Field(ge=0, le=100)
    load_1m: float | None = Field(default=None, ge=0)
    memory_percent: float = Field(ge=0, le=100)
    memory_available_mb: float = Field(ge=0)
    disk_percent: float = Field(ge=0, le=100)
    disk_free_mb: float = Field(ge=0)
    temperature_c: float | None = Field(default=None, ge=-60, le=200)
    undervoltage: bool | None = Field(default=None, description="Pi under-voltage alarm; null when absent")
    uptime_s: float = Field(ge=0)
    agent_uptime_s: float = Field(ge=0)
    version: str = Field(max_length=64)
    outbox_pending: int = Field(default=0, ge=0)
    outbox_dropped_telemetry: int = Field(default=0, ge=0)
    outbox_dropped_events: int = Field(default=0, ge=0)


class DeviceKind(StrEnum):
    """Kinds of device an edge node manages."""

    NODE = "node"
    CAMERA = "camera"
    KIOSK = "kiosk"
    SIREN = "siren"
    UPS = "ups"
    SENSOR = "sensor"


class DeviceStatus(StrEnum):
    """Health of a device as the node sees it."""

    ONLINE = "online"
    DEGRADED = "degraded"
    OFFLINE = "offline"
    UNKNOWN = "unknown"


class DeviceState(Envelope):
    """Retained on ``…/state/<device>``: the current state of one device."""

    type: Literal["device_state"] = "device_state"
    device_id: Identifier
    kind: DeviceKind
    name: str = Field(default="", max_length=200)
    status: DeviceStatus
    reason: str | None = Field(default=None, max_length=64, description="machine-readable reason code")
    detail: str = Field(default="", max_length=1000)
    attrs: dict[str, str | int | float | bool | None] = Field(default_factory=dict, max_length=64)


class Severity(StrEnum):
    """How urgent an event is."""

    INFO = "info"
    WARNING = "warning"
    CRITICAL = "critical"


class Event(Envelope):
    """An event on ``…/event`` (never dropped before telemetry)."""

    type: Literal["event"] = "event"
    kind: str = Field(min_length=1, max_length=64, pattern=r"^[a-z0-9_.]+$", description="e.g. camera.tamper")
    severity: Severity = Severity.INFO
    device_id: Identifier | None = None
    message: str = Field(default="", max_length=1000)
    data: dict[str, Any] = Field(default_factory=dict, max_length=64)


class CommandType(StrEnum):
    """Command types the edge understands. Later parts (PTZ, snapshot, kiosk, …) add theirs here."""

    PING = "ping"
    PUBLISH_HEALTH = "health.publish"
    OUTBOX_STATS = "outbox.stats"


class Command(Envelope):
    """A signed command on ``…/cmd`` (central → edge).

    ``node_id`` is the target node; ``boot_id`` and ``seq`` are those of the central instance that issued it.
    ``sig`` is an Ed25519 signature (base64url) over :func:`signing_bytes` of the command; ``key_id`` names the
    central key that made it. The edge rejects a command that is unsigned, wrongly signed, expired or replayed.
    """

    type: Literal["command"] = "command"
    request_id: str = Field(min_length=8, max_length=64, pattern=r"^[A-Za-z0-9_-]+$")
    command: str = Field(min_length=1, max_length=64, pattern=r"^[a-z0-9_.]+$")
    params: dict[str, Any] = Field(default_factory=dict, max_length=64)
    issued_by: str = Field(default="", max_length=100)
    expires_at: datetime
    key_id: str = Field(default="", max_length=64)
    sig: str | None = Field(default=None, max_length=200)


class CommandStatus(StrEnum):
    """Outcome of a command at the edge."""

    OK = "ok"
    ERROR = "error"
    REJECTED = "rejected"


class CommandRejection(StrEnum):
    """Why the edge refused a command."""

    UNSIGNED = "unsigned"
    BAD_SIGNATURE = "bad_signature"
    EXPIRED = "expired"
    REPLAYED = "replayed"
    WRONG_NODE = "wrong_node"
    MALFORMED = "malformed"
    UNKNOWN_COMMAND = "unknown_command"
    NOT_YET_VALID = "not_yet_valid"


class CommandResult(Envelope):
    """On ``…/cmd/result``: exactly one result for every command the edge received."""

    type: Literal["command_result"] = "command_result"
    request_id: str = Field(max_length=64)
    command: str = Field(default="", max_length=64)
    status: CommandStatus
    reason: str | None = Field(default=None, max_length=64)
    detail: str = Field(default="", max_length=1000)
    result: dict[str, Any] = Field(default_factory=dict, max_length=64)


NodeMessage = Annotated[
    Availability | Birth | Health | DeviceState | Event | CommandResult,
    Field(discriminator="type"),
]
"""Any message an edge node publishes."""

#: Which message type belongs on which channel.
CHANNEL_MODELS: Final[dict[Channel, type[Envelope]]] = {
    Channel.STATUS: Availability,
    Channel.BIRTH: Birth,
    Channel.HEALTH: Health,
    Channel.STATE: DeviceState,
    Channel.EVENT: Event,
    Channel.COMMAND: Command,
    Channel.COMMAND_RESULT: CommandResult,
}

#: Channels whose messages the broker retains.
RETAINED_CHANNELS: Final = frozenset({Channel.STATUS, Channel.BIRTH, Channel.STATE})

_ADAPTERS: Final[dict[Channel, TypeAdapter[Any]]] = {ch: TypeAdapter(m) for ch, m in CHANNEL_MODELS.items()}


# --------------------------------------------------------------------------------------------------- (de)coding


class RejectReason(StrEnum):
    """Why an incoming payload was refused (counted and logged by the receiver)."""

    BAD_TOPIC = "bad_topic"
    OVERSIZED = "oversized"
    MALFORMED_JSON = "malformed_json"
    NOT_AN_OBJECT = "not_an_object"
    UNSUPPORTED_VERSION = "unsupported_version"
    INVALID_SCHEMA = "invalid_schema"
    NODE_MISMATCH = "node_mismatch"
    DEVICE_MISMATCH = "device_mismatch"


class ContractError(ValueError):
    """A payload that breaks the contract, with a machine-readable reason."""

    def __init__(self, reason: RejectReason, detail: str = "") -> None:
        super().__init__(f"{reason.value}: {detail}" if detail else reason.value)
        self.reason = reason
        self.detail = detail


def encode(message: BaseModel) -> bytes:
    """Serialise a message to its wire form (compact JSON, UTF-8)."""
    return message.__pydantic_serializer__.to_json(message, exclude_none=False)


def decode(channel: Channel, payload: bytes, *, max_bytes: int = MAX_PAYLOAD_BYTES) -> Envelope:
    """Parse and validate *payload* for *channel*; raises :class:`ContractError` with a reason."""
    if len(payload) > max_bytes:
        raise ContractError(RejectReason.OVERSIZED, f"{len(payload)} bytes > {max_bytes}")
    adapter = _ADAPTERS[channel]
    try:  # fast path: one pass in pydantic-core; on failure, classify the problem below
        fast: Envelope = adapter.validate_json(payload)
    except ValidationError:
        pass
    else:
        return fast
    try:
        raw = orjson.loads(payload)
    except orjson.JSONDecodeError as exc:
        raise ContractError(RejectReason.MALFORMED_JSON, str(exc)[:200]) from None
    if not isinstance(raw, dict):
        raise ContractError(RejectReason.NOT_AN_OBJECT, type(raw).__name__)
    version = raw.get("v")
    if type(version) is not int or version != SCHEMA_VERSION:
        raise ContractError(RejectReason.UNSUPPORTED_VERSION, f"v={version!r}"[:100])
    try:
        model: Envelope = adapter.validate_python(raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first.get("loc", ()))
        raise ContractError(RejectReason.INVALID_SCHEMA, f"{where}: {first.get('msg', '')}"[:300]) from None
    return model


def decode_for_topic(topic_name: str, payload: bytes, *, max_bytes: int = MAX_PAYLOAD_BYTES) -> Envelope:
    """Decode a payload received on *topic_name*, checking that it belongs there (node and device match)."""
    parts = parse_topic(topic_name)
    if parts is None:
        raise ContractError(RejectReason.BAD_TOPIC, topic_name[:200])
    message = decode(parts.channel, payload, max_bytes=max_bytes)
    if message.node_id != parts.node:
        raise ContractError(RejectReason.NODE_MISMATCH, f"payload {message.node_id} on topic of {parts.node}")
    if isinstance(message, DeviceState) and message.device_id != parts.device:
        raise ContractError(RejectReason.DEVICE_MISMATCH, f"{message.device_id} on topic of {parts.device}")
    return message


def signing_bytes(command: Command) -> bytes:
    """The canonical bytes an Ed25519 command signature covers: sorted-key JSON of every field but ``sig``."""
    data = command.model_dump(mode="json", exclude={"sig", "historical"})
    return orjson.dumps(data, option=orjson.OPT_SORT_KEYS)
