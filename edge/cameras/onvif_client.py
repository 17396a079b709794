"""ONVIF camera client over onvif-zeep-async: description, snapshot, PTZ, reboot, time sync, PullPoint events.

onvif-zeep-async is the maintained asyncio successor of onvif-zeep (same ``onvif`` module; never install both).
Every call is bounded by a timeout and every failure surfaces as :class:`OnvifError` with a reason code; replies
are parsed with DTDs, entities and huge trees refused; credentials never reach logs, reprs or exceptions.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass, field
from typing import Any, TypeVar
from urllib.parse import urlsplit

import aiohttp
import structlog
from onvif import ONVIFCamera  # type: ignore[import-untyped]
from onvif.client import _WSDL_PATH, _cached_document  # type: ignore[import-untyped]
from onvif.definition import SERVICES  # type: ignore[import-untyped]
from onvif.util import normalize_url, strip_user_pass_url  # type: ignore[import-untyped]
from zeep.settings import Settings

from edge.cameras.onvif_errors import OnvifError, ReplyTooLarge, classify
from edge.cameras.onvif_events import CameraEvent, PullPointEvents
from varta.aio import wait_for
from varta.contract import CameraProfile, CameraReason, PtzPreset
from varta.sealing import Credentials

__all__ = [
    "CameraDescription",
    "CameraEvent",
    "OnvifCamera",
    "OnvifError",
    "PtzStatus",
    "PullPointEvents",
    "preload_wsdls",
]

log = structlog.get_logger(__name__)
T = TypeVar("T")

# The library logs whole SOAP requests (with the WS-Security header) at DEBUG: keep them out of any log.
for _name in ("onvif.zeep_aiohttp", "zeep.transports"):
    logging.getLogger(_name).setLevel(logging.INFO)

#: Parsing of camera replies: no DTDs (billion laughs), no entities, no external references, no huge trees.
SAFE_XML = Settings(strict=False, xml_huge_tree=False, forbid_dtd=True, forbid_entities=True, forbid_external=True)
_EVENTS_NS = SERVICES["events"]["ns"]
_PTZ_NS = SERVICES["ptz"]["ns"]
_PULLPOINT_KEY = f"{_EVENTS_NS}/PullPointSubscription"
_CAPABILITY_SERVICES = {
    "Device": "devicemgmt",
    "Media": "media",
    "PTZ": "ptz",
    "Events": "events",
    "Imaging": "imaging",
}
_MAX_SNAPSHOT_BYTES = 8 * 1024 * 1024
MAX_REPLY_BYTES = 2 * 1024 * 1024  # the largest SOAP reply accepted (a GetProfiles of 32 profiles is ~100 kB)
_SETUP_S = 120.0  # creating a service client (WSDL parsing in a thread, no network)
_SKEW_TOLERANCE_S = 5.0  # UsernameToken windows are minutes wide; re-measure only after a real jump


async def preload_wsdls() -> float:
    """Parse the Device, Media, PTZ and Events WSDLs now (in a thread), not on the first camera call; seconds taken.

    Parsing happens once per process: ~1.3 s of CPU on x86, several seconds on a Raspberry Pi.
    """
    started = time.monotonic()
    for name in ("devicemgmt", "media", "ptz", "events"):
        await _cached_document(f"{_WSDL_PATH}/{SERVICES[name]['wsdl']}")
    return time.monotonic() - started


@dataclass(frozen=True)
class CameraDescription:
    """What a camera says about itself (no credentials anywhere)."""

    manufacturer: str = ""
    model: str = ""
    firmware: str = ""
    serial: str = ""
    hardware_id: str = ""
    profiles: list[CameraProfile] = field(default_factory=list)
    main_profile: str | None = None
    sub_profile: str | None = None
    stream_uri: str = ""
    sub_stream_uri: str = ""
    snapshot_uri: str = ""
    ptz: bool = False
    presets: list[PtzPreset] = field(default_factory=list)
    events: bool = False
    clock_skew_s: float | None = None

    def info_fields(self) -> dict[str, Any]:
        """The fields :class:`varta.contract.CameraInfo` shares with this description."""
        fields = asdict(self)
        fields.pop("sub_stream_uri")
        fields["profiles"] = list(self.profiles)
        fields["presets"] = list(self.presets)
        return fields


@dataclass(frozen=True)
class PtzStatus:
    """Where the PTZ head is (ONVIF generic spaces) and whether it moves."""

    pan: float | None
    tilt: float | None
    zoom: float | None
    moving: bool


def parse_address(address: str) -> tuple[str, str, int]:
    """Device service URL, host and port from ``http(s)://host:port/path`` or ``host[:port]``; ValueError if bad."""
    text = address.strip()
    if "://" not in text:
        text = f"http://{text}"
    parts = urlsplit(text)
    if parts.scheme not in {"http", "https"} or not parts.hostname:
        raise ValueError("an ONVIF address is http(s)://host[:port][/path] or host[:port]")
    if parts.username or parts.password:
        raise ValueError("credentials do not belong in the ONVIF address")
    port = parts.port or (443 if parts.scheme == "https" else 80)
    path = parts.path if parts.path not in {"", "/"} else "/onvif/device_service"
    return f"{parts.scheme}://{parts.netloc}{path}", parts.hostname, port


class _Device(ONVIFCamera):  # type: ignore[misc]
    """onvif-zeep-async's camera with our device URL and hardened XML parsing on every service."""

    def __init__(self, device_url: str, host: str, port: int, user: str | None, passwd: str | None) -> None:
        super().__init__(host, port, user, passwd, adjust_time=False)
        self.device_url = device_url

    def get_definition(self, name: str, port_type: str | None = None) -> tuple[str, str, str]:
        xaddr, wsdl, binding = super().get_definition(name, port_type)
        return (self.device_url if name == "devicemgmt" else xaddr), wsdl, binding

    async def create_onvif_service(self, name: str, port_type: str | None = None, **kwargs: Any) -> Any:
        service = await super().create_onvif_service(name, port_type, **kwargs)
        for client in (service.zeep_client, service.zeep_client_authless):
            client.settings = SAFE_XML
        _limit_replies(service.transport, MAX_REPLY_BYTES)
        return service

    def apply_skew(self, skew: dt.timedelta | None) -> None:
        """Sign WS-Security timestamps with the camera's clock (existing and future services)."""
        self.dt_diff = skew
        for service in self.services.values():
            if service.zeep_client is not None and service.zeep_client.wsse is not None:
                service.zeep_client.wsse.dt_diff = skew
            service.dt_diff = skew


class OnvifCamera:
    """One ONVIF camera. Cheap to create; connects on first use; ``close()`` (or ``async with``) when done."""

    def __init__(self, address: str, credentials: Credentials | None, *, timeout_s: float = 5.0) -> None:
        self.address, self._host, self._port = parse_address(address)
        self._credentials = credentials
        self.timeout_s = timeout_s
        self._device: _Device | None = None
        self._lock = asyncio.Lock()
        self._http: aiohttp.ClientSession | None = None
        self._description: CameraDescription | None = None
        self._ptz_profile: str | None = None
        self._skew: float | None = None

    def __repr__(self) -> str:
        return f"OnvifCamera({self.address!r})"

    @property
    def uid(self) -> str:
        """``host:port``: for logs and event ids."""
        return f"{self._host}:{self._port}"

    @property
    def description(self) -> CameraDescription | None:
        """The last :meth:`describe` result."""
        return self._description

    async def __aenter__(self) -> OnvifCamera:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # Plumbing ---------------------------------------------------------------------------------------------------
    def _scrub(self, text: str) -> str:
        if self._credentials is not None:
            for secret in (self._credentials.password.get_secret_value(), self._credentials.username):
                if len(secret) >= 3:
                    text = text.replace(secret, "***")
        return text

    async def call(self, action: str, func: Callable[[], Awaitable[T]], timeout_s: float | None = None) -> T:
        """Run one ONVIF call within *timeout_s* (default: the camera's); failures as :class:`OnvifError`.

        A refused login is retried once if the camera's clock has jumped since we measured it (a camera without a
        real-time clock forgets the time when it reboots): the skew is measured again and the digest re-signed.
        """
        try:
            return await self._bounded(action, func, timeout_s)
        except OnvifError as err:
            if err.reason is not CameraReason.AUTH_FAILED or not await self._skew_changed():
                raise
        return await self._bounded(action, func, timeout_s)

    async def _bounded(self, action: str, func: Callable[[], Awaitable[T]], timeout_s: float | None = None) -> T:
        try:
            return await wait_for(func(), timeout_s or self.timeout_s)
        except Exception as exc:  # everything a camera does becomes a reason code
            err = classify(exc, action)
            raise OnvifError(err.reason, self._scrub(err.detail), soap_fault=err.soap_fault) from None

    async def _skew_changed(self) -> bool:
        """Measure the clock again; True (and re-signed) if it moved by more than the tolerance since last time."""
        device = self._device
        if device is None or self._credentials is None:
            return False
        try:
            skew = await self._measure_skew(device)
        except OnvifError:
            return False
        if skew is None or (self._skew is not None and abs(skew - self._skew) < _SKEW_TOLERANCE_S):
            return False
        log.info("onvif.clock_jumped", camera=self.uid, previous_skew_s=self._skew, skew_s=skew)
        self._skew = skew
        device.apply_skew(dt.timedelta(seconds=skew))
        return True

    async def _service(self, name: str, port_type: str | None = None) -> Any:
        device = await self._connect()
        # No network here, but the first use in a process parses the WSDLs (~1.3 s on x86, several s on a Pi).
        return await self._bounded(f"connect {name}", lambda: device.create_onvif_service(name, port_type), _SETUP_S)

    async def _connect(self, *, refresh: bool = False) -> _Device:
        async with self._lock:
            if self._device is not None and not refresh:
                return self._device
            if self._device is None:
                user = self._credentials.username if self._credentials else None
                passwd = self._credentials.password.get_secret_value() if self._credentials else None
                self._device = _Device(self.address, self._host, self._port, user, passwd)
            device = self._device
            device.apply_skew(None)
            self._skew = await self._measure_skew(device)
            device.apply_skew(None if self._skew is None else dt.timedelta(seconds=self._skew))
            device.xaddrs = await self._xaddrs(device)
            return device

    async def _measure_skew(self, device: _Device) -> float | None:
        """Camera clock minus ours, from GetSystemDateAndTime (unauthenticated first, as ONVIF allows)."""
        dm = await self._bounded("connect", device.create_devicemgmt_service, _SETUP_S)
        started = time.time()
        try:
            reply = await self._bounded("GetSystemDateAndTime", dm.authless_GetSystemDateAndTime)
        except OnvifError as err:
            if not err.soap_fault:  # the camera wants credentials even for its clock: ask again, signed
                raise
            started = time.time()
            reply = await self._bounded("GetSystemDateAndTime", dm.GetSystemDateAndTime)
        ended = time.time()
        utc = getattr(reply, "UTCDateTime", None)
        if utc is None:
            raise OnvifError(CameraReason.ONVIF_ERROR, "GetSystemDateAndTime: no UTC time in the reply")
        try:
            camera = dt.datetime(
                utc.Date.Year,
                utc.Date.Month,
                utc.Date.Day,
                utc.Time.Hour,
                utc.Time.Minute,
                utc.Time.Second,
                tzinfo=dt.UTC,
            )
        except (AttributeError, TypeError, ValueError):
            raise OnvifError(CameraReason.ONVIF_ERROR, "GetSystemDateAndTime: unreadable UTC time") from None
        # The camera reports whole seconds: its true time lies in [t, t + 1).
        return round(camera.timestamp() + 0.5 - (started + ended) / 2, 1)

    async def _xaddrs(self, device: _Device) -> dict[str, str]:
        """Service addresses from GetServices merged with GetCapabilities (some list PTZ only in one)."""
        dm = await self._bounded("connect", device.create_devicemgmt_service, _SETUP_S)
        xaddrs: dict[str, str] = {}
        try:
            services = await self.call("GetServices", lambda: dm.GetServices({"IncludeCapability": False}))
            for service in services or []:
                namespace, xaddr = getattr(service, "Namespace", None), getattr(service, "XAddr", None)
                if namespace and xaddr:
                    xaddrs[str(namespace)] = str(normalize_url(str(xaddr)))
        except OnvifError as err:
            if err.reason != CameraReason.ONVIF_ERROR:
                raise
            log.info("onvif.getservices_failed", camera=self.uid, detail=err.detail)
        try:
            caps = await self.call("GetCapabilities", lambda: dm.GetCapabilities({"Category": "All"}))
            for category, service_name in _CAPABILITY_SERVICES.items():
                xaddr = getattr(getattr(caps, category, None), "XAddr", None)
                if xaddr:
                    xaddrs.setdefault(SERVICES[service_name]["ns"], str(normalize_url(str(xaddr))))
        except OnvifError as err:
            if err.reason != CameraReason.ONVIF_ERROR or not xaddrs:
                raise
            log.info("onvif.getcapabilities_failed", camera=self.uid, detail=err.detail)
        return xaddrs

    async def events_services(self, subscription_address: str | None) -> Any:
        """The events service (no address), or (subscription manager, pull point) services at an address."""
        if subscription_address is None:
            return await self._service("events")
        device = await self._connect()
        device.xaddrs[_PULLPOINT_KEY] = str(normalize_url(subscription_address))
        manager = await self._service("subscription", "PullPointSubscription")
        pullpoint = await self._service("pullpoint", "PullPointSubscription")
        return manager, pullpoint

    # Description ------------------------------------------------------------------------------------------------
    async def describe(self) -> CameraDescription:
        """Device information, merged capabilities, profiles (main/sub H.264), URIs, PTZ presets, clock skew."""
        device = await self._connect(refresh=True)
        dm = await self._service("devicemgmt")
        info = await self.call("GetDeviceInformation", dm.GetDeviceInformation)
        media = await self._service("media")
        raw_profiles = await self.call("GetProfiles", media.GetProfiles) or []
        profiles = [p for p in (_profile(raw) for raw in list(raw_profiles)[:32]) if p is not None]
        main, sub = _choose(profiles)
        profiles = [p.model_copy(update={"role": _role(p.token, main, sub)}) for p in profiles]
        stream_uri = await self._stream_uri(media, main) if main else ""
        sub_uri = await self._stream_uri(media, sub) if sub and sub != main else stream_uri
        snapshot_uri = ""
        if main:
            try:
                reply = await self.call("GetSnapshotUri", lambda: media.GetSnapshotUri({"ProfileToken": main}))
                snapshot_uri = str(normalize_url(str(reply.Uri))) if getattr(reply, "Uri", None) else ""
            except OnvifError as err:
                if err.reason != CameraReason.ONVIF_ERROR:
                    raise
        ptz = _PTZ_NS in device.xaddrs
        ptz_tokens = [str(raw.token) for raw in raw_profiles if getattr(raw, "PTZConfiguration", None) is not None]
        self._ptz_profile = main if main in ptz_tokens or not ptz_tokens else ptz_tokens[0]
        presets: list[PtzPreset] = []
        if ptz and self._ptz_profile:
            try:
                presets = await self.presets()
            except OnvifError as err:
                if err.reason != CameraReason.ONVIF_ERROR:
                    raise
                log.info("onvif.presets_unreadable", camera=self.uid, detail=err.detail)
        self._description = CameraDescription(
            manufacturer=_text(getattr(info, "Manufacturer", "")),
            model=_text(getattr(info, "Model", "")),
            firmware=_text(getattr(info, "FirmwareVersion", "")),
            serial=_text(getattr(info, "SerialNumber", "")),
            hardware_id=_text(getattr(info, "HardwareId", "")),
            profiles=profiles,
            main_profile=main,
            sub_profile=sub,
            stream_uri=stream_uri,
            sub_stream_uri=sub_uri,
            snapshot_uri=snapshot_uri[:500],
            ptz=ptz,
            presets=presets,
            events=_EVENTS_NS in device.xaddrs,
            clock_skew_s=self._skew,
        )
        log.info("onvif.described", camera=self.uid, model=self._description.model, profiles=len(profiles), ptz=ptz)
        return self._description

    async def _stream_uri(self, media: Any, token: str | None) -> str:
        setup = {"Stream": "RTP-Unicast", "Transport": {"Protocol": "RTSP"}}
        reply = await self.call(
            "GetStreamUri", lambda: media.GetStreamUri({"StreamSetup": setup, "ProfileToken": token})
        )
        uri = getattr(reply, "Uri", None)
        return str(strip_user_pass_url(str(uri)))[:500] if uri else ""

    async def request_keyframe(self, profile_token: str) -> None:
        """Ask the camera for a keyframe on *profile_token*'s stream now (Media ``SetSynchronizationPoint``)."""
        media = await self._service("media")
        await self.call(
            "SetSynchronizationPoint", lambda: media.SetSynchronizationPoint({"ProfileToken": profile_token})
        )

    async def clock_skew(self) -> float | None:
        """Measure the camera clock minus ours now (seconds)."""
        device = await self._connect()
        self._skew = await self._measure_skew(device)
        device.apply_skew(None if self._skew is None else dt.timedelta(seconds=self._skew))
        return self._skew

    # Snapshot ---------------------------------------------------------------------------------------------------
    async def snapshot(self, *, max_bytes: int = _MAX_SNAPSHOT_BYTES) -> bytes:
        """A JPEG from the camera's snapshot URI (HTTP digest, or basic when the camera asks for it)."""
        description = self._description or await self.describe()
        if not description.snapshot_uri:
            raise OnvifError(CameraReason.ONVIF_ERROR, "snapshot: the camera offers no snapshot URI")
        return await self.call("snapshot", lambda: self._fetch(description.snapshot_uri, max_bytes))

    async def _fetch(self, uri: str, max_bytes: int) -> bytes:
        if self._http is None:
            self._http = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=None))
        creds = self._credentials
        middlewares: tuple[aiohttp.DigestAuthMiddleware, ...] = ()
        if creds is not None:
            middlewares = (aiohttp.DigestAuthMiddleware(creds.username, creds.password.get_secret_value()),)
        async with self._http.get(uri, middlewares=middlewares) as resp:
            challenge = resp.headers.get("WWW-Authenticate", "")
            if resp.status == 401 and creds is not None and challenge.lower().startswith("basic"):
                basic = aiohttp.BasicAuth(creds.username, creds.password.get_secret_value())
                async with self._http.get(uri, auth=basic) as retry:
                    return await _read_jpeg(retry, max_bytes)
            return await _read_jpeg(resp, max_bytes)

    # PTZ --------------------------------------------------------------------------------------------------------
    async def _ptz(self) -> tuple[Any, str]:
        description = self._description or await self.describe()
        if not description.ptz or not self._ptz_profile:
            raise OnvifError(CameraReason.ONVIF_ERROR, "PTZ: the camera has no PTZ service")
        return await self._service("ptz"), self._ptz_profile

    async def ptz_move(self, pan: float, tilt: float, zoom: float, timeout_s: float) -> None:
        """Continuous move at the given velocities ([-1, 1]) until :meth:`ptz_stop` or *timeout_s*."""
        for value in (pan, tilt, zoom):
            if not -1.0 <= value <= 1.0:
                raise ValueError("PTZ velocities lie in [-1, 1]")
        ptz, token = await self._ptz()
        request = {
            "ProfileToken": token,
            "Velocity": {"PanTilt": {"x": pan, "y": tilt}, "Zoom": {"x": zoom}},
            "Timeout": dt.timedelta(seconds=max(0.1, timeout_s)),
        }
        await self.call("ContinuousMove", lambda: ptz.ContinuousMove(request))

    async def ptz_stop(self) -> None:
        """Stop pan, tilt and zoom."""
        ptz, token = await self._ptz()
        await self.call("Stop", lambda: ptz.Stop({"ProfileToken": token, "PanTilt": True, "Zoom": True}))

    async def ptz_status(self) -> PtzStatus:
        """Position and movement."""
        ptz, token = await self._ptz()
        reply = await self.call("GetStatus", lambda: ptz.GetStatus({"ProfileToken": token}))
        position = getattr(reply, "Position", None)
        pan_tilt = getattr(position, "PanTilt", None)
        zoom = getattr(position, "Zoom", None)
        moves = getattr(reply, "MoveStatus", None)
        moving = any(str(getattr(moves, axis, "")).upper() == "MOVING" for axis in ("PanTilt", "Zoom"))
        return PtzStatus(
            pan=_float(getattr(pan_tilt, "x", None)),
            tilt=_float(getattr(pan_tilt, "y", None)),
            zoom=_float(getattr(zoom, "x", None)),
            moving=moving,
        )

    async def presets(self) -> list[PtzPreset]:
        """The camera's PTZ presets."""
        ptz, token = await self._service("ptz"), self._ptz_profile
        reply = await self.call("GetPresets", lambda: ptz.GetPresets({"ProfileToken": token})) or []
        presets = []
        for raw in list(reply)[:64]:
            preset_token = _text(getattr(raw, "token", ""))
            if preset_token and len(preset_token) <= 64:
                presets.append(PtzPreset(token=preset_token, name=_text(getattr(raw, "Name", ""))[:100]))
        return presets

    async def goto_preset(self, token: str) -> None:
        """Move to preset *token*."""
        ptz, profile = await self._ptz()
        await self.call("GotoPreset", lambda: ptz.GotoPreset({"ProfileToken": profile, "PresetToken": token}))

    async def set_preset(self, name: str) -> str:
        """Save the current position as a preset called *name*; returns its token."""
        ptz, profile = await self._ptz()
        reply = await self.call("SetPreset", lambda: ptz.SetPreset({"ProfileToken": profile, "PresetName": name}))
        token = _text(getattr(reply, "PresetToken", reply))
        if not token:
            raise OnvifError(CameraReason.ONVIF_ERROR, "SetPreset: no preset token in the reply")
        return token

    # Maintenance ------------------------------------------------------------------------------------------------
    async def reboot(self) -> str:
        """Ask the camera to reboot; returns its message."""
        dm = await self._service("devicemgmt")
        reply = await self.call("SystemReboot", dm.SystemReboot)
        log.info("onvif.reboot", camera=self.uid)
        return _text(getattr(reply, "Message", reply))

    async def sync_time(self) -> None:
        """Set the camera's clock (manual, UTC) to our time now, then sign with the new clock."""
        dm = await self._service("devicemgmt")
        now = dt.datetime.now(dt.UTC)
        request = {
            "DateTimeType": "Manual",
            "DaylightSavings": False,
            "UTCDateTime": {
                "Date": {"Year": now.year, "Month": now.month, "Day": now.day},
                "Time": {"Hour": now.hour, "Minute": now.minute, "Second": now.second},
            },
        }
        await self.call("SetSystemDateAndTime", lambda: dm.SetSystemDateAndTime(request))
        log.info("onvif.time_synced", camera=self.uid, previous_skew_s=self._skew)
        await self.clock_skew()

    # Events -----------------------------------------------------------------------------------------------------
    def events(self, *, lifetime_s: float = 60.0, pull_timeout_s: float = 5.0) -> PullPointEvents:
        """A PullPoint subscription (``async with cam.events() as events: async for event in events``)."""
        return PullPointEvents(self, lifetime_s=lifetime_s, pull_timeout_s=pull_timeout_s)

    async def close(self) -> None:
        """Release connections."""
        if self._http is not None:
            http, self._http = self._http, None
            await http.close()
        if self._device is not None:
            device, self._device = self._device, None
            try:
                await device.close()
            except Exception as exc:
                log.debug("onvif.close_failed", camera=self.uid, error=type(exc).__name__)


def _limit_replies(transport: Any, limit: int) -> None:
    """Make an onvif-zeep-async transport read at most *limit* bytes of any reply (instead of all of it)."""
    session: aiohttp.ClientSession = transport.session

    async def post_internal(
        address: str, message: str | bytes, headers: dict[str, str]
    ) -> tuple[aiohttp.ClientResponse, bytes]:
        headers = {"Content-Type": 'text/xml; charset="utf-8"', **(headers or {})}
        data = message.encode("utf-8") if isinstance(message, str) else message
        response = await session.post(address, data=data, headers=headers, timeout=transport._client_timeout)
        try:
            if (response.content_length or 0) > limit:
                raise ReplyTooLarge(f"reply of {response.content_length} bytes refused (limit {limit})")
            body = bytearray()
            async for chunk in response.content.iter_chunked(65536):
                body.extend(chunk)
                if len(body) > limit:
                    raise ReplyTooLarge(f"reply larger than {limit} bytes refused")
        except BaseException:
            response.close()
            raise
        response.release()
        return response, bytes(body)

    transport._post_internal = post_internal


async def _read_jpeg(resp: aiohttp.ClientResponse, max_bytes: int) -> bytes:
    if resp.status in (401, 403):
        raise OnvifError(CameraReason.AUTH_FAILED, f"snapshot: HTTP {resp.status}")
    if resp.status != 200:
        raise OnvifError(CameraReason.ONVIF_ERROR, f"snapshot: HTTP {resp.status}")
    body = bytearray()
    async for chunk in resp.content.iter_chunked(65536):
        body.extend(chunk)
        if len(body) > max_bytes:
            raise OnvifError(CameraReason.ONVIF_ERROR, f"snapshot: larger than {max_bytes} bytes")
    if not body.startswith(b"\xff\xd8"):
        raise OnvifError(CameraReason.ONVIF_ERROR, "snapshot: not a JPEG")
    return bytes(body)


def _text(value: Any) -> str:
    return "" if value is None else str(value).strip()[:100]


def _float(value: Any) -> float | None:
    try:
        return None if value is None else float(value)
    except (TypeError, ValueError):
        return None


def _profile(raw: Any) -> CameraProfile | None:
    token = _text(getattr(raw, "token", ""))
    if not token or len(token) > 64:
        return None
    encoder = getattr(raw, "VideoEncoderConfiguration", None)
    resolution = getattr(encoder, "Resolution", None)
    rate = getattr(encoder, "RateControl", None)
    width, height = getattr(resolution, "Width", None), getattr(resolution, "Height", None)
    fps = _float(getattr(rate, "FrameRateLimit", None))
    return CameraProfile(
        token=token,
        name=_text(getattr(raw, "Name", "")),
        encoding=_text(getattr(encoder, "Encoding", ""))[:16],
        width=width if isinstance(width, int) and 0 <= width <= 16_384 else None,
        height=height if isinstance(height, int) and 0 <= height <= 16_384 else None,
        fps=fps if fps is not None and 0 <= fps <= 1000 else None,
    )


def _choose(profiles: list[CameraProfile]) -> tuple[str | None, str | None]:
    """Main: the highest-resolution H.264 profile; sub: the lowest (the main one if there is only one)."""
    h264 = [p for p in profiles if p.encoding.upper() in {"H264", "H.264"}]
    candidates = h264 or [p for p in profiles if p.width and p.height]
    if not candidates:
        return None, None
    ranked = sorted(candidates, key=lambda p: (p.width or 0) * (p.height or 0))
    return ranked[-1].token, ranked[0].token


def _role(token: str, main: str | None, sub: str | None) -> str | None:
    if token == main:
        return "main"
    return "sub" if token == sub else None
