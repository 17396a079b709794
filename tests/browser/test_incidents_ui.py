"""Incidents, sirens and the report in a real browser: what a dispatcher sees at 3 a.m. and what IT downloads.

The incidents come from central's own incident engine: an edge node (simulated over MQTT) reports a siren
sounding with no official alert, and after ``incidents.unexpected_activation_delay_s`` the engine opens an
``unexpected_activation`` incident, which reaches the page over SSE.
"""

from __future__ import annotations

import asyncio
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from playwright.async_api import Page, expect
from sqlalchemy import select

from central.store.db import Database
from central.store.fleet_models import DeviceStateRecord, Node
from central.store.incident_models import Incident, Outage
from tests.browser.conftest import CentralServer, screenshot_path, sign_in, wait_for_nodes
from tests.browser.seed import SimNode, publish_availability, publish_birth
from tests.browser.test_fleet_live import assert_not_reloaded, mark_page_load
from tests.central.reports.pdf_text import page_count, page_texts
from varta.contract import SIREN_STATUS, Channel, DeviceKind, DeviceState, SirenState, encode, topic, utcnow
from varta.mqtt import MqttClient

pytestmark = pytest.mark.browser


@pytest.fixture
def school() -> SimNode:
    """A fresh boot of the school's node for each test."""
    return SimNode("school", "school-01", "Школа №3, дах")


async def publish_siren(
    client: MqttClient, node: SimNode, device_id: str, name: str, state: SirenState, **attrs: Any
) -> None:
    """A siren's retained state, as the edge agent's siren monitor publishes it."""
    message = DeviceState(
        node_id=node.node_id,
        boot_id=node.boot_id,
        seq=node.next_seq(),
        ts=utcnow(),
        device_id=device_id,
        kind=DeviceKind.SIREN,
        name=name,
        status=SIREN_STATUS[state],
        reason=state.value,
        attrs={
            "supply": state != SirenState.UNPOWERED,
            "contactor": state == SirenState.SOUNDING,
            "fault": False,
            **attrs,
        },
    )
    await client.publish(topic(node.site, node.node_id, Channel.STATE, device_id), encode(message), qos=1, retain=True)


async def bring_up(client: MqttClient, db: Database, node: SimNode) -> None:
    await publish_birth(client, node)
    await publish_availability(client, node, "online")
    await wait_for_nodes(db, 1)


async def stored_incidents(db: Database) -> list[Incident]:
    async with db.session() as session:
        return list((await session.scalars(select(Incident).order_by(Incident.id))).all())


async def open_incidents_page(page: Page, central: CentralServer, dispatcher: str) -> None:
    await sign_in(page, central.base_url, dispatcher)
    await page.goto(central.base_url + "/incidents")
    await expect(page.locator("#live")).to_have_class("live live--ok", timeout=10_000)


async def test_a_new_incident_appears_live_with_the_alarm_and_is_acknowledged(
    central: CentralServer, db: Database, dispatcher: str, publisher: MqttClient, page: Page, school: SimNode
) -> None:
    await bring_up(publisher, db, school)
    await publish_siren(publisher, school, "siren-1", "Сирена на даху", SirenState.IDLE)
    await open_incidents_page(page, central, dispatcher)
    sound = page.locator("#sound")
    await expect(sound).to_have_attribute("data-sound", "blocked")  # the browser waits for a click
    await expect(page.locator("#no-open")).to_be_visible()
    await page.screenshot(path=screenshot_path("incidents-1-quiet"), full_page=True)

    await page.get_by_role("button", name="Увімкнути звук тривоги").click()
    await expect(sound).to_have_attribute("data-sound", "on")
    marker, navigations = await mark_page_load(page)

    await publish_siren(publisher, school, "siren-1", "Сирена на даху", SirenState.SOUNDING)

    row = page.locator("#open-incidents [data-incident-id]")
    await expect(row).to_have_count(1, timeout=30_000)
    await expect(row).to_contain_text("Сирена звучить без тривоги")
    await expect(row.locator(".inc__site")).to_have_text("school")
    await expect(sound).to_have_attribute("data-beeps", "1")
    await expect(page.locator('[data-counter="unacknowledged"]')).to_have_text("1")
    await page.screenshot(path=screenshot_path("incidents-2-new"), full_page=True)

    await row.get_by_role("button", name="Підтвердити").click()

    await expect(row.locator(".inc__acked")).to_contain_text("Підтвердив(ла) olena", timeout=10_000)
    await expect(page.locator('[data-counter="unacknowledged"]')).to_have_text("0")
    incidents = await stored_incidents(db)
    assert [(i.type, i.acknowledged_by) for i in incidents] == [("unexpected_activation", "olena")]

    await publish_siren(publisher, school, "siren-1", "Сирена на даху", SirenState.IDLE)

    closed = page.locator("#closed-incidents [data-incident-id]")
    await expect(closed).to_have_count(1, timeout=30_000)
    await expect(page.locator("#open-incidents [data-incident-id]")).to_have_count(0)
    await expect(sound).to_have_attribute("data-beeps", "1")  # closing is not an alarm
    await assert_not_reloaded(page, marker, navigations)
    await page.screenshot(path=screenshot_path("incidents-3-closed"), full_page=True)

    await closed.get_by_role("link").click()
    await page.wait_for_url(f"{central.base_url}/incidents/{incidents[0].id}")
    await page.fill("#note-text", "Перевірили: тестове ввімкнення підрядником")
    await page.get_by_role("button", name="Додати нотатку").click()
    await expect(page.locator("#notes .note").first).to_contain_text("тестове ввімкнення підрядником", timeout=10_000)
    await expect(page.locator("#timeline")).to_contain_text("Інцидент закрито")
    await page.screenshot(path=screenshot_path("incidents-4-detail"), full_page=True)


async def test_a_muted_page_stays_muted_after_a_reload_and_stays_silent(
    central: CentralServer, db: Database, dispatcher: str, publisher: MqttClient, page: Page, school: SimNode
) -> None:
    await bring_up(publisher, db, school)
    await open_incidents_page(page, central, dispatcher)
    await page.get_by_role("button", name="Увімкнути звук тривоги").click()
    await page.get_by_role("button", name="Вимкнути звук").click()
    await expect(page.locator("#sound")).to_have_attribute("data-sound", "off")

    await page.reload()
    await expect(page.locator("#live")).to_have_class("live live--ok", timeout=10_000)
    await expect(page.locator("#sound")).to_have_attribute("data-sound", "off")
    await publish_siren(publisher, school, "siren-2", "Сирена біля стадіону", SirenState.SOUNDING)

    await expect(page.locator("#open-incidents [data-incident-id]")).to_have_count(1, timeout=30_000)
    await expect(page.locator("#sound")).to_have_attribute("data-beeps", "0")


async def test_the_siren_panel_shows_a_siren_sounding_live(
    central: CentralServer, db: Database, dispatcher: str, publisher: MqttClient, page: Page, school: SimNode
) -> None:
    await bring_up(publisher, db, school)
    last = (utcnow() - timedelta(days=6, hours=2)).isoformat()
    await publish_siren(
        publisher, school, "siren-1", "Сирена на даху", SirenState.IDLE, last_sounded_at=last, last_sounding_s=62
    )
    await publish_siren(publisher, school, "siren-2", "Сирена біля стадіону", SirenState.FAULT)
    await sign_in(page, central.base_url, dispatcher)
    await page.get_by_role("link", name="Сирени").click()
    await page.wait_for_url(central.base_url + "/sirens")
    await expect(page.locator("#live")).to_have_class("live live--ok", timeout=10_000)
    card = page.locator('.siren[data-device-id="siren-1"]')
    await expect(card).to_have_class("siren siren--idle")
    await expect(card.locator('[data-field="last-sounded"]')).to_contain_text("протягом 1 хв 02 с")
    marker, navigations = await mark_page_load(page)

    await publish_siren(
        publisher, school, "siren-1", "Сирена на даху", SirenState.SOUNDING, last_sounded_at=last, last_sounding_s=62
    )

    await expect(card).to_have_class("siren siren--sounding is-unexpected", timeout=10_000)
    await expect(card.locator('[data-field="state"]')).to_have_text("звучить")
    await expect(card.locator('[data-field="flag"]')).to_have_text("Звучить без офіційної тривоги")
    await expect(page.locator('[data-counter="sounding"]')).to_have_text("1")
    await expect(page.locator('.siren[data-device-id="siren-2"]')).to_have_class("siren siren--fault")
    await assert_not_reloaded(page, marker, navigations)
    await page.screenshot(path=screenshot_path("sirens-1-sounding"), full_page=True)


async def test_the_report_page_lists_devices_and_downloads_pdf_and_csv(
    central: CentralServer, db: Database, dispatcher: str, publisher: MqttClient, page: Page, school: SimNode
) -> None:
    await bring_up(publisher, db, school)
    await publish_siren(publisher, school, "siren-1", "Сирена на даху", SirenState.IDLE)
    now = utcnow()
    async with db.session() as session:
        node = await session.get(Node, school.node_id)
        assert node is not None
        node.first_seen = now - timedelta(days=40)
        session.add(
            Outage(
                node_id=school.node_id,
                device_id="siren-1",
                kind="siren",
                site="school",
                cause="power",
                started_at=now - timedelta(hours=3),
                ended_at=now - timedelta(hours=2),
            )
        )
        await session.commit()
    await wait_for_siren_row(db, school)
    await sign_in(page, central.base_url, dispatcher)
    await page.get_by_role("link", name="Звіти").click()
    await page.wait_for_url(central.base_url + "/reports/availability")

    row = page.locator('#report-devices tr[data-device-id="siren-1"]')
    await expect(row).to_contain_text("Сирена на даху")
    await expect(row.locator('[data-field="uptime"]')).not_to_have_text("100,00")
    await page.screenshot(path=screenshot_path("report-1-page"), full_page=True)

    async with page.expect_download() as pdf_info:
        await page.locator("#pdf-link").click()
    pdf = await pdf_info.value
    data = await asyncio.to_thread(Path(await pdf.path()).read_bytes)
    assert pdf.suggested_filename.endswith("-uk.pdf")
    assert data.startswith(b"%PDF-")
    assert page_count(data) == 1
    assert "Сирена на даху" in page_texts(data)[0]

    async with page.expect_download() as csv_info:
        await page.locator("#csv-link").click()
    csv = await csv_info.value
    text = (await asyncio.to_thread(Path(await csv.path()).read_bytes)).decode("utf-8")
    assert text.startswith("\ufeffОб’єкт;Вузол;")
    assert "school-01;siren-1;Сирена;Сирена на даху;" in text


async def wait_for_siren_row(db: Database, node: SimNode, timeout: float = 20.0) -> None:
    """Wait until central stored the siren's state (the report lists devices central knows)."""
    deadline = time.monotonic() + timeout
    while True:
        async with db.session() as session:
            if await session.get(DeviceStateRecord, (node.node_id, "siren-1")) is not None:
                return
        if time.monotonic() > deadline:
            raise AssertionError("central did not store the siren's state")
        await asyncio.sleep(0.1)
