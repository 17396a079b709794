"""Per-kiosk manifests: built from the library, signed with central's command key, stored and announced.

A kiosk is a node whose birth announced the ``kiosk`` capability; its device id is that of its ``kiosk`` device
state. Its manifest holds the schedules that target it, one of its groups or all kiosks (highest priority first,
older first among equals), its default playlist, exactly the playlists those name and exactly the assets those
play — ``kiosk_ids`` is the node id alone, the time zone Europe/Kyiv.

Versions. A new version is one more than the highest this kiosk ever had (issued here or confirmed by the node's
``kiosk.content_installed`` events), since the node refuses anything not newer. Publishing content equal to the
latest manifest (compared without ``version`` and ``issued_at``) issues nothing: ``unchanged`` when that manifest
was handed to the broker, otherwise the same version is sent again. ``force`` issues a new version regardless.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any, Final

import orjson
import structlog
from pydantic import ValidationError
from sqlalchemy import and_, func, or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from central.commands import CommandError, CommandService
from central.config import CentralConfig
from central.store.db import Database
from central.store.fleet_models import DeviceStateRecord, EventRecord, Node
from central.store.kiosk_models import (
    KioskAsset,
    KioskGroupMember,
    KioskManifest,
    KioskPlaylist,
    KioskSchedule,
    KioskSetting,
)
from varta.contract import CommandType, DeviceKind, KioskContentParams, utcnow
from varta.kiosk_manifest import (
    DEFAULT_TIMEZONE,
    MAX_SIGNED_MANIFEST_BYTES,
    Asset,
    Manifest,
    Playlist,
    PlaylistItem,
    Schedule,
    TimeWindow,
    sign_manifest,
)

log = structlog.get_logger(__name__)

KIOSK_CAPABILITY: Final = "kiosk"
INSTALLED_EVENT: Final = "kiosk.content_installed"
REFUSED_EVENT: Final = "kiosk.content_refused"
TAKEOVER_EVENT: Final = "kiosk.takeover_shown"
COMMAND_TTL_S: Final = 300
API_PREFIX: Final = "/api/v1/kiosk"


REDELIVERED_BY = "system:kiosk-content"


class PublishStatus(StrEnum):
    """What publishing did for one kiosk."""

    PUBLISHED = "published"
    UNCHANGED = "unchanged"
    UNREACHABLE = "unreachable"
    FAILED = "failed"


class ManifestBuildError(ValueError):
    """The stored library does not make a valid manifest for a kiosk (it should not happen: writes are validated)."""


@dataclass(frozen=True, slots=True)
class PublishOutcome:
    """The result for one kiosk."""

    node_id: str
    status: PublishStatus
    version: int | None = None
    detail: str = ""
    request_id: str | None = None


@dataclass(frozen=True, slots=True)
class BuiltManifest:
    """A manifest and, in its order, the ids of the stored schedules it came from."""

    manifest: Manifest
    schedule_ids: tuple[int, ...]


# --------------------------------------------------------------------------------------------------- models


def playlist_model(row: KioskPlaylist) -> Playlist:
    """The manifest playlist of a stored one."""
    return Playlist(id=row.id, name=row.name, items=tuple(PlaylistItem.model_validate(i) for i in row.items))


def schedule_model(row: KioskSchedule) -> Schedule:
    """The manifest schedule of a stored one."""
    return Schedule(
        playlist_id=row.playlist_id,
        priority=row.priority,
        start_date=row.start_date,
        end_date=row.end_date,
        weekdays=frozenset(row.weekdays),
        windows=tuple(TimeWindow.model_validate(w) for w in row.windows),
    )


def asset_model(row: KioskAsset) -> Asset:
    """The manifest asset of a stored one."""
    return Asset.model_validate(
        {"sha256": row.sha256, "size": row.size, "kind": row.kind, "mime": row.mime, "name": row.name}
    )


def assets_of(playlists: Iterable[Playlist]) -> set[str]:
    """Every asset sha256 the playlists play."""
    return {item.asset for p in playlists for item in p.items if item.asset is not None}


def content_sha256(manifest: Manifest) -> str:
    """Hash of the canonical manifest without ``version`` and ``issued_at`` (equal hash: same content)."""
    data = manifest.model_dump(mode="json", exclude={"version", "issued_at"})
    return hashlib.sha256(orjson.dumps(data, option=orjson.OPT_SORT_KEYS)).hexdigest()


def public_base(config: CentralConfig) -> str:
    """Where nodes reach central: ``http.public_url``, else ``http://<http.host>:<http.port>``."""
    if config.http.public_url:
        return config.http.public_url.rstrip("/")
    host = config.http.host
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"
    return f"http://{host}:{config.http.port}"


def manifest_assets(signed: str) -> list[str]:
    """The asset hashes a stored signed manifest lists (its signature is ours; not checked again here)."""
    wrapper = orjson.loads(signed)
    payload = str(wrapper["manifest"])
    manifest = orjson.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    return [str(a["sha256"]) for a in manifest.get("assets", [])]


# --------------------------------------------------------------------------------------------------- queries


@dataclass(frozen=True, slots=True)
class KioskNode:
    """A node that drives a kiosk, and its kiosk device (None until the node reported it)."""

    node: Node
    device: DeviceStateRecord | None


async def list_kiosks(session: AsyncSession, node_id: str | None = None) -> list[KioskNode]:
    """Nodes with the ``kiosk`` capability (optionally just *node_id*), by id, with their kiosk device."""
    stmt = select(Node).order_by(Node.node_id)
    if node_id is not None:
        stmt = stmt.where(Node.node_id == node_id)
    nodes = [n for n in (await session.scalars(stmt)).all() if KIOSK_CAPABILITY in (n.capabilities or [])]
    if not nodes:
        return []
    devices = await session.scalars(
        select(DeviceStateRecord)
        .where(
            DeviceStateRecord.kind == DeviceKind.KIOSK.value,
            DeviceStateRecord.node_id.in_([n.node_id for n in nodes]),
        )
        .order_by(DeviceStateRecord.node_id, DeviceStateRecord.device_id)
    )
    device_of: dict[str, DeviceStateRecord] = {}
    for device in devices.all():
        device_of.setdefault(device.node_id, device)
    return [KioskNode(n, device_of.get(n.node_id)) for n in nodes]


async def groups_of(session: AsyncSession, node_ids: Sequence[str]) -> dict[str, list[str]]:
    """node id → its groups, sorted."""
    rows = await session.execute(
        select(KioskGroupMember.node_id, KioskGroupMember.group_name)
        .where(KioskGroupMember.node_id.in_(list(node_ids)))
        .order_by(KioskGroupMember.group_name)
    )
    groups: dict[str, list[str]] = {}
    for node_id, group in rows.all():
        groups.setdefault(node_id, []).append(group)
    return groups


async def latest_manifests(session: AsyncSession, node_ids: Sequence[str] | None = None) -> dict[str, KioskManifest]:
    """node id → the newest manifest issued to it."""
    newest = select(KioskManifest.node_id, func.max(KioskManifest.version).label("version")).group_by(
        KioskManifest.node_id
    )
    if node_ids is not None:
        newest = newest.where(KioskManifest.node_id.in_(list(node_ids)))
    sub = newest.subquery()
    rows = await session.scalars(
        select(KioskManifest).join(
            sub, and_(KioskManifest.node_id == sub.c.node_id, KioskManifest.version == sub.c.version)
        )
    )
    return {row.node_id: row for row in rows.all()}


async def latest_events(
    session: AsyncSession, node_ids: Sequence[str], kinds: Sequence[str]
) -> dict[tuple[str, str], EventRecord]:
    """(node id, kind) → the newest event of that kind the node reported."""
    if not node_ids:
        return {}
    newest = (
        select(func.max(EventRecord.id))
        .where(EventRecord.node_id.in_(list(node_ids)), EventRecord.kind.in_(list(kinds)), EventRecord.source == "node")
        .group_by(EventRecord.node_id, EventRecord.kind)
    )
    rows = await session.scalars(select(EventRecord).where(EventRecord.id.in_(newest)))
    return {(e.node_id, e.kind): e for e in rows.all()}


def confirmed_version(event: EventRecord | None) -> int | None:
    """The version a ``kiosk.content_installed`` event confirms."""
    if event is None:
        return None
    version = event.data.get("version")
    return version if isinstance(version, int) and not isinstance(version, bool) else None


async def build_manifest(
    session: AsyncSession, node_id: str, *, version: int = 1, issued_at: datetime | None = None
) -> BuiltManifest:
    """The manifest kiosk *node_id* would get now (raises :class:`ManifestBuildError`)."""
    groups = (await groups_of(session, [node_id])).get(node_id, [])
    targets = [
        KioskSchedule.target_kind == "all",
        and_(KioskSchedule.target_kind == "kiosk", KioskSchedule.target == node_id),
    ]
    if groups:
        targets.append(and_(KioskSchedule.target_kind == "group", KioskSchedule.target.in_(groups)))
    schedules = list(
        (
            await session.scalars(
                select(KioskSchedule).where(or_(*targets)).order_by(KioskSchedule.priority.desc(), KioskSchedule.id)
            )
        ).all()
    )
    setting = await session.get(KioskSetting, node_id)
    default = setting.default_playlist_id if setting else None
    wanted = {s.playlist_id for s in schedules} | ({default} if default else set())
    playlist_rows = (
        (
            await session.scalars(select(KioskPlaylist).where(KioskPlaylist.id.in_(wanted)).order_by(KioskPlaylist.id))
        ).all()
        if wanted
        else []
    )
    try:
        playlists = [playlist_model(row) for row in playlist_rows]
        shas = assets_of(playlists)
        asset_rows = (
            (
                await session.scalars(select(KioskAsset).where(KioskAsset.sha256.in_(shas)).order_by(KioskAsset.sha256))
            ).all()
            if shas
            else []
        )
        manifest = Manifest(
            version=version,
            issued_at=issued_at or utcnow(),
            kiosk_ids=(node_id,),
            timezone=DEFAULT_TIMEZONE,
            assets=tuple(asset_model(a) for a in asset_rows),
            playlists=tuple(playlists),
            schedules=tuple(schedule_model(s) for s in schedules),
            default_playlist_id=default,
        )
    except ValidationError as exc:
        raise ManifestBuildError(f"the library does not make a valid manifest for {node_id}: {exc}"[:1000]) from None
    return BuiltManifest(manifest, tuple(s.id for s in schedules))


# --------------------------------------------------------------------------------------------------- publishing


class KioskPublisher:
    """Publishes manifests; one publish at a time per process (versions are also unique per node in the table)."""

    def __init__(self, config: CentralConfig, db: Database) -> None:
        self.config = config
        self.db = db
        self._lock = asyncio.Lock()
        self.outcomes: Counter[str] = Counter()

    def stats(self) -> dict[str, Any]:
        """Outcomes by status since start."""
        return {"outcomes": dict(self.outcomes)}

    async def publish(
        self,
        commands: CommandService,
        *,
        issued_by: str,
        node_id: str | None = None,
        force: bool = False,
        ip: str | None = None,
    ) -> list[PublishOutcome]:
        """Publish to every kiosk (or just *node_id*); one outcome per kiosk, by node id."""
        async with self._lock:
            async with self.db.session() as session:  # closing keeps the loaded rows usable (no expiry)
                kiosks = await list_kiosks(session, node_id)
            outcomes = []
            for kiosk in kiosks:
                outcome = await self._publish_one(commands, kiosk, issued_by=issued_by, force=force, ip=ip)
                self.outcomes[outcome.status.value] += 1
                outcomes.append(outcome)
            return outcomes

    async def _publish_one(
        self, commands: CommandService, kiosk: KioskNode, *, issued_by: str, force: bool, ip: str | None
    ) -> PublishOutcome:
        node_id = kiosk.node.node_id
        if kiosk.device is None:
            return PublishOutcome(node_id, PublishStatus.UNREACHABLE, detail="the node has not reported its kiosk yet")
        for _attempt in range(3):
            try:
                async with self.db.session() as session:
                    outcome = await self._issue_and_send(
                        session,
                        commands,
                        node_id,
                        kiosk.device.device_id,
                        issued_by=issued_by,
                        force=force,
                        ip=ip,
                        send=kiosk.node.online,
                    )
                if not kiosk.node.online:
                    detail = "the node is offline: the manifest is issued and goes out when the node is back"
                    return PublishOutcome(node_id, PublishStatus.UNREACHABLE, outcome.version, detail=detail)
                return outcome
            except IntegrityError:  # another central instance issued this version first: take the next one
                log.info("kiosk.publish_version_taken", node_id=node_id)
        return PublishOutcome(node_id, PublishStatus.FAILED, detail="could not claim a new version")

    async def _issue_and_send(
        self,
        session: AsyncSession,
        commands: CommandService,
        node_id: str,
        device_id: str,
        *,
        issued_by: str,
        force: bool,
        ip: str | None,
        send: bool = True,
    ) -> PublishOutcome:
        now = utcnow()
        try:
            built = await build_manifest(session, node_id, issued_at=now)
        except ManifestBuildError as exc:
            log.error("kiosk.manifest_invalid", node_id=node_id, detail=str(exc)[:500])
            return PublishOutcome(node_id, PublishStatus.FAILED, detail=str(exc))
        content = content_sha256(built.manifest)
        latest = (await latest_manifests(session, [node_id])).get(node_id)
        installed = await latest_events(session, [node_id], [INSTALLED_EVENT])
        confirmed = confirmed_version(installed.get((node_id, INSTALLED_EVENT)))
        same = (
            latest is not None
            and latest.content_sha256 == content
            and (confirmed is None or confirmed <= latest.version)
            and not force
        )
        if same and latest is not None and latest.sent_at is not None:
            return PublishOutcome(node_id, PublishStatus.UNCHANGED, latest.version, request_id=latest.request_id)
        if same and latest is not None:
            row = latest  # issued before but never reached the broker: send the same version again
        else:
            version = max(latest.version if latest else 0, confirmed or 0) + 1
            signed = sign_manifest(commands.key, built.manifest.model_copy(update={"version": version})).to_bytes()
            if len(signed) > MAX_SIGNED_MANIFEST_BYTES:
                detail = f"the manifest is {len(signed)} bytes; nodes accept at most {MAX_SIGNED_MANIFEST_BYTES}"
                return PublishOutcome(node_id, PublishStatus.FAILED, detail=detail)
            row = KioskManifest(
                node_id=node_id,
                version=version,
                issued_at=now,
                issued_by=issued_by,
                sha256=hashlib.sha256(signed).hexdigest(),
                content_sha256=content,
                signed=signed.decode("ascii"),
                sent_at=None,
                request_id=None,
            )
            session.add(row)
            await session.commit()
            log.info("kiosk.manifest_issued", node_id=node_id, version=version, assets=len(built.manifest.assets))
        if not send:
            return PublishOutcome(node_id, PublishStatus.UNREACHABLE, row.version)
        return await self._send(session, commands, row, device_id, issued_by=issued_by, ip=ip)

    async def redeliver(self, commands: CommandService, node_id: str, device_id: str, *, older_than_s: float) -> bool:
        """Send again the newest manifest *node_id* has not confirmed (never sent, or sent more than *older_than_s*
        ago: the node was offline, the command expired, the download failed for good); True when one was sent."""
        async with self._lock, self.db.session() as session:
            latest = (await latest_manifests(session, [node_id])).get(node_id)
            if latest is None:
                return False
            installed = await latest_events(session, [node_id], [INSTALLED_EVENT])
            confirmed = confirmed_version(installed.get((node_id, INSTALLED_EVENT)))
            if confirmed is not None and confirmed >= latest.version:
                return False
            if latest.sent_at is not None and (utcnow() - latest.sent_at).total_seconds() < older_than_s:
                return False
            outcome = await self._send(session, commands, latest, device_id, issued_by=REDELIVERED_BY, ip=None)
            self.outcomes[f"redelivered_{outcome.status.value}"] += 1
            return outcome.status == PublishStatus.PUBLISHED

    async def _send(
        self,
        session: AsyncSession,
        commands: CommandService,
        row: KioskManifest,
        device_id: str,
        *,
        issued_by: str,
        ip: str | None,
    ) -> PublishOutcome:
        node_id = row.node_id
        base = public_base(self.config)
        params = KioskContentParams(
            device_id=device_id,
            version=row.version,
            manifest_url=f"{base}{API_PREFIX}/manifests/{node_id}/{row.version}",
            manifest_sha256=row.sha256,
            content_base_url=f"{base}{API_PREFIX}/content",
        )
        try:
            view = await commands.send(
                session,
                node_id=node_id,
                command=CommandType.KIOSK_CONTENT_UPDATE.value,
                params=params.model_dump(mode="json"),
                issued_by=issued_by,
                ttl_s=COMMAND_TTL_S,
                ip=ip,
            )
        except CommandError as exc:
            log.warning("kiosk.publish_not_sent", node_id=node_id, version=row.version, detail=exc.detail[:200])
            return PublishOutcome(node_id, PublishStatus.UNREACHABLE, row.version, detail=exc.detail)
        row.sent_at = utcnow()
        row.request_id = view.request_id
        await session.commit()
        log.info("kiosk.published", node_id=node_id, version=row.version, request_id=view.request_id)
        return PublishOutcome(node_id, PublishStatus.PUBLISHED, row.version, request_id=view.request_id)
