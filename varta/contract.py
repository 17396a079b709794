"""The MQTT contract between edge nodes and central: every topic and every message.

This is the ONE module both sides import. Topics are per node::

    varta/v1/<site>/<node>/status           retained availability (online / offline; offline is the last will)
    varta/v1/<site>/<node>/birth            retained birth message, once per boot
    varta/v1/<site>/<node>/health           periodic node health (telemetry)
    varta/v1/<site>/<node>/state/<device>   retained current state of one device (camera, kiosk, siren, …)
    varta/v1/<site>/<node>/info/<device>    retained description of one device (camera model, profiles, PTZ, …)
    varta/v1/<site>/<node>/snapshot/<device> latest picture of one camera (JPEG, base64)
    varta/v1/<site>/<node>/discovery        devices a discovery probe found on the node's LAN
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
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, TypeAdapter, ValidationError, field_validator

SCHEMA_VERSION: Final = 1
TOPIC_ROOT: Final = "varta"
TOPIC_VERSION: Final = "v1"
#: Largest payload either side accepts. Anything bigger is rejected before parsing.
MAX_PAYLOAD_BYTES: Final = 64 * 1024
#: Snapshots carry a JPEG thumbnail and are the one exception to :data:`MAX_PAYLOAD_BYTES`.
MAX_SNAPSHOT_BYTES: Final = 768 * 1024

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
    INFO = "info"
    SNAPSHOT = "snapshot"
    DISCOVERY = "discovery"


#: Channels whose topic ends with a device id (``…/<channel>/<device>``).
DEVICE_CHANNELS: Final = frozenset({Channel.STATE, Channel.INFO, Channel.SNAPSHOT})


# --------------------------------------------------------------------------------------------------- topics


def node_prefix(site: str, node: str) -> str:
    """``varta/v1/<site>/<node>``."""
    return f"{TOPIC_ROOT}/{TOPIC_VERSION}/{site}/{node}"


def topic(site: str, node: str, channel: Channel, device: str | None = None) -> str:
    """The topic of *channel* for one node (``device`` for the channels in :data:`DEVICE_CHANNELS`)."""
    base = f"{node_prefix(site, node)}/{channel.value}"
    if channel in DEVICE_CHANNELS:
        if device is None:
            raise ValueError(f"{channel.value} topics need a device id")
        return f"{base}/{device}"
    return base


def subscription(channel: Channel, site: str = "+", node: str = "+") -> str:
    """A subscription filter for *channel* over all (or one) site/node."""
    base = f"{node_prefix(site, node)}/{channel.value}"
    return f"{base}/+" if channel in DEVICE_CHANNELS else base


_DEVICE_CHANNEL_NAMES: Final = frozenset(c.value for c in DEVICE_CHANNELS)


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
    elif len(rest) == 2 and rest[0] in _DEVICE_CHANNEL_NAMES and is_valid_id(rest[1]):
        channel, device = Channel(rest[0]), rest[1]
    elif len(rest) == 1 and rest[0] in {"status", "birth", "health", "event", "cmd", "discovery"}:
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
    reason: Literal["connected", "shutdown", "last_will", "power_loss"] = Field(
        default="connected",
        description="why: ``power_loss`` is said by a node whose UPS battery is about to run out, before it dies",
    )


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
    box_public_key: str | None = Field(
        default=None,
        min_length=44,
        max_length=44,
        description="the node's X25519 public key (base64): secrets for it (camera passwords) are sealed to it",
    )


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
    CAMERA_DISCOVER = "camera.discover"
    CAMERA_ADOPT = "camera.adopt"
    CAMERA_FORGET = "camera.forget"
    CAMERA_SET_CREDENTIALS = "camera.credentials.set"
    CAMERA_SNAPSHOT = "camera.snapshot"
    CAMERA_PTZ_MOVE = "camera.ptz.move"
    CAMERA_PTZ_STOP = "camera.ptz.stop"
    CAMERA_PTZ_GOTO_PRESET = "camera.ptz.preset.goto"
    CAMERA_PTZ_SET_PRESET = "camera.ptz.preset.set"
    CAMERA_REBOOT = "camera.reboot"
    CAMERA_SYNC_TIME = "camera.time.sync"
    CAMERA_LIVE_START = "camera.live.start"
    CAMERA_LIVE_STOP = "camera.live.stop"
    KIOSK_ALERTS_SET = "kiosk.alerts.set"
    KIOSK_CONTENT_UPDATE = "kiosk.content.update"
    KIOSK_SCREENSHOT = "kiosk.screenshot"


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


# --------------------------------------------------------------------------------------------------- cameras


class CameraReason(StrEnum):
    """Why a camera is not (fully) ``online``: the reason code of its :class:`DeviceState`."""

    UNREACHABLE = "unreachable"  # no route / connection refused / no power
    AUTH_FAILED = "auth_failed"  # wrong user name or password (RTSP 401, ONVIF NotAuthorized)
    TIMEOUT = "timeout"  # the camera answered too slowly
    NO_FRAMES = "no_frames"  # connected, but no picture arrives
    FROZEN = "frozen"  # frames arrive, but the picture does not change
    BLACK = "black"  # the picture is black or blank
    TAMPER = "tamper"  # sudden loss of sharpness or coverage (covered, painted, turned away), or the camera says so
    LOW_FPS = "low_fps"  # frames arrive well below the expected rate
    STREAM_ERROR = "stream_error"  # the stream cannot be decoded / unsupported codec
    ONVIF_ERROR = "onvif_error"  # the ONVIF service answers with faults or malformed XML
    NOT_CONFIGURED = "not_configured"  # adopted, but no stream address yet


class CameraThresholds(BaseModel):
    """Per-camera limits of stream-health monitoring (defaults suit a city's main square)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    probe_interval_s: float = Field(default=3.0, ge=0.5, le=60, description="seconds between sampled frames")
    connect_timeout_s: float = Field(default=4.0, ge=0.5, le=30, description="RTSP open (connect + first frame)")
    read_timeout_s: float = Field(default=3.0, ge=0.5, le=30, description="no frame for this long → no_frames")
    offline_after_s: float = Field(
        default=10.0, ge=1, le=300, description="time to declare a dead camera offline (detection target)"
    )
    frozen_after_s: float = Field(default=6.0, ge=1, le=600, description="unchanged picture for this long → frozen")
    frozen_max_diff: float = Field(default=0.5, ge=0, le=50, description="mean abs pixel difference that is 'same'")
    black_max_luma: float = Field(default=16.0, ge=0, le=128, description="mean luma at or below → black")
    blank_max_stddev: float = Field(default=4.0, ge=0, le=64, description="luma std-dev at or below → blank")
    tamper_sharpness_ratio: float = Field(
        default=0.25, gt=0, lt=1, description="sharpness below this share of its running baseline → tamper"
    )
    min_fps_ratio: float = Field(default=0.5, gt=0, le=1, description="fps below this share of nominal → low_fps")
    resend_interval_s: float = Field(default=60.0, ge=5, le=3600, description="state re-sent even when unchanged")
    snapshot_interval_s: float = Field(default=300.0, ge=0, le=86_400, description="periodic thumbnail; 0 = off")


class CameraProfile(BaseModel):
    """One ONVIF media profile."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    token: str = Field(max_length=64)
    name: str = Field(default="", max_length=100)
    encoding: str = Field(default="", max_length=16, description="H264, H265, JPEG, …")
    width: int | None = Field(default=None, ge=0, le=16_384)
    height: int | None = Field(default=None, ge=0, le=16_384)
    fps: float | None = Field(default=None, ge=0, le=1000)
    role: Literal["main", "sub"] | None = None


class PtzPreset(BaseModel):
    """A PTZ preset position."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    token: str = Field(max_length=64)
    name: str = Field(default="", max_length=100)


class CameraInfo(Envelope):
    """Retained on ``…/info/<device>``: what the node learnt about an adopted camera (never any credential)."""

    type: Literal["camera_info"] = "camera_info"
    device_id: Identifier
    name: str = Field(default="", max_length=200)
    onvif_address: str = Field(default="", max_length=500, description="device service URL, no credentials")
    manufacturer: str = Field(default="", max_length=100)
    model: str = Field(default="", max_length=100)
    firmware: str = Field(default="", max_length=100)
    serial: str = Field(default="", max_length=100)
    hardware_id: str = Field(default="", max_length=100)
    profiles: list[CameraProfile] = Field(default_factory=list, max_length=32)
    main_profile: str | None = Field(default=None, max_length=64)
    sub_profile: str | None = Field(default=None, max_length=64)
    stream_uri: str = Field(default="", max_length=500, description="RTSP URI of the main profile, no credentials")
    snapshot_uri: str = Field(default="", max_length=500)
    ptz: bool = False
    presets: list[PtzPreset] = Field(default_factory=list, max_length=64)
    events: bool = Field(default=False, description="the camera offers a PullPoint event subscription")
    clock_skew_s: float | None = Field(default=None, description="camera clock minus node clock")
    thresholds: CameraThresholds = Field(default_factory=CameraThresholds)


class Snapshot(Envelope):
    """On ``…/snapshot/<device>``: a camera's latest picture, or what a kiosk's screen shows (``source: screen``);
    JPEG, base64."""

    type: Literal["snapshot"] = "snapshot"
    device_id: Identifier
    taken_at: datetime
    source: Literal["onvif", "rtsp", "screen"]
    purpose: Literal["periodic", "on_demand"] = "periodic"
    content_type: Literal["image/jpeg"] = "image/jpeg"
    width: int = Field(ge=1, le=16_384)
    height: int = Field(ge=1, le=16_384)
    data: str = Field(min_length=4, max_length=700_000, description="base64 JPEG")


class DiscoveredDevice(BaseModel):
    """One answer to a WS-Discovery probe."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    endpoint: str = Field(min_length=1, max_length=200, description="WS-Addressing endpoint reference (urn:uuid:…)")
    address: str = Field(default="", max_length=64, description="IP the answer came from")
    xaddrs: list[str] = Field(default_factory=list, max_length=8, description="ONVIF device service URLs")
    scopes: list[str] = Field(default_factory=list, max_length=64)
    types: list[str] = Field(default_factory=list, max_length=16)
    name: str = Field(default="", max_length=200, description="from the onvif://www.onvif.org/name/ scope")
    hardware: str = Field(default="", max_length=200, description="from the onvif://www.onvif.org/hardware/ scope")


class DiscoveryReport(Envelope):
    """On ``…/discovery``: every ONVIF device one probe found (central keeps the inbox of unadopted ones)."""

    type: Literal["discovery"] = "discovery"
    trigger: Literal["periodic", "command", "startup"] = "periodic"
    devices: list[DiscoveredDevice] = Field(default_factory=list, max_length=256)


# Command parameters (validated by both sides: central when it sends, the edge when it runs the command).


class CameraRef(BaseModel):
    """``params`` of commands that name one camera (forget, snapshot, stop, reboot, time sync)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    device_id: Identifier


class AdoptCameraParams(BaseModel):
    """``params`` of ``camera.adopt``: take a discovered (or hand-entered) camera under the node's care."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    device_id: Identifier
    name: str = Field(default="", max_length=200)
    onvif_address: str = Field(default="", max_length=500, description="device service URL; empty: RTSP only")
    endpoint: str | None = Field(default=None, max_length=200, description="the discovery endpoint reference")
    stream_uri: str | None = Field(default=None, max_length=500, description="RTSP override (no credentials)")
    sealed_credentials: str | None = Field(
        default=None, max_length=4096, description="base64 sealed box (to the node's key) of {username, password}"
    )
    thresholds: CameraThresholds = Field(default_factory=CameraThresholds)


class CameraCredentialsParams(BaseModel):
    """``params`` of ``camera.credentials.set``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    device_id: Identifier
    sealed_credentials: str = Field(min_length=40, max_length=4096)


class PtzMoveParams(BaseModel):
    """``params`` of ``camera.ptz.move``: continuous move at the given velocities until stopped or timed out."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    device_id: Identifier
    pan: float = Field(default=0.0, ge=-1, le=1)
    tilt: float = Field(default=0.0, ge=-1, le=1)
    zoom: float = Field(default=0.0, ge=-1, le=1)
    timeout_s: float = Field(default=1.0, gt=0, le=10, description="the camera stops by itself after this")


class PtzPresetParams(BaseModel):
    """``params`` of ``camera.ptz.preset.goto`` (``token``) and ``camera.ptz.preset.set`` (``name``)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    device_id: Identifier
    token: str | None = Field(default=None, max_length=64)
    name: str | None = Field(default=None, max_length=100)


# --------------------------------------------------------------------------------------------------- live view

#: A live-view session id (chosen by central; the WHEP resource and the audit trail name it).
SESSION_ID_PATTERN: Final = r"^[A-Za-z0-9_-]{8,64}$"
#: Kind of the event a node publishes when a live-view session ends for any reason.
LIVE_ENDED_EVENT: Final = "camera.live.ended"


class LiveStream(StrEnum):
    """Which of a camera's streams a viewer gets: ``main`` (full resolution) or ``sub`` (for camera walls)."""

    MAIN = "main"
    SUB = "sub"


class IceServer(BaseModel):
    """One STUN or TURN server (as in the browser's ``RTCIceServer``)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    urls: list[Annotated[str, Field(max_length=300, pattern=r"^(stun|stuns|turn|turns):")]] = Field(
        min_length=1, max_length=8
    )
    username: str | None = Field(default=None, max_length=200)
    credential: str | None = Field(default=None, max_length=200)


class LiveStartParams(BaseModel):
    """``params`` of ``camera.live.start``: the viewer's SDP offer (complete, no trickle ICE)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    device_id: Identifier
    session_id: str = Field(pattern=SESSION_ID_PATTERN)
    stream: LiveStream = LiveStream.MAIN
    offer_sdp: str = Field(min_length=20, max_length=32_768)
    ice_servers: list[IceServer] = Field(default_factory=list, max_length=8)


class LiveStartResult(BaseModel):
    """``result`` of a successful ``camera.live.start``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    session_id: str = Field(pattern=SESSION_ID_PATTERN)
    answer_sdp: str = Field(min_length=20, max_length=32_768)
    codec: str = Field(default="", max_length=100, description="e.g. 'H264 profile-level-id=640028'")
    width: int | None = Field(default=None, ge=0)
    height: int | None = Field(default=None, ge=0)
    viewers: int = Field(default=1, ge=0, description="viewers of this camera's stream, this one included")
    shared: bool = Field(default=False, description="joined a pull that was already running")


class LiveStopParams(BaseModel):
    """``params`` of ``camera.live.stop``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    device_id: Identifier
    session_id: str = Field(pattern=SESSION_ID_PATTERN)


class KioskAlert(BaseModel):
    """One official alert covering a kiosk's area (from central's alert feeds)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    alert_id: str = Field(min_length=1, max_length=200, pattern=r"^[A-Za-z0-9_.:-]+$")
    region: str = Field(default="", max_length=200, description="the region's name, shown on the alert page")
    drill: bool = Field(default=False, description="an exercise: the page shows «НАВЧАННЯ / DRILL»")
    started_at: AwareDatetime


class KioskAlertsParams(BaseModel):
    """``params`` of ``kiosk.alerts.set``: every official alert covering the kiosk now (empty: all clear).

    Level, not edge: central sends the whole set whenever it changes and again when the node restarts, so a lost or
    late command is mended by the next one.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    device_id: Identifier
    alerts: list[KioskAlert] = Field(default_factory=list, max_length=32)


class KioskContentParams(BaseModel):
    """``params`` of ``kiosk.content.update``: new content is ready for the kiosk.

    The signed manifest is fetched from *manifest_url* and must hash to *manifest_sha256* (the command itself is
    signed, so this binds the download to central's word); every asset is then fetched from
    ``<content_base_url>/<sha256>`` (resumable), checked against the manifest and installed. Manifests and assets are
    content a public screen shows: the node needs no credentials for them, only the signatures.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    device_id: Identifier
    version: int = Field(ge=1, lt=2**53)
    manifest_url: str = Field(max_length=2000, pattern=r"^https?://[^\s]+$")
    manifest_sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    content_base_url: str = Field(max_length=2000, pattern=r"^https?://[^\s]+[^/]$")


class LiveError(StrEnum):
    """``reason`` of a failed ``camera.live.start`` (a :class:`CommandResult` with status ``error``)."""

    UNKNOWN_CAMERA = "unknown_camera"
    CAPACITY = "capacity"  # too many viewers of this camera or of this node
    SOURCE_UNAVAILABLE = "source_unavailable"  # the camera's stream could not be opened
    BAD_OFFER = "bad_offer"  # not an SDP offer with a video m-line
    NO_COMMON_CODEC = "no_common_codec"  # the viewer cannot receive the camera's codec
    LIVE_DISABLED = "live_disabled"  # live view is not available on this node


class LiveEndReason(StrEnum):
    """``data.reason`` of a ``camera.live.ended`` event."""

    VIEWER_LEFT = "viewer_left"  # the viewer (or central) stopped the session
    VIEWER_LOST = "viewer_lost"  # the viewer's connection failed or closed
    SOURCE_LOST = "source_lost"  # the camera's stream ended or broke
    CAMERA_REMOVED = "camera_removed"  # the camera was forgotten or reconfigured
    NODE_STOPPING = "node_stopping"  # the agent is shutting down
    CONNECT_TIMEOUT = "connect_timeout"  # the viewer never connected


class LiveEnded(BaseModel):
    """``data`` of a ``camera.live.ended`` event (the event's ``device_id`` names the camera)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    session_id: str = Field(pattern=SESSION_ID_PATTERN)
    reason: LiveEndReason
    detail: str = Field(default="", max_length=500)
    duration_s: float = Field(default=0.0, ge=0)
    frames_sent: int = Field(default=0, ge=0)


# ------------------------------------------------------------------------------------------ sirens, power, uplink
# Varta MONITORS sirens; it never triggers one. A siren's state is retained on ``state/<siren>`` (kind ``siren``,
# ``reason`` = its :class:`SirenState`, ``attrs`` = its inputs) and every change is a ``siren.state_changed`` event.
# A UPS is retained on ``state/<ups>`` (kind ``ups``, ``reason`` = its :class:`PowerReason`); mains lost / restored,
# low battery and the node going down are events. The uplink outage is reported as an event on reconnect.

SIREN_CHANGED_EVENT: Final = "siren.state_changed"
MAINS_LOST_EVENT: Final = "power.mains_lost"
MAINS_RESTORED_EVENT: Final = "power.mains_restored"
LOW_BATTERY_EVENT: Final = "power.low_battery"
GOING_DOWN_EVENT: Final = "node.going_down"
UPLINK_RESTORED_EVENT: Final = "uplink.restored"


class SirenState(StrEnum):
    """What a siren is doing, from its debounced inputs (``reason`` of its device state)."""

    IDLE = "idle"  # powered, not sounding, no fault
    SOUNDING = "sounding"  # the contactor is engaged
    FAULT = "fault"  # the siren's controller reports a fault
    UNPOWERED = "unpowered"  # no supply (phase-loss relay open)
    UNKNOWN = "unknown"  # the inputs cannot be read (I/O module unreachable, garbage)


#: The device status a siren state is shown with.
SIREN_STATUS: Final[dict[SirenState, DeviceStatus]] = {
    SirenState.IDLE: DeviceStatus.ONLINE,
    SirenState.SOUNDING: DeviceStatus.ONLINE,
    SirenState.FAULT: DeviceStatus.DEGRADED,
    SirenState.UNPOWERED: DeviceStatus.OFFLINE,
    SirenState.UNKNOWN: DeviceStatus.UNKNOWN,
}


class SirenInputs(BaseModel):
    """A siren's three monitored inputs after debouncing (``None``: not wired or not readable)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    supply: bool | None = Field(default=None, description="supply present (phase-loss relay closed)")
    contactor: bool | None = Field(default=None, description="contactor engaged: the siren is sounding")
    fault: bool | None = Field(default=None, description="the siren controller's fault output")


class SirenChanged(BaseModel):
    """``data`` of a ``siren.state_changed`` event (the event's ``device_id`` names the siren)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    state: SirenState
    previous: SirenState
    changed_at: datetime = Field(description="when the debounced inputs settled in the new state")
    previous_since: datetime | None = Field(default=None, description="when the previous state began")
    previous_duration_s: float | None = Field(default=None, ge=0, description="how long the previous state lasted")
    inputs: SirenInputs = Field(default_factory=SirenInputs)
    detail: str = Field(default="", max_length=500, description="why the inputs could not be read, for unknown")


class PowerReason(StrEnum):
    """``reason`` of a UPS device state."""

    ON_LINE = "on_line"  # mains present (OL)
    ON_BATTERY = "on_battery"  # mains lost, running on the battery (OB)
    LOW_BATTERY = "low_battery"  # on battery and the UPS says the battery is low (OB LB)
    UNREACHABLE = "unreachable"  # NUT does not answer or the UPS is stale


class UpsReading(BaseModel):
    """One reading of a UPS through NUT."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    status: str = Field(default="", max_length=64, description="NUT ups.status, e.g. 'OL', 'OB', 'OB LB'")
    battery_charge: float | None = Field(default=None, ge=0, le=100, description="percent")
    battery_runtime_s: float | None = Field(default=None, ge=0, description="seconds left on the battery")
    input_voltage: float | None = Field(default=None, ge=0, le=1000, description="volts")


class MainsLost(BaseModel):
    """``data`` of a ``power.mains_lost`` event (``device_id``: the UPS)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    lost_at: datetime
    reading: UpsReading


class MainsRestored(BaseModel):
    """``data`` of a ``power.mains_restored`` event (``device_id``: the UPS)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    lost_at: datetime
    restored_at: datetime
    duration_s: float = Field(ge=0, description="how long the node ran without mains")
    reading: UpsReading


class LowBattery(BaseModel):
    """``data`` of a ``power.low_battery`` event (``device_id``: the UPS)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    lost_at: datetime | None = Field(default=None, description="when mains was lost, if seen")
    reading: UpsReading


class GoingDown(BaseModel):
    """``data`` of a ``node.going_down`` event: the node expects to lose power (it then says ``power_loss``)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    reason: Literal["low_battery"] = "low_battery"
    reading: UpsReading
    flushed: bool = Field(description="the outbox was empty (everything before this was delivered) when sent")


class UplinkRestored(BaseModel):
    """``data`` of an ``uplink.restored`` event: the node lost its link to central (the broker) and got it back."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    lost_at: datetime
    restored_at: datetime
    duration_s: float = Field(ge=0)
    attempts: int = Field(default=0, ge=0, description="connection attempts that failed in between")
    across_restart: bool = Field(default=False, description="the outage began before the agent last started")


#: The ``params`` model of every command (``None``: it takes none). Both sides validate with these; the AsyncAPI
#: document lists them under the command message (``x-commands``).
COMMAND_PARAMS: Final[dict[CommandType, type[BaseModel] | None]] = {
    CommandType.PING: None,
    CommandType.PUBLISH_HEALTH: None,
    CommandType.OUTBOX_STATS: None,
    CommandType.CAMERA_DISCOVER: None,
    CommandType.CAMERA_ADOPT: AdoptCameraParams,
    CommandType.CAMERA_FORGET: CameraRef,
    CommandType.CAMERA_SET_CREDENTIALS: CameraCredentialsParams,
    CommandType.CAMERA_SNAPSHOT: CameraRef,
    CommandType.CAMERA_PTZ_MOVE: PtzMoveParams,
    CommandType.CAMERA_PTZ_STOP: CameraRef,
    CommandType.CAMERA_PTZ_GOTO_PRESET: PtzPresetParams,
    CommandType.CAMERA_PTZ_SET_PRESET: PtzPresetParams,
    CommandType.CAMERA_REBOOT: CameraRef,
    CommandType.CAMERA_SYNC_TIME: CameraRef,
    CommandType.CAMERA_LIVE_START: LiveStartParams,
    CommandType.CAMERA_LIVE_STOP: LiveStopParams,
    CommandType.KIOSK_ALERTS_SET: KioskAlertsParams,
    CommandType.KIOSK_CONTENT_UPDATE: KioskContentParams,
    CommandType.KIOSK_SCREENSHOT: CameraRef,
}
#: Commands whose successful ``result`` has a fixed shape (central reads these fields).
COMMAND_RESULTS: Final[dict[CommandType, type[BaseModel]]] = {CommandType.CAMERA_LIVE_START: LiveStartResult}
#: Events whose ``data`` has a fixed shape, by ``kind``.
EVENT_DATA: Final[dict[str, type[BaseModel]]] = {
    LIVE_ENDED_EVENT: LiveEnded,
    SIREN_CHANGED_EVENT: SirenChanged,
    MAINS_LOST_EVENT: MainsLost,
    MAINS_RESTORED_EVENT: MainsRestored,
    LOW_BATTERY_EVENT: LowBattery,
    GOING_DOWN_EVENT: GoingDown,
    UPLINK_RESTORED_EVENT: UplinkRestored,
}


NodeMessage = Annotated[
    Availability | Birth | Health | DeviceState | Event | CommandResult | CameraInfo | Snapshot | DiscoveryReport,
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
    Channel.INFO: CameraInfo,
    Channel.SNAPSHOT: Snapshot,
    Channel.DISCOVERY: DiscoveryReport,
}

#: Channels whose messages the broker retains.
RETAINED_CHANNELS: Final = frozenset({Channel.STATUS, Channel.BIRTH, Channel.STATE, Channel.INFO})

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


def max_payload_bytes(channel: Channel) -> int:
    """The largest payload accepted on *channel*."""
    return MAX_SNAPSHOT_BYTES if channel is Channel.SNAPSHOT else MAX_PAYLOAD_BYTES


def decode(channel: Channel, payload: bytes, *, max_bytes: int | None = None) -> Envelope:
    """Parse and validate *payload* for *channel*; raises :class:`ContractError` with a reason."""
    if max_bytes is None:
        max_bytes = max_payload_bytes(channel)
    if len(payload) > max_bytes:
        raise ContractError(RejectReason.OVERSIZED, f"{len(payload)} bytes > {max_bytes}")
    adapter = _ADAPTERS[channel]
    try:  # fast path: one pass in pydantic-core; on failure, classify the problem below
        fast: Envelope = adapter.validate_json(payload)
    except ValidationError:
        pass
    else:
        _check_event_data(fast)
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
    _check_event_data(model)
    return model


def event_data(event: Event) -> BaseModel | None:
    """The typed ``data`` of an event whose kind has a fixed shape (:data:`EVENT_DATA`); None for other kinds.

    Raises :class:`ContractError` (``invalid_schema``) when the data does not fit its kind's model.
    """
    model = EVENT_DATA.get(event.kind)
    if model is None:
        return None
    try:
        return model.model_validate(event.data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in ("data", *first.get("loc", ())))
        raise ContractError(RejectReason.INVALID_SCHEMA, f"{where}: {first.get('msg', '')}"[:300]) from None


def _check_event_data(message: Envelope) -> None:
    if isinstance(message, Event) and message.kind in EVENT_DATA:
        event_data(message)


def decode_for_topic(topic_name: str, payload: bytes, *, max_bytes: int | None = None) -> Envelope:
    """Decode a payload received on *topic_name*, checking that it belongs there (node and device match)."""
    parts = parse_topic(topic_name)
    if parts is None:
        raise ContractError(RejectReason.BAD_TOPIC, topic_name[:200])
    message = decode(parts.channel, payload, max_bytes=max_bytes)
    if message.node_id != parts.node:
        raise ContractError(RejectReason.NODE_MISMATCH, f"payload {message.node_id} on topic of {parts.node}")
    if isinstance(message, DeviceState | CameraInfo | Snapshot) and message.device_id != parts.device:
        raise ContractError(RejectReason.DEVICE_MISMATCH, f"{message.device_id} on topic of {parts.device}")
    return message


def signing_bytes(command: Command) -> bytes:
    """The canonical bytes an Ed25519 command signature covers: sorted-key JSON of every field but ``sig``."""
    data = command.model_dump(mode="json", exclude={"sig", "historical"})
    return orjson.dumps(data, option=orjson.OPT_SORT_KEYS)
