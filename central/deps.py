"""FastAPI dependencies shared by routers: the service container and database sessions."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Annotated

from fastapi import Depends, Request
from sqlalchemy.ext.asyncio import AsyncSession

if TYPE_CHECKING:
    from central.services import Services


def get_services(request: Request) -> Services:
    """The app's service container (set by :func:`central.app.create_app`)."""
    services: Services = request.app.state.services
    return services


async def get_session(request: Request) -> AsyncIterator[AsyncSession]:
    """A database session for one request."""
    async with get_services(request).db.session() as session:
        yield session


SessionDep = Annotated[AsyncSession, Depends(get_session)]
