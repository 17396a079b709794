"""Node key enrolment: the key camera passwords are sealed to is read from the node and pinned by an admin.

Enrolled keys are never moved by what a node announces (a different one is reported once as ``node.key_mismatch``);
a revoked node gets nothing sealed to it until a key is enrolled again.
"""

from __future__ import annotations

import asyncio

from nacl.public import PrivateKey
from sqlalchemy import select

from central.auth.models import AuditEntry
from central.auth.roles import Role
from central.store.fleet_models import EventRecord, Node
from tests.central.conftest import IngestEnv
from tests.central.test_auth_support import CentralEnv, central_env
from tests.central.test_cameras_support import CameraNode
from tests.central.test_ingest import eventually
from varta.contract import Channel, encode, topic, utcnow
from varta.sealing import public_key_text

__all__ = ["central_env"]


def new_key() -> str:
    return public_key_text(PrivateKey.generate())


async def admin_and_operator(env: CentralEnv) -> tuple[dict[str, str], dict[str, str]]:
    await env.add_user("chief", Role.ADMIN)
    await env.add_user("oper", Role.OPERATOR)
    admin = {"authorization": f"Bearer {await env.api_token('chief')}"}
    operator = {"authorization": f"Bearer {await env.api_token('oper')}"}
    return admin, operator


async def test_an_admin_enrols_a_key_before_central_heard_from_the_node_and_again_changes_nothing(
    central_env: CentralEnv,
) -> None:
    client = central_env.client
    admin, operator = await admin_and_operator(central_env)
    key = new_key()

    no_site = await client.put("/api/v1/nodes/pi-07/box-key", json={"public_key": key}, headers=admin)
    assert no_site.status_code == 422
    assert "site" in no_site.json()["detail"]

    first = await client.put("/api/v1/nodes/pi-07/box-key", json={"public_key": key, "site": "north"}, headers=admin)
    assert first.status_code == 201
    view = first.json()
    assert view["public_key"] == key and view["enrolled"] is True and view["changed"] is True
    assert view["enrolled_by"] == "chief" and view["mismatch"] is False

    again = await client.put("/api/v1/nodes/pi-07/box-key", json={"public_key": f" {key}\n"}, headers=admin)
    assert again.status_code == 200
    assert again.json()["changed"] is False  # what Ansible reports as ok, not changed

    shown = await client.get("/api/v1/nodes/pi-07/box-key", headers=operator)
    assert shown.status_code == 200 and shown.json()["public_key"] == key
    async with central_env.db.session() as s:
        node = await s.get(Node, "pi-07")
        audits = (await s.scalars(select(AuditEntry).where(AuditEntry.action == "node.key_enrolled"))).all()
    assert node is not None and node.site == "north" and node.online is False
    assert [(a.actor, a.target) for a in audits] == [("chief", "pi-07")]


async def test_only_admins_enrol_or_revoke_and_garbage_is_refused_with_a_reason(central_env: CentralEnv) -> None:
    client = central_env.client
    admin, operator = await admin_and_operator(central_env)
    body = {"public_key": new_key(), "site": "north"}
    assert (await client.put("/api/v1/nodes/pi-07/box-key", json=body, headers=operator)).status_code == 403
    assert (await client.delete("/api/v1/nodes/pi-07/box-key", headers=operator)).status_code == 403
    assert (await client.get("/api/v1/nodes/pi-07/box-key", headers=operator)).status_code == 404
    for bad in ("not base64 at all!", "c2hvcnQ=", "A" * 100):
        r = await client.put("/api/v1/nodes/pi-07/box-key", json={"public_key": bad, "site": "n"}, headers=admin)
        assert r.status_code == 422, bad
        assert "public_key" in r.text
    extra = await client.put("/api/v1/nodes/pi-07/box-key", json={**body, "owner": "x"}, headers=admin)
    assert extra.status_code == 422
    bad_id = await client.put("/api/v1/nodes/..%2Fetc/box-key", json=body, headers=admin)
    assert bad_id.status_code in (404, 422)


async def test_revoking_clears_the_key_and_re_enrolling_restores_it(central_env: CentralEnv) -> None:
    client = central_env.client
    admin, _ = await admin_and_operator(central_env)
    key = new_key()
    await client.put("/api/v1/nodes/pi-07/box-key", json={"public_key": key, "site": "north"}, headers=admin)

    revoked = await client.delete("/api/v1/nodes/pi-07/box-key", headers=admin)
    assert revoked.status_code == 200
    assert revoked.json()["public_key"] is None and revoked.json()["revoked_at"] is not None
    assert revoked.json()["enrolled"] is False

    replacement = new_key()
    back = await client.put("/api/v1/nodes/pi-07/box-key", json={"public_key": replacement}, headers=admin)
    assert back.status_code == 200
    assert back.json()["public_key"] == replacement and back.json()["revoked_at"] is None
    async with central_env.db.session() as s:
        actions = (await s.scalars(select(AuditEntry.action).order_by(AuditEntry.id))).all()
    assert [a for a in actions if a.startswith("node.key")] == [
        "node.key_enrolled",
        "node.key_revoked",
        "node.key_enrolled",
    ]


# ------------------------------------------------------------------------------------------------ what births do


async def publish_birth(env: IngestEnv, node: CameraNode) -> None:
    await env.publisher.publish(topic(node.site, node.node_id, Channel.BIRTH), encode(node.birth()), qos=1)


async def node_row(env: IngestEnv, node_id: str) -> Node | None:
    async with env.db.session() as s:
        return await s.get(Node, node_id)


async def mismatch_events(env: IngestEnv, node_id: str) -> list[EventRecord]:
    async with env.db.session() as s:
        rows = await s.scalars(
            select(EventRecord).where(EventRecord.node_id == node_id, EventRecord.kind == "node.key_mismatch")
        )
        return list(rows.all())


async def test_a_birth_cannot_replace_an_enrolled_key_and_a_different_key_is_reported_once(
    ingest_env: IngestEnv,
) -> None:
    enrolled = new_key()
    async with ingest_env.db.session() as s:
        s.add(
            Node(
                node_id="pi-07",
                site="north",
                first_seen=utcnow(),
                online=False,
                box_public_key=enrolled,
                box_key_enrolled_at=utcnow(),
                box_key_enrolled_by="chief",
            )
        )
        await s.commit()
    intruder = new_key()
    node = CameraNode("north", "pi-07", box_public_key=intruder)
    await publish_birth(ingest_env, node)

    async def announced() -> bool:
        row = await node_row(ingest_env, "pi-07")
        return row is not None and row.announced_box_key == intruder

    await eventually(announced)
    row = await node_row(ingest_env, "pi-07")
    assert row is not None and row.box_public_key == enrolled
    events = await mismatch_events(ingest_env, "pi-07")
    assert len(events) == 1
    assert events[0].severity == "warning" and events[0].data == {"announced": intruder, "enrolled": enrolled}

    node.boot_id = "boot-2"  # the node restarts and announces the same foreign key: no second report
    await publish_birth(ingest_env, node)

    async def rebooted() -> bool:
        r = await node_row(ingest_env, "pi-07")
        return r is not None and r.boot_id == "boot-2"

    await eventually(rebooted)
    assert len(await mismatch_events(ingest_env, "pi-07")) == 1
    row = await node_row(ingest_env, "pi-07")
    assert row is not None and row.box_public_key == enrolled


async def test_without_enrolment_the_announced_key_is_used_but_a_revoked_node_gets_none(
    ingest_env: IngestEnv,
) -> None:
    first = new_key()
    node = CameraNode("north", "pi-08", box_public_key=first)
    await publish_birth(ingest_env, node)

    async def has_key() -> bool:
        r = await node_row(ingest_env, "pi-08")
        return r is not None and r.box_public_key == first

    await eventually(has_key)
    async with ingest_env.db.session() as s:
        r = await s.get(Node, "pi-08")
        assert r is not None
        r.box_public_key = None
        r.box_key_revoked_at = utcnow()
        await s.commit()
    node.box_public_key = new_key()
    node.boot_id = "boot-2"
    await publish_birth(ingest_env, node)

    async def recorded() -> bool:
        r = await node_row(ingest_env, "pi-08")
        return r is not None and r.announced_box_key == node.box_public_key

    await eventually(recorded)
    await asyncio.sleep(0.1)
    r2 = await node_row(ingest_env, "pi-08")
    assert r2 is not None and r2.box_public_key is None
    assert await mismatch_events(ingest_env, "pi-08") == []
