"""Liveness and ingest statistics."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from sqlalchemy import text

from central.api.schemas import IngestStats
from central.auth.deps import require_role
from central.auth.roles import Role
from central.deps import get_services
from central.services import Services
from varta import __version__

router = APIRouter(tags=["system"])


class Healthz(BaseModel):
    """Liveness of this central instance."""

    status: str
    version: str
    database: bool
    mqtt_connected: bool


@router.get("/healthz", response_model=Healthz, summary="Liveness (public)")
async def healthz(services: Annotated[Services, Depends(get_services)]) -> JSONResponse:
    """200 when the database answers, 503 otherwise; says whether the broker is connected."""
    database = True
    try:
        async with services.db.session() as session:
            await session.execute(text("SELECT 1"))
    except Exception:
        database = False
    mqtt = (
        services.ingest is not None
        and services.ingest.mqtt.connected.is_set()
        and (services.commands is None or services.commands.mqtt.connected.is_set())
    )
    body = Healthz(status="ok" if database else "degraded", version=__version__, database=database, mqtt_connected=mqtt)
    return JSONResponse(body.model_dump(), status_code=200 if database else 503)


@router.get(
    "/api/v1/system/ingest",
    response_model=IngestStats,
    dependencies=[Depends(require_role(Role.OPERATOR))],
    responses={503: {"description": "ingest not running"}},
)
async def ingest_stats(services: Annotated[Services, Depends(get_services)]) -> IngestStats | JSONResponse:
    """Counters of the MQTT ingest: received, stored, duplicates, rejected by reason, gaps."""
    if services.ingest is None:
        return JSONResponse({"detail": "ingest not running"}, status_code=503)
    return services.ingest.stats()
