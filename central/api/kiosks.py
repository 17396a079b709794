"""Kiosk content API: the asset library, playlists, schedules and groups (operator and up), publishing signed
manifests to kiosks (operator), the kiosks' state and a preview of what they would show (observer and up).

Two routes are public on purpose: ``GET /content/{sha256}`` and ``GET /manifests/{node_id}/{version}``. Nodes
fetch them without credentials; what they serve is shown on public screens anyway, and a node uses nothing that
does not match central's signature (the manifest) or the hash the manifest lists (every asset).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Annotated, Any

import structlog
from fastapi import APIRouter, Depends, HTTPException, Path, Query, Request, Response, status
from fastapi.responses import FileResponse
from pydantic import ValidationError
from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession

from central.api.kiosk_schemas import (
    AssetView,
    DefaultPlaylistRequest,
    EventBrief,
    GroupRequest,
    GroupView,
    KioskSettingView,
    KioskView,
    PlaylistRequest,
    PlaylistView,
    PreviewItem,
    PreviewPlaylist,
    PreviewView,
    PublishReport,
    PublishResultView,
    Refusal,
    ScheduleRequest,
    ScheduleView,
)
from central.auth import audit
from central.auth.deps import Principal, client_ip, require_role
from central.auth.roles import Role
from central.deps import SessionDep, get_services
from central.kiosks import publish
from central.kiosks.library import ContentLibrary, UploadRefused, record_asset
from central.kiosks.publish import KioskPublisher, ManifestBuildError, PublishStatus
from central.services import Services
from central.store.fleet_models import EventRecord, Node
from central.store.kiosk_models import (
    KioskAsset,
    KioskGroupMember,
    KioskManifest,
    KioskPlaylist,
    KioskSchedule,
    KioskSetting,
)
from varta.contract import ID_PATTERN, utcnow
from varta.kiosk_manifest import (
    Manifest,
    Playlist,
    Schedule,
    TimeWindow,
    active_playlist,
    active_schedule,
    next_change,
)

log = structlog.get_logger(__name__)

PREFIX = "/api/v1/kiosk"
IMMUTABLE = "public, max-age=31536000, immutable"

router = APIRouter(prefix=PREFIX, tags=["kiosks"])

Observer = Annotated[Principal, Depends(require_role(Role.OBSERVER))]
Operator = Annotated[Principal, Depends(require_role(Role.OPERATOR))]
ServicesDep = Annotated[Services, Depends(get_services)]
Sha256 = Annotated[str, Path(pattern=r"^[0-9a-f]{64}$", description="the asset's sha256")]
PlaylistId = Annotated[str, Path(pattern=ID_PATTERN, description="playlist id")]
NodeId = Annotated[str, Path(pattern=ID_PATTERN, description="the kiosk's node id")]
GroupName = Annotated[str, Path(pattern=ID_PATTERN, description="group name")]
REFUSED: dict[int | str, dict[str, Any]] = {422: {"description": "refused, with a reason code", "model": Refusal}}
IN_USE: dict[int | str, dict[str, Any]] = {
    404: {"description": "not found"},
    409: {"description": "still in use", "model": Refusal},
}
UPLOAD_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": ["file"],
                    "properties": {
                        "file": {
                            "type": "string",
                            "format": "binary",
                            "description": "PNG, JPEG, WebP, MP4, WebM, ZIP",
                        },
                        "name": {"type": "string", "maxLength": 200, "description": "default: the file's name"},
                    },
                }
            }
        },
    }
}


# --------------------------------------------------------------------------------------------------- helpers


def get_library(request: Request) -> ContentLibrary:
    """The app's content library (created on first use under ``<data_dir>/kiosk``)."""
    library = getattr(request.app.state, "kiosk_library", None)
    if not isinstance(library, ContentLibrary):
        library = ContentLibrary(get_services(request).config.data_dir / "kiosk")
        request.app.state.kiosk_library = library
    return library


def get_publisher(request: Request) -> KioskPublisher:
    """The app's publisher (one per process: it serialises publishing)."""
    publisher = getattr(request.app.state, "kiosk_publisher", None)
    if not isinstance(publisher, KioskPublisher):
        services = get_services(request)
        publisher = KioskPublisher(services.config, services.db)
        request.app.state.kiosk_publisher = publisher
    return publisher


LibraryDep = Annotated[ContentLibrary, Depends(get_library)]
PublisherDep = Annotated[KioskPublisher, Depends(get_publisher)]


def refusal(code: int, reason: str, message: str, kind: str | None = None) -> HTTPException:
    """An HTTP error whose ``detail`` is a :class:`Refusal`."""
    return HTTPException(code, Refusal(reason=reason, message=message, kind=kind).model_dump())


def invalid(exc: ValidationError) -> HTTPException:
    """422 for content a node would refuse (the first few problems, without the input)."""
    problems = [
        f"{'.'.join(str(p) for p in e['loc']) or 'value'}: {e['msg']}" for e in exc.errors(include_input=False)[:5]
    ]
    return refusal(422, "invalid", "; ".join(problems)[:1000])


def asset_view(row: KioskAsset, *, already_stored: bool = False) -> AssetView:
    """The API view of an asset row."""
    return AssetView(
        sha256=row.sha256,
        kind=row.kind,
        mime=row.mime,
        name=row.name,
        size=row.size,
        uploaded_at=row.uploaded_at,
        uploaded_by=row.uploaded_by,
        info=row.info,
        url=f"{PREFIX}/content/{row.sha256}",
        already_stored=already_stored,
    )


def schedule_view(row: KioskSchedule) -> ScheduleView:
    """The API view of a schedule row."""
    return ScheduleView(
        id=row.id,
        playlist_id=row.playlist_id,
        target=row.target_kind,
        node_id=row.target if row.target_kind == "kiosk" else None,
        group=row.target if row.target_kind == "group" else None,
        priority=row.priority,
        start_date=row.start_date,
        end_date=row.end_date,
        weekdays=list(row.weekdays),
        windows=[TimeWindow.model_validate(w) for w in row.windows],
        created_at=row.created_at,
        created_by=row.created_by,
    )


def playlist_view(row: KioskPlaylist) -> PlaylistView:
    """The API view of a playlist row."""
    return PlaylistView.model_validate(
        {"id": row.id, "name": row.name, "items": row.items, "updated_at": row.updated_at, "updated_by": row.updated_by}
    )


async def _playlist_users(session: AsyncSession, playlist_id: str) -> tuple[list[int], list[str]]:
    schedules = await session.scalars(select(KioskSchedule.id).where(KioskSchedule.playlist_id == playlist_id))
    defaults = await session.scalars(
        select(KioskSetting.node_id).where(KioskSetting.default_playlist_id == playlist_id)
    )
    return list(schedules.all()), list(defaults.all())


async def _unknown_nodes(session: AsyncSession, node_ids: Sequence[str]) -> list[str]:
    known = set((await session.scalars(select(Node.node_id).where(Node.node_id.in_(list(node_ids))))).all())
    return [n for n in node_ids if n not in known]


def _brief(event: EventRecord | None) -> EventBrief | None:
    return EventBrief(ts=event.ts, message=event.message, data=event.data) if event is not None else None


# --------------------------------------------------------------------------------------------------- assets


@router.post(
    "/assets",
    response_model=AssetView,
    status_code=status.HTTP_201_CREATED,
    openapi_extra=UPLOAD_BODY,
    responses={200: {"description": "the same bytes were already in the library", "model": AssetView}, **REFUSED},
)
async def upload_asset(
    request: Request, response: Response, session: SessionDep, principal: Operator, library: LibraryDep
) -> AssetView:
    """Upload an image, video or HTML bundle (``multipart/form-data``: ``file``, optional ``name``).

    The type comes from the file's first bytes, never from its name or the declared type; SVG is refused.
    Stored by sha256: uploading the same bytes again answers 200 with the asset already there.
    """
    try:
        upload = await library.receive(
            request.headers.get("content-type", ""), request.headers.get("content-length"), request.stream()
        )
    except UploadRefused as exc:
        await audit.record(
            session,
            actor=principal.username,
            action="kiosk.asset_refused",
            detail={"reason": exc.reason, "kind": exc.kind},
            ip=client_ip(request),
            success=False,
        )
        await session.commit()
        raise refusal(422, exc.reason, exc.detail, exc.kind) from None
    row, created = await record_asset(session, upload, principal.username)
    if created:
        await audit.record(
            session,
            actor=principal.username,
            action="kiosk.asset_uploaded",
            target=row.sha256,
            detail={"kind": row.kind, "mime": row.mime, "size": row.size, "name": row.name},
            ip=client_ip(request),
        )
        await session.commit()
    else:
        response.status_code = status.HTTP_200_OK
    return asset_view(row, already_stored=not created)


@router.get("/assets", response_model=list[AssetView])
async def list_assets(session: SessionDep, _: Operator) -> list[AssetView]:
    """The library, newest first."""
    rows = await session.scalars(select(KioskAsset).order_by(KioskAsset.uploaded_at.desc(), KioskAsset.sha256))
    return [asset_view(r) for r in rows.all()]


@router.delete("/assets/{sha256}", status_code=status.HTTP_204_NO_CONTENT, responses=IN_USE)
async def delete_asset(
    sha256: Sha256, request: Request, session: SessionDep, principal: Operator, library: LibraryDep
) -> Response:
    """Remove an asset no playlist uses and no kiosk's newest manifest lists (publish first)."""
    row = await session.get(KioskAsset, sha256)
    if row is None:
        raise HTTPException(404, f"no asset {sha256}")
    playlists = [
        p.id
        for p in (await session.scalars(select(KioskPlaylist).order_by(KioskPlaylist.id))).all()
        if any(item.get("asset") == sha256 for item in p.items)
    ]
    if playlists:
        raise refusal(409, "in_use", f"playlists {', '.join(playlists)} use this asset: remove it from them first")
    kiosks = sorted(
        node_id
        for node_id, manifest in (await publish.latest_manifests(session)).items()
        if sha256 in publish.manifest_assets(manifest.signed)
    )
    if kiosks:
        raise refusal(409, "published", f"kiosks {', '.join(kiosks[:20])} still play this asset: publish to them first")
    await audit.record(
        session,
        actor=principal.username,
        action="kiosk.asset_deleted",
        target=sha256,
        detail={"name": row.name, "kind": row.kind},
        ip=client_ip(request),
    )
    await session.delete(row)
    await session.commit()
    await library.remove(sha256)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


# --------------------------------------------------------------------------------------------------- playlists


@router.get("/playlists", response_model=list[PlaylistView])
async def list_playlists(session: SessionDep, _: Operator) -> list[PlaylistView]:
    """Every playlist, by id."""
    rows = await session.scalars(select(KioskPlaylist).order_by(KioskPlaylist.id))
    return [playlist_view(r) for r in rows.all()]


@router.get("/playlists/{playlist_id}", response_model=PlaylistView, responses={404: {"description": "not found"}})
async def get_playlist(playlist_id: PlaylistId, session: SessionDep, _: Operator) -> PlaylistView:
    """One playlist."""
    row = await session.get(KioskPlaylist, playlist_id)
    if row is None:
        raise HTTPException(404, f"no playlist {playlist_id}")
    return playlist_view(row)


@router.put("/playlists/{playlist_id}", response_model=PlaylistView, responses=REFUSED)
async def save_playlist(
    playlist_id: PlaylistId, body: PlaylistRequest, request: Request, session: SessionDep, principal: Operator
) -> PlaylistView:
    """Create or replace a playlist. Assets must be in the library; images and bundles need ``duration_s``."""
    shas = sorted({item.asset for item in body.items if item.asset is not None})
    rows = list((await session.scalars(select(KioskAsset).where(KioskAsset.sha256.in_(shas)))).all()) if shas else []
    missing = sorted(set(shas) - {r.sha256 for r in rows})
    if missing:
        raise refusal(422, "unknown_asset", f"not in the library: {', '.join(missing[:10])}")
    try:
        playlist = Playlist(id=playlist_id, name=body.name, items=tuple(body.items))
        Manifest(  # the cross-checks a node makes (durations per asset kind, …)
            version=1,
            issued_at=utcnow(),
            kiosk_ids=("validation",),
            assets=tuple(publish.asset_model(r) for r in rows),
            playlists=(playlist,),
        )
    except ValidationError as exc:
        raise invalid(exc) from None
    row = await session.get(KioskPlaylist, playlist_id)
    created = row is None
    if row is None:
        row = KioskPlaylist(id=playlist_id)
        session.add(row)
    row.name = playlist.name
    row.items = [item.model_dump(mode="json", exclude_none=True) for item in playlist.items]
    row.updated_at = utcnow()
    row.updated_by = principal.username
    await audit.record(
        session,
        actor=principal.username,
        action="kiosk.playlist_saved",
        target=playlist_id,
        detail={"items": len(playlist.items), "created": created},
        ip=client_ip(request),
    )
    await session.commit()
    return playlist_view(row)


@router.delete("/playlists/{playlist_id}", status_code=status.HTTP_204_NO_CONTENT, responses=IN_USE)
async def delete_playlist(
    playlist_id: PlaylistId, request: Request, session: SessionDep, principal: Operator
) -> Response:
    """Remove a playlist no schedule uses and no kiosk has as its default."""
    row = await session.get(KioskPlaylist, playlist_id)
    if row is None:
        raise HTTPException(404, f"no playlist {playlist_id}")
    schedules, defaults = await _playlist_users(session, playlist_id)
    if schedules or defaults:
        users = [f"schedule {s}" for s in schedules] + [f"default of {n}" for n in defaults]
        raise refusal(409, "in_use", f"still used: {', '.join(users[:20])}")
    await audit.record(
        session, actor=principal.username, action="kiosk.playlist_deleted", target=playlist_id, ip=client_ip(request)
    )
    await session.delete(row)
    await session.commit()
    return Response(status_code=status.HTTP_204_NO_CONTENT)


# --------------------------------------------------------------------------------------------------- schedules


@router.get("/schedules", response_model=list[ScheduleView])
async def list_schedules(session: SessionDep, _: Operator) -> list[ScheduleView]:
    """Every schedule, oldest first."""
    rows = await session.scalars(select(KioskSchedule).order_by(KioskSchedule.id))
    return [schedule_view(r) for r in rows.all()]


@router.post("/schedules", response_model=ScheduleView, status_code=status.HTTP_201_CREATED, responses=REFUSED)
async def create_schedule(
    body: ScheduleRequest, request: Request, session: SessionDep, principal: Operator
) -> ScheduleView:
    """Play a playlist on one kiosk, a group or all kiosks, on some days, in some local-time windows."""
    if await session.get(KioskPlaylist, body.playlist_id) is None:
        raise refusal(422, "unknown_playlist", f"no playlist {body.playlist_id}")
    if body.node_id is not None and await _unknown_nodes(session, [body.node_id]):
        raise refusal(422, "unknown_kiosk", f"no node {body.node_id}")
    try:
        schedule = Schedule(
            playlist_id=body.playlist_id,
            priority=body.priority,
            start_date=body.start_date,
            end_date=body.end_date,
            weekdays=frozenset(body.weekdays),
            windows=tuple(body.windows),
        )
    except ValidationError as exc:
        raise invalid(exc) from None
    row = KioskSchedule(
        playlist_id=schedule.playlist_id,
        target_kind=body.target,
        target=body.node_id or body.group,
        priority=schedule.priority,
        start_date=schedule.start_date,
        end_date=schedule.end_date,
        weekdays=sorted(schedule.weekdays),
        windows=[w.model_dump(mode="json") for w in schedule.windows],
        created_at=utcnow(),
        created_by=principal.username,
    )
    session.add(row)
    await session.flush()
    await audit.record(
        session,
        actor=principal.username,
        action="kiosk.schedule_created",
        target=str(row.id),
        detail={"playlist_id": row.playlist_id, "target": row.target_kind, "to": row.target, "priority": row.priority},
        ip=client_ip(request),
    )
    await session.commit()
    return schedule_view(row)


@router.delete(
    "/schedules/{schedule_id}", status_code=status.HTTP_204_NO_CONTENT, responses={404: {"description": "not found"}}
)
async def delete_schedule(
    schedule_id: Annotated[int, Path(ge=1)], request: Request, session: SessionDep, principal: Operator
) -> Response:
    """Remove a schedule (kiosks keep it until the next publish)."""
    row = await session.get(KioskSchedule, schedule_id)
    if row is None:
        raise HTTPException(404, f"no schedule {schedule_id}")
    await audit.record(
        session,
        actor=principal.username,
        action="kiosk.schedule_deleted",
        target=str(schedule_id),
        detail={"playlist_id": row.playlist_id},
        ip=client_ip(request),
    )
    await session.delete(row)
    await session.commit()
    return Response(status_code=status.HTTP_204_NO_CONTENT)


# --------------------------------------------------------------------------------------------------- groups, kiosks


@router.get("/groups", response_model=list[GroupView])
async def list_groups(session: SessionDep, _: Operator) -> list[GroupView]:
    """Every group and its kiosks."""
    rows = await session.execute(
        select(KioskGroupMember.group_name, KioskGroupMember.node_id).order_by(
            KioskGroupMember.group_name, KioskGroupMember.node_id
        )
    )
    groups: dict[str, list[str]] = {}
    for group, node_id in rows.all():
        groups.setdefault(group, []).append(node_id)
    return [GroupView(group=g, node_ids=ids) for g, ids in groups.items()]


@router.put("/groups/{group}", response_model=GroupView, responses=REFUSED)
async def save_group(
    group: GroupName, body: GroupRequest, request: Request, session: SessionDep, principal: Operator
) -> GroupView:
    """Set the kiosks of a group (replacing its members; an empty list removes the group)."""
    unknown = await _unknown_nodes(session, body.node_ids)
    if unknown:
        raise refusal(422, "unknown_kiosk", f"no such nodes: {', '.join(unknown[:20])}")
    await session.execute(delete(KioskGroupMember).where(KioskGroupMember.group_name == group))
    session.add_all(KioskGroupMember(group_name=group, node_id=n) for n in body.node_ids)
    await audit.record(
        session,
        actor=principal.username,
        action="kiosk.group_saved",
        target=group,
        detail={"node_ids": body.node_ids[:100], "members": len(body.node_ids)},
        ip=client_ip(request),
    )
    await session.commit()
    return GroupView(group=group, node_ids=body.node_ids)


@router.put(
    "/kiosks/{node_id}/default-playlist",
    response_model=KioskSettingView,
    responses={404: {"description": "unknown node"}, **REFUSED},
)
async def set_default_playlist(
    node_id: NodeId, body: DefaultPlaylistRequest, request: Request, session: SessionDep, principal: Operator
) -> KioskSettingView:
    """The playlist a kiosk plays when no schedule applies (null: a blank screen)."""
    if await session.get(Node, node_id) is None:
        raise HTTPException(404, f"unknown node {node_id}")
    if body.playlist_id is not None and await session.get(KioskPlaylist, body.playlist_id) is None:
        raise refusal(422, "unknown_playlist", f"no playlist {body.playlist_id}")
    setting = await session.get(KioskSetting, node_id)
    if setting is None:
        setting = KioskSetting(node_id=node_id)
        session.add(setting)
    setting.default_playlist_id = body.playlist_id
    setting.updated_at = utcnow()
    setting.updated_by = principal.username
    await audit.record(
        session,
        actor=principal.username,
        action="kiosk.default_playlist_set",
        target=node_id,
        detail={"playlist_id": body.playlist_id},
        ip=client_ip(request),
    )
    await session.commit()
    return KioskSettingView(node_id=node_id, default_playlist_id=body.playlist_id)


@router.get("/kiosks", response_model=list[KioskView])
async def list_kiosks(session: SessionDep, _: Observer) -> list[KioskView]:
    """Every kiosk: its device's state, groups, the version published and the one it confirmed, its last proof
    of an alert on screen and its last refused content."""
    kiosks = await publish.list_kiosks(session)
    ids = [k.node.node_id for k in kiosks]
    groups = await publish.groups_of(session, ids)
    settings = {
        s.node_id: s for s in (await session.scalars(select(KioskSetting).where(KioskSetting.node_id.in_(ids)))).all()
    }
    latest = await publish.latest_manifests(session, ids)
    events = await publish.latest_events(
        session, ids, [publish.INSTALLED_EVENT, publish.TAKEOVER_EVENT, publish.REFUSED_EVENT]
    )
    views = []
    for kiosk in kiosks:
        node, device = kiosk.node, kiosk.device
        manifest = latest.get(node.node_id)
        installed = events.get((node.node_id, publish.INSTALLED_EVENT))
        setting = settings.get(node.node_id)
        views.append(
            KioskView(
                node_id=node.node_id,
                name=node.name,
                site=node.site,
                online=node.online,
                device_id=device.device_id if device else None,
                status=device.status if device else "unknown",
                reason=device.reason if device else None,
                detail=device.detail if device else "",
                status_since=device.status_since if device else None,
                groups=groups.get(node.node_id, []),
                default_playlist_id=setting.default_playlist_id if setting else None,
                published_version=manifest.version if manifest else None,
                published_at=manifest.issued_at if manifest else None,
                sent_at=manifest.sent_at if manifest else None,
                confirmed_version=publish.confirmed_version(installed),
                confirmed_at=installed.ts if installed else None,
                last_takeover=_brief(events.get((node.node_id, publish.TAKEOVER_EVENT))),
                last_refusal=_brief(events.get((node.node_id, publish.REFUSED_EVENT))),
            )
        )
    return views


@router.get(
    "/preview",
    response_model=PreviewView,
    responses={404: {"description": "unknown node"}, 409: {"description": "the library is inconsistent"}},
)
async def preview(
    session: SessionDep,
    _: Observer,
    node_id: Annotated[str, Query(pattern=ID_PATTERN)],
    at: Annotated[datetime | None, Query(description="ISO date-time with a UTC offset (default: now)")] = None,
) -> PreviewView:
    """What the kiosk would play at *at* with the manifest that would be published now, and when that changes."""
    if await session.get(Node, node_id) is None:
        raise HTTPException(404, f"unknown node {node_id}")
    when = at or utcnow()
    if when.tzinfo is None or when.utcoffset() is None:
        raise refusal(422, "naive_time", "'at' needs a UTC offset, e.g. 2026-05-04T09:30:00+03:00")
    try:
        built = await publish.build_manifest(session, node_id)
    except ManifestBuildError as exc:
        raise refusal(409, "invalid_library", str(exc)) from None
    manifest = built.manifest
    schedule = active_schedule(manifest, when)
    playlist = active_playlist(manifest, when)
    schedule_id = next(
        (sid for s, sid in zip(manifest.schedules, built.schedule_ids, strict=True) if s is schedule), None
    )
    shown = None
    if playlist is not None:
        items = []
        for item in playlist.items:
            asset = manifest.asset(item.asset) if item.asset else None
            items.append(
                PreviewItem(
                    **item.model_dump(),
                    kind=asset.kind if asset else "web",
                    name=asset.name if asset else item.url,
                )
            )
        shown = PreviewPlaylist(id=playlist.id, name=playlist.name, items=items)
    return PreviewView(
        node_id=node_id,
        at=when,
        timezone=manifest.timezone,
        local_time=when.astimezone(manifest.zone),
        source="schedule" if schedule is not None else ("default" if playlist is not None else "blank"),
        schedule_id=schedule_id,
        playlist=shown,
        next_change=next_change(manifest, when),
    )


@router.post(
    "/publish",
    response_model=PublishReport,
    responses={404: {"description": "not a kiosk"}, 503: {"description": "commands are not available"}},
)
async def publish_content(
    request: Request,
    session: SessionDep,
    principal: Operator,
    services: ServicesDep,
    publisher: PublisherDep,
    node_id: Annotated[str | None, Query(pattern=ID_PATTERN, description="one kiosk (default: all)")] = None,
    force: Annotated[bool, Query(description="issue a new version even when the content did not change")] = False,
) -> PublishReport:
    """Sign and send each kiosk its manifest (``kiosk.content.update``); unchanged content issues nothing."""
    if services.commands is None:
        raise HTTPException(503, "commands are not available (no broker connection configured)")
    if node_id is not None and not await publish.list_kiosks(session, node_id):
        raise HTTPException(404, f"{node_id} is not a kiosk (no node with the kiosk capability)")
    outcomes = await publisher.publish(
        services.commands, issued_by=principal.username, node_id=node_id, force=force, ip=client_ip(request)
    )
    results = [
        PublishResultView(
            node_id=o.node_id, status=o.status.value, version=o.version, detail=o.detail, request_id=o.request_id
        )
        for o in outcomes
    ]
    counts = {s: sum(1 for o in outcomes if o.status is s) for s in PublishStatus}
    await audit.record(
        session,
        actor=principal.username,
        action="kiosk.published",
        target=node_id or "all",
        detail={
            "force": force,
            "counts": {s.value: n for s, n in counts.items()},
            "published": {o.node_id: o.version for o in outcomes if o.status is PublishStatus.PUBLISHED},
        },
        ip=client_ip(request),
    )
    await session.commit()
    return PublishReport(
        results=results,
        published=counts[PublishStatus.PUBLISHED],
        unchanged=counts[PublishStatus.UNCHANGED],
        unreachable=counts[PublishStatus.UNREACHABLE],
        failed=counts[PublishStatus.FAILED],
    )


# --------------------------------------------------------------------------------------------------- public


@router.get(
    "/content/{sha256}",
    response_class=FileResponse,
    responses={200: {"description": "the asset's bytes (Range supported)"}, 404: {"description": "not found"}},
)
async def get_content(sha256: Sha256, session: SessionDep, library: LibraryDep) -> FileResponse:
    """An asset by its sha256, for nodes (public: integrity comes from the signed manifest). Immutable; Range works."""
    row = await session.get(KioskAsset, sha256)
    if row is None or not await library.exists(sha256):
        raise HTTPException(404, f"no asset {sha256}")
    return FileResponse(library.blob_path(sha256), media_type=row.mime, headers={"Cache-Control": IMMUTABLE})


@router.get(
    "/manifests/{node_id}/{version}",
    response_class=Response,
    responses={200: {"content": {"application/json": {}}, "description": "the signed manifest"}, 404: {}},
)
async def get_manifest(node_id: NodeId, version: Annotated[int, Path(ge=1, lt=2**53)], session: SessionDep) -> Response:
    """A kiosk's signed manifest, byte for byte as signed (public: the node checks the signature and the hash)."""
    row = await session.get(KioskManifest, (node_id, version))
    if row is None:
        raise HTTPException(404, f"no manifest {version} for {node_id}")
    return Response(
        content=row.signed.encode("ascii"), media_type="application/json", headers={"Cache-Control": IMMUTABLE}
    )
