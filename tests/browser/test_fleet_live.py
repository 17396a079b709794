"""The fleet page in a real browser follows node availability live, over SSE, without reloading."""

from __future__ import annotations

import pytest
from playwright.async_api import Page, expect

from central.store.db import Database
from tests.browser.conftest import CentralServer, screenshot_path, sign_in, wait_for_nodes
from tests.browser.seed import (
    Fleet,
    SimNode,
    publish_availability,
    publish_birth,
    publish_event,
    publish_fleet,
)
from varta.contract import Severity
from varta.mqtt import MqttClient

pytestmark = pytest.mark.browser

ONLINE = "Онлайн"
OFFLINE = "Офлайн"


def card(page: Page, node_id: str):  # type: ignore[no-untyped-def]
    return page.locator(f'.node[data-node-id="{node_id}"]')


async def mark_page_load(page: Page) -> tuple[str, list[str]]:
    """Set a random marker in the page's JS state and start counting main-frame navigations."""
    marker = await page.evaluate("() => (window.__vartaTestMarker = String(Math.random()))")
    navigations: list[str] = []
    page.on("framenavigated", lambda frame: navigations.append(frame.url) if frame == page.main_frame else None)
    return marker, navigations


async def assert_not_reloaded(page: Page, marker: str, navigations: list[str]) -> None:
    assert await page.evaluate("() => window.__vartaTestMarker") == marker
    assert navigations == []


async def test_node_card_follows_availability_without_reload(
    central: CentralServer, db: Database, dispatcher: str, publisher: MqttClient, page: Page
) -> None:
    fleet = Fleet()
    await publish_fleet(publisher, fleet)
    await wait_for_nodes(db, len(fleet.nodes), history=(fleet.maidan.node_id, 100))
    await sign_in(page, central.base_url, dispatcher)

    await expect(page.locator("#live")).to_have_class("live live--ok", timeout=10_000)
    maidan = card(page, fleet.maidan.node_id)
    await expect(maidan.locator('[data-field="status-text"]')).to_have_text(ONLINE)
    await expect(card(page, fleet.school.node_id).locator('[data-field="status-text"]')).to_have_text(OFFLINE)
    await expect(page.locator('[data-counter="offline"]')).to_have_text("1")
    await expect(page.locator('[data-counter="online"]')).to_have_text("3")
    marker, navigations = await mark_page_load(page)
    await page.screenshot(path=screenshot_path("fleet-1-initial"), full_page=True)

    await publish_availability(publisher, fleet.maidan, "offline", "last_will")

    await expect(maidan.locator('[data-field="status-text"]')).to_have_text(OFFLINE, timeout=10_000)
    await expect(maidan).to_have_class("node is-offline is-changed")
    await expect(maidan.locator('[data-field="reason"]')).to_have_text("зв’язок втрачено")
    await expect(page.locator('[data-counter="offline"]')).to_have_text("2")
    await expect(page.locator('[data-counter="online"]')).to_have_text("2")
    # Offline nodes come first in their site.
    await expect(page.locator('.site[data-site="center"] .node').first).to_have_attribute(
        "data-node-id", fleet.maidan.node_id
    )
    await assert_not_reloaded(page, marker, navigations)
    await page.screenshot(path=screenshot_path("fleet-2-node-offline"), full_page=True)

    await publish_availability(publisher, fleet.maidan, "online")

    await expect(maidan.locator('[data-field="status-text"]')).to_have_text(ONLINE, timeout=10_000)
    await expect(page.locator('[data-counter="offline"]')).to_have_text("1")
    await assert_not_reloaded(page, marker, navigations)


async def test_a_new_node_appears_live_in_a_new_site(
    central: CentralServer, db: Database, dispatcher: str, publisher: MqttClient, page: Page
) -> None:
    fleet = Fleet()
    await publish_fleet(publisher, fleet, history_hours=0)
    await wait_for_nodes(db, len(fleet.nodes))
    await sign_in(page, central.base_url, dispatcher)
    await expect(page.locator("#live")).to_have_class("live live--ok", timeout=10_000)
    marker, navigations = await mark_page_load(page)
    newcomer = SimNode("south", "bridge-05", "Міст Патона")

    await publish_birth(publisher, newcomer)
    await publish_availability(publisher, newcomer, "online")

    new_card = card(page, newcomer.node_id)
    await expect(new_card.locator('[data-field="status-text"]')).to_have_text(ONLINE, timeout=10_000)
    await expect(new_card.locator('[data-field="name"]')).to_have_text("Міст Патона")
    await expect(new_card.locator('[data-field="link"]')).to_have_attribute("href", "/nodes/bridge-05")
    await expect(page.locator('.site[data-site="south"] [data-field="site-name"]')).to_have_text("south")
    await expect(page.locator('[data-counter="nodes"]')).to_have_text(str(len(fleet.nodes) + 1))
    await expect(page.locator('[data-counter="online"]')).to_have_text(str(len(fleet.nodes)))
    await assert_not_reloaded(page, marker, navigations)


async def test_live_indicator_shows_a_lost_stream_and_catches_up_after_it_returns(
    central: CentralServer, db: Database, dispatcher: str, publisher: MqttClient, page: Page
) -> None:
    fleet = Fleet()
    await publish_fleet(publisher, fleet, history_hours=0)
    await wait_for_nodes(db, len(fleet.nodes))
    await sign_in(page, central.base_url, dispatcher)
    await expect(page.locator("#live")).to_have_class("live live--ok", timeout=10_000)
    await expect(page.locator("#live-banner")).to_be_hidden()
    marker, navigations = await mark_page_load(page)

    central.stop()

    await expect(page.locator("#live")).to_have_class("live live--lost", timeout=10_000)
    await expect(page.locator("#live-banner")).to_be_visible()
    await page.screenshot(path=screenshot_path("fleet-3-stream-lost"), full_page=False)
    # While central is down, a node loses power; the broker keeps its retained last will.
    await publish_availability(publisher, fleet.park, "offline", "last_will")

    central.start()

    await expect(page.locator("#live")).to_have_class("live live--ok", timeout=30_000)
    await expect(page.locator("#live-banner")).to_be_hidden()
    await expect(card(page, fleet.park.node_id).locator('[data-field="status-text"]')).to_have_text(
        OFFLINE, timeout=15_000
    )
    await assert_not_reloaded(page, marker, navigations)


async def test_node_page_shows_history_and_new_events_live(
    central: CentralServer, db: Database, dispatcher: str, publisher: MqttClient, page: Page
) -> None:
    fleet = Fleet()
    await publish_fleet(publisher, fleet)
    await wait_for_nodes(db, len(fleet.nodes), history=(fleet.maidan.node_id, 100))
    await sign_in(page, central.base_url, dispatcher)
    await card(page, fleet.maidan.node_id).locator('[data-field="link"]').click()
    await page.wait_for_url(f"{central.base_url}/nodes/{fleet.maidan.node_id}")

    await expect(page.locator("#live")).to_have_class("live live--ok", timeout=10_000)
    await expect(page.locator("#chart-cpu-caption")).to_contain_text("серед.")
    assert await page.locator("figure.chart polyline.chart__line").count() >= 3
    await expect(page.locator("#gaps-title")).to_have_count(0)  # every message the node sent arrived
    await expect(page.locator('#devices tr[data-device-id="cam-4"]')).to_contain_text("з проблемами")
    marker, navigations = await mark_page_load(page)

    await publish_event(publisher, fleet.maidan, "siren.test", "Scheduled siren test", Severity.WARNING, "siren-1")

    newest = page.locator("#events tr").first
    await expect(newest).to_contain_text("siren.test", timeout=10_000)
    await expect(newest).to_contain_text("Scheduled siren test")
    await assert_not_reloaded(page, marker, navigations)
    await page.screenshot(path=screenshot_path("node-1-page"), full_page=True)
