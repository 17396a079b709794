"""What a notification says: the webhook's JSON body and its signature, and the Telegram message text."""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping
from datetime import datetime
from typing import Any, Final

import orjson

from central.config import SiteSettings
from central.incidents.rules import parse_time
from central.incidents.texts import end_text, local_time, type_label

SIGNATURE_HEADER: Final = "X-Varta-Signature"

_ICONS: Final[dict[str, str]] = {"critical": "🚨", "error": "🔴", "warning": "🟠", "info": "🔵"}
_WORDS: Final[dict[str, dict[str, str]]] = {
    "uk": {
        "opened": "Новий інцидент",
        "closed": "Інцидент завершено",
        "acknowledged": "Інцидент підтверджено",
        "site": "Об'єкт",
        "device": "Пристрій",
        "node": "Вузол",
        "devices": "Пристроїв",
        "started": "Початок",
        "ended": "Кінець",
        "ack": "Підтвердив",
        "zone": "Київ",
    },
    "en": {
        "opened": "New incident",
        "closed": "Incident closed",
        "acknowledged": "Incident acknowledged",
        "site": "Site",
        "device": "Device",
        "node": "Node",
        "devices": "Devices",
        "started": "Started",
        "ended": "Ended",
        "ack": "Acknowledged by",
        "zone": "Kyiv",
    },
}


def webhook_body(payload: Mapping[str, Any], sent_at: datetime) -> bytes:
    """The JSON a webhook receives: ``{"event", "incident", "sent_at"}``."""
    return orjson.dumps({"event": payload.get("event"), "incident": payload.get("incident"), "sent_at": sent_at})


def signature(secret: bytes, body: bytes) -> str:
    """``sha256=<hex HMAC-SHA256 of the body>``: the ``X-Varta-Signature`` header value."""
    return "sha256=" + hmac.new(secret, body, hashlib.sha256).hexdigest()


def telegram_text(payload: Mapping[str, Any], transition: str, language: str, sites: Mapping[str, SiteSettings]) -> str:
    """A short message in *language*: what happened, the type, site name, the device or node, devices count, start
    and end (Kyiv time), who acknowledged. Built from codes and names, not from the stored (one-language) title."""
    words = _WORDS.get(language, _WORDS["en"])
    incident: Mapping[str, Any] = payload.get("incident") or {}
    severity = str(incident.get("severity") or "info")
    icon = "✅" if transition == "closed" else "👁" if transition == "acknowledged" else _ICONS.get(severity, "🔵")
    site_id = str(incident.get("site") or "")
    configured = sites.get(site_id)
    site_name = (configured.name if configured is not None else "") or str(incident.get("site_name") or site_id)
    data: Mapping[str, Any] = incident.get("data") or {}
    lines = [
        f"{icon} {words.get(transition, transition)}: {type_label(language, str(incident.get('type') or ''))}",
        f"{words['site']}: {site_name}",
    ]
    if data.get("device_name"):
        lines.append(f"{words['device']}: {data['device_name']}")
    elif data.get("node_name"):
        lines.append(f"{words['node']}: {data['node_name']}")
    lines.append(f"{words['devices']}: {len(incident.get('devices') or [])}")
    started = parse_time(incident.get("started_at"))
    if started is not None:
        lines.append(f"{words['started']}: {local_time(started)} ({words['zone']})")
    ended = parse_time(incident.get("ended_at"))
    if ended is not None:
        code, values = data.get("end_code"), data.get("end_values")
        reason = (
            end_text(language, str(code), values if isinstance(values, dict) else {})
            if code
            else str(incident.get("end_reason") or "")
        )
        lines.append(f"{words['ended']}: {local_time(ended)}" + (f" — {reason}" if reason else ""))
    if incident.get("acknowledged_by"):
        lines.append(f"{words['ack']}: {incident['acknowledged_by']}")
    return "\n".join(line for line in lines if line)[:4000]


__all__ = ["SIGNATURE_HEADER", "signature", "telegram_text", "webhook_body"]
