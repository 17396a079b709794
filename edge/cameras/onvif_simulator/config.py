"""Configuration and run-time fault switches of the ONVIF camera simulator."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr

ReplyMode = Literal["normal", "malformed", "entity_bomb", "huge"]


class Faults(BaseModel):
    """Misbehaviour switchable at run time (``OnvifSimulator.set_faults`` or ``POST /control/faults``)."""

    model_config = ConfigDict(extra="forbid")

    delay_s: float = Field(default=0.0, ge=0, le=600, description="every SOAP reply waits this long")
    reply: ReplyMode = Field(default="normal", description="malformed XML, an XML entity bomb or an endless reply")
    auth_status: Literal[400, 401] = Field(
        default=400, description="HTTP status of a NotAuthorized fault (ONVIF says 400; many cameras send 401)"
    )
    lose_subscriptions: bool = Field(default=False, description="forget every PullPoint subscription now")


class SimulatorConfig(BaseModel):
    """What the simulated camera is and how it behaves."""

    model_config = ConfigDict(extra="forbid")

    host: str = "127.0.0.1"
    port: int = Field(default=0, ge=0, le=65535, description="0 = any free port")
    advertise_host: str | None = Field(default=None, description="host in XAddrs and URIs (default: host)")
    username: str = "admin"
    password: SecretStr = SecretStr("admin")
    auth_required: bool = True
    max_auth_skew_s: float = Field(default=300.0, gt=0, description="UsernameToken Created must be this close")
    clock_offset_s: float = Field(default=0.0, description="camera clock minus real UTC")
    manufacturer: str = "Varta"
    model: str = "SimCam-1"
    firmware: str = "1.0.0"
    serial: str = "SIM-000001"
    hardware_id: str = "SIM-HW-1"
    rtsp_uri: str = "rtsp://127.0.0.1:8554/main"
    sub_rtsp_uri: str | None = None
    ptz: bool = True
    ptz_listed_in: Literal["both", "capabilities", "services"] = Field(
        default="capabilities", description="some devices list PTZ only in one of GetCapabilities / GetServices"
    )
    events: bool = True
    max_subscription_s: float = Field(default=60.0, gt=0, description="cap on a PullPoint subscription's lifetime")
    max_pull_wait_s: float = Field(default=10.0, gt=0, description="cap on PullMessages long-poll")
    quirky_topics: bool = Field(default=False, description="topics with whitespace and a trailing '//.'")
    snapshot_size: tuple[int, int] = (640, 360)
