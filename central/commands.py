"""Signs commands with central's Ed25519 key, publishes them to a node and records them.

Most commands are fire-and-forget (their result arrives later through ingest). A few need the node's answer
while an HTTP request waits (live view: the SDP answer): :meth:`CommandService.request` sends and waits for the
result, which :meth:`CommandService.run_results` reads on the command connection's own subscription to every
node's ``cmd/result`` (not through ingest: no batch delay, and with several central instances the one waiting
always sees it).
"""

from __future__ import annotations

import asyncio
import secrets
import uuid
from datetime import timedelta
from typing import Any

import structlog
from nacl.signing import SigningKey
from sqlalchemy.ext.asyncio import AsyncSession

from central.api.schemas import CommandView
from central.auth import audit
from central.config import CommandSettings
from central.store.fleet_models import CommandRecord, Node
from varta.aio import wait_for
from varta.contract import (
    Channel,
    Command,
    CommandResult,
    ContractError,
    decode_for_topic,
    encode,
    subscription,
    topic,
    utcnow,
)
from varta.mqtt import MqttClient, MqttError
from varta.signing import sign_command

log = structlog.get_logger(__name__)


class CommandError(Exception):
    """A command that could not be sent; ``status`` is the HTTP status the API answers with."""

    def __init__(self, status: int, detail: str) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail


class CommandService:
    """Central → edge commands: signed, deadline-bound, audited."""

    def __init__(self, mqtt: MqttClient, key: SigningKey, settings: CommandSettings, *, instance_id: str) -> None:
        self.mqtt = mqtt
        self.key = key
        self.settings = settings
        self.instance_id = instance_id
        self.boot_id = uuid.uuid4().hex
        self._seq = 0
        self._waiters: dict[str, asyncio.Future[CommandResult]] = {}
        self.results_invalid = 0
        """Payloads on ``cmd/result`` that broke the contract (counted, logged, ignored here; ingest records them)."""

    def subscribe_results(self) -> None:
        """Subscribe the command connection to every node's results; call before the connection runs."""
        self.mqtt.add_subscription(subscription(Channel.COMMAND_RESULT), qos=0)

    async def run_results(self) -> None:
        """Hand results on the command connection to whoever waits for them (forever; a supervised loop)."""
        while True:
            batch = await self.mqtt.next_batch(200, timeout=5.0)
            for message in batch:
                if message.payload:  # (an empty retained payload is nobody's result)
                    self.resolve(message.topic, message.payload)
            self.mqtt.ack_many(batch)

    def resolve(self, topic_name: str, payload: bytes) -> bool:
        """Complete the waiter of the result in *payload*, if any; True when one was waiting."""
        try:
            result = decode_for_topic(topic_name, payload)
        except ContractError as exc:
            self.results_invalid += 1
            log.warning("command.result_invalid", topic=topic_name[:200], reason=exc.reason.value)
            return False
        if not isinstance(result, CommandResult):
            return False
        waiter = self._waiters.get(result.request_id)
        if waiter is None or waiter.done():
            return False
        waiter.set_result(result)
        return True

    def build(self, node: Node, command: str, params: dict[str, Any], ttl_s: int, issued_by: str) -> Command:
        """A signed command for *node*."""
        self._seq += 1
        now = utcnow()
        unsigned = Command(
            node_id=node.node_id,
            boot_id=self.boot_id,
            seq=self._seq,
            ts=now,
            request_id=secrets.token_urlsafe(16),
            command=command,
            params=params,
            issued_by=issued_by,
            expires_at=now + timedelta(seconds=ttl_s),
        )
        return sign_command(unsigned, self.key)

    async def send(
        self,
        session: AsyncSession,
        *,
        node_id: str,
        command: str,
        params: dict[str, Any],
        issued_by: str,
        ttl_s: int | None = None,
        ip: str | None = None,
        recorded_params: dict[str, Any] | None = None,
    ) -> CommandView:
        """Record, audit and publish a command; the node's result arrives later through ingest.

        ``recorded_params`` (default: *params*) is what central stores and shows: commands carrying sealed
        secrets record a redacted copy.
        """
        node = await self._node(session, node_id)
        ttl = ttl_s or self.settings.default_ttl_s
        signed = self.build(node, command, params, ttl, issued_by)
        return await self._record_and_publish(session, node, signed, ttl, ip, recorded_params)

    async def request(
        self,
        session: AsyncSession,
        *,
        node_id: str,
        command: str,
        params: dict[str, Any],
        issued_by: str,
        ttl_s: int,
        timeout_s: float,
        ip: str | None = None,
        recorded_params: dict[str, Any] | None = None,
    ) -> tuple[CommandView, CommandResult]:
        """Send a command and wait for the node's result (``CommandError(504)`` when none comes in time).

        Needs :meth:`subscribe_results` before the connection started and :meth:`run_results` running.
        """
        node = await self._node(session, node_id)
        signed = self.build(node, command, params, ttl_s, issued_by)
        waiter: asyncio.Future[CommandResult] = asyncio.get_running_loop().create_future()
        self._waiters[signed.request_id] = waiter  # before publishing: a fast answer must not slip past
        try:
            view = await self._record_and_publish(session, node, signed, ttl_s, ip, recorded_params)
            try:
                result = await wait_for(waiter, timeout_s)
            except TimeoutError:
                log.warning("command.no_result", node_id=node_id, command=command, request_id=signed.request_id)
                raise CommandError(504, f"node {node_id} did not answer within {timeout_s:g} s") from None
        finally:
            self._waiters.pop(signed.request_id, None)
        return view, result

    @staticmethod
    async def _node(session: AsyncSession, node_id: str) -> Node:
        node = await session.get(Node, node_id)
        if node is None:
            raise CommandError(404, f"unknown node {node_id}")
        return node

    async def _record_and_publish(
        self,
        session: AsyncSession,
        node: Node,
        signed: Command,
        ttl: int,
        ip: str | None,
        recorded_params: dict[str, Any] | None,
    ) -> CommandView:
        node_id, command, params, issued_by = node.node_id, signed.command, signed.params, signed.issued_by
        record = CommandRecord(
            request_id=signed.request_id,
            node_id=node_id,
            command=command,
            params=params if recorded_params is None else recorded_params,
            issued_by=issued_by,
            issued_at=signed.ts,
            expires_at=signed.expires_at,
            status="sent",
            reason=None,
            detail="",
            result=None,
            result_at=None,
        )
        session.add(record)
        await audit.record(
            session,
            actor=issued_by,
            action="command.sent",
            target=node_id,
            detail={"command": command, "request_id": signed.request_id, "ttl_s": ttl},
            ip=ip,
        )
        await session.commit()
        try:
            await self.mqtt.publish(
                topic(node.site, node_id, Channel.COMMAND), encode(signed), qos=1, expiry_s=ttl, timeout=5.0
            )
        except MqttError as exc:
            record.status = "send_failed"
            record.detail = str(exc)[:500]
            await session.commit()
            log.warning("command.send_failed", node_id=node_id, command=command, error=str(exc))
            raise CommandError(503, f"broker unavailable: {exc}") from None
        log.info("command.sent", node_id=node_id, command=command, request_id=signed.request_id, by=issued_by)
        return CommandView.model_validate(record)
