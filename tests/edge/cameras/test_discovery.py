"""WS-Discovery: probes find responders (unicast on loopback, real multicast on a private LAN); junk is ignored."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import orjson

from edge.cameras.wsdiscovery import (
    STREAMING_SCOPE,
    DiscoveryResponder,
    DiscoveryStats,
    build_probe_matches,
    parse_xml,
    probe,
)
from tests.support.netns import private_lan

SCOPES = [
    STREAMING_SCOPE,
    "onvif://www.onvif.org/name/Gate%20Camera",
    "onvif://www.onvif.org/hardware/SimCam-2000",
    "onvif://www.onvif.org/location/city/Kyiv",
]
REPO = Path(__file__).resolve().parents[3]

ENTITY_BOMB = b"""<?xml version="1.0"?>
<!DOCTYPE lolz [
 <!ENTITY lol "lol">
 <!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
 <!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
 <!ENTITY lol4 "&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;">
 <!ENTITY lol5 "&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;">
 <!ENTITY lol6 "&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;">
 <!ENTITY lol7 "&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;">
 <!ENTITY lol8 "&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;">
 <!ENTITY lol9 "&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;">
]>
<lolz>&lol9;</lolz>"""

EXTERNAL_ENTITY = b"""<?xml version="1.0"?>
<!DOCTYPE x [<!ENTITY xxe SYSTEM "file:///etc/passwd">]><x>&xxe;</x>"""


async def test_a_unicast_probe_to_loopback_finds_the_responder_once_with_its_name_and_hardware() -> None:
    endpoint = f"urn:uuid:{uuid.uuid4()}"
    xaddr = "http://127.0.0.1:8899/onvif/device_service"
    async with DiscoveryResponder(endpoint, [xaddr], SCOPES, host="127.0.0.1", port=0) as responder:
        host, port = responder.address
        stats = DiscoveryStats()
        found = await probe(1.0, multicast=False, unicast=[f"{host}:{port}"], stats=stats)
    assert len(found) == 1  # the probe goes out twice; the two answers are one device
    device = found[0]
    assert (device.endpoint, device.address, device.xaddrs) == (endpoint, "127.0.0.1", [xaddr])
    assert (device.name, device.hardware) == ("Gate Camera", "SimCam-2000")
    assert STREAMING_SCOPE in device.scopes and any(t.endswith("NetworkVideoTransmitter") for t in device.types)
    assert stats.matches == 2 and stats.garbage == 0
    assert responder.stats.matches == 2


async def test_a_device_outside_the_wanted_scope_stays_silent() -> None:
    async with DiscoveryResponder("urn:uuid:1", ["http://127.0.0.1/x"], ["onvif://www.onvif.org/Profile/G"]) as r:
        host, port = r.address
        found = await probe(0.5, multicast=False, unicast=[f"{host}:{port}"])
        anything = await probe(0.5, multicast=False, unicast=[f"{host}:{port}"], scope=None)
    assert found == []
    assert [d.endpoint for d in anything] == ["urn:uuid:1"]
    assert r.stats.unrelated == 2  # both repeats of the scoped probe were declined


def test_the_parser_refuses_entity_bombs_external_entities_and_oversized_input() -> None:
    for bad in (ENTITY_BOMB, EXTERNAL_ENTITY, b"<a>" + b"x" * 40_000 + b"</a>", b"\x00\xff garbage", b""):
        try:
            parse_xml(bad)
        except ValueError:
            continue
        raise AssertionError(f"accepted {bad[:40]!r}")


class _Liar(asyncio.DatagramProtocol):
    """A 'device' that answers every probe with junk first, then (optionally) one real answer."""

    def __init__(self, replies: Callable[[bytes], list[bytes]]) -> None:
        self.replies = replies
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: tuple[str | int, ...]) -> None:
        assert self.transport is not None
        for reply in self.replies(data):
            self.transport.sendto(reply, addr)


async def test_garbage_and_an_entity_bomb_as_replies_are_counted_and_ignored() -> None:
    def replies(probe_bytes: bytes) -> list[bytes]:
        root = parse_xml(probe_bytes)
        message_id = root.findtext(".//{http://schemas.xmlsoap.org/ws/2004/08/addressing}MessageID")
        good = build_probe_matches(message_id, "urn:uuid:good", ["http://127.0.0.1/onvif"], SCOPES)
        return [
            b"\x00\x01 not xml at all",
            ENTITY_BOMB,
            EXTERNAL_ENTITY,
            b"<x>" + b"A" * 60_000 + b"</x>",
            good.replace(b"urn:uuid:good", b""),  # no endpoint
            build_probe_matches("urn:uuid:someone-else", "urn:uuid:other", ["http://x/"], SCOPES),
            b"<?xml version='1.0'?><s:Envelope xmlns:s='http://www.w3.org/2003/05/soap-envelope'/>",
            good,
        ]

    loop = asyncio.get_running_loop()
    transport, _ = await loop.create_datagram_endpoint(lambda: _Liar(replies), local_addr=("127.0.0.1", 0))
    try:
        port = transport.get_extra_info("sockname")[1]
        stats = DiscoveryStats()
        started = time.monotonic()
        found = await probe(1.0, multicast=False, unicast=[f"127.0.0.1:{port}"], stats=stats)
        elapsed = time.monotonic() - started
    finally:
        transport.close()
    assert [d.endpoint for d in found] == ["urn:uuid:good"]
    assert stats.garbage == 2 * 6 and stats.unrelated == 2 and stats.oversized == 2
    assert elapsed < 2.0  # the bomb was never expanded


async def test_the_responder_survives_junk_and_still_answers() -> None:
    async with DiscoveryResponder("urn:uuid:r", ["http://127.0.0.1/onvif"], SCOPES, port=0) as responder:
        host, port = responder.address
        loop = asyncio.get_running_loop()
        transport, _ = await loop.create_datagram_endpoint(asyncio.DatagramProtocol, remote_addr=(host, port))
        for junk in (ENTITY_BOMB, EXTERNAL_ENTITY, b"\xff" * 100, b"<a/>"):
            transport.sendto(junk)
        transport.close()
        await asyncio.sleep(0.1)
        found = await probe(0.5, multicast=False, unicast=[f"{host}:{port}"])
    assert responder.stats.garbage == 4
    assert [d.endpoint for d in found] == ["urn:uuid:r"]


def test_real_multicast_inside_a_private_network_namespace_finds_the_device() -> None:
    python = sys.executable
    with private_lan() as (a, b):
        xaddr = f"http://{b.address}:8080/onvif/device_service"
        responder = subprocess.Popen(
            b.command(
                [
                    python,
                    "-m",
                    "edge.cameras.wsdiscovery",
                    "respond",
                    "--multicast",
                    "--endpoint",
                    "urn:uuid:mcast-1",
                    "--xaddr",
                    xaddr,
                    "--scopes",
                    STREAMING_SCOPE,
                    "--scopes",
                    "onvif://www.onvif.org/name/Square",
                ]
            ),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            cwd=REPO,
        )
        try:
            assert responder.stdout is not None
            line = responder.stdout.readline()  # printed once it has joined the group
            assert orjson.loads(line)["listening"][1] == 3702, responder.stderr.read() if responder.stderr else ""
            results = [
                subprocess.run(
                    a.command([python, "-m", "edge.cameras.wsdiscovery", "probe", "--timeout", "1.5", *extra]),
                    capture_output=True,
                    timeout=30,
                    check=True,
                    cwd=REPO,
                )
                for extra in ([], ["--interface", a.address], ["--interface", "127.0.0.1"])
            ]
        finally:
            responder.terminate()
            try:
                responder.wait(10)
            except subprocess.TimeoutExpired:
                responder.kill()
                responder.wait(10)
    outputs = [[orjson.loads(x) for x in r.stdout.splitlines()] for r in results]
    for lines in outputs[:2]:  # the default route's interface, then the one named
        devices, stats = lines[:-1], lines[-1]["stats"]
        assert [(d["endpoint"], d["address"], d["xaddrs"], d["name"]) for d in devices] == [
            ("urn:uuid:mcast-1", b.address, [xaddr], "Square")
        ]
        assert stats["send_errors"] == 0 and stats["garbage"] == 0
    assert outputs[2][:-1] == []  # multicast out of loopback never reaches the camera's LAN
