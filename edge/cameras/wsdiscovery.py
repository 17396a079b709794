"""WS-Discovery (SOAP-over-UDP, port 3702): find ONVIF devices on the node's LAN, and answer probes.

:func:`probe` sends one WS-Discovery ``Probe`` (multicast to 239.255.255.250:3702 and/or unicast to given hosts)
and collects the ``ProbeMatches`` for *timeout_s*; devices are de-duplicated by their endpoint reference.
:class:`DiscoveryResponder` answers probes for one device (tests and the demo's simulated camera).

Everything received is untrusted: datagrams larger than :data:`MAX_DATAGRAM_BYTES`, anything with a DTD or an
entity declaration, and XML that does not parse are counted and ignored. The XML parser never resolves entities,
never loads a DTD and never touches the network. Nothing here blocks the event loop.

Run ``python -m edge.cameras.wsdiscovery probe`` on a node to see what it finds (JSON, one device per line).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import ipaddress
import re
import socket
import struct
import sys
import urllib.parse
import uuid
from collections.abc import Iterable, Sequence
from typing import Final

import orjson
import structlog
from lxml import etree  # type: ignore[import-untyped]

from edge.cameras.config import STREAMING_SCOPE
from varta.aio import wait_for
from varta.contract import DiscoveredDevice
from varta.logs import setup_logging

__all__ = [
    "MULTICAST_GROUP",
    "PORT",
    "STREAMING_SCOPE",
    "DiscoveryResponder",
    "DiscoveryStats",
    "GarbageDatagram",
    "build_probe",
    "build_probe_matches",
    "parse_probe_matches",
    "parse_xml",
    "probe",
    "scope_matches",
]

log = structlog.get_logger(__name__)

MULTICAST_GROUP: Final = "239.255.255.250"
PORT: Final = 3702
MAX_DATAGRAM_BYTES: Final = 32 * 1024
NVT_TYPE: Final = "dn:NetworkVideoTransmitter"
MAX_DEVICES: Final = 256

NS_SOAP: Final = "http://www.w3.org/2003/05/soap-envelope"
NS_WSA: Final = "http://schemas.xmlsoap.org/ws/2004/08/addressing"
NS_WSD: Final = "http://schemas.xmlsoap.org/ws/2005/04/discovery"
NS_DN: Final = "http://www.onvif.org/ver10/network/wsdl"
TO_DISCOVERY: Final = "urn:schemas-xmlsoap-org:ws:2005:04:discovery"
ACTION_PROBE: Final = f"{NS_WSD}/Probe"
ACTION_MATCHES: Final = f"{NS_WSD}/ProbeMatches"
ANONYMOUS: Final = f"{NS_WSA}/role/anonymous"

_FORBIDDEN: Final = re.compile(rb"<!\s*(DOCTYPE|ENTITY)", re.IGNORECASE)
_PROBE_REPEATS: Final = 2  # UDP may lose a datagram: the same probe goes out twice (same MessageID)
_REPEAT_GAP_S: Final = 0.2


def _parser() -> etree.XMLParser:
    return etree.XMLParser(
        resolve_entities=False,
        no_network=True,
        load_dtd=False,
        dtd_validation=False,
        huge_tree=False,
        remove_comments=True,
        remove_pis=True,
    )


_PARSER: Final = _parser()


class GarbageDatagram(ValueError):
    """A datagram that is not a usable WS-Discovery message."""


@dataclasses.dataclass(slots=True)
class DiscoveryStats:
    """Counts of one prober or responder (everything received that was not used is counted, never raised)."""

    received: int = 0
    matches: int = 0
    garbage: int = 0
    oversized: int = 0
    unrelated: int = 0
    send_errors: int = 0


def parse_xml(data: bytes) -> etree._Element:
    """Parse an untrusted SOAP datagram safely (size bound, no DTD, no entities, no network)."""
    if len(data) > MAX_DATAGRAM_BYTES:
        raise GarbageDatagram(f"{len(data)} bytes")
    if _FORBIDDEN.search(data):
        raise GarbageDatagram("DTD or entity declaration")
    try:
        root = etree.fromstring(data, parser=_PARSER)
    except (etree.XMLSyntaxError, ValueError) as exc:
        raise GarbageDatagram(f"not XML: {str(exc)[:100]}") from None
    if root is None or root.getroottree().docinfo.doctype:
        raise GarbageDatagram("DTD present")
    return root


def _text(element: etree._Element | None) -> str:
    return (element.text or "").strip() if element is not None else ""


def _split(text: str, limit: int) -> list[str]:
    return [item[:500] for item in text.split()][:limit]


def _header(root: etree._Element, name: str) -> str:
    return _text(root.find(f"{{{NS_SOAP}}}Header/{{{NS_WSA}}}{name}"))


def _scope_value(scopes: Iterable[str], prefix: str) -> str:
    for scope in scopes:
        if scope.lower().startswith(prefix):
            return urllib.parse.unquote(scope[len(prefix) :])[:200]
    return ""


def parse_probe_matches(data: bytes, address: str, message_id: str | None = None) -> list[DiscoveredDevice]:
    """The devices in a ``ProbeMatches`` datagram (:class:`GarbageDatagram` when it is not one)."""
    root = parse_xml(data)
    if root.tag != f"{{{NS_SOAP}}}Envelope" or _header(root, "Action") != ACTION_MATCHES:
        raise GarbageDatagram("not a ProbeMatches message")
    if message_id is not None and _header(root, "RelatesTo") != message_id:
        raise LookupError("answers another probe")
    devices = []
    for match in root.iterfind(f"{{{NS_SOAP}}}Body/{{{NS_WSD}}}ProbeMatches/{{{NS_WSD}}}ProbeMatch"):
        endpoint = _text(match.find(f"{{{NS_WSA}}}EndpointReference/{{{NS_WSA}}}Address"))
        if not endpoint:
            continue
        scopes = _split(_text(match.find(f"{{{NS_WSD}}}Scopes")), 64)
        try:
            devices.append(
                DiscoveredDevice(
                    endpoint=endpoint[:200],
                    address=address[:64],
                    xaddrs=_split(_text(match.find(f"{{{NS_WSD}}}XAddrs")), 8),
                    scopes=scopes,
                    types=[t[:200] for t in _split(_text(match.find(f"{{{NS_WSD}}}Types")), 16)],
                    name=_scope_value(scopes, "onvif://www.onvif.org/name/"),
                    hardware=_scope_value(scopes, "onvif://www.onvif.org/hardware/"),
                )
            )
        except ValueError as exc:  # pydantic ValidationError
            raise GarbageDatagram(f"bad ProbeMatch: {str(exc)[:100]}") from None
    if not devices:
        raise GarbageDatagram("ProbeMatches without a usable match")
    return devices


def build_probe(message_id: str, scope: str | None = STREAMING_SCOPE, types: str = NVT_TYPE) -> bytes:
    """A WS-Discovery ``Probe`` for ONVIF network video transmitters (optionally limited to *scope*)."""
    env = etree.Element(f"{{{NS_SOAP}}}Envelope", nsmap={"s": NS_SOAP, "a": NS_WSA, "d": NS_WSD, "dn": NS_DN})
    header = etree.SubElement(env, f"{{{NS_SOAP}}}Header")
    etree.SubElement(header, f"{{{NS_WSA}}}Action").text = ACTION_PROBE
    etree.SubElement(header, f"{{{NS_WSA}}}MessageID").text = message_id
    etree.SubElement(header, f"{{{NS_WSA}}}To").text = TO_DISCOVERY
    probe_el = etree.SubElement(etree.SubElement(env, f"{{{NS_SOAP}}}Body"), f"{{{NS_WSD}}}Probe")
    if types:
        etree.SubElement(probe_el, f"{{{NS_WSD}}}Types").text = types
    if scope:
        etree.SubElement(probe_el, f"{{{NS_WSD}}}Scopes").text = scope
    return bytes(etree.tostring(env, xml_declaration=True, encoding="UTF-8"))


def build_probe_matches(
    relates_to: str, endpoint: str, xaddrs: Sequence[str], scopes: Sequence[str], types: str = NVT_TYPE
) -> bytes:
    """A ``ProbeMatches`` answer for one device."""
    env = etree.Element(f"{{{NS_SOAP}}}Envelope", nsmap={"s": NS_SOAP, "a": NS_WSA, "d": NS_WSD, "dn": NS_DN})
    header = etree.SubElement(env, f"{{{NS_SOAP}}}Header")
    etree.SubElement(header, f"{{{NS_WSA}}}Action").text = ACTION_MATCHES
    etree.SubElement(header, f"{{{NS_WSA}}}MessageID").text = f"urn:uuid:{uuid.uuid4()}"
    etree.SubElement(header, f"{{{NS_WSA}}}RelatesTo").text = relates_to
    etree.SubElement(header, f"{{{NS_WSA}}}To").text = ANONYMOUS
    matches = etree.SubElement(etree.SubElement(env, f"{{{NS_SOAP}}}Body"), f"{{{NS_WSD}}}ProbeMatches")
    match = etree.SubElement(matches, f"{{{NS_WSD}}}ProbeMatch")
    ref = etree.SubElement(match, f"{{{NS_WSA}}}EndpointReference")
    etree.SubElement(ref, f"{{{NS_WSA}}}Address").text = endpoint
    etree.SubElement(match, f"{{{NS_WSD}}}Types").text = types
    etree.SubElement(match, f"{{{NS_WSD}}}Scopes").text = " ".join(scopes)
    etree.SubElement(match, f"{{{NS_WSD}}}XAddrs").text = " ".join(xaddrs)
    etree.SubElement(match, f"{{{NS_WSD}}}MetadataVersion").text = "1"
    return bytes(etree.tostring(env, xml_declaration=True, encoding="UTF-8"))


def scope_matches(wanted: str, offered: Iterable[str]) -> bool:
    """WS-Discovery's default RFC 3986 rule: *wanted* matches an offered scope equal to it or a path prefix of it."""
    want = wanted.rstrip("/").lower()
    for scope in offered:
        have = scope.rstrip("/").lower()
        if have == want or have.startswith(want + "/"):
            return True
    return False


def _target(spec: str) -> tuple[str, int]:
    """``host``, ``host:port`` or ``[v6]:port`` → (host, port)."""
    host, sep, port = spec.rpartition(":")
    if sep and port.isdigit() and (not host.count(":") or host.endswith("]")):
        return host.strip("[]"), int(port)
    return spec.strip("[]"), PORT


class _ProbeProtocol(asyncio.DatagramProtocol):
    def __init__(self, message_id: str, stats: DiscoveryStats) -> None:
        self.message_id = message_id
        self.stats = stats
        self.found: dict[str, DiscoveredDevice] = {}

    def datagram_received(self, data: bytes, addr: tuple[str | int, ...]) -> None:
        self.stats.received += 1
        address = str(addr[0])
        try:
            devices = parse_probe_matches(data, address, self.message_id)
        except LookupError:
            self.stats.unrelated += 1
            return
        except GarbageDatagram as exc:
            if len(data) > MAX_DATAGRAM_BYTES:
                self.stats.oversized += 1
            self.stats.garbage += 1
            log.debug("wsdiscovery.garbage", source=address, reason=str(exc)[:120], count=self.stats.garbage)
            return
        for device in devices:
            self.stats.matches += 1
            known = self.found.get(device.endpoint)
            if known is not None:  # one device, several answers (repeat, several interfaces): merge addresses
                xaddrs = list(dict.fromkeys([*known.xaddrs, *device.xaddrs]))[:8]
                self.found[device.endpoint] = known.model_copy(update={"xaddrs": xaddrs})
            elif len(self.found) < MAX_DEVICES:
                self.found[device.endpoint] = device

    def error_received(self, exc: Exception) -> None:
        self.stats.send_errors += 1
        log.debug("wsdiscovery.socket_error", error=str(exc)[:120])


async def probe(
    timeout_s: float = 3.0,
    *,
    multicast: bool = True,
    unicast: Sequence[str] = (),
    scope: str | None = STREAMING_SCOPE,
    interfaces: Sequence[str] = (),
    stats: DiscoveryStats | None = None,
) -> list[DiscoveredDevice]:
    """Probe for ONVIF devices for *timeout_s*; returns them de-duplicated by endpoint (sorted by address).

    *unicast* lists extra targets (``host`` or ``host:port``, e.g. cameras on another subnet). The multicast probe
    leaves through the interface of each IPv4 address in *interfaces* (a node with a camera LAN and a separate
    uplink), or through the default route's interface when none is given.
    """
    stats = stats if stats is not None else DiscoveryStats()
    message_id = f"urn:uuid:{uuid.uuid4()}"
    payload = build_probe(message_id, scope)
    loop = asyncio.get_running_loop()
    # OSError for a malformed address, before any socket; None: the default route's interface
    outgoing: list[bytes | None] = [socket.inet_aton(ip) for ip in interfaces] or [None]
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM, socket.IPPROTO_UDP)
    try:
        sock.setblocking(False)
        sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_TTL, 1)
        sock.bind(("0.0.0.0", 0))
    except OSError:
        sock.close()
        raise
    transport, protocol = await loop.create_datagram_endpoint(lambda: _ProbeProtocol(message_id, stats), sock=sock)
    targets: list[tuple[str, int]] = []
    for spec in unicast:
        host, port = _target(spec)
        try:
            ipaddress.ip_address(host)
        except ValueError:
            try:
                infos = await wait_for(
                    loop.getaddrinfo(host, port, family=socket.AF_INET, type=socket.SOCK_DGRAM), timeout_s
                )
            except (OSError, TimeoutError) as exc:
                stats.send_errors += 1
                log.warning("wsdiscovery.unresolvable", target=spec[:100], error=str(exc)[:100])
                continue
            host = str(infos[0][4][0])
        targets.append((host, port))
    try:
        for attempt in range(_PROBE_REPEATS):
            if multicast:
                for local in outgoing:
                    try:
                        if local is not None:
                            sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_IF, local)
                        transport.sendto(payload, (MULTICAST_GROUP, PORT))
                    except OSError as exc:  # an address that is not (or no longer) one of ours
                        stats.send_errors += 1
                        if attempt == 0:
                            log.warning("wsdiscovery.send_failed", target=MULTICAST_GROUP, error=str(exc)[:100])
            for target in targets:
                transport.sendto(payload, target)  # failures (e.g. no route) arrive in error_received
            await asyncio.sleep(min(_REPEAT_GAP_S, timeout_s / 4) if attempt + 1 < _PROBE_REPEATS else 0)
        await asyncio.sleep(max(0.0, timeout_s - _REPEAT_GAP_S))
    finally:
        transport.close()
    if stats.garbage:
        log.info("wsdiscovery.garbage_ignored", count=stats.garbage)
    if stats.send_errors:
        log.warning("wsdiscovery.send_errors", count=stats.send_errors)
    return sorted(protocol.found.values(), key=lambda d: (d.address, d.endpoint))


class _ResponderProtocol(asyncio.DatagramProtocol):
    def __init__(self, responder: DiscoveryResponder) -> None:
        self.responder = responder
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # a datagram transport (not a subclass in 3.11)

    def datagram_received(self, data: bytes, addr: tuple[str | int, ...]) -> None:
        answer = self.responder.answer(data)
        if answer is not None and self.transport is not None:
            self.transport.sendto(answer, addr)


class DiscoveryResponder:
    """Answers WS-Discovery probes for one device: ``async with DiscoveryResponder(...)`` or start()/stop().

    With *multicast* it joins 239.255.255.250 (on the interface of *interface*, an IPv4 address, or the
    default one) on port 3702; otherwise it listens on *host*:*port* for unicast probes only (port 0 = any).
    """

    def __init__(
        self,
        endpoint: str,
        xaddrs: Sequence[str],
        scopes: Sequence[str] = (STREAMING_SCOPE,),
        *,
        host: str = "127.0.0.1",
        port: int = PORT,
        multicast: bool = False,
        interface: str | None = None,
        types: str = NVT_TYPE,
    ) -> None:
        self.endpoint = endpoint
        self.xaddrs = list(xaddrs)
        self.scopes = list(scopes)
        self.types = types
        self.host = host
        self.port = port
        self.multicast = multicast
        self.interface = interface
        self.stats = DiscoveryStats()
        self._transport: asyncio.DatagramTransport | None = None

    def answer(self, data: bytes) -> bytes | None:
        """The ``ProbeMatches`` reply to a datagram, or None (not a probe for us; garbage is counted)."""
        self.stats.received += 1
        try:
            root = parse_xml(data)
            if root.tag != f"{{{NS_SOAP}}}Envelope" or _header(root, "Action") != ACTION_PROBE:
                raise GarbageDatagram("not a Probe")
            message_id = _header(root, "MessageID")
            if not message_id:
                raise GarbageDatagram("Probe without MessageID")
        except GarbageDatagram:
            self.stats.garbage += 1
            return None
        body = root.find(f"{{{NS_SOAP}}}Body/{{{NS_WSD}}}Probe")
        wanted_types = _text(body.find(f"{{{NS_WSD}}}Types")) if body is not None else ""
        wanted_scopes = _text(body.find(f"{{{NS_WSD}}}Scopes")) if body is not None else ""
        if wanted_types and not any(t.split(":")[-1] == "NetworkVideoTransmitter" for t in wanted_types.split()):
            self.stats.unrelated += 1
            return None
        if any(not scope_matches(s, self.scopes) for s in wanted_scopes.split()):
            self.stats.unrelated += 1
            return None
        self.stats.matches += 1
        return build_probe_matches(message_id[:200], self.endpoint, self.xaddrs, self.scopes, self.types)

    @property
    def address(self) -> tuple[str, int]:
        """Where it listens (host, port)."""
        if self._transport is None:
            raise RuntimeError("the responder is not started")
        name = self._transport.get_extra_info("sockname")
        return str(name[0]), int(name[1])

    async def start(self) -> DiscoveryResponder:
        """Bind the socket and start answering."""
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM, socket.IPPROTO_UDP)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.setblocking(False)
            if self.multicast:
                sock.bind(("0.0.0.0", self.port))
                local = socket.inet_aton(self.interface or "0.0.0.0")
                membership = struct.pack("4s4s", socket.inet_aton(MULTICAST_GROUP), local)
                sock.setsockopt(socket.IPPROTO_IP, socket.IP_ADD_MEMBERSHIP, membership)
            else:
                sock.bind((self.host, self.port))
        except OSError:
            sock.close()
            raise
        loop = asyncio.get_running_loop()
        transport, _ = await loop.create_datagram_endpoint(lambda: _ResponderProtocol(self), sock=sock)
        self._transport = transport
        log.debug("wsdiscovery.responder_started", address=self.address, multicast=self.multicast)
        return self

    async def stop(self) -> None:
        """Stop answering."""
        if self._transport is not None:
            self._transport.close()
            self._transport = None

    async def __aenter__(self) -> DiscoveryResponder:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()


# --------------------------------------------------------------------------------------------------- command line


async def _cli(args: argparse.Namespace) -> int:
    if args.action == "probe":
        stats = DiscoveryStats()
        found = await probe(
            args.timeout,
            multicast=not args.no_multicast,
            unicast=args.unicast,
            scope=args.scope or None,
            interfaces=args.interface,
            stats=stats,
        )
        for device in found:
            sys.stdout.write(device.model_dump_json() + "\n")
        sys.stdout.write(orjson.dumps({"stats": dataclasses.asdict(stats)}).decode() + "\n")
        return 0
    responder = DiscoveryResponder(
        args.endpoint,
        args.xaddr,
        args.scopes or [STREAMING_SCOPE],
        host=args.host,
        port=args.port,
        multicast=args.multicast,
    )
    async with responder:
        sys.stdout.write(orjson.dumps({"listening": list(responder.address)}).decode() + "\n")
        sys.stdout.flush()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.Event().wait()
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m edge.cameras.wsdiscovery probe|respond``: a diagnostic tool (and the tests' helper)."""
    parser = argparse.ArgumentParser(prog="python -m edge.cameras.wsdiscovery", description=__doc__)
    sub = parser.add_subparsers(dest="action", required=True)
    p = sub.add_parser("probe", help="probe and print what answers (JSON lines; the last line has the counts)")
    p.add_argument("--timeout", type=float, default=3.0)
    p.add_argument("--no-multicast", action="store_true")
    p.add_argument("--unicast", action="append", default=[], metavar="HOST[:PORT]")
    p.add_argument("--scope", default=STREAMING_SCOPE, help="empty: any device")
    p.add_argument("--interface", action="append", default=[], metavar="IPV4", help="multicast out of this address")
    r = sub.add_parser("respond", help="answer probes for one (pretend) device until interrupted")
    r.add_argument("--endpoint", default=f"urn:uuid:{uuid.uuid4()}")
    r.add_argument("--xaddr", action="append", default=[], required=True)
    r.add_argument("--scopes", action="append", default=[])
    r.add_argument("--host", default="127.0.0.1")
    r.add_argument("--port", type=int, default=PORT)
    r.add_argument("--multicast", action="store_true")
    args = parser.parse_args(argv)
    setup_logging("WARNING")  # logs to stderr; stdout carries the JSON lines
    try:
        return asyncio.run(_cli(args))
    except KeyboardInterrupt:
        return 0


if __name__ == "__main__":
    sys.exit(main())
