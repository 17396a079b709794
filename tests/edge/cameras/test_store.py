"""The node's camera store: survives restarts, is private to root, and a corrupt file never stops the node."""

from __future__ import annotations

import stat
from pathlib import Path

import orjson
import pytest
from pydantic import SecretStr

from edge.cameras.store import CameraStore, StoredCamera
from varta.contract import CameraThresholds
from varta.sealing import Credentials

PASSWORD = "s3cret-Pa55word!"


def camera(device_id: str = "cam-gate", **overrides: object) -> StoredCamera:
    data: dict[str, object] = {
        "device_id": device_id,
        "name": "Gate",
        "onvif_address": "http://192.0.2.10/onvif/device_service",
        "endpoint": "urn:uuid:1234",
        "stream_uri": "rtsp://192.0.2.10/main",
        "thresholds": CameraThresholds(frozen_after_s=20),
        "credentials": Credentials(username="viewer", password=SecretStr(PASSWORD)),
    }
    data.update(overrides)
    return StoredCamera.model_validate(data)


async def test_cameras_and_credentials_survive_a_restart_in_a_private_file(tmp_path: Path) -> None:
    path = tmp_path / "data" / "cameras.json"
    store = CameraStore(path)
    assert await store.load() == []
    await store.put(camera())
    await store.put(camera("cam-square", credentials=None, stream_uri=None))
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert not list(path.parent.glob(".*tmp"))

    again = CameraStore(path)
    loaded = {c.device_id: c for c in await again.load()}
    assert set(loaded) == {"cam-gate", "cam-square"}
    gate = loaded["cam-gate"]
    assert gate.credentials is not None and gate.credentials.password.get_secret_value() == PASSWORD
    assert gate.thresholds.frozen_after_s == 20 and gate.stream_uri == "rtsp://192.0.2.10/main"
    assert loaded["cam-square"].credentials is None

    assert await again.remove("cam-gate") is True and await again.remove("cam-gate") is False
    assert [c.device_id for c in await CameraStore(path).load()] == ["cam-square"]
    assert PASSWORD not in path.read_text()  # forgetting a camera forgets its password


def test_a_stored_camera_never_shows_its_credentials() -> None:
    cam = camera()
    for text in (repr(cam), str(cam), str(cam.public()), orjson.dumps(cam.public()).decode()):
        assert PASSWORD not in text and "viewer" not in text
    assert cam.public()["has_credentials"] is True


@pytest.mark.parametrize(
    "content",
    [b"{not json", b"[]", b'{"version": 1, "cameras": [{"device_id": "BAD ID"}]}', b'{"version": 99}', b"\xff\xfe"],
)
async def test_a_corrupt_store_is_moved_aside_with_a_log_line_and_the_node_starts_empty(
    tmp_path: Path, content: bytes
) -> None:
    path = tmp_path / "cameras.json"
    path.write_bytes(content)
    store = CameraStore(path)
    assert await store.load() == []
    assert not path.exists()
    [aside] = store.corrupt_files
    assert aside.parent == tmp_path and aside.name.startswith("cameras.json.corrupt-")
    assert aside.read_bytes() == content  # kept for a post-mortem
    await store.put(camera())  # and the store works again
    assert [c.device_id for c in await CameraStore(path).load()] == ["cam-gate"]


async def test_a_corrupt_store_holding_a_password_does_not_log_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "cameras.json"
    store = CameraStore(path)
    await store.put(camera())
    path.write_text(path.read_text().replace('"device_id": "cam-gate"', '"device_id": 12'))
    assert await CameraStore(path).load() == []
    captured = capsys.readouterr()
    assert "camera_store.corrupt" in captured.out + captured.err
    assert PASSWORD not in captured.out + captured.err
