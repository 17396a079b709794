"""The demo's simulated cameras, through a real agent and broker: info, thumbnails and a discovery inbox."""

from __future__ import annotations

import asyncio
import base64
from pathlib import Path

import cv2
import numpy as np

from tests.edge.support import NODE, SITE, Collector, edge_config, running_agent
from tests.support.broker import Broker
from varta.contract import decode_for_topic, node_prefix
from varta.demo import DEMO_SITES, REAL_CAMERA_ID, REAL_CAMERA_NODE, _real_camera_node, gstreamer_available
from varta.signing import generate_signing_key, public_key_text


async def test_simulated_cameras_describe_themselves_send_thumbnails_and_report_discoveries(
    broker: Broker, tmp_path: Path
) -> None:
    simulator = {
        "enabled": True,
        "cameras": 2,
        "kiosks": 0,
        "sirens": 0,
        "events_per_s": 0,
        "status_change_interval_s": 0,
        "snapshot_interval_s": 0.5,
        "discovered": 3,
    }
    config = edge_config(broker, tmp_path, simulator=simulator)
    async with Collector(broker.settings(), f"{node_prefix(SITE, NODE)}/#") as sub, running_agent(config):
        await sub.wait_for(lambda p: len(p) >= 4, "/snapshot/sim-cam-1", timeout=15)
        await sub.wait_for(lambda p: len(p) >= 2, "/snapshot/sim-cam-2", timeout=15)
    for message in sub.messages:  # everything the simulator sends passes the contract, as central checks it
        decode_for_topic(message.topic, message.payload)

    infos = {p["device_id"]: p for p in sub.payloads() if p["type"] == "camera_info"}
    assert set(infos) == {"sim-cam-1", "sim-cam-2"}
    assert infos["sim-cam-1"]["ptz"] is True and infos["sim-cam-1"]["presets"]
    assert infos["sim-cam-2"]["ptz"] is False and infos["sim-cam-2"]["main_profile"] == "main"

    [report] = sub.payloads("/discovery")
    assert report["trigger"] == "startup" and len(report["devices"]) == 3
    assert len({d["endpoint"] for d in report["devices"]}) == 3 and report["devices"][0]["name"] == "SimCam 1"

    shots = sub.payloads("/snapshot/sim-cam-1")
    taken = [s["taken_at"] for s in shots]
    assert taken == sorted(taken) and len(set(taken)) == len(taken)  # a fresh picture each time
    picture = cv2.imdecode(np.frombuffer(base64.b64decode(shots[-1]["data"]), np.uint8), cv2.IMREAD_COLOR)
    assert picture is not None and picture.shape == (shots[-1]["height"], shots[-1]["width"], 3) == (360, 640, 3)
    assert float(picture.std()) > 20  # a test card, not a blank frame
    other = sub.payloads("/snapshot/sim-cam-2")[-1]
    assert other["data"] != shots[-1]["data"]  # each camera has its own picture


async def test_the_demo_real_camera_node_monitors_a_gstreamer_stream_behind_the_onvif_simulator(
    broker: Broker, tmp_path: Path
) -> None:
    assert gstreamer_available()  # Debian's GStreamer RTSP server is part of the test machine: never skip
    stop = asyncio.Event()
    central_key = public_key_text(generate_signing_key().verify_key)
    node = f"{node_prefix(DEMO_SITES[0], REAL_CAMERA_NODE)}/#"
    async with Collector(broker.settings(), node) as sub:
        task = asyncio.create_task(_real_camera_node(tmp_path, broker.settings(), central_key, stop))
        try:
            states = await sub.wait_for(
                lambda p: any(s["status"] == "online" for s in p), f"/state/{REAL_CAMERA_ID}", timeout=40
            )
            await sub.wait_for(bool, f"/snapshot/{REAL_CAMERA_ID}", timeout=20)
            await sub.wait_for(lambda p: any(r["devices"] for r in p), "/discovery", timeout=20)
        finally:
            stop.set()
            await asyncio.wait_for(task, 30)
    online = next(s for s in states if s["status"] == "online")
    assert (online["attrs"]["width"], online["attrs"]["height"]) == (640, 360)
    info = sub.payloads(f"/info/{REAL_CAMERA_ID}")[-1]
    assert info["model"].startswith("SimCam-1") and info["stream_uri"].startswith("rtsp://127.0.0.1:")
    [found] = next(r for r in sub.payloads("/discovery") if r["devices"])["devices"]
    assert found["xaddrs"] == [info["onvif_address"]] and found["name"] == "Square camera"
