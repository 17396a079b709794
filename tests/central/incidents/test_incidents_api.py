"""The incident REST API: observers read, dispatchers acknowledge and annotate; audit, bus and notifications follow.

The real app (``create_app``, no broker) on a temporary SQLite database, called in-process over httpx.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from central.app import create_app
from central.auth.roles import Role
from central.bus import BusEvent
from central.config import NotificationSettings, TelegramTarget, WebhookTarget
from central.store.incident_models import Incident, NotificationDelivery
from tests.central.incidents.support import T0, at
from tests.central.test_auth_support import BASE_URL, ORIGIN, CentralEnv, make_config, with_cookie


@pytest.fixture
async def api(tmp_path: Path) -> AsyncIterator[CentralEnv]:
    notifications = NotificationSettings(
        webhooks=[WebhookTarget(name="ops", url="http://127.0.0.1:9/hook", min_severity="warning")],
        telegram=[TelegramTarget(name="duty", bot_token="123:abc", chat_id="-100", min_severity="critical")],
    )
    config = make_config(tmp_path, notifications=notifications, default_language="en")
    app = create_app(config, start_background=False)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url=BASE_URL) as client:
            env = CentralEnv(app=app, config=config, client=client)
            for role in Role:
                await env.add_user(f"user-{role.value}", role)
            yield env


async def auth(env: CentralEnv, role: Role) -> dict[str, str]:
    return {"authorization": f"Bearer {await env.api_token(f'user-{role.value}')}"}


async def add_incident(env: CentralEnv, **values: Any) -> int:
    data: dict[str, Any] = {
        "key": "camera_fault:node-a:cam-1",
        "type": "camera_fault",
        "severity": "warning",
        "site": "vyshneve",
        "node_id": "node-a",
        "device_id": "cam-1",
        "devices": ["node-a/cam-1"],
        "title": "Camera fault: cam-1 at Vyshneve",
        "detail": "offline (unreachable)",
        "data": {"site_name": "Vyshneve"},
        "started_at": T0,
        "ended_at": None,
        "end_reason": "",
        "notes": [],
        "updated_at": T0,
    }
    data.update(values)
    async with env.db.session() as s:
        row = Incident(**data)
        s.add(row)
        await s.commit()
        return row.id


async def deliveries(env: CentralEnv) -> list[NotificationDelivery]:
    async with env.db.session() as s:
        return list((await s.scalars(select(NotificationDelivery).order_by(NotificationDelivery.id))).all())


async def test_observers_list_open_incidents_first_then_newest(api: CentralEnv) -> None:
    old_closed = await add_incident(api, key="a", started_at=at(-7200), ended_at=at(-3600))
    older_open = await add_incident(api, key="b", started_at=at(-600))
    newer_open = await add_incident(api, key="c", started_at=at(-60), site="lisove")
    headers = await auth(api, Role.OBSERVER)

    default = await api.client.get("/api/v1/incidents", headers=headers)
    every = await api.client.get("/api/v1/incidents", params={"state": "all"}, headers=headers)
    closed = await api.client.get("/api/v1/incidents", params={"state": "closed"}, headers=headers)
    lisove = await api.client.get("/api/v1/incidents", params={"state": "all", "site": "lisove"}, headers=headers)

    assert default.status_code == 200
    assert [i["id"] for i in default.json()] == [newer_open, older_open]
    assert [i["id"] for i in every.json()] == [newer_open, older_open, old_closed]
    assert [i["id"] for i in closed.json()] == [old_closed]
    assert [i["id"] for i in lisove.json()] == [newer_open]
    first = default.json()[0]
    assert first["open"] is True and first["acknowledged"] is False
    assert first["devices"] == ["node-a/cam-1"]
    assert first["site_name"] == "Vyshneve"


async def test_filters_by_type_and_since_and_limit(api: CentralEnv) -> None:
    await add_incident(api, key="a", started_at=at(-7200), ended_at=at(-3600))
    recent = await add_incident(api, key="b", started_at=at(-600), ended_at=at(-300))
    siren = await add_incident(api, key="c", type="siren_failure", severity="critical")
    headers = await auth(api, Role.OBSERVER)

    since = await api.client.get(
        "/api/v1/incidents", params={"state": "all", "since": at(-1000).isoformat()}, headers=headers
    )
    sirens = await api.client.get(
        "/api/v1/incidents", params={"state": "all", "type": "siren_failure"}, headers=headers
    )
    one = await api.client.get("/api/v1/incidents", params={"state": "all", "limit": 1}, headers=headers)
    bad_type = await api.client.get("/api/v1/incidents", params={"type": "meteor"}, headers=headers)
    bad_limit = await api.client.get("/api/v1/incidents", params={"limit": 0}, headers=headers)

    assert [i["id"] for i in since.json()] == [siren, recent]
    assert [i["id"] for i in sirens.json()] == [siren]
    assert [i["id"] for i in one.json()] == [siren]
    assert bad_type.status_code == 422
    assert bad_limit.status_code == 422


async def test_one_incident_and_a_clear_404(api: CentralEnv) -> None:
    incident_id = await add_incident(api)
    headers = await auth(api, Role.OBSERVER)

    found = await api.client.get(f"/api/v1/incidents/{incident_id}", headers=headers)
    missing = await api.client.get("/api/v1/incidents/424242", headers=headers)
    garbage = await api.client.get("/api/v1/incidents/not-a-number", headers=headers)

    assert found.status_code == 200
    assert found.json()["key"] == "camera_fault:node-a:cam-1"
    assert missing.status_code == 404
    assert missing.json()["detail"] == "unknown incident 424242"
    assert garbage.status_code == 422


async def test_a_dispatcher_acknowledges_and_it_is_audited_announced_and_notified(api: CentralEnv) -> None:
    incident_id = await add_incident(api)
    events: list[BusEvent] = []

    async def listen() -> None:
        async with api.app.state.services.bus.subscribe() as stream:
            async for event in stream:
                events.append(event)

    listener = asyncio.create_task(listen())
    await asyncio.sleep(0)
    try:
        response = await api.client.post(
            f"/api/v1/incidents/{incident_id}/ack", headers=await auth(api, Role.DISPATCHER)
        )
        await asyncio.sleep(0.05)
    finally:
        listener.cancel()

    assert response.status_code == 200
    body = response.json()
    assert body["acknowledged_by"] == "user-dispatcher"
    assert body["acknowledged"] is True
    assert body["open"] is True  # acknowledging does not close it
    entries = await api.audit("incident.acknowledged")
    assert [(e.actor, e.target) for e in entries] == [("user-dispatcher", f"incident/{incident_id}")]
    assert [(e.kind, e.data["id"], e.data["acknowledged_by"]) for e in events] == [
        ("incident", incident_id, "user-dispatcher")
    ]
    queued = await deliveries(api)
    # the webhook takes warnings; the Telegram chat only critical incidents
    assert [(d.channel, d.target, d.transition, d.status) for d in queued] == [
        ("webhook", "ops", "acknowledged", "pending")
    ]
    assert queued[0].payload["event"] == "incident.acknowledged"
    assert queued[0].payload["incident"]["acknowledged_by"] == "user-dispatcher"


async def test_acknowledging_twice_keeps_the_first_and_notifies_once(api: CentralEnv) -> None:
    incident_id = await add_incident(api)

    first = await api.client.post(f"/api/v1/incidents/{incident_id}/ack", headers=await auth(api, Role.DISPATCHER))
    second = await api.client.post(f"/api/v1/incidents/{incident_id}/ack", headers=await auth(api, Role.ADMIN))

    assert first.status_code == second.status_code == 200
    assert second.json()["acknowledged_by"] == "user-dispatcher"
    assert second.json()["acknowledged_at"] == first.json()["acknowledged_at"]
    assert len(await deliveries(api)) == 1
    assert len(await api.audit("incident.acknowledged")) == 1


async def test_a_closed_incident_can_still_be_acknowledged_and_annotated(api: CentralEnv) -> None:
    incident_id = await add_incident(api, ended_at=at(60), end_reason="The device works again")
    headers = await auth(api, Role.DISPATCHER)

    ack = await api.client.post(f"/api/v1/incidents/{incident_id}/ack", headers=headers)
    note = await api.client.post(f"/api/v1/incidents/{incident_id}/notes", json={"text": "replaced"}, headers=headers)

    assert ack.status_code == 200 and ack.json()["acknowledged_by"] == "user-dispatcher"
    assert ack.json()["open"] is False
    assert note.status_code == 201
    assert [n["text"] for n in note.json()["notes"]] == ["replaced"]


async def test_notes_are_appended_trimmed_and_audited(api: CentralEnv) -> None:
    incident_id = await add_incident(api)
    headers = await auth(api, Role.DISPATCHER)

    one = await api.client.post(
        f"/api/v1/incidents/{incident_id}/notes", json={"text": "  crew sent  "}, headers=headers
    )
    two = await api.client.post(
        f"/api/v1/incidents/{incident_id}/notes", json={"text": "fuse replaced"}, headers=headers
    )

    assert one.status_code == two.status_code == 201
    notes = two.json()["notes"]
    assert [(n["by"], n["text"]) for n in notes] == [
        ("user-dispatcher", "crew sent"),
        ("user-dispatcher", "fuse replaced"),
    ]
    assert notes[0]["at"] <= notes[1]["at"]
    assert len(await api.audit("incident.note_added")) == 2
    assert await deliveries(api) == []  # notes notify nobody


@pytest.mark.parametrize(
    "body",
    [{"text": ""}, {"text": "   "}, {"text": "x" * 2001}, {}, {"text": "ok", "extra": 1}, {"text": 5}],
    ids=["empty", "blank", "too-long", "missing", "extra-field", "not-text"],
)
async def test_bad_notes_are_refused_with_422(api: CentralEnv, body: dict[str, Any]) -> None:
    incident_id = await add_incident(api)

    response = await api.client.post(
        f"/api/v1/incidents/{incident_id}/notes", json=body, headers=await auth(api, Role.DISPATCHER)
    )

    assert response.status_code == 422
    async with api.db.session() as s:
        incident = await s.get(Incident, incident_id)
        assert incident is not None and incident.notes == []


async def test_a_note_of_exactly_2000_characters_is_fine(api: CentralEnv) -> None:
    incident_id = await add_incident(api)

    response = await api.client.post(
        f"/api/v1/incidents/{incident_id}/notes", json={"text": "я" * 2000}, headers=await auth(api, Role.DISPATCHER)
    )

    assert response.status_code == 201


async def test_ack_and_notes_of_an_unknown_incident_are_404(api: CentralEnv) -> None:
    headers = await auth(api, Role.DISPATCHER)

    ack = await api.client.post("/api/v1/incidents/777/ack", headers=headers)
    note = await api.client.post("/api/v1/incidents/777/notes", json={"text": "x"}, headers=headers)

    assert (ack.status_code, note.status_code) == (404, 404)
    assert ack.json()["detail"] == "unknown incident 777"


async def test_observers_may_read_but_not_acknowledge_or_annotate(api: CentralEnv) -> None:
    incident_id = await add_incident(api)
    headers = await auth(api, Role.OBSERVER)

    ack = await api.client.post(f"/api/v1/incidents/{incident_id}/ack", headers=headers)
    note = await api.client.post(f"/api/v1/incidents/{incident_id}/notes", json={"text": "x"}, headers=headers)
    anonymous = await api.client.get("/api/v1/incidents")

    assert (ack.status_code, note.status_code, anonymous.status_code) == (403, 403, 401)
    async with api.db.session() as s:
        incident = await s.get(Incident, incident_id)
        assert incident is not None and incident.acknowledged_by is None and incident.notes == []


async def test_a_browser_session_acknowledges_only_from_our_own_origin(api: CentralEnv) -> None:
    incident_id = await add_incident(api)
    token = await api.session_token("user-dispatcher")

    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=api.app), base_url=BASE_URL) as browser:
        foreign = await browser.post(
            f"/api/v1/incidents/{incident_id}/ack", headers=with_cookie(token, origin="https://evil.example")
        )
        ours = await browser.post(f"/api/v1/incidents/{incident_id}/ack", headers=with_cookie(token, **ORIGIN))

    assert foreign.status_code == 403
    assert ours.status_code == 200


async def test_engine_and_notification_counters_are_for_operators(api: CentralEnv) -> None:
    await add_incident(api)
    await api.client.post("/api/v1/incidents/1/ack", headers=await auth(api, Role.DISPATCHER))

    refused = await api.client.get("/api/v1/system/incidents", headers=await auth(api, Role.DISPATCHER))
    stats = await api.client.get("/api/v1/system/incidents", headers=await auth(api, Role.OPERATOR))

    assert refused.status_code == 403
    assert stats.status_code == 200
    assert stats.json() == {"engine": None, "notifications": None, "pending_notifications": 1}


async def test_since_without_a_zone_is_read_as_utc(api: CentralEnv) -> None:
    incident_id = await add_incident(api, started_at=at(-600), ended_at=at(-300))
    headers = await auth(api, Role.OBSERVER)
    naive = (at(-400) - timedelta(0)).replace(tzinfo=None).isoformat()

    response = await api.client.get("/api/v1/incidents", params={"state": "all", "since": naive}, headers=headers)

    assert [i["id"] for i in response.json()] == [incident_id]
