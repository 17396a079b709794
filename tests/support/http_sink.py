"""A loopback HTTP server that records every request: a webhook receiver, or a fake Telegram Bot API.

It runs in its own thread (``http.server``), so a handler told to hang blocks neither the test's event loop nor the
code under test. It can answer the first N requests with an error, answer every request with a given status, or
hang until released.
"""

from __future__ import annotations

import asyncio
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import orjson

#: What the Telegram Bot API answers to a good ``sendMessage``.
TELEGRAM_OK: dict[str, Any] = {"ok": True, "result": {"message_id": 1, "chat": {"id": -100}, "text": ""}}


@dataclass(frozen=True)
class Recorded:
    """One request as received, and the status it was answered with (0: never answered, it hung)."""

    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    status: int

    def json(self) -> Any:
        """The body parsed as JSON."""
        return orjson.loads(self.body)


@dataclass
class HttpSink:
    """Records requests on 127.0.0.1; answers ``reply`` (JSON) with ``status`` unless told to fail or hang."""

    reply: Any = field(default_factory=lambda: {"ok": True})
    status: int = 200
    fail_first: int = 0
    fail_status: int = 500
    fail_reply: Any = field(default_factory=lambda: {"ok": False, "description": "sink failing"})
    fail_headers: dict[str, str] = field(default_factory=dict)
    _requests: list[Recorded] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _release: threading.Event = field(default_factory=threading.Event)
    _server: ThreadingHTTPServer | None = None
    _thread: threading.Thread | None = None

    def __post_init__(self) -> None:
        self._release.set()

    # ------------------------------------------------------------------------------------------ control

    def start(self) -> HttpSink:
        """Listen on a free loopback port."""
        sink = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                sink._handle(self)

            def do_GET(self) -> None:
                sink._handle(self)

            def log_message(self, format: str, *args: Any) -> None:
                return

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, name="http-sink", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Release hanging requests and stop listening."""
        self._release.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join(5)

    @property
    def port(self) -> int:
        assert self._server is not None
        return int(self._server.server_address[1])

    @property
    def url(self) -> str:
        """The base URL, e.g. ``http://127.0.0.1:43121``."""
        return f"http://127.0.0.1:{self.port}"

    def fail(self, first: int, status: int = 500, headers: dict[str, str] | None = None) -> None:
        """Answer the next *first* requests with *status*."""
        with self._lock:
            self.fail_first = first
            self.fail_status = status
            self.fail_headers = dict(headers or {})

    def hang(self) -> None:
        """From now on, hold every request without answering until :meth:`release`."""
        self._release.clear()

    def release(self) -> None:
        """Answer held requests and stop hanging."""
        self._release.set()

    @property
    def requests(self) -> list[Recorded]:
        """Every request so far (answered or not), oldest first."""
        with self._lock:
            return list(self._requests)

    async def wait_for(self, count: int, timeout: float = 10.0) -> list[Recorded]:
        """Wait until at least *count* requests arrived (raises TimeoutError)."""
        deadline = time.monotonic() + timeout
        while True:
            seen = self.requests
            if len(seen) >= count:
                return seen
            if time.monotonic() > deadline:
                raise TimeoutError(f"{len(seen)} of {count} requests after {timeout} s")
            await asyncio.sleep(0.02)

    # ------------------------------------------------------------------------------------------ serving

    def _handle(self, handler: BaseHTTPRequestHandler) -> None:
        length = int(handler.headers.get("content-length") or 0)
        body = handler.rfile.read(length) if length else b""
        headers = {k.lower(): v for k, v in handler.headers.items()}
        with self._lock:
            failing = self.fail_first > 0
            if failing:
                self.fail_first -= 1
            status = self.fail_status if failing else self.status
            reply = self.fail_reply if failing else self.reply
            extra = dict(self.fail_headers) if failing else {}
            index = len(self._requests)
            self._requests.append(Recorded(handler.command, handler.path, headers, body, 0))
        if not self._release.wait(60):
            return
        with self._lock:
            old = self._requests[index]
            self._requests[index] = Recorded(old.method, old.path, old.headers, old.body, status)
        payload = orjson.dumps(reply)
        try:
            handler.send_response(status)
            handler.send_header("content-type", "application/json")
            handler.send_header("content-length", str(len(payload)))
            for name, value in extra.items():
                handler.send_header(name, value)
            handler.end_headers()
            handler.wfile.write(payload)
        except OSError:
            pass  # the client gave up (a timeout): nothing to answer


__all__ = ["TELEGRAM_OK", "HttpSink", "Recorded"]
