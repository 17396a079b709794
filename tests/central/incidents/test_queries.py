"""The incident queries other parts call (dashboard, API), on SQLite and PostgreSQL."""

from __future__ import annotations

from typing import Any

import pytest

from central.incidents import queries
from central.store.incident_models import Incident
from tests.central.incidents.conftest import IncidentEnv
from tests.central.incidents.support import at


async def add(env: IncidentEnv, key: str, started: float, ended: float | None = None, **values: Any) -> int:
    data: dict[str, Any] = {
        "key": key,
        "type": "node_down",
        "severity": "error",
        "site": "vyshneve",
        "devices": [],
        "title": key,
        "detail": "",
        "data": {},
        "started_at": at(started),
        "ended_at": at(ended) if ended is not None else None,
        "notes": [],
        "updated_at": at(started),
    }
    data.update(values)
    async with env.db.session() as s:
        row = Incident(**data)
        s.add(row)
        await s.commit()
        return row.id


async def test_list_puts_open_incidents_first_then_the_newest(env: IncidentEnv) -> None:
    closed_new = await add(env, "a", 500, 600)
    open_old = await add(env, "b", 0)
    closed_old = await add(env, "c", 100, 200)
    open_new = await add(env, "d", 300, type="camera_fault", site="lisove")

    async with env.db.session() as s:
        every = await queries.list_incidents(s, state="all")
        opened = await queries.list_incidents(s)
        closed = await queries.list_incidents(s, state="closed")
        cameras = await queries.list_incidents(s, state="all", type="camera_fault")
        lisove = await queries.list_incidents(s, state="all", site="lisove")
        recent = await queries.list_incidents(s, state="all", since=at(250))
        two = await queries.list_incidents(s, state="all", limit=2)

    assert [i.id for i in every] == [open_new, open_old, closed_new, closed_old]
    assert [i.id for i in opened] == [open_new, open_old]
    assert [i.id for i in closed] == [closed_new, closed_old]
    assert [i.id for i in cameras] == [open_new]
    assert [i.id for i in lisove] == [open_new]
    assert [i.id for i in recent] == [open_new, open_old, closed_new]  # active at some time since 250
    assert [i.id for i in two] == [open_new, open_old]


async def test_acknowledge_keeps_the_first_and_refuses_unknown_ids(env: IncidentEnv) -> None:
    incident_id = await add(env, "a", 0)

    async with env.db.session() as s:
        first = await queries.acknowledge(s, incident_id, "olena", at(10))
        await s.commit()
    async with env.db.session() as s:
        again = await queries.acknowledge(s, incident_id, "taras", at(20))
        await s.commit()
        with pytest.raises(LookupError, match="unknown incident 999"):
            await queries.acknowledge(s, 999, "taras", at(20))

    assert (first.acknowledged_by, first.acknowledged_at) == ("olena", at(10))
    assert (again.acknowledged_by, again.acknowledged_at) == ("olena", at(10))
    assert again.ended_at is None  # acknowledging does not close


async def test_notes_are_appended_and_bad_ones_refused(env: IncidentEnv) -> None:
    incident_id = await add(env, "a", 0, 100)

    async with env.db.session() as s:
        await queries.add_note(s, incident_id, "olena", "crew on the way", at(10))
        await queries.add_note(s, incident_id, "taras", "  fixed  ", at(20))
        await s.commit()
        for text in ("", "   ", "x" * (queries.NOTE_MAX_CHARS + 1)):
            with pytest.raises(ValueError):
                await queries.add_note(s, incident_id, "olena", text, at(30))
        with pytest.raises(LookupError):
            await queries.add_note(s, 999, "olena", "hello", at(30))
    async with env.db.session() as s:
        incident = await queries.get_incident(s, incident_id)

    assert incident is not None
    assert incident.notes == [
        {"at": at(10).isoformat(), "by": "olena", "text": "crew on the way"},
        {"at": at(20).isoformat(), "by": "taras", "text": "fixed"},
    ]


async def test_the_view_is_plain_json_shared_by_api_stream_and_notifications(env: IncidentEnv) -> None:
    incident_id = await add(env, "node_down:n1", 0, 90, data={"site_name": "Vyshneve village"}, devices=["n1/"])
    async with env.db.session() as s:
        incident = await queries.get_incident(s, incident_id)
    assert incident is not None

    view = queries.incident_view(incident)

    assert view["id"] == incident_id
    assert view["site_name"] == "Vyshneve village"
    assert view["open"] is False
    assert view["started_at"] == at(0).isoformat()
    assert view["ended_at"] == at(90).isoformat()
    assert view["duration_s"] == 90.0
    assert view["acknowledged"] is False and view["acknowledged_by"] is None
    assert view["devices"] == ["n1/"]
