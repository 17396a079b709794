"""Administration and account pages in a real browser: forms post same-origin and work end to end."""

from __future__ import annotations

import re

import pytest
from playwright.async_api import Page, expect

from central.auth.bootstrap import create_admin
from central.store.db import Database
from tests.browser.conftest import PASSWORD, CentralServer, screenshot_path, sign_in

pytestmark = pytest.mark.browser


async def test_admin_creates_a_dispatcher_who_can_then_sign_in(
    central: CentralServer, db: Database, page: Page
) -> None:
    await create_admin(db, "it-admin", PASSWORD)
    await sign_in(page, central.base_url, "it-admin")

    await page.click("nav.mainnav >> text=Користувачі")
    await page.fill("#new-username", "petro")
    await page.fill("#new-display", "Петро Коваленко")
    await page.select_option("#new-role", "dispatcher")
    await page.fill("#new-password", "short")
    await page.click("text=Створити користувача")
    # The browser's own check (minlength) keeps a short password from being sent at all.
    await expect(page.locator('tr[data-username="petro"]')).to_have_count(0)

    await page.fill("#new-password", "petro-password-1")
    await page.click("text=Створити користувача")

    await expect(page.locator(".notice--ok")).to_have_text("Користувача створено.")
    await expect(page.locator('tr[data-username="petro"]')).to_contain_text("Петро Коваленко")
    await page.screenshot(path=screenshot_path("admin-1-users"), full_page=True)

    await page.click("nav.mainnav >> text=Журнал аудиту")
    await expect(page.locator("table.table--audit tbody tr").first).to_contain_text("user.created")
    await page.screenshot(path=screenshot_path("admin-2-audit"), full_page=True)

    await page.click("text=Вийти")
    await page.wait_for_url(re.compile(r".*/login$"))
    await sign_in(page, central.base_url, "petro", "petro-password-1")
    await expect(page.locator(".whoami")).to_contain_text("Петро Коваленко")
    await expect(page.locator("nav.mainnav")).not_to_contain_text("Користувачі")


async def test_language_switch_and_a_token_shown_once(central: CentralServer, db: Database, page: Page) -> None:
    await create_admin(db, "it-admin", PASSWORD)
    await sign_in(page, central.base_url, "it-admin")
    await expect(page.locator("html")).to_have_attribute("lang", "uk")

    await page.click('form.langswitch button[value="en"]')

    await expect(page.locator("html")).to_have_attribute("lang", "en")
    await expect(page.locator("nav.mainnav")).to_contain_text("Fleet")
    await page.click("nav.mainnav >> text=Account")
    await page.fill("#token-name", "monitoring")
    await page.fill("#token-days", "30")
    await page.click("text=Create token")

    secret = await page.locator("#new-token").inner_text()
    assert secret.startswith("vt_") and len(secret) > 40
    await expect(page.locator("tr[data-token-id]")).to_contain_text("monitoring")
    await page.screenshot(path=screenshot_path("account-1-token-created"), full_page=True)

    await page.goto(central.base_url + "/account")
    await expect(page.locator("#new-token")).to_have_count(0)
    assert secret not in await page.content()

    await page.goto(central.base_url + "/login")  # signed in: sent on to the fleet
    await page.context.clear_cookies()
    await page.goto(central.base_url + "/login")
    await expect(page.locator("html")).to_have_attribute("lang", "uk")
    await page.screenshot(path=screenshot_path("login-1-page"), full_page=False)
