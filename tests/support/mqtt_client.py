"""Test helper around :class:`varta.mqtt.MqttClient`: connect, publish, subscribe and collect what arrives.

    async with MqttTestClient(broker.settings(username="central", password="pw"),
                              subscriptions=["varta/v1/#"]) as central:
        await node.publish(topic, payload)
        message = await central.wait_for(lambda m: m.topic == topic)

Entering the context waits until the connection is up *and* the broker has processed the subscriptions (a
QoS 1 round trip on the same connection), so a message published by another client afterwards is seen.
Every message received is acknowledged and kept in :attr:`MqttTestClient.received`.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time
import uuid
from collections.abc import Callable, Sequence
from types import TracebackType
from typing import Self

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion
from pydantic import BaseModel

from varta.contract import encode
from varta.mqtt import InboundMessage, MqttClient, MqttSettings, PublishRejected, Will

#: Topic of the round trip that proves the subscriptions are active (outside the Varta tree on purpose:
#: a broker with an ACL refuses it, which still proves the broker processed everything sent before).
SYNC_TOPIC = "varta-test/sync"


class ConnectFailed(AssertionError):
    """The client did not get connected in time."""


class MqttTestClient:
    """One background :class:`MqttClient` for a test, used as an ``async with`` context."""

    def __init__(
        self,
        settings: MqttSettings,
        *,
        subscriptions: Sequence[str] = (),
        qos: int = 1,
        client_id: str | None = None,
        will: Will | None = None,
        clean_start: bool = True,
        connect_timeout: float = 10.0,
    ) -> None:
        self.client = MqttClient(
            settings,
            client_id=client_id or f"test-{uuid.uuid4().hex[:10]}",
            will=will,
            clean_start=clean_start,
        )
        for topic_filter in subscriptions:
            self.client.add_subscription(topic_filter, qos)
        self.connect_timeout = connect_timeout
        self.received: list[InboundMessage] = []
        self._task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> Self:
        self._task = asyncio.create_task(self.client.run())
        try:
            await self.client.wait_connected(self.connect_timeout)
        except TimeoutError:
            await self.close()
            raise ConnectFailed(f"{self.client.client_id} not connected after {self.connect_timeout} s") from None
        await self.sync()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    async def close(self) -> None:
        """Disconnect cleanly and stop the background task."""
        await self.client.stop()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    @property
    def protocol(self) -> str:
        """``"5"`` or ``"3.1.1"``."""
        return self.client.protocol_name

    async def sync(self) -> None:
        """Return once the broker processed everything this client sent before (subscriptions included)."""
        with contextlib.suppress(PublishRejected):
            await self.client.publish(f"{SYNC_TOPIC}/{self.client.client_id}", b"", qos=1)

    async def publish(
        self,
        topic: str,
        payload: bytes | BaseModel,
        *,
        qos: int = 1,
        retain: bool = False,
        expiry_s: int | None = None,
    ) -> None:
        """Publish raw bytes or a contract model (encoded); raises :class:`PublishRejected` when refused."""
        data = encode(payload) if isinstance(payload, BaseModel) else payload
        await self.client.publish(topic, data, qos=qos, retain=retain, expiry_s=expiry_s)

    async def _receive(self, timeout: float) -> list[InboundMessage]:
        batch = await self.client.next_batch(timeout=max(timeout, 0.0))
        for message in batch:
            self.client.ack(message)
        self.received.extend(batch)
        return batch

    async def wait_for(self, predicate: Callable[[InboundMessage], bool], timeout: float = 5.0) -> InboundMessage:
        """The first message (already received or arriving within *timeout*) that satisfies *predicate*."""
        for message in self.received:
            if predicate(message):
                return message
        deadline = time.monotonic() + timeout
        while (remaining := deadline - time.monotonic()) > 0:
            for message in await self._receive(remaining):
                if predicate(message):
                    return message
        raise TimeoutError(f"no matching message in {timeout} s; received topics: {self.topics()}")

    async def collect(self, count: int, timeout: float = 5.0) -> list[InboundMessage]:
        """Wait until at least *count* messages were received in all (or *timeout*); returns all of them."""
        deadline = time.monotonic() + timeout
        while len(self.received) < count and (remaining := deadline - time.monotonic()) > 0:
            await self._receive(remaining)
        return list(self.received)

    async def drain(self, duration: float) -> list[InboundMessage]:
        """Keep receiving for *duration* seconds; returns everything received so far."""
        deadline = time.monotonic() + duration
        while (remaining := deadline - time.monotonic()) > 0:
            await self._receive(remaining)
        return list(self.received)

    def topics(self) -> list[str]:
        """Topics of every message received so far, in arrival order."""
        return [m.topic for m in self.received]


def connack_reason(settings: MqttSettings, *, timeout: float = 5.0) -> str:
    """Connect once with plain paho (no retries) and return the broker's CONNACK reason, e.g. ``"Success"``.

    Uses ``settings.protocol`` (``"auto"`` means MQTT 5). Returns ``"no CONNACK"`` when the connection closed or
    timed out without one (e.g. a TLS handshake the broker refused).
    """
    protocol = paho.MQTTv311 if settings.protocol == "3.1.1" else paho.MQTTv5
    client = paho.Client(
        callback_api_version=CallbackAPIVersion.VERSION2,
        client_id=f"probe-{uuid.uuid4().hex[:10]}",
        protocol=protocol,
    )
    if settings.username is not None:
        client.username_pw_set(settings.username, settings.resolved_password())
    if settings.tls is not None:
        client.tls_set_context(settings.tls.context())
    outcome: list[str] = []
    client.on_connect = lambda c, u, f, rc, p: outcome.append(str(rc))
    try:
        client.connect(settings.host, settings.port, keepalive=10)
    except (OSError, ValueError):
        return "no CONNACK"
    deadline = time.monotonic() + timeout
    try:
        while not outcome and time.monotonic() < deadline:
            if client.loop(timeout=0.1) != paho.MQTT_ERR_SUCCESS:
                break
    except OSError:
        pass
    finally:
        with contextlib.suppress(Exception):
            client.disconnect()
    return outcome[0] if outcome else "no CONNACK"


def vanish(settings: MqttSettings, will: Will, *, client_id: str | None = None, timeout: float = 5.0) -> None:
    """Connect with a last *will*, then drop the TCP connection without DISCONNECT (so the broker fires it)."""
    protocol = paho.MQTTv311 if settings.protocol == "3.1.1" else paho.MQTTv5
    client = paho.Client(
        callback_api_version=CallbackAPIVersion.VERSION2,
        client_id=client_id or f"vanish-{uuid.uuid4().hex[:10]}",
        protocol=protocol,
    )
    if settings.username is not None:
        client.username_pw_set(settings.username, settings.resolved_password())
    if settings.tls is not None:
        client.tls_set_context(settings.tls.context())
    client.will_set(will.topic, will.payload, qos=will.qos, retain=will.retain)
    outcome: list[str] = []
    client.on_connect = lambda c, u, f, rc, p: outcome.append(str(rc))
    client.connect(settings.host, settings.port, keepalive=10)
    deadline = time.monotonic() + timeout
    while not outcome and time.monotonic() < deadline:
        client.loop(timeout=0.1)
    if outcome != ["Success"]:
        raise ConnectFailed(f"connect with a will refused: {outcome or 'timeout'}")
    sock = client.socket()
    assert isinstance(sock, socket.socket)
    sock.shutdown(socket.SHUT_RDWR)
    sock.close()
