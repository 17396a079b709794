"""The words of incidents (titles, details, end reasons, type names) in Ukrainian (default) and English.

Incidents are stored with their title, detail and end reason already written in central's
``default_language``; the codes behind them are kept in ``Incident.data`` (``end_code`` …) so a page can word
them again in another language.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any, Final, Literal, get_args
from zoneinfo import ZoneInfo

Language = Literal["uk", "en"]

#: Times shown to dispatchers are Kyiv local times.
LOCAL_ZONE: Final = ZoneInfo("Europe/Kyiv")

IncidentType = Literal[
    "siren_failure",
    "unexpected_activation",
    "power_outage",
    "node_down",
    "siren_fault",
    "camera_fault",
    "kiosk_fault",
    "device_fault",
]
#: Incident types, in the order a dispatcher thinks of them.
TYPES: Final[tuple[str, ...]] = get_args(IncidentType)

TYPE_LABELS: Final[dict[str, dict[str, str]]] = {
    "uk": {
        "siren_failure": "Сирена не спрацювала",
        "unexpected_activation": "Спрацювання сирени без тривоги",
        "power_outage": "Відключення живлення",
        "node_down": "Вузол недоступний",
        "siren_fault": "Несправність сирени",
        "camera_fault": "Несправність камери",
        "kiosk_fault": "Несправність кіоску",
        "device_fault": "Несправність пристрою",
    },
    "en": {
        "siren_failure": "Siren did not sound",
        "unexpected_activation": "Siren sounding without an alert",
        "power_outage": "Power outage",
        "node_down": "Node down",
        "siren_fault": "Siren fault",
        "camera_fault": "Camera fault",
        "kiosk_fault": "Kiosk fault",
        "device_fault": "Device fault",
    },
}

_TEXTS: Final[dict[str, dict[str, str]]] = {
    "uk": {
        "title.power_outage": "Відключення живлення: {site}",
        "title.node_down": "Вузол недоступний: {node} ({site})",
        "title.fault": "{label}: {device} ({site})",
        "title.siren_failure": "Сирена не спрацювала: {device} ({site})",
        "title.unexpected_activation": "Сирена звучить без тривоги: {device} ({site})",
        "detail.power_outage": "Живлення від батареї або вузол вимкнувся через живлення: {nodes}",
        "detail.node_down": "Вузол не на зв'язку ({reason})",
        "detail.fault": "{status} ({reason})",
        "detail.siren_failure": "Тривога ({region}) з {since}; сирена не звучала",
        "detail.siren_failure_unknown": "Тривога ({region}) з {since}; стан сирени невідомий (вузол не на зв'язку)",
        "detail.unexpected_activation": "Сирена звучить з {since}, офіційної тривоги немає",
        "end.power_back": "Живлення відновлено, вузли на зв'язку",
        "end.node_back": "Вузол знову на зв'язку",
        "end.node_shutdown": "Вузол вимкнено штатно",
        "end.absorbed": "Увійшло до інциденту «{label}»",
        "end.device_back": "Пристрій знову працює",
        "end.gone": "Пристрій більше не звітує",
        "end.sounded": "Сирена спрацювала через {after} після початку тривоги",
        "end.alert_ended": "Тривога завершилась; сирена так і не спрацювала",
        "end.stopped": "Сирена замовкла через {after}",
        "end.alert_started": "Почалась офіційна тривога",
        "end.duplicate": "Дублікат",
        "reason.unknown": "причина невідома",
    },
    "en": {
        "title.power_outage": "Power outage at {site}",
        "title.node_down": "Node down: {node} at {site}",
        "title.fault": "{label}: {device} at {site}",
        "title.siren_failure": "Siren did not sound: {device} at {site}",
        "title.unexpected_activation": "Siren sounding without an alert: {device} at {site}",
        "detail.power_outage": "On battery, or went down for power: {nodes}",
        "detail.node_down": "The node is not connected ({reason})",
        "detail.fault": "{status} ({reason})",
        "detail.siren_failure": "Alert ({region}) since {since}; the siren has not sounded",
        "detail.siren_failure_unknown": "Alert ({region}) since {since}; siren state unknown (node not connected)",
        "detail.unexpected_activation": "Sounding since {since} with no official alert",
        "end.power_back": "Mains restored and the nodes are connected",
        "end.node_back": "The node is connected again",
        "end.node_shutdown": "The node was shut down cleanly",
        "end.absorbed": "Covered by the '{label}' incident",
        "end.device_back": "The device works again",
        "end.gone": "The device is no longer reported",
        "end.sounded": "The siren sounded {after} after the alert began",
        "end.alert_ended": "The alert ended; the siren never sounded",
        "end.stopped": "The siren stopped after {after}",
        "end.alert_started": "An official alert began",
        "end.duplicate": "Duplicate",
        "reason.unknown": "reason unknown",
    },
}


def text(language: str, key: str, **values: object) -> str:
    """The text *key* in *language* (English when the language is unknown) with *values* filled in."""
    table = _TEXTS.get(language, _TEXTS["en"])
    return table[key].format(**values)


def end_text(language: str, code: str, values: Mapping[str, Any] | None = None) -> str:
    """Why an incident ended, from its ``end_code`` and ``end_values`` (``after_s``: seconds; ``cover_type``: the
    type of the incident that took it over), in *language*."""
    values = values or {}
    table = _TEXTS.get(language, _TEXTS["en"])
    template = table.get(f"end.{code}")
    if template is None:
        return code
    after = values.get("after_s")
    fill = {
        "after": duration(float(after), language) if isinstance(after, int | float) else "?",
        "label": type_label(language, str(values.get("cover_type") or "")),
    }
    return template.format(**fill)


def type_label(language: str, incident_type: str) -> str:
    """The dispatcher's name of an incident type."""
    return TYPE_LABELS.get(language, TYPE_LABELS["en"]).get(incident_type, incident_type)


def duration(seconds: float, language: str) -> str:
    """A short duration: ``45 с`` / ``3 хв 05 с`` / ``2 год 10 хв`` (``s``/``min``/``h`` in English)."""
    total = max(0, round(seconds))
    h, rest = divmod(total, 3600)
    m, s = divmod(rest, 60)
    sec, mins, hours = ("с", "хв", "год") if language == "uk" else ("s", "min", "h")
    if h:
        return f"{h} {hours} {m:02d} {mins}"
    if m:
        return f"{m} {mins} {s:02d} {sec}"
    return f"{s} {sec}"


def local_time(value: datetime, *, with_date: bool = True) -> str:
    """*value* as Kyiv local time: ``23.11.2026 14:05`` (or ``14:05``)."""
    local = value.astimezone(LOCAL_ZONE)
    return local.strftime("%d.%m.%Y %H:%M" if with_date else "%H:%M")


__all__ = [
    "LOCAL_ZONE",
    "TYPES",
    "TYPE_LABELS",
    "IncidentType",
    "Language",
    "duration",
    "local_time",
    "text",
    "type_label",
]
