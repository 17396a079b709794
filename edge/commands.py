"""Signed commands from central: verify, dispatch to a handler, publish exactly one result per command received.

Checks, in order (the first that fails decides the ``reason`` of a ``rejected`` result): malformed payload, wrong
node, unsigned, bad signature, expired (``expires_at`` before now − skew), not yet valid (``ts`` after now + skew),
replayed (request id seen before; remembered in SQLite until ``expires_at`` + skew, so a restart does not forget),
unknown command. A request id is recorded as seen *before* its handler runs, so a command delivered twice runs once.
Results go through the outbox (event class); the MQTT message is acknowledged once its result is stored.
Commands run one at a time in arrival order (a PTZ stop never overtakes its move), except those registered as
``concurrent`` (slow ones whose order does not matter: a live view's set-up, a snapshot, a discovery probe): they run
beside the queue, at most :data:`MAX_CONCURRENT` at once, so a camera that is slow to open never holds up a PTZ stop.
Logs name the command and request id, never parameters or signatures.
"""

from __future__ import annotations

import asyncio
import collections
import re
import sqlite3
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any, Final

import orjson
import structlog
from nacl.signing import VerifyKey
from pydantic import ValidationError

from edge.outbox import MessageClass, Outbox, OutboxError
from varta.contract import (
    MAX_PAYLOAD_BYTES,
    Channel,
    Command,
    CommandRejection,
    CommandResult,
    CommandStatus,
    CommandType,
    ContractError,
    decode,
    topic,
    utcnow,
)
from varta.mqtt import InboundMessage, MqttClient
from varta.signing import verify_command

log = structlog.get_logger(__name__)

Handler = Callable[[Command], Awaitable[dict[str, Any]]]
"""A command handler: gets the verified command, returns the ``result`` dict (JSON-serialisable, ≤ 64 keys)."""

_NAME_RE: Final = re.compile(r"^[a-z0-9_.]{1,64}$")
_REQUEST_ID_RE: Final = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
MAX_CONCURRENT: Final = 16
"""Concurrent commands in flight at most; more wait their turn in the queue."""


class CommandFailed(Exception):
    """Raised by a handler when the command ran but failed; the message becomes the result's ``detail``.

    ``reason`` (optional, a short machine-readable code such as ``capacity``) becomes the result's ``reason``.
    """

    def __init__(self, detail: str, *, reason: str | None = None) -> None:
        super().__init__(detail)
        self.reason = reason[:64] if reason else None


class CommandRegistry:
    """Command name → async handler. Device integrations register theirs (PTZ, snapshot, kiosk actions, …)."""

    def __init__(self) -> None:
        self._handlers: dict[str, Handler] = {}
        self._concurrent: set[str] = set()

    def register(self, name: str, handler: Handler, *, concurrent: bool = False) -> None:
        """Register *handler* for the command *name* (lower-case, digits, ``_`` and ``.``); names are unique.

        ``concurrent``: the command may run beside others (its order relative to them does not matter).
        """
        if not _NAME_RE.match(name):
            raise ValueError(f"invalid command name {name!r}")
        if name in self._handlers:
            raise ValueError(f"command {name!r} is already registered")
        self._handlers[name] = handler
        if concurrent:
            self._concurrent.add(name)

    def is_concurrent(self, name: str) -> bool:
        """True when *name* was registered as concurrent."""
        return name in self._concurrent

    def get(self, name: str) -> Handler | None:
        """The handler for *name*, or None."""
        return self._handlers.get(name)

    def names(self) -> list[str]:
        """Registered command names, sorted."""
        return sorted(self._handlers)

    def __contains__(self, name: object) -> bool:
        return name in self._handlers


class ReplayGuard:
    """Remembers command request ids durably (in the outbox's database) until they can no longer be valid."""

    def __init__(self, outbox: Outbox) -> None:
        self.outbox = outbox

    async def setup(self) -> None:
        """Create the table if needed."""

        def create(conn: sqlite3.Connection) -> None:
            conn.execute(
                "CREATE TABLE IF NOT EXISTS seen_commands ("
                "request_id TEXT PRIMARY KEY, keep_until REAL NOT NULL) WITHOUT ROWID"
            )
            conn.execute("CREATE INDEX IF NOT EXISTS seen_commands_until ON seen_commands (keep_until)")

        await self.outbox.call(create)

    async def remember(self, request_id: str, keep_until: float, *, now: float | None = None) -> bool:
        """Record *request_id* until *keep_until* (epoch seconds); False if it was already recorded."""
        current = time.time() if now is None else now

        def insert(conn: sqlite3.Connection) -> bool:
            conn.execute("DELETE FROM seen_commands WHERE keep_until < ?", (current,))
            cur = conn.execute(
                "INSERT OR IGNORE INTO seen_commands (request_id, keep_until) VALUES (?, ?)",
                (request_id, keep_until),
            )
            return cur.rowcount == 1

        return await self.outbox.call(insert)


def _aware(value: datetime) -> datetime:
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


def _peek(payload: bytes) -> tuple[str | None, str]:
    """Request id and command name from a payload that failed validation, if they can still be read."""
    if len(payload) > MAX_PAYLOAD_BYTES:
        return None, ""
    try:
        raw = orjson.loads(payload)
    except orjson.JSONDecodeError:
        return None, ""
    if not isinstance(raw, dict):
        return None, ""
    request_id = raw.get("request_id")
    name = raw.get("command")
    rid = request_id if isinstance(request_id, str) and _REQUEST_ID_RE.match(request_id) else None
    return rid, name if isinstance(name, str) and _NAME_RE.match(name) else ""


class CommandProcessor:
    """Receives the node's commands, checks them and runs their handlers; one result per command received."""

    def __init__(
        self,
        *,
        client: MqttClient,
        outbox: Outbox,
        registry: CommandRegistry,
        replay: ReplayGuard,
        site: str,
        node_id: str,
        boot_id: str,
        keys: list[VerifyKey],
        max_clock_skew_s: float = 30.0,
        handler_timeout_s: float = 30.0,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self.client = client
        self.outbox = outbox
        self.registry = registry
        self.replay = replay
        self.node_id = node_id
        self.boot_id = boot_id
        self.keys = list(keys)
        self.skew_s = max_clock_skew_s
        self.handler_timeout_s = handler_timeout_s
        self.clock = clock
        self.unexpected_topics = 0  # messages that arrived on other topics than ours (ignored and acknowledged)
        self.command_topic = topic(site, node_id, Channel.COMMAND)
        self.result_topic = topic(site, node_id, Channel.COMMAND_RESULT)
        self.rejections: collections.Counter[CommandRejection] = collections.Counter()
        """Rejected commands per reason."""
        self.unanswerable = 0
        """Payloads so broken that no request id could be read (counted and logged, no result possible)."""
        self.executed = 0
        """Commands whose handler ran."""
        self._running: set[asyncio.Task[None]] = set()
        client.add_subscription(self.command_topic, qos=1)

    async def run(self) -> None:
        """Process inbound commands forever (one at a time, in arrival order)."""
        if not self.keys:
            log.warning("command.no_keys", detail="no central public key configured: every command is rejected")
        try:
            while True:
                for message in await self.client.next_batch(max_items=100):
                    try:
                        await self.handle(message)
                    except OutboxError as exc:
                        # Not acknowledged: the broker delivers it again after a reconnect (then rejected as
                        # replayed).
                        log.error("command.result_not_stored", error=str(exc))
        finally:
            for task in list(self._running):
                task.cancel()
            await asyncio.gather(*self._running, return_exceptions=True)

    async def handle(self, message: InboundMessage) -> CommandResult | None:
        """Check and run one command, store its result in the outbox, then acknowledge the message."""
        if message.topic != self.command_topic:
            self.unexpected_topics += 1
            # The embedded demo broker (amqtt 0.12) hands new subscribers retained messages of other topics: a
            # broker quirk, not an attack, so one line per kind of surprise is enough.
            level = "debug" if message.retain else "warning"
            getattr(log, level)("command.unexpected_topic", topic=message.topic[:200], retained=message.retain)
            self.client.ack(message)
            return None
        checked = await self._check(message.payload)
        if isinstance(checked, tuple):
            command, handler = checked
            if self.registry.is_concurrent(command.command) and len(self._running) < MAX_CONCURRENT:
                task = asyncio.create_task(self._finish(message, command, handler), name=f"cmd-{command.command}")
                self._running.add(task)
                task.add_done_callback(self._running.discard)
                return None
            result: CommandResult | None = await self._execute(command, handler)
        else:
            result = checked
        await self._store_and_ack(message, result)
        return result

    async def _finish(self, message: InboundMessage, command: Command, handler: Handler) -> None:
        """Run a concurrent command, store its result and acknowledge it (out of arrival order)."""
        result = await self._execute(command, handler)
        try:
            await self._store_and_ack(message, result)
        except OutboxError as exc:
            log.error("command.result_not_stored", error=str(exc))

    async def _store_and_ack(self, message: InboundMessage, result: CommandResult | None) -> None:
        if result is not None:
            await self.outbox.put(self.result_topic, result, cls=MessageClass.EVENT)
        self.client.ack(message)

    async def _check(self, payload: bytes) -> CommandResult | tuple[Command, Handler] | None:
        """A rejection result, nothing (unanswerable), or the verified command with its handler."""
        try:
            decoded = decode(Channel.COMMAND, payload)
        except ContractError as exc:
            request_id, name = _peek(payload)
            if request_id is None:
                self.unanswerable += 1
                log.warning("command.malformed_dropped", reason=exc.reason.value, count=self.unanswerable)
                return None
            return self._reject(request_id, name, CommandRejection.MALFORMED, exc.reason.value)
        assert isinstance(decoded, Command)
        command = decoded
        rid, name = command.request_id, command.command
        now = self.clock()
        if command.node_id != self.node_id:
            return self._reject(rid, name, CommandRejection.WRONG_NODE, f"addressed to {command.node_id}")
        if not command.sig:
            return self._reject(rid, name, CommandRejection.UNSIGNED)
        if not verify_command(command, self.keys):
            return self._reject(rid, name, CommandRejection.BAD_SIGNATURE)
        expires_at = _aware(command.expires_at)
        if expires_at.timestamp() < now.timestamp() - self.skew_s:
            return self._reject(rid, name, CommandRejection.EXPIRED, f"expired at {expires_at.isoformat()}")
        if _aware(command.ts).timestamp() > now.timestamp() + self.skew_s:
            return self._reject(rid, name, CommandRejection.NOT_YET_VALID, "issued in the future")
        if not await self.replay.remember(rid, expires_at.timestamp() + self.skew_s, now=now.timestamp()):
            return self._reject(rid, name, CommandRejection.REPLAYED)
        handler = self.registry.get(name)
        if handler is None:
            return self._reject(rid, name, CommandRejection.UNKNOWN_COMMAND)
        return command, handler

    async def _execute(self, command: Command, handler: Handler) -> CommandResult:
        rid, name = command.request_id, command.command
        log.info("command.started", request_id=rid, command=name, issued_by=command.issued_by)
        started = time.monotonic()
        self.executed += 1
        status, detail, output, reason = CommandStatus.OK, "", {}, None
        try:
            async with asyncio.timeout(self.handler_timeout_s):
                output = await handler(command)
        except CommandFailed as exc:
            status, detail, reason = CommandStatus.ERROR, str(exc)[:1000], exc.reason
        except TimeoutError:
            status, detail = CommandStatus.ERROR, f"timed out after {self.handler_timeout_s:g} s"
        except Exception as exc:
            log.exception("command.handler_crashed", request_id=rid, command=name)
            status, detail = CommandStatus.ERROR, f"internal error: {type(exc).__name__}"
        try:
            result = self._result(rid, name, status, reason=reason, detail=detail, result=output)
            if len(result.model_dump_json()) > MAX_PAYLOAD_BYTES - 1024:
                raise ValueError("result too large")
        except (ValidationError, ValueError, TypeError) as exc:
            log.error("command.bad_result", request_id=rid, command=name, error=str(exc)[:200])
            result = self._result(rid, name, CommandStatus.ERROR, detail="handler returned an invalid result")
        log.info(
            "command.finished",
            request_id=rid,
            command=name,
            status=result.status.value,
            duration_ms=round((time.monotonic() - started) * 1000, 1),
        )
        return result

    def _reject(self, request_id: str, name: str, reason: CommandRejection, detail: str = "") -> CommandResult:
        self.rejections[reason] += 1
        log.warning(
            "command.rejected",
            reason=reason.value,
            request_id=request_id,
            command=name,
            count=self.rejections[reason],
        )
        return self._result(request_id, name, CommandStatus.REJECTED, reason=reason.value, detail=detail)

    def _result(
        self,
        request_id: str,
        name: str,
        status: CommandStatus,
        *,
        reason: str | None = None,
        detail: str = "",
        result: dict[str, Any] | None = None,
    ) -> CommandResult:
        return CommandResult(
            node_id=self.node_id,
            boot_id=self.boot_id,
            seq=0,  # assigned by the outbox
            ts=self.clock(),
            request_id=request_id,
            command=name,
            status=status,
            reason=reason,
            detail=detail[:1000],
            result=result or {},
        )


def register_builtin_commands(
    registry: CommandRegistry,
    *,
    info: Callable[[], dict[str, Any]],
    publish_health: Callable[[], Awaitable[int]],
    outbox_stats: Callable[[], dict[str, int]],
) -> None:
    """Register ``ping`` (node info), ``health.publish`` (a health sample now) and ``outbox.stats``."""

    async def ping(command: Command) -> dict[str, Any]:
        return {"pong": True, **info()}

    async def health_publish(command: Command) -> dict[str, Any]:
        return {"seq": await publish_health()}

    async def stats(command: Command) -> dict[str, Any]:
        return dict(outbox_stats())

    registry.register(CommandType.PING.value, ping)
    registry.register(CommandType.PUBLISH_HEALTH.value, health_publish)
    registry.register(CommandType.OUTBOX_STATS.value, stats)
