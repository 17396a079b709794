"""Translations: every string the dashboard shows is in the Ukrainian catalog (the default) and the English one."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from central.auth.roles import Role
from central.dashboard.i18n import (
    JS_MESSAGES,
    LANGUAGES,
    extract_msgids,
    js_messages,
    missing_translations,
    read_catalog,
    translations,
)
from tests.central.test_auth_support import ORIGIN, CentralEnv, central_env

__all__ = ["central_env"]


def test_the_dashboard_uses_many_msgids() -> None:
    msgids = extract_msgids()

    assert len(msgids) > 150
    assert {"Online", "Offline", "Sign in", "Under-voltage!", "Live updates lost — reconnecting…"} <= msgids
    assert set(JS_MESSAGES.values()) <= msgids  # strings for the browser scripts are extracted too


@pytest.mark.parametrize("language", LANGUAGES)
def test_every_msgid_is_translated(language: str) -> None:
    assert missing_translations(language, extract_msgids()) == set()


def test_ukrainian_is_really_ukrainian() -> None:
    catalog = read_catalog("uk")
    same = {m.id for m in catalog if m.id and m.string == m.id and any(c.isalpha() for c in str(m.id))}

    assert same == set(), same  # nothing left in English by accident
    assert translations("uk").gettext("Offline") == "Офлайн"


def test_a_template_msgid_missing_from_the_catalog_is_caught(tmp_path: Path) -> None:
    (tmp_path / "templates").mkdir()
    (tmp_path / "templates" / "new.html").write_text(
        "<p>{{ _('Online') }}</p>\n<p>{% trans %}A sentence nobody translated yet{% endtrans %}</p>\n"
    )
    (tmp_path / "helper.py").write_text("LABEL = N_('Another new label')\n")

    msgids = extract_msgids(tmp_path)

    assert msgids == {"Online", "A sentence nobody translated yet", "Another new label"}
    assert missing_translations("uk", msgids) == {"A sentence nobody translated yet", "Another new label"}


@pytest.mark.parametrize("language", LANGUAGES)
def test_translations_carry_no_markup(language: str) -> None:
    # Jinja treats translated strings as safe HTML: markup must come from templates, never from catalogs.
    for message in read_catalog(language):
        if message.id:
            assert not set("<>&") & set(str(message.id) + str(message.string)), message.id


@pytest.mark.parametrize("language", LANGUAGES)
def test_placeholders_survive_translation(language: str) -> None:
    for message in read_catalog(language):
        if message.id and "%(" in str(message.id):
            assert sorted(_placeholders(str(message.id))) == sorted(_placeholders(str(message.string))), message.id


def _placeholders(text: str) -> list[str]:
    return re.findall(r"%\((\w+)\)s", text)


def test_js_strings_are_translated_per_language() -> None:
    uk, en = js_messages("uk"), js_messages("en")

    assert set(uk) == set(en) == set(JS_MESSAGES)
    assert (uk["offline"], en["offline"]) == ("Офлайн", "Offline")
    assert uk["min_ago"] == "%(m)s хв тому"


async def test_pages_are_ukrainian_by_default_and_english_on_request(central_env: CentralEnv) -> None:
    uk = await central_env.client.get("/login")
    en = await central_env.client.get("/login?lang=en")
    after = await central_env.client.get("/login")

    assert '<html lang="uk">' in uk.text
    assert "Вхід до «Варти»" in uk.text
    assert '<html lang="en">' in en.text
    assert "Sign in to Varta" in en.text
    assert en.cookies.get("varta_lang") == "en"
    assert '<html lang="en">' in after.text  # the choice is remembered in the cookie


async def test_the_users_saved_language_wins_over_the_cookie(central_env: CentralEnv) -> None:
    await central_env.add_user("olena", Role.DISPATCHER)
    await central_env.login("olena")

    saved = await central_env.client.post(
        "/account/language", data={"language": "en", "next": "/account"}, headers=ORIGIN, follow_redirects=False
    )
    central_env.client.cookies.set("varta_lang", "uk")
    page = await central_env.client.get("/account")

    assert saved.status_code == 303
    assert saved.headers["location"] == "/account"
    assert (await central_env.get_user("olena")).language == "en"
    assert '<html lang="en">' in page.text
    assert "Change password" in page.text


async def test_the_i18n_block_for_scripts_is_json_in_the_page_language(central_env: CentralEnv) -> None:
    page = await central_env.client.get("/login")

    match = re.search(r'<script type="application/json" id="i18n-data">(.*?)</script>', page.text, re.S)
    assert match is not None
    data = json.loads(match.group(1))
    assert data["reconnecting"] == "Зв’язок для оновлень втрачено — перепідключення…"
    assert data == js_messages("uk")
