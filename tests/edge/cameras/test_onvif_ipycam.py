"""ONVIF against a third-party simulator from PyPI (ipycam 1.3, run in its own network namespace)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from pydantic import SecretStr

from edge.cameras.onvif_client import OnvifCamera, OnvifError
from tests.support.ipycam import Ipycam, running_ipycam
from varta.contract import CameraReason
from varta.sealing import Credentials


@pytest.fixture(scope="module")
def ipycam(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Ipycam]:
    with running_ipycam(Path(tmp_path_factory.mktemp("ipycam"))) as cam:
        yield cam


async def test_describe_fills_identity_profiles_and_stream_uri(ipycam: Ipycam) -> None:
    creds = Credentials(username=ipycam.username, password=SecretStr(ipycam.password))
    async with OnvifCamera(ipycam.address, creds, timeout_s=10) as cam:
        d = await cam.describe()
    assert (d.manufacturer, d.model) == ("PythonCam", "VirtualCam-1")
    assert d.firmware == "1.3.0"
    assert d.serial == "PY-000001"
    assert {(p.token, p.encoding, p.width, p.height) for p in d.profiles} == {
        ("Profile_Main", "H264", 1920, 1080),
        ("Profile_Sub", "H264", 640, 360),
    }
    assert (d.main_profile, d.sub_profile) == ("Profile_Main", "Profile_Sub")
    assert d.stream_uri == f"rtsp://{ipycam.host}:8554/video_main"
    assert d.sub_stream_uri == f"rtsp://{ipycam.host}:8554/video_sub"
    assert d.snapshot_uri.endswith("/snapshot.jpg")
    assert d.ptz is True
    assert d.presets == []  # ipycam's GetPresets reply is malformed: tolerated, not fatal
    assert d.events is False  # ipycam has no event service
    assert d.clock_skew_s is not None and abs(d.clock_skew_s) < 5


async def test_wrong_password_is_auth_failed(ipycam: Ipycam) -> None:
    creds = Credentials(username=ipycam.username, password=SecretStr("not-the-password"))
    async with OnvifCamera(ipycam.address, creds, timeout_s=10) as cam:
        with pytest.raises(OnvifError) as caught:
            await cam.describe()
    assert caught.value.reason is CameraReason.AUTH_FAILED
    assert "not-the-password" not in str(caught.value)
