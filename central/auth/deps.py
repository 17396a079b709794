"""Route guards: who is calling (session cookie or bearer token) and whether their role is enough.

Every protected route declares its minimum role with ``Depends(require_role(Role.OPERATOR))`` (API) or
``Depends(require_page_role(Role.DISPATCHER))`` (HTML pages). Each guard carries ``minimum_role`` so a test
can walk the app's routes and check that none is left unguarded.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Literal
from urllib.parse import quote, urlsplit

import structlog
from fastapi import HTTPException, Request, Response, Security, status
from fastapi.security import APIKeyCookie, HTTPAuthorizationCredentials, HTTPBearer

from central.auth.roles import Role
from central.auth.sessions import COOKIE_NAME, resolve_session
from central.auth.tokens import resolve_token
from central.config import CentralConfig
from central.deps import get_services

log = structlog.get_logger(__name__)

UNSAFE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})

_bearer_scheme = HTTPBearer(auto_error=False, description="a personal API token (vt_…)")
_cookie_scheme = APIKeyCookie(name=COOKIE_NAME, auto_error=False, description="dashboard session")


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is making a request."""

    user_id: int
    username: str
    role: Role
    via: Literal["session", "token"]
    session_id: int | None = None
    token_id: int | None = None


class LoginRequired(HTTPException):
    """A page needs a signed-in user: answered with a 303 redirect to the login page."""

    def __init__(self, location: str) -> None:
        super().__init__(status.HTTP_303_SEE_OTHER, "login required", headers={"Location": location})
        self.location = location


class PageForbidden(HTTPException):
    """A page the signed-in user may not see or change (a 403 page); ``reason`` is ``role`` or ``csrf``."""

    def __init__(self, detail: str, *, reason: Literal["role", "csrf"] = "role") -> None:
        super().__init__(status.HTTP_403_FORBIDDEN, detail)
        self.reason = reason


# --------------------------------------------------------------------------------------------------- helpers


def client_ip(request: Request) -> str | None:
    """The peer address (uvicorn's proxy-headers support rewrites it behind a trusted proxy)."""
    return request.client.host if request.client else None


def _origin_of(url: str) -> str | None:
    parts = urlsplit(url)
    if not parts.scheme or not parts.netloc:
        return None
    return f"{parts.scheme.lower()}://{parts.netloc.lower()}"


def allowed_origins(request: Request, config: CentralConfig) -> set[str]:
    """Origins a state-changing browser request may come from: this server as addressed and its public URL."""
    origins: set[str] = set()
    host = request.headers.get("host")
    if host:
        origins.add(f"{request.url.scheme}://{host.lower()}")
    if config.http.public_url:
        public = _origin_of(config.http.public_url)
        if public:
            origins.add(public)
    return origins


def is_same_origin(request: Request, config: CentralConfig) -> bool:
    """CSRF check for cookie-authenticated requests: ``Origin`` (or else ``Referer``) must be this site."""
    origin = request.headers.get("origin")
    if origin is None or origin == "null":
        referer = request.headers.get("referer")
        origin = _origin_of(referer) if referer else None
    else:
        origin = origin.rstrip("/").lower()
    return origin is not None and origin in allowed_origins(request, config)


def foreign_origin(request: Request, config: CentralConfig) -> bool:
    """True when the request names an ``Origin`` that is not this site (login CSRF: no Origin is fine)."""
    origin = request.headers.get("origin")
    return origin is not None and origin.rstrip("/").lower() not in allowed_origins(request, config)


def set_session_cookie(response: Response, token: str, config: CentralConfig) -> None:
    """Set the session cookie: HttpOnly, SameSite=Strict, Secure when configured, for the session lifetime."""
    response.set_cookie(
        COOKIE_NAME,
        token,
        max_age=int(config.auth.session_ttl_hours * 3600),
        path="/",
        httponly=True,
        samesite="strict",
        secure=config.auth.cookie_secure,
    )


def clear_session_cookie(response: Response, config: CentralConfig) -> None:
    """Tell the browser to forget the session cookie."""
    response.delete_cookie(COOKIE_NAME, path="/", httponly=True, samesite="strict", secure=config.auth.cookie_secure)


def login_url(request: Request) -> str:
    """``/login?next=<this page>``."""
    target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    return "/login?next=" + quote(target, safe="/")


def safe_next(target: str | None) -> str:
    """A local path to go to after login (anything else, e.g. ``//evil.example``, becomes ``/``)."""
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return "/"
    if any(ch in target for ch in "\r\n\t") or urlsplit(target).netloc:
        return "/"
    return target


# ------------------------------------------------------------------------------------------------- resolution

_STATE_KEY = "varta_principal"


@dataclass(frozen=True, slots=True)
class _Resolved:
    principal: Principal | None


def _cached(request: Request) -> _Resolved | None:
    resolved: _Resolved | None = getattr(request.state, _STATE_KEY, None)
    return resolved


async def principal_from_session_cookie(request: Request) -> Principal | None:
    """The principal of the request's session cookie, or None (cached on the request)."""
    if (cached := _cached(request)) is not None:
        return cached.principal
    principal: Principal | None = None
    token = request.cookies.get(COOKIE_NAME)
    if token:
        async with get_services(request).db.session() as db:
            row = await resolve_session(db, token)
            if row is not None:
                principal = Principal(row.user_id, row.user.username, Role(row.user.role), "session", session_id=row.id)
            await db.commit()
    setattr(request.state, _STATE_KEY, _Resolved(principal))
    return principal


async def principal_from_bearer(request: Request, secret: str) -> Principal | None:
    """The principal of a bearer token, or None (cached on the request)."""
    if (cached := _cached(request)) is not None:
        return cached.principal
    principal: Principal | None = None
    async with get_services(request).db.session() as db:
        row = await resolve_token(db, secret)
        if row is not None:
            principal = Principal(row.user_id, row.user.username, Role(row.user.role), "token", token_id=row.id)
        await db.commit()
    setattr(request.state, _STATE_KEY, _Resolved(principal))
    return principal


def current_principal(request: Request) -> Principal | None:
    """The principal a guard already resolved for this request (None when anonymous or not yet checked)."""
    cached = _cached(request)
    return cached.principal if cached is not None else None


# --------------------------------------------------------------------------------------------------- guards


class RoleGuard:
    """API guard: bearer token or session cookie; 401 when anonymous, 403 when the role is too low.

    A request with an ``Authorization`` header is judged by it alone (a bad token is a 401 even with a valid
    cookie). Cookie-authenticated unsafe requests must come from this site (``Origin``/``Referer`` check);
    bearer requests are exempt, since browsers never add that header on their own.
    """

    def __init__(self, minimum: Role) -> None:
        self.minimum_role = minimum

    def __repr__(self) -> str:
        return f"require_role({self.minimum_role.value})"

    async def __call__(
        self,
        request: Request,
        bearer: Annotated[HTTPAuthorizationCredentials | None, Security(_bearer_scheme)],
        cookie: Annotated[str | None, Security(_cookie_scheme)],
    ) -> Principal:
        if "authorization" in request.headers:
            secret = bearer.credentials.strip() if bearer is not None else ""
            principal = await principal_from_bearer(request, secret) if secret else None
            if principal is None:
                raise HTTPException(
                    status.HTTP_401_UNAUTHORIZED,
                    "invalid, expired or revoked API token",
                    headers={"WWW-Authenticate": 'Bearer error="invalid_token"'},
                )
        else:
            principal = await principal_from_session_cookie(request) if cookie else None
            if principal is None:
                raise HTTPException(
                    status.HTTP_401_UNAUTHORIZED,
                    "not signed in: send a session cookie or 'Authorization: Bearer <token>'",
                    headers={"WWW-Authenticate": "Bearer"},
                )
        if not principal.role.allows(self.minimum_role):
            log.info(
                "auth.forbidden",
                user=principal.username,
                role=principal.role,
                needs=self.minimum_role,
                path=request.url.path,
            )
            raise HTTPException(status.HTTP_403_FORBIDDEN, f"needs the {self.minimum_role.value} role")
        if (
            principal.via == "session"
            and request.method in UNSAFE_METHODS
            and not is_same_origin(request, get_services(request).config)
        ):
            log.warning(
                "auth.csrf_refused",
                user=principal.username,
                path=request.url.path,
                origin=request.headers.get("origin"),
            )
            raise HTTPException(status.HTTP_403_FORBIDDEN, "cross-site request refused (Origin check)")
        return principal


class PageGuard:
    """HTML page guard (session cookie only): anonymous → 303 to the login page, role too low → 403 page."""

    def __init__(self, minimum: Role) -> None:
        self.minimum_role = minimum

    def __repr__(self) -> str:
        return f"require_page_role({self.minimum_role.value})"

    async def __call__(self, request: Request) -> Principal:
        principal = await principal_from_session_cookie(request)
        if principal is None:
            raise LoginRequired(login_url(request))
        if not principal.role.allows(self.minimum_role):
            raise PageForbidden(f"needs the {self.minimum_role.value} role")
        if request.method in UNSAFE_METHODS and not is_same_origin(request, get_services(request).config):
            log.warning(
                "auth.csrf_refused",
                user=principal.username,
                path=request.url.path,
                origin=request.headers.get("origin"),
            )
            raise PageForbidden("cross-site request refused", reason="csrf")
        return principal


def require_role(minimum: Role) -> RoleGuard:
    """Dependency for API routes: the caller's :class:`Principal`, at least *minimum*."""
    return RoleGuard(minimum)


def require_page_role(minimum: Role) -> PageGuard:
    """Dependency for HTML pages: the signed-in :class:`Principal`, at least *minimum*."""
    return PageGuard(minimum)
