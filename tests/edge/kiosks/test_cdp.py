"""The CDP client against a real headless Chromium (one per module) and against fake DevTools servers."""

from __future__ import annotations

import asyncio
import hashlib
import os
import shutil
import signal
import struct
import subprocess
import threading
import time
import urllib.request
import zlib
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from aiohttp import WSMsgType, web

from edge.kiosks.cdp import CdpClient, CdpError, CdpReason, CdpTarget, image_size
from tests.support.ports import free_port

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_INSTALL_WAIT_S = 600.0
TITLE = "Varta kiosk test"
PAGE = f"""<!doctype html>
<html><head><meta charset="utf-8"><title>{TITLE}</title>
<style>html, body {{ margin: 0; height: 100%; }}
#screen {{ position: fixed; inset: 0; background: #ff0000; color: #fff; font: 64px sans-serif; }}</style></head>
<body><div id="screen">EMERGENCY ALERT</div></body></html>
""".encode()
RED = (255, 0, 0)
BLUE = (0, 0, 255)
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"

# --------------------------------------------------------------------------------------------------------------------
# A real Chromium showing a red page served on loopback
# --------------------------------------------------------------------------------------------------------------------


@dataclass
class Kiosk:
    """A headless Chromium in kiosk mode with its DevTools on ``port``, showing ``page_url``."""

    port: int
    page_url: str


class _PageHandler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(PAGE)))
        self.end_headers()
        self.wfile.write(PAGE)

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        pass


def _wait_for_chromium() -> str:
    """The Chromium binary; another process may still be installing it, so wait up to 10 minutes (then fail)."""
    deadline = time.monotonic() + CHROMIUM_INSTALL_WAIT_S
    while True:
        found = CHROMIUM if os.access(CHROMIUM, os.X_OK) else shutil.which("chromium")
        if found:
            return found
        if time.monotonic() > deadline:
            pytest.fail(f"chromium is not installed ({CHROMIUM}); apt-get install chromium")
        time.sleep(2)


def _http_get(url: str, timeout: float = 1.0) -> bytes:
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # never via an env proxy
    with opener.open(url, timeout=timeout) as resp:
        return bytes(resp.read())


def _kill_group(proc: subprocess.Popen[bytes]) -> None:
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(5)
            return
        except subprocess.TimeoutExpired:
            continue


@pytest.fixture(scope="module")
def kiosk(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Kiosk]:
    binary = _wait_for_chromium()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _PageHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    page_url = f"http://127.0.0.1:{server.server_address[1]}/player"
    workdir = tmp_path_factory.mktemp("chromium")
    port = free_port()
    log_path = workdir / "chromium.log"
    with log_path.open("wb") as log_file:
        proc = subprocess.Popen(
            [
                binary,
                "--headless=new",
                "--kiosk",  # no (emulated) browser toolbar: the page gets the whole 800x600 window
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--no-first-run",
                f"--remote-debugging-port={port}",
                "--remote-debugging-address=127.0.0.1",
                f"--user-data-dir={workdir / 'profile'}",
                "--window-size=800,600",
                page_url,
            ],
            stdin=subprocess.DEVNULL,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: the renderer/GPU/zygote children die with it
        )
    try:
        _wait_for_page(port, page_url, proc, log_path)
        yield Kiosk(port=port, page_url=page_url)
    finally:
        _kill_group(proc)
        server.shutdown()
        server.server_close()


def _wait_for_page(port: int, page_url: str, proc: subprocess.Popen[bytes], log_path: Path) -> None:
    """Until /json/version answers and the page is listed with its title (it has been parsed)."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"chromium exited with {proc.returncode}: {log_path.read_text(errors='replace')[-2000:]}")
        try:
            _http_get(f"http://127.0.0.1:{port}/json/version")
            listing = _http_get(f"http://127.0.0.1:{port}/json/list").decode()
            if page_url in listing and TITLE in listing:
                return
        except OSError:
            pass
        time.sleep(0.1)
    pytest.fail(f"chromium did not show {page_url} within 30 s: {log_path.read_text(errors='replace')[-2000:]}")


@pytest.fixture
def cdp(kiosk: Kiosk) -> CdpClient:
    return CdpClient(port=kiosk.port, timeout_s=5.0)


# --------------------------------------------------------------------------------------------------------------------
# A minimal PNG decoder: the colour of one pixel (8-bit RGB/RGBA, not interlaced - what Chromium writes)
# --------------------------------------------------------------------------------------------------------------------


def _paeth(a: int, b: int, c: int) -> int:
    p = a + b - c
    pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
    if pa <= pb and pa <= pc:
        return a
    return b if pb <= pc else c


def png_pixel(data: bytes, x: int, y: int) -> tuple[int, int, int]:
    assert data.startswith(PNG_SIGNATURE)
    pos, idat = 8, b""
    width = depth = colour = interlace = 0
    while pos < len(data):
        length, kind = struct.unpack(">I4s", data[pos : pos + 8])
        body = data[pos + 8 : pos + 8 + length]
        pos += 12 + length
        if kind == b"IHDR":
            width, _, depth, colour, _, _, interlace = struct.unpack(">IIBBBBB", body)
        elif kind == b"IDAT":
            idat += body
        elif kind == b"IEND":
            break
    assert (depth, interlace) == (8, 0) and colour in (2, 6), (depth, colour, interlace)
    bpp = 3 if colour == 2 else 4
    stride = width * bpp
    raw = zlib.decompress(idat)
    prev = bytearray(stride)
    for row in range(y + 1):
        start = row * (stride + 1)
        kind_of_filter, line = raw[start], bytearray(raw[start + 1 : start + 1 + stride])
        for i in range(stride):
            left = line[i - bpp] if i >= bpp else 0
            up_left = prev[i - bpp] if i >= bpp else 0
            predictor = (0, left, prev[i], (left + prev[i]) // 2, _paeth(left, prev[i], up_left))[kind_of_filter]
            line[i] = (line[i] + predictor) & 0xFF
        prev = line
    r, g, b = prev[x * bpp : x * bpp + 3]
    return (r, g, b)


# --------------------------------------------------------------------------------------------------------------------
# Against the real Chromium
# --------------------------------------------------------------------------------------------------------------------


async def test_targets_list_the_kiosk_page(cdp: CdpClient, kiosk: Kiosk) -> None:
    targets = await cdp.targets()
    pages = [t for t in targets if t.type == "page"]
    assert [(p.url, p.title) for p in pages] == [(kiosk.page_url, TITLE)]
    assert pages[0].web_socket_debugger_url == f"ws://127.0.0.1:{kiosk.port}/devtools/page/{pages[0].id}"


async def test_page_target_picks_the_player_page_by_url_prefix(cdp: CdpClient, kiosk: Kiosk) -> None:
    player = await cdp.page_target(url_prefix=kiosk.page_url.removesuffix("player"))
    assert player.type == "page" and player.url == kiosk.page_url
    with pytest.raises(CdpError) as caught:
        await cdp.page_target(url_prefix="http://127.0.0.1:1/elsewhere")
    assert caught.value.reason is CdpReason.NO_PAGE


async def test_a_screenshot_is_an_800x600_png_of_what_the_page_shows(cdp: CdpClient, kiosk: Kiosk) -> None:
    before = datetime.now(UTC)
    shot = await cdp.screenshot()
    assert shot.data.startswith(PNG_SIGNATURE)
    assert struct.unpack(">II", shot.data[16:24]) == (800, 600)
    assert (shot.width, shot.height) == (800, 600)
    assert shot.sha256 == hashlib.sha256(shot.data).hexdigest()
    assert shot.url == kiosk.page_url
    assert before - timedelta(seconds=1) <= shot.taken_at <= datetime.now(UTC)
    assert png_pixel(shot.data, 400, 300) == RED
    assert png_pixel(shot.data, 5, 595) == RED  # the whole screen, not just the middle


async def test_a_jpeg_screenshot_has_the_screen_size_and_honours_quality(cdp: CdpClient) -> None:
    page = await cdp.page_target()
    good = await cdp.screenshot(page, format="jpeg", quality=95)
    poor = await cdp.screenshot(page, format="jpeg", quality=5)
    assert good.data.startswith(b"\xff\xd8") and good.format == "jpeg"
    assert (good.width, good.height) == (poor.width, poor.height) == (800, 600)
    assert len(poor.data) < len(good.data)


async def test_the_hash_proves_what_was_on_screen(cdp: CdpClient) -> None:
    first = await cdp.screenshot()
    again = await cdp.screenshot()
    assert again.sha256 == first.sha256  # an unchanged screen hashes the same
    try:
        assert await cdp.evaluate("document.getElementById('screen').style.background = 'blue'") == "blue"
        blue = await cdp.screenshot()
        assert blue.sha256 != first.sha256
        assert png_pixel(blue.data, 400, 300) == BLUE
    finally:
        await cdp.evaluate("document.getElementById('screen').style.background = ''")
    restored = await cdp.screenshot()
    assert restored.sha256 == first.sha256  # same pixels again: the hash is deterministic


async def test_the_screenshot_url_is_the_pages_url_at_capture_time(cdp: CdpClient, kiosk: Kiosk) -> None:
    listed = await cdp.page_target()  # a listing from before the page moved on
    try:
        await cdp.evaluate("history.pushState({}, '', '/alert/42')", listed)
        shot = await cdp.screenshot(listed)
        assert shot.url == kiosk.page_url.replace("/player", "/alert/42")
    finally:
        await cdp.evaluate("history.pushState({}, '', '/player')", listed)
    assert (await cdp.screenshot(listed)).url == kiosk.page_url


async def test_evaluate_returns_json_values_from_the_page(cdp: CdpClient) -> None:
    assert await cdp.evaluate("document.title") == TITLE
    assert await cdp.evaluate("document.getElementById('screen').textContent") == "EMERGENCY ALERT"
    assert await cdp.evaluate("6 * 7") == 42
    assert await cdp.evaluate("({shown: 'alert', ids: [1, 2], ok: true, none: null})") == {
        "shown": "alert",
        "ids": [1, 2],
        "ok": True,
        "none": None,
    }
    assert await cdp.evaluate("new Promise(r => setTimeout(() => r('later'), 50))") == "later"
    assert await cdp.evaluate("undefined") is None


async def test_a_script_that_throws_is_a_protocol_error_naming_the_exception(cdp: CdpClient) -> None:
    with pytest.raises(CdpError) as caught:
        await cdp.evaluate("throw new Error('player crashed')")
    assert caught.value.reason is CdpReason.PROTOCOL
    assert "player crashed" in caught.value.detail


async def test_a_reply_over_the_size_bound_is_too_large(kiosk: Kiosk) -> None:
    small = CdpClient(port=kiosk.port, max_message_bytes=1000)
    with pytest.raises(CdpError) as caught:
        await small.screenshot()
    assert caught.value.reason is CdpReason.TOO_LARGE
    assert await small.evaluate("1 + 1") == 2  # small replies still pass


async def test_a_target_that_is_gone_is_no_page(cdp: CdpClient) -> None:
    gone = CdpTarget(id="0123456789ABCDEF0123456789ABCDEF", type="page", url="http://x/", title="closed tab")
    with pytest.raises(CdpError) as caught:
        await cdp.screenshot(gone)
    assert caught.value.reason is CdpReason.NO_PAGE


# --------------------------------------------------------------------------------------------------------------------
# Failures, against nothing or against fake DevTools servers
# --------------------------------------------------------------------------------------------------------------------


@dataclass
class FakeDevtools:
    """A DevTools look-alike: ``listing`` is served as /json/list; ``behaviour`` says what its websocket does."""

    port: int
    listing: bytes = b"[]"
    list_status: int = 200
    behaviour: str = "silent"  # silent | close | error | chatty | huge
    websockets: list[str] = field(default_factory=list)

    def list_page(self, host: str = "127.0.0.1") -> None:
        self.listing = (
            b'[{"id": "P1", "type": "page", "url": "http://127.0.0.1/player", "title": "player",'
            b' "devtoolsFrontendUrl": "ignored", "faviconUrl": "ignored",'
            b' "webSocketDebuggerUrl": "ws://' + host.encode() + b':9222/devtools/page/P1"}]'
        )


@pytest.fixture
async def fake() -> AsyncIterator[FakeDevtools]:
    state = FakeDevtools(port=free_port())

    async def json_list(_: web.Request) -> web.Response:
        return web.Response(body=state.listing, status=state.list_status, content_type="application/json")

    async def devtools(request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(max_msg_size=0)
        await ws.prepare(request)
        state.websockets.append(request.path)
        if state.behaviour == "close":
            await ws.close()
            return ws
        async for msg in ws:
            if msg.type is not WSMsgType.TEXT:
                continue
            req = msg.json()
            if state.behaviour == "error":
                await ws.send_json({"id": req["id"], "error": {"code": -32601, "message": "'Nope' wasn't found"}})
            elif state.behaviour == "chatty":
                await ws.send_json({"method": "Runtime.consoleAPICalled", "params": {"type": "log"}})
                await ws.send_json({"id": req["id"] + 1000, "result": {"result": {"type": "string", "value": "no"}}})
                await ws.send_json({"id": req["id"], "result": {"result": {"type": "string", "value": "yes"}}})
            elif state.behaviour == "huge":
                await ws.send_json({"id": req["id"], "result": {"data": "A" * 100_000}})
            # silent: never answers
        return ws

    app = web.Application()
    app.router.add_get("/json/list", json_list)
    app.router.add_get("/devtools/page/{id}", devtools)
    runner = web.AppRunner(app, shutdown_timeout=0.1)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", state.port).start()
    try:
        yield state
    finally:
        await runner.cleanup()


async def test_nothing_listening_is_unreachable_at_once() -> None:
    client = CdpClient(port=free_port(), timeout_s=5.0)
    started = time.monotonic()
    for call in (client.targets, client.screenshot, lambda: client.evaluate("1")):
        with pytest.raises(CdpError) as caught:
            await call()
        assert caught.value.reason is CdpReason.UNREACHABLE
    assert time.monotonic() - started < 1.0


async def test_a_websocket_that_never_answers_is_a_timeout_within_the_bound(fake: FakeDevtools) -> None:
    fake.list_page(host="192.0.2.1")  # the listing names another host: the client must not follow it
    client = CdpClient(port=fake.port, timeout_s=0.5)
    started = time.monotonic()
    with pytest.raises(CdpError) as caught:
        await client.screenshot()
    elapsed = time.monotonic() - started
    assert caught.value.reason is CdpReason.TIMEOUT
    assert 0.4 < elapsed < 1.5
    assert fake.websockets == ["/devtools/page/P1"]  # it went to its own loopback host, whatever the listing said


async def test_the_event_loop_keeps_running_while_a_call_waits(fake: FakeDevtools) -> None:
    fake.list_page()
    ticks = 0

    async def tick() -> None:
        nonlocal ticks
        while True:
            await asyncio.sleep(0.01)
            ticks += 1

    ticker = asyncio.create_task(tick())
    try:
        with pytest.raises(CdpError):
            await CdpClient(port=fake.port, timeout_s=0.3).evaluate("1")
    finally:
        ticker.cancel()
    assert ticks >= 10


async def test_a_websocket_closed_before_the_reply_is_unreachable(fake: FakeDevtools) -> None:
    fake.list_page()
    fake.behaviour = "close"
    with pytest.raises(CdpError) as caught:
        await CdpClient(port=fake.port).evaluate("1")
    assert caught.value.reason is CdpReason.UNREACHABLE


async def test_a_cdp_error_response_is_protocol_with_its_message(fake: FakeDevtools) -> None:
    fake.list_page()
    fake.behaviour = "error"
    with pytest.raises(CdpError) as caught:
        await CdpClient(port=fake.port).screenshot()
    assert caught.value.reason is CdpReason.PROTOCOL
    assert "Page.captureScreenshot" in caught.value.detail and "wasn't found" in caught.value.detail


async def test_events_and_other_replies_are_ignored_until_the_matching_reply(fake: FakeDevtools) -> None:
    fake.list_page()
    fake.behaviour = "chatty"
    assert await CdpClient(port=fake.port).evaluate("'yes'") == "yes"


async def test_a_huge_message_from_a_fake_is_too_large(fake: FakeDevtools) -> None:
    fake.list_page()
    fake.behaviour = "huge"
    with pytest.raises(CdpError) as caught:
        await CdpClient(port=fake.port, max_message_bytes=50_000).screenshot()
    assert caught.value.reason is CdpReason.TOO_LARGE


@pytest.mark.parametrize(
    "listing",
    [
        pytest.param(b"<html>not json</html>", id="html"),
        pytest.param(b'{"targets": []}', id="object"),
        pytest.param(b"[1, 2]", id="numbers"),
        pytest.param(b'[{"id": "P1", "type": "page"}]', id="missing-fields"),
        pytest.param(b'[{"id": 7, "type": "page", "url": "u", "title": "t"}]', id="wrong-types"),
    ],
)
async def test_a_garbage_target_list_is_protocol(fake: FakeDevtools, listing: bytes) -> None:
    fake.listing = listing
    client = CdpClient(port=fake.port)
    for call in (client.targets, client.page_target, client.screenshot):
        with pytest.raises(CdpError) as caught:
            await call()
        assert caught.value.reason is CdpReason.PROTOCOL, caught.value


async def test_an_http_error_for_the_target_list_is_protocol(fake: FakeDevtools) -> None:
    fake.list_status = 500
    with pytest.raises(CdpError) as caught:
        await CdpClient(port=fake.port).targets()
    assert caught.value.reason is CdpReason.PROTOCOL
    assert "500" in caught.value.detail


async def test_unknown_target_fields_are_tolerated_and_only_pages_count(fake: FakeDevtools) -> None:
    fake.listing = (
        b'[{"id": "W1", "type": "service_worker", "url": "u", "title": "t", "extra": {"x": 1}},'
        b' {"id": "B1", "type": "browser_ui", "url": "chrome://omnibox-popup.top-chrome/", "title": "Omnibox Popup"}]'
    )
    client = CdpClient(port=fake.port)
    assert [t.type for t in await client.targets()] == ["service_worker", "browser_ui"]
    with pytest.raises(CdpError) as caught:
        await client.screenshot()
    assert caught.value.reason is CdpReason.NO_PAGE


@pytest.mark.parametrize("host", ["192.168.1.10", "0.0.0.0", "10.0.0.5", "kiosk.local", "example.com", "::", ""])
def test_a_non_loopback_host_is_refused_at_construction(host: str) -> None:
    with pytest.raises(ValueError, match="not a loopback address"):
        CdpClient(host=host)


@pytest.mark.parametrize("host", ["127.0.0.1", "127.0.0.2", "localhost", "::1", "[::1]"])
def test_loopback_hosts_are_accepted(host: str) -> None:
    assert CdpClient(host=host).host == host


# --------------------------------------------------------------------------------------------------------------------
# The image header helper
# --------------------------------------------------------------------------------------------------------------------


def test_image_size_reads_png_and_jpeg_headers() -> None:
    png = PNG_SIGNATURE + struct.pack(">I4sII", 13, b"IHDR", 1920, 1080) + b"\x08\x02\x00\x00\x00"
    assert image_size(png) == (1920, 1080)
    app0 = b"\xff\xe0" + struct.pack(">H", 16) + b"JFIF\x00" + bytes(9)
    sof2 = b"\xff\xc2" + struct.pack(">HBHH", 11, 8, 768, 1024) + b"\x01\x01\x11\x00"
    assert image_size(b"\xff\xd8" + app0 + sof2) == (1024, 768)


@pytest.mark.parametrize("data", [b"", b"GIF89a....", PNG_SIGNATURE + b"\x00" * 8, b"\xff\xd8\xff\xda\x00\x02"])
def test_image_size_refuses_what_it_cannot_read(data: bytes) -> None:
    with pytest.raises(ValueError):
        image_size(data)
