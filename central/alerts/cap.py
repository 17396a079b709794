"""CAP 1.2 (OASIS Common Alerting Protocol): one ``<alert>`` or an Atom feed whose entries embed alerts.

Parsing is defensive: at most :data:`~central.alerts.http.MAX_BYTES`, any ``<!DOCTYPE``/``<!ENTITY`` is refused
before the parser sees the text (no entity expansion, no external fetches: nothing inside the XML is ever
fetched, links included), and the stdlib parser builds the tree.

Mapping onto alert periods:

- only ``status`` ``Actual`` counts (exercises, tests and drafts are counted as ignored);
- ``msgType`` ``Alert``/``Update`` lists the alert: one period per ``area/geocode`` value (the region id a site
  lists; the ``areaDesc`` is its name). An area without a geocode cannot be matched to a site: it is counted;
- an alert's key is ``<sender>/<identifier>``; an ``Update`` (and a ``Cancel``) names the messages it
  supersedes in ``references``: the update carries on the periods of the oldest one it references (so an updated
  alert stays one period) and superseded messages still in the feed are dropped;
- ``Cancel`` ends the referenced alert's periods at its ``sent`` time; ``expires`` in the past ends a period at
  that time; an alert no longer in the document has ended (the feed lists what is current);
- the start is the info's ``onset``, else its ``effective``, else the alert's ``sent``;
- ``alert_type`` comes from an ``eventCode`` named ``alert_type`` holding one of alerts.in.ua's types, else from
  keywords in ``event`` (air raid / повітряна тривога → ``air_raid``, …), else ``other``.
"""

from __future__ import annotations

import asyncio
import hashlib
import re
import xml.etree.ElementTree as ET
from collections import OrderedDict
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Final

import httpx

from central.alerts.feed import ALERT_TYPES, FeedAlert, FeedDocument, FeedError, as_utc
from central.alerts.http import MAX_BYTES, fetch
from central.config import AlertSourceSettings

CAP_NS: Final = "urn:oasis:names:tc:emergency:cap:1.2"
ATOM_NS: Final = "http://www.w3.org/2005/Atom"
_C = "{" + CAP_NS + "}"
_A = "{" + ATOM_NS + "}"
MAX_ALERTS: Final = 5000
MAX_KEY: Final = 135  # key + "#" + region uid (≤ 64) fits the 200-character source_id
MAX_REMEMBERED: Final = 10_000
_LATEST: Final = datetime.max.replace(tzinfo=UTC)
_FORBIDDEN = re.compile(rb"<!\s*(DOCTYPE|ENTITY)", re.IGNORECASE)
_EVENT_WORDS: Final = (
    ("air_raid", ("air raid", "air-raid", "airraid", "повітряна тривога", "air alert")),
    ("artillery_shelling", ("artillery", "shelling", "артобстріл", "обстріл")),
    ("urban_fights", ("urban fight", "street fight", "вуличні бої")),
    ("chemical", ("chemical", "хімічн")),
    ("nuclear", ("nuclear", "radiation", "радіац", "ядерн")),
)


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def _text(element: ET.Element, name: str) -> str:
    child = element.find(_C + name)
    return (child.text or "").strip() if child is not None else ""


def _time(value: str) -> datetime | None:
    """A CAP dateTime (with its UTC offset) in UTC; None when absent or unreadable."""
    if not value:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    if parsed.tzinfo is None:
        return None
    try:
        return as_utc(parsed)
    except OverflowError:
        return None


def alert_key(sender: str, identifier: str) -> str:
    """The stable key of a CAP message (a digest when it is too long for the ``source_id`` column)."""
    key = f"{sender}/{identifier}"
    if len(key) > MAX_KEY:
        key = "sha256:" + hashlib.sha256(key.encode()).hexdigest()[:48]
    return key


def alert_type_of(event: str, codes: list[tuple[str, str]]) -> str:
    """alerts.in.ua's alert type for a CAP info (see the module docstring)."""
    for name, value in codes:
        if name.lower() in ("alert_type", "alerts_in_ua") and value in ALERT_TYPES:
            return value
    lowered = event.lower()
    for kind, words in _EVENT_WORDS:
        if any(word in lowered for word in words):
            return kind
    return "other"


def parse_references(value: str) -> list[tuple[str, str, datetime | None]]:
    """``sender,identifier,sent`` triples (whitespace-separated) of a ``references`` element."""
    refs: list[tuple[str, str, datetime | None]] = []
    for item in value.split():
        parts = item.split(",")
        if len(parts) >= 2 and parts[0] and parts[1]:
            refs.append((parts[0], parts[1], _time(parts[2]) if len(parts) >= 3 else None))
    return refs


def _ref_order(ref: tuple[str, str, datetime | None]) -> datetime:
    return ref[2] if ref[2] is not None else _LATEST


def parse_xml(body: bytes, *, max_bytes: int = MAX_BYTES) -> ET.Element:
    """The document's root element; raises :class:`FeedError` (``too_large``, ``doctype``, ``bad_xml``)."""
    if len(body) > max_bytes:
        raise FeedError("too_large", f"{len(body)} bytes")
    if _FORBIDDEN.search(body):
        raise FeedError("doctype", "DOCTYPE/ENTITY declarations are refused")
    try:
        # Safe here: no DTD can be present (checked above), so no entity is expanded or fetched.
        return ET.fromstring(body)  # noqa: S314
    except (ET.ParseError, ValueError, LookupError, UnicodeError, RecursionError) as exc:
        raise FeedError("bad_xml", str(exc)[:200]) from None


@dataclass
class _Message:
    key: str
    sent: datetime
    status: str
    msg_type: str
    references: list[tuple[str, str, datetime | None]]
    element: ET.Element


@dataclass
class CapState:
    """What a CAP source remembers between polls: which key an update carries on, what was superseded."""

    roots: OrderedDict[str, str] = field(default_factory=OrderedDict)
    superseded: OrderedDict[str, datetime] = field(default_factory=OrderedDict)

    def root(self, key: str) -> str:
        """The key of the message *key* carries on (itself when it is an original alert)."""
        return self.roots.get(key, key)

    def remember(self, key: str, root: str) -> None:
        """Record that *key* carries on *root*."""
        self.roots[key] = root
        self.roots.move_to_end(key)
        while len(self.roots) > MAX_REMEMBERED:
            self.roots.popitem(last=False)

    def supersede(self, key: str, when: datetime) -> None:
        """Record that *key* was replaced or cancelled at *when*."""
        self.superseded[key] = when
        self.superseded.move_to_end(key)
        while len(self.superseded) > MAX_REMEMBERED:
            self.superseded.popitem(last=False)


def _messages(root: ET.Element, document: FeedDocument) -> list[ET.Element]:
    tag = root.tag
    if tag == _C + "alert":
        return [root]
    if tag == _A + "feed":
        found: list[ET.Element] = []
        for entry in root.iter(_A + "entry"):
            alert = next(entry.iter(_C + "alert"), None)
            if alert is None:
                document.skipped["entry_without_alert"] += 1
                continue
            found.append(alert)
            if len(found) >= MAX_ALERTS:
                document.skipped["too_many_alerts"] += 1
                break
        return found
    if _local(tag) == "alert":
        raise FeedError("bad_shape", f"not a CAP 1.2 alert: {tag[:100]}")
    raise FeedError("bad_shape", f"neither a CAP alert nor an Atom feed: {tag[:100]}")


def _read_message(element: ET.Element, document: FeedDocument) -> _Message | None:
    identifier, sender = _text(element, "identifier"), _text(element, "sender")
    sent = _time(_text(element, "sent"))
    if not identifier or not sender:
        document.skipped["missing_id"] += 1
        return None
    if sent is None:
        document.skipped["bad_time"] += 1
        return None
    return _Message(
        key=alert_key(sender, identifier),
        sent=sent,
        status=_text(element, "status"),
        msg_type=_text(element, "msgType"),
        references=parse_references(_text(element, "references")),
        element=element,
    )


def _periods(message: _Message, key: str, document: FeedDocument) -> dict[str, FeedAlert]:
    """The message's alerts by region (several infos naming one region are merged: earliest start, latest end)."""
    found: dict[str, FeedAlert] = {}
    for info in message.element.findall(_C + "info"):
        codes = [(_text(c, "valueName"), _text(c, "value")) for c in info.findall(_C + "eventCode")]
        kind = alert_type_of(_text(info, "event"), codes)
        start_text = _text(info, "onset") or _text(info, "effective")
        started = _time(start_text) if start_text else message.sent
        expires_text = _text(info, "expires")
        expires = _time(expires_text) if expires_text else None
        if started is None or (expires_text and expires is None):
            document.skipped["bad_time"] += 1
            continue
        for area in info.findall(_C + "area"):
            name = _text(area, "areaDesc")[:200]
            geocodes = [_text(g, "value") for g in area.findall(_C + "geocode")]
            geocodes = [g for g in geocodes if g]
            if not geocodes:
                document.skipped["area_without_geocode"] += 1
                continue
            for uid in geocodes:
                if len(uid) > 64:
                    document.skipped["bad_geocode"] += 1
                    continue
                alert = FeedAlert(
                    source_id=f"{key}#{uid}",
                    region_uid=uid,
                    region_name=name,
                    region_type="",
                    oblast_uid=None,
                    alert_type=kind,
                    started_at=started,
                    expires_at=expires,
                )
                previous = found.get(uid)
                if previous is not None:
                    alert = FeedAlert(
                        source_id=alert.source_id,
                        region_uid=uid,
                        region_name=previous.region_name or name,
                        region_type="",
                        oblast_uid=None,
                        alert_type=previous.alert_type if previous.alert_type != "other" else kind,
                        started_at=min(previous.started_at, started),
                        expires_at=None
                        if previous.expires_at is None or expires is None
                        else max(previous.expires_at, expires),
                    )
                found[uid] = alert
    return found


def parse_cap(body: bytes, state: CapState | None = None, *, max_bytes: int = MAX_BYTES) -> FeedDocument:
    """Parse a CAP alert or an Atom feed of them; raises :class:`FeedError` only for the document as a whole."""
    state = state if state is not None else CapState()
    root = parse_xml(body, max_bytes=max_bytes)
    document = FeedDocument(complete=True)
    messages: list[_Message] = []
    for element in _messages(root, document):
        message = _read_message(element, document)
        if message is None:
            continue
        if message.status != "Actual":
            document.ignored[f"status_{message.status.lower() or 'missing'}"[:40]] += 1
            continue
        if message.msg_type not in ("Alert", "Update", "Cancel"):
            document.ignored[f"msgtype_{message.msg_type.lower() or 'missing'}"[:40]] += 1
            continue
        messages.append(message)
    messages.sort(key=lambda m: m.sent)
    # Resolve which original alert each update or cancel carries on, and what it supersedes.
    for message in messages:
        if message.msg_type == "Alert" or not message.references:
            if message.msg_type == "Cancel":
                document.skipped["cancel_without_references"] += 1
            continue
        referenced = [alert_key(s, i) for s, i, _ in sorted(message.references, key=_ref_order)]
        root_key = state.root(referenced[0])
        state.remember(message.key, root_key)
        for key in referenced:
            state.supersede(key, message.sent)
        if message.msg_type == "Cancel":
            document.ended_keys[root_key] = message.sent
            state.supersede(message.key, message.sent)
    periods: dict[str, FeedAlert] = {}
    for message in messages:
        if message.msg_type == "Cancel" or message.key in state.superseded:
            continue
        key = state.root(message.key)
        if key in document.ended_keys:
            continue
        for alert in _periods(message, key, document).values():
            periods[alert.source_id] = alert
    document.alerts = list(periods.values())
    return document


class CapClient:
    """Polls one CAP source (``If-Modified-Since``/``If-None-Match``: a 304 keeps the last document)."""

    def __init__(self, settings: AlertSourceSettings, http: httpx.AsyncClient, *, max_bytes: int = MAX_BYTES) -> None:
        self.settings = settings
        self.http = http
        self.max_bytes = max_bytes
        self.state = CapState()
        self.last_modified: str | None = None
        self.etag: str | None = None
        self.last_document: FeedDocument | None = None

    async def poll(self, token: str | None) -> tuple[FeedDocument, bool]:
        """The current document and whether it changed (False after a 304). Raises :class:`FeedError`."""
        headers = {"Accept": "application/cap+xml, application/atom+xml, application/xml, text/xml"}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        if self.last_document is not None:
            if self.last_modified:
                headers["If-Modified-Since"] = self.last_modified
            if self.etag:
                headers["If-None-Match"] = self.etag
        reply = await fetch(
            self.http, self.settings.url, headers, timeout_s=self.settings.timeout_s, max_bytes=self.max_bytes
        )
        if reply.status == 304:
            if self.last_document is None:
                raise FeedError("bad_304", "304 Not Modified without a previous document")
            return self.last_document, False
        # Up to 2 MB of XML: parsed off the event loop (one poll at a time, so the state is not shared).
        document = await asyncio.to_thread(parse_cap, reply.body, self.state, max_bytes=self.max_bytes)
        self.last_document = document
        self.last_modified = reply.headers.get("last-modified") or None
        self.etag = reply.headers.get("etag") or None
        return document, True
