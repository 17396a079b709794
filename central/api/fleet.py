"""Fleet read API: sites, nodes, health history, events, sequence gaps (dispatcher and up)."""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Path, Query

from central.api.schemas import EventView, HealthPoint, NodeView, SeqGapView, SiteView
from central.auth.deps import require_role
from central.auth.roles import Role
from central.deps import SessionDep
from central.store import queries
from varta.contract import ID_PATTERN, utcnow

router = APIRouter(prefix="/api/v1", tags=["fleet"], dependencies=[Depends(require_role(Role.OBSERVER))])

NodeId = Annotated[str, Path(pattern=ID_PATTERN, description="node id")]


@router.get("/sites", response_model=list[SiteView], summary="Sites with their nodes, troubled sites first")
async def list_sites(session: SessionDep) -> list[SiteView]:
    """Every site with its nodes and online/offline counts."""
    return await queries.fleet(session)


@router.get("/nodes", response_model=list[NodeView], summary="All nodes, offline first")
async def list_nodes(
    session: SessionDep, site: Annotated[str | None, Query(pattern=ID_PATTERN)] = None
) -> list[NodeView]:
    """Nodes with status, last health and devices."""
    return await queries.list_nodes(session, site=site)


@router.get("/nodes/{node_id}", response_model=NodeView, responses={404: {"description": "unknown node"}})
async def get_node(node_id: NodeId, session: SessionDep) -> NodeView:
    """One node."""
    view = await queries.node_detail(session, node_id)
    if view is None:
        raise HTTPException(404, f"unknown node {node_id}")
    return view


@router.get("/nodes/{node_id}/health", response_model=list[HealthPoint])
async def get_health(
    node_id: NodeId, session: SessionDep, hours: Annotated[float, Query(gt=0, le=24 * 31)] = 24.0
) -> list[HealthPoint]:
    """Health samples of the last *hours*, oldest first."""
    return await queries.health_history(session, node_id, utcnow() - timedelta(hours=hours))


@router.get("/nodes/{node_id}/events", response_model=list[EventView])
async def get_node_events(
    node_id: NodeId,
    session: SessionDep,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    before_id: Annotated[int | None, Query(ge=1)] = None,
) -> list[EventView]:
    """A node's events, newest first; page with ``before_id``."""
    return await queries.node_events(session, node_id, limit=limit, before_id=before_id)


@router.get("/nodes/{node_id}/gaps", response_model=list[SeqGapView])
async def get_node_gaps(node_id: NodeId, session: SessionDep) -> list[SeqGapView]:
    """Runs of messages the node sent that central never received."""
    return await queries.seq_gaps(session, node_id)


@router.get("/events", response_model=list[EventView])
async def list_events(
    session: SessionDep,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    before_id: Annotated[int | None, Query(ge=1)] = None,
) -> list[EventView]:
    """The whole fleet's event log, newest first."""
    return await queries.node_events(session, None, limit=limit, before_id=before_id)
