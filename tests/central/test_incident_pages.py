"""Incident, siren and report pages: what a dispatcher on a night shift and IT staff at year's end need to see."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from central.auth.roles import Role
from central.config import SiteSettings
from central.dashboard.incident_pages import siren_row
from central.reports.availability import current_month
from central.store.alert_models import AlertPeriod
from central.store.fleet_models import DeviceStateRecord, EventRecord, Node
from central.store.incident_models import Incident, Outage
from tests.central.test_auth_support import CentralEnv, central_env
from varta.contract import utcnow

__all__ = ["central_env"]


def siren(node_id: str, device_id: str, name: str, reason: str, **attrs: Any) -> DeviceStateRecord:
    now = utcnow()
    return DeviceStateRecord(
        node_id=node_id,
        device_id=device_id,
        kind="siren",
        name=name,
        status="online" if reason in ("idle", "sounding") else "degraded",
        reason=reason,
        attrs=attrs,
        boot_id="b1",
        seq=1,
        ts=now,
        status_since=now - timedelta(minutes=7),
        updated_at=now,
    )


def incident(key: str, type_: str, severity: str, site: str, title: str, minutes_ago: float, **kw: Any) -> Incident:
    now = utcnow()
    return Incident(
        key=key,
        type=type_,
        severity=severity,
        site=site,
        node_id=kw.pop("node_id", "school-01"),
        device_id=kw.pop("device_id", None),
        devices=kw.pop("devices", []),
        title=title,
        detail=kw.pop("detail", ""),
        data={},
        started_at=now - timedelta(minutes=minutes_ago),
        ended_at=kw.pop("ended_at", None),
        updated_at=now,
        **kw,
    )


@pytest.fixture
async def env(central_env: CentralEnv) -> CentralEnv:
    """Two sites (one under an air-raid alert), nodes, sirens, incidents and outages."""
    central_env.config.sites.update(
        {
            "school": SiteSettings(name="Школа №3", regions=["UA-80"]),
            "park": SiteSettings(name="Парк Шевченка", regions=["UA-32"]),
        }
    )
    now = utcnow()
    async with central_env.db.session() as s:
        s.add(
            Node(
                node_id="school-01", site="school", name="Школа, дах", first_seen=now - timedelta(days=90), online=True
            )
        )
        s.add(Node(node_id="park-02", site="park", name="Парк", first_seen=now - timedelta(days=90), online=True))
        s.add(Node(node_id="bridge-03", site="park", name="Міст", first_seen=now - timedelta(days=90), online=False))
        s.add(
            siren(
                "school-01",
                "siren-1",
                "Сирена на даху",
                "idle",
                supply=True,
                contactor=False,
                fault=False,
                last_sounded_at=(now - timedelta(days=6)).isoformat(),
                last_sounding_s=62,
            )
        )
        s.add(
            siren("school-01", "siren-2", "Сирена біля стадіону", "sounding", supply=True, contactor=True, fault=False)
        )
        s.add(siren("park-02", "siren-1", "Сирена в парку", "sounding", supply=True, contactor=True, fault=False))
        s.add(siren("park-02", "siren-2", "Сирена біля озера", "fault", fault=True))
        s.add(siren("bridge-03", "siren-1", "Сирена на мосту", "idle"))
        # What a confused node might send: nothing here may break the page.
        s.add(
            siren(
                "bridge-03",
                "siren-9",
                "<b>Сирена</b>",
                "exploded",
                last_sounding_s=1e308,
                since="yesterday",
                last_sounded_at="2024-13-45T99:00",
                supply="yes",
                contactor=1,
                fault=None,
            )
        )
        s.add(
            AlertPeriod(
                source="alerts_in_ua",
                source_id="a-1",
                region_uid="UA-80",
                region_name="м. Київ",
                region_type="oblast",
                alert_type="air_raid",
                started_at=now - timedelta(minutes=4),
                ended_at=None,
                updated_at=now,
            )
        )
        s.add(
            incident("k-warn", "camera_fault", "warning", "park", "Несправність камери: cam-9", 100, node_id="park-02")
        )
        s.add(
            incident(
                "k-power",
                "power_outage",
                "critical",
                "school",
                "Відключення живлення: Школа №3",
                12,
                devices=["school-01/", "school-01/siren-1"],
                detail="Живлення від батареї: school-01",
                notes=[{"at": now.isoformat(), "by": "olena", "text": "Подзвонили в обленерго"}],
            )
        )
        s.add(
            incident(
                "k-siren",
                "siren_failure",
                "critical",
                "school",
                "Сирена не спрацювала: Сирена на даху",
                3,
                devices=["school-01/siren-1"],
                acknowledged_by="olena",
                acknowledged_at=now - timedelta(minutes=1),
            )
        )
        s.add(
            incident(
                "k-closed",
                "unexpected_activation",
                "warning",
                "park",
                "Сирена звучить без тривоги: Сирена в парку",
                180,
                node_id="park-02",
                ended_at=now - timedelta(minutes=170),
                end_reason="Сирена замовкла через 10 хв",
            )
        )
        s.add(
            incident(
                "k-old",
                "camera_fault",
                "warning",
                "park",
                "Закрито позавчора",
                3000,
                ended_at=now - timedelta(hours=30),
            )
        )
        s.add(
            EventRecord(
                node_id="school-01",
                site="school",
                ts=now - timedelta(minutes=11),
                received_at=now,
                kind="siren.state_changed",
                severity="info",
                device_id="siren-1",
                message="idle → idle",
                data={},
            )
        )
        s.add(
            Outage(
                node_id="school-01",
                device_id="siren-1",
                kind="siren",
                site="school",
                cause="power",
                started_at=now - timedelta(hours=2),
                ended_at=now - timedelta(hours=1),
            )
        )
        await s.commit()
    for role in Role:
        await central_env.add_user(f"u-{role.value}", role)
    return central_env


async def get(env: CentralEnv, path: str, role: Role = Role.DISPATCHER, language: str = "uk") -> str:
    token = await env.session_token(f"u-{role.value}")
    r = await env.client.get(path, headers={"cookie": f"varta_session={token}; varta_lang={language}"})
    assert r.status_code == 200, (path, r.status_code)
    assert f'<html lang="{language}">' in r.text
    return r.text


def ids_in_order(html: str, container: str) -> list[int]:
    start = html.index(f'id="{container}"')
    end = html.index("</section>", start)
    return [int(i) for i in re.findall(r'<article class="inc [^"]*" data-incident-id="(\d+)"', html[start:end])]


WORDS = {
    "uk": {
        "/incidents": ["Інциденти", "Відкриті інциденти", "Закриті за останні 24 години", "Підтвердити", "Школа №3"],
        "/incidents/2": ["Відключення живлення: Школа №3", "Хронологія", "Подзвонили в обленерго", "Додати нотатку"],
        "/sirens": ["Сирени", "НЕ ЗВУЧИТЬ під час тривоги", "Звучить без офіційної тривоги", "Повітряна тривога"],
        "/reports/availability": ["Звіт про доступність", "Завантажити PDF", "Доступність", "Живлення"],
    },
    "en": {
        "/incidents": ["Incidents", "Open incidents", "Closed in the last 24 hours", "Acknowledge", "Школа №3"],
        "/incidents/2": ["Відключення живлення: Школа №3", "Timeline", "Подзвонили в обленерго", "Add a note"],
        "/sirens": ["Sirens", "NOT SOUNDING during the alert", "Sounding with no official alert", "Air-raid alert"],
        "/reports/availability": ["Availability report", "Download PDF", "Availability", "Power"],
    },
}


@pytest.mark.parametrize("language", ["uk", "en"])
async def test_pages_render_in_both_languages(env: CentralEnv, language: str) -> None:
    for path, words in WORDS[language].items():
        html = await get(env, path, language=language)
        for word in words:
            assert word in html, (language, path, word)
        assert 'href="/incidents" aria-current="page"' in html or path != "/incidents"


async def test_open_incidents_come_worst_first_then_the_recently_closed(env: CentralEnv) -> None:
    html = await get(env, "/incidents")

    # Critical before warning; among the critical ones the unacknowledged power outage first.
    assert ids_in_order(html, "open-incidents") == [2, 3, 1]
    assert ids_in_order(html, "closed-incidents") == [4]  # the one closed 30 h ago is no longer listed
    assert 'data-counter="open">3<' in html
    assert 'data-counter="critical">2<' in html
    assert 'data-counter="unacknowledged">2<' in html
    power = html[html.index('data-incident-id="2"') :]
    assert 'Пристрої: <span class="inc__count">2</span>' in power[:4000]
    assert 'href="/nodes/school-01">Школа, дах (school-01)</a>' in power[:4000]
    assert "Підтвердив(ла) olena" in html  # the siren failure


async def test_only_dispatchers_and_up_get_the_acknowledge_button_and_the_sound(env: CentralEnv) -> None:
    observer = await get(env, "/incidents", Role.OBSERVER)
    dispatcher = await get(env, "/incidents", Role.DISPATCHER)

    assert 'data-ack="2"' in dispatcher and 'id="sound"' in dispatcher
    assert "data-ack=" not in observer and 'id="sound"' not in observer
    assert '"sound": true' in dispatcher.replace('"sound":true', '"sound": true')
    detail = await get(env, "/incidents/2", Role.OBSERVER)
    assert 'id="note-form"' not in detail


async def test_one_incident_shows_its_devices_timeline_and_notes(env: CentralEnv) -> None:
    html = await get(env, "/incidents/2")

    assert "Живлення від батареї: school-01" in html
    assert 'href="/nodes/school-01">Сирена на даху (school-01/siren-1)</a>' in html
    timeline = html[html.index('id="timeline"') : html.index("</ol>", html.index('id="timeline"'))]
    assert timeline.index("Інцидент відкрито") < timeline.index("siren.state_changed")
    assert "Подзвонили в обленерго" in html
    assert 'maxlength="2000"' in html


async def test_an_unknown_incident_is_a_404_page(env: CentralEnv) -> None:
    token = await env.session_token("u-dispatcher")
    r = await env.client.get("/incidents/999", headers={"cookie": f"varta_session={token}"})
    assert r.status_code == 404 and r.headers["content-type"].startswith("text/html")


async def test_pages_need_a_signed_in_user(env: CentralEnv) -> None:
    for path in ("/incidents", "/incidents/2", "/sirens", "/reports/availability"):
        r = await env.client.get(path)
        assert r.status_code == 303 and r.headers["location"].startswith("/login"), path


def sirens_of(html: str) -> dict[str, str]:
    """``node/device`` → the siren card's class attribute."""
    return {
        f"{m[2]}/{m[3]}": m[1]
        for m in re.finditer(r'<article class="(siren [^"]*)" data-node-id="([^"]+)" data-device-id="([^"]+)"', html)
    }


async def test_the_siren_panel_flags_a_silent_siren_during_an_alert(env: CentralEnv) -> None:
    html = await get(env, "/sirens")

    cards = sirens_of(html)
    assert cards["school-01/siren-1"] == "siren siren--idle is-silent"  # alert at the school, not sounding
    assert cards["school-01/siren-2"] == "siren siren--sounding"
    assert cards["park-02/siren-1"] == "siren siren--sounding is-unexpected"  # sounding, no alert at the park
    assert cards["park-02/siren-2"] == "siren siren--fault"
    assert cards["bridge-03/siren-1"] == "siren siren--unknown is-node-offline"
    # The school (under alert, one silent siren) comes first; its silent siren first within it.
    assert html.index('data-site="school"') < html.index('data-site="park"')
    assert html.index('data-device-id="siren-1"') < html.index('data-device-id="siren-2"')
    assert 'data-counter="silent">1<' in html
    assert 'data-counter="sounding">2<' in html
    assert "Повітряна тривога</strong> · м. Київ" in html
    assert "Офіційної тривоги немає" in html
    assert "протягом 1 хв 02 с" in html  # last sounded 6 days ago, for 62 s
    assert "Вузол офлайн: стан сирени невідомий." in html
    assert cards["bridge-03/siren-9"] == "siren siren--unknown is-node-offline"
    assert "&lt;b&gt;Сирена&lt;/b&gt;" in html and "<b>Сирена</b>" not in html


async def test_a_site_without_alert_regions_says_it_cannot_compare(env: CentralEnv) -> None:
    env.config.sites["park"] = SiteSettings(name="Парк Шевченка")

    html = await get(env, "/sirens")

    assert "Регіони тривог цього об’єкта не налаштовано" in html


attr_values = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=True), st.text(max_size=40))


@settings(max_examples=200, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    attrs=st.dictionaries(
        st.sampled_from(["supply", "contactor", "fault", "since", "last_sounded_at", "last_sounding_s", "x"]),
        attr_values,
    ),
    reason=st.one_of(st.none(), st.text(max_size=20), st.sampled_from(["idle", "sounding", "fault"])),
)
def test_any_siren_attributes_give_a_drawable_row(attrs: dict[str, Any], reason: str | None) -> None:
    state = siren("n-1", "s-1", "", "idle")
    state.attrs = attrs
    state.reason = reason

    row = siren_row(state, None, under_alert=True)

    assert row.state in {"idle", "sounding", "fault", "unpowered", "unknown"}
    assert row.shown_state == "unknown"  # no node: nothing is known
    assert row.silent_in_alert
    assert row.last_sounding_s is None or row.last_sounding_s >= 0
    assert row.supply in (True, False, None)


async def test_the_report_page_has_the_month_table_and_file_links(env: CentralEnv) -> None:
    html = await get(env, "/reports/availability", Role.OBSERVER)

    month = f"{current_month(utcnow()):%Y-%m}"  # this month in Kyiv
    assert f'href="/api/v1/reports/availability.pdf?month={month}&amp;lang=uk"' in html
    assert f'href="/api/v1/reports/availability.csv?month={month}&amp;lang=uk"' in html
    assert 'type="month"' in html
    assert '<tr class="kind-siren" data-node-id="school-01" data-device-id="siren-1">' in html
    assert "(місяць ще триває)" in html


async def test_the_report_page_shows_an_earlier_month_and_refuses_a_bad_one(env: CentralEnv) -> None:
    html = await get(env, "/reports/availability?month=2025-05", Role.OBSERVER, language="en")

    assert 'Availability report: <span data-field="month-name">May 2025</span>' in html
    assert "No device was observed in this month." in html  # the nodes were first seen 90 days ago
    assert 'href="/api/v1/reports/availability.csv?month=2025-05&amp;lang=en"' in html
    assert 'href="/reports/availability?month=2025-06"' in html  # next month

    html = await get(env, "/reports/availability?month=2025-13", Role.OBSERVER, language="en")
    assert "Month must be written as YYYY-MM, e.g. 2025-05." in html
