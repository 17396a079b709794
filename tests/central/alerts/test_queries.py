"""Which sites an alert covers, and the history queries (on SQLite and PostgreSQL)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from central.alerts.queries import active_alerts, covers, history, periods_between, site_alerts
from central.store.alert_models import AlertPeriod
from tests.central.alerts.conftest import BUCHA, IRPIN, KYIV_OBLAST, LVIV_OBLAST, SITES, AlertEnv

T0 = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)


def period(
    source_id: str,
    region_uid: str,
    *,
    region_type: str = "hromada",
    oblast_uid: str | None = KYIV_OBLAST,
    alert_type: str = "air_raid",
    started: datetime = T0,
    ended: datetime | None = None,
) -> AlertPeriod:
    return AlertPeriod(
        source="aiu",
        source_id=source_id,
        region_uid=region_uid,
        region_name=f"region {region_uid}",
        region_type=region_type,
        oblast_uid=oblast_uid,
        alert_type=alert_type,
        started_at=started,
        ended_at=ended,
        updated_at=started,
    )


async def store(env: AlertEnv, *rows: AlertPeriod) -> None:
    async with env.db.session() as session:
        session.add_all(rows)
        await session.commit()


async def covered(env: AlertEnv, alert_types: set[str] | None = None) -> dict[str, list[str]]:
    async with env.db.session() as session:
        result = await site_alerts(session, SITES, alert_types=alert_types)
    return {site: [p.source_id for p in periods] for site, periods in result.items()}


async def test_an_oblast_wide_alert_covers_every_site_that_lists_the_oblast(any_alert_env: AlertEnv) -> None:
    await store(any_alert_env, period("obl", KYIV_OBLAST, region_type="oblast"))
    assert await covered(any_alert_env) == {"bucha-school": ["obl"], "irpin-square": ["obl"], "lviv-center": []}


async def test_another_oblasts_alert_covers_no_site_of_this_one(any_alert_env: AlertEnv) -> None:
    await store(any_alert_env, period("lviv", LVIV_OBLAST, region_type="oblast", oblast_uid=LVIV_OBLAST))
    assert await covered(any_alert_env) == {"bucha-school": [], "irpin-square": [], "lviv-center": ["lviv"]}


async def test_a_hromada_alert_covers_only_the_sites_in_that_hromada(any_alert_env: AlertEnv) -> None:
    # Same oblast, other hromada: the oblast id alone does not make Irpin's siren expected to sound.
    await store(any_alert_env, period("bucha", BUCHA))
    assert await covered(any_alert_env) == {"bucha-school": ["bucha"], "irpin-square": [], "lviv-center": []}


async def test_an_oblast_alert_with_its_own_location_id_is_matched_through_its_oblast(
    any_alert_env: AlertEnv,
) -> None:
    await store(any_alert_env, period("obl2", "oblast-location-77", region_type="oblast", oblast_uid=LVIV_OBLAST))
    assert (await covered(any_alert_env))["lviv-center"] == ["obl2"]


async def test_ended_alerts_and_other_types_can_be_left_out(any_alert_env: AlertEnv) -> None:
    await store(
        any_alert_env,
        period("old", BUCHA, ended=T0 + timedelta(minutes=5)),
        period("art", BUCHA, alert_type="artillery_shelling", started=T0 + timedelta(minutes=1)),
        period("air", BUCHA, started=T0 + timedelta(minutes=2)),
    )
    assert (await covered(any_alert_env))["bucha-school"] == ["art", "air"]  # open ones, oldest first
    assert (await covered(any_alert_env, alert_types={"air_raid"}))["bucha-school"] == ["air"]
    async with any_alert_env.db.session() as session:
        assert [p.source_id for p in await active_alerts(session)] == ["art", "air"]


async def test_history_returns_the_periods_overlapping_a_window(any_alert_env: AlertEnv) -> None:
    await store(
        any_alert_env,
        period("before", BUCHA, started=T0 - timedelta(hours=3), ended=T0 - timedelta(hours=2)),
        period("overlapping", BUCHA, started=T0 - timedelta(hours=1), ended=T0 + timedelta(minutes=10)),
        period("inside", IRPIN, started=T0 + timedelta(minutes=20), ended=T0 + timedelta(minutes=40)),
        period("open", KYIV_OBLAST, region_type="oblast", started=T0 + timedelta(minutes=50)),
        period("after", BUCHA, started=T0 + timedelta(hours=2)),
    )
    start, end = T0, T0 + timedelta(hours=1)
    async with any_alert_env.db.session() as session:
        everything = [p.source_id for p in await periods_between(session, start, end)]
        bucha = [p.source_id for p in await periods_between(session, start, end, SITES["bucha-school"].regions)]
        newest = [p.source_id for p in await history(session, start, end, limit=2)]
    assert everything == ["overlapping", "inside", "open"]
    assert bucha == ["overlapping", "open"]
    assert newest == ["open", "inside"]


def test_the_matching_rule_in_python_agrees_with_the_documented_cases() -> None:
    oblast = period("o", KYIV_OBLAST, region_type="oblast")
    hromada = period("h", BUCHA)
    assert covers(oblast, SITES["irpin-square"].regions)
    assert covers(hromada, SITES["bucha-school"].regions)
    assert not covers(hromada, SITES["irpin-square"].regions)
    assert not covers(oblast, SITES["lviv-center"].regions)
