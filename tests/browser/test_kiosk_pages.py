"""Kiosk pages in a real browser: IT uploads a poster through the page, builds a playlist with it, publishes, and
the kiosk list shows every kiosk's state, screenshot and what it plays (an alert in red)."""

from __future__ import annotations

from datetime import timedelta

import cv2
import numpy as np
import pytest
from playwright.async_api import Page, expect
from sqlalchemy import select

from central.auth.bootstrap import ensure_user
from central.auth.roles import Role
from central.store.db import Database
from central.store.fleet_models import DeviceStateRecord, EventRecord, Node
from central.store.kiosk_models import KioskAsset, KioskPlaylist
from central.store.kiosk_screen_models import KioskScreenshot
from tests.browser.conftest import PASSWORD, CentralServer, screenshot_path, sign_in
from varta.contract import utcnow

pytestmark = pytest.mark.browser

SVG = b'<svg xmlns="http://www.w3.org/2000/svg"><script>alert(1)</script></svg>'


def picture(
    text: str, background: tuple[int, int, int], *, width: int = 960, height: int = 540, ext: str = ".jpg"
) -> bytes:
    """A kiosk-screen-like picture: a coloured poster with a headline and a few blocks of 'text'."""
    image = np.zeros((height, width, 3), dtype=np.uint8)
    image[:] = background
    cv2.rectangle(image, (0, 0), (width, height // 6), (255, 255, 255), -1)
    cv2.putText(image, text, (30, height // 2), cv2.FONT_HERSHEY_SIMPLEX, 2.0, (255, 255, 255), 5)
    for i in range(3):
        y = height // 2 + 60 + i * 40
        cv2.rectangle(image, (30, y), (width - 200 - i * 120, y + 18), (220, 220, 220), -1)
    ok, buf = cv2.imencode(ext, image)
    assert ok
    return bytes(buf.tobytes())


def kiosk_state(node_id: str, status: str, reason: str | None, mode: str, minutes: int) -> DeviceStateRecord:
    now = utcnow()
    return DeviceStateRecord(
        node_id=node_id,
        device_id="screen",
        kind="kiosk",
        name="Екран",
        status=status,
        reason=reason,
        detail="Uncaught TypeError: slide is undefined" if reason == "page_errors" else "",
        attrs={"mode": mode},
        boot_id="b1",
        seq=1,
        ts=now,
        status_since=now - timedelta(minutes=minutes),
        updated_at=now,
    )


async def seed_kiosks(db: Database) -> None:
    """Four kiosks: one fine with a screenshot, one with page errors, one offline, one showing an alert."""
    now = utcnow()

    def node(node_id: str, name: str, site: str, online: bool = True) -> Node:
        return Node(
            node_id=node_id, site=site, name=name, online=online, first_seen=now - timedelta(days=40), boot_id="b1",
            capabilities=["kiosk"], last_seen=now if online else now - timedelta(hours=3),
            status_since=now - timedelta(hours=3), offline_reason=None if online else "last_will",
        )  # fmt: skip

    def shot(node_id: str, data: bytes, minutes: int) -> KioskScreenshot:
        return KioskScreenshot(
            node_id=node_id, device_id="screen", taken_at=now - timedelta(minutes=minutes), received_at=now,
            purpose="periodic", width=960, height=540, data=data,
        )  # fmt: skip

    async with db.session() as s:
        s.add_all(
            [
                node("kiosk-square", "Майдан, зупинка", "centre"),
                node("kiosk-station", "Вокзал, зал очікування", "centre"),
                node("kiosk-market", "Ринок", "north", online=False),
                node("kiosk-school", "Школа №3", "north"),
                kiosk_state("kiosk-square", "online", None, "playlist", 300),
                kiosk_state("kiosk-station", "degraded", "page_errors", "playlist", 7),
                kiosk_state("kiosk-market", "online", None, "playlist", 400),
                kiosk_state("kiosk-school", "online", None, "alert", 2),
                shot("kiosk-square", picture("CITY NEWS", (120, 60, 20)), 4),
                shot("kiosk-school", picture("AIR RAID ALERT", (30, 30, 200)), 1),
                EventRecord(
                    node_id="kiosk-school", site="north", ts=now - timedelta(minutes=2), received_at=now,
                    source="node", kind="kiosk.takeover_shown", severity="warning", device_id="screen",
                    message="alert page on screen", data={"alert_id": "siren:s1", "latency_ms": 380},
                ),
            ]
        )  # fmt: skip
        await s.commit()


async def test_it_uploads_a_poster_builds_a_playlist_publishes_and_watches_the_kiosks(
    central: CentralServer, db: Database, page: Page
) -> None:
    await seed_kiosks(db)
    await ensure_user(db, "it-anna", PASSWORD, Role.OPERATOR)
    await sign_in(page, central.base_url, "it-anna")
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" and "422" not in msg.text else None)

    await page.click("nav.mainnav >> text=Кіоски")
    await page.click("text=Бібліотека вмісту")
    await page.wait_for_url(central.base_url + "/kiosks/content")

    # A refused file says why, in words.
    await page.set_input_files("#upload-file", {"name": "logo.svg", "mimeType": "image/svg+xml", "buffer": SVG})
    await page.click("#upload-form button[type=submit]")
    await expect(page.locator("#upload-result")).to_contain_text(
        "Файл відхилено: SVG-зображення заборонені: вони можуть містити скрипти"
    )

    poster = picture("CONCERT SAT 19:00", (40, 110, 30), width=1280, height=720, ext=".png")
    await page.set_input_files("#upload-file", {"name": "afisha.png", "mimeType": "image/png", "buffer": poster})
    await page.fill("#upload-name", "Афіша концерту")
    await page.click("#upload-form button[type=submit]")
    await expect(page.locator("#content-result")).to_have_text("Завантажено: Афіша концерту")
    row = page.locator("table.assets tbody tr")
    await expect(row).to_have_count(1)
    await expect(row).to_contain_text("Афіша концерту")
    await expect(row.locator("img.thumb")).to_have_js_property("naturalWidth", 1280)
    async with db.session() as s:
        [asset] = (await s.scalars(select(KioskAsset))).all()
    assert (asset.name, asset.kind, asset.uploaded_by) == ("Афіша концерту", "image", "it-anna")

    # The playlist: the poster for 15 s, then the city's web page for 30 s.
    await page.fill("#pl-id", "city-news")
    await page.fill("#pl-name", "Новини міста")
    first = page.locator("#playlist-rows tr").nth(0)
    await first.locator("select[name=source]").select_option(asset.sha256)
    await first.locator("input[name=duration]").fill("15")
    await first.locator("input[name=title]").fill("Концерт у суботу")
    await page.click("#add-row")
    second = page.locator("#playlist-rows tr").nth(1)
    await second.locator("select[name=source]").select_option("url")
    await expect(second.locator("input[name=url]")).to_be_visible()
    await second.locator("input[name=url]").fill("https://kyiv.example/news")
    await second.locator("input[name=duration]").fill("30")
    await second.locator("button[data-move='-1']").click()  # the web page first
    await expect(page.locator("#playlist-rows tr").nth(0).locator("input[name=url]")).to_have_value(
        "https://kyiv.example/news"
    )
    await page.click("#playlist-form button[type=submit]")
    await expect(page.locator("#content-result")).to_have_text("Збережено.")
    await expect(page.locator('tr[data-playlist-id="city-news"]')).to_contain_text("Концерт у суботу")
    async with db.session() as s:
        playlist = await s.get(KioskPlaylist, "city-news")
    assert playlist is not None
    assert playlist.items == [
        {"url": "https://kyiv.example/news", "duration_s": 30},
        {"asset": asset.sha256, "duration_s": 15, "title": "Концерт у суботу"},
    ]

    # Every kiosk plays it when nothing else is scheduled; then publish.
    for node_id in ("kiosk-square", "kiosk-station"):
        form = page.locator(f'form[data-default-playlist="{node_id}"]')
        await form.locator("select").select_option("city-news")
        async with page.expect_navigation():  # saved: the page reloads to show it
            await form.locator("button").click()
        await expect(page.locator("#content-result")).to_have_text("Збережено.")
        await expect(page.locator(f'form[data-default-playlist="{node_id}"] select')).to_have_value("city-news")
    # A group and a weekday schedule for it (next January: the preview below still shows the default).
    new_group = page.locator('form[data-group=""]')
    await new_group.locator("input[name=group]").fill("centre")
    await new_group.get_by_label("Майдан, зупинка").check()
    await new_group.get_by_label("Вокзал, зал очікування").check()
    async with page.expect_navigation():
        await new_group.locator("button[type=submit]").click()
    await expect(page.locator('form[data-group="centre"] input:checked')).to_have_count(2)
    await page.select_option("#sc-target", "group")
    await expect(page.locator("#sc-group")).to_be_visible()
    await page.fill("#sc-priority", "10")
    await page.fill("#sc-start", "2030-01-01")
    await page.fill("#sc-end", "2030-01-31")
    await page.get_by_label("Сб", exact=True).uncheck()
    await page.get_by_label("Нд", exact=True).uncheck()
    await page.click("#add-window")
    await page.fill("#windows .window input[name=start]", "08:00")
    await page.fill("#windows .window input[name=end]", "20:00")
    async with page.expect_navigation():
        await page.click("#schedule-form button[type=submit]")
    schedule = page.locator("tr[data-schedule-id]")
    await expect(schedule).to_have_count(1)
    await expect(schedule).to_contain_text("група centre")
    await expect(schedule).to_contain_text("Пн, Вт, Ср, Чт, Пт")
    await expect(schedule).to_contain_text("08:00–20:00")

    await page.click("#publish-btn")
    results = page.locator("#publish-results tbody tr")
    await expect(results).to_have_count(4, timeout=15_000)
    await expect(page.locator('#publish-results tr[data-node-id="kiosk-square"]')).to_contain_text("надіслано")
    await expect(page.locator('#publish-results tr[data-node-id="kiosk-market"]')).to_contain_text("вузол офлайн")
    await page.screenshot(path=screenshot_path("kiosk-content"), full_page=True)

    # The kiosk list: troubled first, the alert in red, screenshots, versions.
    await page.click("nav.mainnav >> text=Кіоски")
    await page.wait_for_url(central.base_url + "/kiosks")
    cards = page.locator("article.kiosk")
    await expect(cards).to_have_count(4)
    order = [await c.get_attribute("data-node-id") for c in await cards.all()]
    assert order == ["kiosk-market", "kiosk-station", "kiosk-school", "kiosk-square"]
    school = page.locator('article[data-node-id="kiosk-school"]')
    await expect(school).to_have_class("kiosk kiosk--online is-alert")
    await expect(school.locator(".kiosk__alertword")).to_have_text("ТРИВОГА")
    await expect(school.locator(".kiosk__alertword")).to_have_css("background-color", "rgb(229, 32, 45)")
    await expect(page.locator('article[data-node-id="kiosk-station"] .kiosk__reason')).to_have_text(
        "помилки на сторінці"
    )
    await expect(page.locator('article[data-node-id="kiosk-market"] .kiosk__reason')).to_have_text("вузол офлайн")
    square = page.locator('article[data-node-id="kiosk-square"]')
    await expect(square.locator("img[data-field=shot]")).to_have_js_property("naturalWidth", 960)
    await expect(square.locator("[data-field=versions]")).to_contain_text("опубліковано версію 1")
    await expect(square.locator("[data-field=awaiting]")).to_have_text("Чекаємо на підтвердження від кіоску.")
    await expect(square.locator("[data-field=unconfirmed]")).to_have_count(0)  # just published: no warning yet
    await expect(page.locator('article[data-node-id="kiosk-station"] [data-field=noshot]')).to_be_visible()
    await expect(page.locator("#live")).to_have_class("live live--ok", timeout=10_000)

    # "Take screenshot": the node is simulated, so the new picture is stored as ingest would store it.
    await square.locator("button[data-screenshot]").click()
    await expect(square.locator("[data-field=shot-msg]")).to_have_text("Кіоск отримав запит на знімок екрана…")
    async with db.session() as s:
        s.add(
            KioskScreenshot(
                node_id="kiosk-square", device_id="screen", taken_at=utcnow(), received_at=utcnow(),
                purpose="requested", width=640, height=360,
                data=picture("CONCERT SAT 19:00", (40, 110, 30), width=640, height=360),
            )
        )  # fmt: skip
        await s.commit()
    await expect(square.locator("[data-field=shot-msg]")).to_have_text("Новий знімок екрана.", timeout=15_000)
    await expect(square.locator("img[data-field=shot]")).to_have_js_property("naturalWidth", 640)
    await expect(square.locator("[data-field=shot-age]")).to_have_text("щойно")
    await page.screenshot(path=screenshot_path("kiosks"), full_page=True)

    await square.locator("a", has_text="Попередній перегляд").click()
    await page.wait_for_url(central.base_url + "/kiosks/preview?node_id=kiosk-square")
    await expect(page.locator("#preview")).to_have_attribute("data-source", "default")
    await expect(page.locator(".preview__item")).to_have_count(2)
    await expect(page.locator(".preview__item").nth(1)).to_contain_text("Концерт у суботу")
    await page.screenshot(path=screenshot_path("kiosk-preview"), full_page=True)
    assert errors == []
