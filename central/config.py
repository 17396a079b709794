"""Central's configuration: YAML file plus ``VARTA_CENTRAL__…`` environment variables (unknown keys rejected)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field
from pydantic_settings import SettingsConfigDict

from varta.contract import IceServer, Identifier
from varta.mqtt import MqttSettings
from varta.settings import ConfigError, YamlEnvSettings, load_settings


class HttpSettings(BaseModel):
    """Where the web server listens."""

    model_config = ConfigDict(extra="forbid")

    host: str = "127.0.0.1"
    port: int = Field(default=8080, ge=1, le=65535)
    public_url: str | None = Field(default=None, description="external URL, for links and the Origin check")


class AuthSettings(BaseModel):
    """Sessions and login protection."""

    model_config = ConfigDict(extra="forbid")

    session_ttl_hours: float = Field(default=12.0, gt=0, le=24 * 30)
    cookie_secure: bool = Field(default=False, description="set Secure on the session cookie (behind HTTPS)")
    max_failed_logins: int = Field(default=5, ge=1, description="failed logins per user before a lockout")
    lockout_minutes: float = Field(default=15.0, gt=0)
    require_enrolled_node_keys: bool = Field(
        default=False,
        description=(
            "seal camera passwords only to node keys an admin enrolled (PUT /api/v1/nodes/{id}/box-key);"
            " off: until one is enrolled, the key a node announces over its own broker login is used"
        ),
    )


class IngestSettings(BaseModel):
    """MQTT ingest tuning."""

    model_config = ConfigDict(extra="forbid")

    shared_group: str = Field(default="varta-central", pattern=r"^[A-Za-z0-9_-]+$")
    use_shared_subscription: bool = Field(
        default=False,
        description=(
            "split health/event/result messages between central instances ($share). Off by default:"
            " Mosquitto 2.0 does not restore shared subscriptions after a broker restart, so messages published"
            " before the instances re-subscribe are dropped; a plain persistent subscription keeps them"
        ),
    )
    mqtt_protocol: Literal["3.1.1", "5"] = Field(
        default="3.1.1",
        description=(
            "protocol of the ingest connection. 3.1.1 (the default) is received by central's own asyncio subscriber"
            " (`varta/mqtt311.py`), which parses packets on the event loop at ~5 µs each instead of paho's ~27 µs on"
            " a thread of its own; 5 uses paho (`MqttClient`). Commands go over a connection of their own with"
            " `mqtt.protocol` (MQTT 5 where the broker speaks it: message expiry, reason codes)"
        ),
    )
    batch_max: int = Field(default=2000, ge=1, le=50_000)
    batch_wait_s: float = Field(default=0.05, ge=0, le=5)
    health_retention_days: int = Field(default=30, ge=1)
    node_update_interval_s: float = Field(
        default=2.0,
        ge=0,
        le=30,
        description="rewrite a node's last_seen / last health at most this often (every sample is still stored)",
    )
    sse_health_interval_s: float = Field(
        default=2.0, ge=0, le=60, description="send a node's health to live dashboards at most this often"
    )


class CommandSettings(BaseModel):
    """Signed commands to edge nodes."""

    model_config = ConfigDict(extra="forbid")

    signing_key_file: Path = Field(default=Path("var/central/signing.key"))
    default_ttl_s: int = Field(default=60, ge=1, le=86_400)


class LiveSettings(BaseModel):
    """Live view (WebRTC/WHEP): ICE servers for browsers and nodes, and how long a viewer waits for a node."""

    model_config = ConfigDict(extra="forbid")

    ice_servers: list[IceServer] = Field(
        default_factory=list,
        max_length=8,
        description=(
            "STUN/TURN servers handed to browsers and nodes alike. None by default: on an isolated LAN an"
            " unreachable STUN server would delay every view by seconds"
        ),
    )
    start_timeout_s: float = Field(
        default=12.0, gt=0, le=60, description="how long a WHEP request waits for the node's answer (504 after)"
    )
    max_sessions_per_user: int = Field(
        default=12, ge=1, le=100, description="open live views one user may hold (a wall of 9 plus spares)"
    )


class SiteSettings(BaseModel):
    """A site (a village, a square, a school) and the official alert regions it lies in."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(default="", max_length=200, description="shown to dispatchers and in reports")
    regions: list[str] = Field(
        default_factory=list,
        max_length=16,
        description=(
            "the alert feed's region ids covering this site, widest first: its oblast, raion and hromada"
            " (alerts.in.ua location_uid, or a CAP geocode value). An alert in any of them is an alert here"
        ),
    )


AlertSourceKind = Literal["alerts_in_ua", "cap"]


class AlertSourceSettings(BaseModel):
    """One official alert feed. Informational only: nothing physical is ever triggered from it."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=r"^[a-z0-9][a-z0-9_-]{0,31}$", description="short id, stored with each alert")
    kind: AlertSourceKind
    url: str = Field(
        max_length=500,
        pattern=r"^https?://",
        description="alerts_in_ua: the API base (https://api.alerts.in.ua); cap: the CAP 1.2 feed or alert URL",
    )
    token: str | None = Field(default=None, max_length=500, description="API token (prefer token_file)")
    token_file: Path | None = Field(default=None, description="file holding the API token")
    poll_interval_s: float = Field(
        default=15.0,
        ge=1.0,
        le=3600,
        description="seconds between polls; alerts.in.ua allows about 8-10 requests a minute per IP",
    )
    timeout_s: float = Field(default=10.0, gt=0, le=120, description="longest one request may take")

    def read_token(self) -> str | None:
        """The token (from ``token`` or ``token_file``; None when neither is set)."""
        if self.token_file is not None:
            return self.token_file.read_text().strip() or None
        return self.token


class AlertSettings(BaseModel):
    """Official air-raid alert feeds (alert periods are stored and compared with what the sirens do)."""

    model_config = ConfigDict(extra="forbid")

    sources: list[AlertSourceSettings] = Field(default_factory=list, max_length=8)
    stale_after_s: float = Field(
        default=300.0, gt=0, description="a source that has not answered for this long is shown as stale"
    )


class IncidentSettings(BaseModel):
    """The incident rules."""

    model_config = ConfigDict(extra="forbid")

    siren_failure_delay_s: float = Field(
        default=60.0, ge=0, le=3600, description="an official alert with a siren not sounding this long → siren_failure"
    )
    unexpected_activation_delay_s: float = Field(
        default=5.0, ge=0, le=600, description="a siren sounding this long with no official alert → unexpected"
    )
    camera_fault_delay_s: float = Field(
        default=30.0,
        ge=0,
        le=3600,
        description="a device down this long while its node is fine → its own incident (gives a power or node"
        " outage time to arrive and absorb it first)",
    )
    evaluate_interval_s: float = Field(default=1.0, gt=0, le=60, description="rules are re-evaluated this often")


class WebhookTarget(BaseModel):
    """An HTTP endpoint that receives incident notifications as JSON (signed with HMAC-SHA256 when a secret is set)."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=r"^[a-z0-9][a-z0-9_-]{0,31}$")
    url: str = Field(max_length=500, pattern=r"^https?://")
    min_severity: Literal["info", "warning", "error", "critical"] = "warning"
    secret_file: Path | None = Field(default=None, description="HMAC key: X-Varta-Signature: sha256=<hex>")
    timeout_s: float = Field(default=10.0, gt=0, le=60)


class TelegramTarget(BaseModel):
    """A Telegram chat that a bot tells about incidents."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=r"^[a-z0-9][a-z0-9_-]{0,31}$")
    api_url: str = Field(default="https://api.telegram.org", max_length=300, pattern=r"^https?://")
    bot_token: str | None = Field(default=None, max_length=200, description="prefer bot_token_file")
    bot_token_file: Path | None = None
    chat_id: str = Field(max_length=64, pattern=r"^-?[0-9]+$|^@[A-Za-z0-9_]{5,64}$")
    min_severity: Literal["info", "warning", "error", "critical"] = "error"
    language: Literal["uk", "en"] = "uk"
    timeout_s: float = Field(default=10.0, gt=0, le=60)

    def read_token(self) -> str | None:
        """The bot token (from ``bot_token`` or ``bot_token_file``)."""
        if self.bot_token_file is not None:
            return self.bot_token_file.read_text().strip() or None
        return self.bot_token


class NotificationSettings(BaseModel):
    """Outbound notifications about incidents: queued in the database, retried, never in the ingest's way."""

    model_config = ConfigDict(extra="forbid")

    webhooks: list[WebhookTarget] = Field(default_factory=list, max_length=16)
    telegram: list[TelegramTarget] = Field(default_factory=list, max_length=16)
    max_attempts: int = Field(default=10, ge=1, le=100, description="attempts before a notification is given up")
    retry_base_s: float = Field(default=5.0, gt=0, le=600, description="first retry delay (doubles each time)")
    retry_max_s: float = Field(default=900.0, gt=0, le=86_400)


class CentralMqttSettings(MqttSettings):
    """Central's broker connection: a long session, so the broker keeps queuing while central restarts."""

    session_expiry_s: int = Field(default=7 * 86_400, ge=0, description="how long the broker keeps our session")


class CentralConfig(YamlEnvSettings):
    """Everything central needs; defaults run on one machine with SQLite and a local broker."""

    model_config = SettingsConfigDict(env_prefix="VARTA_CENTRAL__", env_nested_delimiter="__", extra="forbid")

    instance_id: str = Field(default="central-1", pattern=r"^[a-z0-9][a-z0-9_-]{0,62}$")
    database_url: str = Field(default="sqlite+aiosqlite:///var/central/varta.db")
    data_dir: Path = Field(default=Path("var/central"))
    http: HttpSettings = Field(default_factory=HttpSettings)
    mqtt: CentralMqttSettings = Field(default_factory=CentralMqttSettings)
    auth: AuthSettings = Field(default_factory=AuthSettings)
    ingest: IngestSettings = Field(default_factory=IngestSettings)
    commands: CommandSettings = Field(default_factory=CommandSettings)
    live: LiveSettings = Field(default_factory=LiveSettings)
    sites: dict[Identifier, SiteSettings] = Field(default_factory=dict, description="names and alert regions")
    alerts: AlertSettings = Field(default_factory=AlertSettings)
    incidents: IncidentSettings = Field(default_factory=IncidentSettings)
    notifications: NotificationSettings = Field(default_factory=NotificationSettings)
    offline_after_s: float = Field(
        default=30.0,
        gt=0,
        description="mark a node offline when nothing arrived for this long (backs the will)",
    )
    default_language: Literal["uk", "en"] = "uk"
    log_level: str = "INFO"
    log_format: Literal["console", "json"] = "console"


def load_central_config(path: Path | None = None, **overrides: Any) -> CentralConfig:
    """Load central's config from *path* (YAML) plus environment, raising :class:`ConfigError` on problems."""
    return load_settings(CentralConfig, "central", path, overrides)


__all__ = [
    "AlertSettings",
    "AlertSourceSettings",
    "AuthSettings",
    "CentralConfig",
    "CentralMqttSettings",
    "CommandSettings",
    "ConfigError",
    "HttpSettings",
    "IncidentSettings",
    "IngestSettings",
    "LiveSettings",
    "NotificationSettings",
    "SiteSettings",
    "TelegramTarget",
    "WebhookTarget",
    "load_central_config",
]
