"""``kiosk:`` settings of an edge node: the one public touchscreen this node drives (a Pi behind each screen)."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Annotated
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, field_validator, model_validator

from edge.kiosks.download import DownloadSettings
from edge.kiosks.restart import RestartSettings
from edge.kiosks.screen import ScreenSettings
from varta.contract import ID_PATTERN
from varta.kiosk_manifest import Schedule, TimeWindow


class ShelterInfo(BaseModel):
    """Where people at this kiosk should go during an air-raid alert (shown full screen, Ukrainian first)."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(default="", max_length=200, description="e.g. «Укриття: підземний перехід, Майдан»")
    address: str = Field(default="", max_length=300, description="the shelter's street address")
    directions: str = Field(default="", max_length=1000, description="how to get there from this kiosk")
    distance_m: int | None = Field(default=None, ge=0, le=100_000, description="walking distance in metres")
    name_en: str = Field(default="", max_length=200, description="English line under the Ukrainian one")
    directions_en: str = Field(default="", max_length=1000, description="the directions in English")


class KioskSettings(BaseModel):
    """The kiosk this node drives: player page, content cache, emergency takeover, health."""

    model_config = ConfigDict(extra="forbid")

    enabled: bool = Field(default=False, description="serve the player page and look after the kiosk")
    device_id: str = Field(default="kiosk", pattern=ID_PATTERN, description="the kiosk's device id at central")
    name: str = Field(default="", max_length=200, description="shown on the dashboard")
    groups: list[Annotated[str, StringConstraints(pattern=ID_PATTERN)]] = Field(
        default_factory=list,
        max_length=32,
        description="kiosk groups this kiosk belongs to (content is assigned to them)",
    )
    listen_host: str = Field(default="127.0.0.1", description="the player server's address (the kiosk's browser)")
    listen_port: int = Field(default=8090, ge=1, le=65535, description="the player page's port")
    content_dir: Path = Field(default=Path("var/edge/kiosk"), description="signed manifest, assets, bundles")
    shelter: ShelterInfo = Field(default_factory=ShelterInfo, description="shown during an alert")
    takeover_sirens: list[str] | None = Field(
        default=None,
        description="local sirens whose sounding takes the screen over (None: every siren of this node)",
    )
    idle_return_s: float = Field(
        default=60.0, ge=5, le=3600, description="after the last touch the playlist resumes this much later"
    )
    heartbeat_interval_s: float = Field(default=5.0, ge=0.5, le=60, description="how often the player reports")
    heartbeat_timeout_s: float = Field(
        default=30.0, ge=2, le=3600, description="no heartbeat this long: the browser is restarted"
    )
    restart: RestartSettings = Field(
        default_factory=RestartSettings, description="how the browser is restarted when it stops heartbeating"
    )
    download: DownloadSettings = Field(
        default_factory=DownloadSettings, description="how content is fetched from central (resumable, rate-capped)"
    )
    screen: ScreenSettings = Field(default_factory=ScreenSettings, description="how the screen is switched on/off")
    screen_on_windows: list[TimeWindow] = Field(
        default_factory=list,
        max_length=16,
        description="local times the screen is on, e.g. [{start: '06:30', end: '23:00'}]; empty: always on;"
        " an alert turns it on at any hour",
    )
    timezone: str = Field(default="Europe/Kyiv", description="the kiosk's time zone (screen hours)")

    @field_validator("timezone")
    @classmethod
    def _zone_known(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {value!r}") from None
        return value

    def screen_should_be_on(self, now: datetime) -> bool:
        """Within the screen's hours at *now* (alerts aside)."""
        if not self.screen_on_windows:
            return True
        local = now.astimezone(ZoneInfo(self.timezone))
        return Schedule(playlist_id="screen", windows=tuple(self.screen_on_windows)).applies_at(local)

    devtools_port: int = Field(
        default=9222, ge=1, le=65535, description="the browser's DevTools port on 127.0.0.1 (screenshots, proof)"
    )
    screenshot_interval_s: float = Field(
        default=300.0, ge=10, le=86_400, description="how often what the screen shows is sent to central"
    )
    restart_grace_s: float = Field(
        default=60.0, ge=1, le=3600, description="after a restart, the browser has this long to heartbeat again"
    )

    @model_validator(mode="after")
    def _check(self) -> KioskSettings:
        if self.heartbeat_timeout_s < 2 * self.heartbeat_interval_s:
            raise ValueError("heartbeat_timeout_s must be at least twice heartbeat_interval_s")
        return self
