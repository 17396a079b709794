"""Kiosks with central: an official alert for the kiosk's area reaches its screen and the proof reaches central; a
kiosk browser that stays silent after its restarts becomes an incident dispatchers see."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.async_api import Page, async_playwright

from edge.agent import EdgeAgent
from edge.config import EdgeConfig
from tests.edge.kiosks.content_support import bundle, png
from tests.edge.kiosks.test_player import BUNDLE_HTML, RECORD_RESTART, SHELTER, wait_js
from tests.support.alert_feed import AlertFeedServer, api_alert
from tests.support.broker import Broker
from tests.support.kiosk_browser import KioskBrowser
from tests.support.ports import free_port
from tests.support.stack import CentralProcess

pytestmark = pytest.mark.slow

SITE, NODE, REGION = "podil", "kiosk-podil-1", "1401"


@dataclass
class Community:
    central: CentralProcess
    feed: AlertFeedServer
    agent: EdgeAgent
    page: Page
    api: httpx.AsyncClient
    restarts: Path
    media: Path

    async def events(self, kind: str) -> list[dict[str, Any]]:
        events = (await self.api.get("/api/v1/events", params={"limit": 1000})).json()
        return [e for e in events if e["kind"] == kind]


async def eventually_async(check: Any, timeout: float, what: str) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not await check():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        await asyncio.sleep(0.2)


@pytest.fixture
async def community(broker: Broker, tmp_path: Path) -> AsyncIterator[Community]:
    feed = AlertFeedServer(token="feed-token").start()
    central = CentralProcess(
        tmp_path / "central",
        broker,
        extra={
            "sites": {SITE: {"name": "Поділ", "regions": [REGION]}},
            "alerts": {
                "sources": [
                    {"name": "ua", "kind": "alerts_in_ua", "url": feed.url, "token": "feed-token", "poll_interval_s": 1}
                ]
            },
            "incidents": {"camera_fault_delay_s": 0, "evaluate_interval_s": 0.2},
        },
    )
    await asyncio.to_thread(central.start)
    media = tmp_path / "media"
    media.mkdir()
    port = free_port()
    browser = KioskBrowser(url=f"http://127.0.0.1:{port}/player", workdir=tmp_path / "browser")
    restarts = tmp_path / "restarts.log"
    config = EdgeConfig(
        node_id=NODE,
        site=SITE,
        mqtt={"host": "127.0.0.1", "port": broker.port, "reconnect_max_s": 1.0},
        outbox={"path": tmp_path / "edge" / "outbox.db"},
        commands={"central_public_keys": [central.public_key()]},
        kiosk={
            "enabled": True,
            "name": "Контрактова площа",
            "listen_port": port,
            "devtools_port": browser.port,
            "content_dir": tmp_path / "edge" / "kiosk",
            "shelter": {"name": SHELTER},
            "heartbeat_interval_s": 0.5,
            "heartbeat_timeout_s": 2,
            "restart_grace_s": 1,
            "restart": {"command": [sys.executable, "-c", RECORD_RESTART, str(restarts)], "max_per_boot": 1},
        },
    )
    agent = EdgeAgent(config)
    assert agent.kiosk is not None
    stop = asyncio.Event()
    running = asyncio.create_task(agent.run(stop))
    try:
        await agent.wait_ready(20)
        browser.start()
        async with (
            async_playwright() as pw,
            httpx.AsyncClient(
                base_url=central.url, headers={"Authorization": f"Bearer {central.token}"}, timeout=30
            ) as api,
        ):
            image = png(media / "notice.png", (20, 20, 160))
            timetable = bundle(media / "timetable.zip", {"index.html": BUNDLE_HTML})
            await publish(api, "main", [image, timetable])
            cdp = await pw.chromium.connect_over_cdp(browser.devtools_url)
            page = cdp.contexts[0].pages[0]
            await wait_js(page, "document.body.dataset.mode === 'playlist'", 30)
            yield Community(central, feed, agent, page, api, restarts, media)
            await cdp.close()
    finally:
        browser.stop()
        stop.set()
        await asyncio.wait_for(running, 20)
        await asyncio.to_thread(central.stop)
        feed.stop()


async def publish(api: httpx.AsyncClient, playlist: str, files: list[Path]) -> dict[str, Any]:
    """What an operator does: upload the files, make them a playlist, play it on the kiosk, publish."""

    async def kiosk_known() -> bool:
        kiosks = (await api.get("/api/v1/kiosk/kiosks")).json()
        return any(k["node_id"] == NODE and k["device_id"] for k in kiosks)

    await eventually_async(kiosk_known, 20, "the kiosk at central")
    items = []
    for path in files:
        uploaded = await api.post("/api/v1/kiosk/assets", files={"file": (path.name, path.read_bytes())})
        assert uploaded.status_code in (200, 201), uploaded.text
        items.append({"asset": uploaded.json()["sha256"], "duration_s": 3, "title": path.stem})
    saved = await api.put(f"/api/v1/kiosk/playlists/{playlist}", json={"name": playlist, "items": items})
    assert saved.status_code == 200, saved.text
    default = await api.put(f"/api/v1/kiosk/kiosks/{NODE}/default-playlist", json={"playlist_id": playlist})
    assert default.status_code == 200, default.text
    report = await api.post("/api/v1/kiosk/publish")
    assert report.status_code == 200, report.text
    result: dict[str, Any] = report.json()
    return result


async def test_an_official_alert_for_the_kiosks_area_reaches_its_screen_and_the_proof_reaches_central(
    community: Community,
) -> None:
    c = community
    c.feed.set_active([api_alert(501, REGION, title="Подільський район", location_type="raion")])
    await wait_js(c.page, "document.body.dataset.mode === 'alert'", 30)
    text = await c.page.inner_text("#alert")
    assert "ПОВІТРЯНА ТРИВОГА" in text and SHELTER in text and "Подільський район" in text

    async def proof_arrived() -> bool:
        return bool(await c.events("kiosk.takeover_shown"))

    await eventually_async(proof_arrived, 20, "the takeover proof at central")
    proof = (await c.events("kiosk.takeover_shown"))[0]
    assert proof["node_id"] == NODE and proof["device_id"] == "kiosk"
    assert proof["data"]["source"] == "official" and proof["data"]["alert_id"].startswith("alert-")
    assert len(proof["data"]["screenshot_sha256"]) == 64

    c.feed.set_active([])  # the all-clear
    await wait_js(c.page, "document.body.dataset.mode === 'playlist'", 30)


async def test_a_kiosk_browser_silent_after_its_restarts_becomes_an_incident(community: Community) -> None:
    c = community
    await c.page.goto("about:blank")  # the player is gone and the restart (a recording stub) does not bring it back

    async def incident_open() -> bool:
        response = await c.api.get("/api/v1/incidents", params={"state": "open"})
        return any(NODE in str(i) for i in response.json())

    await eventually_async(incident_open, 40, "an open incident for the kiosk")
    assert c.restarts.read_text().splitlines() == ["restart"]
    capped = await c.events("kiosk.browser_restart_capped")
    assert capped and capped[0]["severity"] == "critical"
    node = (await c.api.get(f"/api/v1/nodes/{NODE}")).json()
    kiosk = next(d for d in node["devices"] if d["device_id"] == "kiosk")
    assert kiosk["status"] == "offline" and kiosk["reason"] == "browser_unresponsive"


async def test_content_published_at_central_is_downloaded_verified_and_played_and_the_kiosk_confirms_it(
    community: Community,
) -> None:
    c = community

    async def confirmed(version: int) -> bool:
        kiosk = next(k for k in (await c.api.get("/api/v1/kiosk/kiosks")).json() if k["node_id"] == NODE)
        return bool(kiosk["confirmed_version"] == version)

    await eventually_async(lambda: confirmed(1), 20, "version 1 confirmed at central")
    assert await c.page.evaluate("document.body.dataset.itemKind") in {"image", "bundle"}
    assert c.agent.kiosk is not None and c.agent.kiosk.content.current_version == 1

    poster = png(c.media / "poster.png", (250, 200, 40), width=200, height=100)
    report = await publish(c.api, "evening", [poster])
    assert [r["status"] for r in report["results"]] == ["published"]
    await eventually_async(lambda: confirmed(2), 30, "version 2 confirmed at central")
    await wait_js(
        c.page, "(() => { const i = document.querySelector('#stage img'); return i && i.naturalWidth === 200; })()", 10
    )
    again = (await c.api.post("/api/v1/kiosk/publish")).json()
    assert [r["status"] for r in again["results"]] == ["unchanged"]


async def test_an_operator_gets_a_fresh_screenshot_of_what_the_kiosk_shows(community: Community) -> None:
    c = community
    asked = await c.api.post(f"/api/v1/kiosk/kiosks/{NODE}/screenshot")
    assert asked.status_code == 202, asked.text

    async def arrived() -> bool:
        return (await c.api.get(f"/api/v1/kiosk/kiosks/{NODE}/screenshot")).status_code == 200

    await eventually_async(arrived, 20, "the screenshot at central")
    shot = await c.api.get(f"/api/v1/kiosk/kiosks/{NODE}/screenshot")
    assert shot.headers["content-type"] == "image/jpeg" and shot.content.startswith(b"\xff\xd8\xff")
    assert int(shot.headers["x-width"]) > 100 and shot.headers["x-taken-at"]
