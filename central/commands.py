"""Signs commands with central's Ed25519 key, publishes them to a node and records them."""

from __future__ import annotations

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
from varta.contract import Channel, Command, encode, topic, utcnow
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
    ) -> CommandView:
        """Record, audit and publish a command; the node's result arrives later through ingest."""
        node = await session.get(Node, node_id)
        if node is None:
            raise CommandError(404, f"unknown node {node_id}")
        ttl = ttl_s or self.settings.default_ttl_s
        signed = self.build(node, command, params, ttl, issued_by)
        record = CommandRecord(
            request_id=signed.request_id,
            node_id=node_id,
            command=command,
            params=params,
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
