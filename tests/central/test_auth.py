"""Signing in and out: password checks, the session cookie, lockout, expiry, stored secrets, the first admin."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import select, text, update

from central.auth import users as user_service
from central.auth.bootstrap import create_admin, ensure_user
from central.auth.models import User, UserSession
from central.auth.passwords import PasswordPolicyError, verify_password
from central.auth.roles import Role
from central.auth.sessions import COOKIE_NAME, hash_token
from tests.central.test_auth_support import ORIGIN, PASSWORD, CentralEnv, central_env, cookie_of, with_cookie
from varta.contract import utcnow

__all__ = ["central_env"]


async def test_login_sets_a_strict_httponly_session_cookie_and_stores_only_its_hash(central_env: CentralEnv) -> None:
    await central_env.add_user("olena", Role.DISPATCHER, display_name="Олена")

    response = await central_env.login("olena")

    assert response.status_code == 200
    body = response.json()
    assert body["ok"] is True
    assert body["user"] == {
        "user_id": body["user"]["user_id"],
        "username": "olena",
        "display_name": "Олена",
        "role": "dispatcher",
        "language": None,
        "via": "session",
    }
    header = response.headers["set-cookie"]
    assert header.startswith(f"{COOKIE_NAME}=")
    assert "HttpOnly" in header
    assert "SameSite=strict" in header
    assert "Path=/" in header
    assert f"Max-Age={12 * 3600}" in header
    assert "Secure" not in header  # cookie_secure is off in this config
    token = cookie_of(response)
    assert token
    async with central_env.db.session() as session:
        rows = (await session.scalars(select(UserSession))).all()
    assert [r.token_hash for r in rows] == [hash_token(token)]
    assert token not in {r.token_hash for r in rows}
    me = await central_env.client.get("/api/v1/auth/me")
    assert me.status_code == 200
    assert me.json()["username"] == "olena"


async def test_cookie_is_secure_when_configured(central_env: CentralEnv) -> None:
    central_env.config.auth.cookie_secure = True
    await central_env.add_user("olena", Role.DISPATCHER)

    response = await central_env.login("olena")

    assert "Secure" in response.headers["set-cookie"]


async def test_wrong_password_and_unknown_user_get_the_same_answer(central_env: CentralEnv) -> None:
    await central_env.add_user("olena", Role.DISPATCHER)

    wrong = await central_env.login("olena", "not the password")
    unknown = await central_env.login("nobody", "not the password")

    assert wrong.status_code == unknown.status_code == 401
    assert wrong.json() == unknown.json()
    assert cookie_of(wrong) is None
    assert cookie_of(unknown) is None
    assert (await central_env.client.get("/api/v1/auth/me")).status_code == 401


async def test_unknown_usernames_still_spend_an_argon2_verification(
    central_env: CentralEnv, monkeypatch: pytest.MonkeyPatch
) -> None:
    burned: list[str] = []

    async def record(password: str) -> None:
        burned.append(password)

    monkeypatch.setattr(user_service, "burn_verify_time", record)

    await central_env.login("nobody", "guess-1")

    assert burned == ["guess-1"]


async def test_usernames_are_case_insensitive(central_env: CentralEnv) -> None:
    await central_env.add_user("olena", Role.DISPATCHER)

    assert (await central_env.login("  OLENA ")).status_code == 200


async def test_account_locks_after_max_failed_logins_even_for_the_right_password(central_env: CentralEnv) -> None:
    await central_env.add_user("olena", Role.DISPATCHER)
    assert central_env.config.auth.max_failed_logins == 3

    for _ in range(3):
        assert (await central_env.login("olena", "wrong password!")).status_code == 401

    locked = await central_env.login("olena", PASSWORD)
    assert locked.status_code == 401
    user = await central_env.get_user("olena")
    assert user.locked_until is not None
    assert timedelta(minutes=4) < user.locked_until - utcnow() <= timedelta(minutes=5)
    assert [e.detail for e in await central_env.audit("auth.login_failed")][-1] == {"reason": "locked"}
    assert len(await central_env.audit("auth.locked")) == 1


async def test_lockout_ends_after_lockout_minutes(central_env: CentralEnv) -> None:
    await central_env.add_user("olena", Role.DISPATCHER)
    for _ in range(3):
        await central_env.login("olena", "wrong password!")
    async with central_env.db.session() as session:
        await session.execute(update(User).values(locked_until=utcnow() - timedelta(seconds=1)))
        await session.commit()

    assert (await central_env.login("olena", PASSWORD)).status_code == 200
    user = await central_env.get_user("olena")
    assert user.failed_logins == 0
    assert user.locked_until is None


async def test_a_success_resets_the_failure_count(central_env: CentralEnv) -> None:
    await central_env.add_user("olena", Role.DISPATCHER)
    for _ in range(2):
        await central_env.login("olena", "wrong password!")
    assert (await central_env.login("olena")).status_code == 200

    for _ in range(2):
        await central_env.login("olena", "wrong password!")

    assert (await central_env.login("olena")).status_code == 200


async def test_expired_session_is_refused(central_env: CentralEnv) -> None:
    await central_env.add_user("olena", Role.DISPATCHER)
    await central_env.login("olena")
    assert (await central_env.client.get("/api/v1/auth/me")).status_code == 200

    async with central_env.db.session() as session:
        await session.execute(update(UserSession).values(expires_at=utcnow() - timedelta(seconds=1)))
        await session.commit()

    response = await central_env.client.get("/api/v1/auth/me")
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == "Bearer"
    page = await central_env.client.get("/", follow_redirects=False)
    assert page.status_code == 303
    assert page.headers["location"] == "/login?next=/"
    assert f'{COOKIE_NAME}=""' in page.headers["set-cookie"]  # the stale cookie is cleared


async def test_session_lifetime_follows_the_config(central_env: CentralEnv) -> None:
    central_env.config.auth.session_ttl_hours = 2
    await central_env.add_user("olena", Role.DISPATCHER)

    response = await central_env.login("olena")

    assert "Max-Age=7200" in response.headers["set-cookie"]
    async with central_env.db.session() as session:
        row = (await session.scalars(select(UserSession))).one()
    assert row.expires_at - row.created_at == timedelta(hours=2)


async def test_logout_ends_the_session_on_the_server(central_env: CentralEnv) -> None:
    await central_env.add_user("olena", Role.DISPATCHER)
    token = cookie_of(await central_env.login("olena"))
    assert token

    response = await central_env.client.post("/api/v1/auth/logout", headers=ORIGIN)

    assert response.status_code == 200
    assert f'{COOKIE_NAME}=""' in response.headers["set-cookie"]
    central_env.client.cookies.clear()
    replay = await central_env.client.get("/api/v1/auth/me", headers=with_cookie(token))
    assert replay.status_code == 401
    assert len(await central_env.audit("auth.logout")) == 1


async def test_logout_form_ends_the_session_and_returns_to_login(central_env: CentralEnv) -> None:
    await central_env.add_user("olena", Role.DISPATCHER)
    token = cookie_of(await central_env.login("olena"))

    response = await central_env.client.post("/logout", headers=ORIGIN, follow_redirects=False)

    assert response.status_code == 303
    assert response.headers["location"] == "/login"
    central_env.client.cookies.clear()
    replay = await central_env.client.get("/", headers=with_cookie(token or ""), follow_redirects=False)
    assert replay.status_code == 303


async def test_login_form_signs_in_and_goes_to_the_requested_local_page(central_env: CentralEnv) -> None:
    await central_env.add_user("olena", Role.DISPATCHER, language="en")

    response = await central_env.client.post(
        "/login",
        data={"username": "olena", "password": PASSWORD, "next": "/nodes/x1"},
        headers=ORIGIN,
        follow_redirects=False,
    )

    assert response.status_code == 303
    assert response.headers["location"] == "/nodes/x1"
    assert cookie_of(response)
    assert response.cookies.get("varta_lang") == "en"  # the saved preference follows the user


@pytest.mark.parametrize("target", ["//evil.example/x", "https://evil.example/", "/\\evil.example", "javascript:x"])
async def test_login_form_never_redirects_off_site(central_env: CentralEnv, target: str) -> None:
    await central_env.add_user("olena", Role.DISPATCHER)

    response = await central_env.client.post(
        "/login",
        data={"username": "olena", "password": PASSWORD, "next": target},
        headers=ORIGIN,
        follow_redirects=False,
    )

    assert response.status_code == 303
    assert response.headers["location"] == "/"


async def test_login_form_failure_shows_one_message_and_sets_no_cookie(central_env: CentralEnv) -> None:
    await central_env.add_user("olena", Role.DISPATCHER)

    response = await central_env.client.post(
        "/login", data={"username": "olena", "password": "wrong password!"}, headers=ORIGIN
    )

    assert response.status_code == 200
    assert "Неправильне ім’я користувача або пароль" in response.text
    assert 'value="olena"' in response.text  # the username is kept, the password is not
    assert cookie_of(response) is None


async def test_passwords_are_stored_as_argon2id_hashes_only(central_env: CentralEnv) -> None:
    await central_env.add_user("olena", Role.DISPATCHER)
    await central_env.login("olena")
    await central_env.login("olena", "a wrong guess here")

    async with central_env.db.session() as session:
        user = (await session.scalars(select(User))).one()
        rows: list[Any] = []
        for table in ("users", "user_sessions", "api_tokens", "audit_log"):
            rows += (await session.execute(text(f"SELECT * FROM {table}"))).all()
    dump = "\n".join(str(row) for row in rows)
    assert user.password_hash.startswith("$argon2id$")
    assert await verify_password(user.password_hash, PASSWORD)
    assert PASSWORD not in dump
    assert "a wrong guess here" not in dump


async def test_short_passwords_are_refused_with_a_clear_message(central_env: CentralEnv) -> None:
    with pytest.raises(PasswordPolicyError, match="at least 10 characters"):
        await create_admin(central_env.db, "root", "too-short")

    response = await central_env.client.post("/api/v1/auth/login", json={"username": "root", "password": "x"})
    assert response.status_code == 401


async def test_create_admin_creates_an_admin_and_audits_it(central_env: CentralEnv) -> None:
    await create_admin(central_env.db, "Root", PASSWORD)

    user = await central_env.get_user("root")
    assert user.role == Role.ADMIN
    assert user.active
    [entry] = await central_env.audit("admin.created")
    assert (entry.actor, entry.target) == ("cli", "user:root")
    assert (await central_env.login("root")).json()["user"]["role"] == "admin"


async def test_create_admin_promotes_and_unlocks_an_existing_user(central_env: CentralEnv) -> None:
    await central_env.add_user("olena", Role.DISPATCHER)
    for _ in range(3):
        await central_env.login("olena", "wrong password!")
    old_session = await central_env.session_token("olena")

    await create_admin(central_env.db, "olena", "a brand new password")

    user = await central_env.get_user("olena")
    assert (user.role, user.active, user.locked_until) == ("admin", True, None)
    assert (await central_env.client.get("/api/v1/auth/me", headers=with_cookie(old_session))).status_code == 401
    assert (await central_env.login("olena", "a brand new password")).status_code == 200
    [entry] = await central_env.audit("admin.created")
    assert entry.detail == {"existing": True, "previous": {"role": "dispatcher", "active": True}}


async def test_ensure_user_is_idempotent(central_env: CentralEnv) -> None:
    await ensure_user(central_env.db, "demo", PASSWORD, Role.OPERATOR)
    await ensure_user(central_env.db, "demo", PASSWORD, Role.OPERATOR)

    async with central_env.db.session() as session:
        users = (await session.scalars(select(User))).all()
    assert [(u.username, u.role) for u in users] == [("demo", "operator")]
    assert (await central_env.login("demo")).status_code == 200


async def test_deactivated_user_is_signed_out_and_cannot_sign_in(central_env: CentralEnv) -> None:
    await central_env.add_user("boss", Role.ADMIN)
    await central_env.add_user("olena", Role.DISPATCHER)
    olena = await central_env.get_user("olena")
    cookie = await central_env.session_token("olena")
    token = await central_env.api_token("olena")
    await central_env.login("boss")

    response = await central_env.client.patch(f"/api/v1/users/{olena.id}", json={"active": False}, headers=ORIGIN)

    assert response.status_code == 200
    assert response.json()["active"] is False
    central_env.client.cookies.clear()
    assert (await central_env.client.get("/api/v1/auth/me", headers=with_cookie(cookie))).status_code == 401
    assert (
        await central_env.client.get("/api/v1/auth/me", headers={"authorization": f"Bearer {token}"})
    ).status_code == 401
    assert (await central_env.login("olena")).status_code == 401
    assert (await central_env.audit("auth.login_failed"))[-1].detail == {"reason": "inactive"}
