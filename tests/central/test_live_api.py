"""Live view at central (WHEP, RFC 9725): the offer goes to the node as a signed command, the node's answer comes
back as the 201 body; only roles with view rights may watch; every session is recorded and audited with its start
and end; admins list who watched what.

The node here is a test client on a real Mosquitto that verifies each command's signature like an agent would and
answers as the test tells it to.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from central.auth.roles import Role
from central.commands import CommandService
from central.config import CommandSettings, LiveSettings
from central.store.camera_models import Camera
from central.store.fleet_models import CommandRecord, Node
from central.store.live_models import LiveSession
from tests.central.test_auth_support import ORIGIN, CentralEnv, make_config
from tests.support.broker import Broker
from varta.contract import (
    Channel,
    Command,
    CommandRejection,
    CommandResult,
    CommandStatus,
    IceServer,
    LiveError,
    LiveStartParams,
    LiveStartResult,
    LiveStopParams,
    decode,
    encode,
    topic,
    utcnow,
)
from varta.mqtt import MqttClient
from varta.signing import load_or_create_signing_key, verify_command

OFFER = (
    "v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\na=group:BUNDLE 0\r\n"
    "m=video 9 UDP/TLS/RTP/SAVPF 102\r\nc=IN IP4 0.0.0.0\r\na=mid:0\r\na=recvonly\r\n"
    "a=rtpmap:102 H264/90000\r\na=fmtp:102 level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42e01f\r\n"
)
ANSWER = OFFER.replace("a=recvonly", "a=sendonly").replace("42e01f", "640028")
SDP = {"content-type": "application/sdp"}
WHEP = "/api/v1/cameras/maidan-01/cam-1/whep"

Reply = Callable[[Command], CommandResult | None]


@dataclass
class FakeNode:
    """Answers ``camera.live.*`` commands on the broker like an agent, after checking their signature."""

    client: MqttClient
    central_key: Any
    reply: Reply
    received: list[Command] = field(default_factory=list)

    def result(self, command: Command, status: CommandStatus, **kw: Any) -> CommandResult:
        return CommandResult(
            node_id="maidan-01",
            boot_id="node-boot",
            seq=len(self.received),
            ts=utcnow(),
            request_id=command.request_id,
            command=command.command,
            status=status,
            **kw,
        )

    async def serve(self) -> None:
        while True:
            for m in await self.client.next_batch(100, timeout=1.0):
                command = decode(Channel.COMMAND, m.payload)
                assert isinstance(command, Command)
                assert verify_command(command, [self.central_key])
                self.received.append(command)
                answer = self.reply(command)
                if answer is not None:
                    await self.client.publish(
                        topic("center", "maidan-01", Channel.COMMAND_RESULT), encode(answer), qos=1
                    )
                self.client.ack(m)


def answer_ok(node: FakeNode) -> Reply:
    def reply(command: Command) -> CommandResult:
        if command.command == "camera.live.stop":
            LiveStopParams.model_validate(command.params)
            return node.result(command, CommandStatus.OK, result={"stopped": True})
        params = LiveStartParams.model_validate(command.params)
        result = LiveStartResult(
            session_id=params.session_id,
            answer_sdp=ANSWER,
            codec="H264 profile-level-id=640028",
            width=1280,
            height=720,
            viewers=1,
        )
        return node.result(command, CommandStatus.OK, result=result.model_dump(mode="json"))

    return reply


@dataclass
class LiveEnv:
    env: CentralEnv
    node: FakeNode
    tokens: dict[str, str]

    def auth(self, user: str) -> dict[str, str]:
        return {"authorization": f"Bearer {self.tokens[user]}"}


async def seed(env: CentralEnv, *, node_online: bool = True) -> None:
    now = utcnow()
    async with env.db.session() as s:
        s.add(Node(node_id="maidan-01", site="center", name="Майдан", online=node_online, first_seen=now))
        s.add(
            Camera(
                node_id="maidan-01",
                device_id="cam-1",
                site="center",
                name="Fountain",
                position="",
                status="online",
                detail="",
                attrs={},
                created_at=now,
            )
        )
        await s.commit()


@contextlib.asynccontextmanager
async def live_env(
    tmp_path: Path, broker: Broker, *, live: LiveSettings | None = None, node_online: bool = True
) -> AsyncIterator[LiveEnv]:
    import httpx

    from central.app import create_app

    config = make_config(tmp_path, live=live or LiveSettings(start_timeout_s=5))
    app = create_app(config, start_background=False)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app, client=("192.0.2.7", 50000))
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
            env = CentralEnv(app=app, config=config, client=client)
            await seed(env, node_online=node_online)
            tokens = {}
            for name, role in [
                ("olena", Role.DISPATCHER),
                ("petro", Role.DISPATCHER),
                ("iryna", Role.OBSERVER),
                ("admin", Role.ADMIN),
            ]:
                await env.add_user(name, role)
                tokens[name] = await env.api_token(name)
            key = load_or_create_signing_key(tmp_path / "central-signing.key")
            central_mqtt = MqttClient(broker.settings(), client_id=f"central-{uuid.uuid4().hex[:6]}", clean_start=True)
            node_mqtt = MqttClient(broker.settings(), client_id=f"node-{uuid.uuid4().hex[:6]}", clean_start=True)
            node_mqtt.add_subscription("varta/v1/+/+/cmd", qos=1)
            commands = CommandService(central_mqtt, key, CommandSettings(), instance_id="central-test")
            commands.subscribe_results()
            node = FakeNode(node_mqtt, key.verify_key, lambda c: None)
            node.reply = answer_ok(node)
            tasks = [asyncio.create_task(central_mqtt.run()), asyncio.create_task(node_mqtt.run())]
            await central_mqtt.wait_connected(10)
            await node_mqtt.wait_connected(10)
            tasks += [asyncio.create_task(node.serve()), asyncio.create_task(commands.run_results())]
            app.state.services.commands = commands
            try:
                yield LiveEnv(env, node, tokens)
            finally:
                app.state.services.commands = None
                for t in tasks:
                    t.cancel()
                for t in tasks:
                    with contextlib.suppress(asyncio.CancelledError):
                        await t
                await central_mqtt.stop()
                await node_mqtt.stop()


@pytest.fixture
async def live(tmp_path: Path, broker: Broker) -> AsyncIterator[LiveEnv]:
    async with live_env(tmp_path, broker) as env:
        yield env


async def sessions(env: CentralEnv) -> list[LiveSession]:
    async with env.db.session() as s:
        return list((await s.scalars(select(LiveSession).order_by(LiveSession.started_at))).all())


async def test_an_offer_is_relayed_to_the_node_and_its_answer_returned_as_201(live: LiveEnv) -> None:
    r = await live.env.client.post(WHEP + "?stream=sub", content=OFFER, headers={**SDP, **live.auth("olena")})
    assert r.status_code == 201, r.text
    assert r.headers["content-type"] == "application/sdp"
    assert r.text == ANSWER
    location = r.headers["location"]
    assert location.startswith("/api/v1/live/sessions/")
    assert r.headers["x-varta-codec"] == "H264 profile-level-id=640028"
    assert "link" not in r.headers  # no ICE servers configured: none announced

    # What the node received: a signed command carrying the offer, for the sub-stream, with no ICE servers.
    (command,) = live.node.received
    params = LiveStartParams.model_validate(command.params)
    assert command.command == "camera.live.start" and command.issued_by == "olena"
    assert params.offer_sdp == OFFER and params.stream == "sub" and params.ice_servers == []
    assert location.endswith("/" + params.session_id)

    (row,) = await sessions(live.env)
    assert (row.username, row.node_id, row.device_id, row.stream) == ("olena", "maidan-01", "cam-1", "sub")
    assert row.ended_at is None and row.ip == "192.0.2.7" and row.codec.startswith("H264")
    (started,) = await live.env.audit("live.started")
    assert started.actor == "olena" and started.target == "maidan-01/cam-1"
    assert started.detail["session_id"] == params.session_id

    # Central records the command, but not the offer itself (it holds the viewer's ICE credentials).
    async with live.env.db.session() as s:
        record = await s.get(CommandRecord, command.request_id)
    assert record is not None and "a=ice" not in str(record.params) and "bytes" in record.params["offer_sdp"]


async def test_delete_on_the_location_ends_the_session_at_the_node_and_in_the_audit(live: LiveEnv) -> None:
    r = await live.env.client.post(WHEP, content=OFFER, headers={**SDP, **live.auth("olena")})
    location = r.headers["location"]
    r = await live.env.client.delete(location, headers=live.auth("olena"))
    assert r.status_code == 200

    async def stop_arrived() -> bool:
        return any(c.command == "camera.live.stop" for c in live.node.received)

    await eventually(stop_arrived)
    stop = next(c for c in live.node.received if c.command == "camera.live.stop")
    assert stop.params == {"device_id": "cam-1", "session_id": location.rsplit("/", 1)[1]}
    (row,) = await sessions(live.env)
    assert row.ended_at is not None and row.end_reason == "viewer_left"
    (ended,) = await live.env.audit("live.ended")
    assert ended.actor == "olena" and ended.detail["reason"] == "viewer_left"
    assert ended.detail["started_at"] == row.started_at.isoformat()
    assert ended.detail["ended_at"] == row.ended_at.isoformat()

    # A second DELETE changes nothing and audits nothing more.
    r = await live.env.client.delete(location, headers=live.auth("olena"))
    assert r.status_code == 200
    assert len(await live.env.audit("live.ended")) == 1


async def test_a_user_without_view_rights_is_refused_and_nothing_reaches_the_node(live: LiveEnv) -> None:
    r = await live.env.client.post(WHEP, content=OFFER, headers={**SDP, **live.auth("iryna")})
    assert r.status_code == 403 and "dispatcher" in r.json()["detail"]
    r = await live.env.client.post(WHEP, content=OFFER, headers=SDP)
    assert r.status_code == 401
    # The observer still reads the fleet (no pictures there).
    assert (await live.env.client.get("/api/v1/nodes", headers=live.auth("iryna"))).status_code == 200
    assert (await live.env.client.get("/api/v1/cameras", headers=live.auth("iryna"))).status_code == 403
    await asyncio.sleep(0.2)
    assert live.node.received == []
    assert await sessions(live.env) == []


async def test_only_the_viewer_or_an_admin_may_end_a_session_and_only_admins_list_them(live: LiveEnv) -> None:
    r = await live.env.client.post(WHEP, content=OFFER, headers={**SDP, **live.auth("olena")})
    location = r.headers["location"]
    assert (await live.env.client.delete(location, headers=live.auth("petro"))).status_code == 403
    r = await live.env.client.get("/api/v1/live/sessions", headers=live.auth("olena"))
    assert r.status_code == 403
    r = await live.env.client.get("/api/v1/live/sessions?active=true", headers=live.auth("admin"))
    assert r.status_code == 200
    (listed,) = r.json()
    assert listed["username"] == "olena" and listed["camera_name"] == "Fountain" and listed["ended_at"] is None
    assert listed["duration_s"] >= 0
    assert (await live.env.client.delete(location, headers=live.auth("admin"))).status_code == 200
    r = await live.env.client.get("/api/v1/live/sessions?active=false", headers=live.auth("admin"))
    (ended,) = r.json()
    assert ended["end_reason"] == "viewer_left" and ended["ended_at"] is not None
    (audit,) = await live.env.audit("live.ended")
    assert audit.actor == "admin" and audit.detail["viewer"] == "olena"


@pytest.mark.parametrize(
    ("reason", "status", "retry_after"),
    [
        (LiveError.CAPACITY, 503, "10"),
        (LiveError.LIVE_DISABLED, 501, None),
        (LiveError.UNKNOWN_CAMERA, 404, None),
        (LiveError.SOURCE_UNAVAILABLE, 502, None),
        (LiveError.NO_COMMON_CODEC, 406, None),
        (LiveError.BAD_OFFER, 400, None),
    ],
)
async def test_a_node_error_becomes_a_clear_http_error_and_no_session(
    live: LiveEnv, reason: LiveError, status: int, retry_after: str | None
) -> None:
    live.node.reply = lambda c: live.node.result(
        c, CommandStatus.ERROR, reason=reason.value, detail=f"it failed: {reason.value}"
    )
    r = await live.env.client.post(WHEP, content=OFFER, headers={**SDP, **live.auth("olena")})
    assert r.status_code == status
    assert r.json()["detail"] == f"it failed: {reason.value}"
    assert r.headers.get("retry-after") == retry_after
    assert await sessions(live.env) == []
    (failed,) = await live.env.audit("live.failed")
    assert failed.success is False and failed.actor == "olena"


async def test_an_agent_without_live_view_gets_501(live: LiveEnv) -> None:
    live.node.reply = lambda c: live.node.result(
        c, CommandStatus.REJECTED, reason=CommandRejection.UNKNOWN_COMMAND.value
    )
    r = await live.env.client.post(WHEP, content=OFFER, headers={**SDP, **live.auth("olena")})
    assert r.status_code == 501 and "update its agent" in r.json()["detail"]


async def test_a_silent_node_gives_504_within_the_configured_wait(tmp_path: Path, broker: Broker) -> None:
    async with live_env(tmp_path, broker, live=LiveSettings(start_timeout_s=0.5)) as live:
        live.node.reply = lambda c: None
        loop = asyncio.get_running_loop()
        started = loop.time()
        r = await live.env.client.post(WHEP, content=OFFER, headers={**SDP, **live.auth("olena")})
        assert r.status_code == 504 and "did not answer" in r.json()["detail"]
        assert loop.time() - started < 3
        assert await sessions(live.env) == []


async def test_an_offline_node_is_refused_at_once(tmp_path: Path, broker: Broker) -> None:
    async with live_env(tmp_path, broker, node_online=False) as live:
        r = await live.env.client.post(WHEP, content=OFFER, headers={**SDP, **live.auth("olena")})
        assert r.status_code == 503 and "offline" in r.json()["detail"]
        assert r.headers["retry-after"] == "30"
        await asyncio.sleep(0.2)
        assert live.node.received == []


async def test_bad_offers_are_refused_before_anything_is_sent(live: LiveEnv) -> None:
    client, auth = live.env.client, live.auth("olena")
    r = await client.post(WHEP, content=OFFER, headers={"content-type": "text/plain", **auth})
    assert r.status_code == 415
    r = await client.post(WHEP, content="hello", headers={**SDP, **auth})
    assert r.status_code == 400
    r = await client.post(WHEP, content=b"v=0\r\n\xff\xfe", headers={**SDP, **auth})
    assert r.status_code == 400
    r = await client.post(WHEP, content="v=0\r\n" + "a=x\r\n" * 10_000, headers={**SDP, **auth})
    assert r.status_code == 413
    r = await client.post(WHEP + "?stream=fisheye", content=OFFER, headers={**SDP, **auth})
    assert r.status_code == 422
    r = await client.post("/api/v1/cameras/maidan-01/cam-9/whep", content=OFFER, headers={**SDP, **auth})
    assert r.status_code == 404
    r = await client.patch("/api/v1/live/sessions/abcdefgh1234", headers=auth)
    assert r.status_code == 405
    assert live.node.received == []


async def test_a_user_may_hold_only_so_many_live_views(tmp_path: Path, broker: Broker) -> None:
    async with live_env(tmp_path, broker, live=LiveSettings(start_timeout_s=5, max_sessions_per_user=2)) as live:
        for _ in range(2):
            r = await live.env.client.post(WHEP, content=OFFER, headers={**SDP, **live.auth("olena")})
            assert r.status_code == 201
        r = await live.env.client.post(WHEP, content=OFFER, headers={**SDP, **live.auth("olena")})
        assert r.status_code == 429 and "2 live views" in r.json()["detail"]
        r = await live.env.client.post(WHEP, content=OFFER, headers={**SDP, **live.auth("petro")})
        assert r.status_code == 201


async def test_ice_servers_go_to_the_node_and_the_browser(tmp_path: Path, broker: Broker) -> None:
    servers = [
        IceServer(urls=["stun:stun.city.example:3478"]),
        IceServer(urls=["turn:turn.city.example:3478"], username="u", credential="c"),
    ]
    async with live_env(tmp_path, broker, live=LiveSettings(ice_servers=servers)) as live:
        r = await live.env.client.get("/api/v1/live/config", headers=live.auth("olena"))
        assert r.json()["ice_servers"][0]["urls"] == ["stun:stun.city.example:3478"]
        r = await live.env.client.post(WHEP, content=OFFER, headers={**SDP, **live.auth("olena")})
        assert r.status_code == 201
        assert '<stun:stun.city.example:3478>; rel="ice-server"' in r.headers["link"]
        assert 'username="u"; credential="c"' in r.headers["link"]
        params = LiveStartParams.model_validate(live.node.received[0].params)
        assert params.ice_servers == servers


async def test_session_callers_need_the_origin_check_for_whep(live: LiveEnv) -> None:
    token = await live.env.session_token("olena")
    headers = {"cookie": f"varta_session={token}", **SDP}
    r = await live.env.client.post(WHEP, content=OFFER, headers={**headers, "origin": "https://evil.example"})
    assert r.status_code == 403
    r = await live.env.client.post(WHEP, content=OFFER, headers={**headers, **ORIGIN})
    assert r.status_code == 201


async def eventually(check: Callable[[], Any], timeout: float = 5.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while loop.time() < deadline:
        if await check():
            return
        await asyncio.sleep(0.05)
    raise AssertionError("condition not met in time")


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"\x00" * 100,
        b"v=0\nm=video 9",  # looks like an offer, too short to be one
        b"v=0\r\nm=video 9 UDP/TLS/RTP/SAVPF 96\r\n" + "ї".encode() * 20_000,  # 40 KB
        b'{"type": "offer", "sdp": "v=0"}',
        b"v=0\r\n" + b"m=audio 9 RTP/AVP 0\r\n" * 3,
        "v=0\r\nm=video \u202e\r\n".encode(),
    ],
)
async def test_garbage_instead_of_an_offer_gets_a_clear_4xx_never_a_crash(live: LiveEnv, body: bytes) -> None:
    r = await live.env.client.post(WHEP, content=body, headers={**SDP, **live.auth("olena")})
    assert r.status_code in (400, 413), (r.status_code, r.text)
    assert isinstance(r.json()["detail"], str)
    assert await sessions(live.env) == []


async def test_garbage_on_cmd_result_is_counted_and_answers_still_arrive(live: LiveEnv) -> None:
    commands: CommandService = live.env.app.state.services.commands
    result_topic = topic("center", "maidan-01", Channel.COMMAND_RESULT)
    for payload in (b"garbage", b"{}", b'{"v": 1, "type": "command_result"}', b"[" * 10_000):
        await live.node.client.publish(result_topic, payload, qos=1)

    async def counted() -> bool:
        return commands.results_invalid >= 4

    await eventually(counted)
    r = await live.env.client.post(WHEP, content=OFFER, headers={**SDP, **live.auth("olena")})
    assert r.status_code == 201 and r.text == ANSWER


async def test_a_session_ended_elsewhere_meanwhile_is_not_ended_or_audited_twice(live: LiveEnv) -> None:
    from central.store import live_queries

    r = await live.env.client.post(WHEP, content=OFFER, headers={**SDP, **live.auth("olena")})
    session_id = r.headers["location"].rsplit("/", 1)[1]
    async with live.env.db.session() as viewer_side, live.env.db.session() as ingest_side:
        stale = await viewer_side.get(LiveSession, session_id)  # the DELETE handler read the open row ...
        fresh = await ingest_side.get(LiveSession, session_id)
        assert stale is not None and fresh is not None
        # ... while ingest closed it on the node's word and committed first.
        assert await live_queries.end_session(ingest_side, fresh, at=utcnow(), reason="viewer_lost", frames_sent=9)
        await ingest_side.commit()
        assert not await live_queries.end_session(viewer_side, stale, at=utcnow(), reason="viewer_left")
        await viewer_side.commit()
    (row,) = await sessions(live.env)
    assert (row.end_reason, row.frames_sent) == ("viewer_lost", 9)
    assert len(await live.env.audit("live.ended")) == 1
