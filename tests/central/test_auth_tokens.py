"""Personal API tokens: shown once, stored hashed, usable as bearer tokens until revoked or expired."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import select

from central.auth.models import ApiToken
from central.auth.roles import Role
from central.auth.sessions import hash_token
from tests.central.test_auth_support import ORIGIN, CentralEnv, central_env

__all__ = ["central_env"]


def bearer(token: str) -> dict[str, str]:
    return {"authorization": f"Bearer {token}"}


async def test_token_is_shown_once_stored_hashed_and_works_as_bearer(central_env: CentralEnv) -> None:
    await central_env.add_user("olena", Role.OPERATOR)
    await central_env.login("olena")

    created = await central_env.client.post(
        "/api/v1/tokens", json={"name": "monitoring", "expires_in_days": 30}, headers=ORIGIN
    )

    assert created.status_code == 201
    body = created.json()
    secret = body["token"]
    assert secret.startswith("vt_") and len(secret) >= 40
    assert body["prefix"] == secret[:8]
    assert (body["name"], body["owner"], body["active"], body["revoked"]) == ("monitoring", "olena", True, False)
    listed = (await central_env.client.get("/api/v1/tokens")).json()
    assert [t["id"] for t in listed] == [body["id"]]
    assert "token" not in listed[0]
    async with central_env.db.session() as session:
        row = (await session.scalars(select(ApiToken))).one()
    assert row.token_hash == hash_token(secret)
    assert secret not in (row.token_hash, row.prefix, row.name)

    central_env.client.cookies.clear()
    me = await central_env.client.get("/api/v1/auth/me", headers=bearer(secret))
    assert me.status_code == 200
    assert (me.json()["username"], me.json()["role"], me.json()["via"]) == ("olena", "operator", "token")
    async with central_env.db.session() as session:
        assert (await session.scalars(select(ApiToken))).one().last_used is not None


async def test_revoked_token_is_refused_at_once(central_env: CentralEnv) -> None:
    await central_env.add_user("olena", Role.DISPATCHER)
    secret = await central_env.api_token("olena")
    assert (await central_env.client.get("/api/v1/auth/me", headers=bearer(secret))).status_code == 200
    token_id = (await central_env.client.get("/api/v1/tokens", headers=bearer(secret))).json()[0]["id"]

    revoked = await central_env.client.delete(f"/api/v1/tokens/{token_id}", headers=bearer(secret))

    assert revoked.status_code == 200
    assert revoked.json()["revoked"] is True
    refused = await central_env.client.get("/api/v1/auth/me", headers=bearer(secret))
    assert refused.status_code == 401
    assert refused.headers["www-authenticate"].startswith("Bearer")
    assert [e.target for e in await central_env.audit("token.revoked")] == [f"token:{token_id}"]


async def test_expired_token_is_refused(central_env: CentralEnv) -> None:
    await central_env.add_user("olena", Role.DISPATCHER)
    secret = await central_env.api_token("olena", expires_in=timedelta(seconds=-1))

    assert (await central_env.client.get("/api/v1/auth/me", headers=bearer(secret))).status_code == 401


async def test_a_bad_bearer_token_is_refused_even_with_a_valid_cookie(central_env: CentralEnv) -> None:
    await central_env.add_user("olena", Role.DISPATCHER)
    await central_env.login("olena")

    for header in ("Bearer vt_not-a-real-token", "Bearer ", "Basic b2xlbmE6eA=="):
        response = await central_env.client.get("/api/v1/auth/me", headers={"authorization": header})
        assert response.status_code == 401, header


async def test_tokens_are_created_from_a_session_not_from_another_token(central_env: CentralEnv) -> None:
    await central_env.add_user("olena", Role.ADMIN)
    secret = await central_env.api_token("olena")

    response = await central_env.client.post("/api/v1/tokens", json={"name": "more"}, headers=bearer(secret))

    assert response.status_code == 403


async def test_users_see_and_revoke_only_their_own_tokens(central_env: CentralEnv) -> None:
    await central_env.add_user("olena", Role.OPERATOR)
    await central_env.add_user("petro", Role.OPERATOR)
    olena = await central_env.api_token("olena", name="olena's")
    petro = await central_env.api_token("petro", name="petro's")
    petro_id = (await central_env.client.get("/api/v1/tokens", headers=bearer(petro))).json()[0]["id"]

    mine = (await central_env.client.get("/api/v1/tokens", headers=bearer(olena))).json()
    everyone = await central_env.client.get("/api/v1/tokens?all=true", headers=bearer(olena))
    steal = await central_env.client.delete(f"/api/v1/tokens/{petro_id}", headers=bearer(olena))

    assert [t["name"] for t in mine] == ["olena's"]
    assert everyone.status_code == 403
    assert steal.status_code == 404
    assert (await central_env.client.get("/api/v1/auth/me", headers=bearer(petro))).status_code == 200


async def test_admins_list_and_revoke_everybodys_tokens(central_env: CentralEnv) -> None:
    await central_env.add_user("boss", Role.ADMIN)
    await central_env.add_user("petro", Role.DISPATCHER)
    admin = await central_env.api_token("boss", name="boss's")
    petro = await central_env.api_token("petro", name="petro's")

    everyone = (await central_env.client.get("/api/v1/tokens?all=true", headers=bearer(admin))).json()
    petro_id = next(t["id"] for t in everyone if t["owner"] == "petro")
    revoked = await central_env.client.delete(f"/api/v1/tokens/{petro_id}", headers=bearer(admin))

    assert sorted(t["name"] for t in everyone) == ["boss's", "petro's"]
    assert revoked.status_code == 200
    assert (await central_env.client.get("/api/v1/auth/me", headers=bearer(petro))).status_code == 401
    [entry] = await central_env.audit("token.revoked")
    assert (entry.actor, entry.detail) == ("boss", {"name": "petro's", "owner": "petro"})


async def test_a_token_carries_the_owners_current_role(central_env: CentralEnv) -> None:
    await central_env.add_user("boss", Role.ADMIN)
    await central_env.add_user("olena", Role.ADMIN)
    secret = await central_env.api_token("olena")
    assert (await central_env.client.get("/api/v1/users", headers=bearer(secret))).status_code == 200
    olena = await central_env.get_user("olena")
    boss = await central_env.api_token("boss")

    await central_env.client.patch(f"/api/v1/users/{olena.id}", json={"role": "dispatcher"}, headers=bearer(boss))

    assert (await central_env.client.get("/api/v1/users", headers=bearer(secret))).status_code == 403
