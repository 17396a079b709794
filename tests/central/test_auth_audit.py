"""The audit log records security-relevant actions and is readable by admins, page by page."""

from __future__ import annotations

from central.auth import audit
from central.auth.roles import Role
from tests.central.test_auth_support import ORIGIN, PASSWORD, CentralEnv, central_env

__all__ = ["central_env"]


async def test_sign_in_activity_is_audited_with_reason_and_address(central_env: CentralEnv) -> None:
    await central_env.add_user("olena", Role.DISPATCHER)

    await central_env.login("olena", "wrong password!")
    await central_env.login("ghost", "wrong password!")
    await central_env.login("olena")
    await central_env.client.post("/api/v1/auth/logout", headers=ORIGIN)

    entries = [e for e in await central_env.audit() if e.action.startswith("auth.")]
    assert [(e.action, e.actor, e.success, e.detail) for e in entries] == [
        ("auth.login_failed", "olena", False, {"reason": "bad_password"}),
        ("auth.login_failed", "ghost", False, {"reason": "unknown_user"}),
        ("auth.login", "olena", True, {}),
        ("auth.logout", "olena", True, {}),
    ]
    assert {e.ip for e in entries} == {"127.0.0.1"}


async def test_record_adds_a_row_in_the_callers_transaction(central_env: CentralEnv) -> None:
    async with central_env.db.session() as session:
        await audit.record(
            session,
            actor="olena",
            action="command.sent",
            target="node:maidan-01",
            detail={"command": "ping"},
            ip="10.0.0.5",
        )
        await session.rollback()
    assert await central_env.audit("command.sent") == []

    async with central_env.db.session() as session:
        await audit.record(
            session,
            actor="olena",
            action="command.sent",
            target="node:maidan-01",
            detail={"command": "ping"},
            ip="10.0.0.5",
            success=False,
        )
        await session.commit()
    [entry] = await central_env.audit("command.sent")
    assert (entry.actor, entry.target, entry.detail, entry.ip, entry.success) == (
        "olena",
        "node:maidan-01",
        {"command": "ping"},
        "10.0.0.5",
        False,
    )
    assert entry.ts.tzinfo is not None


async def test_admins_page_through_the_audit_log_newest_first(central_env: CentralEnv) -> None:
    await central_env.add_user("boss", Role.ADMIN, password=PASSWORD)
    async with central_env.db.session() as session:
        for i in range(7):
            await audit.record(session, actor="script", action="test.step", target=str(i))
        await session.commit()
    await central_env.login("boss")

    first = (await central_env.client.get("/api/v1/audit?limit=3&action=test.step")).json()
    third = (await central_env.client.get("/api/v1/audit?limit=3&offset=6&action=test.step")).json()
    everything = (await central_env.client.get("/api/v1/audit")).json()

    assert [e["target"] for e in first["items"]] == ["6", "5", "4"]
    assert (first["total"], first["limit"], first["offset"]) == (7, 3, 0)
    assert [e["target"] for e in third["items"]] == ["0"]
    assert everything["total"] == 7 + 2  # plus user.created and auth.login
    assert everything["items"][0]["action"] == "auth.login"


async def test_only_admins_read_the_audit_log(central_env: CentralEnv) -> None:
    await central_env.add_user("olena", Role.OPERATOR)
    await central_env.login("olena")

    assert (await central_env.client.get("/api/v1/audit")).status_code == 403
    assert (await central_env.client.get("/admin/audit")).status_code == 403
