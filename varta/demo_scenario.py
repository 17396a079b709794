"""The demo's air-raid alerts, sirens and blackout: a local alert feed and a script that plays a city's day.

``varta demo`` runs :class:`DemoAlertFeed` (answers like alerts.in.ua's ``/v1/alerts/active.json``, on 127.0.0.1
only, with a random token) and points central at it, gives every demo node one simulated siren and the last node a
simulated UPS (:class:`DemoUps`, answering like NUT), and :func:`play` repeats this cycle:

* an official air-raid alert for the oblast of the first two sites; the first site's siren sounds, the second
  site's siren stays silent → central opens ``siren_failure`` a minute later and closes it when the alert ends;
* later, the third site's siren sounds with no alert (a test nobody announced) → ``unexpected_activation``;
* then the third site has a blackout: its node runs on its UPS for two minutes → one ``power_outage`` incident.

Only the alert feed, the siren contacts and the UPS are simulated; the agents, central and the rules are the real
ones.
"""

from __future__ import annotations

import asyncio
import contextlib
import email.utils
import secrets
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Final

import orjson
import structlog

from varta.aio import wait_for
from varta.contract import utcnow

if TYPE_CHECKING:
    from edge.agent import EdgeAgent

log = structlog.get_logger(__name__)

ACTIVE_PATH: Final = "/v1/alerts/active.json"
#: The demo's sites, their names and their alert regions (alerts.in.ua-style ids: oblast, hromada).
DEMO_REGIONS: Final = {
    "city-center": ("Центр міста", ["14", "1401"]),
    "village-north": ("с. Північне", ["14", "1402"]),
    "village-south": ("с. Південне", ["12", "1201"]),
}
ALERT_OBLAST: Final = ("14", "Київська область")
#: The siren each demo site has.
DEMO_SIRENS: Final = {
    "city-center": "Сирена на міській раді",
    "village-north": "Сирена біля школи",
    "village-south": "Сирена біля клубу",
}


@dataclass
class DemoAlertFeed:
    """An alerts.in.ua-shaped feed on 127.0.0.1 whose alerts the demo script sets (bearer token required)."""

    token: str = field(default_factory=lambda: secrets.token_urlsafe(16))
    alerts: list[dict[str, Any]] = field(default_factory=list)
    changed_at: datetime = field(default_factory=utcnow)
    _server: asyncio.Server | None = None

    async def start(self, port: int = 0) -> int:
        """Listen on 127.0.0.1:*port* (0: any free one); returns the port."""
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", port)
        return int(self._server.sockets[0].getsockname()[1])

    async def stop(self) -> None:
        """Stop listening."""
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(Exception):
                await self._server.wait_closed()
            self._server = None

    def declare(self, alert_id: int, region: tuple[str, str]) -> None:
        """An oblast-wide air-raid alert begins now."""
        now = utcnow()
        uid, title = region
        self.alerts.append(
            {
                "id": alert_id,
                "location_title": title,
                "location_type": "oblast",
                "started_at": _iso(now),
                "finished_at": None,
                "updated_at": _iso(now),
                "alert_type": "air_raid",
                "location_uid": uid,
                "location_oblast": title,
                "location_oblast_uid": int(uid),
                "location_raion": None,
                "notes": None,
                "calculated": None,
            }
        )
        self.changed_at = now

    def clear(self) -> None:
        """Every alert ends."""
        self.alerts = []
        self.changed_at = utcnow()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            request = await wait_for(reader.readuntil(b"\r\n\r\n"), 10)
            head = request.decode("latin-1").split("\r\n")
            path = head[0].split(" ")[1] if len(head[0].split(" ")) > 1 else ""
            headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in head[1:] if line)}
            if headers.get("authorization") != f"Bearer {self.token}":
                status, body = "401 Unauthorized", b'{"message": "unauthorized"}'
            elif path.split("?")[0] != ACTIVE_PATH:
                status, body = "404 Not Found", b'{"message": "not found"}'
            else:
                status = "200 OK"
                body = orjson.dumps(
                    {"alerts": self.alerts, "meta": {"last_updated_at": _iso(self.changed_at)}, "disclaimer": "demo"}
                )
            modified = email.utils.format_datetime(self.changed_at, usegmt=True)
            writer.write(
                f"HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {len(body)}\r\n"
                f"Last-Modified: {modified}\r\nConnection: close\r\n\r\n".encode()
                + body
            )
            await writer.drain()
        except (OSError, TimeoutError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            pass
        finally:
            writer.close()


def _iso(when: datetime) -> str:
    return when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.000Z")


@dataclass
class DemoUps:
    """A UPS answering like NUT's ``LIST VAR`` (the demo switches it between mains and battery)."""

    on_battery: bool = False
    charge: float = 100.0

    async def list_vars(self, ups: str) -> dict[str, str]:
        """The UPS's variables now (the battery drains while on battery and charges on mains)."""
        self.charge = max(5.0, self.charge - 0.5) if self.on_battery else min(100.0, self.charge + 0.2)
        return {
            "ups.status": "OB DISCHRG" if self.on_battery else "OL CHRG" if self.charge < 100 else "OL",
            "battery.charge": f"{self.charge:.0f}",
            "battery.runtime": f"{self.charge * 36:.0f}",
            "input.voltage": "0.0" if self.on_battery else "229.5",
        }

    async def close(self) -> None:
        """Nothing to release."""


@dataclass(frozen=True)
class Timeline:
    """When things happen within one cycle of the demo (seconds from the cycle's start)."""

    first_after_s: float = 45.0
    siren_sounds_s: float = 3.0
    siren_stops_s: float = 100.0
    alert_ends_s: float = 240.0
    unexpected_s: float = 300.0
    unexpected_for_s: float = 30.0
    blackout_s: float = 360.0
    blackout_for_s: float = 120.0
    cycle_s: float = 600.0


async def play(
    feed: DemoAlertFeed, agents: Sequence[EdgeAgent], ups: DemoUps | None, timeline: Timeline = Timeline()
) -> None:
    """Play the demo's cycle for ever (cancel to stop); *agents* are the demo nodes, one siren each."""
    await asyncio.sleep(timeline.first_after_s)
    alert_id = 1000
    while True:
        began = asyncio.get_running_loop().time()

        async def at(offset_s: float, began: float = began) -> None:
            await asyncio.sleep(max(0.0, began + offset_s - asyncio.get_running_loop().time()))

        alert_id += 1
        feed.declare(alert_id, ALERT_OBLAST)
        log.info("demo.alert_declared", region=ALERT_OBLAST[1])
        await at(timeline.siren_sounds_s)
        _siren(agents, 0, sounding=True)  # the city centre's siren answers the alert; the village north's does not
        await at(timeline.siren_stops_s)
        _siren(agents, 0, sounding=False)
        await at(timeline.alert_ends_s)
        feed.clear()
        log.info("demo.alert_ended")
        await at(timeline.unexpected_s)
        _siren(agents, 2, sounding=True)  # the village south's siren sounds with no alert
        await at(timeline.unexpected_s + timeline.unexpected_for_s)
        _siren(agents, 2, sounding=False)
        if ups is not None:
            await at(timeline.blackout_s)
            ups.on_battery = True
            log.info("demo.blackout")
            await at(timeline.blackout_s + timeline.blackout_for_s)
            ups.on_battery = False
        await at(timeline.cycle_s)


def _siren(agents: Sequence[EdgeAgent], index: int, *, sounding: bool) -> None:
    if index >= len(agents) or agents[index].sirens is None:
        return
    monitor = agents[index].sirens
    assert monitor is not None
    for device_id in monitor.workers:
        monitor.simulated(device_id).set(contactor=sounding)
