"""The edge agent's configuration: YAML file plus ``VARTA_EDGE__…`` environment variables (unknown keys rejected).

The environment wins over the file, nested keys use ``__`` (``VARTA_EDGE__MQTT__PASSWORD=…``). Secrets come from
the environment or from files (``mqtt.password_file``); central's public keys may be listed inline or in
``commands.central_public_keys_file`` (one base64url key per line, ``#`` comments allowed).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from nacl.signing import VerifyKey
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, field_validator, model_validator
from pydantic_settings import SettingsConfigDict

from edge.alerts.config import SirensSettings
from edge.cameras.config import CameraSettings
from edge.kiosks.config import KioskSettings
from edge.power.config import LowBatterySettings, PowerSettings, UpsSettings
from varta.contract import MAX_PAYLOAD_BYTES, Identifier
from varta.mqtt import MqttSettings
from varta.settings import ConfigError, YamlEnvSettings, load_settings
from varta.signing import KeyFileError, load_verify_key

DAY_S = 86_400
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")


class OutboxSettings(BaseModel):
    """The durable SQLite outbox and its bounds (telemetry is dropped before events)."""

    model_config = ConfigDict(extra="forbid")

    path: Path = Field(default=Path("var/edge/outbox.db"), description="SQLite file (WAL); its folder is created")
    max_rows: int = Field(default=200_000, ge=10, description="most rows kept; beyond, the oldest are dropped")
    max_bytes: int = Field(
        default=100 * 1024 * 1024, ge=4 * MAX_PAYLOAD_BYTES, description="most payload+topic bytes kept"
    )
    telemetry_max_age_s: float = Field(default=7 * DAY_S, gt=0, description="telemetry older than this is dropped")
    event_max_age_s: float = Field(default=90 * DAY_S, gt=0, description="events older than this are dropped")
    publish_window: int = Field(
        default=64, ge=1, le=1000, description="publishes awaiting PUBACK at once (order is kept by MQTT)"
    )


class HealthSettings(BaseModel):
    """Periodic node health."""

    model_config = ConfigDict(extra="forbid")

    interval_s: float = Field(default=30.0, ge=1, le=3600, description="seconds between health samples")


class CommandSettings(BaseModel):
    """Verification of central's signed commands."""

    model_config = ConfigDict(extra="forbid")

    central_public_keys: list[str] = Field(
        default_factory=list, description="central's Ed25519 public keys (base64url); several allow rotation"
    )
    central_public_keys_file: Path | None = Field(
        default=None, description="file with more public keys, one per line ('#' starts a comment)"
    )
    max_clock_skew_s: float = Field(
        default=30.0, ge=0, le=3600, description="allowance for clock differences on expiry / issue time"
    )
    handler_timeout_s: float = Field(default=30.0, gt=0, le=3600, description="longest a command may run")

    _keys: list[VerifyKey] = PrivateAttr(default_factory=list)

    @field_validator("central_public_keys")
    @classmethod
    def _keys_parse(cls, value: list[str]) -> list[str]:
        for i, text in enumerate(value):
            try:
                load_verify_key(text)
            except KeyFileError as exc:
                raise ValueError(f"key #{i + 1}: {exc}") from None
        return value

    @model_validator(mode="after")
    def _load_keys(self) -> CommandSettings:
        keys = [load_verify_key(text) for text in self.central_public_keys]
        if self.central_public_keys_file is not None:
            keys.extend(_read_key_file(self.central_public_keys_file))
        self._keys = keys
        return self

    def verify_keys(self) -> list[VerifyKey]:
        """Every configured public key (inline ones first, then those from the key file)."""
        return list(self._keys)


def _read_key_file(path: Path) -> list[VerifyKey]:
    try:
        text = path.read_text()
    except OSError as exc:
        raise ValueError(f"cannot read {path}: {exc.strerror}") from None
    keys: list[VerifyKey] = []
    for number, line in enumerate(text.splitlines(), start=1):
        entry = line.split("#", 1)[0].strip()
        if not entry:
            continue
        try:
            keys.append(load_verify_key(entry))
        except KeyFileError as exc:
            raise ValueError(f"{path}, line {number}: {exc}") from None
    return keys


class SimulatorSettings(BaseModel):
    """Simulated devices (for ``varta demo`` and tests; real devices come from their own integrations)."""

    model_config = ConfigDict(extra="forbid")

    enabled: bool = False
    seed: int | None = Field(default=None, description="random seed, for repeatable runs")
    cameras: int = Field(default=3, ge=0, le=64)
    kiosks: int = Field(default=1, ge=0, le=64)
    sirens: int = Field(default=1, ge=0, le=64)
    events_per_s: float = Field(default=0.2, ge=0, le=10_000, description="mean rate of simulated events")
    status_change_interval_s: float = Field(
        default=120.0, ge=0, description="mean seconds between device outages / recoveries; 0 disables them"
    )
    outage_s: float = Field(default=20.0, gt=0, description="mean length of a simulated device outage")
    snapshot_interval_s: float = Field(
        default=60.0, ge=0, le=86_400, description="seconds between simulated camera thumbnails; 0 = none"
    )
    discovered: int = Field(default=2, ge=0, le=16, description="unadopted cameras a simulated probe 'finds'")


class EdgeConfig(YamlEnvSettings):
    """Everything one edge node needs."""

    model_config = SettingsConfigDict(env_prefix="VARTA_EDGE__", env_nested_delimiter="__", extra="forbid")

    node_id: Identifier
    site: Identifier
    name: str = Field(default="", max_length=200, description="human-readable node name")
    mqtt: MqttSettings = Field(default_factory=MqttSettings)
    outbox: OutboxSettings = Field(default_factory=OutboxSettings)
    health: HealthSettings = Field(default_factory=HealthSettings)
    commands: CommandSettings = Field(default_factory=CommandSettings)
    simulator: SimulatorSettings = Field(default_factory=SimulatorSettings)
    cameras: CameraSettings = Field(default_factory=CameraSettings)
    power: PowerSettings = Field(default_factory=PowerSettings, description="the node's UPS through NUT")
    sirens: SirensSettings = Field(default_factory=SirensSettings, description="sirens watched (never triggered)")
    kiosk: KioskSettings = Field(default_factory=KioskSettings, description="the public touchscreen this node drives")
    log_level: str = Field(default="INFO", description="DEBUG, INFO, WARNING or ERROR")
    log_format: Literal["console", "json"] = "console"

    @field_validator("log_level")
    @classmethod
    def _level_known(cls, value: str) -> str:
        level = value.strip().upper()
        if level not in LOG_LEVELS:
            raise ValueError(f"must be one of {', '.join(LOG_LEVELS)}")
        return level

    @property
    def data_dir(self) -> Path:
        """The node's data folder: the outbox's folder, also holding ``box.key`` and the camera store."""
        return self.outbox.path.parent

    @property
    def box_key_path(self) -> Path:
        """The node's X25519 private key, made on the node; central seals camera passwords to its public half."""
        return self.data_dir / "box.key"


def load_edge_config(path: Path | None = None, **overrides: Any) -> EdgeConfig:
    """Load edge's config from *path* (YAML) plus environment, raising :class:`ConfigError` on problems."""
    return load_settings(EdgeConfig, "edge", path, overrides)


__all__ = [
    "CameraSettings",
    "CommandSettings",
    "ConfigError",
    "EdgeConfig",
    "HealthSettings",
    "LowBatterySettings",
    "OutboxSettings",
    "PowerSettings",
    "SimulatorSettings",
    "SirensSettings",
    "UpsSettings",
    "load_edge_config",
]
