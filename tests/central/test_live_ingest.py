"""Ingest closes live-view sessions: on the node's ``camera.live.ended`` event (with its reason), and when the node
goes offline or restarts; each end is audited once and announced to the viewer's page (``live_ended``)."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import select

from central.auth.models import AuditEntry
from central.store.fleet_models import Node
from central.store.live_models import LiveSession
from tests.central.conftest import IngestEnv
from tests.central.test_cameras_support import CameraNode
from tests.central.test_ingest import eventually
from varta.contract import (
    LIVE_ENDED_EVENT,
    Availability,
    Channel,
    Event,
    LiveEnded,
    LiveEndReason,
    Severity,
    encode,
    topic,
    utcnow,
)


async def open_session(env: IngestEnv, session_id: str, node_id: str, user: str = "olena") -> None:
    async with env.db.session() as s:
        s.add(
            LiveSession(
                session_id=session_id,
                node_id=node_id,
                device_id="cam-1",
                site="center",
                stream="main",
                username=user,
                started_at=utcnow() - timedelta(seconds=30),
                end_detail="",
            )
        )
        await s.commit()


async def row(env: IngestEnv, session_id: str) -> LiveSession | None:
    async with env.db.session() as s:
        return await s.get(LiveSession, session_id)


async def audits(env: IngestEnv) -> list[AuditEntry]:
    async with env.db.session() as s:
        return list((await s.scalars(select(AuditEntry).where(AuditEntry.action == "live.ended"))).all())


async def test_the_nodes_ended_event_closes_the_session_with_its_reason(ingest_env: IngestEnv) -> None:
    node = CameraNode("center", "n-live")
    await open_session(ingest_env, "sess-source-1", "n-live")
    async with ingest_env.bus.subscribe() as events:
        ended = LiveEnded(
            session_id="sess-source-1",
            reason=LiveEndReason.SOURCE_LOST,
            detail="the camera's stream ended",
            duration_s=29.5,
            frames_sent=737,
        )
        event = Event(
            **node.env(),
            kind=LIVE_ENDED_EVENT,
            severity=Severity.WARNING,
            device_id="cam-1",
            data=ended.model_dump(mode="json"),
        )
        for _ in range(2):  # delivered twice (QoS 1): closed and audited once
            await ingest_env.publisher.publish(topic("center", "n-live", Channel.EVENT), encode(event), qos=1)

        async def closed() -> bool:
            r = await row(ingest_env, "sess-source-1")
            return r is not None and r.ended_at is not None

        await eventually(closed)
        notice = None
        async for e in events:
            if e.kind == "live_ended":
                notice = e.data
                break
    r = await row(ingest_env, "sess-source-1")
    assert r is not None and r.end_reason == "source_lost" and r.frames_sent == 737
    assert r.end_detail == "the camera's stream ended"
    assert notice == {
        "session_id": "sess-source-1",
        "node_id": "n-live",
        "device_id": "cam-1",
        "reason": "source_lost",
        "detail": "the camera's stream ended",
    }
    (audit,) = await audits(ingest_env)
    assert audit.actor == "node:n-live" and audit.detail["viewer"] == "olena"


async def test_an_ended_event_from_another_node_or_for_an_unknown_session_changes_nothing(
    ingest_env: IngestEnv,
) -> None:
    intruder = CameraNode("center", "n-other")
    await open_session(ingest_env, "sess-mine-01", "n-mine")
    for session_id in ("sess-mine-01", "sess-unknown"):
        data = LiveEnded(session_id=session_id, reason=LiveEndReason.VIEWER_LOST).model_dump(mode="json")
        event = Event(**intruder.env(), kind=LIVE_ENDED_EVENT, device_id="cam-1", data=data)
        await ingest_env.publisher.publish(topic("center", "n-other", Channel.EVENT), encode(event), qos=1)
    marker = Event(**intruder.env(), kind="test.marker")
    await ingest_env.publisher.publish(topic("center", "n-other", Channel.EVENT), encode(marker), qos=1)

    async def marker_stored() -> bool:
        return ingest_env.ingest.counters.stored >= 3

    await eventually(marker_stored)
    r = await row(ingest_env, "sess-mine-01")
    assert r is not None and r.ended_at is None
    assert await audits(ingest_env) == []


async def test_a_node_going_offline_closes_its_open_sessions(ingest_env: IngestEnv) -> None:
    node = CameraNode("center", "n-dark")
    await ingest_env.publisher.publish(
        topic("center", "n-dark", Channel.STATUS),
        encode(Availability(**node.env(), state="online")),
        qos=1,
        retain=True,
    )
    await open_session(ingest_env, "sess-dark-01", "n-dark")
    await open_session(ingest_env, "sess-dark-02", "n-dark", user="petro")
    await open_session(ingest_env, "sess-light-1", "n-light")

    async def online() -> bool:
        async with ingest_env.db.session() as s:
            n = await s.get(Node, "n-dark")
        return n is not None and n.online

    await eventually(online)
    will = Availability(**node.env(), state="offline", reason="last_will")
    await ingest_env.publisher.publish(topic("center", "n-dark", Channel.STATUS), encode(will), qos=1, retain=True)

    async def both_closed() -> bool:
        rows = [await row(ingest_env, s) for s in ("sess-dark-01", "sess-dark-02")]
        return all(r is not None and r.ended_at is not None for r in rows)

    await eventually(both_closed)
    for sid in ("sess-dark-01", "sess-dark-02"):
        r = await row(ingest_env, sid)
        assert r is not None and r.end_reason == "node_offline"
    other = await row(ingest_env, "sess-light-1")
    assert other is not None and other.ended_at is None
    assert sorted(a.detail["viewer"] for a in await audits(ingest_env)) == ["olena", "petro"]
    await ingest_env.publisher.publish(topic("center", "n-dark", Channel.STATUS), b"", qos=1, retain=True)
