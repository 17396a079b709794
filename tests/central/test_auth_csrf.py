"""Cross-site request forgery: cookie-authenticated changes must come from this site; bearer calls are exempt."""

from __future__ import annotations

import pytest

from central.auth.roles import Role
from tests.central.test_auth_support import BASE_URL, ORIGIN, CentralEnv, central_env

__all__ = ["central_env"]

CREATE_TOKEN = ("/api/v1/tokens", {"name": "csrf-test"})


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"origin": "https://evil.example"},
        {"origin": "null"},
        {"origin": "http://testserver.evil.example"},
        {"referer": "https://evil.example/page"},
    ],
    ids=["no-origin", "foreign-origin", "null-origin", "lookalike-origin", "foreign-referer"],
)
async def test_cookie_post_from_elsewhere_is_refused(central_env: CentralEnv, headers: dict[str, str]) -> None:
    await central_env.add_user("olena", Role.DISPATCHER)
    await central_env.login("olena")

    response = await central_env.client.post(CREATE_TOKEN[0], json=CREATE_TOKEN[1], headers=headers)

    assert response.status_code == 403
    assert "cross-site" in response.json()["detail"]
    assert await central_env.audit("token.created") == []


@pytest.mark.parametrize(
    "headers",
    [ORIGIN, {"referer": f"{BASE_URL}/account"}, {"origin": "https://varta.example.city"}],
    ids=["same-origin", "same-origin-referer", "configured-public-url"],
)
async def test_cookie_post_from_this_site_is_accepted(central_env: CentralEnv, headers: dict[str, str]) -> None:
    await central_env.add_user("olena", Role.DISPATCHER)
    await central_env.login("olena")

    response = await central_env.client.post(CREATE_TOKEN[0], json=CREATE_TOKEN[1], headers=headers)

    assert response.status_code == 201


async def test_cookie_get_needs_no_origin(central_env: CentralEnv) -> None:
    await central_env.add_user("olena", Role.DISPATCHER)
    await central_env.login("olena")

    assert (await central_env.client.get("/api/v1/tokens")).status_code == 200


async def test_bearer_requests_are_exempt_from_the_origin_check(central_env: CentralEnv) -> None:
    await central_env.add_user("boss", Role.ADMIN)
    secret = await central_env.api_token("boss")

    response = await central_env.client.post(
        "/api/v1/users",
        json={"username": "petro", "password": "petro-password-1"},
        headers={"authorization": f"Bearer {secret}", "origin": "https://evil.example"},
    )

    assert response.status_code == 201


async def test_page_form_post_from_elsewhere_gets_a_403_page(central_env: CentralEnv) -> None:
    await central_env.add_user("olena", Role.DISPATCHER)
    await central_env.login("olena")

    response = await central_env.client.post(
        "/account/language", data={"language": "en"}, headers={"origin": "https://evil.example"}
    )

    assert response.status_code == 403
    assert response.headers["content-type"].startswith("text/html")
    assert "з іншого сайту" in response.text
    assert (await central_env.get_user("olena")).language is None


async def test_login_from_a_foreign_origin_is_refused(central_env: CentralEnv) -> None:
    await central_env.add_user("olena", Role.DISPATCHER)

    api = await central_env.client.post(
        "/api/v1/auth/login",
        json={"username": "olena", "password": "x" * 12},
        headers={"origin": "https://evil.example"},
    )
    form = await central_env.client.post(
        "/login", data={"username": "olena", "password": "x" * 12}, headers={"origin": "https://evil.example"}
    )

    assert api.status_code == 403
    assert form.status_code == 403
    assert await central_env.audit("auth.login_failed") == []  # refused before the password was even checked
