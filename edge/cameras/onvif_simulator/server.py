"""``OnvifSimulator``: the project's own ONVIF camera (aiohttp, SOAP 1.2 over HTTP) with switchable faults."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import structlog
from aiohttp import web
from pydantic import BaseModel, ConfigDict, ValidationError

from .config import Faults, SimulatorConfig
from .httpauth import DigestVerifier
from .services import SNAPSHOT_PATH, UNAUTHENTICATED, Services
from .snapshot import render_jpeg
from .soap import CONTENT_TYPE, ENTITY_BOMB, MALFORMED, SoapFault, check_username_token, envelope, fault, parse_request
from .state import CameraState, EventKind

log = structlog.get_logger(__name__)


class _EventRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    kind: EventKind
    active: bool = True


class _ClockRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    offset_s: float


class OnvifSimulator:
    """A simulated ONVIF camera. ``await start()``, use ``.address``, ``await stop()``.

    Control from Python (``set_faults``, ``trigger``, ``set_clock_offset``, ``counters``) or over HTTP:
    ``GET /control/state``, ``POST /control/faults`` (JSON :class:`Faults` fields), ``POST /control/event``
    (``{"kind": "motion"|"tamper"|"scene_change", "active": true}``), ``POST /control/clock`` (``{"offset_s": 3600}``).
    """

    def __init__(self, config: SimulatorConfig | None = None, **overrides: Any) -> None:
        base = config or SimulatorConfig()
        self.config = SimulatorConfig.model_validate({**base.model_dump(), **overrides}) if overrides else base
        self.state = CameraState(clock_offset_s=self.config.clock_offset_s)
        self.faults = Faults()
        self._services = Services(self.config, self.state, lambda: self.base_url)
        self._digest = DigestVerifier()
        self._runner: web.AppRunner | None = None
        self._port = self.config.port

    @property
    def on_keyframe(self) -> Callable[[str], None] | None:
        """Called with the profile token when a client asks for a keyframe (e.g. ``lambda _: rtsp.keyframe()``)."""
        return self._services.on_keyframe

    @on_keyframe.setter
    def on_keyframe(self, callback: Callable[[str], None] | None) -> None:
        self._services.on_keyframe = callback

    # Lifecycle --------------------------------------------------------------------------------------------------
    async def start(self) -> None:
        """Listen on ``config.host:config.port`` (port 0 → a free one)."""
        app = web.Application(client_max_size=256 * 1024)
        app.router.add_post("/onvif/subscription/{ident}", self._soap)
        app.router.add_post("/onvif/{service}", self._soap)
        app.router.add_get(SNAPSHOT_PATH, self._snapshot)
        app.router.add_get("/control/state", self._control_state)
        app.router.add_post("/control/faults", self._control_faults)
        app.router.add_post("/control/event", self._control_event)
        app.router.add_post("/control/clock", self._control_clock)
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False, shutdown_timeout=1.0)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.config.host, self.config.port)
        await site.start()
        server = site._server
        sockets = getattr(server, "sockets", None) or []
        if sockets:
            self._port = int(sockets[0].getsockname()[1])
        log.info("onvif_simulator.started", address=self.address)

    async def stop(self) -> None:
        """Stop listening (idempotent); pending long-polls end."""
        self.state.forget_subscriptions()
        if self._runner is not None:
            runner, self._runner = self._runner, None
            await runner.cleanup()
            log.info("onvif_simulator.stopped", port=self._port)

    async def __aenter__(self) -> OnvifSimulator:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # Addresses --------------------------------------------------------------------------------------------------
    @property
    def port(self) -> int:
        """The TCP port it listens on."""
        return self._port

    @property
    def base_url(self) -> str:
        """``http://host:port`` as advertised in XAddrs."""
        return f"http://{self.config.advertise_host or self.config.host}:{self._port}"

    @property
    def address(self) -> str:
        """The device service URL."""
        return f"{self.base_url}/onvif/device_service"

    # Control ----------------------------------------------------------------------------------------------------
    def set_faults(self, **changes: Any) -> Faults:
        """Switch misbehaviour on or off (fields of :class:`Faults`); returns the faults now in force."""
        faults = Faults.model_validate({**self.faults.model_dump(), **changes})
        if faults.lose_subscriptions:
            self.state.forget_subscriptions()
            faults = faults.model_copy(update={"lose_subscriptions": False})
        self.faults = faults
        log.info("onvif_simulator.faults", **faults.model_dump())
        return faults

    def trigger(self, kind: EventKind, active: bool = True) -> int:
        """Publish a motion / tamper / scene-change event; returns how many subscriptions received it."""
        return self.state.publish(kind, active, quirky=self.config.quirky_topics)

    def set_clock_offset(self, offset_s: float) -> None:
        """Set the camera clock to real UTC plus *offset_s*."""
        self.state.clock_offset_s = offset_s

    @property
    def counters(self) -> dict[str, int]:
        """Requests, ``renewals``, ``reboots``, ``time_set``, ``auth_failures``, ``op_<Operation>``, …"""
        return dict(self.state.counters)

    def snapshot_state(self) -> dict[str, Any]:
        """Counters, faults, clock, PTZ and subscriptions as JSON-ready data."""
        ptz = self.state.ptz
        moving = ptz.moving
        return {
            "counters": self.counters,
            "faults": self.faults.model_dump(),
            "clock_offset_s": self.state.clock_offset_s,
            "ptz": {"pan": ptz.pan, "tilt": ptz.tilt, "zoom": ptz.zoom, "moving": moving},
            "presets": {token: name for token, (name, *_rest) in ptz.presets.items()},
            "subscriptions": len(self.state.subscriptions),
        }

    # HTTP handlers ----------------------------------------------------------------------------------------------
    async def _soap(self, request: web.Request) -> web.StreamResponse:
        data = await request.read()
        self.state.counters["requests"] += 1
        faults = self.faults
        if faults.delay_s:
            await asyncio.sleep(faults.delay_s)
        if faults.reply == "malformed":
            return web.Response(body=MALFORMED, content_type="application/soap+xml", charset="utf-8")
        if faults.reply == "entity_bomb":
            return web.Response(body=ENTITY_BOMB, content_type="application/soap+xml", charset="utf-8")
        if faults.reply == "huge":
            return await self._endless(request)
        try:
            req = parse_request(data)
            if self.config.auth_required and req.operation not in UNAUTHENTICATED:
                try:
                    check_username_token(
                        req.header,
                        self.config.username,
                        self.config.password.get_secret_value(),
                        self.state.now(),
                        self.config.max_auth_skew_s,
                    )
                except SoapFault as err:
                    self.state.counters["auth_failures"] += 1
                    err.status = faults.auth_status
                    raise
            reply = await self._services.handle(req.operation, req.body, request.path)
            return web.Response(body=envelope(reply), headers={"Content-Type": CONTENT_TYPE})
        except SoapFault as err:
            return web.Response(body=fault(err), status=err.status, headers={"Content-Type": CONTENT_TYPE})
        except Exception:
            log.exception("onvif_simulator.error", path=request.path)
            internal = SoapFault("internal error", code="s:Receiver", subcode="ter:Action", status=500)
            return web.Response(body=fault(internal), status=500, headers={"Content-Type": CONTENT_TYPE})

    async def _endless(self, request: web.Request) -> web.StreamResponse:
        """A chunked reply of ~1 GB of whitespace-padded XML (stops when the client goes away)."""
        resp = web.StreamResponse(headers={"Content-Type": CONTENT_TYPE})
        resp.enable_chunked_encoding()
        await resp.prepare(request)
        chunk = b"<x>" + b" " * 65_530 + b"</x>"
        try:
            await resp.write(
                b'<?xml version="1.0"?><s:Envelope xmlns:s="http://www.w3.org/2003/05/soap-envelope"><s:Body>'
            )
            for _ in range(16_384):
                await resp.write(chunk)
        except (ConnectionError, RuntimeError):  # the client gave up: what it should do
            pass
        return resp

    async def _snapshot(self, request: web.Request) -> web.Response:
        self.state.counters["snapshots_requested"] += 1
        if self.faults.delay_s:
            await asyncio.sleep(self.faults.delay_s)
        if self.config.auth_required and not self._digest.verify(
            request.headers.get("Authorization"),
            request.method,
            self.config.username,
            self.config.password.get_secret_value(),
        ):
            return web.Response(status=401, headers={"WWW-Authenticate": self._digest.challenge()})
        ptz = self.state.ptz
        ptz.settle()
        label = f"{self.config.manufacturer} {self.config.model}"
        jpeg = await asyncio.to_thread(
            render_jpeg, self.config.snapshot_size, self.state.now(), (ptz.pan, ptz.tilt, ptz.zoom), label
        )
        self.state.counters["snapshots_served"] += 1
        return web.Response(body=jpeg, content_type="image/jpeg")

    async def _control_state(self, request: web.Request) -> web.Response:
        return web.json_response(self.snapshot_state())

    async def _control_faults(self, request: web.Request) -> web.Response:
        try:
            changes = await request.json()
            if not isinstance(changes, dict):
                raise TypeError("a JSON object is required")
            faults = self.set_faults(**changes)
        except (ValueError, TypeError, ValidationError) as exc:
            return web.json_response({"error": str(exc)}, status=400)
        return web.json_response(faults.model_dump())

    async def _control_event(self, request: web.Request) -> web.Response:
        try:
            req = _EventRequest.model_validate(await request.json())
        except (ValueError, ValidationError) as exc:
            return web.json_response({"error": str(exc)}, status=400)
        return web.json_response({"delivered_to": self.trigger(req.kind, req.active)})

    async def _control_clock(self, request: web.Request) -> web.Response:
        try:
            req = _ClockRequest.model_validate(await request.json())
        except (ValueError, ValidationError) as exc:
            return web.json_response({"error": str(exc)}, status=400)
        self.set_clock_offset(req.offset_s)
        return web.json_response({"clock_offset_s": req.offset_s})
