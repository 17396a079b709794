"""A small, realistic fleet published over MQTT exactly as edge nodes would (births, health, devices, events)."""

from __future__ import annotations

import base64
import uuid
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Literal

import cv2
import numpy as np
from pydantic import BaseModel

from varta.contract import (
    Availability,
    Birth,
    CameraInfo,
    CameraProfile,
    Channel,
    DeviceKind,
    DeviceState,
    DeviceStatus,
    DiscoveredDevice,
    DiscoveryReport,
    Event,
    Health,
    PtzPreset,
    Severity,
    Snapshot,
    encode,
    topic,
    utcnow,
)
from varta.mqtt import MqttClient


@dataclass
class SimNode:
    """One simulated edge node: its identity, boot and sequence counter."""

    site: str
    node_id: str
    name: str
    boot_id: str = field(default_factory=lambda: uuid.uuid4().hex[:12])
    seq: int = 0

    def next_seq(self) -> int:
        self.seq += 1
        return self.seq


async def _send(
    client: MqttClient,
    node: SimNode,
    channel: Channel,
    message: BaseModel,
    device: str | None = None,
    *,
    retain: bool = False,
) -> None:
    await client.publish(topic(node.site, node.node_id, channel, device), encode(message), qos=1, retain=retain)


async def publish_birth(client: MqttClient, node: SimNode, *, version: str = "0.1.0") -> None:
    now = utcnow()
    birth = Birth(
        node_id=node.node_id,
        boot_id=node.boot_id,
        seq=node.next_seq(),
        ts=now,
        site=node.site,
        name=node.name,
        hostname=f"pi-{node.node_id}",
        version=version,
        started_at=now - timedelta(hours=30),
        platform="Raspberry Pi 4 Model B",
        health_interval_s=30,
    )
    await _send(client, node, Channel.BIRTH, birth, retain=True)


async def publish_availability(
    client: MqttClient,
    node: SimNode,
    state: Literal["online", "offline"],
    reason: Literal["connected", "shutdown", "last_will"] = "connected",
) -> None:
    message = Availability(node_id=node.node_id, boot_id=node.boot_id, seq=0, ts=utcnow(), state=state, reason=reason)
    await _send(client, node, Channel.STATUS, message, retain=True)


async def publish_health(
    client: MqttClient,
    node: SimNode,
    *,
    age_s: float = 0,
    historical: bool = False,
    cpu: float = 14.0,
    memory: float = 41.0,
    disk: float = 37.0,
    temperature: float | None = 51.0,
    undervoltage: bool | None = False,
) -> None:
    message = Health(
        node_id=node.node_id,
        boot_id=node.boot_id,
        seq=node.next_seq(),
        ts=utcnow() - timedelta(seconds=age_s),
        historical=historical,
        cpu_percent=cpu,
        memory_percent=memory,
        memory_available_mb=1500.0,
        disk_percent=disk,
        disk_free_mb=20_000.0,
        temperature_c=temperature,
        undervoltage=undervoltage,
        uptime_s=108_000.0 - age_s,
        agent_uptime_s=100_000.0,
        version="0.1.0",
    )
    await _send(client, node, Channel.HEALTH, message)


async def publish_device(
    client: MqttClient,
    node: SimNode,
    device_id: str,
    kind: DeviceKind,
    status: DeviceStatus,
    name: str,
    *,
    reason: str | None = None,
    detail: str = "",
) -> None:
    message = DeviceState(
        node_id=node.node_id,
        boot_id=node.boot_id,
        seq=node.next_seq(),
        ts=utcnow(),
        device_id=device_id,
        kind=kind,
        name=name,
        status=status,
        reason=reason,
        detail=detail,
    )
    await _send(client, node, Channel.STATE, message, device_id, retain=True)


async def publish_event(
    client: MqttClient,
    node: SimNode,
    kind: str,
    message: str,
    severity: Severity = Severity.INFO,
    device_id: str | None = None,
) -> None:
    event = Event(
        node_id=node.node_id,
        boot_id=node.boot_id,
        seq=node.next_seq(),
        ts=utcnow(),
        kind=kind,
        severity=severity,
        device_id=device_id,
        message=message,
    )
    await _send(client, node, Channel.EVENT, event)


@dataclass(frozen=True)
class Fleet:
    """Four nodes on two sites, each on a fresh boot (sequence numbers start at 1)."""

    maidan: SimNode = field(default_factory=lambda: SimNode("center", "maidan-01", "Майдан Незалежності"))
    station: SimNode = field(default_factory=lambda: SimNode("center", "station-02", "Залізничний вокзал"))
    park: SimNode = field(default_factory=lambda: SimNode("north", "park-03", "Парк Перемоги"))
    school: SimNode = field(default_factory=lambda: SimNode("north", "school-04", "Школа № 12"))

    @property
    def nodes(self) -> tuple[SimNode, ...]:
        return (self.maidan, self.station, self.park, self.school)


async def publish_fleet(client: MqttClient, fleet: Fleet, *, history_hours: int = 24) -> None:
    """The fleet as its nodes report it: 24 h of health history for one, one under-voltage and hot, one offline."""
    MAIDAN, STATION, PARK, SCHOOL = fleet.nodes  # noqa: N806 - read like the constants they are
    for node in fleet.nodes:
        await publish_birth(client, node)
        await publish_availability(client, node, "online")
    # 24 h of replayed history for the Maidan node (every 10 min, with a 2 h outage 6 h ago).
    for minutes in range(history_hours * 60, 0, -10):
        if 240 <= minutes <= 360:
            continue
        hour = minutes / 60
        await publish_health(
            client,
            MAIDAN,
            age_s=minutes * 60,
            historical=True,
            cpu=18 + (hour * 7) % 30,
            memory=44 + (hour * 3) % 12,
            temperature=49 + (hour * 5) % 14,
        )
    await publish_health(client, MAIDAN, cpu=23.0, memory=48.0, disk=41.0, temperature=54.0)
    await publish_health(client, STATION, cpu=9.0, memory=35.0, disk=22.0, temperature=47.0)
    await publish_health(client, PARK, cpu=96.0, memory=71.0, disk=64.0, temperature=83.0, undervoltage=True)
    await publish_health(client, SCHOOL, cpu=11.0, memory=30.0, disk=93.0, temperature=None)
    for i in range(1, 4):
        await publish_device(client, MAIDAN, f"cam-{i}", DeviceKind.CAMERA, DeviceStatus.ONLINE, f"Камера {i}")
    await publish_device(
        client,
        MAIDAN,
        "cam-4",
        DeviceKind.CAMERA,
        DeviceStatus.DEGRADED,
        "Камера 4",
        reason="low_fps",
        detail="5 fps instead of 25",
    )
    await publish_device(client, MAIDAN, "siren-1", DeviceKind.SIREN, DeviceStatus.ONLINE, "Сирена")
    await publish_device(client, STATION, "kiosk-1", DeviceKind.KIOSK, DeviceStatus.ONLINE, "Кіоск виклику")
    await publish_device(client, STATION, "ups-1", DeviceKind.UPS, DeviceStatus.ONLINE, "ДБЖ")
    await publish_device(
        client,
        PARK,
        "cam-1",
        DeviceKind.CAMERA,
        DeviceStatus.OFFLINE,
        "Камера біля входу",
        reason="no_rtsp",
        detail="RTSP timeout",
    )
    await publish_device(client, PARK, "siren-1", DeviceKind.SIREN, DeviceStatus.ONLINE, "Сирена")
    await publish_device(client, SCHOOL, "cam-1", DeviceKind.CAMERA, DeviceStatus.ONLINE, "Камера 1")
    await publish_event(client, MAIDAN, "camera.degraded", "Camera 4: frame rate dropped", Severity.WARNING, "cam-4")
    await publish_event(
        client, PARK, "camera.offline", "Camera at the entrance stopped streaming", Severity.CRITICAL, "cam-1"
    )
    await publish_availability(client, SCHOOL, "offline", "last_will")


# --------------------------------------------------------------------------------------------------- cameras


def camera_picture(label: str, *, seed: int = 0, dark: bool = False, width: int = 480, height: int = 270) -> bytes:
    """A JPEG that looks enough like a street camera's picture to judge the wall: sky, road, a label."""
    rng = np.random.default_rng(seed)
    image = np.zeros((height, width, 3), dtype=np.uint8)
    if not dark:
        sky = np.linspace(200, 120, height // 2, dtype=np.uint8)
        image[: height // 2] = np.dstack([sky[:, None].repeat(width, 1)] * 3) * np.array([1.0, 0.9, 0.7])
        image[height // 2 :] = (70, 70, 75)
        for _ in range(6):
            x = int(rng.integers(0, width - 60))
            h = int(rng.integers(40, height // 2))
            color = tuple(int(c) for c in rng.integers(60, 200, 3))
            cv2.rectangle(image, (x, height // 2 - h), (x + 50, height // 2), color, -1)
        cv2.line(image, (0, height - 40), (width, height - 70), (230, 230, 230), 3)
    cv2.putText(image, label, (10, height - 12), cv2.FONT_HERSHEY_SIMPLEX, 0.7, (255, 255, 255), 2)
    ok, buf = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 80])
    assert ok
    return bytes(buf.tobytes())


async def publish_camera_birth(client: MqttClient, node: SimNode, box_public_key: str) -> None:
    """A birth that announces the node's sealing key (cameras can be adopted with credentials)."""
    now = utcnow()
    birth = Birth(
        node_id=node.node_id,
        boot_id=node.boot_id,
        seq=node.next_seq(),
        ts=now,
        site=node.site,
        name=node.name,
        hostname=f"pi-{node.node_id}",
        version="0.1.0",
        started_at=now - timedelta(hours=3),
        health_interval_s=30,
        box_public_key=box_public_key,
    )
    await _send(client, node, Channel.BIRTH, birth, retain=True)


async def publish_camera(
    client: MqttClient,
    node: SimNode,
    device_id: str,
    name: str,
    status: DeviceStatus,
    *,
    reason: str | None = None,
    detail: str = "",
    picture: bytes | None = None,
    picture_age_s: float = 60,
    ptz: bool = False,
) -> None:
    """A camera as its node reports it: info (retained), state (retained) and, if given, a picture."""
    info = CameraInfo(
        node_id=node.node_id,
        boot_id=node.boot_id,
        seq=node.next_seq(),
        ts=utcnow(),
        device_id=device_id,
        name=name,
        onvif_address=f"http://10.0.0.{10 + len(device_id)}/onvif/device_service",
        manufacturer="Hikvision",
        model="DS-2DE4425IW-DE" if ptz else "DS-2CD2143G2-I",
        firmware="V5.7.3 build 220112",
        serial=f"DS-{device_id.upper()}",
        profiles=[
            CameraProfile(
                token="main", name="MainStream", encoding="H264", width=1920, height=1080, fps=25, role="main"
            ),
            CameraProfile(token="sub", name="SubStream", encoding="H264", width=640, height=360, fps=12.5, role="sub"),
        ],
        main_profile="main",
        sub_profile="sub",
        stream_uri=f"rtsp://10.0.0.{10 + len(device_id)}:554/Streaming/Channels/101",
        ptz=ptz,
        presets=[PtzPreset(token="1", name="Фонтан"), PtzPreset(token="2", name="Зупинка")] if ptz else [],
        events=True,
    )
    await _send(client, node, Channel.INFO, info, device_id, retain=True)
    state = DeviceState(
        node_id=node.node_id,
        boot_id=node.boot_id,
        seq=node.next_seq(),
        ts=utcnow(),
        device_id=device_id,
        kind=DeviceKind.CAMERA,
        name=name,
        status=status,
        reason=reason,
        detail=detail,
        attrs={"width": 1920, "height": 1080, "fps": 25.0} if status is not DeviceStatus.OFFLINE else {},
    )
    await _send(client, node, Channel.STATE, state, device_id, retain=True)
    if picture is not None:
        snapshot = Snapshot(
            node_id=node.node_id,
            boot_id=node.boot_id,
            seq=node.next_seq(),
            ts=utcnow(),
            device_id=device_id,
            taken_at=utcnow() - timedelta(seconds=picture_age_s),
            source="onvif",
            width=480,
            height=270,
            data=base64.b64encode(picture).decode(),
        )
        await _send(client, node, Channel.SNAPSHOT, snapshot, device_id)


async def publish_discovery(client: MqttClient, node: SimNode, count: int) -> None:
    """A discovery report with *count* ONVIF devices."""
    devices = [
        DiscoveredDevice(
            endpoint=f"urn:uuid:5f0c1a2b-0000-4000-8000-{node.node_id[:4]}{i:08d}",
            address=f"10.0.0.{100 + i}",
            xaddrs=[f"http://10.0.0.{100 + i}/onvif/device_service"],
            scopes=["onvif://www.onvif.org/Profile/Streaming"],
            name=f"IPC-{i}",
            hardware="DS-2CD2143G2-I",
        )
        for i in range(1, count + 1)
    ]
    report = DiscoveryReport(
        node_id=node.node_id, boot_id=node.boot_id, seq=node.next_seq(), ts=utcnow(), trigger="command", devices=devices
    )
    await _send(client, node, Channel.DISCOVERY, report)
