"""The camera pages in a real browser: the wall follows camera status live, the PTZ pad sends move then stop."""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import AsyncIterator

import pytest
from nacl.public import PrivateKey
from playwright.async_api import Page, expect

from central.auth.bootstrap import ensure_user
from central.auth.roles import Role
from central.store import camera_queries
from central.store.db import Database
from tests.browser.conftest import PASSWORD, CentralServer, screenshot_path, sign_in
from tests.browser.seed import (
    SimNode,
    camera_picture,
    publish_availability,
    publish_camera,
    publish_camera_birth,
    publish_discovery,
    publish_event,
)
from tests.support.broker import Broker
from varta.contract import (
    Channel,
    Command,
    CommandResult,
    CommandStatus,
    DeviceStatus,
    Severity,
    decode,
    encode,
    topic,
    utcnow,
)
from varta.mqtt import MqttClient
from varta.sealing import open_credentials, public_key_text

pytestmark = pytest.mark.browser

MAIDAN = SimNode("center", "maidan-01", "Майдан Незалежності")
STATION = SimNode("center", "station-02", "Залізничний вокзал")
PARK = SimNode("north", "park-03", "Парк Перемоги")

CAMERA_PASSWORD = "Quartz-Meadow-9021"

PROBLEMS = {
    ("maidan-01", "cam-03"): (DeviceStatus.OFFLINE, "unreachable", "connection refused"),
    ("station-02", "cam-07"): (DeviceStatus.OFFLINE, "auth_failed", "RTSP 401"),
    ("park-03", "cam-02"): (DeviceStatus.DEGRADED, "frozen", "picture unchanged for 12 s"),
    ("park-03", "cam-11"): (DeviceStatus.DEGRADED, "tamper", "sharpness fell to 8 % of normal"),
    ("maidan-01", "cam-12"): (DeviceStatus.OFFLINE, "black", ""),
}


async def publish_city(client: MqttClient, per_node: int = 14) -> int:
    """Three nodes with *per_node* cameras each (a few broken, for the wall to show), PTZ on maidan-01/cam-01."""
    count = 0
    for node in (MAIDAN, STATION, PARK):
        await publish_camera_birth(client, node, public_key_text(PrivateKey.generate()))
        await publish_availability(client, node, "online")
        for i in range(1, per_node + 1):
            device = f"cam-{i:02d}"
            status, reason, detail = PROBLEMS.get((node.node_id, device), (DeviceStatus.ONLINE, None, ""))
            picture = None
            if status is not DeviceStatus.OFFLINE or reason == "black":
                picture = camera_picture(f"{node.node_id} {device}", seed=count, dark=reason == "black")
            await publish_camera(
                client,
                node,
                device,
                f"{node.name[:14]} {i}",
                status,
                reason=reason,
                detail=detail,
                picture=picture,
                picture_age_s=60 + 97 * i,
                ptz=(node is MAIDAN and i == 1),
            )
            count += 1
    return count


async def wait_for_cameras(db: Database, count: int, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        async with db.session() as session:
            cams = await camera_queries.list_cameras(session)
        with_pictures = sum(1 for c in cams if c.snapshot_at is not None)
        if len(cams) >= count and with_pictures >= count - 4:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"central stored {len(cams)} cameras ({with_pictures} with pictures)")
        await asyncio.sleep(0.1)


@pytest.fixture
async def node_listener(broker: Broker) -> AsyncIterator[asyncio.Queue[Command]]:
    """Commands central publishes to any node, as the node receives them."""
    client = MqttClient(broker.settings(), client_id=f"node-{uuid.uuid4().hex[:6]}", clean_start=True)
    client.add_subscription("varta/v1/+/+/cmd", qos=1)
    queue: asyncio.Queue[Command] = asyncio.Queue()

    async def listen() -> None:
        while True:
            for m in await client.next_batch(100, timeout=1.0):
                queue.put_nowait(decode(Channel.COMMAND, m.payload))  # type: ignore[arg-type]
                client.ack_many([m])

    tasks = [asyncio.create_task(client.run())]
    await client.wait_connected(10)
    tasks.append(asyncio.create_task(listen()))
    try:
        yield queue
    finally:
        for t in tasks:
            t.cancel()
        for t in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await t
        await client.stop()


async def test_wall_follows_camera_status_without_reload(
    central: CentralServer, db: Database, dispatcher: str, publisher: MqttClient, page: Page
) -> None:
    total = await publish_city(publisher)
    await wait_for_cameras(db, total)
    await sign_in(page, central.base_url, dispatcher)
    await page.goto(central.base_url + "/cameras")
    await expect(page.locator("#live")).to_have_class("live live--ok", timeout=10_000)

    tiles = page.locator(".cam")
    await expect(tiles).to_have_count(total)
    # What is down comes first, with its reason in words.
    await expect(tiles.first).to_have_attribute("data-status", "offline")
    await expect(page.locator('[data-counter="offline"]')).to_have_text("3")
    await expect(page.locator('[data-counter="degraded"]')).to_have_text("2")
    wrong_password = page.locator('.cam[data-node-id="station-02"][data-device-id="cam-07"]')
    await expect(wrong_password.locator('[data-field="reason"]')).to_have_text("неправильне ім’я або пароль")
    await page.screenshot(path=screenshot_path("cameras-1-wall"), full_page=True)
    # Compact enough: 42 cameras on one 1920×1080 wall screen, pictures loaded.
    height = await page.evaluate("() => document.documentElement.scrollHeight")
    assert height <= 1080 * 1.25, f"the wall of {total} cameras is {height} px tall"
    loaded = await page.evaluate(
        "() => [...document.querySelectorAll('.cam img:not([hidden])')].filter(i => i.naturalWidth > 0).length"
    )
    assert loaded >= total - 4
    await page.evaluate("() => (window.__vartaTestMarker = 'wall')")

    # A camera on the square loses its network: its tile turns red and moves to the front, live.
    await publish_camera(publisher, MAIDAN, "cam-05", "Майдан Незалежн 5", DeviceStatus.OFFLINE, reason="unreachable")
    tile = page.locator('.cam[data-node-id="maidan-01"][data-device-id="cam-05"]')
    await expect(tile).to_have_attribute("data-status", "offline", timeout=10_000)
    await expect(tile.locator('[data-field="reason"]')).to_have_text("немає зв’язку: живлення або мережа")
    await expect(tile.locator('[data-field="status"]')).to_have_text("офлайн")
    await expect(page.locator('[data-counter="offline"]')).to_have_text("4")
    assert await tile.evaluate("t => [...t.parentNode.children].indexOf(t)") < 4
    # And it comes back without anyone touching it.
    await publish_camera(
        publisher,
        MAIDAN,
        "cam-05",
        "Майдан Незалежн 5",
        DeviceStatus.ONLINE,
        picture=camera_picture("back", seed=99),
        picture_age_s=0,
    )
    await expect(tile).to_have_attribute("data-status", "online", timeout=10_000)
    await expect(tile.locator('[data-field="reason"]')).to_be_hidden()
    await expect(tile.locator('[data-field="age"]')).to_have_text("щойно")
    await expect(page.locator('[data-counter="offline"]')).to_have_text("3")
    assert await page.evaluate("() => window.__vartaTestMarker") == "wall"
    await page.screenshot(path=screenshot_path("cameras-2-wall-after"), full_page=True)


async def next_ptz_command(queue: asyncio.Queue[Command]) -> Command:
    """The next command the page sent, leaving out the live view's (the page starts the video by itself)."""
    while True:
        command = await asyncio.wait_for(queue.get(), 10)
        if not command.command.startswith("camera.live."):
            return command


async def test_ptz_button_sends_move_while_held_and_stop_on_release(
    central: CentralServer,
    db: Database,
    dispatcher: str,
    publisher: MqttClient,
    page: Page,
    node_listener: asyncio.Queue[Command],
) -> None:
    total = await publish_city(publisher, per_node=2)
    await wait_for_cameras(db, total)
    await sign_in(page, central.base_url, dispatcher)
    await page.goto(central.base_url + "/cameras/maidan-01/cam-01")
    await expect(page.locator("#live")).to_have_class("live live--ok", timeout=10_000)
    await expect(page.locator("#picture")).to_be_visible()
    await page.screenshot(path=screenshot_path("cameras-3-camera-page"), full_page=True)

    left = page.locator(".ptz__left")
    box = await left.bounding_box()
    assert box is not None
    await page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    await page.mouse.down()
    move = await next_ptz_command(node_listener)
    assert move.command == "camera.ptz.move"
    assert move.params["device_id"] == "cam-01" and move.params["pan"] < 0 and move.params["tilt"] == 0
    assert move.issued_by == dispatcher and move.sig
    await expect(left).to_have_class("ptz__btn ptz__left is-pressed")
    await page.mouse.up()
    stop = None
    while stop is None or stop.command == "camera.ptz.move":  # a renewal may be in flight when released
        stop = await next_ptz_command(node_listener)
    assert stop.command == "camera.ptz.stop" and stop.params == {"device_id": "cam-01"}
    await expect(page.locator("#ptz-result")).to_have_text("Надіслано.")

    await page.locator('[data-preset="2"]').click()
    goto = await asyncio.wait_for(node_listener.get(), 10)
    assert goto.command == "camera.ptz.preset.goto" and goto.params["token"] == "2"
    # The node cannot do it: the dispatcher sees why, on the page, without asking anyone.
    result = CommandResult(
        node_id=MAIDAN.node_id,
        boot_id=MAIDAN.boot_id,
        seq=MAIDAN.next_seq(),
        ts=utcnow(),
        request_id=goto.request_id,
        command=goto.command,
        status=CommandStatus.ERROR,
        reason="onvif_error",
        detail="preset 2 is not defined on the camera",
    )
    await publisher.publish(topic(MAIDAN.site, MAIDAN.node_id, Channel.COMMAND_RESULT), encode(result), qos=1)
    await expect(page.locator("#ptz-result")).to_have_text(
        "Не вдалося: preset 2 is not defined on the camera", timeout=10_000
    )

    # The status on the page follows the camera live.
    await publish_camera(publisher, MAIDAN, "cam-01", "Майдан 1", DeviceStatus.DEGRADED, reason="tamper")
    await expect(page.locator('#camera [data-field="reason"]')).to_have_text(
        "закрита, зафарбована або відвернута", timeout=10_000
    )
    await publish_event(publisher, MAIDAN, "camera.tamper", "Camera reports tampering", Severity.WARNING, "cam-01")
    await expect(page.locator("#events tr").first).to_contain_text("camera.tamper", timeout=10_000)
    await page.screenshot(path=screenshot_path("cameras-5-camera-page-tamper"), full_page=True)


async def test_discovery_inbox_adopts_with_a_sealed_password_and_ignores(
    central: CentralServer,
    db: Database,
    publisher: MqttClient,
    page: Page,
    node_listener: asyncio.Queue[Command],
) -> None:
    await ensure_user(db, "taras", PASSWORD, Role.OPERATOR)
    node_key = PrivateKey.generate()
    await publish_camera_birth(publisher, PARK, public_key_text(node_key))
    await publish_availability(publisher, PARK, "online")
    await publish_discovery(publisher, PARK, 3)
    deadline = time.monotonic() + 20
    while True:
        async with db.session() as session:
            if len(await camera_queries.discovered(session)) == 3:
                break
        assert time.monotonic() < deadline, "discovery not stored"
        await asyncio.sleep(0.1)
    await sign_in(page, central.base_url, "taras")
    await page.goto(central.base_url + "/cameras/discovery")
    rows = page.locator(".inbox__row")
    await expect(rows).to_have_count(3)
    await rows.first.locator("summary").click()
    await page.screenshot(path=screenshot_path("cameras-4-discovery"), full_page=True)
    await rows.nth(2).locator("[data-ignore]").click()
    await expect(page.locator(".inbox__row--ignored")).to_have_count(1, timeout=10_000)

    row = page.locator(".inbox__row").first
    await row.locator("summary").click()
    form = row.locator("form[data-adopt]")
    await form.locator('input[name="name"]').fill("Вхід до парку")
    await form.locator('input[name="position"]').fill("стовп біля воріт, дивиться на алею")
    await form.locator('input[name="username"]').fill("admin")
    await form.locator('input[name="password"]').fill(CAMERA_PASSWORD)
    await form.locator("button[type=submit]").click()
    adopt = await asyncio.wait_for(node_listener.get(), 10)
    assert adopt.command == "camera.adopt" and adopt.params["name"] == "Вхід до парку"
    opened = open_credentials(node_key, adopt.params["sealed_credentials"])
    assert (opened.username, opened.password.get_secret_value()) == ("admin", CAMERA_PASSWORD)
    await expect(page.locator(".inbox__row--adopted")).to_have_count(1, timeout=10_000)
    assert CAMERA_PASSWORD not in await page.content()
    await page.goto(central.base_url + "/cameras")
    await expect(page.locator(".cam")).to_have_count(1)
    await expect(page.locator(".cam__name")).to_have_text("Вхід до парку")
