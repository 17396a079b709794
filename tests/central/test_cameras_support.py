"""Builders of camera messages for the camera tests (this module holds no tests itself)."""

from __future__ import annotations

import base64
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import cv2
import numpy as np

from varta.contract import (
    Birth,
    CameraInfo,
    CameraProfile,
    DeviceKind,
    DeviceState,
    DeviceStatus,
    DiscoveredDevice,
    DiscoveryReport,
    Event,
    PtzPreset,
    Snapshot,
    utcnow,
)


def jpeg(width: int = 320, height: int = 240, *, noise: bool = False, seed: int = 1) -> bytes:
    """A real JPEG: a gradient test card, or random noise (which compresses badly: big files)."""
    if noise:
        image = np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)
    else:
        x = np.linspace(0, 255, width, dtype=np.uint8)
        image = np.dstack([np.tile(x, (height, 1))] * 3)
        cv2.rectangle(image, (width // 4, height // 4), (width // 2, height // 2), (40, 160, 240), -1)
    ok, buf = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 95])
    assert ok
    return bytes(buf.tobytes())


@dataclass
class CameraNode:
    """One simulated node with cameras: identity, boot and sequence counter."""

    site: str
    node_id: str
    boot_id: str = "boot-1"
    seq: int = 0
    box_public_key: str | None = None
    sent: list[Any] = field(default_factory=list)

    def next_seq(self) -> int:
        self.seq += 1
        return self.seq

    def env(self, **kw: Any) -> dict[str, Any]:
        data: dict[str, Any] = {
            "node_id": self.node_id,
            "boot_id": self.boot_id,
            "seq": self.next_seq(),
            "ts": utcnow(),
        }
        data.update(kw)
        return data

    def birth(self) -> Birth:
        now = utcnow()
        return Birth(
            **self.env(),
            site=self.site,
            name=self.node_id,
            hostname=f"pi-{self.node_id}",
            version="0.1.0",
            started_at=now - timedelta(minutes=5),
            health_interval_s=30,
            box_public_key=self.box_public_key,
        )

    def state(
        self, device: str, status: DeviceStatus, reason: str | None = None, detail: str = "", **attrs: Any
    ) -> DeviceState:
        return DeviceState(
            **self.env(),
            device_id=device,
            kind=DeviceKind.CAMERA,
            name=f"Camera {device}",
            status=status,
            reason=reason,
            detail=detail,
            attrs=attrs,
        )

    def info(self, device: str, **kw: Any) -> CameraInfo:
        data: dict[str, Any] = dict(
            device_id=device,
            name="Main square, north",
            onvif_address="http://192.0.2.10/onvif/device_service",
            manufacturer="Hikvision",
            model="DS-2DE4425IW",
            firmware="V5.7.3",
            serial="SN123",
            profiles=[
                CameraProfile(token="main", name="Main", encoding="H264", width=1920, height=1080, fps=25, role="main"),
                CameraProfile(token="sub", name="Sub", encoding="H264", width=640, height=360, fps=12.5, role="sub"),
            ],
            main_profile="main",
            sub_profile="sub",
            stream_uri="rtsp://192.0.2.10:554/Streaming/Channels/101",
            snapshot_uri="http://192.0.2.10/onvif/snapshot",
            ptz=True,
            presets=[PtzPreset(token="1", name="Fountain"), PtzPreset(token="2", name="Bus stop")],
            events=True,
        )
        data.update(kw)
        return CameraInfo(**self.env(), **data)

    def snapshot(
        self, device: str, data: bytes, *, taken_at: datetime | None = None, width: int = 320, height: int = 240
    ) -> Snapshot:
        return Snapshot(
            **self.env(),
            device_id=device,
            taken_at=taken_at or utcnow(),
            source="onvif",
            purpose="periodic",
            width=width,
            height=height,
            data=base64.b64encode(data).decode(),
        )

    def discovery(self, *devices: DiscoveredDevice) -> DiscoveryReport:
        return DiscoveryReport(**self.env(), trigger="command", devices=list(devices))

    def event(self, kind: str, device: str, **data: Any) -> Event:
        return Event(**self.env(), kind=kind, device_id=device, message=kind, data=data)


def found(n: int, address: str | None = None) -> DiscoveredDevice:
    """A device as a WS-Discovery probe reports it."""
    ip = address or f"192.0.2.{100 + n}"
    return DiscoveredDevice(
        endpoint=f"urn:uuid:00000000-0000-0000-0000-{n:012d}",
        address=ip,
        xaddrs=[f"http://{ip}/onvif/device_service"],
        scopes=["onvif://www.onvif.org/Profile/Streaming", f"onvif://www.onvif.org/name/Cam{n}"],
        types=["dn:NetworkVideoTransmitter"],
        name=f"Cam{n}",
        hardware="IPC-HFW",
    )
