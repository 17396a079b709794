"""A controllable alert feed for tests: alerts.in.ua-shaped JSON and CAP 1.2 documents over real HTTP (loopback).

``AlertFeedServer().start()`` serves, on 127.0.0.1 and a free port:

- ``GET /v1/alerts/active.json`` — ``{"alerts": [...], "meta": {...}}`` built from :meth:`set_active`, with
  ``Last-Modified`` and a 304 for a current ``If-Modified-Since``; a bearer token (or ``?token=``) is required
  when the server has one (401 otherwise);
- ``GET /cap`` — the document given to :meth:`set_cap` (``Last-Modified``/``ETag``, 304 likewise).

Misbehaviour on demand: :meth:`queue` serves the given :class:`Reply` objects once each, in order, before the
normal answers (status, body, headers, a delay before answering); :meth:`override` serves one reply every time
until it is cleared. Every request is recorded (:attr:`requests`, with headers) for assertions.
:func:`api_alert`, :func:`cap_alert` and :func:`atom_feed` build documents.
"""

from __future__ import annotations

import contextlib
import json
import socket
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime, parsedate_to_datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit
from xml.sax.saxutils import escape

ACTIVE_PATH = "/v1/alerts/active.json"
CAP_PATH = "/cap"


@dataclass(frozen=True)
class Reply:
    """One answer: status, body, headers, and seconds to wait before answering (a slow or hanging feed)."""

    status: int = 200
    body: bytes | str = b""
    headers: dict[str, str] = field(default_factory=dict)
    delay_s: float = 0.0
    content_type: str = "application/json"


@dataclass(frozen=True)
class RecordedRequest:
    """A request the feed received."""

    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]  # lower-case names
    at: float  # time.monotonic()

    def header(self, name: str) -> str | None:
        """A header's value (case-insensitive name), or None."""
        return self.headers.get(name.lower())


def iso(when: datetime) -> str:
    """alerts.in.ua's time format: UTC with milliseconds and ``Z``."""
    return when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{when.microsecond // 1000:03d}Z"


def api_alert(
    alert_id: int,
    location_uid: str,
    *,
    title: str = "",
    location_type: str = "hromada",
    oblast_uid: int | None = None,
    oblast: str = "",
    alert_type: str = "air_raid",
    started_at: datetime | None = None,
    finished_at: datetime | None = None,
    **extra: Any,
) -> dict[str, Any]:
    """One alerts.in.ua active-alert entry, every field as the real service sends it."""
    started = started_at or datetime.now(UTC)
    return {
        "id": alert_id,
        "location_title": title or f"location {location_uid}",
        "location_type": location_type,
        "started_at": iso(started),
        "finished_at": iso(finished_at) if finished_at else None,
        "updated_at": iso(datetime.now(UTC)),
        "alert_type": alert_type,
        "location_oblast": oblast or (title if location_type == "oblast" else "Oblast"),
        "location_uid": location_uid,
        "notes": None,
        "country": None,
        "calculated": None,
        "location_oblast_uid": oblast_uid
        if oblast_uid is not None
        else (int(location_uid) if location_uid.isdigit() else None),
        **extra,
    }


def cap_time(when: datetime) -> str:
    """A CAP dateTime (``2025-03-01T14:05:00+02:00``)."""
    return when.replace(microsecond=0).isoformat()


def cap_alert(
    identifier: str,
    *,
    sender: str = "dsns@example.gov.ua",
    sent: datetime | None = None,
    msg_type: str = "Alert",
    status: str = "Actual",
    references: list[tuple[str, str, datetime]] | None = None,
    event: str = "Air raid alert",
    category: str = "Safety",
    areas: list[tuple[str, list[tuple[str, str]]]] | None = None,
    onset: datetime | None = None,
    effective: datetime | None = None,
    expires: datetime | None = None,
    namespace: bool = True,
) -> str:
    """A CAP 1.2 ``<alert>``: *areas* is ``[(areaDesc, [(valueName, value), …]), …]``."""
    sent = sent or datetime.now(UTC)
    areas = areas if areas is not None else [("Київська область", [("UA-OBLAST", "14")])]
    parts = [
        '<alert xmlns="urn:oasis:names:tc:emergency:cap:1.2">' if namespace else "<alert>",
        f"<identifier>{escape(identifier)}</identifier>",
        f"<sender>{escape(sender)}</sender>",
        f"<sent>{cap_time(sent)}</sent>",
        f"<status>{status}</status>",
        f"<msgType>{msg_type}</msgType>",
        "<scope>Public</scope>",
    ]
    if references:
        refs = " ".join(f"{s},{i},{cap_time(t)}" for s, i, t in references)
        parts.append(f"<references>{escape(refs)}</references>")
    if msg_type != "Cancel" or areas:
        parts += ["<info>", "<language>uk-UA</language>", f"<category>{category}</category>"]
        parts += [f"<event>{escape(event)}</event>", "<urgency>Immediate</urgency>", "<severity>Extreme</severity>"]
        parts.append("<certainty>Observed</certainty>")
        if effective:
            parts.append(f"<effective>{cap_time(effective)}</effective>")
        if onset:
            parts.append(f"<onset>{cap_time(onset)}</onset>")
        if expires:
            parts.append(f"<expires>{cap_time(expires)}</expires>")
        parts.append("<headline>test</headline>")
        for desc, codes in areas:
            parts.append(f"<area><areaDesc>{escape(desc)}</areaDesc>")
            parts += [
                f"<geocode><valueName>{escape(n)}</valueName><value>{escape(v)}</value></geocode>" for n, v in codes
            ]
            parts.append("</area>")
        parts.append("</info>")
    parts.append("</alert>")
    return "".join(parts)


def atom_feed(alerts: list[str], *, with_declaration: bool = True) -> str:
    """An Atom feed whose entries embed the given CAP alerts (as the content of each entry)."""
    entries = "".join(
        f"<entry><id>urn:test:{n}</id><title>alert {n}</title><updated>{cap_time(datetime.now(UTC))}</updated>"
        f'<content type="application/cap+xml">{alert}</content></entry>'
        for n, alert in enumerate(alerts)
    )
    head = '<?xml version="1.0" encoding="UTF-8"?>' if with_declaration else ""
    return (
        f'{head}<feed xmlns="http://www.w3.org/2005/Atom"><id>urn:test:feed</id><title>CAP</title>'
        f"<updated>{cap_time(datetime.now(UTC))}</updated>{entries}</feed>"
    )


class AlertFeedServer:
    """The test feed (see the module docstring); thread-safe setters, usable as a context manager."""

    def __init__(self, *, token: str | None = "test-token", host: str = "127.0.0.1", port: int = 0) -> None:
        self.token = token
        self.host = host
        self._port = port
        self._lock = threading.Lock()
        self._alerts: list[dict[str, Any]] = []
        self._cap: bytes = atom_feed([]).encode()
        self._cap_type = "application/atom+xml"
        self._modified = self._stamp(None)
        self._cap_modified = self._modified
        self._cap_version = 1
        self._queue: deque[Reply] = deque()
        self._override: Reply | None = None
        self.requests: list[RecordedRequest] = []
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._connections: set[socket.socket] = set()

    # ------------------------------------------------------------------------------------------ lifecycle

    def start(self) -> AlertFeedServer:
        """Listen and serve in a background thread."""
        server = ThreadingHTTPServer((self.host, self._port), self._handler_class())
        server.daemon_threads = True
        self._server = server
        self._port = int(server.server_address[1])
        self._thread = threading.Thread(target=server.serve_forever, name="alert-feed", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving, drop open (keep-alive) connections and free the port (``start()`` serves on it again)."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        with self._lock:
            connections, self._connections = set(self._connections), set()
        for conn in connections:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
            with contextlib.suppress(OSError):
                conn.close()
        if self._thread is not None:
            self._thread.join(5)
            self._thread = None

    def __enter__(self) -> AlertFeedServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def port(self) -> int:
        """The port served on."""
        return self._port

    @property
    def url(self) -> str:
        """The alerts.in.ua API base (for ``AlertSourceSettings.url`` with ``kind: alerts_in_ua``)."""
        return f"http://{self.host}:{self._port}"

    @property
    def cap_url(self) -> str:
        """The CAP document's address (for ``kind: cap``)."""
        return self.url + CAP_PATH

    # ------------------------------------------------------------------------------------------ content

    def set_active(self, alerts: list[dict[str, Any]]) -> None:
        """Replace the active-alerts list (entries as :func:`api_alert` builds them, or anything else)."""
        with self._lock:
            self._alerts = list(alerts)
            self._modified = self._stamp(self._modified)

    def set_cap(self, document: str | bytes, content_type: str = "application/atom+xml") -> None:
        """Replace the CAP document (one ``<alert>`` or an Atom feed)."""
        with self._lock:
            self._cap = document.encode() if isinstance(document, str) else document
            self._cap_type = content_type
            self._cap_modified = self._stamp(self._cap_modified)
            self._cap_version += 1

    def queue(self, *replies: Reply) -> None:
        """Serve these replies once each, in order, before the normal answers."""
        with self._lock:
            self._queue.extend(replies)

    def override(self, reply: Reply | None) -> None:
        """Serve *reply* to every request until ``override(None)``."""
        with self._lock:
            self._override = reply

    def clear_requests(self) -> None:
        """Forget the recorded requests."""
        with self._lock:
            self.requests.clear()

    def requests_to(self, path: str) -> list[RecordedRequest]:
        """The recorded requests for *path*, oldest first."""
        with self._lock:
            return [r for r in self.requests if r.path == path]

    def wait_for_requests(self, count: int, path: str = ACTIVE_PATH, timeout: float = 10.0) -> list[RecordedRequest]:
        """Block until *count* requests for *path* arrived (raises TimeoutError)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = self.requests_to(path)
            if len(found) >= count:
                return found
            time.sleep(0.02)
        raise TimeoutError(f"{len(self.requests_to(path))} of {count} requests to {path} after {timeout} s")

    # ------------------------------------------------------------------------------------------ serving

    @staticmethod
    def _stamp(previous: datetime | None) -> datetime:
        """A Last-Modified time (whole seconds) strictly after *previous*: a change is never hidden by a 304."""
        now = datetime.now(UTC).replace(microsecond=0)
        if previous is not None and now <= previous:
            now = previous + timedelta(seconds=1)
        return now

    def _next_reply(self) -> Reply | None:
        with self._lock:
            if self._queue:
                return self._queue.popleft()
            return self._override

    def _authorised(self, request: RecordedRequest) -> bool:
        if self.token is None:
            return True
        return request.header("authorization") == f"Bearer {self.token}" or request.query.get("token") == [self.token]

    def _answer(self, request: RecordedRequest) -> Reply:
        special = self._next_reply()
        if special is not None:
            return special
        if request.path not in (ACTIVE_PATH, CAP_PATH):
            return Reply(404, b'{"message": "not found"}')
        if not self._authorised(request):
            return Reply(401, b'{"message": "API token required"}')
        with self._lock:
            if request.path == ACTIVE_PATH:
                modified, etag = self._modified, None
                body: bytes = json.dumps(
                    {"alerts": self._alerts, "meta": {"last_updated_at": iso(modified)}, "disclaimer": "test"},
                    ensure_ascii=False,
                ).encode()
                content_type = "application/json; charset=utf-8"
            else:
                modified, etag = self._cap_modified, f'"v{self._cap_version}"'
                body, content_type = self._cap, self._cap_type
        headers = {"Last-Modified": format_datetime(modified, usegmt=True)}
        if etag:
            headers["ETag"] = etag
        if etag and request.header("if-none-match") == etag:
            return Reply(304, b"", headers)
        since = request.header("if-modified-since")
        if since:
            try:
                if parsedate_to_datetime(since) >= modified:
                    return Reply(304, b"", headers)
            except (TypeError, ValueError):
                pass
        return Reply(200, body, headers, content_type=content_type)

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        feed = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def setup(self) -> None:
                super().setup()
                with feed._lock:
                    feed._connections.add(self.connection)

            def finish(self) -> None:
                with feed._lock:
                    feed._connections.discard(self.connection)
                with contextlib.suppress(OSError):
                    super().finish()

            def log_message(self, format: str, *args: Any) -> None:
                return

            def do_GET(self) -> None:
                parts = urlsplit(self.path)
                request = RecordedRequest(
                    path=parts.path,
                    query=parse_qs(parts.query),
                    headers={k.lower(): v for k, v in self.headers.items()},
                    at=time.monotonic(),
                )
                with feed._lock:
                    feed.requests.append(request)
                reply = feed._answer(request)
                if reply.delay_s:
                    time.sleep(reply.delay_s)
                body = reply.body.encode() if isinstance(reply.body, str) else reply.body
                try:
                    self.send_response(reply.status)
                    for name, value in reply.headers.items():
                        self.send_header(name, value)
                    if reply.status != 304:
                        self.send_header("Content-Type", reply.content_type)
                        self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    if reply.status != 304:
                        self.wfile.write(body)
                except (BrokenPipeError, ConnectionResetError):
                    pass

        return Handler
