"""PullPoint events from the project's ONVIF simulator: decoding, renewal, recreation after a lost subscription."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable, Coroutine
from typing import Any

import pytest
from pydantic import SecretStr

from edge.cameras.onvif_client import CameraEvent, OnvifCamera, PullPointEvents
from edge.cameras.onvif_events import event_kind, normalise_topic
from edge.cameras.onvif_simulator import OnvifSimulator
from varta.sealing import Credentials

CREDS = Credentials(username="admin", password=SecretStr("events-pw-99"))


@pytest.fixture
async def sim() -> AsyncIterator[OnvifSimulator]:
    async with OnvifSimulator(password=CREDS.password, max_subscription_s=60) as simulator:
        yield simulator


async def _until(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.05)


async def _next(events: PullPointEvents, timeout: float = 10.0) -> CameraEvent:
    return await asyncio.wait_for(anext(events), timeout)


async def _collect(
    events: PullPointEvents, count: int, trigger: Callable[[], Coroutine[Any, Any, None]]
) -> list[CameraEvent]:
    task = asyncio.create_task(trigger())
    try:
        return [await _next(events) for _ in range(count)]
    finally:
        await task


async def test_tamper_motion_and_scene_change_arrive_decoded(sim: OnvifSimulator) -> None:
    async with OnvifCamera(sim.address, CREDS) as cam, cam.events(pull_timeout_s=1) as events:
        assert events.subscribed

        async def fire() -> None:
            assert sim.trigger("tamper", True) == 1
            sim.trigger("motion", True)
            sim.trigger("scene_change", True)
            sim.trigger("motion", False)

        got = await _collect(events, 4, fire)
    assert [(e.kind, e.active) for e in got] == [
        ("camera.tamper", True),
        ("camera.motion", True),
        ("camera.scene_change", True),
        ("camera.motion", False),
    ]
    assert got[0].topic == "tns1:RuleEngine/TamperDetector/Tamper"
    assert got[1].data == {"IsMotion": "true"}
    assert got[1].source["VideoSourceConfigurationToken"] == "VideoSourceToken"
    assert got[0].utc_time is not None
    assert sim.counters["unsubscribes"] == 1  # closed cleanly


async def test_quirky_topic_text_is_normalised() -> None:
    async with (
        OnvifSimulator(password=CREDS.password, quirky_topics=True) as sim,
        OnvifCamera(sim.address, CREDS) as cam,
        cam.events(pull_timeout_s=1) as events,
    ):

        async def fire() -> None:
            sim.trigger("tamper", True)

        (event,) = await _collect(events, 1, fire)
    assert event.topic == "tns1:RuleEngine/TamperDetector/Tamper"
    assert (event.kind, event.active, event.name) == ("camera.tamper", True, "Tamper Detection")


async def test_subscription_is_renewed_before_it_lapses() -> None:
    async with (
        OnvifSimulator(password=CREDS.password, max_subscription_s=1.5) as sim,
        OnvifCamera(sim.address, CREDS) as cam,
        cam.events(lifetime_s=60, pull_timeout_s=1) as events,
    ):
        assert events.granted_lifetime_s == pytest.approx(1.5, abs=1.0)
        reader = asyncio.create_task(_next(events, timeout=15))
        await _until(lambda: sim.counters.get("renewals", 0) >= 3, timeout=10)
        sim.trigger("motion", True)  # > 3 lifetimes after subscribing: the first subscription still works
        event = await reader
    assert event.kind == "camera.motion"
    assert sim.counters["subscriptions_created"] == 1
    assert sim.counters.get("subscriptions_expired", 0) == 0
    assert events.counters["renewed"] >= 3


async def test_lost_subscription_is_recreated(sim: OnvifSimulator) -> None:
    async with OnvifCamera(sim.address, CREDS) as cam, cam.events(pull_timeout_s=1) as events:
        reader = asyncio.create_task(_next(events, timeout=15))
        await _until(lambda: sim.counters.get("op_PullMessages", 0) >= 1)
        sim.set_faults(lose_subscriptions=True)  # as after a camera reboot
        await _until(lambda: sim.counters["subscriptions_created"] == 2)
        sim.trigger("tamper", True)
        event = await reader
    assert event.kind == "camera.tamper"
    assert events.counters["lost"] == 1
    assert events.last_error is not None


async def test_events_keep_going_through_camera_failures(sim: OnvifSimulator) -> None:
    async with OnvifCamera(sim.address, CREDS, timeout_s=1.0) as cam, cam.events(pull_timeout_s=0.5) as events:
        reader = asyncio.create_task(_next(events, timeout=20))
        sim.set_faults(reply="entity_bomb")
        await _until(lambda: events.counters.get("error_onvif_error", 0) >= 1)
        sim.set_faults(reply="normal")
        await _until(lambda: events.subscribed, timeout=10)
        sim.trigger("motion", True)
        event = await reader
    assert event.kind == "camera.motion"


def test_topic_normalisation_and_kinds() -> None:
    assert (
        normalise_topic(" tns1:RuleEngine/CellMotionDetector/Motion//.\n")
        == "tns1:RuleEngine/CellMotionDetector/Motion"
    )
    assert normalise_topic("ns0:RuleEngine/TamperDetector/Tamper/.") == "tns1:RuleEngine/TamperDetector/Tamper"
    assert normalise_topic("tnsaxis:CameraApplicationPlatform/VMD/Camera1Profile1") == (
        "tnsaxis:CameraApplicationPlatform/VMD/Camera1Profile1"
    )
    assert event_kind("tns1:VideoSource/GlobalSceneChange/ImagingService") == "camera.scene_change"
    assert event_kind("tns1:VideoSource/MotionAlarm") == "camera.motion"
    assert event_kind("tns1:Device/Trigger/DigitalInput") == "camera.event"
