"""A blackout at a site, end to end: NUT's dummy-ups → edge agent → Mosquitto → central's incident rules.

Real parts only: Debian NUT (``dummy-ups`` + ``upsd``) stepped OL → OB → OB LB → OL, an edge process watching it
(with simulated cameras and a kiosk), Mosquitto, and central as its own process. The dispatcher must get ONE
incident for the blackout, not one per camera, even when the node then dies on its empty battery.
"""

from __future__ import annotations

import sqlite3
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.broker import Broker
from tests.support.nut import NutServer
from tests.support.stack import CentralProcess, EdgeProcess, wait_until
from varta.contract import GOING_DOWN_EVENT, LOW_BATTERY_EVENT, MAINS_LOST_EVENT, MAINS_RESTORED_EVENT

pytestmark = pytest.mark.slow

SITE, NODE = "village-north", "node-vn"
CAMERAS = 3
#: Central's rules, quick for a test: a camera down this long on a healthy node would be a camera_fault.
CAMERA_FAULT_DELAY_S = 2.0


def _events(api: httpx.Client, kind: str) -> list[dict[str, Any]]:
    return [e for e in api.get("/api/v1/events", params={"limit": 1000}).json() if e["kind"] == kind]


def _incidents(api: httpx.Client) -> list[dict[str, Any]]:
    response = api.get("/api/v1/incidents", params={"state": "all"})
    assert response.status_code == 200, response.text
    return list(response.json())


def _outages(central: CentralProcess) -> list[dict[str, Any]]:
    with sqlite3.connect(f"file:{central.workdir / 'central.db'}?mode=ro", uri=True) as conn:
        conn.row_factory = sqlite3.Row
        return [dict(r) for r in conn.execute("SELECT * FROM outages ORDER BY id")]


def _edge(tmp_path: Path, broker: Broker, central: CentralProcess, nut: NutServer) -> EdgeProcess:
    return EdgeProcess(
        tmp_path / "edge",
        broker,
        central.public_key(),
        node_id=NODE,
        site=SITE,
        health_interval_s=1.0,
        extra={
            "power": {
                "enabled": True,
                "ups": nut.ups_settings(poll_interval_s=0.3),
                "on_low_battery": {"flush_timeout_s": 5},
            },
            "simulator": {
                "enabled": True,
                "seed": 3,
                "cameras": CAMERAS,
                "kiosks": 1,
                "sirens": 0,
                "events_per_s": 0,
                "status_change_interval_s": 0,
                "snapshot_interval_s": 0,
            },
        },
    )


def test_a_blackout_is_one_incident_that_absorbs_the_camera_outages(broker: Broker, tmp_path: Path) -> None:
    nut = NutServer(tmp_path / "nut").start()
    central = CentralProcess(
        tmp_path / "central",
        broker,
        extra={
            "sites": {SITE: {"name": "Village North", "regions": ["14"]}},
            "incidents": {"camera_fault_delay_s": CAMERA_FAULT_DELAY_S, "evaluate_interval_s": 0.2},
            "offline_after_s": 5,
        },
    ).start()
    edge = _edge(tmp_path, broker, central, nut).start()
    try:
        api = central.api()
        wait_until(
            lambda: (
                api.get(f"/api/v1/nodes/{NODE}").status_code == 200
                and api.get(f"/api/v1/nodes/{NODE}").json()["online"]
            ),
            30,
            what="the node online at central",
        )

        # ---- 1. OL → OB → OB LB → OL: mains lost, low battery, the node says goodbye, mains restored.
        lost = nut.set("OB", charge=80, runtime=900)
        wait_until(lambda: _events(api, MAINS_LOST_EVENT), 20, what="power.mains_lost at central")
        [opened] = wait_until(
            lambda: [i for i in _incidents(api) if i["type"] == "power_outage" and i["open"]],
            20,
            what="a power_outage incident",
        )
        assert opened["site"] == SITE and opened["site_name"] == "Village North"
        time.sleep(2.0)
        nut.set("OB LB", charge=8, runtime=60)
        wait_until(lambda: _events(api, GOING_DOWN_EVENT), 30, what="node.going_down at central")
        assert _events(api, LOW_BATTERY_EVENT)
        node = api.get(f"/api/v1/nodes/{NODE}").json()
        wait_until(
            lambda: api.get(f"/api/v1/nodes/{NODE}").json()["offline_reason"] == "power_loss",
            10,
            what="the node's retained status offline/power_loss",
        )
        time.sleep(1.0)
        restored = nut.set("OL", charge=9, runtime=120)
        [event] = wait_until(lambda: _events(api, MAINS_RESTORED_EVENT), 20, what="power.mains_restored")
        expected = restored - lost
        assert abs(event["data"]["duration_s"] - expected) < 2.5, (event["data"], expected)
        assert datetime.fromisoformat(event["data"]["lost_at"]).timestamp() == pytest.approx(lost, abs=2.5)
        [mains_lost] = _events(api, MAINS_LOST_EVENT)
        assert mains_lost["data"]["reading"]["status"].startswith("OB")
        wait_until(lambda: api.get(f"/api/v1/nodes/{NODE}").json()["online"], 20, what="the node online again")
        [closed] = wait_until(
            lambda: [i for i in _incidents(api) if i["id"] == opened["id"] and not i["open"]],
            20,
            what="the power_outage closed when mains came back",
        )
        assert [i["type"] for i in _incidents(api)] == ["power_outage"], "the blackout was ONE incident"
        del node, closed

        # ---- 2. Another blackout, and this time the node dies on battery (SIGKILL: no goodbye at all).
        nut.set("OB", charge=50, runtime=600)
        [second] = wait_until(
            lambda: [i for i in _incidents(api) if i["type"] == "power_outage" and i["open"]],
            20,
            what="a second power_outage",
        )
        edge.kill()
        wait_until(lambda: not api.get(f"/api/v1/nodes/{NODE}").json()["online"], 20, what="the node offline")
        cameras = {f"{NODE}/sim-cam-{i + 1}" for i in range(CAMERAS)}

        def grouped() -> dict[str, Any] | None:
            current = next(i for i in _incidents(api) if i["id"] == second["id"])
            return current if cameras <= set(current["devices"]) else None

        incident = wait_until(grouped, 20, what="the node's cameras grouped under the power outage")
        time.sleep(CAMERA_FAULT_DELAY_S * 2)  # long past the delay after which a lone camera outage is its own
        incidents = _incidents(api)
        opened_now = [i for i in incidents if i["open"]]
        assert [i["id"] for i in opened_now] == [second["id"]], opened_now
        assert {i["type"] for i in incidents} == {"power_outage"}, "no node_down, no camera_fault incidents"
        assert f"{NODE}/" in incident["devices"], "the node itself is part of the outage"
        outages = [o for o in _outages(central) if o["ended_at"] is None]
        by_device = {o["device_id"]: o for o in outages}
        for i in range(CAMERAS):
            outage = by_device[f"sim-cam-{i + 1}"]
            assert (outage["cause"], outage["incident_id"]) == ("power", second["id"])
        assert by_device[""]["cause"] == "power"

        # ---- 3. Mains is back and the node boots again: the incident closes itself.
        nut.set("OL", charge=20, runtime=300)
        edge = _edge(tmp_path, broker, central, nut).start()
        wait_until(
            lambda: not next(i for i in _incidents(api) if i["id"] == second["id"])["open"],
            40,
            what="the second power_outage closed",
        )
        assert not [o for o in _outages(central) if o["ended_at"] is None and o["node_id"] == NODE]
    except AssertionError as exc:  # say what central and the node were doing
        raise AssertionError(
            f"{exc}\n--- central ---\n{central.log_tail(80)}\n--- edge ---\n{edge.log_tail(40)}"
        ) from exc
    finally:
        edge.stop()
        central.stop()
        nut.stop()
