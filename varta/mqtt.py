"""A small asyncio communicator over paho-mqtt, shared by the edge agent and central.

Each connection attempt uses a fresh paho client running its network loop in its own thread, so nothing here
blocks the event loop. The connection is kept up by :meth:`MqttClient.run` with exponential back-off. MQTT 5 is
tried first; with ``protocol: auto`` a broker that refuses MQTT 5 (e.g. the embedded amqtt broker of the demo) is
spoken to in MQTT 3.1.1 from then on.

* :meth:`MqttClient.publish` returns once the broker acknowledged the message (PUBACK for QoS 1) and raises
  :class:`PublishRejected` when it refused it (MQTT 5 reason codes, e.g. "Not authorized").
* Inbound messages are buffered and handed out in batches by :meth:`MqttClient.next_batch`; QoS 1 messages are
  acknowledged only when the consumer calls :meth:`MqttClient.ack` (after it stored them), so a crash before that
  makes the broker deliver them again.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import socket
import ssl
import threading
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol

import paho.mqtt.client as paho
import structlog
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from pydantic import BaseModel, ConfigDict, Field, SecretStr, model_validator

from varta.aio import wait_for
from varta.throttle import LogThrottle

log = structlog.get_logger(__name__)

SUBACK_BUSY_LIMIT_S = 120.0  # longest wait for a SUBACK queued behind a backlog that is still arriving
UNSUPPORTED_PROTOCOL = 132  # MQTT 5 CONNACK reason code; paho maps a 3.1.1 "refused: protocol version" to it too


class TlsSettings(BaseModel):
    """TLS towards the broker (server verification always on; a client certificate is optional)."""

    model_config = ConfigDict(extra="forbid")

    ca_file: Path | None = Field(default=None, description="CA bundle that signed the broker's certificate")
    cert_file: Path | None = Field(default=None, description="client certificate (PEM), for mutual TLS")
    key_file: Path | None = Field(default=None, description="client private key (PEM)")

    def context(self) -> ssl.SSLContext:
        """An SSL context for these settings (TLS ≥ 1.2, hostname checked)."""
        ctx = ssl.create_default_context(cafile=str(self.ca_file) if self.ca_file else None)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        if self.cert_file:
            ctx.load_cert_chain(str(self.cert_file), str(self.key_file) if self.key_file else None)
        return ctx


class MqttSettings(BaseModel):
    """How to reach the broker."""

    model_config = ConfigDict(extra="forbid")

    host: str = "127.0.0.1"
    port: int = Field(default=1883, ge=1, le=65535)
    username: str | None = None
    password: SecretStr | None = None
    password_file: Path | None = Field(default=None, description="read the password from this file instead")
    tls: TlsSettings | None = None
    protocol: Literal["auto", "5", "3.1.1"] = "auto"
    keepalive_s: int = Field(default=10, ge=2, le=15, description="MQTT keepalive; ≤ 15 s so outages show fast")
    session_expiry_s: int = Field(default=3600, ge=0, description="how long the broker keeps our session")
    reconnect_min_s: float = Field(default=0.5, gt=0)
    reconnect_max_s: float = Field(default=30.0, gt=0)
    connect_timeout_s: float = Field(default=5.0, gt=0)
    max_inflight: int = Field(default=100, ge=1, le=65535)

    @model_validator(mode="after")
    def _one_password_source(self) -> MqttSettings:
        if self.password is not None and self.password_file is not None:
            raise ValueError("give either password or password_file, not both")
        return self

    def resolved_password(self) -> str | None:
        """The password, read from ``password_file`` when that is set."""
        if self.password_file is not None:
            return self.password_file.read_text().strip()
        return self.password.get_secret_value() if self.password else None


class MqttError(Exception):
    """Base class of communicator errors."""


class NotConnected(MqttError):
    """The broker is not reachable right now; try again after reconnecting."""


class PublishRejected(MqttError):
    """The broker refused a publish (MQTT 5 reason code)."""

    def __init__(self, reason: str, code: int) -> None:
        super().__init__(f"broker refused publish: {reason} ({code})")
        self.reason = reason
        self.code = code


@dataclass(frozen=True, slots=True)
class Will:
    """The last will the broker publishes when we vanish without a clean disconnect."""

    topic: str
    payload: bytes
    qos: int = 1
    retain: bool = True


@dataclass(slots=True)
class InboundMessage:
    """One message received from the broker."""

    topic: str
    payload: bytes
    qos: int
    retain: bool
    mid: int
    expiry_s: int | None = None
    connection: int = 0  # which connection delivered it; acks for older connections are moot


@dataclass(slots=True)
class Subscription:
    topic_filter: str
    qos: int
    shared_group: str | None = None

    def filter_for(self) -> str:
        # Shared subscriptions are MQTT 5, but Mosquitto honours `$share/…` from 3.1.1 clients as well.
        if self.shared_group:
            return f"$share/{self.shared_group}/{self.topic_filter}"
        return self.topic_filter


class _BufferedSocket:
    """A socket whose ``recv`` is served from one large read.

    paho reads every packet as ``recv(1)`` (type), ``recv(1)`` per length byte and ``recv(n)`` (body): three to
    five syscalls and a ``select()`` per message. Reading 256 KiB at a time and reporting the unread rest through
    ``pending()`` (which paho already honours for TLS) lets one wake-up parse every packet that arrived.
    """

    __slots__ = ("_data", "_pos", "raw")

    def __init__(self, raw: Any) -> None:
        self.raw = raw
        self._data = b""
        self._pos = 0

    def recv(self, size: int) -> bytes:
        data, pos = self._data, self._pos
        if pos >= len(data):
            data = self.raw.recv(_RECV_CHUNK)  # raises BlockingIOError / SSLWantReadError when nothing is there
            assert isinstance(data, bytes)
            if not data:
                return data
            self._data, pos = data, 0
        end = pos + size
        self._pos = end
        return data[pos:end]

    def pending(self) -> int:
        inner = self.raw.pending() if hasattr(self.raw, "pending") else 0
        return max(0, len(self._data) - self._pos) + inner

    def __getattr__(self, name: str) -> Any:
        return getattr(self.raw, name)


_RECV_CHUNK = 256 * 1024
_PAUSE_S = 0.005


class _PahoClient(paho.Client):
    """paho's client reading through :class:`_BufferedSocket` and parsing every buffered packet per wake-up.

    ``read_paused`` (set by :class:`MqttClient`) stops reading while the consumer lags: TCP then pushes back to
    the broker, which keeps the rest queued. (Mosquitto 2.0 was seen sending a lagging 3.1.1 subscriber three
    times its ``max_inflight_messages``, so the broker's window alone does not bound our memory.)
    """

    read_paused: Callable[[], bool] = staticmethod(lambda: False)

    def _create_socket(self) -> Any:
        return _BufferedSocket(super()._create_socket())

    def _handle_on_message(self, message: paho.MQTTMessage) -> None:
        # Varta registers no per-topic callbacks: skip paho's topic matcher and its locks (~5 % of ingest CPU).
        on_message = self._on_message
        if on_message is None:
            return
        try:
            on_message(self, self._userdata, message)
        except Exception as err:
            self._easy_log(paho.MQTT_LOG_ERR, "Caught exception in on_message: %s", err)
            if not self.suppress_exceptions:
                raise

    def loop_read(self, max_packets: int = 1) -> MQTTErrorCode:
        if self.read_paused():
            time.sleep(_PAUSE_S)  # the socket stays readable: do not spin; writes (acks) go on in between
            return MQTTErrorCode.MQTT_ERR_SUCCESS
        # paho reads at most (messages in flight) packets per select(); with acks left to the application that
        # is one packet per select(). Read on while the buffer holds more.
        while True:
            sock = self._sock
            if sock is None:
                return MQTTErrorCode.MQTT_ERR_NO_CONN
            rc = self._packet_read()
            if rc > 0:
                return self._loop_rc_handle(rc)
            sock = self._sock
            if rc == MQTTErrorCode.MQTT_ERR_AGAIN or not isinstance(sock, _BufferedSocket) or not sock.pending():
                return MQTTErrorCode.MQTT_ERR_SUCCESS
            if self.read_paused():  # the next wake-up sleeps; what was read stays buffered
                return MQTTErrorCode.MQTT_ERR_SUCCESS


@dataclass(slots=True)
class _Connection:
    """One paho client = one connection attempt."""

    number: int
    client: paho.Client
    protocol: int
    connected: asyncio.Event = field(default_factory=asyncio.Event)
    closed: asyncio.Event = field(default_factory=asyncio.Event)
    connack_code: int | None = None
    close_reason: str = ""
    pending: dict[int, asyncio.Future[None]] = field(default_factory=dict)
    early_acks: dict[int, tuple[bool, str, int]] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)
    received: int = 0  # messages delivered on this connection
    ready: bool = False  # CONNACK received (paho thread)
    paused: bool = False  # reading stopped: the consumer lags (paho thread)


OnConnect = Callable[[], Awaitable[None]]


class Subscriber(Protocol):
    """What a consumer of inbound messages (central's ingest) needs of a connection."""

    connected: asyncio.Event
    inbound_paused: int
    protocol_errors: int

    @property
    def protocol_name(self) -> str:
        """The MQTT version spoken."""

    def add_subscription(self, topic_filter: str, qos: int = 1, *, shared_group: str | None = None) -> None:
        """Subscribe on every (re)connect."""

    async def run(self) -> None:
        """Stay connected until cancelled."""

    async def stop(self) -> None:
        """Disconnect cleanly."""

    async def next_batch(self, max_items: int = 1000, timeout: float | None = None) -> list[InboundMessage]:
        """Up to *max_items* received messages (empty on timeout)."""

    def ack_many(self, messages: Sequence[InboundMessage]) -> None:
        """Acknowledge stored messages."""


class MqttClient:
    """Keeps one MQTT connection up and offers publish / subscribe / batched receive over asyncio."""

    def __init__(
        self,
        settings: MqttSettings,
        *,
        client_id: str | None = None,
        will: Will | None = None,
        clean_start: bool = False,
        inbound_limit: int = 50_000,
    ) -> None:
        self.settings = settings
        self.client_id = client_id or f"varta-{uuid.uuid4().hex[:12]}"
        self.will = will
        self.clean_start = clean_start
        self._subs: list[Subscription] = []
        self._on_connect: list[OnConnect] = []
        self._conn: _Connection | None = None
        self._count = 0
        self._protocol = paho.MQTTv311 if settings.protocol == "3.1.1" else paho.MQTTv5
        self._protocol_known = settings.protocol != "auto"
        self._inbound: collections.deque[InboundMessage] = collections.deque()
        self._inbound_limit = inbound_limit
        self._wake = asyncio.Event()
        self._wake_pending = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self.connected = asyncio.Event()
        self.disconnected = asyncio.Event()
        self.disconnected.set()
        self.connections = 0  # successful connections so far
        self.failed_attempts = 0  # connection attempts that failed (the first protocol switch of "auto" is not one)
        self._fallbacks = 0
        self.inbound_paused = 0  # times reading stopped because the consumer lagged (backpressure)
        self.protocol_errors = 0  # paho drops a connection that breaks the protocol itself and does not say so
        self._pause_log = LogThrottle(10.0)
        self._stopping = False

    # ----------------------------------------------------------------------------------------- public API

    @property
    def protocol_name(self) -> str:
        """``"5"`` or ``"3.1.1"``: the protocol of the current (or next) connection."""
        return "5" if self._protocol == paho.MQTTv5 else "3.1.1"

    @property
    def connection_number(self) -> int:
        """Number of the current connection (increases on every reconnect)."""
        return self._conn.number if self._conn else 0

    def add_subscription(self, topic_filter: str, qos: int = 1, *, shared_group: str | None = None) -> None:
        """Subscribe to *topic_filter* on every (re)connect (as ``$share/<group>/…`` under MQTT 5 if given)."""
        self._subs.append(Subscription(topic_filter, qos, shared_group))

    def add_on_connect(self, callback: OnConnect) -> None:
        """Run *callback* after every successful (re)connect, once subscriptions are made."""
        self._on_connect.append(callback)

    async def wait_connected(self, timeout: float | None = None) -> None:
        """Wait until connected (raises TimeoutError)."""
        await wait_for(self.connected.wait(), timeout)

    async def run(self) -> None:
        """Connect and stay connected until cancelled, backing off between failed attempts."""
        self._loop = asyncio.get_running_loop()
        delay = self.settings.reconnect_min_s
        try:
            while not self._stopping:
                ok = await self._connect_once()
                if ok:
                    delay = self.settings.reconnect_min_s
                    assert self._conn is not None
                    await self._conn.closed.wait()
                    self._mark_down(self._conn)
                if self._stopping:
                    break
                await asyncio.sleep(delay)
                delay = min(delay * 2, self.settings.reconnect_max_s)
        finally:
            if self._conn is not None:
                self._teardown(self._conn)

    async def publish(
        self,
        topic: str,
        payload: bytes,
        *,
        qos: int = 1,
        retain: bool = False,
        expiry_s: int | None = None,
        timeout: float = 10.0,
    ) -> None:
        """Publish and wait for the broker's acknowledgement (QoS 1) or the write (QoS 0)."""
        conn = self._conn
        if conn is None or not conn.connected.is_set() or conn.closed.is_set():
            raise NotConnected("not connected to the broker")
        props = None
        if expiry_s is not None and conn.protocol == paho.MQTTv5:
            props = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
            props.MessageExpiryInterval = max(1, int(expiry_s))
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[None] = loop.create_future()
        info = conn.client.publish(topic, payload, qos=qos, retain=retain, properties=props)
        if info.rc != paho.MQTT_ERR_SUCCESS:
            raise NotConnected(f"publish failed: {paho.error_string(info.rc)}")
        with conn.lock:
            early = conn.early_acks.pop(info.mid, None)
            if early is None:
                conn.pending[info.mid] = fut
        if early is not None:
            self._settle(fut, *early)
        try:
            await wait_for(fut, timeout)
        except TimeoutError:
            with conn.lock:
                conn.pending.pop(info.mid, None)
            raise NotConnected("no acknowledgement from the broker in time") from None

    def ack(self, message: InboundMessage) -> None:
        """Acknowledge a QoS 1 message after it was processed (no-op for QoS 0 or a closed connection)."""
        self.ack_many((message,))

    def ack_many(self, messages: Sequence[InboundMessage]) -> None:
        """Acknowledge a batch of messages, waking paho's network thread once rather than once per message."""
        conn = self._conn
        if conn is None or conn.closed.is_set():
            return
        todo = [m for m in messages if m.qos > 0 and m.connection == conn.number]
        if not todo:
            return
        client = conn.client
        # paho writes a wake-up byte to its socket pair for every queued packet (a syscall each); with the pair
        # detached while the PUBACKs are queued, one byte afterwards wakes the network thread for all of them.
        wake = getattr(client, "_sockpairW", None)
        if wake is not None and len(todo) > 1:
            client._sockpairW = None
            try:
                for m in todo:
                    client.ack(m.mid, m.qos)
            finally:
                client._sockpairW = wake
            with contextlib.suppress(OSError):
                wake.send(b"0")
        else:
            for m in todo:
                client.ack(m.mid, m.qos)

    async def next_batch(self, max_items: int = 1000, timeout: float | None = None) -> list[InboundMessage]:
        """Wait for inbound messages and return up to *max_items* of them (empty list on timeout)."""
        if not self._inbound:
            self._wake.clear()
            self._wake_pending = False
            if not self._inbound:
                with contextlib.suppress(TimeoutError):
                    await wait_for(self._wake.wait(), timeout)
        self._wake_pending = False
        batch: list[InboundMessage] = []
        popleft = self._inbound.popleft
        while self._inbound and len(batch) < max_items:
            batch.append(popleft())
        return batch

    async def stop(self, final: tuple[str, bytes, bool] | None = None) -> None:
        """Disconnect cleanly, first publishing *final* (topic, payload, retain) if connected."""
        self._stopping = True
        conn = self._conn
        if conn is None:
            return
        if final is not None and conn.connected.is_set() and not conn.closed.is_set():
            with contextlib.suppress(MqttError):
                await self.publish(final[0], final[1], qos=1, retain=final[2], timeout=3.0)
        conn.client.disconnect()
        with contextlib.suppress(TimeoutError):
            await wait_for(conn.closed.wait(), 3.0)
        self._teardown(conn)

    # ----------------------------------------------------------------------------------------- internals

    def _new_client(self, number: int) -> _Connection:
        s = self.settings
        protocol = self._protocol
        client = _PahoClient(
            callback_api_version=CallbackAPIVersion.VERSION2,
            client_id=self.client_id,
            protocol=protocol,
            clean_session=self.clean_start if protocol != paho.MQTTv5 else None,
            manual_ack=True,
            reconnect_on_failure=False,
        )
        conn = _Connection(number=number, client=client, protocol=protocol)
        client.read_paused = lambda: self._read_paused(conn)
        password = s.resolved_password()
        if s.username is not None:
            client.username_pw_set(s.username, password)
        if s.tls is not None:
            client.tls_set_context(s.tls.context())
        if self.will is not None:
            client.will_set(self.will.topic, self.will.payload, qos=self.will.qos, retain=self.will.retain)
        client.max_inflight_messages_set(s.max_inflight)
        client.max_queued_messages_set(0)
        client.on_connect = lambda c, u, f, rc, p: self._cb_connect(conn, rc)
        client.on_disconnect = lambda c, u, f, rc, p: self._cb_disconnect(conn, str(rc))
        client.on_connect_fail = lambda c, u: self._cb_disconnect(conn, "connect failed")
        client.on_publish = lambda c, u, mid, rc, p: self._cb_publish(conn, mid, rc)
        client.on_message = lambda c, u, m: self._cb_message(conn, m)
        client.on_subscribe = lambda c, u, mid, codes, p: self._cb_subscribe(conn, mid, codes)
        return conn

    async def _connect_once(self) -> bool:
        self._count += 1
        # Building the client reads the password file and TLS material: file I/O stays off the event loop.
        conn = await asyncio.to_thread(self._new_client, self._count)
        self._conn = conn
        s = self.settings
        props = None
        if conn.protocol == paho.MQTTv5:
            props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
            props.SessionExpiryInterval = 0 if self.clean_start else s.session_expiry_s
            props.ReceiveMaximum = 65535
        try:
            conn.client.connect_async(
                s.host,
                s.port,
                keepalive=s.keepalive_s,
                clean_start=self.clean_start if conn.protocol == paho.MQTTv5 else paho.MQTT_CLEAN_START_FIRST_ONLY,
                properties=props,
            )
            conn.client.loop_start()
        except (OSError, ValueError) as exc:
            log.warning("mqtt.connect_error", error=str(exc), host=s.host, port=s.port)
            self.failed_attempts += 1
            self._teardown(conn)
            return False
        done = asyncio.ensure_future(conn.connected.wait())
        closed = asyncio.ensure_future(conn.closed.wait())
        try:
            await asyncio.wait({done, closed}, timeout=s.connect_timeout_s, return_when=asyncio.FIRST_COMPLETED)
        finally:
            done.cancel()
            closed.cancel()
        if not conn.connected.is_set() or conn.closed.is_set():
            # A broker that does not speak MQTT 5 either refuses it in CONNACK or never answers / hangs up.
            refused_protocol = conn.connack_code == UNSUPPORTED_PROTOCOL or (
                conn.connack_code is None and conn.close_reason != "connect failed"
            )
            if self.settings.protocol == "auto" and not self._protocol_known and refused_protocol:
                self._protocol = paho.MQTTv311 if self._protocol == paho.MQTTv5 else paho.MQTTv5
                log.info("mqtt.protocol_fallback", protocol=self.protocol_name)
                self._fallbacks += 1
                if self._fallbacks > 1:  # both protocols went unanswered: the broker is not reachable
                    self.failed_attempts += 1
            else:
                log.warning(
                    "mqtt.connect_failed",
                    host=s.host,
                    port=s.port,
                    reason=conn.close_reason
                    or (f"connack {conn.connack_code}" if conn.connack_code is not None else "timeout"),
                )
                self.failed_attempts += 1
            self._teardown(conn)
            return False
        self._protocol_known = True
        if not await self._subscribe_all(conn):
            self.failed_attempts += 1
            self._teardown(conn)
            return False
        self.connections += 1
        log.info("mqtt.connected", host=s.host, port=s.port, protocol=self.protocol_name, client_id=self.client_id)
        self.disconnected.clear()
        self.connected.set()
        for callback in self._on_connect:
            try:
                await callback()
            except MqttError as exc:
                log.warning("mqtt.on_connect_failed", error=str(exc))
        return True

    async def _subscribe_all(self, conn: _Connection) -> bool:
        """Subscribe and wait for every SUBACK, so nothing published after "connected" can be missed."""
        loop = asyncio.get_running_loop()
        waiting: list[tuple[str, asyncio.Future[None]]] = []
        for sub in self._subs:
            topic_filter = sub.filter_for()
            fut: asyncio.Future[None] = loop.create_future()
            rc, mid = conn.client.subscribe(topic_filter, qos=sub.qos)
            if rc != paho.MQTT_ERR_SUCCESS or mid is None:
                log.warning("mqtt.subscribe_failed", topic_filter=topic_filter, error=paho.error_string(rc))
                return False
            with conn.lock:
                early = conn.early_acks.pop(mid, None)
                if early is None:
                    conn.pending[mid] = fut
            if early is not None:
                self._settle(fut, *early)
            waiting.append((topic_filter, fut))
        for topic_filter, fut in waiting:
            try:
                await self._await_suback(conn, fut)
            except PublishRejected as exc:  # a refused subscription is a configuration error: say so, carry on
                log.error("mqtt.subscription_refused", topic_filter=topic_filter, reason=exc.reason)
            except TimeoutError:  # a busy broker may be slow to answer: the subscription is probably in place
                log.warning("mqtt.subscribe_timeout", topic_filter=topic_filter)
            except NotConnected:
                return False
        return True

    async def _await_suback(self, conn: _Connection, fut: asyncio.Future[None]) -> None:
        """Wait for one SUBACK; a broker draining a queued backlog sends it after the backlog, so keep waiting
        (up to ``SUBACK_BUSY_LIMIT_S``) while messages are still arriving on this connection."""
        loop = asyncio.get_running_loop()
        give_up = loop.time() + SUBACK_BUSY_LIMIT_S
        while True:
            seen = conn.received
            try:
                await wait_for(asyncio.shield(fut), self.settings.connect_timeout_s)
                return
            except TimeoutError:
                if conn.received == seen or loop.time() >= give_up or conn.closed.is_set():
                    fut.cancel()
                    raise

    def _mark_down(self, conn: _Connection) -> None:
        self.connected.clear()
        self.disconnected.set()
        log.warning("mqtt.disconnected", reason=conn.close_reason)
        self._teardown(conn)

    def _teardown(self, conn: _Connection) -> None:
        # paho's loop_stop() joins its network thread, which can sit in select() for up to a second: never do
        # that on the event loop (measured: a 1 s stall on every disconnect). A short-lived thread does it.
        threading.Thread(target=_close_paho, args=(conn.client,), name="mqtt-teardown", daemon=True).start()
        with conn.lock:
            pending = list(conn.pending.values())
            conn.pending.clear()
        for fut in pending:
            _fail(fut, NotConnected("connection lost before acknowledgement"))

    # paho callbacks (network thread) ---------------------------------------------------------------------

    def _read_paused(self, conn: _Connection) -> bool:
        # Only once connected: CONNACK and SUBACKs must still be read after a reconnect with a full buffer.
        paused = conn.ready and len(self._inbound) >= self._inbound_limit
        if paused and not conn.paused:
            self.inbound_paused += 1
            log_backpressure(self._pause_log, len(self._inbound), self._inbound_limit, self.inbound_paused)
        conn.paused = paused
        return paused

    def _call(self, fn: Callable[..., Any], *args: Any) -> None:
        loop = self._loop
        if loop is not None and not loop.is_closed():
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(fn, *args)

    def _cb_connect(self, conn: _Connection, rc: Any) -> None:
        sock = conn.client.socket()
        sock = getattr(sock, "raw", sock)
        if isinstance(sock, socket.socket):
            # Small packets (PUBACKs, single publishes) must not wait for Nagle + delayed ACK (~40 ms).
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        conn.connack_code = int(rc.value) if hasattr(rc, "value") else int(rc)
        conn.ready = not rc.is_failure
        if rc.is_failure:
            conn.close_reason = f"connack refused: {rc}"
            self._call(conn.closed.set)
        else:
            self._call(conn.connected.set)

    def _cb_disconnect(self, conn: _Connection, reason: str) -> None:
        conn.close_reason = conn.close_reason or reason
        self._call(conn.closed.set)
        with conn.lock:
            pending = list(conn.pending.values())
            conn.pending.clear()
        for fut in pending:
            self._call(_fail, fut, NotConnected(f"connection lost: {reason}"))

    def _cb_publish(self, conn: _Connection, mid: int, rc: Any) -> None:
        failed = bool(getattr(rc, "is_failure", False))
        outcome = (failed, str(rc), int(getattr(rc, "value", 0)))
        with conn.lock:
            fut = conn.pending.pop(mid, None)
            if fut is None:
                conn.early_acks[mid] = outcome
                return
        self._call(self._settle, fut, *outcome)

    def _cb_subscribe(self, conn: _Connection, mid: int, codes: list[Any]) -> None:
        refused = [c for c in codes if getattr(c, "is_failure", False)]
        outcome = (
            bool(refused),
            str(refused[0]) if refused else "",
            int(getattr(refused[0], "value", 0)) if refused else 0,
        )
        with conn.lock:
            fut = conn.pending.pop(mid, None)
            if fut is None:
                conn.early_acks[mid] = outcome
                return
        self._call(self._settle, fut, *outcome)

    @staticmethod
    def _settle(fut: asyncio.Future[None], failed: bool, reason: str, code: int) -> None:
        if fut.done():
            return
        if failed:
            fut.set_exception(PublishRejected(reason, code))
        else:
            fut.set_result(None)

    def _cb_message(self, conn: _Connection, m: paho.MQTTMessage) -> None:
        conn.received += 1
        expiry = getattr(m.properties, "MessageExpiryInterval", None) if m.properties else None
        payload = m.payload if isinstance(m.payload, bytes) else bytes(m.payload)
        try:
            name = m.topic
        except UnicodeDecodeError:  # brokers refuse such topics; if one gets through, the consumer rejects it
            name = m._topic.decode("utf-8", "replace")
        self._inbound.append(InboundMessage(name, payload, m.qos, bool(m.retain), m.mid, expiry, conn.number))
        if not self._wake_pending:
            self._wake_pending = True
            self._call(self._wake.set)


def log_backpressure(throttle: LogThrottle, buffered: int, limit: int, pauses: int) -> None:
    """Say (at most once per the throttle's interval) that reading paused because the consumer lags."""
    if throttle.allow("inbound_backpressure", time.monotonic()) is not None:
        log.warning("mqtt.inbound_backpressure", buffered=buffered, limit=limit, pauses=pauses)


def _close_paho(client: paho.Client) -> None:
    with contextlib.suppress(Exception):
        client.disconnect()
    with contextlib.suppress(Exception):
        client.loop_stop()


def _fail(fut: asyncio.Future[None], exc: BaseException) -> None:
    if not fut.done():
        fut.set_exception(exc)
        fut.exception()  # mark retrieved: nobody may be waiting any more (e.g. after stop())
