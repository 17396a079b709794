"""``camera.live.start`` / ``camera.live.stop`` through a real agent: signed commands over a real Mosquitto, a
camera behind digest auth (credentials sealed to the node), and a ``camera.live.ended`` event for every end."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr

from edge.cameras.onvif_simulator import OnvifSimulator
from tests.edge.cameras.live.support import Viewer
from tests.edge.cameras.test_manager import PASSWORD, USER, Node, assert_no_secret, start_node
from tests.support.broker import Broker
from tests.support.rtsp_server import RtspServer
from varta.contract import LIVE_ENDED_EVENT

CAM = "cam-gate"


@pytest.fixture
def rtsp() -> Iterator[RtspServer]:
    server = RtspServer(width=640, height=360, fps=25, key_int=10, user=USER, password=PASSWORD).start()
    try:
        yield server
    finally:
        server.stop()


def ended_events(node: Node) -> dict[str, dict[str, Any]]:
    return {e["data"]["session_id"]: e for e in node.events(LIVE_ENDED_EVENT)}


async def test_live_view_commands_stream_the_camera_and_report_every_end(
    broker: Broker, tmp_path: Path, rtsp: RtspServer, capsys: pytest.CaptureFixture[str]
) -> None:
    live = {"linger_s": 0.5, "connect_timeout_s": 10}
    async with start_node(broker, tmp_path, live=live) as node:
        adopted = await node.call(
            "camera.adopt", device_id=CAM, name="Gate", stream_uri=rtsp.url(), sealed_credentials=node.sealed()
        )
        assert adopted["status"] == "ok", adopted
        viewer, other, last = Viewer(), Viewer(), Viewer()
        try:
            started = await node.call(
                "camera.live.start", device_id=CAM, session_id="session-0001", offer_sdp=await viewer.offer()
            )
            assert started["status"] == "ok", started
            result = started["result"]
            assert (result["session_id"], result["width"], result["height"]) == ("session-0001", 640, 360)
            assert result["codec"].startswith("H264 profile-level-id=42") and result["viewers"] == 1
            await viewer.accept(result["answer_sdp"])
            await viewer.wait_frames(10)  # the node opened the stream with the sealed credentials

            stopped = await node.call("camera.live.stop", device_id=CAM, session_id="session-0001")
            assert stopped["status"] == "ok" and stopped["result"]["stopped"] is True
            again = await node.call("camera.live.stop", device_id=CAM, session_id="session-0001")
            assert again["status"] == "ok" and again["result"]["stopped"] is False  # idempotent

            unknown = await node.call(
                "camera.live.start", device_id="cam-nope", session_id="session-0002", offer_sdp=await other.offer()
            )
            assert (unknown["status"], unknown["reason"]) == ("error", "unknown_camera")
            invalid = await node.call("camera.live.start", device_id=CAM, session_id="x", offer_sdp="v=0")
            assert invalid["status"] == "error" and "invalid parameters" in invalid["detail"]

            second = await node.call(
                "camera.live.start", device_id=CAM, session_id="session-0003", offer_sdp=await other.offer()
            )
            assert second["status"] == "ok", second
            await other.accept(second["result"]["answer_sdp"])
            await other.wait_frames(5)
            forgotten = await node.call("camera.forget", device_id=CAM)
            assert forgotten["status"] == "ok"

            await node.call(
                "camera.adopt", device_id=CAM, name="Gate", stream_uri=rtsp.url(), sealed_credentials=node.sealed()
            )
            third = await node.call(
                "camera.live.start", device_id=CAM, session_id="session-0004", offer_sdp=await last.offer()
            )
            await last.accept(third["result"]["answer_sdp"])
            await last.wait_frames(5)
            rtsp.stop()  # the camera dies mid-view
            await node.sub.wait_for(lambda p: len(ended_events(node)) == 3, "/event", 15)
        finally:
            for v in (viewer, other, last):
                await v.close()

    events = ended_events(node)
    assert events["session-0001"]["data"]["reason"] == "viewer_left"
    assert events["session-0001"]["severity"] == "info" and events["session-0001"]["device_id"] == CAM
    assert events["session-0001"]["data"]["frames_sent"] >= 10
    assert events["session-0003"]["data"]["reason"] == "camera_removed"
    lost = events["session-0004"]
    assert (lost["data"]["reason"], lost["severity"]) == ("source_lost", "warning") and lost["data"]["detail"]
    assert_no_secret(node, capsys)  # not in any message, result or log line


async def test_a_late_viewer_of_an_onvif_camera_gets_a_keyframe_at_once(broker: Broker, tmp_path: Path) -> None:
    # One keyframe every 4 s: a viewer joining between two would wait up to 4 s for a picture, unless the node
    # asks the camera for one (ONVIF SetSynchronizationPoint), as it does here.
    rtsp = RtspServer(width=640, height=360, fps=25, key_int=100, user=USER, password=PASSWORD).start()
    sim = OnvifSimulator(username=USER, password=SecretStr(PASSWORD), rtsp_uri=rtsp.url())
    sim.on_keyframe = lambda _profile: rtsp.keyframe() and None
    await sim.start()
    first, late = Viewer(), Viewer()
    try:
        async with start_node(broker, tmp_path, live={"linger_s": 0.5}) as node:
            adopted = await node.call(
                "camera.adopt", device_id=CAM, name="Gate", onvif_address=sim.address, sealed_credentials=node.sealed()
            )
            assert adopted["status"] == "ok", adopted
            one = await node.call(
                "camera.live.start", device_id=CAM, session_id="session-early", offer_sdp=await first.offer()
            )
            assert one["status"] == "ok", one
            await first.accept(one["result"]["answer_sdp"])
            await first.wait_frames(25)  # a second into the 4 s keyframe interval
            asked = sim.state.counters["keyframes_requested"]
            two = await node.call(
                "camera.live.start", device_id=CAM, session_id="session-late", offer_sdp=await late.offer()
            )
            assert two["status"] == "ok" and two["result"]["shared"] is True
            began = time.monotonic()
            await late.accept(two["result"]["answer_sdp"])
            await late.wait_frames(1, timeout=10)
            assert time.monotonic() - began < 2.0  # not the ~3 s left of the keyframe interval
            assert sim.state.counters["keyframes_requested"] == asked + 1
    finally:
        for v in (first, late):
            await v.close()
        await sim.stop()
        rtsp.stop()
