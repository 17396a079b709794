"""Live view through every real part: headless Chromium signs in to central, opens a camera served by GStreamer's
RTSP server through a real edge agent, and the video plays (WHEP offer → central → signed command over Mosquitto →
the node's aiortc answer → media node → browser). A second viewer shares the node's one RTSP pull; stopping the
RTSP server ends the view with a clear message in the page; every view is on the admins' list with start and end.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.async_api import Browser, BrowserContext, Page

from central.auth.bootstrap import ensure_user
from central.auth.roles import Role
from central.store.db import Database
from tests.browser.conftest import PASSWORD, CentralServer, browser, central, screenshot_path, sign_in
from tests.support.broker import Broker
from tests.support.rtsp_server import RtspServer
from tests.support.stack import EdgeProcess, rtsp_camera_edge, wait_camera_online

pytestmark = [pytest.mark.slow, pytest.mark.browser]
__all__ = ["browser", "central"]  # the browser tests' fixtures: real central in a thread, headless Chromium

NODE, SITE, CAMERA = "node-live", "podil", "cam-fountain"
CAMERA_PAGE = f"/cameras/{NODE}/{CAMERA}"


@pytest.fixture
def rtsp() -> Iterator[RtspServer]:
    server = RtspServer(width=640, height=360, fps=15).start()  # one keyframe a second
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
async def db(central: CentralServer) -> AsyncIterator[Database]:
    database = Database(central.config.database_url)
    await ensure_user(database, "olena", PASSWORD, Role.DISPATCHER)
    await ensure_user(database, "petro", PASSWORD, Role.DISPATCHER)
    await ensure_user(database, "admin", PASSWORD, Role.ADMIN)
    try:
        yield database
    finally:
        await database.dispose()


@pytest.fixture
async def edge(broker: Broker, central: CentralServer, rtsp: RtspServer, tmp_path: Path) -> AsyncIterator[EdgeProcess]:
    """A real agent with one camera (RTSP only, no ONVIF) already adopted in its store."""
    proc = await rtsp_camera_edge(
        tmp_path / "edge",
        broker,
        central.config.commands.signing_key_file,
        node_id=NODE,
        site=SITE,
        device_id=CAMERA,
        name="Фонтан",
        stream_uri=rtsp.url(),
        live={"linger_s": 2},
    )
    proc.start()
    try:
        yield proc
    finally:
        proc.stop()


async def camera_online(db: Database, edge: EdgeProcess, timeout: float = 40.0) -> None:
    await wait_camera_online(db, NODE, CAMERA, timeout, edge)


async def viewer(browser: Browser, base_url: str, username: str) -> tuple[BrowserContext, Page]:
    context = await browser.new_context(viewport={"width": 1600, "height": 1000}, locale="uk-UA")
    page = await context.new_page()
    await sign_in(page, base_url, username)
    await page.goto(base_url + CAMERA_PAGE)
    return context, page


async def video_plays(page: Page, timeout_ms: float = 15_000) -> dict[str, Any]:
    """Wait until the live view plays; returns the video's size and two readings of currentTime 1 s apart."""
    await page.wait_for_selector('#liveview[data-live="playing"]', timeout=timeout_ms)
    first = await page.evaluate(
        "() => { const v = document.querySelector('#liveview video');"
        " return {w: v.videoWidth, h: v.videoHeight, t: v.currentTime}; }"
    )
    await page.wait_for_timeout(1000)
    later = await page.evaluate("() => document.querySelector('#liveview video').currentTime")
    first_frame_ms = await page.get_attribute("#liveview", "data-first-frame-ms")
    return {**first, "t2": later, "first_frame_ms": int(first_frame_ms or -1)}


def admin_sessions(central: CentralServer) -> list[dict[str, Any]]:
    with httpx.Client(base_url=central.base_url, timeout=10) as client:
        r = client.post("/api/v1/auth/login", json={"username": "admin", "password": PASSWORD})
        assert r.status_code == 200, r.text
        r = client.get("/api/v1/live/sessions")
        assert r.status_code == 200, r.text
        sessions: list[dict[str, Any]] = r.json()
        return sessions


async def test_a_dispatcher_watches_a_camera_live_and_it_ends_clearly_when_the_camera_dies(
    central: CentralServer, db: Database, edge: EdgeProcess, rtsp: RtspServer, browser: Browser
) -> None:
    await camera_online(db, edge)

    # One viewer: the video plays (frames decoded, time advancing), the picture is the camera's size.
    ctx1, page1 = await viewer(browser, central.base_url, "olena")
    played = await video_plays(page1)
    assert (played["w"], played["h"]) == (640, 360), played
    assert played["t2"] > played["t"], played
    assert 0 < played["first_frame_ms"] < 10_000
    await page1.screenshot(path=screenshot_path("live-view-playing"))

    # A second viewer of the same camera shares the node's RTSP pull: still one live client at the server
    # besides the stream monitor's short health probes.
    ctx2, page2 = await viewer(browser, central.base_url, "petro")
    await video_plays(page2)
    sessions = admin_sessions(central)
    assert sorted(s["username"] for s in sessions if s["ended_at"] is None) == ["olena", "petro"]

    # The second viewer leaves (closes the tab): the session ends at central, with start and end.
    await ctx2.close()

    async def petro_ended() -> bool:
        return any(s["username"] == "petro" and s["ended_at"] for s in admin_sessions(central))

    await eventually(petro_ended, 10, "petro's session to end")

    # The camera dies mid-view: the page says so in words, and the session ends with that reason.
    rtsp.stop()
    await page1.wait_for_selector('#liveview[data-live="ended"], #liveview[data-live="error"]', timeout=20_000)
    message = await page1.text_content("#liveview .live__msg")
    assert message is not None and "Камера перестала передавати відео" in message, message
    await page1.screenshot(path=screenshot_path("live-view-source-lost"))

    async def olena_ended() -> bool:
        return any(s["username"] == "olena" and s["end_reason"] == "source_lost" for s in admin_sessions(central))

    await eventually(olena_ended, 10, "olena's session to end with source_lost")
    for s in admin_sessions(central):
        assert s["started_at"] and s["ended_at"] and s["duration_s"] >= 0
    await ctx1.close()


async def eventually(check: Any, timeout: float, what: str) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while loop.time() < deadline:
        if await check():
            return
        await asyncio.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


async def test_the_camera_wall_plays_live_tiles_on_sub_streams(
    central: CentralServer, db: Database, edge: EdgeProcess, browser: Browser
) -> None:
    await camera_online(db, edge)
    context = await browser.new_context(viewport={"width": 1600, "height": 1000}, locale="uk-UA")
    page = await context.new_page()
    await sign_in(page, central.base_url, "olena")
    await page.goto(central.base_url + "/cameras")
    await page.click('[data-layout="4"]')
    assert "live=4" in page.url  # the layout is in the address: a wall screen reopens as it was
    tile = f'.cam[data-device-id="{CAMERA}"] .cam__pic'
    await page.wait_for_selector(f'{tile}[data-live="playing"]', timeout=15_000)
    width = await page.evaluate(f"() => document.querySelector('{tile} video').videoWidth")
    assert width == 640
    (session,) = [s for s in admin_sessions(central) if s["ended_at"] is None]
    assert session["stream"] == "sub" and session["username"] == "olena"
    await page.screenshot(path=screenshot_path("live-wall-4"))

    # The network changes under the wall screen (cable out and back, Wi-Fi → 4G): the tile starts over by itself.
    await context.set_offline(True)
    await context.set_offline(False)

    async def restarted() -> bool:
        sessions = admin_sessions(central)
        return len(sessions) == 2 and any(s["ended_at"] is None for s in sessions)

    await eventually(restarted, 15, "a new live session after the network change")
    await page.wait_for_selector(f'{tile}[data-live="playing"]', timeout=15_000)
    # Back to pictures: the tile's video stops and its session ends.
    await page.click('[data-layout="0"]')

    async def ended() -> bool:
        return all(s["ended_at"] for s in admin_sessions(central))

    await eventually(ended, 10, "the wall's live session to end")
    await context.close()
