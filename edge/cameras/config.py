"""The ``cameras:`` section of the edge configuration (discovery, ONVIF, snapshots, live view); nothing heavy."""

from __future__ import annotations

from ipaddress import IPv4Address
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

STREAMING_SCOPE = "onvif://www.onvif.org/Profile/Streaming"


class LiveSettings(BaseModel):
    """Live view: WebRTC passthrough of a camera's H.264 stream to dispatchers' browsers (needs the 'live' extra)."""

    model_config = ConfigDict(extra="forbid")

    enabled: bool = Field(default=True, description="answer camera.live.start (when the 'live' extra is installed)")
    max_viewers_per_camera: int = Field(default=4, ge=1, le=64, description="viewers of one camera at a time")
    max_viewers_per_node: int = Field(default=8, ge=1, le=256, description="viewers of all cameras at a time")
    linger_s: float = Field(
        default=10.0, ge=0, le=600, description="a camera's stream stays open this long after its last viewer left"
    )
    connect_timeout_s: float = Field(
        default=15.0, gt=0, le=300, description="a viewer that has not connected (ICE + DTLS) by then is dropped"
    )
    open_timeout_s: float = Field(default=5.0, gt=0, le=60, description="longest wait to open a camera's stream")
    queue_packets: int = Field(
        default=60,
        ge=2,
        le=2000,
        description="packets queued per viewer; a viewer that lags more skips to the next keyframe",
    )


class CameraSettings(BaseModel):
    """ONVIF cameras managed by this node. Adopted cameras themselves come from central (``camera.adopt``)."""

    model_config = ConfigDict(extra="forbid")

    enabled: bool = Field(default=False, description="manage ONVIF cameras (needs the 'cameras' extra)")
    store_path: Path | None = Field(
        default=None,
        description="adopted cameras and their credentials (mode 0600); default: cameras.json by the outbox",
    )
    discovery_interval_s: float = Field(
        default=600.0, ge=0, le=86_400, description="seconds between WS-Discovery probes (also at start); 0 = off"
    )
    discovery_timeout_s: float = Field(default=3.0, gt=0, le=30, description="how long one probe collects answers")
    discovery_multicast: bool = Field(default=True, description="probe by multicast on the LAN")
    discovery_interfaces: list[IPv4Address] = Field(
        default_factory=list,
        max_length=16,
        description="local IPv4 addresses whose interfaces carry the multicast probe; empty: the default route's",
    )
    discovery_unicast: list[str] = Field(
        default_factory=list, max_length=256, description="extra hosts (host or host:port) probed by unicast"
    )
    discovery_scope: str = Field(default=STREAMING_SCOPE, max_length=200, description="ONVIF scope probed for")
    onvif_timeout_s: float = Field(default=5.0, gt=0, le=60, description="longest wait for one ONVIF request")
    describe_retry_s: float = Field(
        default=60.0, ge=1, le=3600, description="an undescribed (unreachable) camera is asked again after at most"
    )
    snapshot_max_width: int = Field(default=640, ge=64, le=1920, description="thumbnails are scaled down to this")
    snapshot_jpeg_quality: int = Field(default=80, ge=30, le=95, description="JPEG quality of thumbnails")
    live: LiveSettings = Field(default_factory=LiveSettings, description="live view (WebRTC)")
