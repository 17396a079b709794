"""The shipped deploy/mosquitto/acl.conf on a real Mosquitto: each node is confined to its own topics.

Logins are username + password (mosquitto_passwd); the TLS tests show the same ACL with certificate CNs.
"""

from __future__ import annotations

import secrets
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.support.broker import Broker
from tests.support.mqtt_client import ConnectFailed, MqttTestClient, connack_reason, vanish
from varta.asyncapi import example_message
from varta.contract import DEVICE_CHANNELS, Availability, Channel, decode_for_topic, encode, topic
from varta.mqtt import MqttSettings, PublishRejected, Will

ACL_FILE = Path(__file__).resolve().parent.parent / "deploy" / "mosquitto" / "acl.conf"
SITE = "site-1"
NODE_A, NODE_B = "node-a", "node-b"
NODE_CHANNELS = [c for c in Channel if c is not Channel.COMMAND]
PROTOCOLS = ["5", "3.1.1"]


def node_topic(node: str, channel: Channel) -> str:
    return topic(SITE, node, channel, "cam-1" if channel in DEVICE_CHANNELS else None)


def node_message(node: str, channel: Channel) -> bytes:
    return encode(example_message(channel, site=SITE, node_id=node, device_id="cam-1"))


@dataclass
class AclBroker:
    """A Mosquitto with the shipped ACL and a password file for central, node-a and node-b."""

    broker: Broker
    passwords: dict[str, str]

    def settings(self, user: str | None, protocol: str = "5", password: str | None = None) -> MqttSettings:
        if user is None:
            return self.broker.settings(protocol=protocol)
        return self.broker.settings(username=user, password=password or self.passwords[user], protocol=protocol)


@pytest.fixture
def acl_broker(tmp_path: Path) -> Iterator[AclBroker]:
    password_file = tmp_path / "passwd"
    passwords = {user: secrets.token_urlsafe(12) for user in ("central", NODE_A, NODE_B)}
    for user, password in passwords.items():
        create = ["-c"] if not password_file.exists() else []
        subprocess.run(["mosquitto_passwd", *create, "-b", str(password_file), user, password], check=True)
    broker = Broker(
        workdir=tmp_path / "mosquitto",
        extra_conf=(f"allow_anonymous false\npassword_file {password_file}\nacl_file {ACL_FILE}\n"),
    ).start()
    try:
        yield AclBroker(broker, passwords)
    finally:
        broker.stop()


@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_node_publishes_on_all_its_own_channels_and_central_reads_them(
    acl_broker: AclBroker, protocol: str
) -> None:
    async with (
        MqttTestClient(acl_broker.settings("central"), subscriptions=["varta/v1/#"]) as central,
        MqttTestClient(acl_broker.settings(NODE_A, protocol)) as node,
    ):
        assert node.protocol == protocol
        for channel in NODE_CHANNELS:
            await node.publish(node_topic(NODE_A, channel), node_message(NODE_A, channel))
        received = await central.collect(len(NODE_CHANNELS))
    assert sorted(m.topic for m in received) == sorted(node_topic(NODE_A, c) for c in NODE_CHANNELS)
    for message in received:
        assert decode_for_topic(message.topic, message.payload).node_id == NODE_A


async def test_mqtt5_publish_under_another_node_is_refused_not_authorized(acl_broker: AclBroker) -> None:
    async with (
        MqttTestClient(acl_broker.settings("central"), subscriptions=["varta/v1/#"]) as central,
        MqttTestClient(acl_broker.settings(NODE_A, "5")) as node,
    ):
        for channel in [*NODE_CHANNELS, Channel.COMMAND]:
            with pytest.raises(PublishRejected) as info:
                await node.publish(node_topic(NODE_B, channel), node_message(NODE_B, channel))
            assert info.value.reason == "Not authorized"
            assert info.value.code == 135
        marker = node_topic(NODE_A, Channel.EVENT)
        await node.publish(marker, node_message(NODE_A, Channel.EVENT))
        await central.wait_for(lambda m: m.topic == marker)
    assert [t for t in central.topics() if f"/{NODE_B}/" in t] == []


async def test_mqtt311_publish_under_another_node_is_dropped_silently(acl_broker: AclBroker) -> None:
    async with (
        MqttTestClient(acl_broker.settings("central"), subscriptions=["varta/v1/#"]) as central,
        MqttTestClient(acl_broker.settings(NODE_A, "3.1.1")) as node,
    ):
        for channel in NODE_CHANNELS:
            await node.publish(node_topic(NODE_B, channel), node_message(NODE_B, channel))  # PUBACK, no error
        # Messages of one connection arrive in order: once the marker is in, the forgeries would have been too.
        marker = node_topic(NODE_A, Channel.EVENT)
        await node.publish(marker, node_message(NODE_A, Channel.EVENT))
        await central.wait_for(lambda m: m.topic == marker)
    assert [t for t in central.topics() if f"/{NODE_B}/" in t] == []


@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_node_cannot_send_commands_even_to_itself(acl_broker: AclBroker, protocol: str) -> None:
    command = encode(example_message(Channel.COMMAND, site=SITE, node_id=NODE_A))
    async with (
        MqttTestClient(acl_broker.settings(NODE_A, protocol), subscriptions=[node_topic(NODE_A, Channel.COMMAND)]) as a,
        MqttTestClient(acl_broker.settings(NODE_B, protocol)) as b,
    ):
        for node in (a, b):
            try:
                await node.publish(node_topic(NODE_A, Channel.COMMAND), command)
            except PublishRejected as exc:
                assert protocol == "5"
                assert exc.reason == "Not authorized"
            else:
                assert protocol == "3.1.1", "MQTT 5 must refuse a node's command publish"
        await a.drain(0.5)
    assert a.received == []


@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_node_reads_its_own_commands_and_nothing_else(acl_broker: AclBroker, protocol: str) -> None:
    wide_filters = ["varta/v1/#", "varta/v1/+/+/cmd", node_topic(NODE_B, Channel.COMMAND)]
    own_command = node_topic(NODE_A, Channel.COMMAND)
    async with (
        MqttTestClient(acl_broker.settings("central")) as central,
        MqttTestClient(acl_broker.settings(NODE_B, protocol)) as node_b,
        MqttTestClient(acl_broker.settings(NODE_A, protocol), subscriptions=wide_filters) as node_a,
    ):
        await node_b.publish(node_topic(NODE_B, Channel.HEALTH), node_message(NODE_B, Channel.HEALTH))
        await node_b.publish(node_topic(NODE_B, Channel.STATUS), node_message(NODE_B, Channel.STATUS), retain=True)
        await central.publish(
            node_topic(NODE_B, Channel.COMMAND), encode(example_message(Channel.COMMAND, node_id=NODE_B))
        )
        await central.publish(own_command, encode(example_message(Channel.COMMAND, node_id=NODE_A)))
        await node_a.wait_for(lambda m: m.topic == own_command)
        await node_a.drain(0.3)
    assert set(node_a.topics()) == {own_command}


async def test_central_sends_commands_to_every_node(acl_broker: AclBroker) -> None:
    commands = {node: node_topic(node, Channel.COMMAND) for node in (NODE_A, NODE_B)}
    async with (
        MqttTestClient(acl_broker.settings(NODE_A), subscriptions=[commands[NODE_A]]) as node_a,
        MqttTestClient(acl_broker.settings(NODE_B), subscriptions=[commands[NODE_B]]) as node_b,
        MqttTestClient(acl_broker.settings("central")) as central,
    ):
        for node, name in commands.items():
            await central.publish(name, encode(example_message(Channel.COMMAND, site=SITE, node_id=node)), expiry_s=60)
        got_a = await node_a.wait_for(lambda m: m.topic == commands[NODE_A])
        got_b = await node_b.wait_for(lambda m: m.topic == commands[NODE_B])
    assert decode_for_topic(got_a.topic, got_a.payload).node_id == NODE_A
    assert decode_for_topic(got_b.topic, got_b.payload).node_id == NODE_B


async def test_central_cannot_forge_node_messages(acl_broker: AclBroker) -> None:
    async with MqttTestClient(acl_broker.settings("central")) as central:
        for channel in NODE_CHANNELS:
            with pytest.raises(PublishRejected, match="Not authorized"):
                await central.publish(node_topic(NODE_A, channel), node_message(NODE_A, channel))


async def test_central_shared_subscription_receives_node_telemetry(acl_broker: AclBroker) -> None:
    health = node_topic(NODE_A, Channel.HEALTH)
    shared = f"$share/varta-central/{'varta/v1/+/+/health'}"
    async with (
        MqttTestClient(acl_broker.settings("central"), subscriptions=[shared]) as central,
        MqttTestClient(acl_broker.settings(NODE_A)) as node,
    ):
        await node.publish(health, node_message(NODE_A, Channel.HEALTH))
        message = await central.wait_for(lambda m: m.topic == health)
    assert decode_for_topic(message.topic, message.payload).node_id == NODE_A


async def test_last_will_is_delivered_only_on_the_nodes_own_status(acl_broker: AclBroker) -> None:
    def will(node: str) -> Will:
        offline = Availability(
            **{
                **example_message(Channel.STATUS, node_id=node).model_dump(),
                "state": "offline",
                "reason": "last_will",
            }
        )
        return Will(node_topic(node, Channel.STATUS), encode(offline))

    async with MqttTestClient(acl_broker.settings("central"), subscriptions=["varta/v1/+/+/status"]) as central:
        vanish(acl_broker.settings(NODE_A), will(NODE_B))  # node-a pretends node-b went away: dropped
        vanish(acl_broker.settings(NODE_A), will(NODE_A))
        own = await central.wait_for(lambda m: m.topic == node_topic(NODE_A, Channel.STATUS))
        await central.drain(0.5)
    decoded = decode_for_topic(own.topic, own.payload)
    assert isinstance(decoded, Availability)
    assert (decoded.state, decoded.reason) == ("offline", "last_will")
    assert central.topics() == [node_topic(NODE_A, Channel.STATUS)]
    # A central that subscribes later still learns it: the will is retained (and the forged one is nowhere).
    async with MqttTestClient(acl_broker.settings("central"), subscriptions=["varta/v1/+/+/status"]) as late:
        retained = await late.wait_for(lambda m: m.topic == node_topic(NODE_A, Channel.STATUS))
        await late.drain(0.3)
    assert retained.retain
    assert late.topics() == [node_topic(NODE_A, Channel.STATUS)]


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_anonymous_and_wrong_passwords_are_refused(acl_broker: AclBroker, protocol: str) -> None:
    assert connack_reason(acl_broker.settings(NODE_A, protocol)) == "Success"
    assert connack_reason(acl_broker.settings(None, protocol)) == "Not authorized"
    assert connack_reason(acl_broker.settings(NODE_A, protocol, password="wrong")) == "Not authorized"
    assert connack_reason(acl_broker.settings("stranger", protocol, password="x")) == "Not authorized"


async def test_varta_client_without_credentials_never_connects(acl_broker: AclBroker) -> None:
    with pytest.raises(ConnectFailed):
        async with MqttTestClient(acl_broker.settings(None), connect_timeout=2.0):
            pass


def test_shipped_acl_comments_every_rule() -> None:
    lines = ACL_FILE.read_text().splitlines()
    for index, line in enumerate(lines):
        if line.strip() and not line.startswith("#"):
            assert lines[index - 1].startswith("# "), f"rule without a comment above it: {line!r}"
            assert "#" not in line.replace("varta/v1/#", ""), f"Mosquitto reads trailing text as topic: {line!r}"
