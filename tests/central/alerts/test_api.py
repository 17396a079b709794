"""Alert API (observer and up) and the alert banner, on the real app with a real alert service and feed."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest

from central.alerts.banner import AlertBanner, banner_context
from central.alerts.poller import AlertService
from central.api import alerts as alerts_api
from central.auth.roles import Role
from central.config import AlertSettings, AlertSourceSettings
from central.dashboard.templating import templates
from central.store.alert_models import AlertPeriod
from tests.central.alerts.conftest import BUCHA, IRPIN, KYIV_OBLAST, LVIV_OBLAST, SITES, TOKEN, Clock, RecordingBus
from tests.central.test_auth_support import BASE_URL, CentralEnv, make_config
from tests.support.alert_feed import AlertFeedServer, Reply, api_alert

T0 = datetime(2025, 3, 1, 12, 5, tzinfo=UTC)  # 14:05 in Kyiv


@dataclass
class ApiEnv:
    env: CentralEnv
    service: AlertService
    feed: AlertFeedServer
    tokens: dict[Role, str]

    def auth(self, role: Role) -> dict[str, str]:
        return {"authorization": f"Bearer {self.tokens[role]}"}

    async def get(self, url: str, role: Role = Role.OBSERVER, **params: str) -> httpx.Response:
        return await self.env.client.get(url, headers=self.auth(role), params=params)


@pytest.fixture
async def api(tmp_path: Path, feed: AlertFeedServer) -> AsyncIterator[ApiEnv]:
    from central.app import create_app

    config = make_config(
        tmp_path,
        sites=SITES,
        alerts=AlertSettings(
            sources=[AlertSourceSettings(name="aiu", kind="alerts_in_ua", url=feed.url, token=TOKEN)],
            stale_after_s=120,
        ),
    )
    app = create_app(config, start_background=False)
    if not any(getattr(r, "path", "").startswith("/api/v1/alerts") for r in app.routes):
        app.include_router(alerts_api.router)  # until central/app.py includes it
    async with app.router.lifespan_context(app):
        services = app.state.services
        service = AlertService(config, services.db, RecordingBus(), min_interval_s=0.0, clock=Clock(T0))
        services.alerts = service
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url=BASE_URL) as client:
            env = CentralEnv(app=app, config=config, client=client)
            tokens = {}
            for role in Role:
                await env.add_user(role.value, role)
                tokens[role] = await env.api_token(role.value)
            try:
                yield ApiEnv(env, service, feed, tokens)
            finally:
                await service.aclose()


def clock_of(api: ApiEnv) -> Clock:
    clock = api.service.clock
    assert isinstance(clock, Clock)
    return clock


async def test_active_alerts_are_listed_per_site(api: ApiEnv) -> None:
    api.feed.set_active(
        [
            api_alert(1, KYIV_OBLAST, title="Київська область", location_type="oblast", started_at=T0),
            api_alert(2, BUCHA, title="Бучанська громада", oblast_uid=14, started_at=T0 + timedelta(minutes=1)),
        ]
    )
    await api.service.poll_once("aiu")
    r = await api.get("/api/v1/alerts/active")
    assert r.status_code == 200
    by_site = {s["site"]: s for s in r.json()}
    assert [a["source_id"] for a in by_site["bucha-school"]["alerts"]] == ["1", "2"]
    assert [a["source_id"] for a in by_site["irpin-square"]["alerts"]] == ["1"]
    assert by_site["lviv-center"]["alerts"] == []
    assert by_site["bucha-school"]["name"] == "Школа №3, Буча"
    one = await api.get("/api/v1/alerts/active", site="lviv-center")
    assert [s["site"] for s in one.json()] == ["lviv-center"]


async def test_history_filters_by_window_site_and_type(api: ApiEnv) -> None:
    async with api.env.db.session() as session:
        for n, (uid, kind, start) in enumerate(
            [
                (BUCHA, "air_raid", T0 - timedelta(days=2)),
                (IRPIN, "air_raid", T0 - timedelta(hours=5)),
                (BUCHA, "artillery_shelling", T0 - timedelta(hours=4)),
                (LVIV_OBLAST, "air_raid", T0 - timedelta(hours=3)),
            ]
        ):
            session.add(
                AlertPeriod(
                    source="aiu",
                    source_id=str(n),
                    region_uid=uid,
                    region_name="",
                    region_type="oblast" if uid == LVIV_OBLAST else "hromada",
                    oblast_uid=LVIV_OBLAST if uid == LVIV_OBLAST else KYIV_OBLAST,
                    alert_type=kind,
                    started_at=start,
                    ended_at=start + timedelta(minutes=30),
                    updated_at=start,
                )
            )
        await session.commit()
    since, until = (T0 - timedelta(days=1)).isoformat(), T0.isoformat()
    r = await api.get("/api/v1/alerts", since=since, until=until)
    assert [p["source_id"] for p in r.json()] == ["3", "2", "1"]  # newest first
    assert r.json()[0]["sites"] == ["lviv-center"]
    r = await api.get("/api/v1/alerts", since=since, until=until, site="bucha-school")
    assert [p["source_id"] for p in r.json()] == ["2"]
    r = await api.get("/api/v1/alerts", since=since, until=until, alert_type="air_raid")
    assert [p["source_id"] for p in r.json()] == ["3", "1"]


@pytest.mark.parametrize(
    ("params", "status"),
    [
        ({"site": "nowhere"}, 404),
        ({"since": "2025-03-02T00:00:00Z", "until": "2025-03-01T00:00:00Z"}, 422),
        ({"since": "2024-01-01T00:00:00Z", "until": "2025-03-01T00:00:00Z"}, 422),
        ({"since": "2025-03-01T00:00:00"}, 422),
        ({"alert_type": "Meteor Shower!"}, 422),
        ({"limit": "0"}, 422),
    ],
)
async def test_bad_history_requests_are_refused_clearly(api: ApiEnv, params: dict[str, str], status: int) -> None:
    r = await api.get("/api/v1/alerts", **params)
    assert r.status_code == status
    assert r.json()["detail"]


async def test_sources_report_last_success_errors_and_staleness(api: ApiEnv) -> None:
    api.feed.set_active([])
    await api.service.poll_once("aiu")
    api.feed.override(Reply(503, b"maintenance"))
    clock_of(api).advance(200)
    await api.service.poll_once("aiu")
    r = await api.get("/api/v1/alerts/sources")
    assert r.status_code == 200
    [source] = r.json()["sources"]
    assert source["name"] == "aiu"
    assert source["last_ok_at"] == T0.isoformat().replace("+00:00", "Z")
    assert source["errors"] == {"http_5xx": 1}
    assert source["last_error"] == "http_5xx"
    assert source["stale"] is True
    assert TOKEN not in r.text


@pytest.mark.parametrize("url", ["/api/v1/alerts/active", "/api/v1/alerts", "/api/v1/alerts/sources"])
async def test_every_role_may_read_alerts_but_nobody_anonymous(api: ApiEnv, url: str) -> None:
    for role in Role:
        assert (await api.get(url, role)).status_code == 200, role
    assert (await api.env.client.get(url)).status_code == 401


# --------------------------------------------------------------------------------------------------- banner


def render(banner: AlertBanner | None, language: str) -> str:
    context = {} if banner is None else {"alert_banner": banner}
    return templates().render("_alert_banner.html", context, language=language)


async def test_the_banner_shows_one_red_strip_per_site_under_alert(api: ApiEnv) -> None:
    api.feed.set_active(
        [
            api_alert(1, BUCHA, title="Бучанська громада", oblast_uid=14, started_at=T0),
            api_alert(2, BUCHA, title="Бучанська громада", alert_type="artillery_shelling", started_at=T0),
        ]
    )
    await api.service.poll_once("aiu")
    async with api.env.db.session() as session:
        banner = await banner_context(session, api.env.config, api.service, now=T0 + timedelta(minutes=5))
    assert [(a.site, a.alert_type, a.since, a.count) for a in banner.alerts] == [
        ("bucha-school", "air_raid", "14:05", 2)
    ]
    uk = render(banner, "uk")
    en = render(banner, "en")
    assert "Школа №3, Буча (Бучанська громада)" in uk and "14:05" in uk
    assert "Air-raid alert: Школа №3, Буча (Бучанська громада) since 14:05" in en
    assert 'class="banner banner--lost banner--alert"' in en
    assert "Irpin" not in en
    assert "alert_banner.js" in en
    assert " hidden>" not in en.split('id="alert-banner"', 1)[1].split(">", 1)[0] + ">"


async def test_the_banner_is_hidden_when_calm_and_absent_without_feeds(api: ApiEnv) -> None:
    async with api.env.db.session() as session:
        calm = await banner_context(session, api.env.config, api.service, now=T0)
    assert calm.alerts == [] and calm.enabled
    html = render(calm, "en")
    assert 'id="alert-banner"' in html and "hidden" in html.split('id="alert-banner"', 1)[1].split(">", 1)[0]
    assert render(None, "en").strip() == ""
    assert render(AlertBanner(enabled=False), "uk").strip() == ""


async def test_the_banner_notes_a_stale_feed(api: ApiEnv) -> None:
    api.feed.set_active([])
    await api.service.poll_once("aiu")
    api.feed.stop()
    clock_of(api).advance(300)
    await api.service.poll_once("aiu")
    async with api.env.db.session() as session:
        banner = await banner_context(session, api.env.config, api.service, now=clock_of(api).now)
    assert [s.name for s in banner.stale] == ["aiu"]
    html = render(banner, "en")
    assert 'class="banner banner--stale" data-source="aiu"' in html
    assert "has not answered since 14:05" in html
