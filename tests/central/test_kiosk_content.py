"""Kiosk content at central: the library (uploads checked by content), playlists and schedules validated as the
node would, manifests signed per kiosk and announced over the real broker, and the public download routes.

Commands go through the real :class:`~central.commands.CommandService` to a real Mosquitto; a client subscribed to
the nodes' command topic receives them, checks their signatures and fetches the manifest and the assets by the URLs
they carry (through the ASGI client), as a node would.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import io
import stat
import struct
import subprocess
import uuid
import zipfile
import zlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
from sqlalchemy import func, select

from central.auth.roles import Role
from central.commands import CommandService
from central.config import CommandSettings
from central.kiosks.alerts import KioskAlertDispatcher
from central.kiosks.library import ContentLibrary, LibraryLimits
from central.kiosks.publish import KioskPublisher
from central.store.fleet_models import CommandRecord, DeviceStateRecord, EventRecord, Node
from central.store.kiosk_models import KioskAsset, KioskManifest
from tests.central.test_auth_support import CentralEnv, central_env
from tests.central.test_cameras_support import jpeg
from tests.support.broker import Broker
from varta.contract import Channel, Command, CommandType, KioskContentParams, decode, utcnow
from varta.kiosk_manifest import Manifest, ManifestError, verify_manifest
from varta.mqtt import MqttClient
from varta.signing import load_or_create_signing_key, public_key_text, verify_command

__all__ = ["central_env"]

PUBLIC_URL = "https://varta.example.city"  # make_config's http.public_url
ROLES = (Role.OBSERVER, Role.DISPATCHER, Role.OPERATOR)


# --------------------------------------------------------------------------------------------------- test files


def png(width: int, height: int, rgb: tuple[int, int, int]) -> bytes:
    """A real PNG (truecolour, one colour), written by hand."""

    def chunk(tag: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF)

    rows = b"".join(b"\x00" + bytes(rgb) * width for _ in range(height))
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b"")


def bundle(files: dict[str, bytes], *, links: dict[str, str] | None = None) -> bytes:
    """A zip bundle; *links* adds symbolic-link entries (name → target)."""
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in files.items():
            zf.writestr(name, data)
        for name, target in (links or {}).items():
            info = zipfile.ZipInfo(name)
            info.external_attr = (stat.S_IFLNK | 0o777) << 16
            zf.writestr(info, target)
    return out.getvalue()


@pytest.fixture(scope="module")
def webm(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    """One second of VP8 test pattern in WebM, made by ffmpeg."""
    out = tmp_path_factory.mktemp("webm") / "clip.webm"
    subprocess.run(
        [
            "ffmpeg",
            "-nostdin",
            "-loglevel",
            "error",
            "-f",
            "lavfi",
            "-i",
            "testsrc=size=160x120:rate=10:duration=1",
            "-c:v",
            "libvpx",
            "-b:v",
            "100k",
            str(out),
        ],
        check=True,
        timeout=60,
    )
    return out.read_bytes()


SITE = b"<!doctype html><title>Afisha</title><p>City events</p>"
RED = png(40, 30, (200, 30, 30))
BLUE = png(20, 10, (30, 30, 200))
GOOD_BUNDLE = bundle({"index.html": SITE, "style.css": b"p{color:red}"})


# --------------------------------------------------------------------------------------------------- fixture


@dataclass
class KioskApi:
    env: CentralEnv
    commands: CommandService
    received: asyncio.Queue[Command]
    tokens: dict[Role, str]

    @property
    def client(self) -> httpx.AsyncClient:
        return self.env.client

    def auth(self, role: Role = Role.OPERATOR) -> dict[str, str]:
        return {"authorization": f"Bearer {self.tokens[role]}"}

    @property
    def public_key(self) -> str:
        return public_key_text(self.commands.key.verify_key)

    async def upload(
        self, data: bytes, filename: str = "file.bin", content_type: str = "application/octet-stream", **form: str
    ) -> httpx.Response:
        return await self.client.post(
            "/api/v1/kiosk/assets", files={"file": (filename, data, content_type)}, data=form, headers=self.auth()
        )

    async def asset(self, data: bytes, filename: str = "file.bin") -> str:
        r = await self.upload(data, filename)
        assert r.status_code in (200, 201), r.text
        return str(r.json()["sha256"])

    async def publish(self, **params: str) -> dict[str, dict[str, Any]]:
        r = await self.client.post("/api/v1/kiosk/publish", params=params, headers=self.auth())
        assert r.status_code == 200, r.text
        return {res["node_id"]: res for res in r.json()["results"]}

    async def commands_for(self, count: int) -> dict[str, Command]:
        """The next *count* commands, by node, each with a valid central signature."""
        got = {}
        for _ in range(count):
            command = await asyncio.wait_for(self.received.get(), 10)
            assert verify_command(command, [self.commands.key.verify_key])
            got[command.node_id] = command
        return got

    async def command_rows(self) -> int:
        async with self.env.db.session() as s:
            return int(await s.scalar(select(func.count()).select_from(CommandRecord)) or 0)


def kiosk_state(node_id: str, device_id: str) -> DeviceStateRecord:
    now = utcnow()
    return DeviceStateRecord(
        node_id=node_id,
        device_id=device_id,
        kind="kiosk",
        name="Screen",
        status="degraded",
        reason="no_content",
        detail="nothing to play yet",
        attrs={},
        boot_id="b1",
        seq=1,
        ts=now,
        status_since=now,
        updated_at=now,
    )


async def seed(env: CentralEnv) -> None:
    now = utcnow()
    async with env.db.session() as s:
        s.add_all(
            [
                Node(node_id="kiosk-01", site="center", name="Lobby", online=True, first_seen=now, boot_id="b1",
                     capabilities=["kiosk", "siren"]),
                Node(node_id="kiosk-02", site="north", name="Square", online=True, first_seen=now, boot_id="b1",
                     capabilities=["kiosk"]),
                Node(node_id="kiosk-03", site="north", name="Away", online=False, first_seen=now, boot_id="b1",
                     capabilities=["kiosk"]),
                Node(node_id="kiosk-04", site="north", name="New", online=True, first_seen=now, boot_id="b1",
                     capabilities=["kiosk"]),
                Node(node_id="cams-01", site="center", online=True, first_seen=now, boot_id="b1",
                     capabilities=["cameras"]),
                kiosk_state("kiosk-01", "screen-1"),
                kiosk_state("kiosk-02", "screen-2"),
                kiosk_state("kiosk-03", "screen-3"),
            ]
        )  # fmt: skip
        await s.commit()


@pytest.fixture
async def api(central_env: CentralEnv, broker: Broker, tmp_path: Path) -> AsyncIterator[KioskApi]:
    env = central_env
    await seed(env)
    tokens = {}
    for role in ROLES:
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
        yield KioskApi(env, commands, received, tokens)
    finally:
        env.app.state.services.commands = None
        for t in tasks:
            t.cancel()
        for t in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await t
        await central_mqtt.stop()
        await node_mqtt.stop()


# --------------------------------------------------------------------------------------------------- library


async def test_uploads_are_typed_by_content_and_stored_by_hash(api: KioskApi, webm: bytes) -> None:
    blobs = api.env.config.data_dir / "kiosk" / "blobs"

    r = await api.upload(RED, "poster.exe", "text/plain", name="Poster")  # name and type claimed by the client
    assert r.status_code == 201, r.text
    body = r.json()
    sha = hashlib.sha256(RED).hexdigest()
    assert (body["sha256"], body["kind"], body["mime"], body["size"]) == (sha, "image", "image/png", len(RED))
    assert body["info"] == {"width": 40, "height": 30}
    assert body["name"] == "Poster" and body["url"] == f"/api/v1/kiosk/content/{sha}"
    assert body["already_stored"] is False
    assert (blobs / sha).read_bytes() == RED

    again = await api.upload(RED, "other.png", "image/png")
    assert again.status_code == 200
    assert again.json()["sha256"] == sha and again.json()["already_stored"] is True
    assert again.json()["name"] == "Poster"

    r = await api.upload(webm, "C:\\clips\\clip.webm", "video/mp4")
    assert r.status_code == 201, r.text
    assert (r.json()["kind"], r.json()["mime"], r.json()["name"]) == ("video", "video/webm", "clip.webm")
    assert r.json()["sha256"] == hashlib.sha256(webm).hexdigest()

    r = await api.upload(GOOD_BUNDLE, "site.zip")
    assert r.status_code == 201, r.text
    assert (r.json()["kind"], r.json()["mime"], r.json()["info"]["files"]) == ("bundle", "application/zip", 2)

    photo = jpeg(64, 48)
    r = await api.upload(photo, "photo")
    assert (r.json()["mime"], r.json()["info"]) == ("image/jpeg", {"width": 64, "height": 48})

    async with api.env.db.session() as s:
        rows = (await s.scalars(select(KioskAsset.sha256).where(KioskAsset.sha256 == sha))).all()
    assert len(rows) == 1
    listed = await api.client.get("/api/v1/kiosk/assets", headers=api.auth())
    assert sorted(a["mime"] for a in listed.json()) == [
        "application/zip",
        "image/jpeg",
        "image/png",
        "video/webm",
    ]
    assert len(await api.env.audit("kiosk.asset_uploaded")) == 4
    assert sorted(p.name for p in blobs.iterdir()) == sorted(a["sha256"] for a in listed.json())
    assert list((blobs.parent / "tmp").iterdir()) == []


SVG = b'<?xml version="1.0"?>\n<svg xmlns="http://www.w3.org/2000/svg"><script>alert(1)</script></svg>'


@pytest.mark.parametrize(
    ("data", "filename", "reason"),
    [
        (SVG, "logo.svg", "svg"),
        (b"<svg onload='alert(1)'/>", "logo.png", "svg"),
        (b"just some words, not a picture at all", "photo.png", "unsupported_type"),
        (b"", "empty.png", "empty"),
        (bundle({"index.html": SITE, "../evil.html": b"x"}), "site.zip", "path_traversal"),
        (bundle({"index.html": SITE}, links={"passwd.html": "/etc/passwd"}), "site.zip", "symlink"),
        (bundle({"site/index.html": SITE}), "site.zip", "no_index"),
        (b"PK\x03\x04" + b"\x00" * 200, "broken.zip", "not_a_zip"),
    ],
)
async def test_refused_uploads_say_why_and_leave_nothing(
    api: KioskApi, data: bytes, filename: str, reason: str
) -> None:
    r = await api.upload(data, filename, "image/png")

    assert r.status_code == 422, r.text
    assert r.json()["detail"]["reason"] == reason
    assert r.json()["detail"]["message"]
    library = api.env.app.state.kiosk_library
    assert library.refused[reason] == 1
    kiosk_dir = api.env.config.data_dir / "kiosk"
    assert list((kiosk_dir / "blobs").iterdir()) == [] and list((kiosk_dir / "tmp").iterdir()) == []
    [entry] = await api.env.audit("kiosk.asset_refused")
    assert entry.success is False and entry.detail["reason"] == reason
    async with api.env.db.session() as s:
        assert await s.scalar(select(func.count()).select_from(KioskAsset)) == 0


async def test_oversize_and_malformed_uploads_are_refused(api: KioskApi, webm: bytes) -> None:
    root = api.env.config.data_dir / "kiosk"
    api.env.app.state.kiosk_library = ContentLibrary(root, LibraryLimits(max_image_bytes=1000, max_video_bytes=4000))
    big_image = RED + b"\x00" * 1000  # still a PNG by its first bytes

    r = await api.upload(big_image, "big.png")
    assert r.status_code == 422
    assert r.json()["detail"]["reason"] == "too_large" and r.json()["detail"]["kind"] == "image"
    assert r.json()["detail"]["message"] == "the file is over the limit of 1000 bytes for images"
    r = await api.upload(webm + b"\x00" * 4000, "big.webm")
    assert (r.status_code, r.json()["detail"]["reason"], r.json()["detail"]["kind"]) == (422, "too_large", "video")
    r = await api.upload(RED, "small.png")  # under the image cap
    assert r.status_code == 201

    r = await api.client.post("/api/v1/kiosk/assets", content=RED, headers={**api.auth(), "content-type": "image/png"})
    assert (r.status_code, r.json()["detail"]["reason"]) == (422, "bad_form")
    r = await api.client.post(
        "/api/v1/kiosk/assets", files={"picture": ("a.png", BLUE, "image/png")}, headers=api.auth()
    )
    assert (r.status_code, r.json()["detail"]["reason"]) == (422, "bad_form")
    r = await api.upload(BLUE, "b.png", name="bad\x07name")
    assert (r.status_code, r.json()["detail"]["reason"]) == (422, "bad_name")
    assert api.env.app.state.kiosk_library.refused == {"too_large": 2, "bad_form": 2, "bad_name": 1}
    assert [p.name for p in (root / "blobs").iterdir()] == [hashlib.sha256(RED).hexdigest()]
    assert list((root / "tmp").iterdir()) == []


# --------------------------------------------------------------------------------------------------- validation


async def test_playlists_are_validated_as_a_node_would(api: KioskApi, webm: bytes) -> None:
    red, clip = await api.asset(RED), await api.asset(webm)
    unknown = "ab" * 32
    url = "/api/v1/kiosk/playlists/day"

    r = await api.client.put(
        url, json={"name": "Day", "items": [{"asset": unknown, "duration_s": 5}]}, headers=api.auth()
    )
    assert (r.status_code, r.json()["detail"]["reason"]) == (422, "unknown_asset")
    assert unknown in r.json()["detail"]["message"]
    r = await api.client.put(url, json={"name": "Day", "items": [{"asset": red}]}, headers=api.auth())
    assert (r.status_code, r.json()["detail"]["reason"]) == (422, "invalid")  # an image needs a duration
    assert "duration_s" in r.json()["detail"]["message"]
    r = await api.client.put(
        url, json={"name": "Day", "items": [{"url": "http://example.com/", "duration_s": 5}]}, headers=api.auth()
    )
    assert r.status_code == 422  # plain http to the internet
    r = await api.client.put(url, json={"name": "Day", "items": [], "extra": 1}, headers=api.auth())
    assert r.status_code == 422

    items = [
        {"asset": red, "duration_s": 10, "title": "Poster"},
        {"asset": clip},  # a video plays to its end
        {"url": "https://city.example/news", "duration_s": 30},
    ]
    r = await api.client.put(url, json={"name": "Day", "items": items}, headers=api.auth())
    assert r.status_code == 200, r.text
    r = await api.client.get(url, headers=api.auth())
    assert r.json()["items"] == [
        {"asset": red, "url": None, "duration_s": 10, "title": "Poster"},
        {"asset": clip, "url": None, "duration_s": None, "title": None},
        {"asset": None, "url": "https://city.example/news", "duration_s": 30, "title": None},
    ]
    assert [e.target for e in await api.env.audit("kiosk.playlist_saved")] == ["day"]

    r = await api.client.delete(f"/api/v1/kiosk/assets/{red}", headers=api.auth())
    assert (r.status_code, r.json()["detail"]["reason"]) == (409, "in_use")
    assert "day" in r.json()["detail"]["message"]


async def test_schedules_are_validated(api: KioskApi) -> None:
    red = await api.asset(RED)
    r = await api.client.put(
        "/api/v1/kiosk/playlists/p1", json={"name": "P", "items": [{"asset": red, "duration_s": 5}]}, headers=api.auth()
    )
    assert r.status_code == 200
    ok: dict[str, Any] = {"playlist_id": "p1", "target": "all", "windows": [{"start": "08:00", "end": "20:00"}]}

    bad = [
        ({**ok, "windows": [{"start": "25:00", "end": "26:00"}]}, None),
        ({**ok, "windows": [{"start": "08:00", "end": "08:00"}]}, None),
        ({**ok, "weekdays": [7]}, "invalid"),
        ({**ok, "weekdays": []}, "invalid"),
        ({**ok, "priority": 5000}, "invalid"),
        ({**ok, "start_date": "2026-06-01", "end_date": "2026-05-01"}, "invalid"),
        ({**ok, "playlist_id": "nope"}, "unknown_playlist"),
        ({**ok, "target": "kiosk"}, None),  # a kiosk target names the kiosk
        ({**ok, "target": "kiosk", "node_id": "ghost-9"}, "unknown_kiosk"),
        ({**ok, "group": "lobby"}, None),  # 'all' names nobody
        ({**ok, "colour": "red"}, None),
    ]
    for body, reason in bad:
        r = await api.client.post("/api/v1/kiosk/schedules", json=body, headers=api.auth())
        assert r.status_code == 422, body
        if reason is not None:
            assert r.json()["detail"]["reason"] == reason, body

    r = await api.client.post(
        "/api/v1/kiosk/schedules",
        json={**ok, "target": "group", "group": "lobby", "weekdays": [4, 0]},
        headers=api.auth(),
    )
    assert r.status_code == 201, r.text
    created = r.json()
    assert (created["target"], created["group"], created["node_id"], created["weekdays"]) == (
        "group",
        "lobby",
        None,
        [0, 4],
    )
    listed = await api.client.get("/api/v1/kiosk/schedules", headers=api.auth())
    assert [s["id"] for s in listed.json()] == [created["id"]]
    r = await api.client.delete("/api/v1/kiosk/playlists/p1", headers=api.auth())
    assert (r.status_code, r.json()["detail"]["reason"]) == (409, "in_use")
    r = await api.client.delete(f"/api/v1/kiosk/schedules/{created['id']}", headers=api.auth())
    assert r.status_code == 204
    r = await api.client.delete("/api/v1/kiosk/playlists/p1", headers=api.auth())
    assert r.status_code == 204
    assert len(await api.env.audit("kiosk.schedule_created")) == 1
    assert len(await api.env.audit("kiosk.schedule_deleted")) == 1

    r = await api.client.put(
        "/api/v1/kiosk/groups/lobby", json={"node_ids": ["kiosk-01", "ghost-9"]}, headers=api.auth()
    )
    assert (r.status_code, r.json()["detail"]["reason"]) == (422, "unknown_kiosk")


# --------------------------------------------------------------------------------------------------- publishing


async def _library(api: KioskApi, webm: bytes) -> dict[str, str]:
    """Two playlists for two kiosks, one unused bundle; kiosk-01 is in group 'lobby'."""
    shas = {"red": await api.asset(RED), "blue": await api.asset(BLUE), "clip": await api.asset(webm)}
    shas["site"] = await api.asset(GOOD_BUNDLE)
    playlists = {
        "lobby-day": [{"asset": shas["red"], "duration_s": 10}, {"asset": shas["clip"]}],
        "night": [{"asset": shas["blue"], "duration_s": 5}],
        "unused": [{"asset": shas["site"], "duration_s": 30}],
    }
    for playlist_id, items in playlists.items():
        r = await api.client.put(
            f"/api/v1/kiosk/playlists/{playlist_id}", json={"name": playlist_id, "items": items}, headers=api.auth()
        )
        assert r.status_code == 200, r.text
    schedules = [
        {"playlist_id": "lobby-day", "target": "group", "group": "lobby", "priority": 10,
         "windows": [{"start": "08:00", "end": "20:00"}]},
        {"playlist_id": "night", "target": "all", "windows": [{"start": "20:00", "end": "08:00"}]},
    ]  # fmt: skip
    for body in schedules:
        r = await api.client.post("/api/v1/kiosk/schedules", json=body, headers=api.auth())
        assert r.status_code == 201, r.text
    r = await api.client.put("/api/v1/kiosk/groups/lobby", json={"node_ids": ["kiosk-01"]}, headers=api.auth())
    assert r.status_code == 200 and r.json() == {"group": "lobby", "node_ids": ["kiosk-01"]}
    return shas


async def _fetch_as_node(api: KioskApi, command: Command) -> tuple[KioskContentParams, Manifest]:
    """What a node does with kiosk.content.update: fetch the manifest, check its hash and signature, fetch assets."""
    assert command.command == CommandType.KIOSK_CONTENT_UPDATE.value
    params = KioskContentParams.model_validate(command.params)
    assert params.manifest_url == f"{PUBLIC_URL}/api/v1/kiosk/manifests/{command.node_id}/{params.version}"
    assert params.content_base_url == f"{PUBLIC_URL}/api/v1/kiosk/content"
    r = await api.client.get(urlsplit(params.manifest_url).path)  # anonymous, like a node
    assert r.status_code == 200 and r.headers["content-type"] == "application/json"
    assert hashlib.sha256(r.content).hexdigest() == params.manifest_sha256
    manifest = verify_manifest(r.content, [api.public_key], kiosk_id=command.node_id)
    assert manifest.version == params.version and manifest.kiosk_ids == (command.node_id,)
    assert manifest.timezone == "Europe/Kyiv"
    for asset in manifest.assets:
        got = await api.client.get(urlsplit(f"{params.content_base_url}/{asset.sha256}").path)
        assert got.status_code == 200 and got.headers["content-type"] == asset.mime
        assert hashlib.sha256(got.content).hexdigest() == asset.sha256 and len(got.content) == asset.size
    return params, manifest


async def test_publish_signs_per_kiosk_manifests_and_skips_unchanged_ones(api: KioskApi, webm: bytes) -> None:
    shas = await _library(api, webm)

    results = await api.publish()

    assert {n: (r["status"], r["version"]) for n, r in results.items()} == {
        "kiosk-01": ("published", 1),
        "kiosk-02": ("published", 1),
        "kiosk-03": ("unreachable", 1),  # offline: issued, sent when it is back
        "kiosk-04": ("unreachable", None),  # has not reported its kiosk device
    }
    assert "offline" in results["kiosk-03"]["detail"]
    commands = await api.commands_for(2)
    assert commands["kiosk-01"].params["device_id"] == "screen-1"
    assert commands["kiosk-01"].request_id == results["kiosk-01"]["request_id"]
    _, lobby = await _fetch_as_node(api, commands["kiosk-01"])
    _, square = await _fetch_as_node(api, commands["kiosk-02"])
    assert {a.sha256 for a in lobby.assets} == {shas["red"], shas["clip"], shas["blue"]}
    assert [p.id for p in lobby.playlists] == ["lobby-day", "night"]
    assert [(s.playlist_id, s.priority) for s in lobby.schedules] == [("lobby-day", 10), ("night", 0)]
    assert {a.sha256 for a in square.assets} == {shas["blue"]}  # not in the lobby group
    assert [p.id for p in square.playlists] == ["night"]
    with pytest.raises(ManifestError, match="wrong_target"):  # kiosk-01's manifest is no use to kiosk-02
        verify_manifest(
            (await api.client.get("/api/v1/kiosk/manifests/kiosk-01/1")).content, [api.public_key], kiosk_id="kiosk-02"
        )

    before = await api.command_rows()
    again = await api.publish()
    assert {n: (r["status"], r["version"]) for n, r in again.items() if r["status"] != "unreachable"} == {
        "kiosk-01": ("unchanged", 1),
        "kiosk-02": ("unchanged", 1),
    }
    assert await api.command_rows() == before  # nothing sent

    r = await api.client.put(
        "/api/v1/kiosk/playlists/lobby-day",
        json={"name": "Lobby", "items": [{"asset": shas["red"], "duration_s": 20}]},
        headers=api.auth(),
    )
    assert r.status_code == 200
    r = await api.client.delete(f"/api/v1/kiosk/assets/{shas['clip']}", headers=api.auth())
    assert (r.status_code, r.json()["detail"]["reason"]) == (409, "published")  # kiosk-01 still plays it
    assert "kiosk-01" in r.json()["detail"]["message"]
    changed = await api.publish()
    assert (changed["kiosk-01"]["status"], changed["kiosk-01"]["version"]) == ("published", 2)
    assert (changed["kiosk-02"]["status"], changed["kiosk-02"]["version"]) == ("unchanged", 1)
    _, lobby2 = await _fetch_as_node(api, (await api.commands_for(1))["kiosk-01"])
    assert {a.sha256 for a in lobby2.assets} == {shas["red"], shas["blue"]}  # the clip is no longer played

    forced = await api.publish(node_id="kiosk-02", force="true")
    assert list(forced) == ["kiosk-02"] and (forced["kiosk-02"]["status"], forced["kiosk-02"]["version"]) == (
        "published",
        2,
    )
    await api.commands_for(1)
    audits = await api.env.audit("kiosk.published")
    assert len(audits) == 4 and audits[-1].detail["published"] == {"kiosk-02": 2}

    r = await api.client.post("/api/v1/kiosk/publish", params={"node_id": "cams-01"}, headers=api.auth())
    assert r.status_code == 404

    # The clip is in no playlist and in no kiosk's newest manifest now (v1 of kiosk-01 is superseded): it may go.
    r = await api.client.delete(f"/api/v1/kiosk/assets/{shas['clip']}", headers=api.auth())
    assert r.status_code == 204
    assert [e.target for e in await api.env.audit("kiosk.asset_deleted")] == [shas["clip"]]
    r = await api.client.delete(f"/api/v1/kiosk/assets/{shas['site']}", headers=api.auth())
    assert (r.status_code, r.json()["detail"]["reason"]) == (409, "in_use")
    r = await api.client.delete("/api/v1/kiosk/playlists/unused", headers=api.auth())
    assert r.status_code == 204
    r = await api.client.delete(f"/api/v1/kiosk/assets/{shas['site']}", headers=api.auth())
    assert r.status_code == 204
    assert (await api.client.get(f"/api/v1/kiosk/content/{shas['site']}")).status_code == 404
    assert not (api.env.config.data_dir / "kiosk" / "blobs" / shas["site"]).exists()
    r = await api.client.delete(f"/api/v1/kiosk/assets/{shas['blue']}", headers=api.auth())
    assert r.status_code == 409  # still used by 'night'


async def test_a_manifest_the_broker_never_got_is_sent_again_with_the_same_version(api: KioskApi) -> None:
    red = await api.asset(RED)
    await api.client.put(
        "/api/v1/kiosk/playlists/p", json={"name": "P", "items": [{"asset": red, "duration_s": 5}]}, headers=api.auth()
    )
    r = await api.client.put(
        "/api/v1/kiosk/kiosks/kiosk-02/default-playlist", json={"playlist_id": "p"}, headers=api.auth()
    )
    assert r.status_code == 200 and r.json() == {"node_id": "kiosk-02", "default_playlist_id": "p"}
    await api.publish(node_id="kiosk-02")
    first = (await api.commands_for(1))["kiosk-02"]
    async with api.env.db.session() as s:  # as if the broker had been down after the manifest was issued
        row = await s.get(KioskManifest, ("kiosk-02", 1))
        assert row is not None and row.sent_at is not None
        row.sent_at = None
        await s.commit()

    results = await api.publish(node_id="kiosk-02")

    assert (results["kiosk-02"]["status"], results["kiosk-02"]["version"]) == ("published", 1)
    resent = (await api.commands_for(1))["kiosk-02"]
    assert resent.params["manifest_sha256"] == first.params["manifest_sha256"]
    assert resent.request_id != first.request_id


async def test_kiosks_show_state_versions_and_proofs_and_versions_pass_the_confirmed_one(api: KioskApi) -> None:
    red = await api.asset(RED)
    await api.client.put(
        "/api/v1/kiosk/playlists/p", json={"name": "P", "items": [{"asset": red, "duration_s": 5}]}, headers=api.auth()
    )
    await api.client.put(
        "/api/v1/kiosk/kiosks/kiosk-01/default-playlist", json={"playlist_id": "p"}, headers=api.auth()
    )
    await api.client.put("/api/v1/kiosk/groups/lobby", json={"node_ids": ["kiosk-01"]}, headers=api.auth())
    now = utcnow()

    def event(node_id: str, kind: str, data: dict[str, Any], minutes: int) -> EventRecord:
        return EventRecord(
            node_id=node_id,
            site="center",
            ts=now - timedelta(minutes=minutes),
            received_at=now,
            source="node",
            kind=kind,
            severity="info",
            device_id="screen-1",
            message=kind,
            data=data,
        )

    async with api.env.db.session() as s:
        s.add_all(
            [
                event("kiosk-01", "kiosk.content_installed", {"version": 6}, 30),
                event("kiosk-01", "kiosk.content_installed", {"version": 7}, 20),  # e.g. before central's db was reset
                event("kiosk-01", "kiosk.takeover_shown", {"alert_id": "siren:s1", "screenshot_sha256": "ab"}, 10),
                event("kiosk-01", "kiosk.content_refused", {"reason": "bundle", "code": "symlink"}, 5),
                event("kiosk-02", "kiosk.takeover_shown", {"alert_id": "alert-1"}, 1),
            ]
        )
        await s.commit()

    results = await api.publish(node_id="kiosk-01")
    assert results["kiosk-01"]["version"] == 8  # newer than anything the node has
    await api.commands_for(1)

    r = await api.client.get("/api/v1/kiosk/kiosks", headers=api.auth(Role.OBSERVER))
    assert r.status_code == 200
    kiosks = {k["node_id"]: k for k in r.json()}
    assert sorted(kiosks) == ["kiosk-01", "kiosk-02", "kiosk-03", "kiosk-04"]  # not cams-01
    one = kiosks["kiosk-01"]
    assert (one["name"], one["site"], one["device_id"], one["status"], one["reason"]) == (
        "Lobby",
        "center",
        "screen-1",
        "degraded",
        "no_content",
    )
    assert one["groups"] == ["lobby"] and one["default_playlist_id"] == "p"
    assert (one["published_version"], one["confirmed_version"]) == (8, 7)
    assert one["sent_at"] is not None
    assert one["last_takeover"]["data"]["alert_id"] == "siren:s1"
    assert one["last_refusal"]["data"]["code"] == "symlink"
    four = kiosks["kiosk-04"]
    assert (four["device_id"], four["status"], four["published_version"], four["last_takeover"]) == (
        None,
        "unknown",
        None,
        None,
    )
    assert kiosks["kiosk-02"]["last_takeover"]["data"]["alert_id"] == "alert-1"


# --------------------------------------------------------------------------------------------------- public routes


async def test_content_is_public_immutable_and_supports_ranges(api: KioskApi, webm: bytes) -> None:
    sha = await api.asset(webm)
    anonymous = api.client

    whole = await anonymous.get(f"/api/v1/kiosk/content/{sha}")
    assert whole.status_code == 200 and whole.content == webm
    assert whole.headers["content-type"] == "video/webm"
    assert whole.headers["cache-control"] == "public, max-age=31536000, immutable"
    assert whole.headers["accept-ranges"] == "bytes"

    part = await anonymous.get(f"/api/v1/kiosk/content/{sha}", headers={"range": "bytes=100-"})
    assert part.status_code == 206
    assert part.content == webm[100:]
    assert part.headers["content-range"] == f"bytes 100-{len(webm) - 1}/{len(webm)}"

    assert (await anonymous.get(f"/api/v1/kiosk/content/{'0' * 64}")).status_code == 404
    assert (await anonymous.get("/api/v1/kiosk/content/not-a-hash")).status_code == 422
    assert (await anonymous.get("/api/v1/kiosk/manifests/kiosk-01/1")).status_code == 404


# --------------------------------------------------------------------------------------------------- roles, preview


async def test_roles(api: KioskApi) -> None:
    client = api.client
    r = await client.post(
        "/api/v1/kiosk/assets", files={"file": ("a.png", RED, "image/png")}, headers=api.auth(Role.DISPATCHER)
    )
    assert r.status_code == 403
    assert not (api.env.config.data_dir / "kiosk").exists()  # refused before a byte of the body was stored
    assert (await client.get("/api/v1/kiosk/assets", headers=api.auth(Role.DISPATCHER))).status_code == 403
    assert (await client.post("/api/v1/kiosk/publish", headers=api.auth(Role.DISPATCHER))).status_code == 403
    assert (await client.get("/api/v1/kiosk/playlists", headers=api.auth(Role.OBSERVER))).status_code == 403
    r = await client.get("/api/v1/kiosk/kiosks", headers=api.auth(Role.OBSERVER))
    assert r.status_code == 200 and len(r.json()) == 4
    r = await client.get("/api/v1/kiosk/preview", params={"node_id": "kiosk-01"}, headers=api.auth(Role.OBSERVER))
    assert r.status_code == 200 and r.json()["source"] == "blank"
    assert (await client.get("/api/v1/kiosk/kiosks")).status_code == 401


async def test_publish_needs_the_command_connection(central_env: CentralEnv) -> None:
    await central_env.add_user("op", Role.OPERATOR)
    token = await central_env.api_token("op")

    r = await central_env.client.post("/api/v1/kiosk/publish", headers={"authorization": f"Bearer {token}"})

    assert r.status_code == 503


async def test_preview_follows_the_schedule_windows(api: KioskApi) -> None:
    red, blue = await api.asset(RED), await api.asset(BLUE)
    for playlist_id, sha in (("morning", red), ("evening", blue), ("idle", red)):
        r = await api.client.put(
            f"/api/v1/kiosk/playlists/{playlist_id}",
            json={"name": playlist_id.title(), "items": [{"asset": sha, "duration_s": 5}]},
            headers=api.auth(),
        )
        assert r.status_code == 200
    ids = {}
    for playlist_id, start, end in (("morning", "06:00", "12:00"), ("evening", "18:00", "23:00")):
        r = await api.client.post(
            "/api/v1/kiosk/schedules",
            json={"playlist_id": playlist_id, "target": "kiosk", "node_id": "kiosk-02",
                  "windows": [{"start": start, "end": end}]},
            headers=api.auth(),
        )  # fmt: skip
        ids[playlist_id] = r.json()["id"]
    await api.client.put(
        "/api/v1/kiosk/kiosks/kiosk-02/default-playlist", json={"playlist_id": "idle"}, headers=api.auth()
    )

    async def preview(at: str, node_id: str = "kiosk-02") -> dict[str, Any]:
        r = await api.client.get(
            "/api/v1/kiosk/preview", params={"node_id": node_id, "at": at}, headers=api.auth(Role.OBSERVER)
        )
        assert r.status_code == 200, r.text
        return dict(r.json())

    morning = await preview("2026-05-04T08:00:00+03:00")
    assert (morning["source"], morning["playlist"]["id"], morning["schedule_id"]) == (
        "schedule",
        "morning",
        ids["morning"],
    )
    assert morning["playlist"]["items"][0]["asset"] == red and morning["playlist"]["items"][0]["kind"] == "image"
    assert morning["next_change"] == "2026-05-04T09:00:00Z"  # 12:00 in Kyiv (EEST, UTC+3)
    assert morning["local_time"].startswith("2026-05-04T08:00:00")
    evening = await preview("2026-05-04T16:30:00Z")  # 19:30 in Kyiv
    assert (evening["source"], evening["playlist"]["id"], evening["schedule_id"]) == (
        "schedule",
        "evening",
        ids["evening"],
    )
    assert evening["playlist"]["items"][0]["asset"] == blue
    afternoon = await preview("2026-05-04T14:00:00+03:00")
    assert (afternoon["source"], afternoon["playlist"]["id"], afternoon["schedule_id"]) == ("default", "idle", None)
    other = await preview("2026-05-04T08:00:00+03:00", node_id="kiosk-01")  # the schedules target kiosk-02 only
    assert (other["source"], other["playlist"]) == ("blank", None)

    r = await api.client.get(
        "/api/v1/kiosk/preview", params={"node_id": "kiosk-02", "at": "2026-05-04T08:00:00"}, headers=api.auth()
    )
    assert (r.status_code, r.json()["detail"]["reason"]) == (422, "naive_time")
    r = await api.client.get("/api/v1/kiosk/preview", params={"node_id": "ghost-9"}, headers=api.auth())
    assert r.status_code == 404


async def test_content_issued_while_a_kiosk_was_offline_goes_out_when_it_is_back(api: KioskApi, webm: bytes) -> None:
    await _library(api, webm)
    results = await api.publish()
    assert results["kiosk-03"]["status"] == "unreachable" and "when the node is back" in results["kiosk-03"]["detail"]
    await api.commands_for(2)  # kiosk-01 and kiosk-02 got theirs
    publisher = get_publisher_of(api)
    dispatcher = KioskAlertDispatcher(
        api.env.config, api.env.db, api.env.app.state.services.bus, api.commands, publisher=publisher
    )
    await dispatcher.sync_once()
    assert await content_updates(api) == {}  # kiosk-03 is still offline; the others have theirs (sent just now)

    async with api.env.db.session() as s:
        node = await s.get(Node, "kiosk-03")
        assert node is not None
        node.online = True
        await s.commit()
    await dispatcher.sync_once()
    got = await content_updates(api)
    assert list(got) == ["kiosk-03"]
    params, manifest = await _fetch_as_node(api, got["kiosk-03"])
    assert params.version == 1 and manifest.kiosk_ids == ("kiosk-03",)
    await dispatcher.sync_once()  # sent a moment ago: not again until redeliver_after_s has passed
    assert await content_updates(api) == {}
    assert dispatcher.redelivered == 1


async def content_updates(api: KioskApi) -> dict[str, Command]:
    """The kiosk.content.update commands that arrive within half a second (other commands are dropped)."""
    await asyncio.sleep(0.5)
    got = {}
    while not api.received.empty():
        command = api.received.get_nowait()
        if command.command == "kiosk.content.update":
            got[command.node_id] = command
    return got


def get_publisher_of(api: KioskApi) -> KioskPublisher:
    publisher = getattr(api.env.app.state, "kiosk_publisher", None)
    return publisher if isinstance(publisher, KioskPublisher) else KioskPublisher(api.env.config, api.env.db)
