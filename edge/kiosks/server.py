"""The node's local web server for its kiosk's browser: the player page, its state stream, heartbeats, content.

Listens on ``kiosk.listen_host`` (loopback by default: the browser runs on the same Pi). Routes:

- ``GET /player`` — the player page (``static/``), ``GET /player/static/<file>`` its script and style;
- ``GET /player/events`` — server-sent events, one ``state`` event per :class:`~edge.kiosks.director.PlayerState`
  (the current one first), so an alert reaches the page as soon as the node decides it;
- ``POST /player/heartbeat`` and ``POST /player/shown`` — JSON only (a bundle in its sandboxed frame cannot post
  JSON cross-origin without a CORS preflight, which this server never grants); bad bodies get 400 and are counted;
- ``GET /content/<sha256>`` and ``GET /bundle/<sha256>/<path>`` — assets of the current manifest from the cache,
  nothing else (a path that leaves the bundle's folder is 404).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import re
from collections.abc import Awaitable, Callable, Coroutine
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

import orjson
import structlog
from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from edge.kiosks.content import ContentCache
from edge.kiosks.director import KioskDirector, Mode

log = structlog.get_logger(__name__)

STATIC_DIR = Path(__file__).parent / "static"
MAX_BODY = 16 * 1024
SSE_PING_S = 15.0
SHA_RE = re.compile(r"^[0-9a-f]{64}$")
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; media-src 'self'; "
    "frame-src 'self' https: http://127.0.0.1:* http://localhost:*; connect-src 'self'; object-src 'none'; "
    "base-uri 'none'; form-action 'none'"
)


class Played(BaseModel):
    """One item that was on screen (proof of play)."""

    model_config = ConfigDict(extra="forbid")

    src: str = Field(max_length=2000)
    kind: Literal["image", "video", "bundle", "url"]
    started_at: datetime
    ended_at: datetime

    @property
    def seconds(self) -> float:
        """How long it was on screen."""
        return (self.ended_at - self.started_at).total_seconds()


class Heartbeat(BaseModel):
    """What the player page reports every few seconds."""

    model_config = ConfigDict(extra="forbid")

    generation: int = Field(ge=0)
    mode: Mode
    item_index: int | None = Field(default=None, ge=0, le=10_000)
    item_src: str | None = Field(default=None, max_length=2000)
    touching: bool = False
    last_touch_at: datetime | None = None
    errors: list[str] = Field(default_factory=list, max_length=20)
    played: list[Played] = Field(default_factory=list, max_length=50)
    page_started_at: datetime | None = None


class Shown(BaseModel):
    """The page has drawn the state of *generation* (an alert: the proof is taken now)."""

    model_config = ConfigDict(extra="forbid")

    generation: int = Field(ge=0)
    mode: Mode
    alert_id: str | None = Field(default=None, max_length=200)


class PlayerServer:
    """The aiohttp application and its site (see the module docstring)."""

    def __init__(
        self,
        director: KioskDirector,
        content: ContentCache,
        *,
        host: str,
        port: int,
        on_heartbeat: Callable[[Heartbeat], None],
        on_shown: Callable[[Shown], Coroutine[Any, Any, None]],
    ) -> None:
        self.director = director
        self.content = content
        self.host = host
        self.port = port
        self.on_heartbeat = on_heartbeat
        self.on_shown = on_shown
        self.rejected: collections.Counter[str] = collections.Counter()
        self.streams = 0
        self._runner: web.AppRunner | None = None
        self._stopping = asyncio.Event()

    def app(self) -> web.Application:
        """The routes (also for tests with aiohttp's test client)."""
        app = web.Application(client_max_size=MAX_BODY, middlewares=[self._headers])
        app.router.add_get("/player", self._page)
        app.router.add_get("/player/static/{name}", self._static)
        app.router.add_get("/player/state", self._state)
        app.router.add_get("/player/events", self._events)
        app.router.add_post("/player/heartbeat", self._heartbeat)
        app.router.add_post("/player/shown", self._shown)
        app.router.add_get("/content/{sha}", self._blob)
        app.router.add_get("/bundle/{sha}/{path:.*}", self._bundle_file)
        return app

    async def start(self) -> None:
        """Bind and serve (raises OSError when the port is taken)."""
        self._stopping.clear()
        self._runner = web.AppRunner(self.app(), access_log=None, shutdown_timeout=2.0)
        await self._runner.setup()
        await web.TCPSite(self._runner, self.host, self.port).start()
        log.info("kiosk.server_started", host=self.host, port=self.port)

    async def stop(self) -> None:
        """Close the event streams and the listener."""
        self._stopping.set()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    # ------------------------------------------------------------------------------------------------ pages

    @web.middleware
    async def _headers(
        self, request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        response = await handler(request)
        if request.path.startswith("/player"):
            response.headers["Content-Security-Policy"] = CSP
            response.headers["Cache-Control"] = "no-store"
        response.headers["X-Content-Type-Options"] = "nosniff"
        response.headers["Referrer-Policy"] = "no-referrer"
        return response

    async def _page(self, _: web.Request) -> web.StreamResponse:
        return web.FileResponse(STATIC_DIR / "player.html", headers={"Content-Type": "text/html; charset=utf-8"})

    async def _static(self, request: web.Request) -> web.StreamResponse:
        name = request.match_info["name"]
        if name not in {"player.js", "player.css"}:
            raise web.HTTPNotFound
        kind = "text/javascript" if name.endswith(".js") else "text/css"
        return web.FileResponse(STATIC_DIR / name, headers={"Content-Type": f"{kind}; charset=utf-8"})

    async def _state(self, _: web.Request) -> web.Response:
        return web.json_response(text=self.director.state.model_dump_json())

    async def _events(self, request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(
            headers={"Content-Type": "text/event-stream", "Cache-Control": "no-store", "X-Accel-Buffering": "no"}
        )
        await response.prepare(request)
        self.streams += 1
        stopping = asyncio.create_task(self._stopping.wait())
        try:
            with self.director.subscribe() as queue:
                await response.write(b"retry: 1000\n\n")
                while not self._stopping.is_set():
                    getter = asyncio.create_task(queue.get())
                    done, _ = await asyncio.wait({getter, stopping}, timeout=SSE_PING_S, return_when="FIRST_COMPLETED")
                    if getter not in done:
                        getter.cancel()
                        if stopping in done:
                            break
                        await response.write(b": ping\n\n")
                        continue
                    state = getter.result()
                    await response.write(b"event: state\ndata: " + state.model_dump_json().encode() + b"\n\n")
        except ConnectionResetError:
            pass  # the page went away
        finally:
            stopping.cancel()
            self.streams -= 1
        return response

    async def _json_body(self, request: web.Request, model: type[BaseModel], what: str) -> BaseModel | None:
        if request.content_type != "application/json":
            self.rejected[f"{what}:content_type"] += 1
            return None
        try:
            body = await request.read()
            return model.model_validate(orjson.loads(body))
        except web.HTTPRequestEntityTooLarge:
            self.rejected[f"{what}:too_large"] += 1
        except (orjson.JSONDecodeError, ValidationError, ValueError) as exc:
            self.rejected[f"{what}:invalid"] += 1
            log.warning("kiosk.bad_request", what=what, error=str(exc)[:300])
        return None

    async def _heartbeat(self, request: web.Request) -> web.Response:
        beat = await self._json_body(request, Heartbeat, "heartbeat")
        if not isinstance(beat, Heartbeat):
            return web.json_response({"error": "not a heartbeat"}, status=400)
        self.on_heartbeat(beat)
        return web.Response(status=204)

    async def _shown(self, request: web.Request) -> web.Response:
        shown = await self._json_body(request, Shown, "shown")
        if not isinstance(shown, Shown):
            return web.json_response({"error": "not a shown report"}, status=400)
        task = asyncio.create_task(self.on_shown(shown))  # the proof (a screenshot) must not hold the page up
        task.add_done_callback(_log_failure)
        return web.Response(status=204)

    # ------------------------------------------------------------------------------------------------ content

    async def _blob(self, request: web.Request) -> web.StreamResponse:
        sha = request.match_info["sha"]
        mime = self.content.mime.get(sha) if SHA_RE.match(sha) else None
        if mime is None:
            raise web.HTTPNotFound
        path = self.content.blob(sha)
        if not path.is_file():
            raise web.HTTPNotFound
        return web.FileResponse(path, headers={"Content-Type": mime, "Cache-Control": "max-age=31536000, immutable"})

    async def _bundle_file(self, request: web.Request) -> web.StreamResponse:
        sha = request.match_info["sha"]
        if not SHA_RE.match(sha) or self.content.mime.get(sha) != "application/zip":
            raise web.HTTPNotFound
        root = self.content.bundle_dir(sha).resolve()
        relative = request.match_info["path"] or "index.html"
        target = (root / relative).resolve()
        if not target.is_relative_to(root) or not target.is_file():
            raise web.HTTPNotFound
        return web.FileResponse(target, headers={"Cache-Control": "no-cache"})


def _log_failure(task: asyncio.Task[None]) -> None:
    with contextlib.suppress(asyncio.CancelledError):
        exc = task.exception()
        if exc is not None:
            log.error("kiosk.shown_failed", error=repr(exc)[:300])
