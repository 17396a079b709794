"""alerts.in.ua: the active-alerts document (``GET /v1/alerts/active.json``) and its polling client.

The service's terms: informational only, not for critical infrastructure. Varta only compares the alerts with
what the sirens do; nothing physical is ever triggered from them.

Document shape (fields Varta reads; others are ignored)::

    {"alerts": [{"id": 8757, "location_title": "Луганська область", "location_type": "oblast",
                 "location_uid": "16", "location_oblast": "Луганська область", "location_oblast_uid": 16,
                 "alert_type": "air_raid", "started_at": "2022-04-04T16:45:39.000Z", "finished_at": null,
                 "updated_at": "2023-10-29T18:22:37.357Z", "notes": null, "calculated": null}, …],
     "meta": {"last_updated_at": "…"}}

One unreadable entry is counted and skipped (its id, when it has one, is kept so its stored period stays
open); a document that is not such an object at all raises :class:`~central.alerts.feed.FeedError`.
"""

from __future__ import annotations

import asyncio
from datetime import datetime
from typing import Annotated, Any, Final

import httpx
import orjson
import structlog
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, StringConstraints, ValidationError

from central.alerts.feed import FeedAlert, FeedDocument, FeedError, as_utc
from central.alerts.http import MAX_BYTES, fetch
from central.config import AlertSourceSettings

log = structlog.get_logger(__name__)

ACTIVE_PATH: Final = "/v1/alerts/active.json"
MAX_ALERTS: Final = 20_000


def _id_text(value: Any) -> Any:
    """Ids arrive as numbers or strings: both become strings (booleans are not ids)."""
    if isinstance(value, bool):
        return value
    if isinstance(value, int):
        return str(value)
    return value


IdText = Annotated[
    str, BeforeValidator(_id_text), StringConstraints(strip_whitespace=True, min_length=1, max_length=64)
]
Text = Annotated[str, StringConstraints(max_length=200)]


class ApiAlert(BaseModel):
    """One entry of ``alerts``: strict on what Varta uses, tolerant of fields it does not know."""

    model_config = ConfigDict(extra="ignore", strict=False)

    id: IdText
    location_title: Text = ""
    location_type: Annotated[str, StringConstraints(max_length=32)] = ""
    location_uid: IdText
    location_oblast: Text | None = None
    location_oblast_uid: IdText | None = None
    alert_type: Annotated[str, StringConstraints(min_length=1, max_length=32)] = "air_raid"
    started_at: datetime
    finished_at: datetime | None = None
    updated_at: datetime | None = None
    notes: str | None = None
    calculated: bool | None = None

    def feed_alert(self) -> FeedAlert:
        """The normalised alert (times in UTC; an oblast is its own oblast when the feed leaves it out)."""
        oblast_uid = self.location_oblast_uid
        if oblast_uid is None and self.location_type == "oblast":
            oblast_uid = self.location_uid
        return FeedAlert(
            source_id=self.id,
            region_uid=self.location_uid,
            region_name=self.location_title,
            region_type=self.location_type,
            oblast_uid=oblast_uid,
            alert_type=self.alert_type,
            started_at=as_utc(self.started_at),
            ended_at=as_utc(self.finished_at) if self.finished_at is not None else None,
        )


class _Document(BaseModel):
    model_config = ConfigDict(extra="ignore")

    alerts: list[Any] = Field(max_length=MAX_ALERTS)


def parse_active(body: bytes) -> FeedDocument:
    """Parse an active-alerts document; raises :class:`FeedError` (``not_json``, ``bad_json``, ``bad_shape``)."""
    stripped = body.lstrip()
    if stripped[:1] == b"<":
        raise FeedError("not_json", "an HTML or XML page instead of JSON")
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise FeedError("bad_json", str(exc)[:200]) from None
    try:
        document = _Document.model_validate(data)
    except ValidationError as exc:
        raise FeedError("bad_shape", f"{exc.error_count()} problem(s): {exc.errors()[0]['msg']}") from None
    result = FeedDocument(complete=True)
    seen: set[str] = set()
    for entry in document.alerts:
        try:
            alert = ApiAlert.model_validate(entry).feed_alert()
        except (ValidationError, ValueError, OverflowError):
            result.skipped["bad_alert"] += 1
            raw_id = entry.get("id") if isinstance(entry, dict) else None
            if isinstance(raw_id, int | str) and not isinstance(raw_id, bool) and 0 < len(str(raw_id)) <= 64:
                result.unreadable_ids.add(str(raw_id).strip())
            continue
        if alert.source_id in seen:
            result.skipped["duplicate_id"] += 1
            continue
        seen.add(alert.source_id)
        result.alerts.append(alert)
    return result


class AlertsInUaClient:
    """Polls one alerts.in.ua source: bearer token, ``If-Modified-Since`` (a 304 keeps the last document)."""

    def __init__(self, settings: AlertSourceSettings, http: httpx.AsyncClient, *, max_bytes: int = MAX_BYTES) -> None:
        self.settings = settings
        self.http = http
        self.max_bytes = max_bytes
        base = settings.url.rstrip("/")
        self.url = base if base.endswith(".json") else base + ACTIVE_PATH
        self.last_modified: str | None = None
        self.last_document: FeedDocument | None = None

    async def poll(self, token: str | None) -> tuple[FeedDocument, bool]:
        """The current document and whether it changed (False after a 304). Raises :class:`FeedError`."""
        if not token:
            raise FeedError("no_token", "alerts.in.ua needs an API token (token or token_file)")
        headers = {"Authorization": f"Bearer {token}", "Accept": "application/json"}
        if self.last_modified and self.last_document is not None:
            headers["If-Modified-Since"] = self.last_modified
        reply = await fetch(self.http, self.url, headers, timeout_s=self.settings.timeout_s, max_bytes=self.max_bytes)
        if reply.status == 304:
            if self.last_document is None:
                raise FeedError("bad_304", "304 Not Modified without a previous document")
            return self.last_document, False
        document = await asyncio.to_thread(parse_active, reply.body)  # up to 2 MB: off the event loop
        # Only a document that was read becomes the base of If-Modified-Since: a garbage 200 must not turn the
        # next replies into 304s that hide the real state.
        self.last_document = document
        self.last_modified = reply.headers.get("last-modified") or None
        return document, True
