"""What the kiosk's screen should show, decided on the node: the scheduled playlist, or an alert that takes over.

:class:`KioskDirector` holds the inputs — the verified content manifest, local sirens sounding, official alerts sent
by central — and derives one :class:`PlayerState`. Every change bumps ``generation`` and is pushed at once to every
connected player page (:meth:`subscribe`), so a local siren reaches the screen within the siren's debounce plus
one push, with or without central. An alert outranks everything; a drill is shown with a "НАВЧАННЯ / DRILL" banner.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import Literal

import structlog
from pydantic import BaseModel, ConfigDict, Field

from edge.kiosks.config import KioskSettings, ShelterInfo
from varta.contract import utcnow
from varta.kiosk_manifest import Manifest, Playlist, active_playlist

log = structlog.get_logger(__name__)

Mode = Literal["playlist", "alert", "blank"]


class PlayerItem(BaseModel):
    """One thing the player shows, with where the player page fetches it."""

    model_config = ConfigDict(frozen=True)

    kind: Literal["image", "video", "bundle", "url"]
    src: str
    duration_s: float | None = None
    title: str = ""


class AlertView(BaseModel):
    """The alert on screen."""

    model_config = ConfigDict(frozen=True)

    alert_id: str
    source: Literal["siren", "official"]
    drill: bool = False
    started_at: datetime
    region: str = ""
    shelter: ShelterInfo


class PlayerState(BaseModel):
    """Everything the player page needs to draw the screen (sent whole on every change)."""

    generation: int
    mode: Mode
    playlist_id: str | None = None
    items: list[PlayerItem] = Field(default_factory=list)
    alert: AlertView | None = None
    content_version: int | None = None
    heartbeat_interval_s: float
    idle_return_s: float


class OfficialAlert(BaseModel):
    """An air-raid alert for this kiosk's area, sent by central."""

    model_config = ConfigDict(frozen=True)

    alert_id: str
    region: str = ""
    drill: bool = False
    started_at: datetime


def playlist_items(manifest: Manifest, playlist: Playlist) -> list[PlayerItem]:
    """The playlist's items with the local URLs the player loads them from (assets from the node's cache)."""
    assets = {a.sha256: a for a in manifest.assets}
    items: list[PlayerItem] = []
    for item in playlist.items:
        if item.url is not None:
            items.append(PlayerItem(kind="url", src=item.url, duration_s=item.duration_s, title=item.title))
            continue
        asset = assets[item.asset or ""]  # the manifest checked every reference
        src = f"/bundle/{asset.sha256}/index.html" if asset.kind == "bundle" else f"/content/{asset.sha256}"
        items.append(PlayerItem(kind=asset.kind, src=src, duration_s=item.duration_s, title=item.title))
    return items


class KioskDirector:
    """Decides the screen (see the module docstring); *clock* is injectable for tests."""

    def __init__(self, settings: KioskSettings, *, clock: Callable[[], datetime] = utcnow) -> None:
        self.settings = settings
        self.clock = clock
        self.manifest: Manifest | None = None
        self._sounding: dict[str, datetime] = {}
        self._official: dict[str, OfficialAlert] = {}
        self._generation = 0
        self._state = self._derive()
        self._subscribers: set[asyncio.Queue[PlayerState]] = set()
        self.changes = 0

    # ------------------------------------------------------------------------------------------------ inputs

    def set_manifest(self, manifest: Manifest | None) -> None:
        """New verified content (None: nothing to play)."""
        self.manifest = manifest
        self.refresh()

    def siren_changed(self, device_id: str, sounding: bool) -> None:
        """A local siren started or stopped sounding (called by the siren monitor, no network involved)."""
        wanted = self.settings.takeover_sirens
        if wanted is not None and device_id not in wanted:
            return
        if sounding and device_id not in self._sounding:
            self._sounding[device_id] = self.clock()
        elif not sounding and device_id in self._sounding:
            del self._sounding[device_id]
        else:
            return
        log.info("kiosk.siren_input", siren_id=device_id, sounding=sounding)
        self.refresh()

    def official_alert(self, alert: OfficialAlert) -> None:
        """Central says an alert covers this kiosk's area."""
        self._official[alert.alert_id] = alert
        self.refresh()

    def set_official_alerts(self, alerts: dict[str, OfficialAlert]) -> None:
        """Central's whole current set (empty: all clear)."""
        if alerts == self._official:
            return
        self._official = dict(alerts)
        self.refresh()

    def official_all_clear(self, alert_id: str | None = None) -> None:
        """Central says the alert ended (None: every official alert)."""
        if alert_id is None:
            self._official.clear()
        else:
            self._official.pop(alert_id, None)
        self.refresh()

    # ------------------------------------------------------------------------------------------------ output

    @property
    def state(self) -> PlayerState:
        """What the screen should show now."""
        return self._state

    def refresh(self) -> None:
        """Re-derive the state (inputs changed, or the schedule may have moved on); push it when it changed."""
        new = self._derive()
        if new.model_dump(exclude={"generation"}) == self._state.model_dump(exclude={"generation"}):
            return
        self._generation += 1
        self._state = new.model_copy(update={"generation": self._generation})
        self.changes += 1
        log.info(
            "kiosk.screen_changed",
            generation=self._generation,
            mode=new.mode,
            playlist_id=new.playlist_id,
            alert_id=new.alert.alert_id if new.alert else None,
        )
        for queue in self._subscribers:
            if queue.full():  # a slow page gets the newest state, never a backlog
                queue.get_nowait()
            queue.put_nowait(self._state)

    @contextmanager
    def subscribe(self) -> Iterator[asyncio.Queue[PlayerState]]:
        """A queue that receives every new state (the current one first)."""
        queue: asyncio.Queue[PlayerState] = asyncio.Queue(maxsize=1)
        queue.put_nowait(self._state)
        self._subscribers.add(queue)
        try:
            yield queue
        finally:
            self._subscribers.discard(queue)

    def _alert(self) -> AlertView | None:
        s = self.settings
        real = [a for a in self._official.values() if not a.drill]
        if self._sounding:  # a siren sounding here is the most urgent fact there is
            siren, since = min(self._sounding.items(), key=lambda kv: kv[1])
            return AlertView(alert_id=f"siren:{siren}", source="siren", started_at=since, shelter=s.shelter)
        chosen = min(real or self._official.values(), key=lambda a: a.started_at, default=None)
        if chosen is None:
            return None
        return AlertView(
            alert_id=chosen.alert_id,
            source="official",
            drill=chosen.drill,
            started_at=chosen.started_at,
            region=chosen.region,
            shelter=s.shelter,
        )

    def _derive(self) -> PlayerState:
        s = self.settings
        common = {
            "generation": self._generation,
            "heartbeat_interval_s": s.heartbeat_interval_s,
            "idle_return_s": s.idle_return_s,
            "content_version": self.manifest.version if self.manifest else None,
        }
        alert = self._alert()
        if alert is not None:
            return PlayerState(mode="alert", alert=alert, **common)
        playlist = active_playlist(self.manifest, self.clock()) if self.manifest else None
        if playlist is None or self.manifest is None:
            return PlayerState(mode="blank", **common)
        return PlayerState(
            mode="playlist",
            playlist_id=playlist.id,
            items=playlist_items(self.manifest, playlist),
            **common,
        )
