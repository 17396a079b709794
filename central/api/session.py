"""Sign-in API: ``POST /api/v1/auth/login`` (sets the session cookie), logout and who-am-I."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, HTTPException, Request, Response, status
from pydantic import BaseModel, ConfigDict, Field

from central.auth.deps import (
    Principal,
    clear_session_cookie,
    client_ip,
    foreign_origin,
    require_role,
    set_session_cookie,
)
from central.auth.login import LOGIN_FAILED, sign_in, sign_out
from central.auth.models import User
from central.auth.roles import Role
from central.auth.users import get_user
from central.deps import SessionDep, get_services

router = APIRouter(prefix="/api/v1/auth", tags=["auth"])

SignedInUser = Annotated[Principal, Depends(require_role(Role.OBSERVER))]


class LoginRequest(BaseModel):
    """Username and password."""

    model_config = ConfigDict(extra="forbid")

    username: str = Field(min_length=1, max_length=64)
    password: str = Field(min_length=1, max_length=1024)


class MeView(BaseModel):
    """The signed-in user."""

    user_id: int
    username: str
    display_name: str
    role: Role
    language: str | None
    via: Literal["session", "token"]

    @classmethod
    def of(cls, user: User, via: Literal["session", "token"]) -> MeView:
        """Build from a user row."""
        return cls(
            user_id=user.id,
            username=user.username,
            display_name=user.display_name,
            role=Role(user.role),
            language=user.language,
            via=via,
        )


class LoginResponse(BaseModel):
    """A started session (the cookie ``varta_session`` carries it)."""

    ok: Literal[True] = True
    user: MeView
    expires_at: datetime


class OkResponse(BaseModel):
    """The action was done."""

    ok: Literal[True] = True


@router.post(
    "/login",
    response_model=LoginResponse,
    summary="Sign in (public): sets the HttpOnly session cookie",
    responses={401: {"description": "wrong username or password, or locked"}, 403: {"description": "foreign Origin"}},
)
async def login(body: LoginRequest, request: Request, response: Response, session: SessionDep) -> LoginResponse:
    """Check the password; on success set the ``varta_session`` cookie. Repeated failures lock the account."""
    config = get_services(request).config
    if foreign_origin(request, config):
        raise HTTPException(status.HTTP_403_FORBIDDEN, "cross-site request refused (Origin check)")
    signed = await sign_in(
        session,
        config.auth,
        body.username,
        body.password,
        ip=client_ip(request),
        user_agent=request.headers.get("user-agent"),
    )
    if signed is None:
        raise HTTPException(status.HTTP_401_UNAUTHORIZED, LOGIN_FAILED)
    set_session_cookie(response, signed.token, config)
    return LoginResponse(user=MeView.of(signed.user, "session"), expires_at=signed.session.expires_at)


@router.post("/logout", response_model=OkResponse, summary="End the current session")
async def logout(request: Request, response: Response, session: SessionDep, principal: SignedInUser) -> OkResponse:
    """End the session of the cookie (a bearer token stays valid: revoke it under ``/api/v1/tokens``)."""
    if principal.session_id is not None:
        await sign_out(session, session_id=principal.session_id, username=principal.username, ip=client_ip(request))
        clear_session_cookie(response, get_services(request).config)
    return OkResponse()


@router.get("/me", response_model=MeView, summary="Who is signed in")
async def me(session: SessionDep, principal: SignedInUser) -> MeView:
    """The caller's account and how they authenticated."""
    user = await get_user(session, principal.user_id)
    if user is None:  # deleted between the guard and here
        raise HTTPException(status.HTTP_401_UNAUTHORIZED, "no such user", headers={"WWW-Authenticate": "Bearer"})
    return MeView.of(user, principal.via)
