"""Server-sent events: live state changes for the dashboard (observer and up; no pictures travel here)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated

import orjson
from fastapi import APIRouter, Depends, Request
from fastapi.responses import StreamingResponse

from central.auth.deps import require_role
from central.auth.roles import Role
from central.bus import Bus
from central.deps import get_services
from central.services import Services
from varta.aio import wait_for

router = APIRouter(prefix="/api/v1", tags=["stream"])

KEEPALIVE_S = 15.0


async def sse_events(bus: Bus, request: Request, keepalive_s: float = KEEPALIVE_S) -> AsyncIterator[bytes]:
    """Encode bus events as SSE frames, with a keepalive comment when idle; ends when the client goes."""
    yield b"retry: 2000\n: connected\n\n"
    async with bus.subscribe() as events:
        iterator = aiter(events)
        while True:
            try:
                event = await wait_for(anext(iterator), keepalive_s)
            except TimeoutError:
                if await request.is_disconnected():
                    return
                yield b": keepalive\n\n"
                continue
            except StopAsyncIteration:
                return  # fell behind: the client reconnects and reloads state
            yield b"event: " + event.kind.encode() + b"\ndata: " + orjson.dumps(event.data) + b"\n\n"


@router.get(
    "/stream",
    summary="Live changes (text/event-stream)",
    response_class=StreamingResponse,
    dependencies=[Depends(require_role(Role.OBSERVER))],
    responses={
        200: {
            "content": {"text/event-stream": {}},
            "description": (
                "events: node, health, event, device, command_result, camera, discovery, live_ended, alert, incident"
            ),
        }
    },
)
async def stream(request: Request, services: Annotated[Services, Depends(get_services)]) -> StreamingResponse:
    """Live events: ``node``, ``health``, ``event``, ``device``, ``command_result``, ``camera``, ``discovery``,
    ``live_ended``, ``alert`` (official alert periods) and ``incident``."""
    return StreamingResponse(
        sse_events(services.bus, request),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
    )
