"""Browser tests: a real central (uvicorn in a thread) on a real Mosquitto, driven by headless Chromium."""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

import pytest
import uvicorn
from playwright.async_api import Browser, Page, ViewportSize, async_playwright

from central.app import create_app
from central.auth.bootstrap import ensure_user
from central.auth.roles import Role
from central.config import CentralConfig, CommandSettings
from central.store import queries
from central.store.db import Database
from tests.support.broker import Broker
from tests.support.ports import free_port
from varta.contract import utcnow
from varta.mqtt import MqttClient

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
WALL_SCREEN: ViewportSize = {"width": 1920, "height": 1080}
PASSWORD = "dispatch-room-2024"


@dataclass
class CentralServer:
    """central (with its MQTT ingest) served by uvicorn in a background thread; can be stopped and restarted."""

    config: CentralConfig
    port: int = field(default_factory=free_port)
    server: uvicorn.Server | None = None
    thread: threading.Thread | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        app = create_app(self.config)
        self.server = uvicorn.Server(
            uvicorn.Config(
                app,
                host="127.0.0.1",
                port=self.port,
                log_level="warning",
                access_log=False,
                timeout_graceful_shutdown=1,
            )
        )
        self.thread = threading.Thread(target=self.server.run, name="central", daemon=True)
        self.thread.start()
        deadline = time.monotonic() + 20
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("central did not start")
            time.sleep(0.05)

    def stop(self) -> None:
        if self.server is not None and self.thread is not None:
            self.server.should_exit = True
            self.thread.join(timeout=20)
            assert not self.thread.is_alive(), "central did not stop"
        self.server = None
        self.thread = None


@pytest.fixture
def central(broker: Broker, tmp_path: Path) -> Iterator[CentralServer]:
    config = CentralConfig(
        instance_id="central-browser",
        database_url=f"sqlite+aiosqlite:///{tmp_path}/central.db",
        data_dir=tmp_path,
        mqtt=broker.settings(session_expiry_s=3600).model_dump(),
        commands=CommandSettings(signing_key_file=tmp_path / "signing.key"),
        offline_after_s=3600,
    )
    server = CentralServer(config)
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
async def db(central: CentralServer) -> AsyncIterator[Database]:
    """A second connection to central's (already migrated) database, for set-up and checks."""
    database = Database(central.config.database_url)
    try:
        yield database
    finally:
        await database.dispose()


@pytest.fixture
async def dispatcher(db: Database) -> str:
    """A dispatcher account; returns its username (password: :data:`PASSWORD`)."""
    await ensure_user(db, "olena", PASSWORD, Role.DISPATCHER)
    return "olena"


@pytest.fixture
async def publisher(broker: Broker) -> AsyncIterator[MqttClient]:
    """An MQTT client standing in for edge nodes."""
    client = MqttClient(broker.settings(), client_id=f"edge-sim-{uuid.uuid4().hex[:6]}", clean_start=True)
    task = asyncio.create_task(client.run())
    await client.wait_connected(10)
    try:
        yield client
    finally:
        await client.stop()
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    async with async_playwright() as pw:
        chromium = await pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        try:
            yield chromium
        finally:
            await chromium.close()


@pytest.fixture
async def page(browser: Browser) -> AsyncIterator[Page]:
    context = await browser.new_context(viewport=WALL_SCREEN, locale="uk-UA", timezone_id="Europe/Kyiv")
    try:
        yield await context.new_page()
    finally:
        await context.close()


async def wait_for_nodes(
    db: Database, count: int, *, history: tuple[str, int] | None = None, timeout: float = 30.0
) -> None:
    """Wait until central's ingest stored *count* nodes and, if given, (node, n) health samples of one node."""
    deadline = time.monotonic() + timeout
    while True:
        async with db.session() as session:
            nodes = await queries.list_nodes(session)
            samples = 0
            if history is not None:
                samples = len(await queries.health_history(session, history[0], utcnow() - timedelta(days=2)))
        if len(nodes) >= count and (history is None or samples >= history[1]):
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"central stored {len(nodes)} nodes and {samples} samples in {timeout} s")
        await asyncio.sleep(0.1)


async def sign_in(page: Page, base_url: str, username: str, password: str = PASSWORD) -> None:
    """Open the dashboard, get sent to the login form, fill it in and land on the fleet page."""
    await page.goto(base_url + "/")
    assert "/login" in page.url
    await page.fill("#username", username)
    await page.fill("#password", password)
    await page.click("form.form button[type=submit]")
    await page.wait_for_url(base_url + "/")


def screenshot_path(name: str) -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    return ARTIFACTS / f"{name}.png"
