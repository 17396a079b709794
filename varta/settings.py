"""Configuration loading shared by central and the edge: a YAML file plus environment variables.

Environment variables win over the file; unknown keys are rejected; every problem comes back as one
:class:`ConfigError` whose message names each offending setting, fit for a terminal.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import ValidationError
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource


class ConfigError(ValueError):
    """A configuration that cannot be used, with a readable (multi-line) message."""


class YamlEnvSettings(BaseSettings):
    """Settings whose YAML values arrive as init arguments and whose environment variables override them."""

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # Environment wins over the YAML file (passed as init values).
        return env_settings, init_settings, file_secret_settings


SettingsT = TypeVar("SettingsT", bound=YamlEnvSettings)


def read_yaml_mapping(path: Path) -> dict[str, Any]:
    """The top-level mapping of a YAML file (an empty file is an empty mapping)."""
    try:
        loaded = yaml.safe_load(path.read_text()) or {}
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path} is not valid YAML: {exc}") from None
    if not isinstance(loaded, dict):
        raise ConfigError(f"{path}: the top level must be a mapping")
    return loaded


def load_settings(cls: type[SettingsT], what: str, path: Path | None, overrides: dict[str, Any]) -> SettingsT:
    """Build *cls* from the YAML file at *path*, *overrides* and the environment; :class:`ConfigError` if invalid."""
    data: dict[str, Any] = read_yaml_mapping(path) if path is not None else {}
    data.update(overrides)
    try:
        return cls(**data)
    except ValidationError as exc:
        lines = []
        for err in exc.errors():
            where = ".".join(str(p) for p in err["loc"]) or "(top level)"
            lines.append(f"  {where}: {err['msg'].removeprefix('Value error, ')}")
        source = f" ({path})" if path is not None else ""
        raise ConfigError(f"invalid {what} configuration{source}:\n" + "\n".join(lines)) from None
