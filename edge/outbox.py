"""The durable outbox: every seq-numbered message is committed to SQLite before it is published.

* :class:`Outbox` owns one SQLite connection (WAL, ``synchronous=FULL``) used only from its own single worker
  thread, so nothing blocks the event loop and no two statements ever interleave. Concurrent :meth:`Outbox.put`
  calls are group-committed: one transaction (one fsync) for everything queued while the previous commit ran.
* The per-boot sequence number ``seq`` (1, 2, 3, …; 0 is reserved for availability) is assigned by
  :meth:`Outbox.put` in the order the rows are inserted, so the order of ``seq`` is the order of the rows and a
  ``seq`` is never reused within a boot (a failed commit leaves a gap, which central records as a loss).
* Bounds (rows, bytes, age): when a bound is exceeded the oldest *telemetry* goes first; events are dropped only
  when no telemetry is left. Drops (and broker refusals) are counted per class in the same database, so the
  counters survive restarts.
* :class:`OutboxPublisher` publishes the rows in order over one MQTT connection with a small window of publishes
  awaiting PUBACK, deletes a row only after its PUBACK, and after a reconnect replays from the first unacknowledged
  row with ``historical: true`` set in the payload of every row that existed before the connection came up.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import os
import sqlite3
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Final, TypeVar

import orjson
import structlog

from edge.config import OutboxSettings
from varta.aio import wait_for
from varta.contract import MAX_PAYLOAD_BYTES, Envelope, encode, max_payload_bytes, parse_topic
from varta.mqtt import MqttClient, NotConnected, PublishRejected

log = structlog.get_logger(__name__)

T = TypeVar("T")

SCHEMA_VERSION: Final = 1
_SQL_CHUNK: Final = 500  # host parameters per statement (well below SQLite's limit)

_SCHEMA: Final = """
CREATE TABLE IF NOT EXISTS outbox (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    topic TEXT NOT NULL,
    payload BLOB NOT NULL,
    qos INTEGER NOT NULL CHECK (qos IN (0, 1, 2)),
    retain INTEGER NOT NULL,
    class TEXT NOT NULL CHECK (class IN ('event', 'telemetry')),
    created_at REAL NOT NULL,
    size INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS outbox_by_class ON outbox (class, id);
CREATE TABLE IF NOT EXISTS counters (
    name TEXT PRIMARY KEY,
    value INTEGER NOT NULL
) WITHOUT ROWID;
"""


class MessageClass(StrEnum):
    """How precious a row is: telemetry is dropped before any event."""

    EVENT = "event"
    TELEMETRY = "telemetry"


class OutboxError(RuntimeError):
    """The outbox could not store a message (disk full, I/O error, closed)."""


@dataclass(frozen=True, slots=True)
class OutboxRow:
    """One stored message waiting for its PUBACK."""

    id: int
    topic: str
    payload: bytes
    qos: int
    retain: bool
    cls: MessageClass
    created_at: float
    size: int


@dataclass(frozen=True, slots=True)
class OutboxStats:
    """Counts of the outbox (pending rows right now; drops and refusals since the database was created)."""

    pending: int
    pending_bytes: int
    pending_events: int
    pending_telemetry: int
    dropped_telemetry: int
    dropped_events: int
    rejected: int
    last_seq: int

    def as_dict(self) -> dict[str, int]:
        """The stats as a JSON-friendly dict."""
        return {
            "pending": self.pending,
            "pending_bytes": self.pending_bytes,
            "pending_events": self.pending_events,
            "pending_telemetry": self.pending_telemetry,
            "dropped_telemetry": self.dropped_telemetry,
            "dropped_events": self.dropped_events,
            "rejected": self.rejected,
            "last_seq": self.last_seq,
        }


@dataclass(slots=True)
class _Totals:
    """Row and byte counts per class plus the persisted counters (the worker thread's view)."""

    rows: dict[MessageClass, int] = field(default_factory=lambda: dict.fromkeys(MessageClass, 0))
    size: dict[MessageClass, int] = field(default_factory=lambda: dict.fromkeys(MessageClass, 0))
    counters: dict[str, int] = field(default_factory=dict)
    last_id: int = 0

    @property
    def all_rows(self) -> int:
        return sum(self.rows.values())

    @property
    def all_bytes(self) -> int:
        return sum(self.size.values())

    def copy(self) -> _Totals:
        return _Totals(dict(self.rows), dict(self.size), dict(self.counters), self.last_id)


@dataclass(slots=True)
class _Put:
    topic: str
    payload: bytes
    qos: int
    retain: bool
    cls: MessageClass
    created_at: float
    size: int
    future: asyncio.Future[None]


_COUNTER_DROPPED: Final = {MessageClass.TELEMETRY: "dropped_telemetry", MessageClass.EVENT: "dropped_events"}
_COUNTER_REJECTED: Final = "rejected"


@contextlib.contextmanager
def _transaction(conn: sqlite3.Connection) -> Iterator[None]:
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")


def _bump(conn: sqlite3.Connection, name: str, by: int) -> None:
    conn.execute(
        "INSERT INTO counters (name, value) VALUES (?, ?) "
        "ON CONFLICT (name) DO UPDATE SET value = value + excluded.value",
        (name, by),
    )


class Outbox:
    """Durable, bounded, ordered store of messages waiting to be published. Create with :meth:`open`."""

    def __init__(self, settings: OutboxSettings, *, clock: Callable[[], float] = time.time) -> None:
        self.settings = settings
        self.path = settings.path
        self._clock = clock
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="varta-outbox")
        self._conn: sqlite3.Connection | None = None  # used only in the worker thread
        self._db_totals = _Totals()  # worker thread's authoritative view
        self._totals = _Totals()  # event-loop copy, refreshed after every operation
        self._queue: list[_Put] = []
        self._flusher: asyncio.Task[None] | None = None
        self._next_seq = 1
        self._closed = False
        self.rows_added = asyncio.Event()
        """Set whenever rows were committed (the publisher clears it before looking for work)."""
        self._changed = asyncio.Event()

    # ---------------------------------------------------------------------------------------------- lifecycle

    @classmethod
    async def open(cls, settings: OutboxSettings, *, clock: Callable[[], float] = time.time) -> Outbox:
        """Open (or create) the outbox database and drop rows that are already too old."""
        outbox = cls(settings, clock=clock)
        try:
            outbox._apply(await outbox._run(outbox._open_sync))
            await outbox.prune()
        except BaseException:
            outbox._executor.shutdown(wait=False)
            raise
        if outbox._totals.all_rows:
            log.info("outbox.opened", path=str(outbox.path), pending=outbox._totals.all_rows)
        return outbox

    async def close(self) -> None:
        """Wait for queued writes, then close the database."""
        if self._closed:
            return
        self._closed = True
        if self._flusher is not None:
            with contextlib.suppress(Exception):
                await asyncio.shield(self._flusher)
        with contextlib.suppress(Exception):
            await self._run(self._close_sync)
        self._executor.shutdown(wait=False)

    # ---------------------------------------------------------------------------------------------- writing

    @property
    def next_seq(self) -> int:
        """The seq the next :meth:`put` will use."""
        return self._next_seq

    @property
    def last_id(self) -> int:
        """Id of the newest committed row (0 when none was ever written)."""
        return self._totals.last_id

    async def put(self, topic: str, message: Envelope, *, cls: MessageClass, retain: bool = False, qos: int = 1) -> int:
        """Give *message* the next seq, commit it durably and return the seq (after the commit)."""
        if self._closed:
            raise OutboxError("the outbox is closed")
        seq = self._next_seq
        payload = encode(message.model_copy(update={"seq": seq}))
        limit = _payload_limit(topic)
        if len(payload) > limit:
            raise ValueError(f"payload of {len(payload)} bytes exceeds {limit}")
        self._next_seq = seq + 1  # consumed from here on, even if the commit fails: never reused
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        size = len(payload) + len(topic.encode())
        self._queue.append(_Put(topic, payload, qos, retain, cls, self._clock(), size, future))
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.create_task(self._flush(), name="outbox-flush")
        await future
        return seq

    async def _flush(self) -> None:
        while self._queue:
            batch, self._queue = self._queue, []
            try:
                totals, drops = await self._run(self._insert_sync, batch)
            except Exception as exc:
                log.error("outbox.write_failed", error=str(exc), rows=len(batch))
                for put in batch:
                    if not put.future.done():
                        put.future.set_exception(OutboxError(f"cannot store message: {exc}"))
                continue
            self._apply(totals)
            self._log_drops(drops, "size")
            for put in batch:
                if not put.future.done():
                    put.future.set_result(None)
            self.rows_added.set()

    # ---------------------------------------------------------------------------------------------- reading

    async def fetch(self, after_id: int = 0, limit: int = 512) -> list[OutboxRow]:
        """Up to *limit* pending rows with an id above *after_id*, oldest first."""
        return await self._run(self._fetch_sync, after_id, limit)

    async def delete(self, ids: Sequence[int], *, rejected: int = 0) -> None:
        """Delete acknowledged rows (ids already gone are ignored); *rejected* adds to the refusal counter."""
        if not ids and not rejected:
            return
        totals = await self._run(self._delete_sync, list(ids), rejected)
        self._apply(totals)

    async def prune(self) -> dict[MessageClass, int]:
        """Drop rows older than their class's maximum age; returns how many were dropped per class."""
        totals, drops = await self._run(self._prune_sync, self._clock())
        self._apply(totals)
        self._log_drops(drops, "age")
        return drops

    def stats(self) -> OutboxStats:
        """Current counts (from memory: no I/O)."""
        t = self._totals
        return OutboxStats(
            pending=t.all_rows,
            pending_bytes=t.all_bytes,
            pending_events=t.rows[MessageClass.EVENT],
            pending_telemetry=t.rows[MessageClass.TELEMETRY],
            dropped_telemetry=t.counters.get(_COUNTER_DROPPED[MessageClass.TELEMETRY], 0),
            dropped_events=t.counters.get(_COUNTER_DROPPED[MessageClass.EVENT], 0),
            rejected=t.counters.get(_COUNTER_REJECTED, 0),
            last_seq=self._next_seq - 1,
        )

    async def wait_empty(self, timeout: float | None = None) -> bool:
        """Wait until no row is pending; False on timeout."""
        try:
            async with asyncio.timeout(timeout):
                while self._totals.all_rows or self._queue:
                    self._changed.clear()
                    await self._changed.wait()
        except TimeoutError:
            return False
        return True

    async def call(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``fn(connection)`` in the outbox's worker thread inside one transaction (for companion tables)."""
        if self._closed:
            raise OutboxError("the outbox is closed")
        return await self._run(self._call_sync, fn)

    # ---------------------------------------------------------------------------------------------- internals

    async def _run(self, fn: Callable[..., T], *args: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)

    def _apply(self, totals: _Totals) -> None:
        self._totals = totals
        self._changed.set()

    def _log_drops(self, drops: dict[MessageClass, int], bound: str) -> None:
        for cls, count in drops.items():
            if count:
                log.warning(
                    "outbox.dropped",
                    cls=cls.value,
                    count=count,
                    bound=bound,
                    total=self._totals.counters.get(_COUNTER_DROPPED[cls], 0),
                )

    # worker thread ------------------------------------------------------------------------------------------

    def _db(self) -> sqlite3.Connection:
        if self._conn is None:
            raise OutboxError("the outbox is closed")
        return self._conn

    def _connect_sync(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False, timeout=10.0)
        try:
            mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            if str(mode).lower() != "wal":
                raise OutboxError(f"{self.path}: cannot use WAL journal mode (got {mode})")
            conn.execute("PRAGMA synchronous = FULL")
            conn.execute("PRAGMA journal_size_limit = 67108864")
            conn.executescript(_SCHEMA)
            version = conn.execute("PRAGMA user_version").fetchone()[0]
            if version == 0:
                conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
            elif version > SCHEMA_VERSION:
                raise OutboxError(f"{self.path}: written by a newer agent (schema {version})")
        except BaseException:
            conn.close()
            raise
        return conn

    def _open_sync(self) -> _Totals:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            conn = self._connect_sync()
        except sqlite3.DatabaseError as exc:
            if isinstance(exc, sqlite3.OperationalError):
                raise
            # A corrupt file (SD card after a power cut): keep it for inspection, start afresh.
            aside = self.path.with_name(f"{self.path.name}.corrupt-{int(time.time())}")
            os.replace(self.path, aside)
            for suffix in ("-wal", "-shm"):
                with contextlib.suppress(FileNotFoundError):
                    os.remove(f"{self.path}{suffix}")
            log.error("outbox.corrupt_replaced", path=str(self.path), moved_to=str(aside), error=str(exc))
            conn = self._connect_sync()
        self._conn = conn
        self._reload_sync(conn)
        return self._db_totals.copy()

    def _close_sync(self) -> None:
        if self._conn is not None:
            with contextlib.suppress(sqlite3.Error):
                self._conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            self._conn.close()
            self._conn = None

    def _reload_sync(self, conn: sqlite3.Connection) -> None:
        t = _Totals()
        sums = conn.execute("SELECT class, COUNT(*), COALESCE(SUM(size), 0) FROM outbox GROUP BY class")
        for cls, rows, size in sums:
            t.rows[MessageClass(cls)] = int(rows)
            t.size[MessageClass(cls)] = int(size)
        t.counters = {str(name): int(value) for name, value in conn.execute("SELECT name, value FROM counters")}
        row = conn.execute("SELECT seq FROM sqlite_sequence WHERE name = 'outbox'").fetchone()
        t.last_id = int(row[0]) if row else 0
        self._db_totals = t

    def _guarded(self, conn: sqlite3.Connection, fn: Callable[[], T]) -> T:
        """Run *fn* in a transaction; on failure the worker's totals are re-read from the database."""
        try:
            with _transaction(conn):
                return fn()
        except BaseException:
            with contextlib.suppress(sqlite3.Error):
                self._reload_sync(conn)
            raise

    def _insert_sync(self, batch: list[_Put]) -> tuple[_Totals, dict[MessageClass, int]]:
        conn = self._db()

        def work() -> dict[MessageClass, int]:
            t = self._db_totals
            for p in batch:
                cur = conn.execute(
                    "INSERT INTO outbox (topic, payload, qos, retain, class, created_at, size) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (p.topic, p.payload, p.qos, int(p.retain), p.cls.value, p.created_at, p.size),
                )
                t.rows[p.cls] += 1
                t.size[p.cls] += p.size
                t.last_id = int(cur.lastrowid or t.last_id)
            return self._enforce_size_sync(conn)

        drops = self._guarded(conn, work)
        return self._db_totals.copy(), drops

    def _enforce_size_sync(self, conn: sqlite3.Connection) -> dict[MessageClass, int]:
        t = self._db_totals
        over_rows = t.all_rows - self.settings.max_rows
        over_bytes = t.all_bytes - self.settings.max_bytes
        drops = dict.fromkeys(MessageClass, 0)
        for cls in (MessageClass.TELEMETRY, MessageClass.EVENT):  # oldest telemetry first, events last
            while over_rows > 0 or over_bytes > 0:
                candidates = conn.execute(
                    "SELECT id, size FROM outbox WHERE class = ? ORDER BY id LIMIT 2000", (cls.value,)
                ).fetchall()
                if not candidates:
                    break
                last_id, count, size = 0, 0, 0
                for row_id, row_size in candidates:
                    if over_rows <= 0 and over_bytes <= 0:
                        break
                    last_id, count, size = row_id, count + 1, size + row_size
                    over_rows -= 1
                    over_bytes -= row_size
                conn.execute("DELETE FROM outbox WHERE class = ? AND id <= ?", (cls.value, last_id))
                t.rows[cls] -= count
                t.size[cls] -= size
                drops[cls] += count
        for cls, count in drops.items():
            if count:
                _bump(conn, _COUNTER_DROPPED[cls], count)
                name = _COUNTER_DROPPED[cls]
                t.counters[name] = t.counters.get(name, 0) + count
        return drops

    def _prune_sync(self, now: float) -> tuple[_Totals, dict[MessageClass, int]]:
        conn = self._db()
        limits = {
            MessageClass.TELEMETRY: self.settings.telemetry_max_age_s,
            MessageClass.EVENT: self.settings.event_max_age_s,
        }

        def work() -> dict[MessageClass, int]:
            t = self._db_totals
            drops = dict.fromkeys(MessageClass, 0)
            for cls, max_age in limits.items():
                cutoff = now - max_age
                oldest = conn.execute(
                    "SELECT created_at FROM outbox WHERE class = ? ORDER BY id LIMIT 1", (cls.value,)
                ).fetchone()
                if oldest is None or oldest[0] >= cutoff:
                    continue  # the common case: one index lookup
                gone = conn.execute(
                    "DELETE FROM outbox WHERE class = ? AND created_at < ? RETURNING size", (cls.value, cutoff)
                ).fetchall()
                t.rows[cls] -= len(gone)
                t.size[cls] -= sum(int(r[0]) for r in gone)
                drops[cls] = len(gone)
                if gone:
                    name = _COUNTER_DROPPED[cls]
                    _bump(conn, name, len(gone))
                    t.counters[name] = t.counters.get(name, 0) + len(gone)
            return drops

        drops = self._guarded(conn, work)
        return self._db_totals.copy(), drops

    def _fetch_sync(self, after_id: int, limit: int) -> list[OutboxRow]:
        rows = self._db().execute(
            "SELECT id, topic, payload, qos, retain, class, created_at, size FROM outbox "
            "WHERE id > ? ORDER BY id LIMIT ?",
            (after_id, limit),
        )
        return [
            OutboxRow(int(i), str(tp), bytes(pl), int(q), bool(r), MessageClass(c), float(ca), int(s))
            for i, tp, pl, q, r, c, ca, s in rows
        ]

    def _delete_sync(self, ids: list[int], rejected: int) -> _Totals:
        conn = self._db()

        def work() -> None:
            t = self._db_totals
            for start in range(0, len(ids), _SQL_CHUNK):
                chunk = ids[start : start + _SQL_CHUNK]
                marks = ",".join("?" * len(chunk))
                for cls, size in conn.execute(
                    f"DELETE FROM outbox WHERE id IN ({marks}) RETURNING class, size",  # noqa: S608 - only '?'
                    chunk,
                ).fetchall():
                    t.rows[MessageClass(cls)] -= 1
                    t.size[MessageClass(cls)] -= int(size)
            if rejected:
                _bump(conn, _COUNTER_REJECTED, rejected)
                t.counters[_COUNTER_REJECTED] = t.counters.get(_COUNTER_REJECTED, 0) + rejected

        self._guarded(conn, work)
        return self._db_totals.copy()

    def _call_sync(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        conn = self._db()
        with _transaction(conn):
            return fn(conn)


# ------------------------------------------------------------------------------------------------- publisher


def mark_historical(payload: bytes) -> bytes:
    """*payload* (a JSON object) with ``historical`` set to true; unchanged if it is not a JSON object."""
    try:
        data = orjson.loads(payload)
    except orjson.JSONDecodeError:
        return payload
    if not isinstance(data, dict) or data.get("historical") is True:
        return payload
    data["historical"] = True
    return orjson.dumps(data)


class OutboxPublisher:
    """Publishes outbox rows in order over one MQTT connection; a row is deleted only after its PUBACK.

    Create it before registering any other ``on_connect`` callback that enqueues messages: its own callback marks
    which rows existed when the connection came up (those are replayed with ``historical: true``).
    """

    def __init__(self, outbox: Outbox, client: MqttClient, *, window: int = 64, fetch_size: int = 512) -> None:
        self.outbox = outbox
        self.client = client
        self.window = window
        self.fetch_size = max(fetch_size, window)
        self.published = 0
        """Rows acknowledged by the broker since start."""
        self.rejected = 0
        """Rows the broker refused (dropped) since start."""
        self._epoch = 0  # number of the connection our on_connect callback last saw
        self._ready = asyncio.Event()
        self._replay_upto = 0  # rows with an id up to this are replays: flagged historical
        client.add_on_connect(self._on_connect)

    async def _on_connect(self) -> None:
        self._replay_upto = max(self._replay_upto, self.outbox.last_id)
        self._epoch = self.client.connection_number
        self._ready.set()

    def _is_ready(self) -> bool:
        return self.client.connected.is_set() and self._epoch == self.client.connection_number

    async def run(self) -> None:
        """Publish forever: wait for a connection, drain the outbox, repeat after every reconnect."""
        while True:
            while not self._is_ready():
                self._ready.clear()
                with contextlib.suppress(TimeoutError):
                    await wait_for(self._ready.wait(), 1.0)
            epoch = self._epoch
            pending = self.outbox.stats().pending
            if pending:
                log.info("outbox.replay", pending=pending, connection=epoch)
            try:
                await self._drain()
            except NotConnected as exc:
                if self._is_ready() and self._epoch == epoch:
                    # Still the same connection: an acknowledgement timed out. Replay after a short pause.
                    log.warning("outbox.ack_timeout", error=str(exc))
                    await asyncio.sleep(0.5)
                else:
                    log.info("outbox.publish_interrupted", error=str(exc))

    async def _drain(self) -> None:
        """One pass over the outbox on the current connection; raises NotConnected when it drops."""
        inflight: collections.deque[tuple[OutboxRow, asyncio.Task[None]]] = collections.deque()
        buffer: collections.deque[OutboxRow] = collections.deque()
        acked: list[int] = []
        rejected = 0
        cursor = 0  # highest row id fetched in this pass
        attempted = 0  # highest row id handed to the client in this pass
        exhausted = False  # the last fetch found no more rows (until rows_added is set again)
        deleter: asyncio.Task[None] | None = None
        try:
            while True:
                if self.outbox.rows_added.is_set():
                    exhausted = False
                if not buffer and not exhausted:
                    self.outbox.rows_added.clear()
                    rows = await self.outbox.fetch(cursor, self.fetch_size)
                    if rows:
                        buffer.extend(rows)
                        cursor = rows[-1].id
                    exhausted = len(rows) < self.fetch_size
                while buffer and len(inflight) < self.window:
                    row = buffer.popleft()
                    payload = mark_historical(row.payload) if row.id <= self._replay_upto else row.payload
                    task = asyncio.ensure_future(
                        self.client.publish(row.topic, payload, qos=row.qos, retain=row.retain)
                    )
                    inflight.append((row, task))
                    attempted = row.id
                while inflight and inflight[0][1].done():  # reap in order
                    row, task = inflight.popleft()
                    exc = task.exception()
                    if exc is None:
                        acked.append(row.id)
                        self.published += 1
                    elif isinstance(exc, PublishRejected | ValueError | TypeError):
                        # Refused by the broker (or unpublishable, e.g. an invalid topic): it would fail forever.
                        reason = exc.reason if isinstance(exc, PublishRejected) else str(exc)[:200]
                        code = exc.code if isinstance(exc, PublishRejected) else None
                        log.error("outbox.publish_rejected", topic=row.topic, reason=reason, code=code)
                        acked.append(row.id)
                        rejected += 1
                        self.rejected += 1
                    else:
                        inflight.appendleft((row, task))
                        raise exc
                if (acked or rejected) and (deleter is None or deleter.done()):
                    if deleter is not None:
                        deleter.result()  # surface a failed delete
                    deleter = asyncio.create_task(self.outbox.delete(acked, rejected=rejected))
                    acked, rejected = [], 0
                if not inflight:
                    if acked or rejected:
                        if deleter is not None:
                            await deleter  # then go round to delete the rest before idling
                    elif not buffer and exhausted:
                        await self._idle()
                elif len(inflight) >= self.window or (not buffer and exhausted):
                    await asyncio.wait([inflight[0][1]])
                # otherwise: room in the window and more rows to fetch, go round again
        finally:
            self._replay_upto = max(self._replay_upto, attempted)
            await self._settle(inflight, acked, rejected, deleter)

    async def _idle(self) -> None:
        """Wait for new rows; raise NotConnected if the connection drops meanwhile."""
        if self.client.disconnected.is_set():
            raise NotConnected("disconnected")
        added = asyncio.ensure_future(self.outbox.rows_added.wait())
        down = asyncio.ensure_future(self.client.disconnected.wait())
        try:
            await asyncio.wait({added, down}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            added.cancel()
            down.cancel()
        if self.client.disconnected.is_set():
            raise NotConnected("disconnected")

    async def _settle(
        self,
        inflight: collections.deque[tuple[OutboxRow, asyncio.Task[None]]],
        acked: list[int],
        rejected: int,
        deleter: asyncio.Task[None] | None,
    ) -> None:
        """After a pass: let publishes in flight finish, record their outcome, delete what was acknowledged."""
        if inflight:
            _, late = await asyncio.wait([task for _, task in inflight], timeout=5.0)
            for task in late:  # a hung connection: those rows stay in the outbox for the next pass
                task.cancel()
        for row, task in inflight:
            if not task.done() or task.cancelled():
                continue
            exc = task.exception()
            if exc is None:
                acked.append(row.id)
                self.published += 1
            elif isinstance(exc, PublishRejected | ValueError | TypeError):
                acked.append(row.id)
                rejected += 1
                self.rejected += 1
        if deleter is not None:
            with contextlib.suppress(Exception):
                await deleter
        if acked or rejected:
            await asyncio.shield(self.outbox.delete(acked, rejected=rejected))


def _payload_limit(topic: str) -> int:
    """Snapshots may be larger than other payloads (see ``varta.contract.max_payload_bytes``)."""
    parts = parse_topic(topic)
    return max_payload_bytes(parts.channel) if parts is not None else MAX_PAYLOAD_BYTES
