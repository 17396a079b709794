"""The RTSP pre-check names why a stream cannot be opened, against a real GStreamer RTSP server."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator

import pytest

from edge.cameras.rtsp_check import check_rtsp, strip_credentials
from tests.support.ports import free_port
from tests.support.rtsp_server import RtspServer, SilentTcpServer
from varta.contract import CameraReason
from varta.sealing import Credentials

PASSWORD = "s3cret-Pa55"
GOOD = Credentials(username="viewer", password=PASSWORD)
WRONG = Credentials(username="viewer", password="not-the-password")


@pytest.fixture(scope="module")
def digest_server() -> Iterator[RtspServer]:
    server = RtspServer(user="viewer", password=PASSWORD, auth="digest").start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
async def garbage_port() -> AsyncIterator[int]:
    """A server that answers every request like a web server."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read(1000)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    try:
        yield int(server.sockets[0].getsockname()[1])
    finally:
        server.close()
        await server.wait_closed()


async def test_a_working_stream_passes_and_names_its_codec(digest_server: RtspServer) -> None:
    result = await check_rtsp(digest_server.url(), GOOD, timeout_s=3)
    assert result.reason is None, result.detail
    assert result.video_codec == "H264"
    assert result.connect_ms is not None and result.connect_ms < 1000


async def test_wrong_or_missing_credentials_are_auth_failed(digest_server: RtspServer) -> None:
    wrong = await check_rtsp(digest_server.url(), WRONG, timeout_s=3)
    assert wrong.reason is CameraReason.AUTH_FAILED
    assert "wrong" in wrong.detail
    missing = await check_rtsp(digest_server.url(), None, timeout_s=3)
    assert missing.reason is CameraReason.AUTH_FAILED
    assert "required" in missing.detail


async def test_basic_auth_works_too() -> None:
    with RtspServer(user="viewer", password=PASSWORD, auth="basic") as server:
        assert (await check_rtsp(server.url(), GOOD, timeout_s=3)).reason is None
        assert (await check_rtsp(server.url(), WRONG, timeout_s=3)).reason is CameraReason.AUTH_FAILED


async def test_credentials_in_the_address_are_ignored_and_never_reported(digest_server: RtspServer) -> None:
    url = digest_server.url(user="viewer", password=PASSWORD)
    assert strip_credentials(url) == digest_server.url()
    result = await check_rtsp(url, None, timeout_s=3)
    assert result.reason is CameraReason.AUTH_FAILED  # the embedded password is not used behind our back
    assert PASSWORD not in repr(result)
    assert PASSWORD not in repr(await check_rtsp(digest_server.url(), WRONG, timeout_s=3))


async def test_unknown_path_is_a_stream_error(digest_server: RtspServer) -> None:
    result = await check_rtsp(digest_server.url("no-such-path"), GOOD, timeout_s=3)
    assert result.reason is CameraReason.STREAM_ERROR
    assert "404" in result.detail


async def test_closed_port_is_unreachable() -> None:
    result = await check_rtsp(f"rtsp://127.0.0.1:{free_port()}/stream", None, timeout_s=3)
    assert result.reason is CameraReason.UNREACHABLE


async def test_a_port_that_never_speaks_rtsp_is_a_timeout() -> None:
    with SilentTcpServer() as silent:
        loop = asyncio.get_running_loop()
        started = loop.time()
        result = await check_rtsp(silent.url(), None, timeout_s=1)
        assert result.reason is CameraReason.TIMEOUT
        assert 0.9 < loop.time() - started < 3
        assert silent.accepted == 1


async def test_a_server_that_answers_something_else_is_a_stream_error(garbage_port: int) -> None:
    result = await check_rtsp(f"rtsp://127.0.0.1:{garbage_port}/stream", None, timeout_s=3)
    assert result.reason is CameraReason.STREAM_ERROR
    assert "not an RTSP answer" in result.detail


@pytest.mark.parametrize("uri", ["http://127.0.0.1/stream", "rtsp://", "rtsp://127.0.0.1:99999/x", "garbage"])
async def test_bad_addresses_are_stream_errors(uri: str) -> None:
    assert (await check_rtsp(uri, None, timeout_s=1)).reason is CameraReason.STREAM_ERROR
