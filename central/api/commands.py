"""Command API: send signed commands to nodes and read their results (operator and up)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Path, Request, status

from central.api.schemas import CommandRequest, CommandView
from central.auth.deps import Principal, require_role
from central.auth.roles import Role
from central.commands import CommandError
from central.deps import SessionDep, get_services
from central.services import Services
from central.store import queries
from central.store.fleet_models import CommandRecord
from varta.contract import ID_PATTERN

router = APIRouter(prefix="/api/v1", tags=["commands"])

NodeId = Annotated[str, Path(pattern=ID_PATTERN)]
Operator = Annotated[Principal, Depends(require_role(Role.OPERATOR))]


@router.post(
    "/nodes/{node_id}/commands",
    response_model=CommandView,
    status_code=status.HTTP_202_ACCEPTED,
    responses={404: {"description": "unknown node"}, 503: {"description": "broker unavailable"}},
)
async def send_command(
    node_id: NodeId,
    body: CommandRequest,
    request: Request,
    session: SessionDep,
    principal: Operator,
    services: Annotated[Services, Depends(get_services)],
) -> CommandView:
    """Sign and send a command; poll ``GET /api/v1/commands/{request_id}`` (or watch SSE) for the result."""
    if services.commands is None:
        raise HTTPException(503, "commands are not available (no broker connection configured)")
    try:
        return await services.commands.send(
            session,
            node_id=node_id,
            command=body.command,
            params=body.params,
            issued_by=principal.username,
            ttl_s=body.ttl_s,
            ip=request.client.host if request.client else None,
        )
    except CommandError as exc:
        raise HTTPException(exc.status, exc.detail) from None


@router.get("/nodes/{node_id}/commands", response_model=list[CommandView])
async def list_node_commands(node_id: NodeId, session: SessionDep, _: Operator) -> list[CommandView]:
    """Commands sent to a node, newest first."""
    return await queries.node_commands(session, node_id)


@router.get("/commands/{request_id}", response_model=CommandView, responses={404: {"description": "unknown"}})
async def get_command(
    request_id: Annotated[str, Path(max_length=64, pattern=r"^[A-Za-z0-9_-]+$")],
    session: SessionDep,
    _: Operator,
) -> CommandView:
    """One command and its result."""
    record = await session.get(CommandRecord, request_id)
    if record is None:
        raise HTTPException(404, "unknown command")
    return CommandView.model_validate(record)
