"""A receive-only MQTT 3.1.1 subscriber on asyncio's own transport: central's ingest hot path.

paho-mqtt handles every packet in Python on a thread of its own (~27 µs per message here, and that thread competes
with the event loop for the GIL); parsing PUBLISH packets straight out of asyncio's receive buffer costs ~5 µs
(``bench/mqtt_receive.py``). This client does only what ingest needs: CONNECT (persistent session, credentials,
TLS), SUBSCRIBE, receive PUBLISH at QoS 0/1, PUBACK on request after the consumer stored the messages, keepalive,
DISCONNECT. It publishes nothing; central's commands keep their own :class:`varta.mqtt.MqttClient` (MQTT 5).

Same contract as :class:`varta.mqtt.MqttClient` for the consumer: :meth:`Mqtt311Subscriber.next_batch` hands out
batches, :meth:`Mqtt311Subscriber.ack_many` acknowledges them (only on the connection that delivered them: after a
reconnect the broker delivers unacknowledged messages again), and reading pauses while the consumer holds
``inbound_limit`` messages, so TCP pushes back to the broker instead of our memory growing.

Anything the broker sends that breaks the protocol (a malformed length, a packet over ``max_packet_bytes``, an
unexpected packet type, QoS 2 although we subscribe at most at QoS 1) is counted in :attr:`protocol_errors`, logged,
and ends the connection; :meth:`run` then reconnects with back-off, as it does after any loss.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import socket
import struct
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import structlog

from varta.aio import wait_for
from varta.mqtt import InboundMessage, MqttSettings, Subscription, log_backpressure
from varta.throttle import LogThrottle

log = structlog.get_logger(__name__)

MAX_PACKET_BYTES = 16 * 1024 * 1024  # the contract's largest message (a camera snapshot) is far below this
SUBACK_BUSY_LIMIT_S = 120.0  # longest wait for a SUBACK queued behind a backlog that is still arriving

_CONNACK = 2
_PUBLISH = 3
_SUBACK = 9
_PINGRESP = 13
_CONNACK_REASONS = {
    1: "unacceptable protocol version",
    2: "identifier rejected",
    3: "server unavailable",
    4: "bad user name or password",
    5: "not authorized",
}
_PINGREQ = b"\xc0\x00"
_DISCONNECT = b"\xe0\x00"
_PUBACK = struct.Struct("!BBH")


class ProtocolViolation(Exception):
    """The broker sent something MQTT 3.1.1 does not allow here."""


@dataclass(slots=True)
class _Link:
    """One TCP (or TLS) connection to the broker."""

    number: int
    transport: asyncio.Transport | None = None
    connack: asyncio.Future[int] | None = None
    suback: asyncio.Future[bytes] | None = None
    closed: asyncio.Event = field(default_factory=asyncio.Event)
    close_reason: str = ""
    ready: bool = False  # CONNACK accepted
    paused: bool = False  # reading stopped: the consumer lags
    received: int = 0  # PUBLISH packets delivered on this link
    last_heard: float = 0.0  # monotonic time of the last bytes from the broker


class _Protocol(asyncio.Protocol):
    """Parses the broker's byte stream into packets; PUBLISH goes straight to the subscriber's queue."""

    def __init__(self, owner: Mqtt311Subscriber, link: _Link) -> None:
        self.owner = owner
        self.link = link
        self.buffer = bytearray()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.link.transport = transport
        self.link.last_heard = time.monotonic()
        sock = transport.get_extra_info("socket")
        if sock is not None:
            # PUBACKs are small: they must not wait for Nagle + delayed ACK (~40 ms each).
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def connection_lost(self, exc: Exception | None) -> None:
        link = self.link
        if not link.close_reason:
            link.close_reason = str(exc) if exc else "connection closed by the broker"
        link.closed.set()
        for fut in (link.connack, link.suback):
            if fut is not None and not fut.done():
                fut.set_exception(ConnectionError(link.close_reason))

    def data_received(self, data: bytes) -> None:
        link = self.link
        link.last_heard = time.monotonic()
        buf = self.buffer
        buf += data
        try:
            used = self._parse(buf)
        except ProtocolViolation as exc:
            self.owner._protocol_error(link, str(exc))
            return
        if used:
            del buf[:used]

    def _parse(self, buf: bytearray) -> int:
        """Handle every whole packet in *buf*; return how many bytes they used."""
        owner = self.owner
        link = self.link
        number = link.number
        inbound = owner._inbound
        append = inbound.append
        end = len(buf)
        pos = 0
        delivered = 0
        max_packet = owner.max_packet_bytes
        try:
            while end - pos >= 2:
                header = buf[pos]
                # Remaining length: 1-4 bytes, 7 bits each.
                i = pos + 1
                byte = buf[i]
                length = byte & 0x7F
                if byte & 0x80:
                    shift = 7
                    while True:
                        i += 1
                        if i >= end:
                            break  # the length itself is still arriving
                        byte = buf[i]
                        length |= (byte & 0x7F) << shift
                        if not byte & 0x80:
                            break
                        shift += 7
                        if shift > 21:
                            raise ProtocolViolation("remaining length longer than 4 bytes")
                    if i >= end:
                        break
                i += 1
                if length > max_packet:
                    raise ProtocolViolation(f"packet of {length} bytes is over the limit of {max_packet}")
                stop = i + length
                if stop > end:
                    break  # the rest of this packet is still arriving
                kind = header >> 4
                if kind == _PUBLISH:
                    qos = (header >> 1) & 3
                    if length < 2:
                        raise ProtocolViolation("PUBLISH too short for its topic length")
                    topic_end = i + 2 + ((buf[i] << 8) | buf[i + 1])
                    if qos:
                        if qos > 1:
                            raise ProtocolViolation("QoS 2 delivery on a QoS 1 subscription")
                        if topic_end + 2 > stop:
                            raise ProtocolViolation("PUBLISH too short for its packet id")
                        mid = (buf[topic_end] << 8) | buf[topic_end + 1]
                        payload_start = topic_end + 2
                    else:
                        if topic_end > stop:
                            raise ProtocolViolation("PUBLISH too short for its topic")
                        mid = 0
                        payload_start = topic_end
                    raw_topic = bytes(buf[i + 2 : topic_end])
                    try:
                        topic = raw_topic.decode()
                    except (
                        UnicodeDecodeError
                    ):  # brokers refuse such topics; if one gets through, the consumer rejects it
                        topic = raw_topic.decode("utf-8", "replace")
                    append(
                        InboundMessage(topic, bytes(buf[payload_start:stop]), qos, bool(header & 1), mid, None, number)
                    )
                    delivered += 1
                elif kind == _PINGRESP:
                    pass
                elif kind == _CONNACK:
                    if length != 2:
                        raise ProtocolViolation("CONNACK of the wrong length")
                    connack = link.connack
                    if connack is None or connack.done():
                        raise ProtocolViolation("unexpected CONNACK")
                    code = buf[i + 1]
                    link.ready = code == 0  # from here on, backpressure applies (the backlog follows at once)
                    connack.set_result(code)
                elif kind == _SUBACK:
                    suback = link.suback
                    if suback is None or suback.done() or length < 3:
                        raise ProtocolViolation("unexpected SUBACK")
                    suback.set_result(bytes(buf[i + 2 : stop]))
                else:
                    raise ProtocolViolation(f"unexpected packet type {kind}")
                pos = stop
        finally:  # also when a protocol violation ends the read: what came before it is delivered
            if delivered:
                link.received += delivered
                owner._delivered(link)
        return pos


class Mqtt311Subscriber:
    """Keeps one MQTT 3.1.1 subscription connection up and hands its messages out in batches."""

    def __init__(
        self,
        settings: MqttSettings,
        *,
        client_id: str,
        clean_start: bool = False,
        inbound_limit: int = 50_000,
        max_packet_bytes: int = MAX_PACKET_BYTES,
    ) -> None:
        self.settings = settings
        self.client_id = client_id
        self.clean_start = clean_start
        self.max_packet_bytes = max_packet_bytes
        self._subs: list[Subscription] = []
        self._inbound: collections.deque[InboundMessage] = collections.deque()
        self._inbound_limit = inbound_limit
        self._wake = asyncio.Event()
        self._link: _Link | None = None
        self._count = 0
        self._stopping = False
        self._pause_log = LogThrottle(10.0)
        self.connected = asyncio.Event()
        self.disconnected = asyncio.Event()
        self.disconnected.set()
        self.connections = 0  # successful connections so far
        self.failed_attempts = 0
        self.inbound_paused = 0  # times reading stopped because the consumer lagged (backpressure)
        self.protocol_errors = 0  # connections ended because the broker broke the protocol

    # ----------------------------------------------------------------------------------------- public API

    @property
    def protocol_name(self) -> str:
        """Always ``"3.1.1"``."""
        return "3.1.1"

    @property
    def connection_number(self) -> int:
        """Number of the current connection (increases on every reconnect)."""
        return self._link.number if self._link else 0

    def add_subscription(self, topic_filter: str, qos: int = 1, *, shared_group: str | None = None) -> None:
        """Subscribe to *topic_filter* on every (re)connect (``$share/<group>/…`` if a group is given)."""
        if qos not in (0, 1):
            raise ValueError("the ingest subscriber takes QoS 0 or 1")
        self._subs.append(Subscription(topic_filter, qos, shared_group))

    async def wait_connected(self, timeout: float | None = None) -> None:
        """Wait until connected and subscribed (raises TimeoutError)."""
        await wait_for(self.connected.wait(), timeout)

    async def run(self) -> None:
        """Connect and stay connected until cancelled, backing off between failed attempts."""
        delay = self.settings.reconnect_min_s
        try:
            while not self._stopping:
                link = await self._connect_once()
                if link is not None:
                    delay = self.settings.reconnect_min_s
                    await self._stay_up(link)
                if self._stopping:
                    break
                await asyncio.sleep(delay)
                delay = min(delay * 2, self.settings.reconnect_max_s)
        finally:
            if self._link is not None:
                self._close(self._link, "stopped")

    def ack(self, message: InboundMessage) -> None:
        """Acknowledge one QoS 1 message after it was stored (no-op for QoS 0 or an older connection)."""
        self.ack_many((message,))

    def ack_many(self, messages: Sequence[InboundMessage]) -> None:
        """Acknowledge a batch with one write (PUBACKs only for messages of the current connection)."""
        link = self._link
        if link is None or link.transport is None or link.closed.is_set():
            return
        number = link.number
        pack = _PUBACK.pack
        acks = b"".join([pack(0x40, 2, m.mid) for m in messages if m.qos and m.connection == number])
        if acks:
            link.transport.write(acks)

    async def next_batch(self, max_items: int = 1000, timeout: float | None = None) -> list[InboundMessage]:
        """Wait for inbound messages and return up to *max_items* of them (empty list on timeout)."""
        inbound = self._inbound
        if not inbound:
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await wait_for(self._wake.wait(), timeout)
        popleft = inbound.popleft
        batch = [popleft() for _ in range(min(max_items, len(inbound)))]
        link = self._link
        if link is not None and link.paused and len(inbound) < self._inbound_limit // 2:
            link.paused = False
            if link.transport is not None and not link.transport.is_closing():
                link.transport.resume_reading()
        return batch

    async def stop(self) -> None:
        """Disconnect cleanly (the broker keeps our session and what is still unacknowledged)."""
        self._stopping = True
        link = self._link
        if link is not None and link.transport is not None and not link.transport.is_closing():
            link.transport.write(_DISCONNECT)
            self._close(link, "stopped")
            with contextlib.suppress(TimeoutError):
                await wait_for(link.closed.wait(), 3.0)

    # ----------------------------------------------------------------------------------------- internals

    def _delivered(self, link: _Link) -> None:
        """Called by the parser after it queued messages: wake the consumer, push back if it lags."""
        self._wake.set()
        if link.ready and not link.paused and len(self._inbound) >= self._inbound_limit:
            link.paused = True
            self.inbound_paused += 1
            if link.transport is not None:
                link.transport.pause_reading()
            log_backpressure(self._pause_log, len(self._inbound), self._inbound_limit, self.inbound_paused)

    def _protocol_error(self, link: _Link, detail: str) -> None:
        self.protocol_errors += 1
        log.error("mqtt.protocol_error", detail=detail[:200], errors=self.protocol_errors)
        self._close(link, f"protocol error: {detail}")

    def _close(self, link: _Link, reason: str) -> None:
        link.close_reason = link.close_reason or reason
        if link.transport is not None and not link.transport.is_closing():
            link.transport.close()
        elif link.transport is None:
            link.closed.set()

    async def _connect_once(self) -> _Link | None:
        self._count += 1
        link = _Link(number=self._count)
        self._link = link
        s = self.settings
        loop = asyncio.get_running_loop()
        try:
            # Reading the password file and TLS material is file I/O: off the event loop.
            password, context = await asyncio.to_thread(
                lambda: (s.resolved_password(), s.tls.context() if s.tls else None)
            )
            link.connack = loop.create_future()
            await wait_for(
                loop.create_connection(
                    lambda: _Protocol(self, link),
                    s.host,
                    s.port,
                    ssl=context,
                    server_hostname=s.host if context is not None else None,
                ),
                s.connect_timeout_s,
            )
            assert link.transport is not None
            link.transport.write(self._connect_packet(password))
            code = await wait_for(asyncio.shield(link.connack), s.connect_timeout_s)
            if code != 0:
                raise ConnectionRefusedError(f"connack refused: {_CONNACK_REASONS.get(code, code)}")
            await self._subscribe(link)
            if link.closed.is_set():  # lost (or left for a protocol error) right after subscribing
                raise ConnectionError(link.close_reason)
        except (OSError, ConnectionError, TimeoutError, ValueError) as exc:
            reason = str(exc) or type(exc).__name__
            log.warning("mqtt.connect_failed", host=s.host, port=s.port, reason=reason)
            self.failed_attempts += 1
            self._close(link, reason)
            return None
        self.connections += 1
        log.info("mqtt.connected", host=s.host, port=s.port, protocol="3.1.1", client_id=self.client_id)
        self.disconnected.clear()
        self.connected.set()
        return link

    def _connect_packet(self, password: str | None) -> bytes:
        s = self.settings
        flags = 0x02 if self.clean_start else 0x00
        body = bytearray(b"\x00\x04MQTT\x04")
        payload = bytearray(_string(self.client_id.encode()))
        if s.username is not None:
            flags |= 0x80
            payload += _string(s.username.encode())
            if password is not None:
                flags |= 0x40
                payload += _string(password.encode())
        body.append(flags)
        body += struct.pack("!H", s.keepalive_s)
        return packet(0x10, bytes(body + payload))

    async def _subscribe(self, link: _Link) -> None:
        """One SUBSCRIBE for every filter; wait for the SUBACK so nothing published after "connected" is missed.

        A broker draining a queued backlog sends the SUBACK after the backlog, so keep waiting (up to
        ``SUBACK_BUSY_LIMIT_S``) while messages are still arriving on this connection.
        """
        if not self._subs:
            return
        loop = asyncio.get_running_loop()
        assert link.transport is not None
        link.suback = loop.create_future()
        body = bytearray(b"\x00\x01")  # packet identifier 1: the only one we ever use
        for sub in self._subs:
            body += _string(sub.filter_for().encode()) + bytes((sub.qos,))
        link.transport.write(packet(0x82, bytes(body)))
        give_up = loop.time() + SUBACK_BUSY_LIMIT_S
        while True:
            seen = link.received
            try:
                codes = await wait_for(asyncio.shield(link.suback), self.settings.connect_timeout_s)
                break
            except TimeoutError:
                if link.received == seen or loop.time() >= give_up or link.closed.is_set():
                    raise
        if len(codes) != len(self._subs):
            raise ConnectionError(f"SUBACK answers {len(codes)} of {len(self._subs)} filters")
        for sub, code in zip(self._subs, codes, strict=True):
            if code == 0x80:  # a refused subscription is a configuration error (ACL): say so, carry on
                log.error("mqtt.subscription_refused", topic_filter=sub.filter_for())

    async def _stay_up(self, link: _Link) -> None:
        """Ping while connected; a broker silent for 1.5 keepalive intervals is gone (a silent partition)."""
        keepalive = self.settings.keepalive_s
        try:
            while not link.closed.is_set():
                with contextlib.suppress(TimeoutError):
                    await wait_for(link.closed.wait(), keepalive / 2)
                if link.closed.is_set():
                    break
                if time.monotonic() - link.last_heard > 1.5 * keepalive and not link.paused:
                    self._close(link, "keepalive: no answer from the broker")
                    await link.closed.wait()
                    break
                if link.transport is not None and not link.transport.is_closing():
                    link.transport.write(_PINGREQ)
        finally:
            self.connected.clear()
            self.disconnected.set()
            if not self._stopping:
                log.warning("mqtt.disconnected", reason=link.close_reason)


def _string(value: bytes) -> bytes:
    return struct.pack("!H", len(value)) + value


def remaining_length(n: int) -> bytes:
    """MQTT's variable-length encoding of a packet's remaining length."""
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def packet(header: int, body: bytes) -> bytes:
    """One MQTT control packet: fixed header byte, remaining length, *body*."""
    return bytes((header,)) + remaining_length(len(body)) + body
