"""Request and response schemas of the camera API (also the payloads of the ``camera`` SSE event).

No schema here carries a credential out of central: passwords arrive only in request bodies (as
:class:`~pydantic.SecretStr`) and leave central only sealed to the node's key.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from pydantic import BaseModel, ConfigDict, Field, SecretStr

from varta.contract import ID_PATTERN, CameraProfile, CameraThresholds, PtzPreset

#: Query parameters some cameras take credentials in; their values never leave central.
_SECRET_QUERY_KEYS = ("user", "pass", "pwd", "token", "auth", "key", "secret")


def strip_credentials(url: str) -> str:
    """*url* without user info (``user:pass@``) and without credential-like query values."""
    if not url:
        return url
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
    except ValueError:
        return ""
    if ":" in host:
        host = f"[{host}]"
    netloc = host + (f":{parts.port}" if parts.port else "") if parts.netloc else ""
    query = parts.query
    if query:
        pairs = parse_qsl(query, keep_blank_values=True)
        query = urlencode(
            [(k, "***" if any(s in k.lower() for s in _SECRET_QUERY_KEYS) else v) for k, v in pairs], safe="*"
        )
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


class CameraInfoView(BaseModel):
    """What the node learnt about the camera over ONVIF (addresses without credentials)."""

    manufacturer: str = ""
    model: str = ""
    firmware: str = ""
    serial: str = ""
    hardware_id: str = ""
    onvif_address: str = ""
    profiles: list[CameraProfile] = Field(default_factory=list)
    main_profile: str | None = None
    sub_profile: str | None = None
    stream_uri: str = ""
    snapshot_uri: str = ""
    ptz: bool = False
    presets: list[PtzPreset] = Field(default_factory=list)
    events: bool = False
    clock_skew_s: float | None = None
    thresholds: CameraThresholds = Field(default_factory=CameraThresholds)

    @classmethod
    def from_stored(cls, info: dict[str, Any] | None) -> CameraInfoView | None:
        """The view of a stored ``CameraInfo`` JSON (URLs cleaned once more, unknown keys dropped)."""
        if not info:
            return None
        data = {k: info[k] for k in cls.model_fields if k in info}
        for key in ("onvif_address", "stream_uri", "snapshot_uri"):
            data[key] = strip_credentials(str(data.get(key) or ""))
        try:
            return cls.model_validate(data)
        except ValueError:
            return None


class CameraView(BaseModel):
    """A camera on the wall: where it is, whether it shows the street, and how old its picture is."""

    node_id: str
    device_id: str
    site: str
    name: str
    position: str
    latitude: float | None = None
    longitude: float | None = None
    status: str = Field(description="online, degraded, offline or unknown")
    reason: str | None = Field(default=None, description="CameraReason code when not fully online")
    detail: str = ""
    status_since: datetime | None = None
    state_at: datetime | None = None
    snapshot_at: datetime | None = Field(default=None, description="when the latest picture was taken")
    adopted_at: datetime | None = None
    node_online: bool = True
    manufacturer: str = ""
    model: str = ""
    ptz: bool = False
    width: int | None = None
    height: int | None = None
    fps: float | None = None


class CameraDetail(CameraView):
    """One camera with everything the node reported about it (never any credential)."""

    info: CameraInfoView | None = None
    info_at: datetime | None = None
    attrs: dict[str, Any] = Field(default_factory=dict)
    snapshot_age_s: float | None = Field(default=None, description="age of the latest picture when answered")


class StatusChange(BaseModel):
    """One entry of a camera's health history."""

    ts: datetime
    status: str
    reason: str | None = None
    message: str = ""


class DiscoveredView(BaseModel):
    """A device in the discovery inbox."""

    model_config = ConfigDict(from_attributes=True)

    id: int
    node_id: str
    site: str
    endpoint: str
    address: str
    xaddrs: list[str]
    scopes: list[str]
    name: str
    hardware: str
    first_seen: datetime
    last_seen: datetime
    state: Literal["new", "ignored", "adopted"]
    device_id: str | None = None
    node_can_seal: bool = Field(default=False, description="the node announced a key to seal credentials to")


class _Request(BaseModel):
    model_config = ConfigDict(extra="forbid")


class AdoptRequest(_Request):
    """Adopt a discovered device: what to call it, where it is, and how to log in to it."""

    device_id: str | None = Field(
        default=None, pattern=ID_PATTERN, description="id on the node; default: derived from the endpoint"
    )
    name: str = Field(min_length=1, max_length=200)
    site: str | None = Field(default=None, pattern=ID_PATTERN, description="default: the node's site")
    position: str = Field(default="", max_length=300)
    latitude: float | None = Field(default=None, ge=-90, le=90)
    longitude: float | None = Field(default=None, ge=-180, le=180)
    onvif_address: str | None = Field(default=None, max_length=500, description="default: the first XAddr")
    stream_uri: str | None = Field(default=None, max_length=500, description="RTSP override, without credentials")
    username: str = Field(default="", max_length=128)
    password: SecretStr = Field(default=SecretStr(""), max_length=256)


class CredentialsRequest(_Request):
    """New login for a camera (sealed to its node's key; never stored at central)."""

    username: str = Field(min_length=1, max_length=128)
    password: SecretStr = Field(max_length=256)


class PtzMoveRequest(_Request):
    """Continuous PTZ move; the camera stops by itself after ``timeout_s`` unless moved again."""

    pan: float = Field(default=0.0, ge=-1, le=1)
    tilt: float = Field(default=0.0, ge=-1, le=1)
    zoom: float = Field(default=0.0, ge=-1, le=1)
    timeout_s: float = Field(default=1.0, gt=0, le=10)


class PresetGotoRequest(_Request):
    """Go to a PTZ preset."""

    token: str = Field(min_length=1, max_length=64)


class PresetSetRequest(_Request):
    """Save the current position as a preset."""

    name: str = Field(min_length=1, max_length=100)
    token: str | None = Field(default=None, max_length=64, description="overwrite this preset")


class CameraUpdate(_Request):
    """Change how central names and places a camera."""

    name: str | None = Field(default=None, min_length=1, max_length=200)
    position: str | None = Field(default=None, max_length=300)
    latitude: float | None = Field(default=None, ge=-90, le=90)
    longitude: float | None = Field(default=None, ge=-180, le=180)
