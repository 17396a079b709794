"""Sirens against the official alerts: silent during an alert → ``siren_failure`` (after 60 s); sounding with no
alert → ``unexpected_activation`` (after 5 s); both close themselves, saying why."""

from __future__ import annotations

from central.incidents.engine import IncidentEngine
from central.store.fleet_models import EventRecord
from tests.central.incidents.conftest import IncidentEnv
from tests.central.incidents.support import at
from varta.contract import SIREN_CHANGED_EVENT


async def _siren(env: IncidentEnv, state: str = "idle", *, since: float = -3600, **attrs: object) -> None:
    await env.fleet.node("node-a", since=at(-3600))
    await env.fleet.siren("node-a", "siren-1", state, since=at(since), **attrs)


async def test_a_siren_silent_through_an_alert_is_a_siren_failure_after_the_delay(env: IncidentEnv) -> None:
    fleet, engine = env.fleet, env.engine
    await _siren(env)
    period = await fleet.alert(started=at(0))

    await engine.evaluate_now(at(59))
    assert await fleet.incidents() == []
    await engine.evaluate_now(at(60))

    (incident,) = await fleet.incidents()
    assert incident.key == f"siren_failure:node-a:siren-1:{period}"
    assert incident.type == "siren_failure"
    assert incident.severity == "critical"
    assert incident.started_at == at(60)  # the moment it failed: the alert began at 0, the siren had 60 s
    assert incident.devices == ["node-a/siren-1"]
    assert incident.data["alert_period_id"] == period
    assert incident.data["alert_started_at"] == at(0).isoformat()
    assert incident.detail == "Alert (Vyshneve) since 23.11.2026 12:00; the siren has not sounded"


async def test_siren_failure_closes_when_the_siren_sounds_saying_how_late(env: IncidentEnv) -> None:
    fleet, engine = env.fleet, env.engine
    await _siren(env)
    await fleet.alert(started=at(0))
    await engine.evaluate_now(at(61))

    await fleet.siren("node-a", "siren-1", "sounding", since=at(95))
    await engine.evaluate_now(at(96))

    (incident,) = await fleet.incidents()
    assert incident.ended_at == at(95)
    assert incident.data["end_code"] == "sounded"
    assert incident.end_reason == "The siren sounded 1 min 35 s after the alert began"
    assert incident.data["end_values"] == {"after_s": 95.0}  # for wording it in another language


async def test_siren_failure_closes_when_the_alert_ends_saying_it_never_sounded(env: IncidentEnv) -> None:
    fleet, engine = env.fleet, env.engine
    await _siren(env)
    period = await fleet.alert(started=at(0))
    await engine.evaluate_now(at(61))

    await fleet.end_alert(period, at(1800))
    await engine.evaluate_now(at(1801))

    (incident,) = await fleet.incidents()
    assert incident.ended_at == at(1800)
    assert incident.data["end_code"] == "alert_ended"
    assert incident.end_reason == "The alert ended; the siren never sounded"


async def test_a_siren_that_sounded_and_stopped_within_the_delay_did_its_duty(env: IncidentEnv) -> None:
    fleet, engine = env.fleet, env.engine
    await _siren(env)
    await fleet.alert(started=at(0))
    # It sounded from 10 to 40 s; the current state only says idle again: the event log tells the story.
    await fleet.siren_changed("node-a", "siren-1", "sounding", "idle", at(10), at(-3600))
    await fleet.siren_changed("node-a", "siren-1", "idle", "sounding", at(40), at(10))
    await fleet.siren("node-a", "siren-1", "idle", since=at(40))

    for t in (61, 600):
        await engine.evaluate_now(at(t))

    assert await fleet.incidents() == []


async def test_last_sounded_at_from_the_edge_counts_as_sounding(env: IncidentEnv) -> None:
    await _siren(env, "idle", since=40, last_sounded_at=at(12).isoformat())
    await env.fleet.alert(started=at(0))

    await env.engine.evaluate_now(at(61))

    assert await env.fleet.incidents() == []


async def test_sounding_before_the_alert_began_does_not_count(env: IncidentEnv) -> None:
    fleet, engine = env.fleet, env.engine
    await _siren(env)
    await fleet.siren_changed("node-a", "siren-1", "sounding", "idle", at(-300), at(-3600))
    await fleet.siren_changed("node-a", "siren-1", "idle", "sounding", at(-200), at(-300))
    await fleet.alert(started=at(0))

    await engine.evaluate_now(at(61))

    assert [i.type for i in await fleet.incidents()] == ["siren_failure"]


async def test_a_siren_sounding_since_before_the_alert_and_still_sounding_is_fine(env: IncidentEnv) -> None:
    await _siren(env, "sounding", since=-30)
    await env.fleet.alert(started=at(0))

    await env.engine.evaluate_now(at(300))

    assert await env.fleet.incidents() == []


async def test_a_siren_whose_node_is_offline_still_fails_with_its_state_unknown(env: IncidentEnv) -> None:
    fleet, engine = env.fleet, env.engine
    await _siren(env)
    await fleet.node("node-a", online=False, reason="shutdown", since=at(-100))
    await fleet.alert(started=at(0))

    await engine.evaluate_now(at(60))

    (incident,) = await fleet.incidents()
    assert incident.type == "siren_failure"
    assert incident.data["siren_state"] == "unknown"
    assert "siren state unknown" in incident.detail


async def test_an_alert_in_another_region_does_not_concern_the_siren(env: IncidentEnv) -> None:
    await _siren(env)
    await env.fleet.alert("UA-12-HROMADA-LISOVE", started=at(0), name="Lisove")

    await env.engine.evaluate_now(at(600))

    assert await env.fleet.incidents() == []


async def test_a_second_alert_period_keeps_the_same_siren_failure_open(env: IncidentEnv) -> None:
    fleet, engine = env.fleet, env.engine
    await _siren(env)
    hromada = await fleet.alert(started=at(0))
    await engine.evaluate_now(at(61))
    await fleet.alert("UA-74", started=at(30), name="Oblast")  # the oblast-wide alert, listed by the site too

    await fleet.end_alert(hromada, at(100))
    for t in (101, 200):
        await engine.evaluate_now(at(t))

    (incident,) = await fleet.incidents()
    assert incident.ended_at is None
    assert incident.key == f"siren_failure:node-a:siren-1:{hromada}"


async def test_a_siren_sounding_with_no_alert_is_an_unexpected_activation_after_5_s(env: IncidentEnv) -> None:
    fleet, engine = env.fleet, env.engine
    await _siren(env)
    await fleet.siren("node-a", "siren-1", "sounding", since=at(0))

    await engine.evaluate_now(at(4))
    assert await fleet.incidents() == []
    await engine.evaluate_now(at(5))

    (incident,) = await fleet.incidents()
    assert incident.key == "unexpected_activation:node-a:siren-1:2026-11-23T10:00:00Z"
    assert incident.severity == "error"
    assert incident.started_at == at(0)

    await fleet.siren("node-a", "siren-1", "idle", since=at(42))
    await engine.evaluate_now(at(43))

    (incident,) = await fleet.incidents()
    assert incident.ended_at == at(42)
    assert incident.end_reason == "The siren stopped after 42 s"


async def test_an_activation_is_unexpected_only_once_the_alert_feed_was_read_after_the_delay(env: IncidentEnv) -> None:
    # The feeds report a declared alert at their next poll: a siren answering a real alert must not be called
    # "unexpected" in the seconds before central has heard of the alert.
    fleet = env.fleet
    feed_read_at = [at(3)]
    engine = IncidentEngine(env.config, env.db, env.bus, alerts_known_until=lambda: feed_read_at[0])
    await _siren(env)
    await fleet.siren("node-a", "siren-1", "sounding", since=at(0))

    await engine.evaluate_now(at(30))
    assert await fleet.incidents() == [], "the feed was last read 2 s before the activation was due"

    feed_read_at[0] = at(12)  # a poll after the 5 s delay, still without an alert
    await engine.evaluate_now(at(31))

    (incident,) = await fleet.incidents()
    assert (incident.type, incident.started_at) == ("unexpected_activation", at(0))


async def test_unexpected_activation_closes_when_an_official_alert_begins(env: IncidentEnv) -> None:
    fleet, engine = env.fleet, env.engine
    await _siren(env, "sounding", since=0)
    await engine.evaluate_now(at(10))

    await fleet.alert(started=at(20))
    await engine.evaluate_now(at(21))

    (incident,) = await fleet.incidents()
    assert incident.type == "unexpected_activation"
    assert incident.ended_at == at(20)
    assert incident.data["end_code"] == "alert_started"


async def test_a_siren_still_sounding_well_after_the_alert_ended_is_unexpected_from_the_alerts_end(
    env: IncidentEnv,
) -> None:
    fleet, engine = env.fleet, env.engine
    await _siren(env)
    period = await fleet.alert(started=at(0))
    await fleet.siren("node-a", "siren-1", "sounding", since=at(10))
    await engine.evaluate_now(at(100))
    await fleet.end_alert(period, at(600))

    await engine.evaluate_now(at(604))
    assert await fleet.incidents() == []
    await engine.evaluate_now(at(605))

    (incident,) = await fleet.incidents()
    assert incident.type == "unexpected_activation"
    assert incident.started_at == at(600)


async def test_a_siren_sounding_during_an_alert_is_no_incident(env: IncidentEnv) -> None:
    await _siren(env)
    await env.fleet.alert(started=at(0))
    await env.fleet.siren("node-a", "siren-1", "sounding", since=at(20))

    for t in (30, 61, 600):
        await env.engine.evaluate_now(at(t))

    assert await env.fleet.incidents() == []


async def test_garbage_in_siren_history_and_attrs_is_counted_and_skipped(env: IncidentEnv) -> None:
    fleet, engine = env.fleet, env.engine
    await _siren(env, "idle", last_sounded_at="yesterday-ish")
    await fleet.alert(started=at(0))
    async with env.db.session() as s:
        for data in ({"state": "banana"}, {"nothing": True}, {"state": "sounding", "previous": "idle"}):
            s.add(
                EventRecord(
                    node_id="node-a",
                    site="vyshneve",
                    ts=at(10),
                    received_at=at(10),
                    kind=SIREN_CHANGED_EVENT,
                    severity="info",
                    device_id="siren-1",
                    data=data,
                )
            )
        await s.commit()

    await engine.evaluate_now(at(60))

    assert [i.type for i in await fleet.incidents()] == ["siren_failure"]
    assert engine.stats()["bad_siren_events"] == 3
