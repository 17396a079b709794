"""The shipped deploy/mosquitto/mosquitto.conf on a real Mosquitto: mutual TLS, certificate CN as username, ACL.

The config is used as shipped, with only its file paths moved into the test's folder and its listener moved to
a free loopback port; a test CA issues the broker's and the clients' certificates.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.support.broker import Broker
from tests.support.mqtt_client import ConnectFailed, MqttTestClient, connack_reason
from tests.support.pki import TestCA
from tests.support.ports import free_port, wait_for_port
from varta.asyncapi import example_message
from varta.contract import DEVICE_CHANNELS, Channel, decode_for_topic, encode, topic
from varta.mqtt import MqttSettings, PublishRejected, TlsSettings
from varta.mqtt311 import Mqtt311Subscriber

DEPLOY = Path(__file__).resolve().parent.parent / "deploy" / "mosquitto"
SITE = "site-1"
NODE_A, NODE_B = "node-a", "node-b"


@dataclass
class ShippedBroker(Broker):
    """Mosquitto running deploy/mosquitto/mosquitto.conf with its paths moved into ``workdir``."""

    etc: Path = Path()
    password_port: int | None = None  # set: enable the optional username + password listener on this port
    rewrites: dict[str, str] = field(default_factory=dict)

    def write_conf(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        text = (DEPLOY / "mosquitto.conf").read_text()
        self.rewrites = {
            "/etc/mosquitto/varta/": f"{self.etc}/",
            "persistence_location /var/lib/mosquitto/": f"persistence_location {self.workdir}/",
            "log_dest file /var/log/mosquitto/mosquitto.log": f"log_dest file {self.log_path}",
            "pid_file /run/mosquitto/mosquitto.pid": f"pid_file {self.workdir}/mosquitto.pid",
            "\nlistener 8883\n": f"\nlistener {self.port} 127.0.0.1\n",
        }
        if self.password_port is not None:
            self.rewrites |= {
                "#listener 8884\n": f"listener {self.password_port} 127.0.0.1\n",
                "#certfile ": "certfile ",
                "#keyfile ": "keyfile ",
                "#tls_version ": "tls_version ",
                "#password_file ": "password_file ",
            }
        for old, new in self.rewrites.items():
            assert old in text, f"mosquitto.conf no longer contains {old!r}: update this test"
            text = text.replace(old, new)
        # The tests run as root: keep root instead of dropping to the mosquitto user (tmp files are root's).
        self.conf_path.write_text(text + "\nuser root\n")


@dataclass
class Pki:
    ca: TestCA
    rogue: TestCA
    etc: Path

    def client(self, name: str, *, ca: TestCA | None = None, trust: TestCA | None = None) -> TlsSettings:
        files = (ca or self.ca).issue_client(name)
        return TlsSettings(ca_file=(trust or self.ca).cert_file, cert_file=files.cert, key_file=files.key)


@pytest.fixture
def pki(tmp_path: Path) -> Pki:
    etc = tmp_path / "etc"
    ca = TestCA(tmp_path / "pki", "Varta Test CA")
    server = ca.issue_server(("127.0.0.1", "localhost"))
    etc.mkdir()
    shutil.copy(ca.cert_file, etc / "ca.crt")
    shutil.copy(server.cert, etc / "server.crt")
    shutil.copy(server.key, etc / "server.key")
    shutil.copy(DEPLOY / "acl.conf", etc / "acl.conf")
    return Pki(ca=ca, rogue=TestCA(tmp_path / "rogue", "Rogue CA"), etc=etc)


@pytest.fixture
def tls_broker(tmp_path: Path, pki: Pki) -> Iterator[ShippedBroker]:
    broker = ShippedBroker(workdir=tmp_path / "mosquitto", etc=pki.etc)
    broker.start()
    try:
        yield broker
    finally:
        broker.stop()


def tls_settings(broker: Broker, tls: TlsSettings, **kw: object) -> MqttSettings:
    return broker.settings(tls=tls, **kw)


def node_topic(node: str, channel: Channel) -> str:
    return topic(SITE, node, channel, "cam-1" if channel in DEVICE_CHANNELS else None)


def node_message(node: str, channel: Channel) -> bytes:
    return encode(example_message(channel, site=SITE, node_id=node, device_id="cam-1"))


@pytest.mark.parametrize("protocol", ["5", "3.1.1"])
async def test_node_certificate_connects_and_publishes_its_own_topics(
    tls_broker: ShippedBroker, pki: Pki, protocol: str
) -> None:
    channels = [c for c in Channel if c is not Channel.COMMAND]
    async with (
        MqttTestClient(tls_settings(tls_broker, pki.client("central")), subscriptions=["varta/v1/#"]) as central,
        MqttTestClient(tls_settings(tls_broker, pki.client(NODE_A), protocol=protocol)) as node,
    ):
        for channel in channels:
            await node.publish(node_topic(NODE_A, channel), node_message(NODE_A, channel))
        received = await central.collect(len(channels))
    assert sorted(m.topic for m in received) == sorted(node_topic(NODE_A, c) for c in channels)
    assert all(decode_for_topic(m.topic, m.payload).node_id == NODE_A for m in received)


async def test_centrals_ingest_subscriber_receives_over_mutual_tls(tls_broker: ShippedBroker, pki: Pki) -> None:
    ingest = Mqtt311Subscriber(tls_settings(tls_broker, pki.client("central")), client_id="varta-central-tls")
    ingest.add_subscription("varta/v1/+/+/health", qos=1)
    task = asyncio.create_task(ingest.run())
    try:
        await ingest.wait_connected(10)
        async with MqttTestClient(tls_settings(tls_broker, pki.client(NODE_A))) as node:
            await node.publish(node_topic(NODE_A, Channel.HEALTH), node_message(NODE_A, Channel.HEALTH))
        batch = await ingest.next_batch(10, timeout=10)
        ingest.ack_many(batch)
    finally:
        await ingest.stop()
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    assert [m.topic for m in batch] == [node_topic(NODE_A, Channel.HEALTH)]
    assert decode_for_topic(batch[0].topic, batch[0].payload).node_id == NODE_A


async def test_certificate_cn_is_the_acl_username(tls_broker: ShippedBroker, pki: Pki) -> None:
    own_command, other_command = node_topic(NODE_A, Channel.COMMAND), node_topic(NODE_B, Channel.COMMAND)
    async with (
        MqttTestClient(tls_settings(tls_broker, pki.client("central"))) as central,
        MqttTestClient(tls_settings(tls_broker, pki.client(NODE_A)), subscriptions=["varta/v1/+/+/cmd"]) as node,
    ):
        with pytest.raises(PublishRejected, match="Not authorized"):
            await node.publish(node_topic(NODE_B, Channel.STATUS), node_message(NODE_B, Channel.STATUS))
        await central.publish(other_command, encode(example_message(Channel.COMMAND, node_id=NODE_B)))
        await central.publish(own_command, encode(example_message(Channel.COMMAND, node_id=NODE_A)))
        await node.wait_for(lambda m: m.topic == own_command)
        await node.drain(0.3)
    assert node.topics() == [own_command]


def test_client_without_a_certificate_is_refused(tls_broker: ShippedBroker, pki: Pki) -> None:
    assert connack_reason(tls_settings(tls_broker, pki.client(NODE_A))) == "Success"  # the control
    no_cert = TlsSettings(ca_file=pki.ca.cert_file)
    assert connack_reason(tls_settings(tls_broker, no_cert)) == "no CONNACK"


async def test_certificate_from_another_ca_is_refused(tls_broker: ShippedBroker, pki: Pki) -> None:
    rogue = pki.client(NODE_A, ca=pki.rogue)
    assert connack_reason(tls_settings(tls_broker, rogue)) == "no CONNACK"
    async with MqttTestClient(tls_settings(tls_broker, pki.client(NODE_A))):  # a genuine node gets in meanwhile
        with pytest.raises(ConnectFailed):
            async with MqttTestClient(tls_settings(tls_broker, rogue), connect_timeout=2.0):
                pass


def test_client_refuses_a_broker_its_ca_did_not_sign(tls_broker: ShippedBroker, pki: Pki) -> None:
    trusts_rogue = pki.client(NODE_A, trust=pki.rogue)
    assert connack_reason(tls_settings(tls_broker, trusts_rogue)) == "no CONNACK"


def test_plain_mqtt_on_the_tls_port_gets_nothing(tls_broker: ShippedBroker) -> None:
    assert connack_reason(tls_broker.settings(username=NODE_A, password="x"), timeout=2.0) == "no CONNACK"


@pytest.fixture
def password_broker(tmp_path: Path, pki: Pki) -> Iterator[ShippedBroker]:
    """The shipped config with its optional password listener enabled (node-a's password: node-a-secret)."""
    subprocess.run(["mosquitto_passwd", "-c", "-b", str(pki.etc / "passwd"), NODE_A, "node-a-secret"], check=True)
    broker = ShippedBroker(workdir=tmp_path / "mosquitto", etc=pki.etc, password_port=free_port())
    broker.start()
    try:
        assert broker.password_port is not None
        wait_for_port(broker.password_port)
        yield broker
    finally:
        broker.stop()


async def test_optional_password_listener_uses_the_same_acl(password_broker: ShippedBroker, pki: Pki) -> None:
    broker = password_broker
    server_only = TlsSettings(ca_file=pki.ca.cert_file)

    def by_password(password: str | None) -> MqttSettings:
        return broker.settings(port=broker.password_port, tls=server_only, username=NODE_A, password=password)

    assert connack_reason(by_password("wrong")) == "Not authorized"
    assert connack_reason(broker.settings(port=broker.password_port, tls=server_only)) == "Not authorized"
    async with (
        MqttTestClient(tls_settings(broker, pki.client("central")), subscriptions=["varta/v1/#"]) as central,
        MqttTestClient(by_password("node-a-secret")) as node,
    ):
        with pytest.raises(PublishRejected, match="Not authorized"):
            await node.publish(node_topic(NODE_B, Channel.HEALTH), node_message(NODE_B, Channel.HEALTH))
        await node.publish(node_topic(NODE_A, Channel.HEALTH), node_message(NODE_A, Channel.HEALTH))
        message = await central.wait_for(lambda m: m.topic.startswith("varta/v1/"))
    assert message.topic == node_topic(NODE_A, Channel.HEALTH)


def test_certificate_listener_ignores_passwords(password_broker: ShippedBroker, pki: Pki) -> None:
    no_cert = TlsSettings(ca_file=pki.ca.cert_file)
    settings = tls_settings(password_broker, no_cert, username=NODE_A, password="node-a-secret")
    assert connack_reason(settings) == "no CONNACK"


def test_shipped_config_carries_the_production_settings() -> None:
    lines = {line.strip() for line in (DEPLOY / "mosquitto.conf").read_text().splitlines()}
    for setting in (
        "listener 8883",
        "require_certificate true",
        "use_identity_as_username true",
        "allow_anonymous false",
        "persistence true",
        "set_tcp_nodelay true",
        "max_inflight_messages 20000",
        "persistent_client_expiration 7d",
        "acl_file /etc/mosquitto/varta/acl.conf",
    ):
        assert setting in lines, setting
