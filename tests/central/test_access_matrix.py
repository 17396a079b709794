"""Every route of the real app declares a minimum role, and every lower role (and anonymous) is refused.

The app is :func:`central.app.create_app` as shipped, so routes added later are covered automatically: a route
without a guard fails :func:`test_every_route_is_guarded_or_explicitly_public`.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Any

import orjson
import pytest
from fastapi import FastAPI
from fastapi.params import Form
from fastapi.routing import APIRoute, RouteContext, iter_route_contexts
from starlette.routing import Mount, Route
from starlette.types import Message

from central.auth.deps import PageGuard, RoleGuard
from central.auth.roles import Role
from tests.central.test_auth_support import CentralEnv, central_env

__all__ = ["central_env"]

#: Routes anyone may call, and why.
PUBLIC = {
    ("GET", "/login"): "the login form",
    ("POST", "/login"): "the login form posts here",
    ("POST", "/api/v1/auth/login"): "API sign-in",
    ("GET", "/healthz"): "liveness for load balancers",
    ("GET", "/api/docs"): "OpenAPI docs page (the API itself is guarded)",
    ("GET", "/docs/oauth2-redirect"): "OpenAPI docs helper (Swagger UI OAuth2 redirect)",
    ("GET", "/api/openapi.json"): "OpenAPI schema",
    ("GET", "/api/v1/kiosk/content/{sha256}"): "kiosk assets for nodes (public screens; checked against the manifest)",
    ("GET", "/api/v1/kiosk/manifests/{node_id}/{version}"): "signed kiosk manifests for nodes (the signature guards)",
}
PUBLIC_MOUNTS = {"/static": "CSS, JS, icons"}
#: (method, path) that refuse API-token callers on purpose, whatever their role.
SESSION_ONLY = {("POST", "/api/v1/tokens"): "tokens are minted from an interactive session, not by tokens"}
#: Bodies that pass validation, where the check under test sits behind it.
VALID_BODIES: dict[tuple[str, str], dict[str, Any]] = {("POST", "/api/v1/tokens"): {"name": "matrix"}}
ROLES = [Role.OBSERVER, Role.DISPATCHER, Role.OPERATOR, Role.ADMIN]
HOST = "testserver"


@dataclass(frozen=True)
class Guarded:
    """A route (as the app serves it, router prefixes and dependencies included) and its strictest guard."""

    method: str
    path: str
    minimum: Role
    page: bool
    context: RouteContext

    @property
    def id(self) -> str:
        return f"{self.method} {self.path}"


def _guards(dependant: Any) -> Iterator[RoleGuard | PageGuard]:
    for dep in dependant.dependencies:
        if isinstance(dep.call, RoleGuard | PageGuard):
            yield dep.call
        yield from _guards(dep)


def guarded_routes(app: FastAPI) -> tuple[list[Guarded], list[str]]:
    """Every (method, path) with its strictest guard, and every one that has none and is not public."""
    found: list[Guarded] = []
    unguarded: list[str] = []
    for ctx in iter_route_contexts(app.routes):
        route = ctx.original_route
        if isinstance(route, Mount):
            if route.path not in PUBLIC_MOUNTS:
                unguarded.append(f"mount {route.path}")
            continue
        if not isinstance(route, Route | APIRoute):
            unguarded.append(f"unknown route type {route!r}")
            continue
        path = str(ctx.path)
        for method in sorted((ctx.methods or set()) - {"HEAD", "OPTIONS"}):
            if (method, path) in PUBLIC:
                continue
            guards = list(_guards(ctx.dependant)) if isinstance(route, APIRoute) else []
            if not guards:
                unguarded.append(f"{method} {path}")
                continue
            strictest = max(guards, key=lambda g: g.minimum_role.rank)
            found.append(Guarded(method, path, strictest.minimum_role, isinstance(strictest, PageGuard), ctx))
    return found, unguarded


def fill_path(g: Guarded) -> str:
    """The route's path with dummy values that match each parameter's type and pattern."""
    path = g.path
    for param in g.context.dependant.path_params:
        value = "999999" if param.field_info.annotation is int else "dummy-1"
        path = path.replace("{" + param.name + "}", value)
    assert "{" not in path, path
    return path


async def call(
    app: FastAPI, method: str, path: str, headers: dict[str, str], body: bytes = b""
) -> tuple[int, dict[str, str], bytes]:
    """One request straight into the ASGI app; stops after the response starts (so SSE streams end too)."""
    started: asyncio.Future[tuple[int, dict[str, str]]] = asyncio.get_running_loop().create_future()
    chunks: list[bytes] = []
    disconnect = asyncio.Event()
    sent_body = False

    async def receive() -> Message:
        nonlocal sent_body
        if not sent_body:
            sent_body = True
            return {"type": "http.request", "body": body, "more_body": False}
        await disconnect.wait()
        return {"type": "http.disconnect"}

    async def send(message: Message) -> None:
        if message["type"] == "http.response.start" and not started.done():
            raw = {k.decode().lower(): v.decode() for k, v in message.get("headers", [])}
            started.set_result((message["status"], raw))
        elif message["type"] == "http.response.body":
            chunks.append(message.get("body", b""))

    scope = {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.3"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [(k.lower().encode(), v.encode()) for k, v in {"host": HOST, **headers}.items()],
        "client": ("127.0.0.1", 50000),
        "server": (HOST, 80),
        "state": {},
    }
    task = asyncio.ensure_future(app(scope, receive, send))
    waiters: list[asyncio.Future[Any]] = [task, started]
    done, _ = await asyncio.wait(waiters, timeout=10, return_when=asyncio.FIRST_COMPLETED)
    assert done, f"{method} {path}: no response within 10 s"
    if task in done and not started.done():
        task.result()  # the app failed before answering: show why
    status, response_headers = await asyncio.wait_for(started, 10)
    disconnect.set()
    try:
        await asyncio.wait_for(task, 2)
    except TimeoutError:  # an endless stream: it has answered, that is all we need
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    return status, response_headers, b"".join(chunks)


def body_for(g: Guarded) -> tuple[bytes, dict[str, str]]:
    """A minimal body: ``{}`` (or a valid one) for JSON routes, an empty form for form routes, else nothing."""
    body_params = g.context.dependant.body_params
    if not body_params:
        return b"", {}
    if any(isinstance(p.field_info, Form) for p in body_params):
        return b"", {"content-type": "application/x-www-form-urlencoded"}
    return orjson.dumps(VALID_BODIES.get((g.method, g.path), {})), {"content-type": "application/json"}


@pytest.fixture
async def app_and_creds(central_env: CentralEnv) -> AsyncIterator[tuple[FastAPI, CentralEnv]]:
    for role in ROLES:
        await central_env.add_user(f"user-{role.value}", role)
    yield central_env.app, central_env


def test_every_route_is_guarded_or_explicitly_public(central_env: CentralEnv) -> None:
    found, unguarded = guarded_routes(central_env.app)

    assert unguarded == []
    paths = {g.id for g in found}
    minimum = {g.id: g.minimum for g in found}
    # The matrix really walks the app: a few routes from every router must be there.
    for expected in (
        "GET /",
        "GET /nodes/{node_id}",
        "GET /api/v1/stream",
        "GET /api/v1/users",
        "GET /api/v1/audit",
        "POST /api/v1/tokens",
        "POST /api/v1/nodes/{node_id}/commands",
        "GET /api/v1/sites",
        "GET /api/v1/cameras",
        "GET /api/v1/cameras/{node_id}/{device_id}/snapshot",
        "POST /api/v1/cameras/{node_id}/{device_id}/ptz/move",
        "POST /api/v1/discovery/{item_id}/adopt",
        "GET /cameras",
        "GET /cameras/{node_id}/{device_id}",
        "GET /cameras/discovery",
        "GET /kiosks",
        "GET /kiosks/content",
        "GET /kiosks/preview",
    ):
        assert expected in paths, expected
    # Cameras: dispatchers watch and steer them; operators adopt, set credentials, reboot and sync clocks.
    for route in (
        "GET /api/v1/cameras/{node_id}/{device_id}",
        "POST /api/v1/cameras/{node_id}/{device_id}/snapshot",
        "POST /api/v1/cameras/{node_id}/{device_id}/ptz/stop",
        "POST /api/v1/cameras/{node_id}/{device_id}/ptz/presets/goto",
        "POST /api/v1/cameras/{node_id}/{device_id}/ptz/presets",
        "GET /cameras",
    ):
        assert minimum[route] is Role.DISPATCHER, route
    for route in (
        "POST /api/v1/discovery/{item_id}/adopt",
        "POST /api/v1/discovery/{item_id}/ignore",
        "POST /api/v1/cameras/{node_id}/{device_id}/credentials",
        "POST /api/v1/cameras/{node_id}/{device_id}/reboot",
        "POST /api/v1/cameras/{node_id}/{device_id}/time-sync",
        "GET /api/v1/discovery",
        "GET /cameras/discovery",
    ):
        assert minimum[route] is Role.OPERATOR, route
    # Kiosks: everyone signed in sees the kiosk list and the preview; IT (operators) edits the content.
    assert (minimum["GET /kiosks"], minimum["GET /kiosks/preview"]) == (Role.OBSERVER, Role.OBSERVER)
    assert minimum["GET /kiosks/content"] is Role.OPERATOR
    assert all(g.page for g in found if not g.path.startswith("/api/")), "HTML pages use require_page_role"
    assert not any(g.page for g in found if g.path.startswith("/api/")), "API routes use require_role"


async def test_public_routes_need_no_login(central_env: CentralEnv) -> None:
    for method, path in PUBLIC:
        if method != "GET" or "{" in path:  # templated routes are called with real values by their own tests
            continue
        status, _, _ = await call(central_env.app, "GET", path, {})
        assert status not in (401, 403), path
        assert status < 300, path
    status, _, _ = await call(central_env.app, "GET", "/static/style.css", {})
    assert status == 200


async def test_anonymous_callers_are_refused_everywhere(central_env: CentralEnv) -> None:
    found, _ = guarded_routes(central_env.app)
    problems = []
    for g in found:
        body, headers = body_for(g)
        path = fill_path(g)
        status, response_headers, content = await call(central_env.app, g.method, path, headers, body)
        if g.page:
            if status != 303 or not response_headers.get("location", "").startswith("/login?next="):
                problems.append(f"{g.id}: {status} {response_headers.get('location')}")
        elif status != 401 or response_headers.get("www-authenticate", "") != "Bearer" or b'"detail"' not in content:
            problems.append(f"{g.id}: {status} {content[:80]!r}")
    assert problems == []


@pytest.mark.parametrize("via", ["session", "token"])
async def test_each_role_gets_exactly_the_routes_its_rank_allows(
    app_and_creds: tuple[FastAPI, CentralEnv], via: str
) -> None:
    app, env = app_and_creds
    found, _ = guarded_routes(app)
    tokens = {role: await env.api_token(f"user-{role.value}") for role in ROLES}
    problems = []
    checked = 0
    for g in found:
        if via == "token" and g.page:
            continue  # pages are for browsers: session cookie only (a token gets the login redirect)
        body, headers = body_for(g)
        path = fill_path(g)
        for role in ROLES:
            if via == "session":
                # A fresh session per request: some routes (logout) end the session they are called with.
                token = await env.session_token(f"user-{role.value}")
                auth = {"cookie": f"varta_session={token}", "origin": f"http://{HOST}"}
            else:
                auth = {"authorization": f"Bearer {tokens[role]}"}
            status, _, content = await call(app, g.method, path, {**headers, **auth}, body)
            checked += 1
            allowed = role.allows(g.minimum)
            if via == "token" and (g.method, g.path) in SESSION_ONLY:
                allowed = False
            if allowed and status in (401, 403):
                problems.append(f"{g.id} as {role.value}: refused with {status} {content[:100]!r}")
            if not allowed and status != 403:
                problems.append(f"{g.id} as {role.value}: expected 403, got {status} {content[:100]!r}")
    assert checked > 3 * 10
    assert problems == []


async def test_page_guards_answer_with_pages_not_json(app_and_creds: tuple[FastAPI, CentralEnv]) -> None:
    app, env = app_and_creds
    token = await env.session_token("user-dispatcher")

    status, headers, content = await call(app, "GET", "/admin/users", {"cookie": f"varta_session={token}"})

    assert status == 403
    assert headers["content-type"].startswith("text/html")
    assert "Доступ заборонено" in content.decode()


async def test_the_walk_notices_a_route_added_without_a_guard(central_env: CentralEnv) -> None:
    app = central_env.app

    @app.get("/api/v1/forgotten")
    async def forgotten() -> dict[str, str]:
        return {"secret": "yes"}

    _, unguarded = guarded_routes(app)

    assert unguarded == ["GET /api/v1/forgotten"]
