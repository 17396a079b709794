"""`varta demo` as a new user meets it: started as a command, it shows every part built so far — here the
newest, live video of the demo's real camera in the browser, a plain "no video" for its simulated ones, and its siren
watched while central reads the demo's alert feed."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.async_api import Browser

from tests.browser.conftest import browser, screenshot_path
from tests.support.ports import free_port
from tests.support.processes import end_process

pytestmark = [pytest.mark.slow, pytest.mark.browser]
__all__ = ["browser"]  # headless Chromium, as in the browser tests

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def demo(tmp_path: Path) -> Iterator[tuple[str, list[str]]]:
    """``varta demo`` in *tmp_path*; yields the dashboard URL once the real camera node is up, and its output."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("VARTA_")}
    env["PYTHONUNBUFFERED"] = "1"
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "varta.cli", "demo", "--port", str(port), "--nodes", "1"],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    lines: list[str] = []
    try:
        assert proc.stdout is not None
        deadline = time.monotonic() + 60
        url = None
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            lines.append(line.rstrip())
            match = re.search(r"Dashboard:\s+(http://127\.0\.0\.1:\d+)/", line)
            if match:
                url = match.group(1)
            if "Real camera:" in line:
                break
        assert url is not None and any("Real camera:" in x for x in lines), "\n".join(lines)
        yield url, lines
    finally:
        end_process(proc, signal.SIGINT, 20)


async def test_the_demo_plays_its_real_camera_live(demo: tuple[str, list[str]], browser: Browser) -> None:
    url, lines = demo
    assert any("observer" in x for x in lines)  # the banner lists the logins, the observer too
    page = await browser.new_page(viewport={"width": 1600, "height": 1000}, locale="uk-UA")
    await page.goto(url + "/login")
    await page.fill("#username", "dispatcher")
    await page.fill("#password", "varta-demo-dispatcher")
    await page.click("form.form button[type=submit]")
    await page.wait_for_url(url + "/")
    await page.goto(url + "/cameras/camera-node/cam-square-rtsp")
    await page.wait_for_selector('#liveview[data-live="playing"]', timeout=30_000)
    assert await page.evaluate("() => document.querySelector('#liveview video').videoWidth") > 0
    await page.screenshot(path=screenshot_path("demo-live-camera"))

    # A simulated camera has pictures but no video: the page says so instead of spinning.
    await page.goto(url + "/cameras")
    first_simulated = page.locator('.cam:not([data-node-id="camera-node"]) a.cam__link').first
    await first_simulated.click()
    await page.wait_for_selector('#liveview[data-live="error"]', timeout=20_000)
    message = await page.text_content("#liveview .live__msg")
    assert message is not None and "simulated camera" in message

    # Its siren is on the siren panel, and the demo's alert feed is being read.
    await page.goto(url + "/sirens")
    await page.get_by_text("Сирена на міській раді").wait_for(timeout=20_000)
    await page.screenshot(path=screenshot_path("demo-sirens"))
    sources = await page.evaluate("() => fetch('/api/v1/alerts/sources').then(r => r.json())")
    assert [s["name"] for s in sources["sources"]] == ["demo"]


async def test_the_demo_kiosk_plays_its_signed_content(demo: tuple[str, list[str]], browser: Browser) -> None:
    _, lines = demo
    player = next(m.group(1) for x in lines if (m := re.search(r"Kiosk player \(node-1\):\s+(\S+/player)", x)))
    page = await browser.new_page(viewport={"width": 1280, "height": 720})
    await page.goto(player)
    deadline = time.monotonic() + 20
    while await page.evaluate("document.body.dataset.mode || ''") != "playlist":
        assert time.monotonic() < deadline, "the demo kiosk never started its playlist"
        await page.wait_for_timeout(100)
    while not any("/bundle/" in f.url for f in page.frames):  # the welcome bundle, in its sandboxed frame
        assert time.monotonic() < deadline, "the demo kiosk's welcome bundle never showed"
        await page.wait_for_timeout(100)
    assert await page.evaluate("document.body.dataset.itemKind") == "bundle"
    await page.screenshot(path=screenshot_path("demo-kiosk-playlist"))
