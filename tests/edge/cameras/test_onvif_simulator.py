"""The ONVIF simulator itself: HTTP control endpoint, running in a thread, the command line, SOAP hygiene."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr

from edge.cameras.onvif_client import OnvifCamera
from edge.cameras.onvif_simulator import OnvifSimulator, run_in_thread
from edge.cameras.onvif_simulator.soap import NS
from tests.support.ports import free_port, wait_for_port
from varta.sealing import Credentials

ROOT = Path(__file__).resolve().parents[3]
TIME_REQUEST = (
    f'<s:Envelope xmlns:s="{NS["s"]}"><s:Body><GetSystemDateAndTime xmlns="{NS["tds"]}"/></s:Body></s:Envelope>'
).encode()
INFO_REQUEST = (
    f'<s:Envelope xmlns:s="{NS["s"]}"><s:Body><GetDeviceInformation xmlns="{NS["tds"]}"/></s:Body></s:Envelope>'
).encode()


def _post(url: str, body: bytes, content_type: str = "application/soap+xml") -> tuple[int, bytes]:
    request = urllib.request.Request(url, data=body, headers={"Content-Type": content_type}, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=10) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as err:
        return err.code, err.read()


def _json(url: str, payload: dict[str, Any] | None = None) -> Any:
    if payload is None:
        with urllib.request.urlopen(url, timeout=10) as resp:
            return json.load(resp)
    status, body = _post(url, json.dumps(payload).encode(), "application/json")
    assert status == 200, body
    return json.loads(body)


def test_control_endpoint_switches_faults_and_reports_state() -> None:
    with run_in_thread(password=SecretStr("ctl-pw")) as sim:
        base = sim.simulator.base_url
        assert _json(f"{base}/control/faults", {"delay_s": 0.2, "reply": "malformed"})["reply"] == "malformed"
        status, body = _post(sim.address, TIME_REQUEST)
        assert status == 200 and body.rstrip().endswith(b"<tt:DateTimeType>Man")  # cut off mid-element
        _json(f"{base}/control/faults", {"delay_s": 0, "reply": "normal"})
        assert _json(f"{base}/control/clock", {"offset_s": 3600}) == {"clock_offset_s": 3600}
        assert _json(f"{base}/control/event", {"kind": "motion"}) == {"delivered_to": 0}
        state = _json(f"{base}/control/state")
        assert state["clock_offset_s"] == 3600
        assert state["counters"]["events_motion"] == 1
        assert state["counters"]["requests"] == 1
        assert sim.call(lambda s: s.faults.reply) == "normal"
        status, _ = _post(f"{base}/control/faults", b'{"reply": "bogus"}', "application/json")
        assert status == 400


def test_soap_hygiene_auth_and_unknown_operations() -> None:
    with run_in_thread(password=SecretStr("hyg-pw")) as sim:
        status, body = _post(sim.address, TIME_REQUEST)
        assert status == 200 and b"GetSystemDateAndTimeResponse" in body  # answered without credentials
        status, body = _post(sim.address, INFO_REQUEST)
        assert status == 400 and b"ter:NotAuthorized" in body
        bomb = b'<?xml version="1.0"?><!DOCTYPE x [<!ENTITY a "aaaa">]><x>&a;</x>'
        status, body = _post(sim.address, bomb)
        assert status == 400 and b"s:Fault" in body
        status, body = _post(sim.address, b"not xml at all")
        assert status == 400 and b"s:Fault" in body
        assert sim.call(lambda s: s.counters["auth_failures"]) == 1


def test_running_in_a_thread_serves_the_async_client() -> None:
    import asyncio

    creds = Credentials(username="admin", password=SecretStr("thr-pw"))
    with run_in_thread(password=creds.password, model="ThreadCam") as sim:

        async def describe() -> str:
            async with OnvifCamera(sim.address, creds) as cam:
                return (await cam.describe()).model

        assert asyncio.run(describe()) == "ThreadCam"


def test_command_line_serves_until_sigterm(tmp_path: Path) -> None:
    port = free_port()
    secret = tmp_path / "password"
    secret.write_text("cli-pw\n")
    proc = subprocess.Popen(
        [sys.executable, "-m", "edge.cameras.onvif_simulator", "--port", str(port), "--password-file", str(secret)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        wait_for_port(port, timeout=30)
        status, body = _post(f"http://127.0.0.1:{port}/onvif/device_service", TIME_REQUEST)
        assert status == 200 and b"UTCDateTime" in body
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=15)
        assert proc.returncode == 0
        assert f"http://127.0.0.1:{port}/onvif/device_service".encode() in out
        assert b"cli-pw" not in out
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(5)


async def test_simulator_validates_its_configuration() -> None:
    with pytest.raises(ValueError):
        OnvifSimulator(max_subscription_s=-1)
    with pytest.raises(ValueError):
        OnvifSimulator(port=70000)
    assert OnvifSimulator(password="plain").config.password.get_secret_value() == "plain"


async def test_onvif_zeep_async_reads_scopes_and_event_properties() -> None:
    from onvif import ONVIFCamera  # type: ignore[import-untyped]

    async with OnvifSimulator(password=SecretStr("raw-pw")) as sim:
        raw = ONVIFCamera("127.0.0.1", sim.port, "admin", "raw-pw")
        try:
            await raw.update_xaddrs()
            dm = await raw.create_devicemgmt_service()
            scopes = [str(s.ScopeItem) for s in await dm.GetScopes()]
            assert "onvif://www.onvif.org/Profile/Streaming" in scopes
            events = await raw.create_events_service()
            props = await events.GetEventProperties()
            assert props.FixedTopicSet is True
            assert "ConcreteSet" in props.TopicExpressionDialect[0]
        finally:
            await raw.close()
