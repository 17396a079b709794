"""Jinja2 rendering with one environment per language (gettext installed through the i18n extension)."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping
from datetime import datetime
from functools import cache
from pathlib import Path
from typing import Any

from fastapi.responses import HTMLResponse
from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape

from central.dashboard.i18n import LANGUAGES, PACKAGE_DIR, TEMPLATES_DIR, translations
from varta.contract import utcnow

STATIC_DIR = PACKAGE_DIR / "static"


def relative_time(when: datetime | None, gettext: Callable[[str], str], now: datetime | None = None) -> str:
    """ "2 min ago" style age of *when* (same wording and steps as the browser script)."""
    if when is None:
        return gettext("never")
    seconds = max(0, int(((now or utcnow()) - when).total_seconds()))
    if seconds < 45:
        return gettext("just now")
    minutes = max(1, seconds // 60)
    if minutes < 60:
        return gettext("%(m)s min ago") % {"m": minutes}
    hours, minutes = divmod(minutes, 60)
    if hours < 48:
        return gettext("%(h)s h %(m)s min ago") % {"h": hours, "m": minutes}
    days, hours = divmod(hours, 24)
    return gettext("%(d)s d %(h)s h ago") % {"d": days, "h": hours}


def utc_text(when: datetime | None) -> str:
    """``2025-05-01 12:34:56 UTC`` (the browser script rewrites it in local time)."""
    return when.strftime("%Y-%m-%d %H:%M:%S UTC") if when is not None else "—"


def iso(when: datetime | None) -> str:
    """ISO 8601 for ``datetime=`` / ``data-`` attributes."""
    return when.isoformat() if when is not None else ""


def number(value: float | None, digits: int = 0) -> str:
    """A rounded number, or an em dash when absent."""
    if value is None:
        return "—"
    return f"{value:.{digits}f}"


def duration(seconds: float | None, gettext: Callable[[str], str]) -> str:
    """An uptime such as ``3 d 4 h`` or ``12 min``."""
    if seconds is None:
        return "—"
    minutes = int(seconds) // 60
    days, rest = divmod(minutes, 1440)
    hours, minutes = divmod(rest, 60)
    if days:
        return gettext("%(d)s d %(h)s h") % {"d": days, "h": hours}
    if hours:
        return gettext("%(h)s h %(m)s min") % {"h": hours, "m": minutes}
    return gettext("%(m)s min") % {"m": minutes}


@cache
def _file_digest(path: Path, mtime_ns: int) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()[:12]


def static_url(name: str) -> str:
    """``/static/<name>?v=<content hash>``: browsers (and wall screens) pick up new versions at once."""
    path = (STATIC_DIR / name).resolve()
    if not path.is_relative_to(STATIC_DIR.resolve()) or not path.is_file():
        raise FileNotFoundError(f"no static file {name!r}")
    return f"/static/{name}?v={_file_digest(path, path.stat().st_mtime_ns)}"


class Templates:
    """The dashboard's templates, rendered in any of :data:`LANGUAGES`."""

    def __init__(self, directory: Path = TEMPLATES_DIR) -> None:
        self._envs = {lang: self._environment(directory, lang) for lang in LANGUAGES}

    @staticmethod
    def _environment(directory: Path, language: str) -> Environment:
        env = Environment(
            loader=FileSystemLoader(directory),
            autoescape=select_autoescape(["html"]),
            undefined=StrictUndefined,
            extensions=["jinja2.ext.i18n"],
            trim_blocks=True,
            lstrip_blocks=True,
        )
        env.policies["ext.i18n.trimmed"] = True
        tr = translations(language)
        env.install_gettext_translations(tr, newstyle=True)  # type: ignore[attr-defined]
        env.filters.update(
            ago=lambda when: relative_time(when, tr.gettext),
            utc=utc_text,
            iso=iso,
            num=number,
            duration=lambda seconds: duration(seconds, tr.gettext),
        )
        env.globals.update(static_url=static_url, lang=language)
        return env

    def environment(self, language: str) -> Environment:
        """The environment of *language*."""
        return self._envs[language]

    def render(self, name: str, context: Mapping[str, Any], *, language: str) -> str:
        """Render template *name* in *language*."""
        return self._envs[language].get_template(name).render(context)

    def response(self, name: str, context: Mapping[str, Any], *, language: str, status_code: int = 200) -> HTMLResponse:
        """An HTML response of template *name*."""
        return HTMLResponse(self.render(name, context, language=language), status_code=status_code)


@cache
def templates() -> Templates:
    """The process-wide :class:`Templates`."""
    return Templates()
