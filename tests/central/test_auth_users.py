"""User administration over the API (admin only): create, change role, (de)activate, reset passwords."""

from __future__ import annotations

from central.auth.roles import Role
from central.auth.sessions import COOKIE_NAME
from tests.central.test_auth_support import ORIGIN, PASSWORD, CentralEnv, central_env, with_cookie

__all__ = ["central_env"]


async def signed_in_admin(env: CentralEnv) -> None:
    await env.add_user("boss", Role.ADMIN)
    assert (await env.login("boss")).status_code == 200


async def test_admin_creates_a_user_who_can_sign_in(central_env: CentralEnv) -> None:
    await signed_in_admin(central_env)

    response = await central_env.client.post(
        "/api/v1/users",
        json={"username": "Petro", "password": "petro-password-1", "role": "operator", "display_name": "Петро"},
        headers=ORIGIN,
    )

    assert response.status_code == 201
    body = response.json()
    assert (body["username"], body["role"], body["active"], body["display_name"]) == (
        "petro",
        "operator",
        True,
        "Петро",
    )
    assert "password" not in str(body)
    assert (await central_env.login("petro", "petro-password-1")).json()["user"]["role"] == "operator"
    entry = (await central_env.audit("user.created"))[-1]
    assert (entry.actor, entry.target, entry.detail) == ("boss", "user:petro", {"role": "operator"})


async def test_creating_a_user_explains_what_is_wrong(central_env: CentralEnv) -> None:
    await signed_in_admin(central_env)
    post = central_env.client.post

    short = await post("/api/v1/users", json={"username": "petro", "password": "short"}, headers=ORIGIN)
    bad_name = await post("/api/v1/users", json={"username": "Пет ро", "password": PASSWORD}, headers=ORIGIN)
    same = await post("/api/v1/users", json={"username": "petro-user", "password": "PETRO-USER"}, headers=ORIGIN)
    taken = await post("/api/v1/users", json={"username": "boss", "password": PASSWORD}, headers=ORIGIN)

    assert (short.status_code, short.json()["detail"]) == (400, "the password must be at least 10 characters long")
    assert bad_name.status_code == 400
    assert "username" in bad_name.json()["detail"]
    assert (same.status_code, same.json()["detail"]) == (400, "the password must not be the username")
    assert (taken.status_code, taken.json()["detail"]) == (409, "the username 'boss' is taken")


async def test_list_and_get_users_never_show_password_hashes(central_env: CentralEnv) -> None:
    await signed_in_admin(central_env)
    await central_env.add_user("petro", Role.DISPATCHER)

    listed = await central_env.client.get("/api/v1/users")
    one = await central_env.client.get(f"/api/v1/users/{listed.json()[1]['id']}")
    missing = await central_env.client.get("/api/v1/users/999999")

    assert [u["username"] for u in listed.json()] == ["boss", "petro"]
    assert "argon2" not in listed.text + one.text
    assert one.json()["username"] == "petro"
    assert missing.status_code == 404


async def test_role_change_is_audited_and_takes_effect_at_once(central_env: CentralEnv) -> None:
    await signed_in_admin(central_env)
    await central_env.add_user("petro", Role.DISPATCHER)
    petro = await central_env.get_user("petro")
    petro_session = await central_env.session_token("petro")

    response = await central_env.client.patch(f"/api/v1/users/{petro.id}", json={"role": "admin"}, headers=ORIGIN)

    assert response.json()["role"] == "admin"
    [entry] = await central_env.audit("user.role_changed")
    assert entry.detail == {"from": "dispatcher", "to": "admin"}
    central_env.client.cookies.clear()
    assert (await central_env.client.get("/api/v1/users", headers=with_cookie(petro_session))).status_code == 200


async def test_the_last_active_admin_cannot_be_demoted_or_deactivated(central_env: CentralEnv) -> None:
    await signed_in_admin(central_env)
    boss = await central_env.get_user("boss")

    demote = await central_env.client.patch(f"/api/v1/users/{boss.id}", json={"role": "operator"}, headers=ORIGIN)
    deactivate = await central_env.client.patch(f"/api/v1/users/{boss.id}", json={"active": False}, headers=ORIGIN)

    assert demote.status_code == deactivate.status_code == 400
    assert "last active admin" in demote.json()["detail"]
    user = await central_env.get_user("boss")
    assert (user.role, user.active) == ("admin", True)


async def test_deactivate_and_reactivate_are_audited(central_env: CentralEnv) -> None:
    await signed_in_admin(central_env)
    await central_env.add_user("petro", Role.DISPATCHER)
    petro = await central_env.get_user("petro")

    await central_env.client.patch(f"/api/v1/users/{petro.id}", json={"active": False}, headers=ORIGIN)
    await central_env.client.patch(f"/api/v1/users/{petro.id}", json={"active": True}, headers=ORIGIN)

    assert [e.action for e in await central_env.audit() if e.action.startswith("user.") and "activ" in e.action] == [
        "user.deactivated",
        "user.activated",
    ]
    assert (await central_env.login("petro")).status_code == 200


async def test_password_reset_ends_the_users_sessions_and_lifts_a_lockout(central_env: CentralEnv) -> None:
    await central_env.add_user("petro", Role.DISPATCHER)
    for _ in range(3):
        await central_env.login("petro", "wrong password!")
    petro = await central_env.get_user("petro")
    petro_session = await central_env.session_token("petro")
    await signed_in_admin(central_env)

    response = await central_env.client.post(
        f"/api/v1/users/{petro.id}/password", json={"password": "a fresh password"}, headers=ORIGIN
    )

    assert response.status_code == 200
    central_env.client.cookies.clear()
    assert (await central_env.client.get("/api/v1/auth/me", headers=with_cookie(petro_session))).status_code == 401
    assert (await central_env.login("petro", "a fresh password")).status_code == 200
    [entry] = await central_env.audit("user.password_reset")
    assert (entry.actor, entry.target) == ("boss", "user:petro")


async def test_changing_your_own_password_keeps_this_session_and_ends_the_others(central_env: CentralEnv) -> None:
    await central_env.add_user("olena", Role.DISPATCHER)
    other = await central_env.session_token("olena")
    await central_env.login("olena")

    wrong = await central_env.client.post(
        "/account/password",
        data={"current": "not my password", "new": "my new password", "confirm": "my new password"},
        headers=ORIGIN,
        follow_redirects=False,
    )
    right = await central_env.client.post(
        "/account/password",
        data={"current": PASSWORD, "new": "my new password", "confirm": "my new password"},
        headers=ORIGIN,
        follow_redirects=False,
    )

    assert wrong.headers["location"] == "/account?error=wrong_password"
    assert right.headers["location"] == "/account?done=password_changed"
    assert (await central_env.client.get("/api/v1/auth/me")).status_code == 200
    mine = central_env.client.cookies.get(COOKIE_NAME)
    central_env.client.cookies.clear()
    assert (await central_env.client.get("/api/v1/auth/me", headers=with_cookie(other))).status_code == 401
    assert (await central_env.client.get("/api/v1/auth/me", headers=with_cookie(mine or ""))).status_code == 200
    assert [e.success for e in await central_env.audit("user.password_changed")] == [False, True]
