"""The GStreamer RTSP test server itself: a real process that starts, stops, switches pictures and asks for auth."""

from __future__ import annotations

import socket

import pytest

from edge.cameras.rtsp_check import check_rtsp
from tests.support.rtsp_server import RtspServer, RtspServerError
from varta.contract import CameraReason
from varta.sealing import Credentials


def _listening(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


async def test_start_stop_and_restart_on_the_same_port() -> None:
    server = RtspServer(width=320, height=240, fps=10)
    try:
        server.start()
        assert server.running and _listening(server.port)
        assert (await check_rtsp(server.url(), None, timeout_s=3)).video_codec == "H264"
        pid = server.proc.pid if server.proc else None
        server.stop()
        assert not server.running and not _listening(server.port)
        server.start()
        assert server.proc is not None and server.proc.pid != pid and _listening(server.port)
    finally:
        server.stop()


def test_patterns_switch_live_and_unknown_ones_are_refused() -> None:
    with RtspServer(width=320, height=240) as server:
        for pattern in ("still", "black", "moving", "snow"):
            server.set_pattern(pattern)
            assert server.pattern == pattern
        with pytest.raises(RtspServerError, match="refused"):
            server.set_pattern("no-such-pattern")
        assert server.pattern == "snow"
    with pytest.raises(RtspServerError, match="not running"):
        server.set_pattern("black")


async def test_auth_is_enforced_with_the_configured_user() -> None:
    with RtspServer(width=320, height=240, user="u", password="p w") as server:
        assert (await check_rtsp(server.url(), Credentials(username="u", password="p w"), 3)).reason is None
        denied = await check_rtsp(server.url(), Credentials(username="u", password="x"), 3)
        assert denied.reason is CameraReason.AUTH_FAILED
