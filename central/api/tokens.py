"""Personal API tokens: create (the secret is shown once), list, revoke; admins see and revoke all."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Path, Query, Request, status
from pydantic import BaseModel, ConfigDict, Field

from central.auth import tokens as token_service
from central.auth.deps import Principal, client_ip, require_role
from central.auth.models import ApiToken
from central.auth.roles import Role
from central.auth.users import get_user
from central.deps import SessionDep

router = APIRouter(prefix="/api/v1/tokens", tags=["tokens"])

SignedInUser = Annotated[Principal, Depends(require_role(Role.OBSERVER))]


class TokenView(BaseModel):
    """A token without its secret."""

    id: int
    name: str
    prefix: str = Field(description="first characters of the secret, to recognise it")
    owner: str
    created_at: datetime
    last_used: datetime | None
    expires_at: datetime | None
    revoked: bool
    active: bool

    @classmethod
    def of(cls, row: ApiToken) -> TokenView:
        """Build from a token row."""
        return cls(
            id=row.id,
            name=row.name,
            prefix=row.prefix,
            owner=row.user.username,
            created_at=row.created_at,
            last_used=row.last_used,
            expires_at=row.expires_at,
            revoked=row.revoked,
            active=token_service.token_is_active(row),
        )


class TokenCreate(BaseModel):
    """A new token."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=100, description="what the token is for")
    expires_in_days: int | None = Field(default=None, ge=1, le=3650, description="none: never expires")


class TokenCreated(TokenView):
    """A new token with its secret: shown only in this response."""

    token: str = Field(description="send as 'Authorization: Bearer <token>'; it cannot be shown again")


@router.post(
    "",
    response_model=TokenCreated,
    status_code=status.HTTP_201_CREATED,
    responses={403: {"description": "tokens are created from a signed-in session"}},
)
async def create_token(
    body: TokenCreate, request: Request, session: SessionDep, principal: SignedInUser
) -> TokenCreated:
    """Issue a personal token carrying the owner's role (audited ``token.created``)."""
    if principal.via != "session":
        raise HTTPException(status.HTTP_403_FORBIDDEN, "create tokens from a signed-in session, not with a token")
    user = await get_user(session, principal.user_id)
    if user is None:
        raise HTTPException(status.HTTP_401_UNAUTHORIZED, "no such user", headers={"WWW-Authenticate": "Bearer"})
    expires = timedelta(days=body.expires_in_days) if body.expires_in_days else None
    try:
        secret, row = await token_service.create_token(
            session, user, name=body.name.strip() or "token", expires_in=expires, ip=client_ip(request)
        )
    except token_service.TokenLimitError as exc:
        raise HTTPException(status.HTTP_400_BAD_REQUEST, str(exc)) from None
    await session.commit()
    return TokenCreated(**TokenView.of(row).model_dump(), token=secret)


@router.get("", response_model=list[TokenView], summary="Your tokens (admins: everybody's with all=true)")
async def list_tokens(
    session: SessionDep,
    principal: SignedInUser,
    all_users: Annotated[bool, Query(alias="all", description="admins only: every user's tokens")] = False,
) -> list[TokenView]:
    """Tokens, newest first, revoked ones included."""
    if all_users and not principal.role.allows(Role.ADMIN):
        raise HTTPException(status.HTTP_403_FORBIDDEN, "needs the admin role")
    rows = await token_service.list_tokens(session, user_id=None if all_users else principal.user_id)
    return [TokenView.of(r) for r in rows]


@router.delete("/{token_id}", response_model=TokenView, responses={404: {"description": "no such token"}})
async def revoke_token(
    token_id: Annotated[int, Path(ge=1)], request: Request, session: SessionDep, principal: SignedInUser
) -> TokenView:
    """Revoke a token of yours (admins: anyone's); it stops working at once (audited ``token.revoked``)."""
    row = await token_service.get_token(session, token_id)
    if row is None or (row.user_id != principal.user_id and not principal.role.allows(Role.ADMIN)):
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no token {token_id}")
    await token_service.revoke_token(session, row, actor=principal.username, ip=client_ip(request))
    await session.commit()
    return TokenView.of(row)
