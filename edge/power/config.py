"""The ``power:`` section of the edge configuration: the UPS (through NUT) and what to do on low battery."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, SecretStr, model_validator

from varta.contract import Identifier


class UpsSettings(BaseModel):
    """The UPS the node runs on, as NUT's ``upsd`` serves it (``<name>@<host>:<port>``)."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(
        default="ups", min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.-]+$", description="NUT ups name"
    )
    host: str = Field(default="127.0.0.1", min_length=1, max_length=255, description="upsd host")
    port: int = Field(default=3493, ge=1, le=65535, description="upsd port")
    device_id: Identifier = Field(default="ups", description="the UPS's device id (state/<device_id>)")
    poll_interval_s: float = Field(default=2.0, ge=0.1, le=60, description="seconds between readings")
    timeout_s: float = Field(default=5.0, gt=0, le=60, description="longest wait for one NUT reply (or connect)")
    unreachable_after_s: float = Field(
        default=15.0, ge=0, le=3600, description="NUT failing this long makes the UPS state unreachable"
    )
    low_battery_charge: float | None = Field(
        default=None,
        ge=0,
        le=100,
        description="on battery, a charge (%) at or below this counts as low battery too (backup to the UPS's LB)",
    )
    state_interval_s: float = Field(
        default=60.0,
        ge=1,
        le=86_400,
        description="changed battery figures are re-published at most this often (a status change at once)",
    )
    username: str | None = Field(default=None, max_length=64, description="NUT user (upsd.users), if needed")
    password: SecretStr | None = Field(default=None, description="NUT password (prefer password_file)")
    password_file: Path | None = Field(default=None, description="read the NUT password from this file")

    @model_validator(mode="after")
    def _one_password_source(self) -> UpsSettings:
        if self.password is not None and self.password_file is not None:
            raise ValueError("give either password or password_file, not both")
        if (self.password is not None or self.password_file is not None) and self.username is None:
            raise ValueError("a NUT password needs a username")
        return self

    def resolved_password(self) -> str | None:
        """The password, read from ``password_file`` when that is set (blocking: call it in a thread)."""
        if self.password_file is not None:
            return self.password_file.read_text().strip()
        return self.password.get_secret_value() if self.password else None


class LowBatterySettings(BaseModel):
    """What the node does when its UPS says the battery is about to run out."""

    model_config = ConfigDict(extra="forbid")

    flush_timeout_s: float = Field(
        default=20.0, ge=0, le=600, description="longest wait for the outbox to be delivered before going down"
    )
    shutdown_command: list[str] | None = Field(
        default=None,
        min_length=1,
        description="run after saying goodbye, e.g. ['systemctl', 'poweroff']; none: keep running until power dies",
    )
    shutdown_timeout_s: float = Field(
        default=60.0, gt=0, le=3600, description="the shutdown command is killed if it runs longer"
    )


class PowerSettings(BaseModel):
    """Power monitoring: the node's UPS through NUT (mains lost / restored, low battery, going down)."""

    model_config = ConfigDict(extra="forbid")

    enabled: bool = Field(default=False, description="watch the UPS through NUT")
    ups: UpsSettings = Field(default_factory=UpsSettings, description="the UPS (NUT upsd)")
    on_low_battery: LowBatterySettings = Field(
        default_factory=LowBatterySettings, description="flush, say goodbye, optionally shut down"
    )
