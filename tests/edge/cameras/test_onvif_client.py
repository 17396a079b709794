"""The ONVIF client against the project's own ONVIF simulator: description, faults, auth, skew, PTZ, snapshots."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import cv2
import numpy as np
import pytest
from onvif import ONVIFCamera  # type: ignore[import-untyped]
from pydantic import SecretStr

from edge.cameras.onvif_client import OnvifCamera, OnvifError, parse_address, preload_wsdls
from edge.cameras.onvif_simulator import OnvifSimulator
from tests.support.ports import free_port
from varta.contract import CameraReason
from varta.sealing import Credentials

PASSWORD = "Very-Secret-pw-4711"
USER = "cam-operator"
CREDS = Credentials(username=USER, password=SecretStr(PASSWORD))


@pytest.fixture
async def sim() -> AsyncIterator[OnvifSimulator]:
    simulator = OnvifSimulator(username=USER, password=SecretStr(PASSWORD), rtsp_uri="rtsp://127.0.0.1:8554/cam")
    await simulator.start()
    try:
        yield simulator
    finally:
        await simulator.stop()


@pytest.fixture
async def cam(sim: OnvifSimulator) -> AsyncIterator[OnvifCamera]:
    camera = OnvifCamera(sim.address, CREDS, timeout_s=3.0)
    try:
        yield camera
    finally:
        await camera.close()


def _rss_kib() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


async def test_describe_reads_identity_profiles_uris_and_capabilities(cam: OnvifCamera) -> None:
    d = await cam.describe()
    assert (d.manufacturer, d.model, d.firmware, d.serial, d.hardware_id) == (
        "Varta",
        "SimCam-1",
        "1.0.0",
        "SIM-000001",
        "SIM-HW-1",
    )
    assert [(p.token, p.width, p.height, p.fps, p.role) for p in d.profiles] == [
        ("main", 1920, 1080, 25.0, "main"),
        ("sub", 640, 360, 10.0, "sub"),
    ]
    assert (d.main_profile, d.sub_profile) == ("main", "sub")
    assert d.stream_uri == "rtsp://127.0.0.1:8554/cam"
    assert d.snapshot_uri.endswith("/onvif/snapshot.jpg")
    assert d.ptz and d.events
    assert d.clock_skew_s is not None and abs(d.clock_skew_s) < 1.5


@pytest.mark.parametrize("listed_in", ["capabilities", "services", "both"])
async def test_ptz_is_found_whether_getcapabilities_or_getservices_lists_it(listed_in: str) -> None:
    async with (
        OnvifSimulator(username=USER, password=SecretStr(PASSWORD), ptz_listed_in=listed_in) as sim,
        OnvifCamera(sim.address, CREDS) as cam,
    ):
        assert (await cam.describe()).ptz is True


async def test_camera_without_ptz_and_events_says_so() -> None:
    async with (
        OnvifSimulator(username=USER, password=SecretStr(PASSWORD), ptz=False, events=False) as sim,
        OnvifCamera(sim.address, CREDS) as cam,
    ):
        d = await cam.describe()
        assert (d.ptz, d.events) == (False, False)
        with pytest.raises(OnvifError) as caught:
            await cam.ptz_stop()
        assert caught.value.reason is CameraReason.ONVIF_ERROR


@pytest.mark.parametrize("status", [400, 401])
async def test_wrong_password_is_auth_failed_without_leaking_it(sim: OnvifSimulator, status: int) -> None:
    sim.set_faults(auth_status=status)
    wrong = "Wrong-Password-0815"
    async with OnvifCamera(sim.address, Credentials(username=USER, password=SecretStr(wrong))) as cam:
        with pytest.raises(OnvifError) as caught:
            await cam.describe()
    assert caught.value.reason is CameraReason.AUTH_FAILED
    assert sim.counters["auth_failures"] >= 1
    for text in (str(caught.value), repr(caught.value), caught.value.detail):
        assert wrong not in text and PASSWORD not in text


async def test_slow_replies_are_timeout_within_the_bound(sim: OnvifSimulator) -> None:
    sim.set_faults(delay_s=5.0)
    async with OnvifCamera(sim.address, CREDS, timeout_s=0.5) as cam:
        started = time.monotonic()
        with pytest.raises(OnvifError) as caught:
            await cam.describe()
        elapsed = time.monotonic() - started
    assert caught.value.reason is CameraReason.TIMEOUT
    assert elapsed < 2.0


async def test_nothing_listening_is_unreachable() -> None:
    async with OnvifCamera(f"127.0.0.1:{free_port()}", CREDS, timeout_s=2.0) as cam:
        with pytest.raises(OnvifError) as caught:
            await cam.describe()
    assert caught.value.reason is CameraReason.UNREACHABLE


async def test_malformed_xml_is_refused_and_the_camera_recovers(sim: OnvifSimulator, cam: OnvifCamera) -> None:
    sim.set_faults(reply="malformed")
    with pytest.raises(OnvifError) as caught:
        await cam.describe()
    assert caught.value.reason is CameraReason.ONVIF_ERROR
    sim.set_faults(reply="normal")
    assert (await cam.describe()).model == "SimCam-1"


async def test_entity_bomb_is_refused_quickly_with_bounded_memory(sim: OnvifSimulator, cam: OnvifCamera) -> None:
    sim.set_faults(reply="entity_bomb")
    async with aiohttp.ClientSession() as http, http.post(sim.address, data=b"<x/>") as resp:
        raw = await resp.read()
    assert b"<!ENTITY lol9" in raw and b"&lol9;" in raw  # the reply really is a billion-laughs bomb
    before = _rss_kib()
    started = time.monotonic()
    for _ in range(3):
        with pytest.raises(OnvifError) as caught:
            await cam.describe()
        assert caught.value.reason is CameraReason.ONVIF_ERROR
        assert "DTD" in caught.value.detail
    assert time.monotonic() - started < 3.0
    assert _rss_kib() - before < 50 * 1024  # expanded, it would be ~3 GB


async def test_clock_skew_is_measured_and_corrected(sim: OnvifSimulator, cam: OnvifCamera) -> None:
    sim.set_clock_offset(3600)
    d = await cam.describe()  # authenticated calls succeed although the camera is an hour ahead
    assert d.clock_skew_s is not None and abs(d.clock_skew_s - 3600) < 2
    assert sim.counters.get("auth_failures", 0) == 0
    # Without the correction, the same camera refuses the same credentials:
    raw = ONVIFCamera("127.0.0.1", sim.port, USER, PASSWORD, adjust_time=False)
    try:
        dm = await raw.create_devicemgmt_service()
        with pytest.raises(Exception, match=r"(?i)not authorized"):
            await dm.GetDeviceInformation()
    finally:
        await raw.close()
    assert sim.counters["auth_failures"] == 1


async def test_time_sync_sets_the_camera_clock_and_auth_keeps_working(sim: OnvifSimulator, cam: OnvifCamera) -> None:
    sim.set_clock_offset(-7200)
    skew = (await cam.describe()).clock_skew_s
    assert skew is not None and abs(skew + 7200) < 2
    await cam.sync_time()
    assert sim.counters["time_set"] == 1
    assert abs(sim.state.clock_offset_s) < 2
    d = await cam.describe()
    assert d.clock_skew_s is not None and abs(d.clock_skew_s) < 2


async def test_reboot_reaches_the_camera(sim: OnvifSimulator, cam: OnvifCamera) -> None:
    assert "reboot" in (await cam.reboot()).lower()
    assert sim.counters["reboots"] == 1


async def test_ptz_move_stop_and_presets_round_trip(sim: OnvifSimulator, cam: OnvifCamera) -> None:
    await cam.ptz_move(0.5, -0.25, 0.0, timeout_s=10)
    await asyncio.sleep(0.3)
    moving = await cam.ptz_status()
    assert moving.moving and moving.pan is not None and moving.pan > 0.05
    await cam.ptz_stop()
    stopped = await cam.ptz_status()
    assert not stopped.moving
    token = await cam.set_preset("school gate")
    assert [(p.token, p.name) for p in await cam.presets()] == [(token, "school gate")]
    await cam.ptz_move(-1.0, 1.0, 0.5, timeout_s=10)
    await asyncio.sleep(0.2)
    await cam.ptz_stop()
    away = await cam.ptz_status()
    assert away.pan != pytest.approx(stopped.pan, abs=0.05)
    await cam.goto_preset(token)
    back = await cam.ptz_status()
    assert (back.pan, back.tilt, back.zoom) == pytest.approx((stopped.pan, stopped.tilt, stopped.zoom), abs=1e-3)
    assert sim.counters["op_ContinuousMove"] == 2 and sim.counters["op_GotoPreset"] == 1
    with pytest.raises(OnvifError) as caught:
        await cam.goto_preset("no-such-preset")
    assert caught.value.reason is CameraReason.ONVIF_ERROR


async def test_snapshot_is_a_jpeg_fetched_with_digest_auth(sim: OnvifSimulator, cam: OnvifCamera) -> None:
    jpeg = await cam.snapshot()
    image = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR)
    assert image is not None and image.shape == (360, 640, 3)
    assert sim.counters["snapshots_served"] == 1
    sim.config.password = SecretStr("changed-on-the-camera")
    with pytest.raises(OnvifError) as caught:
        await cam.snapshot()
    assert caught.value.reason is CameraReason.AUTH_FAILED


def test_address_forms() -> None:
    assert parse_address("10.0.0.5") == ("http://10.0.0.5/onvif/device_service", "10.0.0.5", 80)
    assert parse_address("cam.local:8080") == ("http://cam.local:8080/onvif/device_service", "cam.local", 8080)
    assert parse_address("https://10.0.0.5/onvif/dev") == ("https://10.0.0.5/onvif/dev", "10.0.0.5", 443)
    for bad in ("ftp://x/", "http://user:pw@10.0.0.5/", "http://"):
        with pytest.raises(ValueError):
            parse_address(bad)
    assert PASSWORD not in repr(OnvifCamera("10.0.0.5", CREDS))


async def test_credentials_never_reach_logs_or_errors(
    sim: OnvifSimulator, caplog: pytest.LogCaptureFixture, capfd: pytest.CaptureFixture[str]
) -> None:
    caplog.set_level(logging.DEBUG)
    errors: list[str] = []
    async with OnvifCamera(sim.address, CREDS, timeout_s=2.0) as cam:
        await cam.describe()
        await cam.snapshot()
        await cam.ptz_move(0.1, 0.1, 0.0, timeout_s=1)
        async with cam.events(pull_timeout_s=0.5) as events:
            sim.trigger("tamper", True)
            await asyncio.wait_for(anext(events), 10)
        for reply in ("malformed", "entity_bomb"):
            sim.set_faults(reply=reply)
            with pytest.raises(OnvifError) as caught:
                await cam.describe()
            errors.append(repr(caught.value))
        sim.set_faults(reply="normal")
    async with OnvifCamera(sim.address, Credentials(username=USER, password=SecretStr("Other-pw-1234"))) as bad:
        with pytest.raises(OnvifError) as caught:
            await bad.describe()
        errors.append(repr(caught.value))
    out, err = capfd.readouterr()
    everything = "\n".join([caplog.text, out, err, *errors])
    assert "onvif.described" in everything  # the logs were captured
    for secret in (PASSWORD, "Other-pw-1234", USER):
        assert secret not in everything


async def test_a_camera_clock_that_jumps_after_describe_is_followed(sim: OnvifSimulator, cam: OnvifCamera) -> None:
    assert abs((await cam.describe()).clock_skew_s or 0.0) < 2
    sim.set_clock_offset(-86_400 * 365)  # rebooted without a real-time clock: back to last year
    await cam.ptz_stop()  # refused once, clock measured again, re-signed, accepted
    assert sim.counters["auth_failures"] == 1
    assert sim.counters["op_Stop"] == 1
    skew = await cam.clock_skew()
    assert skew is not None and abs(skew + 86_400 * 365) < 2


async def test_a_never_ending_reply_is_cut_off_with_bounded_memory(sim: OnvifSimulator, cam: OnvifCamera) -> None:
    sim.set_faults(reply="huge")  # ~1 GB, chunked, no Content-Length
    before = _rss_kib()
    with pytest.raises(OnvifError) as caught:
        await cam.describe()
    assert caught.value.reason is CameraReason.ONVIF_ERROR
    assert "larger than" in caught.value.detail
    assert _rss_kib() - before < 50 * 1024


async def test_wsdls_can_be_loaded_before_the_first_camera_call() -> None:
    first = await preload_wsdls()
    again = await preload_wsdls()  # cached for the process
    assert again < 0.05 and again <= first
