"""Camera pages: the camera wall, one camera (picture, health history, events, PTZ) and the discovery inbox.

The pages are rendered on the server and kept current over SSE (``camera`` events); actions (PTZ, snapshot,
adopt, ignore) are small ``fetch`` calls to the camera API (``central.api.cameras``), which checks the roles again.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Annotated, Final

from fastapi import APIRouter, Depends, Path, Query, Request, Response
from fastapi.responses import HTMLResponse

from central.api.camera_schemas import CameraView, StatusChange
from central.auth.deps import Principal, require_page_role
from central.auth.roles import Role
from central.dashboard.i18n import CAMERA_REASON_KEYS, JS_MESSAGES
from central.dashboard.routes import PageNotFound, PageRoute, _context, _viewer
from central.dashboard.templating import templates
from central.deps import SessionDep
from central.store import camera_queries, live_queries, queries
from central.store.fleet_models import Node
from varta.contract import ID_PATTERN, utcnow

router = APIRouter(route_class=PageRoute, include_in_schema=False)

Dispatcher = Annotated[Principal, Depends(require_page_role(Role.DISPATCHER))]
Operator = Annotated[Principal, Depends(require_page_role(Role.OPERATOR))]
Admin = Annotated[Principal, Depends(require_page_role(Role.ADMIN))]

HISTORY: Final = timedelta(hours=24)
#: A picture older than this is shown as stale on the wall (periodic thumbnails come every 5 min by default).
STALE_PICTURE_S: Final = 15 * 60
EVENTS_SHOWN: Final = 50

#: reason code → msgid, for templates (``_(camera_reasons[code])``).
CAMERA_REASONS: Final = {code: JS_MESSAGES[key] for code, key in CAMERA_REASON_KEYS.items()}


@dataclass(frozen=True, slots=True)
class Segment:
    """One stretch of the health timeline: a status from ``start`` to ``end`` (percentages of the bar)."""

    status: str
    reason: str | None
    start: datetime
    end: datetime
    left: float
    width: float


def timeline(changes: list[StatusChange], before: StatusChange | None, start: datetime, end: datetime) -> list[Segment]:
    """The health bar of the last 24 h: each status as a stretch; unknown before the first known change."""
    span = (end - start).total_seconds()
    points: list[tuple[datetime, str, str | None]] = []
    if before is not None:
        points.append((start, before.status, before.reason))
    points.extend((max(c.ts, start), c.status, c.reason) for c in changes if c.ts <= end)
    if not points or points[0][0] > start:
        points.insert(0, (start, "unknown", None))
    segments: list[Segment] = []
    for i, (since, status, reason) in enumerate(points):
        until = points[i + 1][0] if i + 1 < len(points) else end
        if until <= since:
            continue
        left = (since - start).total_seconds() / span * 100
        width = (until - since).total_seconds() / span * 100
        segments.append(Segment(status, reason, since, until, round(left, 3), round(width, 3)))
    return segments


def _counts(cameras: list[CameraView]) -> dict[str, int]:
    counts = Counter(c.status for c in cameras)
    return {s: counts.get(s, 0) for s in ("offline", "degraded", "online", "unknown")}


@router.get("/cameras", response_class=HTMLResponse)
async def wall_page(
    request: Request,
    session: SessionDep,
    principal: Dispatcher,
    site: Annotated[str | None, Query(pattern=ID_PATTERN)] = None,
) -> Response:
    """The camera wall: every camera's latest picture, status and reason; what is down comes first."""
    viewer, language, _ = await _viewer(session, request, principal)
    everything = await camera_queries.list_cameras(session)
    sites = sorted({c.site for c in everything})
    cameras = [c for c in everything if site is None or c.site == site]
    page_data = {"site": site, "stale_after_s": STALE_PICTURE_S}
    ctx = _context(
        request,
        language,
        viewer,
        "cameras",
        live=True,
        cameras=cameras,
        counts=_counts(cameras),
        sites=sites,
        site=site,
        camera_reasons=CAMERA_REASONS,
        stale_after_s=STALE_PICTURE_S,
        now=utcnow(),
        page_data=page_data,
    )
    return templates().response("cameras.html", ctx, language=language)


@router.get("/cameras/discovery", response_class=HTMLResponse)
async def discovery_page(request: Request, session: SessionDep, principal: Operator) -> Response:
    """Devices the nodes found: adopt (name, site, position, login) or ignore."""
    viewer, language, _ = await _viewer(session, request, principal)
    items = await camera_queries.discovered(session)
    nodes = {n.node_id: n for n in await queries.list_nodes(session)}
    by_node: dict[str, list[object]] = defaultdict(list)
    for item in items:
        by_node[item.node_id].append(item)
    ctx = _context(
        request,
        language,
        viewer,
        "discovery",
        live=True,
        by_node=dict(sorted(by_node.items())),
        nodes=nodes,
        new_count=sum(1 for i in items if i.state == "new"),
        page_data={},
    )
    return templates().response("discovery.html", ctx, language=language)


@router.get("/cameras/{node_id}/{device_id}", response_class=HTMLResponse)
async def camera_page(
    request: Request,
    session: SessionDep,
    principal: Dispatcher,
    node_id: Annotated[str, Path(pattern=ID_PATTERN)],
    device_id: Annotated[str, Path(pattern=ID_PATTERN)],
) -> Response:
    """One camera: the big picture, status and reason, 24 h health timeline, events, PTZ pad and presets."""
    viewer, language, _ = await _viewer(session, request, principal)
    camera = await camera_queries.camera_detail_of(session, node_id, device_id)
    if camera is None:
        raise PageNotFound(f"unknown camera {node_id}/{device_id}")
    end = utcnow()
    start = end - HISTORY
    changes = await camera_queries.status_history(session, node_id, device_id, since=start)
    earlier = await camera_queries.status_history(session, node_id, device_id, since=end - timedelta(days=31))
    before = next((c for c in reversed(earlier) if c.ts < start), None)
    events = await camera_queries.camera_events(session, node_id, device_id, limit=EVENTS_SHOWN)
    node = await session.get(Node, node_id)
    page_data = {"node_id": node_id, "device_id": device_id, "max_events": EVENTS_SHOWN}
    ctx = _context(
        request,
        language,
        viewer,
        "camera",
        live=True,
        camera=camera,
        info=camera.info,
        node_name=(node.name if node is not None else "") or node_id,
        segments=timeline(changes, before, start, end),
        changes=list(reversed(changes)),
        events=events,
        camera_reasons=CAMERA_REASONS,
        page_data=page_data,
    )
    return templates().response("camera.html", ctx, language=language)


#: Live-end reason code → msgid (the same words the player shows).
LIVE_END_REASONS: Final = {
    key.removeprefix("live_end_"): msgid for key, msgid in JS_MESSAGES.items() if key.startswith("live_end_")
}


@router.get("/admin/live", response_class=HTMLResponse)
async def live_sessions_page(
    request: Request,
    session: SessionDep,
    principal: Admin,
    user: Annotated[str | None, Query(max_length=64)] = None,
) -> Response:
    """Who watched which camera live, when and for how long; open views first."""
    viewer, language, _ = await _viewer(session, request, principal)
    now = utcnow()
    rows = await live_queries.list_sessions(session, username=user or None, limit=500, now=now)
    ctx = _context(
        request,
        language,
        viewer,
        "live_sessions",
        sessions=rows,
        open_count=sum(1 for r in rows if r.ended_at is None),
        user=user or "",
        end_reasons=LIVE_END_REASONS,
        now=now,
    )
    return templates().response("admin_live.html", ctx, language=language)
