"""The camera manager inside a real edge agent, against real parts.

A real Mosquitto, the project's ONVIF simulator and GStreamer's RTSP server (a test pattern behind digest auth).
"Central" signs commands and seals the camera's credentials to the node's key, exactly as central does.
"""

from __future__ import annotations

import asyncio
import base64
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
from nacl.signing import SigningKey
from pydantic import SecretStr

from edge.agent import EdgeAgent
from edge.cameras.onvif_simulator import OnvifSimulator
from edge.cameras.snapshots import MAX_JPEG_BYTES, SnapshotError, jpeg_size, thumbnail
from edge.cameras.wsdiscovery import DiscoveryResponder
from tests.edge.support import NODE, SITE, Collector, edge_config, eventually, running_agent
from tests.support.broker import Broker
from tests.support.ports import free_port
from tests.support.rtsp_server import RtspServer
from varta.contract import Channel, Command, encode, node_prefix, topic, utcnow
from varta.mqtt import MqttClient
from varta.sealing import Credentials, public_key_text, seal_credentials
from varta.signing import generate_signing_key, sign_command
from varta.signing import public_key_text as verify_key_text

USER = "viewer"
PASSWORD = "Cam-Pa55-" + uuid.uuid4().hex[:12]
ALL = f"{node_prefix(SITE, NODE)}/#"
CAM = "cam-gate"
FAST = {"probe_interval_s": 0.5, "resend_interval_s": 5, "snapshot_interval_s": 3600}


@pytest.fixture
def rtsp() -> Iterator[RtspServer]:
    server = RtspServer(width=640, height=360, fps=10, user=USER, password=PASSWORD).start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
async def onvif(rtsp: RtspServer) -> AsyncIterator[OnvifSimulator]:
    sim = OnvifSimulator(username=USER, password=SecretStr(PASSWORD), rtsp_uri=rtsp.url(), max_subscription_s=10)
    await sim.start()
    try:
        yield sim
    finally:
        await sim.stop()


@dataclass
class Node:
    agent: EdgeAgent
    key: SigningKey
    sender: MqttClient
    sub: Collector

    def command(self, command_name: str, /, **params: Any) -> Command:
        now = utcnow()
        command = Command(
            node_id=NODE,
            boot_id="central-boot",
            seq=1,
            ts=now,
            request_id=uuid.uuid4().hex,
            command=command_name,
            params=params,
            expires_at=now + timedelta(seconds=60),
            issued_by="operator@test",
        )
        return sign_command(command, self.key)

    async def call(self, command_name: str, /, *, wait_s: float = 30, **params: Any) -> dict[str, Any]:
        command = self.command(command_name, **params)
        await self.sender.publish(topic(SITE, NODE, Channel.COMMAND), encode(command), qos=1)
        got = await self.sub.wait_for(
            lambda p: any(r["request_id"] == command.request_id for r in p), "/cmd/result", wait_s
        )
        return next(r for r in got if r["request_id"] == command.request_id)

    def sealed(self, username: str = USER, password: str = PASSWORD) -> str:
        assert self.agent.box_key is not None
        return seal_credentials(
            public_key_text(self.agent.box_key), Credentials(username=username, password=SecretStr(password))
        )

    def states(self, device: str = CAM) -> list[dict[str, Any]]:
        return self.sub.payloads(f"/state/{device}")

    async def wait_state(self, status: str, reason: str | None = None, timeout: float = 20) -> dict[str, Any]:
        def ok(p: list[dict[str, Any]]) -> bool:
            return bool(p) and p[-1]["status"] == status and (reason is None or p[-1]["reason"] == reason)

        return (await self.sub.wait_for(ok, f"/state/{CAM}", timeout))[-1]

    def events(self, kind: str) -> list[dict[str, Any]]:
        return [e for e in self.sub.payloads("/event") if e["kind"] == kind]


def cameras_config(broker: Broker, tmp_path: Path, key: SigningKey, **cameras: Any) -> Any:
    return edge_config(
        broker,
        tmp_path,
        commands={"central_public_keys": [verify_key_text(key.verify_key)]},
        cameras={"enabled": True, "discovery_interval_s": 0, "onvif_timeout_s": 3, **cameras},
    )


@asynccontextmanager
async def start_node(broker: Broker, tmp_path: Path, **cameras: Any) -> AsyncIterator[Node]:
    key = generate_signing_key()
    config = cameras_config(broker, tmp_path, key, **cameras)
    sender = MqttClient(broker.settings(), client_id=f"central-{uuid.uuid4().hex[:6]}")
    sender_task = asyncio.create_task(sender.run())
    try:
        await sender.wait_connected(10)
        async with Collector(broker.settings(), ALL) as sub, running_agent(config) as agent:
            yield Node(agent, key, sender, sub)
    finally:
        await sender.stop()
        sender_task.cancel()
        await asyncio.gather(sender_task, return_exceptions=True)


@pytest.fixture
async def node(broker: Broker, tmp_path: Path) -> AsyncIterator[Node]:
    async with start_node(broker, tmp_path) as n:
        yield n


def assert_no_secret(node: Node, capsys: pytest.CaptureFixture[str]) -> None:
    """The password appears in no MQTT message (any topic, any encoding) and no log line."""
    secret = PASSWORD.encode()
    b64 = base64.b64encode(secret)
    for message in node.sub.messages:
        assert secret not in message.payload and b64 not in message.payload, message.topic
    out = capsys.readouterr()
    assert PASSWORD not in out.out + out.err


async def test_adoption_with_sealed_credentials_describes_monitors_and_pictures_the_camera(
    node: Node, onvif: OnvifSimulator, rtsp: RtspServer, capsys: pytest.CaptureFixture[str]
) -> None:
    birth = (await node.sub.wait_for(bool, "/birth"))[0]
    assert "camera" in birth["capabilities"] and "camera.adopt" in birth["capabilities"]
    assert birth["box_public_key"] == public_key_text(node.agent.box_key)  # type: ignore[arg-type]

    result = await node.call(
        "camera.adopt",
        device_id=CAM,
        name="Main gate",
        onvif_address=onvif.address,
        endpoint="urn:uuid:gate",
        sealed_credentials=node.sealed(),
        thresholds=FAST,
    )
    assert result["status"] == "ok", result
    summary = result["result"]
    assert summary["device_id"] == CAM and summary["described"] is True and summary["has_credentials"] is True
    assert summary["model"] == "SimCam-1" and summary["stream_uri"] == rtsp.url()

    info = (await node.sub.wait_for(bool, f"/info/{CAM}"))[-1]
    assert (info["manufacturer"], info["model"], info["firmware"], info["serial"]) == (
        "Varta",
        "SimCam-1",
        "1.0.0",
        "SIM-000001",
    )
    assert info["stream_uri"] == rtsp.url() and info["ptz"] is True and info["events"] is True
    assert info["profiles"] and info["main_profile"]
    assert [m.retain for m in node.sub.messages if m.topic.endswith(f"/info/{CAM}")] == [False]  # live copy

    state = await node.wait_state("online")
    assert (state["attrs"]["width"], state["attrs"]["height"]) == (640, 360)
    assert state["kind"] == "camera" and state["name"] == "Main gate"
    # The change event follows the retained state through the outbox: it may arrive a moment later.
    await eventually(lambda: bool(node.events("camera.status")), 10, "the camera.status event")
    status_events = node.events("camera.status")
    assert status_events[-1]["data"]["status"] == "online"

    snap = await node.call("camera.snapshot", device_id=CAM)
    assert snap["status"] == "ok", snap
    assert snap["result"]["source"] == "onvif" and snap["result"]["width"] <= 640
    pictures = await node.sub.wait_for(lambda p: any(x["purpose"] == "on_demand" for x in p), f"/snapshot/{CAM}")
    jpeg = base64.b64decode(pictures[-1]["data"])
    assert jpeg.startswith(b"\xff\xd8\xff") and pictures[-1]["width"] <= 640
    assert_no_secret(node, capsys)


async def test_wrong_credentials_adopt_the_camera_as_offline_with_auth_failed(
    node: Node, onvif: OnvifSimulator, capsys: pytest.CaptureFixture[str]
) -> None:
    result = await node.call(
        "camera.adopt",
        device_id=CAM,
        onvif_address=onvif.address,
        sealed_credentials=node.sealed(password="not-" + PASSWORD),
        thresholds=FAST,
    )
    assert result["status"] == "ok" and result["result"]["reason"] == "auth_failed", result
    state = await node.wait_state("offline", "auth_failed")
    assert "ONVIF" in state["detail"]
    assert node.agent.cameras is not None and CAM in node.agent.cameras.workers  # adopted all the same
    # The right password, sent later, brings it online without re-adopting.
    fixed = await node.call("camera.credentials.set", device_id=CAM, sealed_credentials=node.sealed())
    assert fixed["status"] == "ok", fixed
    await node.wait_state("online")
    assert_no_secret(node, capsys)


async def test_ptz_commands_reach_the_camera_and_presets_appear_in_its_info(node: Node, onvif: OnvifSimulator) -> None:
    adopt = await node.call(
        "camera.adopt", device_id=CAM, onvif_address=onvif.address, sealed_credentials=node.sealed(), thresholds=FAST
    )
    assert adopt["result"]["ptz"] is True
    move = await node.call("camera.ptz.move", device_id=CAM, pan=0.5, tilt=-0.25, zoom=0.0, timeout_s=5)
    assert move["status"] == "ok", move
    assert onvif.snapshot_state()["ptz"]["moving"]
    stop = await node.call("camera.ptz.stop", device_id=CAM)
    assert stop["status"] == "ok" and not onvif.snapshot_state()["ptz"]["moving"]
    made = await node.call("camera.ptz.preset.set", device_id=CAM, name="Crossing")
    assert made["status"] == "ok", made
    token = made["result"]["token"]
    assert onvif.snapshot_state()["presets"][token] == "Crossing"
    await node.sub.wait_for(lambda p: any(pr["name"] == "Crossing" for pr in p[-1]["presets"]), f"/info/{CAM}")
    went = await node.call("camera.ptz.preset.goto", device_id=CAM, token=token)
    assert went["status"] == "ok", went
    assert onvif.counters.get("op_GotoPreset", 0) >= 1
    bad = await node.call("camera.ptz.preset.goto", device_id=CAM)
    assert bad["status"] == "error" and "token" in bad["detail"]
    unknown = await node.call("camera.ptz.stop", device_id="cam-nope")
    assert unknown["status"] == "error" and "unknown camera" in unknown["detail"]


async def test_a_camera_without_ptz_refuses_ptz_commands_clearly(node: Node, rtsp: RtspServer) -> None:
    async with OnvifSimulator(username=USER, password=SecretStr(PASSWORD), rtsp_uri=rtsp.url(), ptz=False) as sim:
        await node.call("camera.adopt", device_id=CAM, onvif_address=sim.address, sealed_credentials=node.sealed())
        move = await node.call("camera.ptz.move", device_id=CAM, pan=1.0)
    assert move["status"] == "error" and move["detail"] == f"camera {CAM} has no PTZ"


async def test_a_tamper_event_from_the_camera_arrives_and_degrades_the_state_while_active(
    node: Node, onvif: OnvifSimulator
) -> None:
    await node.call(
        "camera.adopt", device_id=CAM, onvif_address=onvif.address, sealed_credentials=node.sealed(), thresholds=FAST
    )
    await node.wait_state("online")
    await eventually(lambda: onvif.snapshot_state()["subscriptions"] >= 1, 15, "a PullPoint subscription")
    onvif.trigger("tamper", True)
    tamper = await node.sub.wait_for(lambda p: any(e["kind"] == "camera.tamper" for e in p), "/event", 15)
    event = next(e for e in tamper if e["kind"] == "camera.tamper")
    assert (event["device_id"], event["severity"], event["data"]["active"]) == (CAM, "warning", True)
    await node.wait_state("degraded", "tamper")
    onvif.trigger("tamper", False)
    await node.wait_state("online")
    onvif.trigger("motion", True)
    await node.sub.wait_for(lambda p: any(e["kind"] == "camera.motion" for e in p), "/event", 15)


async def test_a_camera_unreachable_at_adoption_is_adopted_offline_and_described_when_it_appears(
    node: Node, rtsp: RtspServer
) -> None:
    port = free_port()
    address = f"http://127.0.0.1:{port}/onvif/device_service"
    result = await node.call(
        "camera.adopt", device_id=CAM, onvif_address=address, sealed_credentials=node.sealed(), thresholds=FAST
    )
    assert result["status"] == "ok" and result["result"]["described"] is False
    assert result["result"]["reason"] == "unreachable"
    await node.wait_state("offline", "unreachable")
    async with OnvifSimulator(username=USER, password=SecretStr(PASSWORD), rtsp_uri=rtsp.url(), port=port):
        await node.wait_state("online", timeout=30)
    info = node.sub.payloads(f"/info/{CAM}")[-1]
    assert info["model"] == "SimCam-1"


async def test_adopted_cameras_survive_an_agent_restart(broker: Broker, tmp_path: Path, onvif: OnvifSimulator) -> None:
    async with start_node(broker, tmp_path) as n:
        await n.call("camera.adopt", device_id=CAM, onvif_address=onvif.address, sealed_credentials=n.sealed())
        await n.wait_state("online")
    async with start_node(broker, tmp_path) as n:  # no command this time: the store remembers
        await n.sub.wait_for(
            lambda p: any(x["status"] == "online" and x["boot_id"] == n.agent.boot_id for x in p), f"/state/{CAM}", 20
        )
        forgot = await n.call("camera.forget", device_id=CAM)
        assert forgot["status"] == "ok" and forgot["result"]["retained_cleared"] is True
        assert n.agent.cameras is not None and n.agent.cameras.store.all() == []
        again = await n.call("camera.forget", device_id=CAM)  # idempotent
        assert again["status"] == "ok" and again["result"]["forgotten"] is False
    async with Collector(broker.settings(), f"{node_prefix(SITE, NODE)}/+/{CAM}") as late:
        await asyncio.sleep(0.5)
    assert late.payloads() == []  # nothing retained about the forgotten camera


async def test_discovery_on_command_and_at_start_up_publishes_reports(broker: Broker, tmp_path: Path) -> None:
    endpoint = f"urn:uuid:{uuid.uuid4()}"
    async with DiscoveryResponder(endpoint, ["http://127.0.0.1:1/onvif/device_service"], port=0) as responder:
        host, port = responder.address
        async with start_node(
            broker,
            tmp_path,
            discovery_interval_s=3600,
            discovery_multicast=False,
            discovery_unicast=[f"{host}:{port}"],
            discovery_timeout_s=0.5,
        ) as n:
            startup = await n.sub.wait_for(bool, "/discovery")
            result = await n.call("camera.discover")
            reports = await n.sub.wait_for(lambda p: len(p) >= 2, "/discovery")
    assert startup[0]["trigger"] == "startup"
    assert result["status"] == "ok" and result["result"]["found"] == 1
    assert reports[-1]["trigger"] == "command"
    assert [d["endpoint"] for d in reports[-1]["devices"]] == [endpoint]


async def test_bad_parameters_and_foreign_sealed_boxes_are_refused_without_echoing_them(node: Node) -> None:
    from nacl.public import PrivateKey

    other = seal_credentials(
        public_key_text(PrivateKey.generate()), Credentials(username=USER, password=SecretStr(PASSWORD))
    )
    foreign = await node.call(
        "camera.adopt", device_id=CAM, onvif_address="http://192.0.2.1/x", sealed_credentials=other
    )
    assert foreign["status"] == "error" and "cannot open the sealed credentials" in foreign["detail"]
    inline = await node.call("camera.adopt", device_id=CAM, stream_uri=f"rtsp://{USER}:{PASSWORD}@192.0.2.1/x")
    assert inline["status"] == "error" and PASSWORD not in inline["detail"]
    bad = await node.call("camera.adopt", device_id="BAD ID", name=PASSWORD)
    assert bad["status"] == "error" and "device_id" in bad["detail"] and PASSWORD not in bad["detail"]
    assert node.agent.cameras is not None and node.agent.cameras.workers == {}


async def test_a_slow_camera_times_out_while_the_others_and_the_agent_carry_on(
    node: Node, onvif: OnvifSimulator, rtsp: RtspServer
) -> None:
    async with OnvifSimulator(username=USER, password=SecretStr(PASSWORD), rtsp_uri=rtsp.url()) as slow:
        slow.set_faults(delay_s=30)
        first = await node.call(
            "camera.adopt", device_id="cam-slow", onvif_address=slow.address, sealed_credentials=node.sealed()
        )
        assert first["status"] == "ok" and first["result"]["described"] is False
        await node.call(
            "camera.adopt",
            device_id=CAM,
            onvif_address=onvif.address,
            sealed_credentials=node.sealed(),
            thresholds=FAST,
        )
        await node.wait_state("online")
        pong = await node.call("ping", wait_s=5)
        assert pong["status"] == "ok"
        slow_state = await node.sub.wait_for(lambda p: bool(p) and p[-1]["reason"] == "timeout", "/state/cam-slow", 20)
    assert slow_state[-1]["status"] == "offline"


async def test_an_entity_bomb_from_the_camera_is_refused_as_onvif_error_without_harm(
    node: Node, onvif: OnvifSimulator
) -> None:
    onvif.set_faults(reply="entity_bomb")
    result = await node.call(
        "camera.adopt", device_id=CAM, onvif_address=onvif.address, sealed_credentials=node.sealed(), thresholds=FAST
    )
    assert result["status"] == "ok" and result["result"]["reason"] == "onvif_error", result
    await node.wait_state("offline", "onvif_error")
    onvif.set_faults(reply="malformed")
    assert (await node.call("camera.snapshot", device_id=CAM))["status"] == "error"
    onvif.set_faults(reply="normal")  # the camera heals: described on the next attempt
    await node.wait_state("online", timeout=30)
    assert (await node.call("ping", wait_s=5))["status"] == "ok"


async def test_an_rtsp_only_camera_is_monitored_and_pictured_from_its_stream(node: Node, rtsp: RtspServer) -> None:
    thresholds = {**FAST, "snapshot_interval_s": 1}
    result = await node.call(
        "camera.adopt", device_id=CAM, stream_uri=rtsp.url(), sealed_credentials=node.sealed(), thresholds=thresholds
    )
    assert result["status"] == "ok" and result["result"]["onvif_address"] == ""
    await node.wait_state("online")
    shots = await node.sub.wait_for(lambda p: len(p) >= 2, f"/snapshot/{CAM}", 20)
    assert {s["source"] for s in shots} == {"rtsp"} and {s["purpose"] for s in shots} == {"periodic"}
    info = node.sub.payloads(f"/info/{CAM}")[-1]
    assert info["stream_uri"] == rtsp.url() and info["model"] == ""
    ptz = await node.call("camera.ptz.move", device_id=CAM, pan=1.0)
    assert ptz["status"] == "error" and "no ONVIF address" in ptz["detail"]


async def test_a_snapshot_falls_back_to_the_rtsp_frame_when_the_onvif_snapshot_is_too_slow(
    node: Node, onvif: OnvifSimulator
) -> None:
    await node.call(
        "camera.adopt", device_id=CAM, onvif_address=onvif.address, sealed_credentials=node.sealed(), thresholds=FAST
    )
    await node.wait_state("online")
    onvif.set_faults(delay_s=20)
    shot = await node.call("camera.snapshot", device_id=CAM)
    assert shot["status"] == "ok", shot
    assert shot["result"]["source"] == "rtsp" and (shot["result"]["width"], shot["result"]["height"]) == (640, 360)
    [picture] = [p for p in node.sub.payloads(f"/snapshot/{CAM}") if p["purpose"] == "on_demand"]
    assert picture["source"] == "rtsp" and base64.b64decode(picture["data"]).startswith(b"\xff\xd8\xff")


# ------------------------------------------------------------------------------------------- thumbnails


def test_thumbnails_are_scaled_down_jpegs_and_picture_bombs_are_refused_before_decoding() -> None:
    frame = np.random.default_rng(1).integers(0, 255, (2160, 3840, 3), dtype=np.uint8)
    big = cv2.imencode(".jpg", frame)[1].tobytes()
    assert jpeg_size(big) == (3840, 2160)
    jpeg, width, height = thumbnail(big, 640)
    assert (width, height) == (640, 360) and jpeg_size(jpeg) == (640, 360) and len(jpeg) <= MAX_JPEG_BYTES
    sof = big.index(b"\xff\xc0")
    bomb = bytearray(big)
    bomb[sof + 5 : sof + 9] = (60_000).to_bytes(2, "big") * 2  # a small file claiming 60000×60000 pixels
    for bad in (bytes(bomb), b"GIF89a not a jpeg", b"\xff\xd8\xff\xe0\x00\x01", b""):
        with pytest.raises(SnapshotError):
            thumbnail(bad, 640)
