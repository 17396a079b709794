"""A scripted month, end to end through the store: node and device states as ingest leaves them → the incident
engine's outage records → the monthly availability report, checked against figures worked out by hand.

The node is first seen on 22 November 2026 at 10:00 UTC; November ends at local (Kyiv, UTC+2) midnight, 30 November
22:00 UTC: it is observed for 8 days 12 hours = 734,400 s.

* 23 Nov 11:00: blackout — the UPS runs on battery, the camera goes dark (camera down, cause power, from here);
* 23 Nov 11:30–13:00: the battery is empty, the node is gone, then back on mains with its camera
  (node: power 5,400 s; camera: power 11:00–13:00 = 7,200 s);
* 25 Nov 08:00–08:45: the camera fails on its own, the node is fine (camera: device 2,700 s);
* 27 Nov 20:00–20:20: the node loses its uplink (last will), no power trouble (node and camera: network 1,200 s).

Node: down 6,600 s → 1 − 6,600 / 734,400 = 99.10 %. Camera: down 11,100 s → 1 − 11,100 / 734,400 = 98.49 %.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, date, datetime

import pytest

from central.incidents.engine import IncidentEngine
from central.reports.availability import uptime_percent
from central.reports.loader import availability_report
from central.store.db import Database
from tests.central.incidents.support import Fleet, engine_for, make_config

NODE, CAMERA = "node-a", "cam-1"


def utc(day: int, hour: int, minute: int = 0, second: int = 0) -> datetime:
    return datetime(2026, 11, day, hour, minute, second, tzinfo=UTC)


@pytest.fixture
async def store(database_url: str) -> AsyncIterator[tuple[Database, Fleet, IncidentEngine]]:
    db = Database(database_url)
    try:
        yield db, Fleet(db), engine_for(make_config(database_url), db)
    finally:
        await db.dispose()


async def test_a_scripted_month_gives_the_hand_computed_availability(
    store: tuple[Database, Fleet, IncidentEngine],
) -> None:
    db, fleet, engine = store

    async def step(when: datetime) -> None:  # the engine evaluates as ingest would wake it, then once more later
        await engine.evaluate_now(when.replace(second=1))
        await engine.evaluate_now(when.replace(second=59))

    start = utc(23, 10)
    await fleet.node(NODE, since=start)  # first seen a day earlier: 22 Nov 10:00
    await fleet.ups(NODE, "on_line", since=start)
    await fleet.device(NODE, CAMERA, "camera", since=start)
    await step(start)

    # Blackout: the node runs on its UPS, the camera goes dark with the mains; then the battery is empty.
    await fleet.ups(NODE, "on_battery", since=utc(23, 11))
    await fleet.device(NODE, CAMERA, "camera", "offline", "unreachable", since=utc(23, 11))
    await step(utc(23, 11))
    await fleet.ups(NODE, "low_battery", since=utc(23, 11, 29))
    await fleet.node(NODE, online=False, reason="last_will", since=utc(23, 11, 30))
    await step(utc(23, 11, 30))
    await fleet.node(NODE, since=utc(23, 13))
    await fleet.ups(NODE, "on_line", since=utc(23, 13))
    await fleet.device(NODE, CAMERA, "camera", since=utc(23, 13))
    await step(utc(23, 13))

    # The camera fails on its own for 45 minutes.
    await fleet.device(NODE, CAMERA, "camera", "offline", "no_frames", since=utc(25, 8))
    await step(utc(25, 8))
    await step(utc(25, 8, 5))
    await fleet.device(NODE, CAMERA, "camera", since=utc(25, 8, 45))
    await step(utc(25, 8, 45))

    # The node loses its uplink for 20 minutes (no power trouble): its camera is unreachable meanwhile.
    await fleet.node(NODE, online=False, reason="last_will", since=utc(27, 20))
    await step(utc(27, 20))
    await fleet.node(NODE, since=utc(27, 20, 20))
    await step(utc(27, 20, 20))

    async with db.session() as session:
        report = await availability_report(session, date(2026, 11, 1), now=datetime(2026, 12, 5, tzinfo=UTC))
    rows = {(r.device.node_id, r.device.device_id): r for r in report.rows}

    node = rows[(NODE, "")]
    assert node.observed_s == 734_400
    assert (node.by_cause["power"].outages, node.by_cause["power"].down_s) == (1, 5_400)
    assert (node.by_cause["network"].outages, node.by_cause["network"].down_s) == (1, 1_200)
    assert node.by_cause["device"].outages == 0
    assert node.down_s == 6_600
    assert uptime_percent(node.uptime, node.down_s) == 99.10

    camera = rows[(NODE, CAMERA)]
    assert camera.observed_s == 734_400
    assert (camera.by_cause["power"].outages, camera.by_cause["power"].down_s) == (1, 7_200)
    assert (camera.by_cause["device"].outages, camera.by_cause["device"].down_s) == (1, 2_700)
    assert (camera.by_cause["network"].outages, camera.by_cause["network"].down_s) == (1, 1_200)
    assert camera.down_s == 11_100
    assert uptime_percent(camera.uptime, camera.down_s) == 98.49
