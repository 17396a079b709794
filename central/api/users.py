"""User administration API (admin): list, create, change role or name, (de)activate, reset passwords."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, HTTPException, Path, Request, status
from pydantic import BaseModel, ConfigDict, Field

from central.api.session import OkResponse
from central.auth import users as user_service
from central.auth.deps import Principal, client_ip, require_role
from central.auth.models import User
from central.auth.passwords import PasswordPolicyError
from central.auth.roles import Role
from central.deps import SessionDep

router = APIRouter(prefix="/api/v1/users", tags=["users"])

Admin = Annotated[Principal, Depends(require_role(Role.ADMIN))]
UserId = Annotated[int, Path(ge=1)]


class UserView(BaseModel):
    """A user account as admins see it (never the password hash)."""

    model_config = ConfigDict(from_attributes=True)

    id: int
    username: str
    display_name: str
    role: Role
    active: bool
    language: str | None
    created_at: datetime
    last_login: datetime | None
    locked_until: datetime | None
    failed_logins: int


class UserCreate(BaseModel):
    """A new account."""

    model_config = ConfigDict(extra="forbid")

    username: str = Field(min_length=2, max_length=64, description="lower-case letters, digits, '.', '_', '-'")
    password: str = Field(min_length=1, max_length=1024, description="at least 10 characters")
    role: Role = Role.DISPATCHER
    display_name: str = Field(default="", max_length=200)
    language: Literal["uk", "en"] | None = None


class UserUpdate(BaseModel):
    """Changes to an account; fields left out stay as they are."""

    model_config = ConfigDict(extra="forbid")

    role: Role | None = None
    display_name: str | None = Field(default=None, max_length=200)
    active: bool | None = Field(default=None, description="false deactivates the user and ends their sessions")


class PasswordReset(BaseModel):
    """A new password set by an admin."""

    model_config = ConfigDict(extra="forbid")

    password: str = Field(min_length=1, max_length=1024)


def _refused(exc: user_service.UserError | PasswordPolicyError) -> HTTPException:
    code = status.HTTP_409_CONFLICT if isinstance(exc, user_service.UsernameTaken) else status.HTTP_400_BAD_REQUEST
    return HTTPException(code, str(exc))


async def _load(session: SessionDep, user_id: int) -> User:
    user = await user_service.get_user(session, user_id)
    if user is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no user {user_id}")
    return user


@router.get("", response_model=list[UserView], summary="All users")
async def list_users(session: SessionDep, _: Admin) -> list[UserView]:
    """Every account, by username."""
    return [UserView.model_validate(u) for u in await user_service.list_users(session)]


@router.post(
    "",
    response_model=UserView,
    status_code=status.HTTP_201_CREATED,
    responses={400: {"description": "invalid username or weak password"}, 409: {"description": "username taken"}},
)
async def create_user(body: UserCreate, request: Request, session: SessionDep, admin: Admin) -> UserView:
    """Create an account (audited ``user.created``)."""
    try:
        user = await user_service.create_user(
            session,
            username=body.username,
            password=body.password,
            role=body.role,
            display_name=body.display_name,
            language=body.language,
            actor=admin.username,
            ip=client_ip(request),
        )
    except (user_service.UserError, PasswordPolicyError) as exc:
        raise _refused(exc) from None
    await session.commit()
    return UserView.model_validate(user)


@router.get("/{user_id}", response_model=UserView, responses={404: {"description": "no such user"}})
async def get_user(user_id: UserId, session: SessionDep, _: Admin) -> UserView:
    """One account."""
    return UserView.model_validate(await _load(session, user_id))


@router.patch(
    "/{user_id}",
    response_model=UserView,
    responses={400: {"description": "would leave no active admin"}, 404: {"description": "no such user"}},
)
async def update_user(
    user_id: UserId, body: UserUpdate, request: Request, session: SessionDep, admin: Admin
) -> UserView:
    """Change role, display name or active flag (each change audited; deactivation ends the user's sessions)."""
    user = await _load(session, user_id)
    ip = client_ip(request)
    try:
        if body.display_name is not None:
            await user_service.set_display_name(session, user, body.display_name, actor=admin.username, ip=ip)
        if body.role is not None:
            await user_service.set_role(session, user, body.role, actor=admin.username, ip=ip)
        if body.active is not None:
            await user_service.set_active(session, user, body.active, actor=admin.username, ip=ip)
    except user_service.UserError as exc:
        await session.rollback()
        raise _refused(exc) from None
    await session.commit()
    return UserView.model_validate(user)


@router.post(
    "/{user_id}/password",
    response_model=OkResponse,
    responses={400: {"description": "weak password"}, 404: {"description": "no such user"}},
)
async def reset_password(
    user_id: UserId, body: PasswordReset, request: Request, session: SessionDep, admin: Admin
) -> OkResponse:
    """Set a new password for a user; their sessions end and any lockout is lifted (audited)."""
    user = await _load(session, user_id)
    try:
        await user_service.reset_password(session, user, body.password, actor=admin.username, ip=client_ip(request))
    except PasswordPolicyError as exc:
        raise _refused(exc) from None
    await session.commit()
    return OkResponse()
