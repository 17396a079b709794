"""Dashboard pages: login, fleet, node, user administration, audit log and the user's own account."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Annotated, Any, Final

import structlog
from fastapi import APIRouter, Depends, Form, HTTPException, Path, Query, Request, Response, status
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, RedirectResponse
from fastapi.routing import APIRoute
from sqlalchemy.ext.asyncio import AsyncSession

from central.alerts.banner import banner_context
from central.api.schemas import NodeView
from central.auth import tokens as token_service
from central.auth import users as user_service
from central.auth.audit import list_entries
from central.auth.deps import (
    LoginRequired,
    PageForbidden,
    Principal,
    clear_session_cookie,
    client_ip,
    current_principal,
    foreign_origin,
    principal_from_session_cookie,
    require_page_role,
    safe_next,
    set_session_cookie,
)
from central.auth.login import sign_in, sign_out
from central.auth.models import User
from central.auth.passwords import MAX_LENGTH, MIN_LENGTH, PasswordPolicyError
from central.auth.roles import Role
from central.auth.sessions import COOKIE_NAME
from central.config import CentralConfig
from central.dashboard.charts import Chart, line_chart
from central.dashboard.i18n import (
    LANG_COOKIE,
    LANGUAGE_NAMES,
    LANGUAGES,
    N_,
    cookie_language,
    js_messages,
    pick_language,
    translations,
)
from central.dashboard.templating import templates
from central.deps import SessionDep, get_services
from central.store import queries
from varta.contract import ID_PATTERN, DeviceStatus, utcnow

log = structlog.get_logger(__name__)

HISTORY = timedelta(hours=24)
EVENTS_SHOWN = 100
AUDIT_PAGE = 50
LANG_COOKIE_MAX_AGE = 365 * 24 * 3600

#: Values above these are shown as warnings (the browser script gets the same numbers).
THRESHOLDS: Final = {"cpu": 90.0, "memory": 90.0, "disk": 90.0, "temperature": 80.0}

DONE_MESSAGES: Final = {
    "user_created": N_("User created."),
    "role_changed": N_("Role changed."),
    "user_deactivated": N_("User deactivated; their sessions were ended."),
    "user_activated": N_("User activated."),
    "password_reset": N_("Password set; the user's sessions were ended."),
    "password_changed": N_("Your password was changed; your other sessions were ended."),
    "language_saved": N_("Language saved."),
    "token_revoked": N_("Token revoked."),
}
ERROR_MESSAGES: Final = {
    "password_too_short": N_("The password must be at least %(n)s characters long."),
    "password_too_long": N_("The password is too long (at most %(n)s characters)."),
    "password_blank": N_("The password must not be only spaces."),
    "password_is_username": N_("The password must not be the same as the username."),
    "username_invalid": N_(
        "Usernames are 2–64 characters: lower-case Latin letters, digits, '.', '_' or '-', "
        "starting with a letter or digit."
    ),
    "username_taken": N_("This username is already taken."),
    "last_admin": N_("This is the last active administrator: make someone else an administrator first."),
    "unknown_language": N_("Unknown language."),
    "wrong_password": N_("The current password is wrong."),
    "passwords_differ": N_("The new passwords do not match."),
    "token_limit": N_("You have too many active tokens: revoke some first."),
    "token_name": N_("Give the token a name."),
    "no_such_user": N_("There is no such user."),
    "no_such_token": N_("There is no such token."),
}
ROLE_NAMES: Final = {
    Role.OBSERVER: N_("Observer"),
    Role.DISPATCHER: N_("Dispatcher"),
    Role.OPERATOR: N_("Operator"),
    Role.ADMIN: N_("Administrator"),
}


#: The empty card the fleet page clones when a node it has not seen yet reports.
PLACEHOLDER_NODE: Final = NodeView(
    node_id="new-node",
    site="new-site",
    name="",
    online=False,
    status_since=None,
    last_seen=None,
    hostname="",
    version="",
    boot_id="",
)


class PageNotFound(HTTPException):
    """A page about something that does not exist (answered with a 404 page)."""

    def __init__(self, detail: str) -> None:
        super().__init__(status.HTTP_404_NOT_FOUND, detail)


class PageRoute(APIRoute):
    """Turns guard and lookup failures of HTML pages into pages: login redirect, 403, 404, 400."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def page_handler(request: Request) -> Response:
            try:
                return await handler(request)
            except LoginRequired as exc:
                response: Response = RedirectResponse(exc.location, status.HTTP_303_SEE_OTHER)
                if COOKIE_NAME in request.cookies:
                    clear_session_cookie(response, _config(request))
                return response
            except PageForbidden as exc:
                return _error_page(request, status.HTTP_403_FORBIDDEN, "csrf" if exc.reason == "csrf" else "role")
            except PageNotFound:
                return _error_page(request, status.HTTP_404_NOT_FOUND, "not_found")
            except RequestValidationError:
                return _error_page(request, status.HTTP_400_BAD_REQUEST, "bad_request")

        return page_handler


router = APIRouter(route_class=PageRoute, include_in_schema=False)

SignedIn = Annotated[Principal, Depends(require_page_role(Role.OBSERVER))]
Admin = Annotated[Principal, Depends(require_page_role(Role.ADMIN))]


# --------------------------------------------------------------------------------------------------- helpers


@dataclass(frozen=True, slots=True)
class Viewer:
    """The signed-in person, as the page header shows them."""

    user_id: int
    username: str
    display_name: str
    role: Role

    @property
    def is_admin(self) -> bool:
        """True for admins (the header shows the admin links)."""
        return self.role.allows(Role.ADMIN)

    @property
    def can_view(self) -> bool:
        """True for dispatchers and up: camera pictures and live video (observers see neither)."""
        return self.role.allows(Role.DISPATCHER)

    @property
    def is_operator(self) -> bool:
        """True for operators and admins (adoption, credentials, reboots)."""
        return self.role.allows(Role.OPERATOR)


def _config(request: Request) -> CentralConfig:
    return get_services(request).config


def _current_path(request: Request) -> str:
    return request.url.path + (f"?{request.url.query}" if request.url.query else "")


def _context(request: Request, language: str, viewer: Viewer | None, page: str, **extra: Any) -> dict[str, Any]:
    ctx: dict[str, Any] = {
        "lang": language,
        "languages": LANGUAGE_NAMES,
        "viewer": viewer,
        "page": page,
        "live": False,
        "current_path": _current_path(request),
        "js_i18n": js_messages(language),
        "page_data": None,
        "role_names": ROLE_NAMES,
        "flash": None,
        "error": None,
        "server_now": utcnow().isoformat(),
        "alert_banner": getattr(request.state, "alert_banner", None),
    }
    ctx.update(extra)
    return ctx


async def _viewer(session: AsyncSession, request: Request, principal: Principal) -> tuple[Viewer, str, User]:
    user = await user_service.get_user(session, principal.user_id)
    if user is None:
        raise LoginRequired("/login")
    viewer = Viewer(user.id, user.username, user.display_name or user.username, Role(user.role))
    language = pick_language(user.language, cookie_language(request), default=_config(request).default_language)
    request.state.alert_banner = await banner_context(session, _config(request), get_services(request).alerts)
    return viewer, language, user


def _flash(language: str, done: str | None, error: str | None) -> tuple[str | None, str | None]:
    tr = translations(language)
    ok = tr.gettext(DONE_MESSAGES[done]) if done in DONE_MESSAGES else None
    return ok, _error_text(language, error) if error in ERROR_MESSAGES else None


def _error_text(language: str, code: str | None) -> str | None:
    if code not in ERROR_MESSAGES:
        return None
    text = translations(language).gettext(ERROR_MESSAGES[code])
    return text % {"n": MAX_LENGTH if code == "password_too_long" else MIN_LENGTH} if "%(n)s" in text else text


def _see_other(url: str) -> RedirectResponse:
    return RedirectResponse(url, status.HTTP_303_SEE_OTHER)


def _error_page(request: Request, status_code: int, reason: str) -> HTMLResponse:
    principal = current_principal(request)
    viewer = (
        Viewer(principal.user_id, principal.username, principal.username, principal.role)
        if principal is not None
        else None
    )
    language = pick_language(cookie_language(request), default=_config(request).default_language)
    ctx = _context(request, language, viewer, "error", status_code=status_code, reason=reason)
    return templates().response("error.html", ctx, language=language, status_code=status_code)


def device_counts(node: NodeView) -> dict[str, int]:
    """How many devices of *node* are in each status (every status present, zero when none)."""
    counts = Counter(d.status for d in node.devices)
    return {s.value: counts.get(s.value, 0) for s in DeviceStatus}


# --------------------------------------------------------------------------------------------------- login


@router.get("/login", response_class=HTMLResponse)
async def login_page(
    request: Request,
    next_url: Annotated[str | None, Query(alias="next", max_length=2000)] = None,
    lang: Annotated[str | None, Query(max_length=8)] = None,
) -> Response:
    """The sign-in form (public); ``?lang=en`` switches the language."""
    target = safe_next(next_url)
    if await principal_from_session_cookie(request) is not None:
        return _see_other(target)
    language = pick_language(lang, cookie_language(request), default=_config(request).default_language)
    response = templates().response(
        "login.html", _context(request, language, None, "login", next_url=target, username=""), language=language
    )
    if lang in LANGUAGES:
        response.set_cookie(LANG_COOKIE, language, max_age=LANG_COOKIE_MAX_AGE, samesite="lax", path="/")
    return response


@router.post("/login", response_class=HTMLResponse)
async def login_submit(
    request: Request,
    session: SessionDep,
    username: Annotated[str, Form(max_length=200)] = "",
    password: Annotated[str, Form(max_length=1024)] = "",
    next_url: Annotated[str, Form(alias="next", max_length=2000)] = "/",
) -> Response:
    """Check the password; on success set the session cookie and go to *next*."""
    config = _config(request)
    if foreign_origin(request, config):
        raise PageForbidden("cross-site request refused", reason="csrf")
    target = safe_next(next_url)
    signed = None
    if username and password:
        signed = await sign_in(
            session,
            config.auth,
            username,
            password,
            ip=client_ip(request),
            user_agent=request.headers.get("user-agent"),
        )
    if signed is None:
        language = pick_language(cookie_language(request), default=config.default_language)
        message = translations(language).gettext(
            "Wrong username or password. After several failed attempts, sign-in is blocked for a few minutes."
        )
        ctx = _context(request, language, None, "login", next_url=target, username=username[:64], error=message)
        return templates().response("login.html", ctx, language=language)
    response = _see_other(target)
    set_session_cookie(response, signed.token, config)
    if signed.user.language in LANGUAGES:
        response.set_cookie(LANG_COOKIE, signed.user.language, max_age=LANG_COOKIE_MAX_AGE, samesite="lax", path="/")
    return response


@router.post("/logout")
async def logout(request: Request, session: SessionDep, principal: SignedIn) -> Response:
    """End the session and go to the login page."""
    if principal.session_id is not None:
        await sign_out(session, session_id=principal.session_id, username=principal.username, ip=client_ip(request))
    response = _see_other("/login")
    clear_session_cookie(response, _config(request))
    return response


# --------------------------------------------------------------------------------------------------- fleet


@router.get("/", response_class=HTMLResponse)
async def fleet_page(request: Request, session: SessionDep, principal: SignedIn) -> Response:
    """Every site and node at a glance, offline first, kept current over SSE."""
    viewer, language, _ = await _viewer(session, request, principal)
    sites = await queries.fleet(session)
    nodes = [n for s in sites for n in s.nodes]
    counts = {n.node_id: device_counts(n) for n in nodes}
    totals = {
        "nodes": len(nodes),
        "online": sum(1 for n in nodes if n.online),
        "offline": sum(1 for n in nodes if not n.online),
        "device_problems": sum(c["offline"] + c["degraded"] for c in counts.values()),
    }
    page_data = {
        "thresholds": THRESHOLDS,
        "devices": {n.node_id: {d.device_id: d.status for d in n.devices} for n in nodes},
    }
    ctx = _context(
        request,
        language,
        viewer,
        "fleet",
        live=True,
        sites=sites,
        counts=counts,
        totals=totals,
        thresholds=THRESHOLDS,
        page_data=page_data,
        placeholder=PLACEHOLDER_NODE,
        placeholder_counts=device_counts(PLACEHOLDER_NODE),
    )
    return templates().response("fleet.html", ctx, language=language)


@router.get("/nodes/{node_id}", response_class=HTMLResponse)
async def node_page(
    request: Request,
    session: SessionDep,
    principal: SignedIn,
    node_id: Annotated[str, Path(pattern=ID_PATTERN)],
) -> Response:
    """One node: identity, status, 24 h health charts, devices and events, kept current over SSE."""
    viewer, language, _ = await _viewer(session, request, principal)
    node = await queries.node_detail(session, node_id)
    if node is None:
        raise PageNotFound(f"unknown node {node_id}")
    end = utcnow()
    start = end - HISTORY
    history = await queries.health_history(session, node_id, start)
    events = await queries.node_events(session, node_id, limit=EVENTS_SHOWN)
    gaps = await queries.seq_gaps(session, node_id, limit=20)
    bucket = timedelta(seconds=max(300.0, 2.5 * node.health_interval_s))
    gap = max(2 * bucket, timedelta(seconds=3 * node.health_interval_s))

    def chart(values: list[tuple[datetime, float | None]], limit: float) -> Chart:
        return line_chart(
            values, start=start, end=end, y_min=0, y_max=100, min_bucket=bucket, max_gap=gap, threshold=limit
        )

    charts = {
        "cpu": chart([(p.ts, p.cpu_percent) for p in history], THRESHOLDS["cpu"]),
        "memory": chart([(p.ts, p.memory_percent) for p in history], THRESHOLDS["memory"]),
        "temperature": chart([(p.ts, p.temperature_c) for p in history], THRESHOLDS["temperature"]),
    }
    page_data = {"node_id": node.node_id, "thresholds": THRESHOLDS, "max_events": EVENTS_SHOWN}
    ctx = _context(
        request,
        language,
        viewer,
        "node",
        live=True,
        node=node,
        counts=device_counts(node),
        charts=charts,
        events=events,
        gaps=gaps,
        history_points=len(history),
        thresholds=THRESHOLDS,
        page_data=page_data,
    )
    return templates().response("node.html", ctx, language=language)


# --------------------------------------------------------------------------------------------------- admin


async def _users_page(
    request: Request,
    session: AsyncSession,
    principal: Principal,
    *,
    done: str | None = None,
    error: str | None = None,
    form: dict[str, str] | None = None,
    status_code: int = 200,
) -> Response:
    viewer, language, _ = await _viewer(session, request, principal)
    flash, error_text = _flash(language, done, error)
    ctx = _context(
        request,
        language,
        viewer,
        "users",
        users=await user_service.list_users(session),
        roles=list(Role),
        flash=flash,
        error=error_text,
        form=form or {"username": "", "display_name": "", "role": "dispatcher"},
        now=utcnow(),
    )
    return templates().response("admin_users.html", ctx, language=language, status_code=status_code)


@router.get("/admin/users", response_class=HTMLResponse)
async def users_page(
    request: Request,
    session: SessionDep,
    principal: Admin,
    done: Annotated[str | None, Query(max_length=32)] = None,
    error: Annotated[str | None, Query(max_length=32)] = None,
) -> Response:
    """Accounts: create, change role, deactivate, set a new password."""
    return await _users_page(request, session, principal, done=done, error=error)


@router.post("/admin/users", response_class=HTMLResponse)
async def users_create(
    request: Request,
    session: SessionDep,
    principal: Admin,
    username: Annotated[str, Form(max_length=200)] = "",
    display_name: Annotated[str, Form(max_length=200)] = "",
    role: Annotated[Role, Form()] = Role.DISPATCHER,
    password: Annotated[str, Form(max_length=1024)] = "",
) -> Response:
    """Create an account from the form."""
    try:
        await user_service.create_user(
            session,
            username=username,
            password=password,
            role=role,
            display_name=display_name,
            actor=principal.username,
            ip=client_ip(request),
        )
    except (user_service.UserError, PasswordPolicyError) as exc:
        await session.rollback()
        form = {"username": username, "display_name": display_name, "role": role.value}
        return await _users_page(request, session, principal, error=exc.code, form=form, status_code=400)
    await session.commit()
    return _see_other("/admin/users?done=user_created")


async def _target_user(session: AsyncSession, user_id: int) -> User:
    user = await user_service.get_user(session, user_id)
    if user is None:
        raise PageNotFound(f"no user {user_id}")
    return user


@router.post("/admin/users/{user_id}/role")
async def users_set_role(
    request: Request,
    session: SessionDep,
    principal: Admin,
    user_id: Annotated[int, Path(ge=1)],
    role: Annotated[Role, Form()],
) -> Response:
    """Change a user's role."""
    user = await _target_user(session, user_id)
    try:
        await user_service.set_role(session, user, role, actor=principal.username, ip=client_ip(request))
    except user_service.UserError as exc:
        await session.rollback()
        return _see_other(f"/admin/users?error={exc.code}")
    await session.commit()
    return _see_other("/admin/users?done=role_changed")


@router.post("/admin/users/{user_id}/active")
async def users_set_active(
    request: Request,
    session: SessionDep,
    principal: Admin,
    user_id: Annotated[int, Path(ge=1)],
    active: Annotated[bool, Form()],
) -> Response:
    """Deactivate (ending every session) or reactivate a user."""
    user = await _target_user(session, user_id)
    try:
        await user_service.set_active(session, user, active, actor=principal.username, ip=client_ip(request))
    except user_service.UserError as exc:
        await session.rollback()
        return _see_other(f"/admin/users?error={exc.code}")
    await session.commit()
    return _see_other(f"/admin/users?done={'user_activated' if active else 'user_deactivated'}")


@router.post("/admin/users/{user_id}/password")
async def users_reset_password(
    request: Request,
    session: SessionDep,
    principal: Admin,
    user_id: Annotated[int, Path(ge=1)],
    password: Annotated[str, Form(max_length=1024)] = "",
) -> Response:
    """Set a new password for a user (their sessions end)."""
    user = await _target_user(session, user_id)
    try:
        await user_service.reset_password(session, user, password, actor=principal.username, ip=client_ip(request))
    except PasswordPolicyError as exc:
        await session.rollback()
        return _see_other(f"/admin/users?error={exc.code}")
    await session.commit()
    return _see_other("/admin/users?done=password_reset")


@router.get("/admin/audit", response_class=HTMLResponse)
async def audit_page(
    request: Request,
    session: SessionDep,
    principal: Admin,
    page: Annotated[int, Query(ge=1, le=100_000)] = 1,
    action: Annotated[str | None, Query(max_length=64)] = None,
) -> Response:
    """The audit log, newest first, 50 entries a page."""
    viewer, language, _ = await _viewer(session, request, principal)
    action = action or None
    rows, total = await list_entries(session, limit=AUDIT_PAGE, offset=(page - 1) * AUDIT_PAGE, action=action)
    pages = max(1, -(-total // AUDIT_PAGE))
    ctx = _context(
        request, language, viewer, "audit", entries=rows, total=total, page_no=page, pages=pages, action=action or ""
    )
    return templates().response("admin_audit.html", ctx, language=language)


# --------------------------------------------------------------------------------------------------- account


async def _account_page(
    request: Request,
    session: AsyncSession,
    principal: Principal,
    *,
    done: str | None = None,
    error: str | None = None,
    new_token: str | None = None,
    status_code: int = 200,
) -> Response:
    viewer, language, user = await _viewer(session, request, principal)
    flash, error_text = _flash(language, done, error)
    tokens = await token_service.list_tokens(session, user_id=principal.user_id)
    ctx = _context(
        request,
        language,
        viewer,
        "account",
        user=user,
        tokens=tokens,
        new_token=new_token,
        flash=flash,
        error=error_text,
        now=utcnow(),
        is_active=token_service.token_is_active,
    )
    return templates().response("account.html", ctx, language=language, status_code=status_code)


@router.get("/account", response_class=HTMLResponse)
async def account_page(
    request: Request,
    session: SessionDep,
    principal: SignedIn,
    done: Annotated[str | None, Query(max_length=32)] = None,
    error: Annotated[str | None, Query(max_length=32)] = None,
) -> Response:
    """Your password, language and API tokens."""
    return await _account_page(request, session, principal, done=done, error=error)


@router.post("/account/password")
async def account_password(
    request: Request,
    session: SessionDep,
    principal: SignedIn,
    current: Annotated[str, Form(max_length=1024)] = "",
    new: Annotated[str, Form(max_length=1024)] = "",
    confirm: Annotated[str, Form(max_length=1024)] = "",
) -> Response:
    """Change your own password (your other sessions end)."""
    user = await _target_user(session, principal.user_id)
    if new != confirm:
        return _see_other("/account?error=passwords_differ")
    try:
        changed = await user_service.change_own_password(
            session, user, current, new, keep_session_id=principal.session_id, ip=client_ip(request)
        )
    except PasswordPolicyError as exc:
        await session.rollback()
        return _see_other(f"/account?error={exc.code}")
    await session.commit()
    return _see_other("/account?done=password_changed" if changed else "/account?error=wrong_password")


@router.post("/account/language")
async def account_language(
    request: Request,
    session: SessionDep,
    principal: SignedIn,
    language: Annotated[str, Form(max_length=8)],
    next_url: Annotated[str | None, Form(alias="next", max_length=2000)] = None,
) -> Response:
    """Save your language (in your account and in a cookie) and go back."""
    if language not in LANGUAGES:
        return _see_other("/account?error=unknown_language")
    user = await _target_user(session, principal.user_id)
    user_service.set_language(user, language)
    await session.commit()
    response = _see_other(safe_next(next_url) if next_url else "/account?done=language_saved")
    response.set_cookie(LANG_COOKIE, language, max_age=LANG_COOKIE_MAX_AGE, samesite="lax", path="/")
    return response


@router.post("/account/tokens", response_class=HTMLResponse)
async def account_token_create(
    request: Request,
    session: SessionDep,
    principal: SignedIn,
    name: Annotated[str, Form(max_length=100)] = "",
    expires_in_days: Annotated[int | None, Form(ge=1, le=3650)] = None,
) -> Response:
    """Create a personal API token and show its secret once."""
    if not name.strip():
        return await _account_page(request, session, principal, error="token_name", status_code=400)
    user = await _target_user(session, principal.user_id)
    try:
        secret, _ = await token_service.create_token(
            session,
            user,
            name=name.strip(),
            expires_in=timedelta(days=expires_in_days) if expires_in_days else None,
            ip=client_ip(request),
        )
    except token_service.TokenLimitError:
        await session.rollback()
        return await _account_page(request, session, principal, error="token_limit", status_code=400)
    await session.commit()
    return await _account_page(request, session, principal, new_token=secret)


@router.post("/account/tokens/{token_id}/revoke")
async def account_token_revoke(
    request: Request,
    session: SessionDep,
    principal: SignedIn,
    token_id: Annotated[int, Path(ge=1)],
) -> Response:
    """Revoke one of your tokens."""
    row = await token_service.get_token(session, token_id)
    if row is None or row.user_id != principal.user_id:
        return _see_other("/account?error=no_such_token")
    await token_service.revoke_token(session, row, actor=principal.username, ip=client_ip(request))
    await session.commit()
    return _see_other("/account?done=token_revoked")
