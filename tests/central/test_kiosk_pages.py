"""Kiosk pages: the kiosk list dispatchers and IT watch, the content library IT edits and the preview.

The app is the real one (``central_env``); kiosks are seeded straight into the database as a node's ingest would
have stored them, content goes in through the kiosk API, the pages are fetched with a session cookie.
"""

from __future__ import annotations

import html
import json
import re
from datetime import timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from nacl.signing import SigningKey

from central.auth.roles import Role
from central.config import SiteSettings
from central.dashboard.kiosk_pages import decode_manifest, human_size, parse_local
from central.store.alert_models import AlertPeriod
from central.store.fleet_models import DeviceStateRecord, EventRecord, Node
from central.store.kiosk_models import KioskManifest
from central.store.kiosk_screen_models import KioskScreenshot
from tests.central.test_auth_support import CentralEnv, central_env, with_cookie
from tests.central.test_cameras_support import jpeg
from tests.central.test_kiosk_content import RED
from varta.contract import utcnow
from varta.kiosk_manifest import Manifest, Playlist, PlaylistItem, sign_manifest

__all__ = ["central_env"]

ROLES = (Role.OBSERVER, Role.DISPATCHER, Role.OPERATOR)
ARTICLE = re.compile(r'<article class="(kiosk [^"]*)" data-node-id="([^"]+)"(.*?)</article>', re.S)


def kiosk_state(
    node_id: str, status: str, reason: str | None, *, mode: str = "playlist", **attrs: Any
) -> DeviceStateRecord:
    now = utcnow()
    return DeviceStateRecord(
        node_id=node_id,
        device_id="screen",
        kind="kiosk",
        name="Screen",
        status=status,
        reason=reason,
        detail="",
        attrs={"mode": mode, **attrs},
        boot_id="b1",
        seq=1,
        ts=now,
        status_since=now - timedelta(minutes=12),
        updated_at=now,
    )


def node(node_id: str, name: str, site: str = "centre", *, online: bool = True, kiosk: bool = True) -> Node:
    return Node(
        node_id=node_id,
        site=site,
        name=name,
        online=online,
        first_seen=utcnow() - timedelta(days=30),
        boot_id="b1",
        capabilities=["kiosk"] if kiosk else ["cameras"],
    )


def event(node_id: str, kind: str, data: dict[str, Any], minutes_ago: float) -> EventRecord:
    now = utcnow()
    return EventRecord(
        node_id=node_id,
        site="centre",
        ts=now - timedelta(minutes=minutes_ago),
        received_at=now,
        source="node",
        kind=kind,
        severity="info",
        device_id="screen",
        message=kind,
        data=data,
    )


def signed_manifest(
    node_id: str, version: int, playlist_name: str, age: timedelta = timedelta(hours=1)
) -> KioskManifest:
    """A manifest row as publishing stores it: one web-page playlist as the default, issued *age* ago."""
    manifest = Manifest(
        version=version,
        issued_at=utcnow() - age,
        kiosk_ids=(node_id,),
        playlists=(
            Playlist(
                id="news", name=playlist_name, items=(PlaylistItem(url="https://kyiv.example/news", duration_s=20),)
            ),
        ),
        default_playlist_id="news",
    )
    signed = sign_manifest(SigningKey.generate(), manifest).to_bytes().decode("ascii")
    return KioskManifest(
        node_id=node_id,
        version=version,
        issued_at=manifest.issued_at,
        issued_by="it-anna",
        sha256="0" * 64,
        content_sha256="1" * 64,
        signed=signed,
        sent_at=manifest.issued_at,
        request_id="req-1",
    )


@pytest.fixture
async def env(central_env: CentralEnv) -> CentralEnv:
    """Seven kiosks in every state a kiosk can be in, a camera node, and one site under an air-raid alert."""
    central_env.config.sites.update(
        {
            "centre": SiteSettings(name="Центр міста", regions=["UA-80"]),
            "north": SiteSettings(name="Північ", regions=["UA-32"]),
        }
    )
    now = utcnow()
    async with central_env.db.session() as s:
        s.add_all(
            [
                node("k-ok", "Площа"),
                node("k-errors", "Вокзал"),
                node("k-clock", "Бібліотека"),
                node("k-down", "Ринок", online=False),
                node("k-new", "Новий"),
                node("k-alert", "Школа", site="north"),
                node("k-silent", "Лікарня", site="north"),
                node("cams", "Камери", kiosk=False),
                kiosk_state("k-ok", "online", None, content_version=4),
                kiosk_state("k-errors", "degraded", "page_errors"),
                kiosk_state("k-clock", "degraded", "clock_unsynchronised"),
                kiosk_state("k-down", "online", None),
                kiosk_state("k-alert", "online", None, mode="alert"),
                kiosk_state("k-silent", "online", None),
                signed_manifest("k-ok", 4, "Новини міста"),
                signed_manifest("k-clock", 2, "Новини міста"),
                signed_manifest("k-errors", 1, "Новини міста", age=timedelta(minutes=2)),
                event("k-ok", "kiosk.content_installed", {"version": 4}, 50),
                event("k-clock", "kiosk.content_installed", {"version": 1}, 300),
                event("k-clock", "kiosk.content_refused", {"reason": "bundle", "code": "symlink"}, 30),
                event("k-alert", "kiosk.takeover_shown", {"alert_id": "alert-1", "latency_ms": 420}, 3),
                AlertPeriod(
                    source="alerts_in_ua",
                    source_id="a-1",
                    region_uid="UA-32",
                    region_name="Київська область",
                    region_type="oblast",
                    alert_type="air_raid",
                    started_at=now - timedelta(minutes=5),
                    ended_at=None,
                    updated_at=now,
                ),
                KioskScreenshot(
                    node_id="k-ok",
                    device_id="screen",
                    taken_at=now - timedelta(minutes=2),
                    received_at=now,
                    purpose="periodic",
                    width=64,
                    height=48,
                    data=jpeg(64, 48),
                ),
            ]
        )  # fmt: skip
        await s.commit()
    for role in ROLES:
        await central_env.add_user(f"u-{role.value}", role)
    return central_env


async def page(env: CentralEnv, path: str, role: Role = Role.OPERATOR, **cookies: str) -> tuple[int, str]:
    token = await env.session_token(f"u-{role.value}")
    extra = "".join(f"; {k}={v}" for k, v in cookies.items())
    r = await env.client.get(path, headers=with_cookie(token + extra), follow_redirects=False)
    return r.status_code, r.text


def cards(text: str) -> dict[str, tuple[str, str, str]]:
    """node id → (class attribute, the card's visible text, its markup), in page order."""
    found = {}
    for classes, node_id, body in ARTICLE.findall(text):
        visible = re.sub(r"<(\w+)[^>]*\shidden[\s>].*?</\1>", " ", body, flags=re.S)  # drop hidden elements
        words = html.unescape(re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", visible)))
        found[node_id] = (classes, words, body)
    return found


def page_data(text: str) -> dict[str, Any]:
    match = re.search(r'<script type="application/json" id="page-data">(.*?)</script>', text, re.S)
    assert match is not None
    data: dict[str, Any] = json.loads(match.group(1))
    return data


def bearer(token: str) -> dict[str, str]:
    return {"authorization": f"Bearer {token}"}


# --------------------------------------------------------------------------------------------------- roles


async def test_everyone_sees_the_kiosks_but_only_operators_the_library(env: CentralEnv) -> None:
    for role in ROLES:
        status, text = await page(env, "/kiosks", role)
        assert status == 200, role
        assert '<a href="/kiosks" aria-current="page">' in text
        assert len(cards(text)) == 7  # not the camera node
        status, _ = await page(env, "/kiosks/preview?node_id=k-ok", role)
        assert status == 200, role
        status, text = await page(env, "/kiosks/content", role)
        assert status == (200 if role is Role.OPERATOR else 403), role

    _, observer = await page(env, "/kiosks", Role.OBSERVER)
    _, operator = await page(env, "/kiosks", Role.OPERATOR)
    assert "data-screenshot=" not in observer and 'href="/kiosks/content"' not in observer
    assert 'data-screenshot="k-ok"' in operator and 'href="/kiosks/preview?node_id=k-ok"' in operator
    assert 'data-screenshot="k-down" disabled' in operator  # an offline kiosk cannot be asked

    anonymous = await env.client.get("/kiosks", follow_redirects=False)
    assert anonymous.status_code == 303 and anonymous.headers["location"] == "/login?next=/kiosks"


# --------------------------------------------------------------------------------------------------- kiosk list


async def test_troubled_kiosks_come_first_and_an_alert_missing_from_a_screen_tops_the_list(env: CentralEnv) -> None:
    _, text = await page(env, "/kiosks", Role.DISPATCHER)

    found = cards(text)
    assert list(found) == [
        "k-silent",  # its site is under an air-raid alert and it shows the playlist
        "k-down",  # node offline
        "k-clock",  # degraded (by name: Бібліотека, Вокзал)
        "k-errors",
        "k-new",  # never reported
        "k-alert",  # fine, and showing the alert: before the quiet ones
        "k-ok",
    ]
    classes, words, _ = found["k-silent"]
    assert "is-alert-missing" in classes
    assert "сторінки тривоги НЕМАЄ на екрані" in words
    assert '<span class="summary__n" data-counter="alert-missing">1</span>' in text
    assert '<span class="summary__n" data-counter="offline">1</span>' in text
    assert '<span class="summary__n" data-counter="degraded">2</span>' in text
    assert "is-alert-missing" not in found["k-alert"][0] and "is-alert-missing" not in found["k-ok"][0]


async def test_an_alert_on_screen_is_flagged_in_red_with_its_proof(env: CentralEnv) -> None:
    _, text = await page(env, "/kiosks", Role.OBSERVER)

    found = cards(text)
    classes, words, _ = found["k-alert"]
    assert "is-alert" in classes.split()
    assert "ТРИВОГА на екрані" in words
    assert "Сторінку тривоги показано" in words and "через 420 мс після тривоги" in words
    assert '<span class="summary__n" data-counter="alert">1</span>' in text
    for other in ("k-ok", "k-silent", "k-down"):
        assert "is-alert" not in found[other][0].split(), other
        assert "ТРИВОГА" not in found[other][1], other
    assert "Плейлист «Новини міста»" in found["k-ok"][1]  # from the manifest it plays
    assert "Що на екрані — невідомо." in found["k-down"][1]  # what an offline kiosk last said is not shown as fact


async def test_reasons_are_words_in_ukrainian_by_default_and_in_english_with_the_cookie(env: CentralEnv) -> None:
    _, uk = await page(env, "/kiosks", Role.OBSERVER)
    _, en = await page(env, "/kiosks", Role.OBSERVER, varta_lang="en")

    uk_cards, en_cards = cards(uk), cards(en)
    assert '<html lang="uk">' in uk and '<html lang="en">' in en
    expected = {
        "k-errors": ("з проблемами", "помилки на сторінці", "degraded", "page errors"),
        "k-clock": ("з проблемами", "годинник не синхронізовано", "degraded", "clock not synchronised"),
        "k-down": ("офлайн", "вузол офлайн", "offline", "node offline"),
        "k-new": ("невідомо", "ще не повідомляв", "unknown", "has not reported yet"),
    }
    for node_id, (uk_status, uk_reason, en_status, en_reason) in expected.items():
        assert uk_reason in uk_cards[node_id][1], node_id
        assert en_reason in en_cards[node_id][1], node_id
        assert en_status in en_cards[node_id][1], node_id
        assert uk_status in uk_cards[node_id][1], node_id
    assert "page errors" not in uk and "помилки на сторінці" not in en


async def test_versions_screenshots_and_refusals_are_shown(env: CentralEnv) -> None:
    _, text = await page(env, "/kiosks", Role.OBSERVER)
    found = cards(text)

    clock = found["k-clock"][1]
    assert "опубліковано версію 2" in clock and "підтверджено версію 1" in clock
    assert "Кіоск ще не підтвердив останній вміст." in clock
    assert "веб-пакет небезпечний або пошкоджений" in clock and "symlink" in clock
    ok = found["k-ok"][1]
    assert "опубліковано версію 4" in ok and "підтверджено версію 4" in ok
    assert "не підтвердив" not in ok
    errors = found["k-errors"][1]
    assert "опубліковано версію 1" in errors and "Чекаємо на підтвердження від кіоску." in errors  # just published
    assert "не підтвердив" not in errors and "Чекаємо" not in clock
    assert '<span class="summary__n" data-counter="unconfirmed">1</span>' in text  # k-clock only

    assert re.search(r'src="/api/v1/kiosk/kiosks/k-ok/screenshot\?v=[^"]+"', text)
    assert "знімка екрана ще немає" in found["k-errors"][1] and "знімка екрана ще немає" not in ok
    assert "Знімок екрана 2 хв тому" in ok
    token = await env.session_token("u-observer")
    shot = await env.client.get("/api/v1/kiosk/kiosks/k-ok/screenshot", headers=with_cookie(token))
    assert shot.status_code == 200 and shot.headers["content-type"] == "image/jpeg"


async def test_an_empty_installation_says_so(central_env: CentralEnv) -> None:
    await central_env.add_user("u-observer", Role.OBSERVER)

    status, text = await page(central_env, "/kiosks", Role.OBSERVER)

    assert status == 200
    assert cards(text) == {}
    assert "Кіосків ще немає." in text


# --------------------------------------------------------------------------------------------------- library


async def test_the_library_lists_files_playlists_schedules_groups_and_defaults(env: CentralEnv) -> None:
    token = await env.api_token("u-operator")
    r = await env.client.post(
        "/api/v1/kiosk/assets", files={"file": ("poster.png", RED, "image/png")}, data={"name": "Афіша"},
        headers=bearer(token),
    )  # fmt: skip
    assert r.status_code == 201, r.text
    sha = r.json()["sha256"]
    r = await env.client.put(
        "/api/v1/kiosk/playlists/city-news",
        json={"name": "Новини міста", "items": [{"asset": sha, "duration_s": 15, "title": "Афіша тижня"}]},
        headers=bearer(token),
    )
    assert r.status_code == 200, r.text
    r = await env.client.put(
        "/api/v1/kiosk/groups/centre", json={"node_ids": ["k-ok", "k-errors"]}, headers=bearer(token)
    )
    assert r.status_code == 200, r.text
    r = await env.client.post(
        "/api/v1/kiosk/schedules",
        json={"playlist_id": "city-news", "target": "group", "group": "centre", "weekdays": [0, 1, 2, 3, 4],
              "windows": [{"start": "08:00", "end": "20:00"}], "priority": 5},
        headers=bearer(token),
    )  # fmt: skip
    assert r.status_code == 201, r.text
    r = await env.client.put(
        "/api/v1/kiosk/kiosks/k-ok/default-playlist", json={"playlist_id": "city-news"}, headers=bearer(token)
    )
    assert r.status_code == 200, r.text

    status, text = await page(env, "/kiosks/content", Role.OPERATOR)

    assert status == 200
    assert f'<tr data-sha256="{sha}">' in text
    assert f'<img class="thumb" src="/api/v1/kiosk/content/{sha}"' in text
    assert "Афіша" in text and "зображення" in text and human_size(len(RED)) in text
    assert '<tr data-playlist-id="city-news">' in text and "Афіша тижня" in text
    schedule = re.search(r'<tr data-schedule-id="\d+">(.*?)</tr>', text, re.S)
    assert schedule is not None
    row = re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", schedule.group(1)))
    assert "Новини міста" in row and "група centre" in row and "Пн, Вт, Ср, Чт, Пт" in row and "08:00–20:00" in row
    assert re.search(r'<option value="city-news" selected>Новини міста</option>', text)  # k-ok's default
    assert re.search(r'<input type="checkbox" name="node_id" value="k-ok" checked>', text)
    data = page_data(text)
    assert data["playlists"]["city-news"]["items"][0]["asset"] == sha
    assert data["assets"] == [{"sha256": sha, "name": "Афіша", "kind": "image"}]
    assert data["texts"]["upload_svg"] == "SVG-зображення заборонені: вони можуть містити скрипти"
    assert data["texts"]["publish_unreachable"] == "вузол офлайн: надійде, коли він повернеться"

    _, english = await page(env, "/kiosks/content", Role.OPERATOR, varta_lang="en")
    assert "Publish to kiosks" in english and page_data(english)["texts"]["upload_svg"].startswith("SVG pictures")


# --------------------------------------------------------------------------------------------------- preview


async def test_the_preview_shows_the_playlist_at_a_local_time_and_when_it_changes(env: CentralEnv) -> None:
    token = await env.api_token("u-operator")
    sha = (
        await env.client.post(
            "/api/v1/kiosk/assets", files={"file": ("a.png", RED, "image/png")}, headers=bearer(token)
        )
    ).json()["sha256"]
    for playlist_id, name in (("morning", "Ранок"), ("idle", "Спокій")):
        r = await env.client.put(
            f"/api/v1/kiosk/playlists/{playlist_id}",
            json={
                "name": name,
                "items": [{"asset": sha, "duration_s": 8}, {"url": "https://kyiv.example/", "duration_s": 30}],
            },
            headers=bearer(token),
        )
        assert r.status_code == 200, r.text
    r = await env.client.post(
        "/api/v1/kiosk/schedules",
        json={
            "playlist_id": "morning",
            "target": "kiosk",
            "node_id": "k-ok",
            "windows": [{"start": "06:00", "end": "12:00"}],
        },
        headers=bearer(token),
    )
    assert r.status_code == 201, r.text
    await env.client.put(
        "/api/v1/kiosk/kiosks/k-ok/default-playlist", json={"playlist_id": "idle"}, headers=bearer(token)
    )

    _, morning = await page(env, "/kiosks/preview?node_id=k-ok&at=2026-05-04T08:30", Role.OBSERVER)

    assert 'data-source="schedule"' in morning
    assert "О 2026-05-04 08:30 кіоск показує" in morning
    assert "«Ранок»" in morning and "Спокій" not in morning.split('id="preview"')[1].split("Зміниться")[0]
    assert f'<img src="/api/v1/kiosk/content/{sha}"' in morning
    assert "8 с" in morning and "30 с" in morning and "Одне коло плейлиста триває 38 с." in morning
    assert "Зміниться о 2026-05-04 12:00: «Спокій»." in morning  # Kyiv time, not UTC
    assert 'value="2026-05-04T08:30"' in morning

    _, evening = await page(env, "/kiosks/preview?node_id=k-ok&at=2026-05-04T21:00", Role.OBSERVER, varta_lang="en")
    assert 'data-source="default"' in evening and "«Спокій»" in evening
    assert "This changes at 2026-05-05 06:00: «Ранок»." in evening

    _, blank = await page(env, "/kiosks/preview?node_id=k-new&at=2026-05-04T08:30", Role.OBSERVER)
    assert 'data-source="blank"' in blank and "Порожній екран" in blank

    _, wrong = await page(env, "/kiosks/preview?node_id=k-ok&at=yesterday", Role.OBSERVER)
    assert "Вкажіть час у такому вигляді" in wrong and 'id="preview"' not in wrong
    _, ghost = await page(env, "/kiosks/preview?node_id=ghost&at=2026-05-04T08:30", Role.OBSERVER)
    assert "Такого кіоску немає." in ghost


# --------------------------------------------------------------------------------------------------- helpers


def test_sizes_local_times_and_stored_manifests() -> None:
    assert human_size(532) == "532 B"
    assert human_size(14_540) == "14.2 KiB"
    assert human_size(3 * 1024**2) == "3.0 MiB"
    kyiv = ZoneInfo("Europe/Kyiv")
    winter, summer = parse_local("2026-01-10T08:30", kyiv), parse_local("2026-07-10T08:30", kyiv)
    assert winter is not None and winter.utcoffset() == timedelta(hours=2)
    assert summer is not None and summer.utcoffset() == timedelta(hours=3)
    assert parse_local("nonsense", kyiv) is None
    manifest = decode_manifest(signed_manifest("k-1", 3, "Новини").signed)
    assert manifest is not None and manifest.version == 3 and manifest.playlists[0].name == "Новини"
    assert decode_manifest("{}") is None and decode_manifest("not json") is None
