"""The alert banner in a real browser: headless Chromium follows a real feed through central's live stream.

central runs under uvicorn in the test's own event loop, with the alert service polling a local feed. The page is
a minimal one holding only the banner (until ``base.html`` includes it on every page), signed in with a session.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import pytest
import uvicorn
from fastapi import FastAPI
from fastapi.responses import HTMLResponse
from playwright.async_api import Page, async_playwright

from central.alerts.banner import banner_context
from central.alerts.poller import AlertService
from central.api import alerts as alerts_api
from central.app import create_app
from central.auth import users as user_service
from central.auth.roles import Role
from central.auth.sessions import COOKIE_NAME, create_session
from central.config import AlertSettings, AlertSourceSettings
from central.dashboard.templating import static_url, templates
from tests.central.alerts.conftest import BUCHA, SITES, TOKEN
from tests.central.test_auth_support import make_config
from tests.support.alert_feed import AlertFeedServer, api_alert
from tests.support.ports import free_port
from varta.contract import utcnow

pytestmark = pytest.mark.browser

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--no-first-run"]


@dataclass
class Live:
    base_url: str
    app: FastAPI
    page: Page


def banner_page(app: FastAPI, service: AlertService) -> None:
    """``GET /test/banner``: the banner alone on a page with the dashboard's shared script."""

    @app.get("/test/banner", response_class=HTMLResponse, include_in_schema=False)
    async def page() -> HTMLResponse:
        services = app.state.services
        async with services.db.session() as session:
            banner = await banner_context(session, services.config, service)
        body = templates().render("_alert_banner.html", {"alert_banner": banner}, language="en")
        return HTMLResponse(
            '<!doctype html><html lang="en"><head><meta charset="utf-8">'
            f'<script src="{static_url("app.js")}" defer></script></head>'
            f'<body data-server-now="{utcnow().isoformat()}"><div id="announcer"></div>{body}'
            '<script type="application/json" id="i18n-data">{}</script></body></html>'
        )


@pytest.fixture
async def live(tmp_path: Path, feed: AlertFeedServer) -> AsyncIterator[Live]:
    config = make_config(
        tmp_path,
        http={"public_url": None},
        sites=SITES,
        alerts=AlertSettings(
            sources=[
                AlertSourceSettings(name="aiu", kind="alerts_in_ua", url=feed.url, token=TOKEN, poll_interval_s=1)
            ],
            stale_after_s=3,
        ),
    )
    app = create_app(config, start_background=False)
    if not any(getattr(r, "path", "").startswith("/api/v1/alerts") for r in app.routes):
        app.include_router(alerts_api.router)
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on"))
    serving = asyncio.create_task(server.serve())
    deadline = time.monotonic() + 20
    while not server.started:
        assert not serving.done() and time.monotonic() < deadline, "central did not start"
        await asyncio.sleep(0.05)
    services = app.state.services
    service = AlertService(config, services.db, services.bus, min_interval_s=0.0)
    services.alerts = service
    banner_page(app, service)
    polling = asyncio.create_task(service.run())
    async with services.db.session() as session:
        user = await user_service.create_user(
            session, username="olena", password="correct horse battery", role=Role.OBSERVER, actor="test"
        )
        token, _ = await create_session(session, user, ttl=timedelta(hours=1))
        await session.commit()
    base_url = f"http://127.0.0.1:{port}"
    try:
        async with async_playwright() as pw:
            browser = await pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
            context = await browser.new_context(timezone_id="Europe/Kyiv")
            await context.add_cookies([{"name": COOKIE_NAME, "value": token, "url": base_url}])
            try:
                yield Live(base_url, app, await context.new_page())
            finally:
                await context.close()
                await browser.close()
    finally:
        polling.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await polling
        server.should_exit = True
        await serving


async def test_the_banner_follows_the_feed_without_a_reload(live: Live, feed: AlertFeedServer) -> None:
    feed.set_active([])
    await live.page.goto(live.base_url + "/test/banner")
    banner = live.page.locator("#alert-banner")
    await banner.wait_for(state="hidden", timeout=10_000)

    feed.set_active([api_alert(1, BUCHA, title="Бучанська громада", oblast_uid=14)])
    strip = live.page.locator('#alert-banner .banner--alert[data-site="bucha-school"]')
    await strip.wait_for(state="visible", timeout=15_000)
    text = await strip.text_content()
    assert text is not None
    assert text.startswith("Air-raid alert: Школа №3, Буча (Бучанська громада) since ")
    assert await live.page.locator("#alert-banner .banner--alert").count() == 1

    feed.set_active([])
    await banner.wait_for(state="hidden", timeout=15_000)
    assert await live.page.locator("#alert-banner .banner--alert").count() == 0


async def test_the_banner_shows_a_grey_note_when_the_feed_goes_stale(live: Live, feed: AlertFeedServer) -> None:
    feed.set_active([])
    await live.page.goto(live.base_url + "/test/banner")
    feed.stop()
    note = live.page.locator('#alert-banner .banner--stale[data-source="aiu"]')
    await note.wait_for(state="visible", timeout=20_000)
    assert "has not answered since" in (await note.text_content() or "")
    feed.start()
    await note.wait_for(state="detached", timeout=20_000)
