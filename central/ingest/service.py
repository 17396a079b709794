"""MQTT ingest: decode → dedupe on ``(node_id, boot_id, seq)`` → persist in one transaction per batch → ack → bus.

QoS 1 messages are acknowledged to the broker only after the batch containing them is committed, so a crash of
central makes the broker deliver them again, and the per-boot sequence record drops what was stored. A payload that
breaks the contract is counted by reason, logged, and acknowledged (it can never become valid); a database error
keeps the batch unacknowledged and retries it with back-off — nothing is lost and the loop never dies.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, cast

import structlog
from sqlalchemy import Table, bindparam, delete, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from central.api.schemas import CommandView, DeviceView, EventView, HealthPoint, IngestStats
from central.bus import Bus
from central.config import IngestSettings
from central.ingest import cameras, live
from central.store import queries
from central.store.db import Database
from central.store.fleet_models import (
    CommandRecord,
    DeviceStateRecord,
    EventRecord,
    HealthSample,
    Node,
    SeqGap,
)
from varta.contract import (
    LIVE_ENDED_EVENT,
    RETAINED_CHANNELS,
    Availability,
    Birth,
    CameraInfo,
    Channel,
    CommandResult,
    CommandStatus,
    ContractError,
    DeviceState,
    DiscoveryReport,
    Envelope,
    Event,
    Health,
    Severity,
    Snapshot,
    decode_for_topic,
    parse_topic,
    subscription,
    utcnow,
)
from varta.mqtt import InboundMessage, Subscriber

log = structlog.get_logger(__name__)

_RETAINED = (Channel.STATUS, Channel.BIRTH, Channel.STATE, Channel.INFO)
_SHARED = (Channel.HEALTH, Channel.EVENT, Channel.COMMAND_RESULT, Channel.SNAPSHOT, Channel.DISCOVERY)


@dataclass
class IngestCounters:
    """What the ingest has seen since start."""

    received: int = 0
    stored: int = 0
    duplicates: int = 0
    rejected: Counter[str] = field(default_factory=Counter)
    gaps_recorded: int = 0
    batches: int = 0
    last_batch_size: int = 0
    db_errors: int = 0
    retained_cleared: int = 0


@dataclass
class _Accepted:
    message: Envelope
    site: str
    received_at: datetime


@dataclass
class _Outcome:
    """What one committed batch changed, for the bus."""

    nodes: set[str] = field(default_factory=set)
    health: dict[str, HealthPoint] = field(default_factory=dict)
    events: list[EventRecord] = field(default_factory=list)
    devices: list[tuple[str, DeviceStateRecord]] = field(default_factory=list)
    commands: list[CommandRecord] = field(default_factory=list)
    node_rows_due: set[str] = field(default_factory=set)
    cameras: cameras.CameraChanges = field(default_factory=cameras.CameraChanges)
    live_ended: list[dict[str, Any]] = field(default_factory=list)


class IngestService:
    """Consumes node messages from the broker into the store and the bus."""

    def __init__(
        self,
        mqtt: Subscriber,
        db: Database,
        bus: Bus,
        settings: IngestSettings,
        *,
        offline_after_s: float = 30.0,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self.mqtt = mqtt
        self.db = db
        self.bus = bus
        self.settings = settings
        self.offline_after_s = offline_after_s
        self.clock = clock
        self.counters = IngestCounters()
        self._known_nodes: set[str] = set()
        self._last_reject_log: dict[str, float] = {}
        self._health_announced: dict[str, float] = {}
        self._node_written: dict[str, float] = {}
        self._health_sql = _health_insert_sql(db.dialect)
        self._track_sql = _TrackSql(db.dialect)
        self._db_time: Callable[[datetime], Any] = _sqlite_time if db.dialect == "sqlite" else _identity

    # ------------------------------------------------------------------------------------------ wiring

    def subscribe(self) -> None:
        """Register the subscriptions (made on every reconnect)."""
        for channel in _RETAINED:
            self.mqtt.add_subscription(subscription(channel), qos=1)
        group = self.settings.shared_group if self.settings.use_shared_subscription else None
        for channel in _SHARED:
            self.mqtt.add_subscription(subscription(channel), qos=1, shared_group=group)

    def stats(self) -> IngestStats:
        """Counters for the API and metrics."""
        c = self.counters
        return IngestStats(
            received=c.received,
            stored=c.stored,
            duplicates=c.duplicates,
            rejected=dict(c.rejected),
            gaps_recorded=c.gaps_recorded,
            batches=c.batches,
            last_batch_size=c.last_batch_size,
            db_errors=c.db_errors,
            retained_cleared=c.retained_cleared,
            mqtt_connected=self.mqtt.connected.is_set(),
            mqtt_protocol=self.mqtt.protocol_name,
            inbound_paused=self.mqtt.inbound_paused,
            mqtt_protocol_errors=self.mqtt.protocol_errors,
        )

    async def run(self) -> None:
        """Consume batches until cancelled.

        Two batches are in flight at most: while one is being written (the database works in its own thread),
        the next is decoded. Batches are still stored, acknowledged and announced strictly one after another.
        """
        storing: asyncio.Task[None] | None = None
        try:
            while True:
                batch = await self.mqtt.next_batch(self.settings.batch_max, timeout=1.0)
                if not batch:
                    continue
                if len(batch) < self.settings.batch_max // 10 and self.settings.batch_wait_s > 0:
                    # Light traffic: let a burst accumulate into one transaction (bounded wait keeps latency low).
                    # Under load batches are large already, and waiting would only stall the pipeline.
                    await asyncio.sleep(self.settings.batch_wait_s)
                    batch.extend(await self.mqtt.next_batch(self.settings.batch_max - len(batch), timeout=0))
                accepted = self._decode(batch)
                if storing is not None:
                    await storing
                storing = asyncio.create_task(self._commit(batch, accepted), name="ingest-commit")
        finally:
            if storing is not None and not storing.done():
                # Not acknowledged: the broker delivers the batch again after a reconnect.
                storing.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await storing

    async def run_maintenance(self, interval_s: float = 5.0) -> None:
        """Periodic work: stale nodes go offline, unanswered commands expire, old rows are pruned."""
        last_prune = 0.0
        while True:
            await asyncio.sleep(interval_s)
            try:
                await self.mark_stale_nodes()
                await self.expire_commands()
                if time.monotonic() - last_prune > 600:
                    await self.prune()
                    last_prune = time.monotonic()
            except Exception:
                log.exception("ingest.maintenance_failed")

    # ------------------------------------------------------------------------------------------ batches

    async def process(self, batch: Sequence[InboundMessage]) -> None:
        """Decode, store and acknowledge one batch; retries storage until it succeeds."""
        await self._commit(batch, self._decode(batch))

    def _decode(self, batch: Sequence[InboundMessage]) -> list[_Accepted]:
        """Validate every message against the contract; what breaks it is counted and logged, never stored."""
        received_at = self.clock()
        self.counters.received += len(batch)
        self.counters.batches += 1
        self.counters.last_batch_size = len(batch)
        accepted: list[_Accepted] = []
        for inbound in batch:
            if not inbound.payload and _clears_retained(inbound.topic):
                # An empty message on a retained channel is how a node withdraws a device's state/info (e.g.
                # camera.forget); live subscribers get it without the retain flag. Nothing to store, not an error.
                self.counters.retained_cleared += 1
                continue
            try:
                message = decode_for_topic(inbound.topic, inbound.payload)
                cameras.check_message(message)
            except ContractError as exc:
                self._reject(inbound, exc)
                continue
            parts = parse_topic(inbound.topic)
            assert parts is not None  # decode_for_topic checked it
            accepted.append(_Accepted(message, parts.site, received_at))
        return accepted

    async def _commit(self, batch: Sequence[InboundMessage], accepted: list[_Accepted]) -> None:
        """Store *accepted* (retrying until the database takes it), then acknowledge *batch* and announce."""
        delay = 0.2
        while True:
            try:
                outcome = await self._store(accepted)
                break
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self.counters.db_errors += 1
                log.error("ingest.store_failed", error=str(exc)[:300], batch=len(accepted), retry_in_s=delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 10.0)
        self.mqtt.ack_many(batch)
        await self._announce(outcome)

    def _reject(self, inbound: InboundMessage, exc: ContractError) -> None:
        reason = exc.reason.value
        self.counters.rejected[reason] += 1
        now = time.monotonic()
        if now - self._last_reject_log.get(reason, 0.0) >= 1.0:  # at most one line per reason per second
            self._last_reject_log[reason] = now
            log.warning(
                "ingest.rejected",
                reason=reason,
                detail=exc.detail[:200],
                topic=inbound.topic[:200],
                size=len(inbound.payload),
                total=self.counters.rejected[reason],
            )

    async def _store(self, items: list[_Accepted]) -> _Outcome:
        outcome = _Outcome()
        if not items:
            return outcome
        # A node's row (last_seen, last_health) is rewritten at most every node_update_interval_s: under a burst,
        # hundreds of row updates per batch cost more than the samples themselves (which are all stored).
        mono = time.monotonic()
        interval = self.settings.node_update_interval_s
        outcome.node_rows_due = {
            n for n in {i.message.node_id for i in items} if mono - self._node_written.get(n, -interval) >= interval
        }
        async with self.db.session() as session:
            await self._ensure_nodes(session, items)
            fresh = await self._sequence_filter(session, items)
            # Health is the bulk of any batch: the other steps need not look at it (each filters its own types).
            health: list[_Accepted] = []
            rest: list[_Accepted] = []
            for item in fresh:
                (health if type(item.message) is Health else rest).append(item)
            await self._store_health(session, health, outcome)
            await self._store_events(session, rest, outcome)
            await self._store_live(session, rest, outcome)
            await self._store_births(session, rest, outcome)
            await self._store_device_states(session, rest, outcome)
            await self._store_cameras(session, rest, outcome)
            await self._store_command_results(session, rest, outcome)
            await self._store_availability(session, items, outcome)
            await self._touch_nodes(session, items, outcome.node_rows_due)
            await session.commit()
        for node_id in outcome.node_rows_due:
            self._node_written[node_id] = mono
        self._known_nodes.update(i.message.node_id for i in items)
        self.counters.stored += len(fresh)
        return outcome

    # ------------------------------------------------------------------------------------------ steps

    def _insert(self, model: Any) -> Any:
        # Core insert on the Table (not the ORM entity): the ORM bulk path costs ~3x more per row.
        dialect = postgresql if self.db.dialect == "postgresql" else sqlite
        return dialect.insert(model.__table__)

    async def _ensure_nodes(self, session: AsyncSession, items: list[_Accepted]) -> None:
        new = {i.message.node_id: i for i in items if i.message.node_id not in self._known_nodes}
        if not new:
            return
        rows = [
            {"node_id": nid, "site": item.site, "first_seen": item.received_at, "online": False}
            for nid, item in new.items()
        ]
        await session.execute(self._insert(Node).on_conflict_do_nothing(index_elements=["node_id"]), rows)

    async def _sequence_filter(self, session: AsyncSession, items: list[_Accepted]) -> list[_Accepted]:
        """Keep only messages never stored before, using the per-boot high-water mark and the open gaps.

        A seq above the high-water mark is new (skipped numbers become a gap); a seq at or below it is new only
        if it lies in a recorded gap (a late message, which shrinks the gap); anything else is a duplicate.
        Track rows are locked (PostgreSQL) so concurrent central instances cannot both accept a replay.
        """
        unique: dict[tuple[str, str, int], _Accepted] = {}
        for item in items:
            m = item.message
            if isinstance(m, Availability):
                continue
            key = (m.node_id, m.boot_id, m.seq)
            if key in unique:
                self.counters.duplicates += 1
            else:
                unique[key] = item
        if not unique:
            return []
        by_boot: dict[tuple[str, str], list[int]] = {}
        for node_id, boot_id, seq in unique:
            by_boot.setdefault((node_id, boot_id), []).append(seq)
        # Driver-level statements, like the health insert: with hundreds of nodes per batch SQLAlchemy's per-row
        # parameter processing (and an IN list re-rendered for every batch) cost more than the queries themselves.
        connection = await session.connection()
        pairs = list(by_boot)
        sql = self._track_sql
        result = await connection.exec_driver_sql(sql.select(len(pairs)), tuple(v for pair in pairs for v in pair))
        rows: Sequence[Any] = result.all()
        highs = {(r[0], r[1]): int(r[2]) for r in rows}
        now = self.clock()
        accepted: set[tuple[str, str, int]] = set()
        updates: list[tuple[Any, ...]] = []
        inserts: list[tuple[Any, ...]] = []
        db_now = self._db_time(now)
        for (node_id, boot_id), seqs in by_boot.items():
            seqs.sort()
            known = (node_id, boot_id) in highs
            high = highs.get((node_id, boot_id), 0)
            if seqs[0] <= high:
                taken = await self._fill_gaps(session, node_id, boot_id, [s for s in seqs if s <= high])
                accepted.update((node_id, boot_id, s) for s in taken)
            for s in (s for s in seqs if s > high):
                if s > high + 1:
                    session.add(
                        SeqGap(node_id=node_id, boot_id=boot_id, first_seq=high + 1, last_seq=s - 1, detected_at=now)
                    )
                    self.counters.gaps_recorded += 1
                    # Often filled moments later (retained and live topics may arrive out of order): info, not alarm.
                    log.info("ingest.seq_gap", node_id=node_id, boot_id=boot_id, first=high + 1, last=s - 1)
                high = s
                accepted.add((node_id, boot_id, s))
            if known:
                updates.append((high, len(seqs), db_now, node_id, boot_id))
            else:
                inserts.append((node_id, boot_id, high, len(seqs), db_now))
        if updates:
            await connection.exec_driver_sql(sql.update, updates)
        if inserts:
            await connection.exec_driver_sql(sql.insert, inserts)
        self.counters.duplicates += len(unique) - len(accepted)
        return [item for key, item in unique.items() if key in accepted]

    async def _fill_gaps(self, session: AsyncSession, node_id: str, boot_id: str, late: list[int]) -> list[int]:
        """Remove *late* seqs from the recorded gaps; returns those that were in a gap (the rest are repeats)."""
        gaps = list(
            (await session.scalars(select(SeqGap).where(SeqGap.node_id == node_id, SeqGap.boot_id == boot_id))).all()
        )
        taken: list[int] = []
        for s in late:
            for gap in gaps:
                if not gap.first_seq <= s <= gap.last_seq:
                    continue
                taken.append(s)
                if gap.first_seq == gap.last_seq:
                    if gap in session.new:  # split off earlier in this batch, never flushed
                        session.expunge(gap)
                    else:
                        await session.delete(gap)
                    gaps.remove(gap)
                elif s == gap.first_seq:
                    gap.first_seq += 1
                elif s == gap.last_seq:
                    gap.last_seq -= 1
                else:
                    tail = SeqGap(
                        node_id=node_id,
                        boot_id=boot_id,
                        first_seq=s + 1,
                        last_seq=gap.last_seq,
                        detected_at=gap.detected_at,
                    )
                    session.add(tail)
                    gaps.append(tail)
                    gap.last_seq = s - 1
                break
        return taken

    async def _store_health(self, session: AsyncSession, fresh: list[_Accepted], outcome: _Outcome) -> None:
        latest: dict[str, Health] = {}
        rows: list[tuple[Any, ...]] = []
        as_db_time = self._db_time
        received = {t: as_db_time(t) for t in {item.received_at for item in fresh}}  # one per batch
        for item in fresh:
            m = item.message
            if not isinstance(m, Health):
                continue
            rows.append(
                (
                    m.node_id,
                    m.boot_id,
                    m.seq,
                    as_db_time(m.ts),
                    received[item.received_at],
                    m.historical,
                    m.cpu_percent,
                    m.memory_percent,
                    m.disk_percent,
                    m.temperature_c,
                    m.undervoltage,
                    m.uptime_s,
                    m.load_1m,
                    m.memory_available_mb,
                    m.disk_free_mb,
                    m.agent_uptime_s,
                    m.version,
                    m.outbox_pending,
                    m.outbox_dropped_telemetry,
                    m.outbox_dropped_events,
                )
            )
            if m.node_id not in latest or m.ts >= latest[m.node_id].ts:
                latest[m.node_id] = m
        if not rows:
            return
        # The hot path: one driver-level executemany, skipping per-value SQLAlchemy type processing.
        connection = await session.connection()
        await connection.exec_driver_sql(self._health_sql, rows)
        updates = []
        for node_id, m in latest.items():
            point = HealthPoint.model_validate(m, from_attributes=True)
            outcome.health[node_id] = point
            if node_id in outcome.node_rows_due:
                updates.append(
                    {"b_node_id": node_id, "last_health_at": m.ts, "last_health": point.model_dump(mode="json")}
                )
        if updates:
            nodes = cast(Table, Node.__table__)
            await session.execute(
                update(nodes)
                .where(nodes.c.node_id == bindparam("b_node_id"))
                .values(last_health_at=bindparam("last_health_at"), last_health=bindparam("last_health")),
                updates,
            )

    def _event_record(self, item: _Accepted, *, kind: str, severity: str, message: str = "", **kw: Any) -> EventRecord:
        m = item.message
        return EventRecord(
            node_id=m.node_id,
            site=item.site,
            boot_id=kw.pop("boot_id", m.boot_id),
            seq=kw.pop("seq", m.seq),
            ts=kw.pop("ts", m.ts),
            received_at=item.received_at,
            historical=m.historical,
            source=kw.pop("source", "central"),
            kind=kind,
            severity=severity,
            device_id=kw.pop("device_id", None),
            message=message,
            data=kw.pop("data", {}),
        )

    async def _store_events(self, session: AsyncSession, fresh: list[_Accepted], outcome: _Outcome) -> None:
        for item in fresh:
            m = item.message
            if isinstance(m, Event):
                record = self._event_record(
                    item,
                    kind=m.kind,
                    severity=m.severity.value,
                    message=m.message,
                    source="node",
                    device_id=m.device_id,
                    data=m.data,
                )
                session.add(record)
                outcome.events.append(record)

    async def _store_live(self, session: AsyncSession, fresh: list[_Accepted], outcome: _Outcome) -> None:
        ended = [
            (i.message, i.received_at)
            for i in fresh
            if isinstance(i.message, Event) and i.message.kind == LIVE_ENDED_EVENT
        ]
        if ended:
            await live.close_from_events(session, ended, outcome.live_ended)

    async def _store_births(self, session: AsyncSession, fresh: list[_Accepted], outcome: _Outcome) -> None:
        for item in fresh:
            m = item.message
            if not isinstance(m, Birth):
                continue
            node = await session.get(Node, m.node_id)
            if node is None:
                continue
            node.site = m.site
            node.name = m.name
            node.hostname = m.hostname
            node.version = m.version
            node.platform = m.platform
            node.capabilities = list(m.capabilities)
            node.health_interval_s = m.health_interval_s
            if m.box_public_key is not None:
                self._take_box_key(session, node, m.box_public_key, item, outcome)
            if node.started_at is None or m.started_at >= node.started_at:
                restarted = node.started_at is not None and m.started_at > node.started_at
                node.boot_id = m.boot_id
                node.started_at = m.started_at
            else:
                restarted = False
            if restarted:  # a new boot: live views of the previous one are gone with it
                await live.close_for_node(
                    session, m.node_id, item.received_at, outcome.live_ended, reason=live.NODE_RESTARTED
                )
            record = self._event_record(
                item,
                kind="node.boot",
                severity=Severity.INFO.value,
                message=f"{m.hostname} started, version {m.version}",
                data={"version": m.version, "started_at": m.started_at.isoformat()},
                seq=None,
            )
            session.add(record)
            outcome.events.append(record)
            outcome.nodes.add(m.node_id)

    def _take_box_key(
        self, session: AsyncSession, node: Node, announced: str, item: _Accepted, outcome: _Outcome
    ) -> None:
        """Record the sealing key a birth announced; an enrolled key is never replaced, a different one is reported."""
        previous = node.announced_box_key
        node.announced_box_key = announced
        if node.box_key_revoked_at is not None:
            return  # a revoked node's announcements are only recorded
        if node.box_key_enrolled_at is None:
            node.box_public_key = announced
            return
        if announced in (node.box_public_key, previous):
            return  # matches the enrolled key, or this mismatch was reported already
        log.warning("ingest.box_key_mismatch", node_id=node.node_id, announced=announced)
        record = self._event_record(
            item,
            kind="node.key_mismatch",
            severity=Severity.WARNING.value,
            message="the node announced a sealing key other than the enrolled one: passwords stay sealed to the"
            " enrolled key until an admin enrols the new one",
            data={"announced": announced, "enrolled": node.box_public_key},
            seq=None,
        )
        session.add(record)
        outcome.events.append(record)

    async def _store_device_states(self, session: AsyncSession, fresh: list[_Accepted], outcome: _Outcome) -> None:
        for item in fresh:
            m = item.message
            if not isinstance(m, DeviceState):
                continue
            current = await session.get(DeviceStateRecord, (m.node_id, m.device_id))
            if current is not None and not _is_newer(m, current):
                continue
            changed = current is None or current.status != m.status.value or current.reason != m.reason
            values = {
                "kind": m.kind.value,
                "name": m.name,
                "status": m.status.value,
                "reason": m.reason,
                "detail": m.detail,
                "attrs": dict(m.attrs),
                "boot_id": m.boot_id,
                "seq": m.seq,
                "ts": m.ts,
                "updated_at": item.received_at,
            }
            if current is None:
                current = DeviceStateRecord(
                    node_id=m.node_id, device_id=m.device_id, status_since=item.received_at, **values
                )
                session.add(current)
            else:
                for key, value in values.items():
                    setattr(current, key, value)
                if changed:
                    current.status_since = item.received_at
            if changed:
                severity = {"online": Severity.INFO, "degraded": Severity.WARNING}.get(
                    m.status.value, Severity.CRITICAL
                )
                record = self._event_record(
                    item,
                    kind=f"{m.kind.value}.status",
                    severity=severity.value,
                    message=m.detail or f"{m.device_id}: {m.status.value}" + (f" ({m.reason})" if m.reason else ""),
                    device_id=m.device_id,
                    data={"status": m.status.value, "reason": m.reason},
                    seq=None,
                )
                session.add(record)
                outcome.events.append(record)
            outcome.devices.append((m.node_id, current))

    async def _store_cameras(self, session: AsyncSession, fresh: list[_Accepted], outcome: _Outcome) -> None:
        changes = outcome.cameras
        sites = {item.message.node_id: item.site for item in fresh}
        await cameras.mirror_states(session, [(n, d, sites.get(n, "")) for n, d in outcome.devices], changes)
        infos = [(i.message, i.site, i.received_at) for i in fresh if isinstance(i.message, CameraInfo)]
        if infos:
            await cameras.store_infos(session, infos, changes)
        snapshots = [(i.message, i.site, i.received_at) for i in fresh if isinstance(i.message, Snapshot)]
        if snapshots:
            await cameras.store_snapshots(session, snapshots, changes)
        reports = [(i.message, i.site, i.received_at) for i in fresh if isinstance(i.message, DiscoveryReport)]
        if reports:
            await cameras.store_discoveries(session, reports, changes)

    async def _store_command_results(self, session: AsyncSession, fresh: list[_Accepted], outcome: _Outcome) -> None:
        for item in fresh:
            m = item.message
            if not isinstance(m, CommandResult):
                continue
            record = await session.get(CommandRecord, m.request_id)
            known = record is not None and record.node_id == m.node_id
            if m.status is CommandStatus.REJECTED:
                # A refused command is a security signal (forged, replayed, stale): always in the event log.
                event = self._event_record(
                    item,
                    kind="command.rejected",
                    severity=Severity.WARNING.value,
                    message=f"{m.command or '?'} refused: {m.reason}" + ("" if known else " (not sent by central)"),
                    data={"request_id": m.request_id, "reason": m.reason, "sent_by_central": known},
                    seq=None,
                )
                session.add(event)
                outcome.events.append(event)
            if record is None or not known:
                log.warning("ingest.unknown_command_result", node_id=m.node_id, request_id=m.request_id)
                continue
            if record.status not in ("sent", "expired"):
                # The first result stands; a later one reports a replay of the same command, logged above.
                continue
            record.status = m.status.value
            record.reason = m.reason
            record.detail = m.detail
            record.result = dict(m.result)
            record.result_at = item.received_at
            outcome.commands.append(record)

    async def _store_availability(self, session: AsyncSession, items: list[_Accepted], outcome: _Outcome) -> None:
        for item in items:
            m = item.message
            if not isinstance(m, Availability):
                continue
            node = await session.get(Node, m.node_id)
            if node is None:
                continue
            online = m.state == "online"
            if not online and node.online and node.boot_id and m.boot_id != node.boot_id:
                # The will of a previous boot, arriving after the new boot announced itself.
                log.info("ingest.stale_will_ignored", node_id=m.node_id, boot_id=m.boot_id)
                continue
            if online:
                node.boot_id = m.boot_id
            if node.online == online and node.status_since is not None:
                continue
            node.online = online
            node.offline_reason = None if online else m.reason
            node.status_since = item.received_at
            record = self._event_record(
                item,
                kind="node.online" if online else "node.offline",
                severity=Severity.INFO.value if online else Severity.CRITICAL.value,
                message="" if online else f"reason: {m.reason}",
                data={"reason": m.reason},
                ts=item.received_at,
                seq=None,
            )
            session.add(record)
            outcome.events.append(record)
            outcome.nodes.add(m.node_id)
            if not online:
                await live.close_for_node(session, m.node_id, item.received_at, outcome.live_ended)

    async def _touch_nodes(self, session: AsyncSession, items: list[_Accepted], due: set[str]) -> None:
        last: dict[str, datetime] = {}
        for item in items:
            if item.message.node_id in due:
                last[item.message.node_id] = item.received_at
        if not last:
            return
        nodes = cast(Table, Node.__table__)
        await session.execute(
            update(nodes).where(nodes.c.node_id == bindparam("b_node_id")).values(last_seen=bindparam("last_seen")),
            [{"b_node_id": n, "last_seen": t} for n, t in last.items()],
        )

    # ------------------------------------------------------------------------------------------ announce

    async def _announce(self, outcome: _Outcome) -> None:
        if self.bus.subscribers == 0:  # no stream to build payloads for; the watchers (incident rules) still hear
            for kind, changed in (
                ("device", outcome.devices),
                ("event", outcome.events),
                ("node", outcome.nodes),
                ("camera", outcome.cameras),
            ):
                if changed:
                    self.bus.touch(kind)
            return
        now = time.monotonic()
        for node_id, point in outcome.health.items():
            # A dashboard needs a node's health every few seconds, not every sample: keep the stream light.
            if now - self._health_announced.get(node_id, 0.0) >= self.settings.sse_health_interval_s:
                self._health_announced[node_id] = now
                self.bus.publish("health", {"node_id": node_id, "point": point.model_dump(mode="json")})
        for node_id, device in outcome.devices:
            self.bus.publish(
                "device",
                {"node_id": node_id, "device": DeviceView.model_validate(device).model_dump(mode="json")},
            )
        for record in outcome.events:
            self.bus.publish("event", EventView.model_validate(record).model_dump(mode="json"))
        for command in outcome.commands:
            self.bus.publish("command_result", CommandView.model_validate(command).model_dump(mode="json"))
        for notice in outcome.live_ended:
            self.bus.publish("live_ended", notice)
        if outcome.cameras:
            async with self.db.session() as session:
                await cameras.announce(session, self.bus, outcome.cameras)
        if outcome.nodes:
            await self.announce_nodes(outcome.nodes)

    async def announce_nodes(self, node_ids: set[str]) -> None:
        """Publish the current view of *node_ids* on the bus."""
        async with self.db.session() as session:
            for node_id in sorted(node_ids):
                view = await queries.node_detail(session, node_id)
                if view is not None:
                    self.bus.publish("node", view.model_dump(mode="json"))

    # ------------------------------------------------------------------------------------------ maintenance

    async def mark_stale_nodes(self) -> int:
        """Mark nodes offline (reason ``stale``) that sent nothing for 3 health intervals (≥ offline_after_s).

        Only while central itself is connected to the broker: if central is cut off, silence proves nothing.
        """
        if not self.mqtt.connected.is_set():
            return 0
        now = self.clock()
        changed: set[str] = set()
        notices: list[dict[str, Any]] = []
        async with self.db.session() as session:
            for node in (await session.scalars(select(Node).where(Node.online.is_(True)))).all():
                limit = max(self.offline_after_s, 3 * node.health_interval_s)
                if node.last_seen is not None and now - node.last_seen > timedelta(seconds=limit):
                    node.online = False
                    node.offline_reason = "stale"
                    node.status_since = now
                    session.add(
                        EventRecord(
                            node_id=node.node_id,
                            site=node.site,
                            boot_id=node.boot_id,
                            seq=None,
                            ts=now,
                            received_at=now,
                            source="central",
                            kind="node.offline",
                            severity=Severity.CRITICAL.value,
                            message=f"no message for {int(limit)} s",
                            data={"reason": "stale"},
                        )
                    )
                    changed.add(node.node_id)
                    await live.close_for_node(session, node.node_id, now, notices)
            await session.commit()
        for notice in notices:
            self.bus.publish("live_ended", notice)
        if changed:
            log.warning("ingest.nodes_stale", nodes=sorted(changed))
            await self.announce_nodes(changed)
        return len(changed)

    async def expire_commands(self) -> int:
        """Commands whose deadline passed without a result become ``expired``."""
        now = self.clock()
        async with self.db.session() as session:
            result = await session.execute(
                update(CommandRecord)
                .where(CommandRecord.status == "sent", CommandRecord.expires_at < now - timedelta(seconds=5))
                .values(status="expired", detail="no result before the deadline")
            )
            await session.commit()
        return int(getattr(result, "rowcount", 0) or 0)

    async def prune(self) -> None:
        """Delete health samples past their retention."""
        now = self.clock()
        async with self.db.session() as session:
            await session.execute(
                delete(HealthSample).where(
                    HealthSample.received_at < now - timedelta(days=self.settings.health_retention_days)
                )
            )
            await session.commit()


_HEALTH_COLUMNS = (
    "node_id",
    "boot_id",
    "seq",
    "ts",
    "received_at",
    "historical",
    "cpu_percent",
    "memory_percent",
    "disk_percent",
    "temperature_c",
    "undervoltage",
    "uptime_s",
    "load_1m",
    "memory_available_mb",
    "disk_free_mb",
    "agent_uptime_s",
    "version",
    "outbox_pending",
    "outbox_dropped_telemetry",
    "outbox_dropped_events",
)


def _driver_sql(sql: str, dialect: str) -> str:
    """*sql* written with ``?`` placeholders, in the driver's own style (asyncpg numbers them: ``$1``, ``$2``…)."""
    if dialect != "postgresql":
        return sql
    parts = sql.split("?")
    return "".join(f"{part}${i}" for i, part in enumerate(parts[:-1], 1)) + parts[-1]


def _health_insert_sql(dialect: str) -> str:
    marks = ", ".join("?" for _ in _HEALTH_COLUMNS)
    sql = f"INSERT INTO health_samples ({', '.join(_HEALTH_COLUMNS)}) VALUES ({marks})"  # noqa: S608 - constants
    return _driver_sql(sql, dialect)


class _TrackSql:
    """The sequence-track statements in the driver's own parameter style."""

    def __init__(self, dialect: str) -> None:
        self.dialect = dialect
        self.update = _driver_sql(
            "UPDATE seq_tracks SET max_seq = ?, received = received + ?, updated_at = ?"
            " WHERE node_id = ? AND boot_id = ?",
            dialect,
        )
        self.insert = _driver_sql(
            "INSERT INTO seq_tracks (node_id, boot_id, max_seq, received, updated_at) VALUES (?, ?, ?, ?, ?)",
            dialect,
        )

    def select(self, pairs: int) -> str:
        """High-water marks of *pairs* (node_id, boot_id); locked on PostgreSQL against a concurrent instance."""
        values = ", ".join(["(?, ?)"] * pairs)
        sql = f"SELECT node_id, boot_id, max_seq FROM seq_tracks WHERE (node_id, boot_id) IN (VALUES {values})"  # noqa: S608 - placeholders only
        return _driver_sql(sql + " FOR UPDATE", self.dialect) if self.dialect == "postgresql" else sql


def _sqlite_time(value: datetime) -> str:
    """The text form SQLAlchemy's SQLite DateTime stores (naive UTC, microseconds)."""
    if value.utcoffset() != _ZERO:  # pydantic's UTC is not datetime.UTC: compare the offset, not the object
        value = value.astimezone(UTC)
    return value.isoformat(" ", "microseconds")[:26]  # without the "+00:00"


_ZERO = timedelta(0)


def _clears_retained(topic_name: str) -> bool:
    parts = parse_topic(topic_name)
    return parts is not None and parts.channel in RETAINED_CHANNELS


def _identity(value: datetime) -> datetime:
    return value


def _is_newer(message: DeviceState, current: DeviceStateRecord) -> bool:
    if message.boot_id == current.boot_id:
        return message.seq > current.seq
    return message.ts >= current.ts
