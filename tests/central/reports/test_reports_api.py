"""The availability report from the store, and its API: JSON, CSV and PDF, Ukrainian unless asked otherwise."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from central.api import reports as reports_api
from central.auth.roles import Role
from central.reports import pdf_export
from central.reports.loader import availability_report
from central.store.camera_models import Camera
from central.store.db import Database
from central.store.fleet_models import DeviceStateRecord, Node
from central.store.incident_models import Outage
from tests.central.reports.pdf_text import page_count, page_texts
from tests.central.reports.test_availability import AFTER_MAY, MAY, at
from tests.central.test_auth_support import CentralEnv, central_env

__all__ = ["central_env"]

LONG_AGO = datetime(2025, 3, 1, tzinfo=UTC)


def state(node_id: str, device_id: str, kind: str, name: str) -> DeviceStateRecord:
    return DeviceStateRecord(
        node_id=node_id,
        device_id=device_id,
        kind=kind,
        name=name,
        status="online",
        reason=None,
        attrs={},
        boot_id="b1",
        seq=1,
        ts=LONG_AGO,
        status_since=LONG_AGO,
        updated_at=LONG_AGO,
    )


def outage(node_id: str, device_id: str, kind: str, cause: str, start: str, end: str | None) -> Outage:
    return Outage(
        node_id=node_id,
        device_id=device_id,
        kind=kind,
        site="school",
        cause=cause,
        started_at=at(start),
        ended_at=at(end) if end else None,
    )


async def seed_month(db: Database) -> None:
    """The scripted May of test_availability, stored as central stores it."""
    async with db.session() as s:
        s.add(Node(node_id="school-01", site="school", name="Школа №3", first_seen=LONG_AGO))
        s.add(Node(node_id="park-02", site="park", name="Парк", first_seen=at("06-03 09:00")))
        s.add(state("school-01", "cam-1", "camera", "Вхід"))
        s.add(state("school-01", "siren-1", "siren", "Сирена"))
        s.add(state("school-01", "ups-1", "ups", "ДБЖ"))
        # A camera adopted on 17 May (local midnight): observed from then, not from its node's first message.
        s.add(state("school-01", "cam-3", "camera", ""))
        s.add(Camera(node_id="school-01", device_id="cam-3", site="school", name="Сходи", created_at=at("05-16 21:00")))
        s.add_all(
            [
                outage("school-01", "", "node", "power", "04-30 20:00", "04-30 23:00"),
                outage("school-01", "", "node", "network", "05-10 10:00", "05-10 10:30"),
                outage("school-01", "cam-1", "camera", "device", "05-05 08:00", "05-05 12:00"),
                outage("school-01", "cam-1", "camera", "power", "05-05 10:00", "05-05 11:00"),
                outage("school-01", "cam-1", "camera", "device", "05-05 11:30", "05-05 13:00"),
                outage("school-01", "cam-1", "camera", "device", "04-10 08:00", "04-10 09:00"),
                outage("school-01", "siren-1", "siren", "device", "05-31 18:00", None),
                outage("school-01", "ups-1", "ups", "power", "05-02 00:00", "05-02 01:00"),
                outage("school-01", "cam-3", "camera", "network", "05-16 20:00", "05-16 22:00"),
                # A camera forgotten since: it has outages but no state any more.
                outage("school-01", "cam-9", "camera", "power", "05-04 00:00", "05-04 02:00"),
                # Outages of other months.
                outage("school-01", "cam-1", "camera", "device", "06-02 08:00", None),
            ]
        )
        await s.commit()


async def test_the_report_from_the_store_matches_the_hand_computed_month(database_url: str) -> None:
    db = Database(database_url)
    try:
        await seed_month(db)
        async with db.session() as session:
            report = await availability_report(session, MAY, AFTER_MAY)
    finally:
        await db.dispose()

    rows = {r.device.device_id: r for r in report.rows}
    assert list(rows) == ["", "cam-1", "cam-3", "cam-9", "siren-1"]  # no UPS, no park-02 (first seen in June)
    assert rows[""].down_s == 9_000 and rows[""].observed_s == 2_678_400
    assert rows["cam-1"].down_s == 18_000
    assert rows["cam-1"].by_cause["power"].down_s == 3_600
    assert rows["cam-1"].by_cause["device"].outages == 1
    assert rows["siren-1"].down_s == 10_800
    # cam-3: observed 16 May 21:00 → 31 May 21:00 = 1,296,000 s; down 21:00-22:00 = 3,600 s.
    assert rows["cam-3"].observed_s == 1_296_000
    assert rows["cam-3"].down_s == 3_600
    assert rows["cam-3"].device.name == "Сходи"
    # cam-9: listed from its outages, from its node's first message: 2 h of power.
    assert rows["cam-9"].device.kind == "camera"
    assert rows["cam-9"].by_cause["power"].down_s == 7_200


@pytest.fixture
async def env(central_env: CentralEnv) -> CentralEnv:
    await seed_month(central_env.db)
    for role in Role:
        await central_env.add_user(f"u-{role.value}", role)
    return central_env


async def cookie(env: CentralEnv, role: Role) -> dict[str, str]:
    return {"cookie": f"varta_session={await env.session_token(f'u-{role.value}')}"}


async def test_json_gives_every_device_with_its_causes(env: CentralEnv) -> None:
    r = await env.client.get("/api/v1/reports/availability?month=2025-05", headers=await cookie(env, Role.OBSERVER))

    assert r.status_code == 200
    body = r.json()
    assert body["month"] == "2025-05"
    assert body["time_zone"] == "Europe/Kyiv"
    assert body["start"].startswith("2025-04-30T21:00:00")
    assert body["in_progress"] is False
    node = body["devices"][0]
    assert (node["node_id"], node["device_id"], node["kind"]) == ("school-01", "", "node")
    assert node["uptime_percent"] == 99.66
    assert node["by_cause"]["power"] == {"outages": 1, "down_s": 7200.0}
    assert node["by_cause"]["network"] == {"outages": 1, "down_s": 1800.0}
    assert [s["kind"] for s in body["summary"]] == ["node", "camera", "siren"]


async def test_csv_is_ukrainian_by_default_and_english_on_request(env: CentralEnv) -> None:
    headers = await cookie(env, Role.OBSERVER)

    uk = await env.client.get("/api/v1/reports/availability.csv?month=2025-05", headers=headers)
    en = await env.client.get("/api/v1/reports/availability.csv?month=2025-05&lang=en", headers=headers)

    assert uk.status_code == 200
    assert uk.headers["content-type"] == "text/csv; charset=utf-8"
    assert uk.headers["content-disposition"] == 'attachment; filename="varta-availability-2025-05-uk.csv"'
    assert uk.content.startswith("\ufeffОб’єкт;Вузол;".encode())
    assert "school-01;;Вузол;Школа №3;744,00;99,66;150,0" in uk.content.decode()
    assert en.content.startswith("\ufeffSite;Node;".encode())
    assert "school-01;;Node;Школа №3;744.00;99.66;150.0" in en.content.decode()


async def test_pdf_is_a_ukrainian_pdf(env: CentralEnv) -> None:
    r = await env.client.get("/api/v1/reports/availability.pdf?month=2025-05", headers=await cookie(env, Role.OBSERVER))

    assert r.status_code == 200
    assert r.headers["content-type"] == "application/pdf"
    assert r.headers["content-disposition"] == 'attachment; filename="varta-availability-2025-05-uk.pdf"'
    assert page_count(r.content) == 1
    assert "Звіт про доступність: травень 2025" in page_texts(r.content)[0]


async def test_a_missing_font_is_a_503_that_says_what_to_install(
    env: CentralEnv, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(pdf_export, "FONT_DIR", tmp_path)
    before = reports_api.stats().refused.get("font_missing", 0)

    r = await env.client.get("/api/v1/reports/availability.pdf?month=2025-05", headers=await cookie(env, Role.OBSERVER))

    assert r.status_code == 503
    assert "fonts-dejavu-core" in r.json()["detail"]
    assert reports_api.stats().refused["font_missing"] == before + 1


@pytest.mark.parametrize("month", ["2025-13", "May", "2025-5", "x" * 500, "2025-05'; DROP TABLE outages; --"])
async def test_a_bad_month_is_refused_and_counted(env: CentralEnv, month: str) -> None:
    before = reports_api.stats().refused.get("bad_month", 0)

    for suffix in ("", ".csv", ".pdf"):
        r = await env.client.get(
            f"/api/v1/reports/availability{suffix}", params={"month": month}, headers=await cookie(env, Role.OBSERVER)
        )
        assert r.status_code == 422, suffix
        assert "month" in r.json()["detail"]

    assert reports_api.stats().refused["bad_month"] == before + 3
    r = await env.client.get("/api/v1/reports/stats", headers=await cookie(env, Role.OPERATOR))
    assert r.json()["refused"]["bad_month"] == before + 3


async def test_the_current_month_is_the_default(env: CentralEnv) -> None:
    r = await env.client.get("/api/v1/reports/availability", headers=await cookie(env, Role.OBSERVER))

    assert r.status_code == 200
    assert r.json()["in_progress"] is True


async def test_reports_need_a_signed_in_user(env: CentralEnv) -> None:
    for path in (
        "/api/v1/reports/availability",
        "/api/v1/reports/availability.csv",
        "/api/v1/reports/availability.pdf",
    ):
        assert (await env.client.get(path)).status_code == 401
    r = await env.client.get("/api/v1/reports/stats", headers=await cookie(env, Role.DISPATCHER))
    assert r.status_code == 403
