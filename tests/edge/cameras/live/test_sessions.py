"""Live view against real parts: GStreamer's RTSP server as the camera, a receiving aiortc peer as the browser.

The node passes the camera's H.264 through (never decodes); the receiving peer decodes, as a browser does, so a
frame counted here is a frame a dispatcher would see.
"""

from __future__ import annotations

import asyncio
import itertools
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from typing import Any

import av
import pytest

import edge.cameras.live.source as source_module
from edge.cameras.config import LiveSettings
from edge.cameras.live.h264 import NAL_IDR, NAL_PPS, NAL_SPS, nal_types, parameter_sets
from edge.cameras.live.sessions import LiveManager
from edge.cameras.live.source import StreamAddress
from edge.commands import CommandFailed
from tests.edge.cameras.live.support import CHROMIUM_156_EXTRA_H264, Endings, Viewer, answer_profile, loop_lag
from tests.edge.support import eventually
from tests.support.ports import free_port
from tests.support.rtsp_server import RtspServer
from varta.aio import wait_for
from varta.contract import LiveEndReason, LiveError, LiveStartParams, LiveStartResult, LiveStream

CAM, CAM2 = "cam-gate", "cam-yard"
FAST = {"linger_s": 0.5, "connect_timeout_s": 10, "open_timeout_s": 5}
_ids = itertools.count(1)


def camera(**options: Any) -> RtspServer:
    """A 640×360 25 fps test camera with a keyframe every 10 frames (late viewers start within 0.4 s)."""
    return RtspServer(width=640, height=360, fps=25, key_int=10, **options)


@pytest.fixture
def rtsp() -> Iterator[RtspServer]:
    server = camera(paths=("main", "sub")).start()
    try:
        yield server
    finally:
        server.stop()


class Node:
    """A :class:`LiveManager` with its cameras (device id → stream URL) and what its sessions ended with."""

    def __init__(self, cameras: dict[str, str], **settings: Any) -> None:
        self.cameras = cameras
        self.endings = Endings()
        self.live = LiveManager(LiveSettings(**{**FAST, **settings}), self.endings)

    def address(self, device_id: str, stream: LiveStream) -> StreamAddress | None:
        url = self.cameras.get(device_id)
        return None if url is None else StreamAddress(url)

    async def start(self, viewer: Viewer, device_id: str = CAM, **params: Any) -> LiveStartResult:
        offer = await viewer.offer()
        session_id = params.pop("session_id", f"session-{next(_ids):04d}")
        result = await self.live.start(
            LiveStartParams(device_id=device_id, session_id=session_id, offer_sdp=offer, **params), self.address
        )
        return result

    async def watch(self, viewer: Viewer, device_id: str = CAM, **params: Any) -> LiveStartResult:
        """Start a session and connect the viewer to it."""
        result = await self.start(viewer, device_id, **params)
        await viewer.accept(result.answer_sdp)
        return result

    async def refused(self, viewer: Viewer, device_id: str = CAM, **params: Any) -> CommandFailed:
        with pytest.raises(CommandFailed) as err:
            await self.start(viewer, device_id, **params)
        return err.value


@asynccontextmanager
async def node(cameras: dict[str, str], **settings: Any) -> AsyncIterator[Node]:
    n = Node(cameras, **settings)
    try:
        yield n
    finally:
        await n.live.close()


@asynccontextmanager
async def viewers(count: int, *, browser: bool = True) -> AsyncIterator[list[Viewer]]:
    group = [Viewer(browser=browser) for _ in range(count)]
    try:
        yield group
    finally:
        await asyncio.gather(*(v.close() for v in group), return_exceptions=True)


# ------------------------------------------------------------------------------------------------ passthrough


async def test_a_viewer_receives_the_cameras_frames_without_the_node_decoding_them(rtsp: RtspServer) -> None:
    async with node({CAM: rtsp.url("main")}) as n, viewers(1) as [viewer]:
        async with loop_lag() as lag:
            began = time.monotonic()
            result = await n.start(viewer)
            answer_s = time.monotonic() - began
        await viewer.accept(result.answer_sdp)
        frames = await viewer.wait_frames(75)

        assert (result.width, result.height, result.viewers, result.shared) == (640, 360, 1, False)
        assert result.codec == "H264 profile-level-id=42c01e"  # x264's Constrained Baseline, as the SPS says
        assert {(w, h) for _, w, h in frames} == {(640, 360)}
        assert lag.samples > 5 and lag.max_lag_s < 0.1  # opening the stream and aiortc's set-up stay off the loop
        assert answer_s < 3
        steady = frames[25:75]  # the first second may arrive in a burst (what was queued while ICE connected)
        fps = (len(steady) - 1) / (steady[-1][0] - steady[0][0])
        assert 15 < fps < 40  # then the camera's 25 fps, live
        [session] = n.live.sessions.values()
        assert session.track.frames_sent >= len(frames)
        source = session.source
        assert source.stats.keyframes >= 1 and source.stats.drops == 0
        assert viewer.answered_at is not None
        first_frame_s = frames[0][0] - viewer.answered_at
        print(
            f"\nlive: first viewer answer {answer_s * 1000:.0f} ms (loop lag max {lag.max_lag_s * 1000:.1f} ms), "
            f"first frame {first_frame_s * 1000:.0f} ms after the answer, {fps:.1f} frames/s decoded by the viewer"
        )


async def test_the_answer_announces_the_cameras_real_profile() -> None:
    for profile, prefix in (("high", "64"), ("main", "4d"), ("baseline", "42")):
        with camera(profile=profile) as server:
            async with node({CAM: server.url()}) as n, viewers(1) as [viewer]:
                result = await n.watch(viewer)
                pt, plid = answer_profile(result.answer_sdp)
                assert plid.startswith(prefix), (profile, plid)
                assert plid == result.codec.rsplit("=", 1)[1]
                offered = {"high": 112, "main": 127}.get(profile)  # Chrome's High / Main payload types
                assert offered is None or pt == offered
                frames = await viewer.wait_frames(10)
                assert frames[-1][1:] == (640, 360)


async def test_payload_types_outside_aiortcs_range_still_carry_the_video() -> None:
    """Chromium 156 offers High 4:4:4 Predictive as payload type 41 (and no plain High): a High camera goes there."""
    with camera(profile="high") as server:
        async with node({CAM: server.url()}) as n, viewers(1) as [_]:
            viewer = Viewer(extra_h264=CHROMIUM_156_EXTRA_H264)
            try:
                result = await n.watch(viewer)
                pt, plid = answer_profile(result.answer_sdp)
                assert (pt, plid[:2]) == (41, "64")
                assert "a=fmtp:42 apt=41" in result.answer_sdp.split("\r\n")  # its RTX, numbered as offered
                frames = await viewer.wait_frames(10)
                assert frames[-1][1:] == (640, 360)
            finally:
                await viewer.close()


async def test_browsers_mdns_candidates_do_not_delay_the_answer(rtsp: RtspServer) -> None:
    async with node({CAM: rtsp.url("main")}) as n, viewers(1) as [_]:
        viewer = Viewer(mdns=True)  # nobody answers for these names: aiortc would wait 1 s for each
        try:
            offer = await viewer.offer()
            assert ".local " in offer
            began = time.monotonic()
            result = await n.live.start(
                LiveStartParams(device_id=CAM, session_id="session-mdns", offer_sdp=offer), n.address
            )
            assert time.monotonic() - began < 0.8
            await viewer.accept(result.answer_sdp)
            await viewer.wait_frames(5)  # connected through the viewer's own checks
        finally:
            await viewer.close()


async def test_a_camera_sending_sps_pps_only_in_the_sdp_still_plays() -> None:
    with camera(config_interval=0, repeat_headers=False) as server:
        # The premise: keyframes arrive without SPS/PPS; only the SDP (the demuxer's extradata) has them.
        extradata, keyframe = await asyncio.to_thread(_first_keyframe, server.url())
        assert parameter_sets(extradata).complete
        assert NAL_IDR in nal_types(keyframe)
        assert NAL_SPS not in nal_types(keyframe) and NAL_PPS not in nal_types(keyframe)

        async with node({CAM: server.url()}) as n, viewers(1) as [viewer]:
            await n.watch(viewer)
            frames = await viewer.wait_frames(10)
            assert frames[-1][1:] == (640, 360)


def _first_keyframe(url: str) -> tuple[bytes, bytes]:
    with av.open(url, options={"rtsp_transport": "tcp"}, timeout=5) as container:
        stream = container.streams.video[0]
        extradata = bytes(stream.codec_context.extradata or b"")
        for packet in container.demux(stream):
            if packet.size and NAL_IDR in nal_types(bytes(packet)):
                return extradata, bytes(packet)
    raise AssertionError("no keyframe")


# ------------------------------------------------------------------------------------------------ sharing


async def test_viewers_of_one_camera_share_one_pull_that_stops_after_the_linger(rtsp: RtspServer) -> None:
    async with node({CAM: rtsp.url("main")}, linger_s=1.0) as n, viewers(3) as [first, second, third]:
        one = await n.watch(first)
        began = time.monotonic()
        two = await n.watch(second)
        warm_s = time.monotonic() - began
        await first.wait_frames(10)
        await second.wait_frames(10)

        assert (one.shared, two.shared, two.viewers) == (False, True, 2)
        assert n.live.pool.opens == 1 and rtsp.clients() == (1, 1)  # one RTSP connection for both
        assert warm_s < 1.0

        assert await n.live.stop(one.session_id) and await n.live.stop(two.session_id)
        assert n.endings.reasons() == {one.session_id: "viewer_left", two.session_id: "viewer_left"}
        [source] = n.live.pool.sources.values()
        three = await n.watch(third)  # within the linger: the pull is reused
        assert three.shared and n.live.pool.opens == 1 and rtsp.clients() == (1, 1)
        await third.wait_frames(5)
        await n.live.stop(three.session_id)

        await wait_for(source.ended.wait(), 5)  # idle for linger_s: the pull stops
        assert n.live.pool.sources == {}
        await eventually(lambda: rtsp.clients()[0] == 0, 5, "the RTSP client to leave")
        assert rtsp.clients() == (0, 1)
        assert not await n.live.stop(three.session_id)  # stopping again: nothing to do
        print(f"\nlive: second viewer (warm pull) answer {warm_s * 1000:.0f} ms")


async def test_main_and_sub_streams_are_separate_pulls(rtsp: RtspServer) -> None:
    streams = {LiveStream.MAIN: rtsp.url("main"), LiveStream.SUB: rtsp.url("sub")}
    async with node({}) as n, viewers(2) as [main, sub]:
        n.address = lambda device_id, stream: StreamAddress(streams[stream])
        await n.watch(main, stream=LiveStream.MAIN)
        await n.watch(sub, stream=LiveStream.SUB)
        await main.wait_frames(5)
        await sub.wait_frames(5)
        assert set(n.live.pool.sources) == {(CAM, "main"), (CAM, "sub")} and rtsp.clients()[0] == 2


async def test_viewers_beyond_the_caps_are_refused(rtsp: RtspServer) -> None:
    cameras = {CAM: rtsp.url("main"), CAM2: rtsp.url("sub")}
    async with node(cameras, max_viewers_per_camera=2, max_viewers_per_node=3) as n, viewers(5) as group:
        await n.start(group[0])
        await n.start(group[1])
        per_camera = await n.refused(group[2])
        assert per_camera.reason == LiveError.CAPACITY
        assert "max_viewers_per_camera = 2" in str(per_camera)
        await n.start(group[3], CAM2)
        per_node = await n.refused(group[4], CAM2)
        assert per_node.reason == LiveError.CAPACITY
        assert "max_viewers_per_node = 3" in str(per_node)
        assert len(n.live.sessions) == 3 and n.live.pool.opens == 2


# ------------------------------------------------------------------------------------------------ endings


async def test_a_camera_that_goes_away_ends_its_sessions_with_source_lost() -> None:
    server = camera().start()
    try:
        async with node({CAM: server.url()}) as n, viewers(2) as [viewer, later]:
            result = await n.watch(viewer)
            await viewer.wait_frames(10)
            server.stop()
            ended = await n.endings.wait(result.session_id, timeout=10)
            assert ended.reason is LiveEndReason.SOURCE_LOST and ended.detail
            assert ended.frames_sent >= 10 and ended.duration_s > 0
            await wait_for(viewer.track_ended.wait(), 10)  # the browser's track ends too
            assert n.live.sessions == {} and n.live.pool.sources == {}

            server.start()  # the camera is back: a new viewer gets a new pull
            again = await n.watch(later)
            await later.wait_frames(5)
            assert not again.shared and n.live.pool.restarts == 1
    finally:
        server.stop()


async def test_a_viewer_that_never_connects_times_out_and_one_that_leaves_is_lost(rtsp: RtspServer) -> None:
    async with node({CAM: rtsp.url("main")}, connect_timeout_s=0.5) as n, viewers(2) as [silent, leaving]:
        never = await n.start(silent)  # the answer never reaches the viewer
        gone = await n.watch(leaving)
        await leaving.wait_frames(3)
        await leaving.pc.close()
        timed_out = await n.endings.wait(never.session_id)
        lost = await n.endings.wait(gone.session_id)
        assert timed_out.reason is LiveEndReason.CONNECT_TIMEOUT and "0.5 s" in timed_out.detail
        assert lost.reason is LiveEndReason.VIEWER_LOST
        assert len(n.endings.items) == 2  # exactly once each


async def test_removing_the_camera_or_stopping_the_node_ends_every_session(rtsp: RtspServer) -> None:
    cameras = {CAM: rtsp.url("main"), CAM2: rtsp.url("sub")}
    async with node(cameras, linger_s=30) as n, viewers(3) as [a, b, c]:
        first, second, other = await n.watch(a), await n.watch(b), await n.watch(c, CAM2)
        assert await n.live.stop_camera(CAM) == 2
        assert set(n.live.pool.sources) == {(CAM2, "main")}  # the camera's pull stopped at once, no linger
        await n.live.close()
        assert n.endings.reasons() == {
            first.session_id: LiveEndReason.CAMERA_REMOVED,
            second.session_id: LiveEndReason.CAMERA_REMOVED,
            other.session_id: LiveEndReason.NODE_STOPPING,
        }
        assert n.live.pool.sources == {}
        await eventually(lambda: rtsp.clients()[0] == 0, 5, "the RTSP clients to leave")
        refused = await n.refused(Viewer(), CAM2)
        assert refused.reason == LiveError.LIVE_DISABLED


# ------------------------------------------------------------------------------------------------ refusals


async def test_starts_that_cannot_work_are_refused_with_a_reason(rtsp: RtspServer) -> None:
    dead = f"rtsp://admin:S3cret-pw@127.0.0.1:{free_port()}/stream"
    async with node({CAM: rtsp.url("main"), CAM2: dead, "cam-new": ""}) as n, viewers(1, browser=False) as [v]:
        assert (await n.refused(v, "cam-nope")).reason == LiveError.UNKNOWN_CAMERA
        unavailable = await n.refused(v, CAM2)
        assert unavailable.reason == LiveError.SOURCE_UNAVAILABLE
        assert "refused" in str(unavailable).lower() and "S3cret" not in str(unavailable)
        assert "admin" not in str(unavailable)
        assert (await n.refused(v, "cam-new")).reason == LiveError.SOURCE_UNAVAILABLE  # no address yet
        offer = await v.offer()
        for sdp, reason in (
            ("v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\n", LiveError.BAD_OFFER),
            (offer.replace("H264/90000", "H265/90000"), LiveError.NO_COMMON_CODEC),
        ):
            with pytest.raises(CommandFailed) as err:
                await n.live.start(LiveStartParams(device_id=CAM, session_id="session-bad1", offer_sdp=sdp), n.address)
            assert err.value.reason == reason
        assert n.live.pool.opens == 0  # nothing was opened for offers that cannot be answered
        no_ice = "\r\n".join(line for line in offer.split("\r\n") if not line.startswith("a=ice-ufrag"))
        with pytest.raises(CommandFailed, match="cannot be answered") as err:  # aiortc itself refuses it
            await n.live.start(LiveStartParams(device_id=CAM, session_id="session-bad2", offer_sdp=no_ice), n.address)
        assert err.value.reason == LiveError.BAD_OFFER and n.live.sessions == {}

    async with node({CAM: rtsp.url("main")}, enabled=False) as off, viewers(1) as [v]:
        assert (await off.refused(v)).reason == LiveError.LIVE_DISABLED


async def test_without_aiortc_a_start_is_refused_as_live_disabled(
    rtsp: RtspServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with node({CAM: rtsp.url("main")}) as n, viewers(1) as [v]:
        offer = await v.offer()
        monkeypatch.setitem(sys.modules, "aiortc", None)  # import aiortc → ImportError
        with pytest.raises(CommandFailed, match=r"varta\[live\]") as err:
            await n.live.start(LiveStartParams(device_id=CAM, session_id="session-noai", offer_sdp=offer), n.address)
        assert err.value.reason == LiveError.LIVE_DISABLED


async def test_a_stalled_camera_is_unavailable_within_the_open_timeout() -> None:
    from tests.support.rtsp_server import SilentTcpServer

    with SilentTcpServer() as silent:
        async with node({CAM: silent.url()}, open_timeout_s=1) as n, viewers(1) as [v]:
            began = time.monotonic()
            err = await n.refused(v)
            assert err.reason == LiveError.SOURCE_UNAVAILABLE and "no answer within 1 s" in str(err)
            assert time.monotonic() - began < 3


async def test_the_stream_is_opened_in_the_reader_thread_never_on_the_loop(
    rtsp: RtspServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    on_loop_thread: list[bool] = []
    original = source_module._open_container

    def spy(*args: Any) -> Any:
        on_loop_thread.append(threading.current_thread() is threading.main_thread())
        return original(*args)

    monkeypatch.setattr(source_module, "_open_container", spy)
    async with node({CAM: rtsp.url("main")}) as n, viewers(1) as [v]:
        await n.start(v)
    assert on_loop_thread == [False]


def test_a_node_that_manages_cameras_imports_no_webrtc_until_a_viewer_comes() -> None:
    script = (
        "import sys, edge.cameras.manager, edge.cameras.live.sessions\n"
        "print(','.join(sorted(m for m in sys.modules if m.split('.')[0] in {'aiortc', 'av', 'aioice'})))\n"
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True, timeout=60)
    assert out.stdout.strip() == ""
