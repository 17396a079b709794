"""The kiosk player, for real: the node's agent serves the player page to Chromium in kiosk mode and drives it.

The node runs with its broker unreachable (central down) to show that playing, taking the screen over for a
local siren and looking after the browser need nothing but the node itself.
"""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from nacl.signing import SigningKey
from playwright.async_api import Error as PlaywrightError
from playwright.async_api import Page, async_playwright

from edge.agent import EdgeAgent
from edge.config import EdgeConfig
from edge.kiosks.manager import KioskManager
from tests.edge.kiosks.content_support import Content, bundle, png, webm
from tests.edge.support import NODE, SITE, eventually, running_agent
from tests.support.kiosk_browser import KioskBrowser
from tests.support.ports import free_port
from varta.signing import public_key_text

pytestmark = pytest.mark.slow
ARTIFACTS = Path(__file__).resolve().parents[3] / "test-artifacts"

SHELTER = "Укриття: підземний перехід під Майданом"
RECORD_RESTART = "import sys; open(sys.argv[1], 'a').write('restart\\n')"
BUNDLE_HTML = (
    "<!doctype html><html><head><meta charset='utf-8'><style>body{background:#0a5;color:#fff;font-size:48px}</style>"
    "</head><body><h1 id='t'>Розклад автобусів</h1></body></html>"
)


@dataclass
class KioskRig:
    agent: EdgeAgent
    kiosk: KioskManager
    browser: KioskBrowser
    page: Page
    content: Content
    media: dict[str, Path]
    restarts: Path

    async def mode(self) -> str | None:
        return await self.page.evaluate("document.body.dataset.mode || null")

    async def wait_mode(self, mode: str, timeout: float = 5.0) -> float:
        """Seconds until the page shows *mode*."""
        started = time.monotonic()
        await wait_js(self.page, f"document.body.dataset.mode === '{mode}'", timeout)
        return time.monotonic() - started

    def events(self, kind: str) -> list[dict[str, object]]:
        return [e for e in self.agent_events if e["kind"] == kind]

    @property
    def agent_events(self) -> list[dict[str, object]]:
        return self.agent.recorded_events  # type: ignore[attr-defined, no-any-return]


async def wait_js(page: Page, expression: str, timeout: float = 5.0) -> None:
    """Poll *expression* in the page until it is truthy (the player's CSP forbids Playwright's own eval-based wait;
    evaluate goes through DevTools and is not subject to it)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            if await page.evaluate(expression):
                return
        except PlaywrightError as exc:  # the page is still loading (first navigation): ask again
            if "context was destroyed" not in str(exc):
                raise
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for: {expression}")
        await asyncio.sleep(0.02)


def media(tmp: Path) -> dict[str, Path]:
    tmp.mkdir(parents=True, exist_ok=True)
    return {
        "image": png(tmp / "notice.png", (200, 30, 30)),
        "video": webm(tmp / "clip.webm", seconds=2.0),
        "bundle": bundle(tmp / "timetable.zip", {"index.html": BUNDLE_HTML}),
    }


@pytest.fixture
async def rig(tmp_path: Path) -> AsyncIterator[KioskRig]:
    key = SigningKey.generate()
    files = media(tmp_path / "media")
    content = Content(key)
    restarts = tmp_path / "restarts.log"
    port = free_port()
    browser = KioskBrowser(url=f"http://127.0.0.1:{port}/player", workdir=tmp_path / "browser")
    config = EdgeConfig(
        node_id=NODE,
        site=SITE,
        mqtt={"host": "127.0.0.1", "port": free_port(), "reconnect_min_s": 0.5, "reconnect_max_s": 1.0},
        outbox={"path": tmp_path / "edge" / "outbox.db"},
        commands={"central_public_keys": [public_key_text(key.verify_key)]},
        sirens={
            "enabled": True,
            "sirens": [{"device_id": "siren-1", "inputs": {"kind": "simulated", "contactor": False}}],
        },
        kiosk={
            "enabled": True,
            "listen_port": port,
            "devtools_port": browser.port,
            "content_dir": tmp_path / "edge" / "kiosk",
            "shelter": {"name": SHELTER, "address": "Майдан Незалежності", "distance_m": 120},
            "heartbeat_interval_s": 0.5,
            "heartbeat_timeout_s": 3,
            "restart_grace_s": 1,
            "idle_return_s": 5,
            "restart": {
                "command": [
                    sys.executable,
                    "-c",
                    "import sys; open(sys.argv[1], 'a').write('restart\\n')",
                    str(restarts),
                ],
                "max_per_boot": 2,
                "min_interval_s": 0,
            },
        },
    )
    agent = EdgeAgent(config)
    record_events(agent)
    assert agent.kiosk is not None
    first = content.signed([(files["image"], 2), (files["video"], None), (files["bundle"], 3)])
    async with running_agent(agent, connected=False):
        assert await agent.kiosk.install_content(first, content.files) is not None  # as if downloaded before
        browser.start()
        try:
            async with async_playwright() as pw:
                cdp = await pw.chromium.connect_over_cdp(browser.devtools_url)
                page = cdp.contexts[0].pages[0]
                yield KioskRig(agent, agent.kiosk, browser, page, content, files, restarts)
                await cdp.close()
        finally:
            browser.stop()


def record_events(agent: EdgeAgent) -> None:
    """Keep every event the agent emits (they also go to its outbox: central is down)."""
    recorded: list[dict[str, object]] = []
    original = agent.emit_event

    async def emit(kind: str, *args: object, **kwargs: object) -> int:
        seq = await original(kind, *args, **kwargs)  # type: ignore[arg-type]
        data = kwargs.get("data") if "data" in kwargs else (args[3] if len(args) > 3 else None)
        recorded.append({"kind": kind, "data": data or {}})
        return seq

    agent.emit_event = emit  # type: ignore[method-assign]
    agent.recorded_events = recorded  # type: ignore[attr-defined]


async def item_on_screen(page: Page) -> tuple[str | None, str | None]:
    index, kind = await page.evaluate("[document.body.dataset.item || null, document.body.dataset.itemKind || null]")
    return index, kind


async def test_the_playlist_advances_with_its_durations_and_an_image_a_video_and_a_bundle_render(
    rig: KioskRig,
) -> None:
    page = rig.page
    await rig.wait_mode("playlist", timeout=15)
    await wait_js(page, "document.body.dataset.item === '0'")
    await wait_js(
        page,
        "(() => { const i = document.querySelector('#stage img');"
        " return i && i.complete && i.naturalWidth === 320; })()",
    )
    await wait_js(page, "document.body.dataset.item === '1'", 6)
    assert await item_on_screen(page) == ("1", "video")
    await wait_js(
        page,
        "(() => { const v = document.querySelector('#stage video');"
        " return v && v.readyState >= 2 && v.currentTime > 0.3; })()",
        5,
    )  # the video really plays (decoded frames, time advancing)

    await wait_js(page, "document.body.dataset.item === '2'", 8)  # the video ran to its end
    await eventually(lambda: any("/bundle/" in f.url for f in page.frames), 5, "the bundle's frame")
    frame = next(f for f in page.frames if "/bundle/" in f.url)
    await frame.wait_for_selector("#t")
    assert await frame.inner_text("#t") == "Розклад автобусів"
    await wait_js(page, "document.body.dataset.item === '0'", 8)  # and round again

    # The proof-of-play log (from the page's heartbeats) holds what was on screen and for how long.
    await eventually(lambda: len(rig.kiosk.play_log) >= 3, 5, "three plays logged")
    plays = list(rig.kiosk.play_log)[:3]
    assert [p.kind for p in plays] == ["image", "video", "bundle"]
    assert 1.9 <= plays[0].seconds <= 2.6, f"the image (2 s) was on screen for {plays[0].seconds:.2f} s"
    assert 1.8 <= plays[1].seconds <= 3.5, f"the 2 s video played for {plays[1].seconds:.2f} s"
    assert 2.9 <= plays[2].seconds <= 3.6, f"the bundle (3 s) was on screen for {plays[2].seconds:.2f} s"
    assert rig.kiosk.health.heartbeats > 3
    assert rig.kiosk.health.page_errors == 0


async def test_a_local_siren_takes_the_screen_over_with_central_down_and_the_all_clear_restores_the_playlist(
    rig: KioskRig,
) -> None:
    page = rig.page
    await rig.wait_mode("playlist", timeout=15)
    assert not rig.agent.client.connected.is_set()  # nothing reaches central: the node decides alone
    siren = rig.agent.sirens.simulated("siren-1")  # type: ignore[union-attr]

    started = time.monotonic()
    siren.set(contactor=True)
    await rig.wait_mode("alert", timeout=5)
    took_s = time.monotonic() - started
    text = await page.inner_text("#alert")
    assert "ПОВІТРЯНА ТРИВОГА" in text and SHELTER in text and "120 м" in text
    assert await page.is_hidden("#drill")
    ARTIFACTS.mkdir(exist_ok=True)
    await page.screenshot(path=ARTIFACTS / "kiosk-alert.png")
    assert await page.evaluate("document.querySelectorAll('#stage > *').length") == 0  # nothing else on screen

    await eventually(lambda: bool(rig.events("kiosk.takeover_shown")), 10, "the takeover proof")
    proof = rig.kiosk.proofs[0]
    assert proof["alert_id"] == "siren:siren-1" and proof["source"] == "siren"
    assert isinstance(proof["screenshot_sha256"], str) and len(proof["screenshot_sha256"]) == 64
    assert proof["latency_ms"] is not None
    assert [e["data"]["alert_id"] for e in rig.events("kiosk.takeover_shown")] == ["siren:siren-1"]  # type: ignore[index]
    print(f"siren → alert on screen: {took_s * 1000:.0f} ms (test clock), node's own: {proof['latency_ms']} ms")

    await page.mouse.click(300, 300)  # touches do nothing during an alert
    assert await rig.mode() == "alert"

    siren.set(contactor=False)
    await rig.wait_mode("playlist", timeout=5)
    assert (await item_on_screen(page))[0] == "0"  # a fresh session from the first item


async def test_bad_content_is_refused_with_a_reason_and_the_kiosk_keeps_playing(rig: KioskRig) -> None:
    await rig.wait_mode("playlist", timeout=15)
    generation = await rig.page.evaluate("document.body.dataset.generation")
    tmp = rig.media["image"].parent
    traversal = bundle(tmp / "evil1.zip", {"index.html": "x", "../../etc/cron.d/evil": "* * * * * root sh"})
    symlink = bundle(tmp / "evil2.zip", {"index.html": "x"}, symlinks={"passwd": "/etc/passwd"})
    huge = bundle(tmp / "evil3.zip", {"index.html": "x", "big.bin": b"\0" * (300 * 1024 * 1024)})
    cases = {
        "path_traversal": rig.content.signed([(traversal, 5)]),
        "symlink": rig.content.signed([(symlink, 5)]),
        "too_large": rig.content.signed([(huge, 5)]),
        "bad_signature": rig.content.signed([(rig.media["image"], 5)], key=SigningKey.generate()),
    }
    for expected, signed in cases.items():
        assert await rig.kiosk.install_content(signed, rig.content.files) is None, expected
    codes = [e["data"]["code"] for e in rig.events("kiosk.content_refused")]  # type: ignore[index]
    assert codes[:2] == ["path_traversal", "symlink"]
    assert codes[2] in {"too_large", "zip_bomb"}
    assert codes[3] in {"bad_signature", "unknown_key"}
    details = [e["data"]["detail"] for e in rig.events("kiosk.content_refused")]  # type: ignore[index]
    assert "../../etc/cron.d/evil" in details[0]
    assert not list(rig.kiosk.content.root.rglob("evil"))  # nothing was written anywhere
    for path in (rig.kiosk.content.root / "bundles").iterdir():
        assert not path.is_symlink()

    assert await rig.page.evaluate("document.body.dataset.generation") == generation  # still the first content
    assert await rig.mode() == "playlist"
    assert rig.kiosk.director.state.content_version == 1


async def test_a_silent_player_is_restarted_and_after_the_cap_reported_critical(rig: KioskRig) -> None:
    await rig.wait_mode("playlist", timeout=15)
    await eventually(lambda: rig.kiosk.health.heartbeats > 0, 10, "a heartbeat")
    await rig.page.goto("about:blank")  # the page is gone: no more heartbeats (the restart "command" cannot help)

    await eventually(lambda: bool(rig.events("kiosk.browser_restart_capped")), 30, "the cap")
    assert rig.restarts.read_text().splitlines() == ["restart", "restart"]
    restarted = rig.events("kiosk.browser_restarted")
    assert [e["data"]["restarts_this_boot"] for e in restarted] == [1, 2]  # type: ignore[index]
    capped = rig.events("kiosk.browser_restart_capped")[0]
    assert capped["data"]["restarts_this_boot"] == 2  # type: ignore[index]
    assert rig.kiosk.health.capped


async def test_a_touch_pauses_the_loop_and_the_idle_timeout_returns_to_it(rig: KioskRig) -> None:
    page = rig.page
    await rig.wait_mode("playlist", timeout=15)
    await wait_js(page, "document.body.dataset.item === '0'", 10)
    await page.mouse.click(400, 300)  # a resident touches the screen
    await wait_js(page, "document.body.dataset.touching === '1'", 2)
    await asyncio.sleep(3)  # longer than the image's 2 s: the loop does not move on while someone reads
    assert (await item_on_screen(page))[0] == "0"
    await eventually(lambda: rig.kiosk.health.beat is not None and rig.kiosk.health.beat.touching, 3, "the touch")
    # idle_return_s is 5 s: the loop comes back by itself
    await wait_js(page, "document.body.dataset.touching === undefined && document.body.dataset.item === '1'", 8)
