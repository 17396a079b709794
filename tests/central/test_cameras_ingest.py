"""Central ingest of camera messages: info, snapshots (bigger than 64 KiB too), discovery, state mirror."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta
from typing import Any

import orjson
from sqlalchemy import func, select

from central.store.camera_models import Camera, CameraSnapshot, DiscoveredDeviceRecord
from central.store.fleet_models import Node
from central.store.kiosk_screen_models import KioskScreenshot
from tests.central.conftest import IngestEnv
from tests.central.test_cameras_support import CameraNode, found, jpeg
from tests.central.test_ingest import eventually
from varta.contract import MAX_PAYLOAD_BYTES, Channel, DeviceStatus, encode, topic, utcnow


async def publish(
    env: IngestEnv, node: CameraNode, channel: Channel, message: object, device: str | None = None
) -> None:
    await env.publisher.publish(topic(node.site, node.node_id, channel, device), encode(message), qos=1)  # type: ignore[arg-type]


async def camera(env: IngestEnv, node_id: str, device_id: str) -> Camera | None:
    async with env.db.session() as s:
        return await s.get(Camera, (node_id, device_id))


async def test_info_state_and_birth_key_fill_the_camera_row(ingest_env: IngestEnv) -> None:
    node = CameraNode("center", "maidan-01", box_public_key="A" * 43 + "=")
    await publish(ingest_env, node, Channel.BIRTH, node.birth())
    await publish(ingest_env, node, Channel.INFO, node.info("cam-1"), "cam-1")
    await publish(
        ingest_env,
        node,
        Channel.STATE,
        node.state("cam-1", DeviceStatus.ONLINE, width=1920, height=1080, fps=25.0),
        "cam-1",
    )

    async def ready() -> bool:
        c = await camera(ingest_env, "maidan-01", "cam-1")
        return c is not None and c.info is not None and c.status == "online"

    await eventually(ready)
    c = await camera(ingest_env, "maidan-01", "cam-1")
    assert c is not None and c.info is not None
    assert c.site == "center"
    assert c.info["model"] == "DS-2DE4425IW" and c.info["firmware"] == "V5.7.3"
    assert [p["token"] for p in c.info["profiles"]] == ["main", "sub"]
    assert c.attrs == {"width": 1920, "height": 1080, "fps": 25.0}
    assert c.name in {"Main square, north", "Camera cam-1"}  # a camera central did not adopt: the node names it
    async with ingest_env.db.session() as s:
        n = await s.get(Node, "maidan-01")
    assert n is not None and n.box_public_key == "A" * 43 + "="

    # The camera goes offline with a reason: mirrored, with the time it changed.
    await publish(
        ingest_env, node, Channel.STATE, node.state("cam-1", DeviceStatus.OFFLINE, "unreachable", "no route"), "cam-1"
    )

    async def offline() -> bool:
        c = await camera(ingest_env, "maidan-01", "cam-1")
        return c is not None and c.status == "offline"

    await eventually(offline)
    c = await camera(ingest_env, "maidan-01", "cam-1")
    assert c is not None and c.reason == "unreachable" and c.detail == "no route"


async def test_an_older_info_replayed_late_does_not_overwrite_a_newer_one(ingest_env: IngestEnv) -> None:
    node = CameraNode("center", "n-info")
    old = node.info("cam-1", firmware="V1")
    new = node.info("cam-1", firmware="V2")
    await publish(ingest_env, node, Channel.INFO, new, "cam-1")

    async def has_new() -> bool:
        c = await camera(ingest_env, "n-info", "cam-1")
        return c is not None and c.info is not None and c.info["firmware"] == "V2"

    await eventually(has_new)
    await publish(ingest_env, node, Channel.INFO, old, "cam-1")  # seq 1 < 2: lies in the gap, accepted but older

    async def seen() -> bool:
        return ingest_env.ingest.counters.stored >= 2

    await eventually(seen)
    c = await camera(ingest_env, "n-info", "cam-1")
    assert c is not None and c.info is not None and c.info["firmware"] == "V2"


async def test_snapshot_bigger_than_64_kib_is_stored_and_only_the_newest_are_kept(ingest_env: IngestEnv) -> None:
    node = CameraNode("center", "n-snap")
    big = jpeg(640, 480, noise=True)
    message = node.snapshot("cam-1", big, width=640, height=480)
    assert len(encode(message)) > MAX_PAYLOAD_BYTES  # the point of this test
    await publish(ingest_env, node, Channel.SNAPSHOT, message, "cam-1")

    async def stored() -> bool:
        c = await camera(ingest_env, "n-snap", "cam-1")
        return c is not None and c.snapshot_at is not None

    await eventually(stored)
    async with ingest_env.db.session() as s:
        row = (await s.scalars(select(CameraSnapshot).where(CameraSnapshot.node_id == "n-snap"))).one()
    assert row.data == big and (row.width, row.height) == (640, 480) and row.source == "onvif"
    assert ingest_env.ingest.counters.rejected.get("oversized", 0) == 0

    for i in range(5):
        await publish(ingest_env, node, Channel.SNAPSHOT, node.snapshot("cam-1", jpeg(seed=i)), "cam-1")

    async def pruned() -> bool:
        async with ingest_env.db.session() as s:
            n = await s.scalar(
                select(func.count()).select_from(CameraSnapshot).where(CameraSnapshot.node_id == "n-snap")
            )
        return ingest_env.ingest.counters.stored >= 6 and n == 3

    await eventually(pruned)


async def test_malformed_snapshots_are_rejected_and_counted(ingest_env: IngestEnv) -> None:
    node = CameraNode("center", "n-bad")
    t = topic(node.site, node.node_id, Channel.SNAPSHOT, "cam-1")
    not_jpeg = node.snapshot("cam-1", b"GIF89a" + b"\0" * 100)
    not_base64 = orjson.loads(encode(node.snapshot("cam-1", jpeg())))
    not_base64["data"] = "!!!not base64!!!"
    wrong_device = node.snapshot("cam-2", jpeg())
    too_big = b'{"v":1,' + b" " * (800 * 1024) + b"}"
    for payload in (encode(not_jpeg), orjson.dumps(not_base64), encode(wrong_device), too_big, b"\xff\xfe garbage"):
        await ingest_env.publisher.publish(t, payload, qos=1)

    async def counted() -> bool:
        return sum(ingest_env.ingest.counters.rejected.values()) >= 5

    await eventually(counted)
    rejected = ingest_env.ingest.counters.rejected
    assert rejected["invalid_schema"] == 2
    assert rejected["device_mismatch"] == 1
    assert rejected["oversized"] == 1
    assert rejected["malformed_json"] == 1
    async with ingest_env.db.session() as s:
        assert await s.scalar(select(func.count()).select_from(CameraSnapshot)) == 0
    # The loop lives on: a good one right after is stored.
    await publish(ingest_env, node, Channel.SNAPSHOT, node.snapshot("cam-1", jpeg()), "cam-1")

    async def good() -> bool:
        c = await camera(ingest_env, "n-bad", "cam-1")
        return c is not None and c.snapshot_at is not None

    await eventually(good)


async def test_discovery_fills_the_inbox_once_and_keeps_the_operators_decision(ingest_env: IngestEnv) -> None:
    node = CameraNode("north", "park-03")
    report = node.discovery(found(1), found(2))
    await publish(ingest_env, node, Channel.DISCOVERY, report)
    await publish(ingest_env, node, Channel.DISCOVERY, report)  # the same message again (redelivery): one row each

    async def two() -> bool:
        async with ingest_env.db.session() as s:
            rows = (await s.scalars(select(DiscoveredDeviceRecord))).all()
        return len(rows) == 2 and ingest_env.ingest.counters.duplicates >= 1

    await eventually(two)
    async with ingest_env.db.session() as s:
        rows = (await s.scalars(select(DiscoveredDeviceRecord).order_by(DiscoveredDeviceRecord.endpoint))).all()
        assert [r.state for r in rows] == ["new", "new"]
        assert rows[0].xaddrs == ["http://192.0.2.101/onvif/device_service"] and rows[0].name == "Cam1"
        rows[1].state = "ignored"
        await s.commit()
    # Found again later, at a new address: updated, still ignored; and a third one appears.
    await publish(ingest_env, node, Channel.DISCOVERY, node.discovery(found(2, "192.0.2.222"), found(3)))

    async def three() -> bool:
        async with ingest_env.db.session() as s:
            return (await s.scalar(select(func.count()).select_from(DiscoveredDeviceRecord))) == 3

    await eventually(three)
    async with ingest_env.db.session() as s:
        rows = (await s.scalars(select(DiscoveredDeviceRecord).order_by(DiscoveredDeviceRecord.endpoint))).all()
    assert [(r.state, r.address) for r in rows] == [
        ("new", "192.0.2.101"),
        ("ignored", "192.0.2.222"),
        ("new", "192.0.2.103"),
    ]


async def test_camera_changes_are_pushed_on_the_bus(ingest_env: IngestEnv) -> None:
    node = CameraNode("center", "n-bus")
    async with ingest_env.bus.subscribe() as events:
        await publish(ingest_env, node, Channel.STATE, node.state("cam-9", DeviceStatus.DEGRADED, "frozen"), "cam-9")
        await publish(ingest_env, node, Channel.SNAPSHOT, node.snapshot("cam-9", jpeg()), "cam-9")
        seen: list[dict[str, object]] = []
        async with asyncio.timeout(30):
            async for event in events:
                if event.kind == "camera":
                    seen.append(event.data)
                    if seen[-1]["snapshot_at"] is not None:
                        break
    assert seen[0]["device_id"] == "cam-9" and seen[0]["status"] == "degraded" and seen[0]["reason"] == "frozen"


async def test_kiosk_screenshots_keep_the_newest_three_and_never_make_a_camera(ingest_env: IngestEnv) -> None:
    node = CameraNode("center", "kiosk-1")
    await publish(ingest_env, node, Channel.BIRTH, node.birth())
    start = utcnow()
    for i in range(5):
        shot = node.snapshot("kiosk", jpeg(seed=i), taken_at=start + timedelta(seconds=i)).model_copy(
            update={"source": "screen"}
        )
        await publish(ingest_env, node, Channel.SNAPSHOT, shot, "kiosk")

    async def stored() -> list[datetime]:
        async with ingest_env.db.session() as s:
            rows = await s.scalars(select(KioskScreenshot.taken_at).order_by(KioskScreenshot.taken_at))
            return list(rows.all())

    await eventually(lambda: _has_newest(stored, start + timedelta(seconds=4)))
    assert await stored() == [start + timedelta(seconds=i) for i in (2, 3, 4)]
    assert await camera(ingest_env, "kiosk-1", "kiosk") is None  # a screen is not a camera


async def _has_newest(stored: Any, newest: datetime) -> bool:
    rows = await stored()
    return bool(rows) and rows[-1] == newest
