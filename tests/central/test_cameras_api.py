"""Camera API: viewing, PTZ and snapshots for dispatchers; adoption and credentials sealed to the node's key.

Commands go through the real :class:`~central.commands.CommandService` to a real Mosquitto; a test client
subscribed to the node's command topic receives them and checks the signature like a node would.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import pytest
from nacl.public import PrivateKey
from sqlalchemy import select

from central.auth.roles import Role
from central.commands import CommandService
from central.config import CommandSettings
from central.store.camera_models import Camera, CameraSnapshot, DiscoveredDeviceRecord
from central.store.fleet_models import CommandRecord, EventRecord, Node
from tests.central.test_auth_support import ORIGIN, CentralEnv, central_env
from tests.central.test_cameras_support import jpeg
from tests.support.broker import Broker
from varta.contract import Channel, Command, decode, utcnow
from varta.mqtt import MqttClient
from varta.sealing import open_credentials, public_key_text
from varta.signing import load_or_create_signing_key, verify_command

__all__ = ["central_env"]

PASSWORD = "Zebra-Lantern-4471"  # the camera password that must appear nowhere at central
USERNAME = "onvif-admin"


@dataclass
class CameraApi:
    env: CentralEnv
    node_key: PrivateKey
    commands: CommandService
    received: asyncio.Queue[Command]
    tokens: dict[Role, str]

    def auth(self, role: Role) -> dict[str, str]:
        return {"authorization": f"Bearer {self.tokens[role]}"}

    async def next_command(self, timeout: float = 10.0) -> Command:
        return await asyncio.wait_for(self.received.get(), timeout)


async def seed(env: CentralEnv, node_key: PrivateKey) -> None:
    now = utcnow()
    async with env.db.session() as s:
        s.add_all(
            [
                Node(
                    node_id="maidan-01",
                    site="center",
                    name="Майдан",
                    online=True,
                    first_seen=now,
                    boot_id="b1",
                    box_public_key=public_key_text(node_key),
                ),
                Node(node_id="old-02", site="north", online=True, first_seen=now, boot_id="b1"),
                Camera(
                    node_id="maidan-01",
                    device_id="cam-1",
                    site="center",
                    name="Fountain",
                    position="north pole",
                    status="offline",
                    reason="unreachable",
                    detail="connection refused",
                    attrs={},
                    created_at=now,
                    info={
                        "model": "DS-2DE",
                        "manufacturer": "Hikvision",
                        "ptz": True,
                        "stream_uri": "rtsp://admin:hunter2@192.0.2.10:554/Streaming/101?password=hunter2&x=1",
                        "onvif_address": "http://192.0.2.10/onvif/device_service",
                    },
                ),
                Camera(
                    node_id="maidan-01",
                    device_id="cam-2",
                    site="center",
                    name="Bus stop",
                    position="",
                    status="online",
                    detail="",
                    attrs={"width": 1920, "height": 1080, "fps": 25.0},
                    created_at=now,
                ),
                DiscoveredDeviceRecord(
                    node_id="maidan-01",
                    site="center",
                    endpoint="urn:uuid:cam-new-1",
                    address="192.0.2.50",
                    xaddrs=["http://192.0.2.50/onvif/device_service"],
                    scopes=[],
                    types=[],
                    name="IPC",
                    hardware="HFW",
                    first_seen=now,
                    last_seen=now,
                    state="new",
                ),
                DiscoveredDeviceRecord(
                    node_id="old-02",
                    site="north",
                    endpoint="urn:uuid:cam-old-1",
                    address="192.0.2.60",
                    xaddrs=["http://192.0.2.60/onvif/device_service"],
                    scopes=[],
                    types=[],
                    name="",
                    hardware="",
                    first_seen=now,
                    last_seen=now,
                    state="new",
                ),
            ]
        )
        for i, (status, reason) in enumerate([("online", None), ("online", None), ("offline", "unreachable")]):
            for source in ("node", "central"):  # both record each change: the history shows it once
                s.add(
                    EventRecord(
                        node_id="maidan-01",
                        site="center",
                        ts=now - timedelta(minutes=30 - i * 10),
                        received_at=now,
                        source=source,
                        kind="camera.status",
                        severity="info",
                        device_id="cam-1",
                        message=f"change {i}",
                        data={"status": status, "reason": reason},
                    )
                )
        await s.commit()


@pytest.fixture
async def api(central_env: CentralEnv, broker: Broker, tmp_path: Path) -> AsyncIterator[CameraApi]:
    env = central_env
    node_key = PrivateKey.generate()
    await seed(env, node_key)
    tokens = {}
    for role in (Role.DISPATCHER, Role.OPERATOR, Role.ADMIN):
        await env.add_user(f"u-{role.value}", role)
        tokens[role] = await env.api_token(f"u-{role.value}")
    key = load_or_create_signing_key(tmp_path / "central-signing.key")
    central_mqtt = MqttClient(broker.settings(), client_id=f"central-{uuid.uuid4().hex[:6]}", clean_start=True)
    node_mqtt = MqttClient(broker.settings(), client_id=f"node-{uuid.uuid4().hex[:6]}", clean_start=True)
    node_mqtt.add_subscription("varta/v1/+/+/cmd", qos=1)
    received: asyncio.Queue[Command] = asyncio.Queue()

    async def listen() -> None:
        while True:
            for m in await node_mqtt.next_batch(100, timeout=1.0):
                received.put_nowait(decode(Channel.COMMAND, m.payload))  # type: ignore[arg-type]
                node_mqtt.ack_many([m])

    tasks = [asyncio.create_task(central_mqtt.run()), asyncio.create_task(node_mqtt.run())]
    await central_mqtt.wait_connected(10)
    await node_mqtt.wait_connected(10)
    tasks.append(asyncio.create_task(listen()))
    await asyncio.sleep(0.2)  # the subscription is made on connect
    commands = CommandService(central_mqtt, key, CommandSettings(), instance_id="central-test")
    env.app.state.services.commands = commands
    try:
        yield CameraApi(env, node_key, commands, received, tokens)
    finally:
        env.app.state.services.commands = None
        for t in tasks:
            t.cancel()
        for t in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await t
        await central_mqtt.stop()
        await node_mqtt.stop()


async def test_cameras_list_offline_first_and_filter_by_status(api: CameraApi) -> None:
    client = api.env.client
    r = await client.get("/api/v1/cameras", headers=api.auth(Role.DISPATCHER))
    assert r.status_code == 200
    assert [(c["device_id"], c["status"], c["reason"]) for c in r.json()] == [
        ("cam-1", "offline", "unreachable"),
        ("cam-2", "online", None),
    ]
    assert r.json()[1]["width"] == 1920 and r.json()[1]["fps"] == 25.0
    r = await client.get("/api/v1/cameras?status=online", headers=api.auth(Role.DISPATCHER))
    assert [c["device_id"] for c in r.json()] == ["cam-2"]
    r = await client.get("/api/v1/cameras?site=north", headers=api.auth(Role.DISPATCHER))
    assert r.json() == []


async def test_camera_detail_never_shows_credentials_in_addresses(api: CameraApi) -> None:
    r = await api.env.client.get("/api/v1/cameras/maidan-01/cam-1", headers=api.auth(Role.DISPATCHER))
    assert r.status_code == 200
    body = r.json()
    assert body["info"]["model"] == "DS-2DE" and body["info"]["ptz"] is True
    assert body["info"]["stream_uri"] == "rtsp://192.0.2.10:554/Streaming/101?password=***&x=1"
    assert "hunter2" not in r.text and "admin" not in r.text
    assert body["snapshot_at"] is None and body["snapshot_age_s"] is None
    r = await api.env.client.get("/api/v1/cameras/maidan-01/nope", headers=api.auth(Role.DISPATCHER))
    assert r.status_code == 404


async def test_status_history_shows_each_change_once_oldest_first(api: CameraApi) -> None:
    r = await api.env.client.get("/api/v1/cameras/maidan-01/cam-1/history", headers=api.auth(Role.DISPATCHER))
    assert r.status_code == 200
    assert [(c["status"], c["reason"]) for c in r.json()] == [("online", None), ("offline", "unreachable")]


async def test_snapshot_is_served_as_jpeg_with_a_validator(api: CameraApi) -> None:
    client = api.env.client
    r = await client.get("/api/v1/cameras/maidan-01/cam-2/snapshot", headers=api.auth(Role.DISPATCHER))
    assert r.status_code == 404
    picture = jpeg()
    async with api.env.db.session() as s:
        now = utcnow()
        s.add(
            CameraSnapshot(
                node_id="maidan-01",
                device_id="cam-2",
                taken_at=now,
                received_at=now,
                source="rtsp",
                purpose="periodic",
                content_type="image/jpeg",
                width=320,
                height=240,
                data=picture,
            )
        )
        await s.commit()
    r = await client.get("/api/v1/cameras/maidan-01/cam-2/snapshot", headers=api.auth(Role.DISPATCHER))
    assert r.status_code == 200
    assert r.headers["content-type"] == "image/jpeg" and r.content == picture
    assert "no-cache" in r.headers["cache-control"] and r.headers["etag"]
    again = await client.get(
        "/api/v1/cameras/maidan-01/cam-2/snapshot",
        headers={**api.auth(Role.DISPATCHER), "if-none-match": r.headers["etag"]},
    )
    assert again.status_code == 304 and again.content == b""


async def test_dispatcher_steers_ptz_with_signed_commands(api: CameraApi) -> None:
    client = api.env.client
    verify_key = api.commands.key.verify_key
    r = await client.post(
        "/api/v1/cameras/maidan-01/cam-1/ptz/move",
        json={"pan": -0.5, "tilt": 0.25},
        headers=api.auth(Role.DISPATCHER),
    )
    assert r.status_code == 202, r.text
    move = await api.next_command()
    assert move.command == "camera.ptz.move" and verify_command(move, [verify_key])
    assert move.params == {"device_id": "cam-1", "pan": -0.5, "tilt": 0.25, "zoom": 0.0, "timeout_s": 1.0}
    assert move.issued_by == "u-dispatcher"
    assert (move.expires_at - move.ts).total_seconds() <= 10  # a late move is worthless

    for path, body, command in (
        ("ptz/stop", None, "camera.ptz.stop"),
        ("ptz/presets/goto", {"token": "2"}, "camera.ptz.preset.goto"),
        ("ptz/presets", {"name": "Fountain"}, "camera.ptz.preset.set"),
        ("snapshot", None, "camera.snapshot"),
    ):
        r = await client.post(f"/api/v1/cameras/maidan-01/cam-1/{path}", json=body, headers=api.auth(Role.DISPATCHER))
        assert r.status_code == 202, (path, r.text)
        sent = await api.next_command()
        assert sent.command == command and sent.params["device_id"] == "cam-1"
        assert verify_command(sent, [verify_key])
    r = await client.post(
        "/api/v1/cameras/maidan-01/cam-1/ptz/move", json={"pan": 3}, headers=api.auth(Role.DISPATCHER)
    )
    assert r.status_code == 422
    r = await client.post("/api/v1/cameras/maidan-01/ghost/ptz/stop", headers=api.auth(Role.DISPATCHER))
    assert r.status_code == 404


async def test_adopt_seals_the_password_to_the_node_and_it_appears_nowhere_at_central(
    api: CameraApi, capfd: pytest.CaptureFixture[str]
) -> None:
    client = api.env.client
    responses: list[str] = []
    inbox = await client.get("/api/v1/discovery?state=new", headers=api.auth(Role.OPERATOR))
    item = next(i for i in inbox.json() if i["node_id"] == "maidan-01")
    assert item["node_can_seal"] is True

    r = await client.post(
        f"/api/v1/discovery/{item['id']}/adopt",
        json={
            "name": "Central fountain",
            "position": "pole 3, looks south",
            "latitude": 50.45,
            "longitude": 30.52,
            "username": USERNAME,
            "password": PASSWORD,
        },
        headers=api.auth(Role.OPERATOR),
    )
    responses.append(r.text)
    assert r.status_code == 202, r.text
    command = await api.next_command()

    # The node gets a signed camera.adopt whose sealed box only its private key opens.
    assert command.command == "camera.adopt" and command.node_id == "maidan-01"
    assert verify_command(command, [api.commands.key.verify_key])
    assert command.params["onvif_address"] == "http://192.0.2.50/onvif/device_service"
    assert command.params["endpoint"] == "urn:uuid:cam-new-1"
    credentials = open_credentials(api.node_key, command.params["sealed_credentials"])
    assert credentials.username == USERNAME and credentials.password.get_secret_value() == PASSWORD
    assert PASSWORD not in command.model_dump_json().replace(command.params["sealed_credentials"], "")
    device_id = command.params["device_id"]

    # Central now lists the camera, the inbox says adopted, the audit log says who (without the secret).
    r = await client.get(f"/api/v1/cameras/maidan-01/{device_id}", headers=api.auth(Role.DISPATCHER))
    responses.append(r.text)
    assert r.json()["name"] == "Central fountain" and r.json()["position"] == "pole 3, looks south"
    inbox = await client.get("/api/v1/discovery", headers=api.auth(Role.OPERATOR))
    responses.append(inbox.text)
    assert next(i for i in inbox.json() if i["id"] == item["id"])["state"] == "adopted"
    entries = await api.env.audit("camera.adopted")
    assert len(entries) == 1 and entries[0].actor == "u-operator" and entries[0].detail["credentials"] is True

    # New credentials later: sealed as well, audited.
    r = await client.post(
        f"/api/v1/cameras/maidan-01/{device_id}/credentials",
        json={"username": USERNAME, "password": PASSWORD + "-2"},
        headers=api.auth(Role.OPERATOR),
    )
    responses.append(r.text)
    assert r.status_code == 202, r.text
    command = await api.next_command()
    assert command.command == "camera.credentials.set"
    opened = open_credentials(api.node_key, command.params["sealed_credentials"])
    assert opened.password.get_secret_value() == PASSWORD + "-2"
    assert len(await api.env.audit("camera.credentials_changed")) == 1

    # A rejected body never echoes what was sent.
    r = await client.post(
        f"/api/v1/cameras/maidan-01/{device_id}/credentials",
        json={"username": USERNAME, "password": PASSWORD * 20},
        headers=api.auth(Role.OPERATOR),
    )
    responses.append(r.text)
    assert r.status_code == 422
    for path in ("/api/v1/nodes/maidan-01/commands", "/api/v1/audit"):
        r = await client.get(path, headers=api.auth(Role.ADMIN))
        assert r.status_code == 200
        responses.append(r.text)

    # The password is nowhere: not in any answer, not in the database, not in the logs.
    db_path = Path(str(api.env.config.database_url).split("///", 1)[1])
    with contextlib.closing(sqlite3.connect(db_path)) as conn:
        dump = "\n".join(conn.iterdump())
    logs = capfd.readouterr()
    for text in (*responses, dump, logs.out, logs.err):
        assert PASSWORD not in text
    assert "camera.adopt" in dump and "(sealed)" in dump  # the command is recorded, its sealed box redacted
    async with api.env.db.session() as s:
        records = (await s.scalars(select(CommandRecord))).all()
    assert {r.command for r in records} == {"camera.adopt", "camera.credentials.set"}
    assert all(r.params.get("sealed_credentials") == "(sealed)" for r in records)


async def test_a_node_without_a_sealing_key_gets_a_clear_409_and_nothing_is_sent(api: CameraApi) -> None:
    client = api.env.client
    inbox = await client.get("/api/v1/discovery?node_id=old-02", headers=api.auth(Role.OPERATOR))
    item = inbox.json()[0]
    assert item["node_can_seal"] is False
    r = await client.post(
        f"/api/v1/discovery/{item['id']}/adopt",
        json={"name": "Old", "username": USERNAME, "password": PASSWORD},
        headers=api.auth(Role.OPERATOR),
    )
    assert r.status_code == 409
    assert "box_public_key" in r.json()["detail"] and PASSWORD not in r.text
    await asyncio.sleep(0.5)
    assert api.received.empty()
    inbox = await client.get("/api/v1/discovery?node_id=old-02", headers=api.auth(Role.OPERATOR))
    assert inbox.json()[0]["state"] == "new"


async def test_ignore_and_unignore_keep_the_inbox_tidy(api: CameraApi) -> None:
    client = api.env.client
    inbox = await client.get("/api/v1/discovery?node_id=maidan-01", headers=api.auth(Role.OPERATOR))
    item_id = inbox.json()[0]["id"]
    r = await client.post(f"/api/v1/discovery/{item_id}/ignore", headers=api.auth(Role.OPERATOR))
    assert r.status_code == 200 and r.json()["state"] == "ignored"
    r = await client.get("/api/v1/discovery?state=new&node_id=maidan-01", headers=api.auth(Role.OPERATOR))
    assert r.json() == []
    r = await client.post(f"/api/v1/discovery/{item_id}/unignore", headers=api.auth(Role.OPERATOR))
    assert r.status_code == 200 and r.json()["state"] == "new"


async def test_reboot_and_time_sync_are_for_operators_and_reboot_is_audited(api: CameraApi) -> None:
    client = api.env.client
    r = await client.post("/api/v1/cameras/maidan-01/cam-1/reboot", headers=api.auth(Role.DISPATCHER))
    assert r.status_code == 403
    r = await client.post("/api/v1/cameras/maidan-01/cam-1/reboot", headers=api.auth(Role.OPERATOR))
    assert r.status_code == 202
    assert (await api.next_command()).command == "camera.reboot"
    r = await client.post("/api/v1/cameras/maidan-01/cam-1/time-sync", headers=api.auth(Role.OPERATOR))
    assert r.status_code == 202
    assert (await api.next_command()).command == "camera.time.sync"
    entries = await api.env.audit("camera.reboot")
    assert [(e.actor, e.target) for e in entries] == [("u-operator", "maidan-01/cam-1")]


async def test_session_callers_from_another_site_are_refused(api: CameraApi) -> None:
    token = await api.env.session_token("u-dispatcher")
    headers = {"cookie": f"varta_session={token}"}
    r = await api.env.client.post(
        "/api/v1/cameras/maidan-01/cam-1/ptz/stop", headers={**headers, "origin": "https://evil.example"}
    )
    assert r.status_code == 403
    r = await api.env.client.post("/api/v1/cameras/maidan-01/cam-1/ptz/stop", headers={**headers, **ORIGIN})
    assert r.status_code == 202


async def test_with_enrolment_required_passwords_wait_for_an_enrolled_key_then_open_with_the_nodes_key(
    api: CameraApi,
) -> None:
    client = api.env.client
    api.env.app.state.services.config.auth.require_enrolled_node_keys = True
    body = {"username": USERNAME, "password": PASSWORD}
    refused = await client.post(
        "/api/v1/cameras/maidan-01/cam-1/credentials", json=body, headers=api.auth(Role.OPERATOR)
    )
    assert refused.status_code == 409
    assert "enrol" in refused.json()["detail"] and PASSWORD not in refused.text
    await asyncio.sleep(0.3)
    assert api.received.empty()

    enrol = await client.put(
        "/api/v1/nodes/maidan-01/box-key",
        json={"public_key": public_key_text(api.node_key)},
        headers=api.auth(Role.ADMIN),
    )
    assert enrol.status_code == 200 and enrol.json()["enrolled"] is True
    sent = await client.post("/api/v1/cameras/maidan-01/cam-1/credentials", json=body, headers=api.auth(Role.OPERATOR))
    assert sent.status_code == 202
    command = await api.next_command()
    opened = open_credentials(api.node_key, command.params["sealed_credentials"])
    assert opened.password.get_secret_value() == PASSWORD

    revoked = await client.delete("/api/v1/nodes/maidan-01/box-key", headers=api.auth(Role.ADMIN))
    assert revoked.status_code == 200
    again = await client.post("/api/v1/cameras/maidan-01/cam-1/credentials", json=body, headers=api.auth(Role.OPERATOR))
    assert again.status_code == 409 and "revoked" in again.json()["detail"]
