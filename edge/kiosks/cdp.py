"""Screenshots and page queries of the kiosk's Chromium through the Chrome DevTools Protocol (CDP).

The kiosk browser runs with ``--remote-debugging-port=9222 --remote-debugging-address=127.0.0.1``. That port gives
full control of the browser (read every page, run any script, open ``file://`` URLs) without any authentication,
so it must never be reachable from the network: Chromium must bind it to loopback only, and :class:`CdpClient`
refuses any host that is not a loopback address. It also never follows the host named in ``webSocketDebuggerUrl``:
only the path is taken, the websocket goes to the client's own loopback host and port.

A screenshot is the compositor's rendering of the page's viewport (what the page shows, at device pixels), not a
grab of the physical framebuffer: a window drawn over Chromium by something else would not appear in it.

Every call opens its own short-lived HTTP session and websocket (simple, and nothing to recover after a browser
restart), is bounded by ``timeout_s`` as a whole, and fails only with :class:`CdpError`.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import ipaddress
import itertools
import struct
from collections.abc import Coroutine
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, Literal, TypeVar
from urllib.parse import quote, urlsplit

import aiohttp
import orjson
import structlog
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

log = structlog.get_logger(__name__)
_T = TypeVar("_T")

DEFAULT_MAX_MESSAGE_BYTES = 20 * 1024 * 1024  # one websocket message (a screenshot is base64 in JSON)
MAX_LIST_BYTES = 1024 * 1024  # the /json/list answer
_MAX_DETAIL = 300
_PARSE_IN_THREAD_BYTES = 256 * 1024  # bigger JSON messages are parsed off the event loop
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# JPEG start-of-frame markers (they carry the dimensions); C4 (DHT), C8 (JPG) and CC (DAC) are not frames.
_JPEG_SOF = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}


class CdpReason(StrEnum):
    """Why a CDP call failed."""

    UNREACHABLE = "unreachable"  # nothing listens, the connection broke, or the websocket closed before the reply
    TIMEOUT = "timeout"  # the call did not complete within timeout_s
    NO_PAGE = "no_page"  # no (matching) page target, or the target is gone
    PROTOCOL = "protocol"  # an answer that is not what CDP promises, a CDP error response, or a script exception
    TOO_LARGE = "too_large"  # an answer bigger than we accept (memory stays bounded)


class CdpError(Exception):
    """A failed CDP call: a reason code and a short detail."""

    def __init__(self, reason: CdpReason, detail: str) -> None:
        self.reason = reason
        self.detail = detail[:_MAX_DETAIL]
        super().__init__(f"{reason.value}: {self.detail}")


class CdpTarget(BaseModel):
    """One entry of ``/json/list`` (a page, a worker, a piece of browser UI...); unknown fields are ignored."""

    model_config = ConfigDict(extra="ignore", frozen=True, populate_by_name=True)

    id: str = Field(min_length=1, max_length=200)
    type: str = Field(max_length=100)
    url: str = Field(max_length=10_000)
    title: str = Field(max_length=10_000)
    web_socket_debugger_url: str | None = Field(default=None, alias="webSocketDebuggerUrl", max_length=10_000)


_TARGETS = TypeAdapter(list[CdpTarget])


@dataclass(frozen=True, slots=True)
class Screenshot:
    """What the page showed: the encoded image, its sha256 (hex), pixel size, when, and the page's URL then."""

    data: bytes
    sha256: str
    width: int
    height: int
    taken_at: datetime
    url: str
    format: Literal["png", "jpeg"] = "png"


def image_size(data: bytes) -> tuple[int, int]:
    """(width, height) of a PNG (IHDR) or baseline/progressive JPEG (SOF); ValueError for anything else."""
    if data.startswith(_PNG_SIGNATURE):
        if len(data) < 24 or data[12:16] != b"IHDR":
            raise ValueError("PNG without IHDR")
        width, height = struct.unpack(">II", data[16:24])
        return int(width), int(height)
    if data.startswith(b"\xff\xd8"):
        pos = 2
        while pos + 4 <= len(data):
            if data[pos] != 0xFF:
                raise ValueError(f"JPEG: no marker at offset {pos}")
            marker = data[pos + 1]
            if marker == 0xFF:  # fill byte
                pos += 1
                continue
            if marker == 0x01 or 0xD0 <= marker <= 0xD7:  # markers without a length
                pos += 2
                continue
            (length,) = struct.unpack(">H", data[pos + 2 : pos + 4])
            if marker in _JPEG_SOF:
                if pos + 9 > len(data):
                    break
                height, width = struct.unpack(">HH", data[pos + 5 : pos + 9])
                return int(width), int(height)
            if marker == 0xDA or length < 2:  # start of scan before any frame header, or a broken length
                break
            pos += 2 + length
        raise ValueError("JPEG without a frame header")
    raise ValueError("neither PNG nor JPEG")


def is_loopback(host: str) -> bool:
    """True for ``localhost`` and literal loopback addresses (127.0.0.0/8, ::1)."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


class CdpClient:
    """Talks CDP to the Chromium on this machine; only loopback hosts are accepted (see the module docstring)."""

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 9222,
        timeout_s: float = 5.0,
        *,
        max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
    ) -> None:
        if not is_loopback(host):
            raise ValueError(
                f"CDP host {host!r} is not a loopback address: the debugging port gives full control of the "
                "browser without authentication and must only ever be reached on 127.0.0.1 / ::1"
            )
        if not 0 < port < 65536:
            raise ValueError(f"CDP port {port} out of range")
        if timeout_s <= 0:
            raise ValueError("timeout_s must be positive")
        bare = host.strip("[]")
        self.host = host
        self.port = port
        self.timeout_s = timeout_s
        self.max_message_bytes = max_message_bytes
        self._authority = f"[{bare}]:{port}" if ":" in bare else f"{bare}:{port}"
        self._ids = itertools.count(1)

    # ---- public API ----------------------------------------------------------------------------------------------

    async def targets(self) -> list[CdpTarget]:
        """All targets Chromium lists (``GET /json/list``)."""
        return await self._bounded("targets", self._targets())

    async def page_target(self, url_prefix: str | None = None) -> CdpTarget:
        """The first ``page`` target (whose URL starts with *url_prefix*, if given); CdpError(no_page) if none."""
        for target in await self.targets():
            if target.type == "page" and (url_prefix is None or target.url.startswith(url_prefix)):
                return target
        wanted = f" with a URL starting {url_prefix!r}" if url_prefix is not None else ""
        raise CdpError(CdpReason.NO_PAGE, f"no page target{wanted}")

    async def screenshot(
        self,
        target: CdpTarget | None = None,
        *,
        format: Literal["png", "jpeg"] = "png",
        quality: int | None = None,
    ) -> Screenshot:
        """Capture what *target* (default: the first page) shows; ``quality`` (0-100) applies to JPEG only."""
        if format not in ("png", "jpeg"):
            raise ValueError(f"unsupported screenshot format {format!r}")
        if quality is not None and not 0 <= quality <= 100:
            raise ValueError("quality must be within 0..100")
        shot = await self._bounded("screenshot", self._screenshot(target, format, quality))
        log.debug("cdp.screenshot", url=shot.url, bytes=len(shot.data), width=shot.width, height=shot.height)
        return shot

    async def evaluate(self, expression: str, target: CdpTarget | None = None) -> Any:
        """The JSON value of *expression* in the page (promises awaited); a script exception is CdpError(protocol)."""
        return await self._bounded("evaluate", self._evaluate(expression, target))

    # ---- internals -----------------------------------------------------------------------------------------------

    async def _bounded(self, action: str, work: Coroutine[Any, Any, _T]) -> _T:
        """Run *work* within timeout_s and turn every failure into a CdpError."""
        try:
            async with asyncio.timeout(self.timeout_s):
                return await work
        except CdpError as err:
            _log_failure(action, err)
            raise
        except TimeoutError as exc:
            timeout = CdpError(CdpReason.TIMEOUT, f"{action}: no answer within {self.timeout_s:g} s")
            _log_failure(action, timeout)
            raise timeout from exc
        except Exception as exc:  # the contract: CdpError, never anything else
            classified = _classify(exc, action)
            _log_failure(action, classified)
            raise classified from exc

    def _session(self) -> aiohttp.ClientSession:
        # No proxies from the environment (trust_env=False): loopback only, always direct.
        return aiohttp.ClientSession(trust_env=False, timeout=aiohttp.ClientTimeout(total=None))

    async def _targets(self) -> list[CdpTarget]:
        async with self._session() as session, session.get(f"http://{self._authority}/json/list") as resp:
            if resp.status != 200:
                raise CdpError(CdpReason.PROTOCOL, f"/json/list answered HTTP {resp.status}")
            body = await resp.content.read(MAX_LIST_BYTES + 1)
        if len(body) > MAX_LIST_BYTES:
            raise CdpError(CdpReason.TOO_LARGE, f"/json/list is larger than {MAX_LIST_BYTES} bytes")
        try:
            return _TARGETS.validate_python(orjson.loads(body))
        except orjson.JSONDecodeError as exc:
            raise CdpError(CdpReason.PROTOCOL, f"/json/list is not JSON: {exc}") from exc
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first["loc"])
            raise CdpError(CdpReason.PROTOCOL, f"/json/list is not a target list: {where}: {first['msg']}") from exc

    def _ws_url(self, target: CdpTarget) -> str:
        """The target's websocket on *our* host: only the path of webSocketDebuggerUrl is used."""
        path = urlsplit(target.web_socket_debugger_url).path if target.web_socket_debugger_url else ""
        if not path.startswith("/devtools/"):
            path = f"/devtools/page/{quote(target.id, safe='')}"
        return f"ws://{self._authority}{path}"

    async def _call(self, target: CdpTarget | None, commands: list[tuple[str, dict[str, Any]]]) -> list[Any]:
        """Send *commands* on one websocket to *target* (default: the first page); their results, in order."""
        if target is None:
            target = await self.page_target()
        ids = [next(self._ids) for _ in commands]
        results: dict[int, Any] = {}
        async with self._session() as session:
            try:
                ws = await session.ws_connect(
                    self._ws_url(target), max_msg_size=self.max_message_bytes, compress=0, autoping=True
                )
            except aiohttp.WSServerHandshakeError as exc:
                if exc.status in (404, 500):  # Chromium answers 500 for an unknown target id
                    raise CdpError(CdpReason.NO_PAGE, f"target {target.id} is gone (HTTP {exc.status})") from exc
                raise
            async with ws:
                for msg_id, (method, params) in zip(ids, commands, strict=True):
                    await ws.send_str(orjson.dumps({"id": msg_id, "method": method, "params": params}).decode())
                while len(results) < len(ids):
                    reply = await self._receive(ws)
                    reply_id = reply.get("id")
                    if not isinstance(reply_id, int) or reply_id not in ids:  # an event, or someone else's answer
                        continue
                    if "error" in reply:
                        error = reply["error"]
                        text = error.get("message") if isinstance(error, dict) else error
                        method = commands[ids.index(reply_id)][0]
                        raise CdpError(CdpReason.PROTOCOL, f"{method}: CDP error: {text}")
                    if not isinstance(reply.get("result"), dict):
                        raise CdpError(CdpReason.PROTOCOL, f"reply {reply_id} has no result object")
                    results[reply_id] = reply["result"]
        return [results[msg_id] for msg_id in ids]

    async def _receive(self, ws: aiohttp.ClientWebSocketResponse) -> dict[str, Any]:
        msg = await ws.receive()
        if msg.type in (aiohttp.WSMsgType.TEXT, aiohttp.WSMsgType.BINARY):
            raw: str | bytes = msg.data
            try:
                if len(raw) > _PARSE_IN_THREAD_BYTES:
                    parsed = await asyncio.to_thread(orjson.loads, raw)
                else:
                    parsed = orjson.loads(raw)
            except orjson.JSONDecodeError as exc:
                raise CdpError(CdpReason.PROTOCOL, f"websocket message is not JSON: {exc}") from exc
            if not isinstance(parsed, dict):
                raise CdpError(CdpReason.PROTOCOL, "websocket message is not a JSON object")
            return parsed
        if msg.type is aiohttp.WSMsgType.ERROR:
            error = msg.data
            if isinstance(error, aiohttp.WebSocketError) and error.code == aiohttp.WSCloseCode.MESSAGE_TOO_BIG:
                raise CdpError(CdpReason.TOO_LARGE, f"a websocket message exceeded {self.max_message_bytes} bytes")
            raise CdpError(CdpReason.PROTOCOL, f"websocket error: {type(error).__name__}: {error}")
        # CLOSE / CLOSING / CLOSED
        raise CdpError(CdpReason.UNREACHABLE, f"the websocket closed before the reply (code {ws.close_code})")

    async def _screenshot(
        self, target: CdpTarget | None, fmt: Literal["png", "jpeg"], quality: int | None
    ) -> Screenshot:
        params: dict[str, Any] = {"format": fmt, "fromSurface": True, "captureBeyondViewport": False}
        if fmt == "jpeg" and quality is not None:
            params["quality"] = quality
        # Both commands on one socket, in order: the URL is the page's right after the capture, not a stale listing.
        shot, history = await self._call(
            target, [("Page.captureScreenshot", params), ("Page.getNavigationHistory", {})]
        )
        taken_at = datetime.now(UTC)
        encoded = shot.get("data")
        if not isinstance(encoded, str):
            raise CdpError(CdpReason.PROTOCOL, "Page.captureScreenshot: no data")
        data, sha256, width, height = await asyncio.to_thread(_decode_image, encoded)
        return Screenshot(
            data=data,
            sha256=sha256,
            width=width,
            height=height,
            taken_at=taken_at,
            url=_current_url(history),
            format=fmt,
        )

    async def _evaluate(self, expression: str, target: CdpTarget | None) -> Any:
        params = {"expression": expression, "returnByValue": True, "awaitPromise": True}
        (result,) = await self._call(target, [("Runtime.evaluate", params)])
        if "exceptionDetails" in result:
            details = result["exceptionDetails"]
            exception = details.get("exception") if isinstance(details, dict) else None
            text = exception.get("description") if isinstance(exception, dict) else None
            if not text and isinstance(details, dict):
                text = details.get("text")
            raise CdpError(CdpReason.PROTOCOL, f"Runtime.evaluate: the script threw: {text or 'an exception'}")
        remote = result.get("result")
        if not isinstance(remote, dict):
            raise CdpError(CdpReason.PROTOCOL, "Runtime.evaluate: no result object")
        return remote.get("value")  # absent for undefined


def _decode_image(encoded: str) -> tuple[bytes, str, int, int]:
    """Base64 -> bytes, sha256, dimensions (run in a thread: megabytes of work)."""
    try:
        data = base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise CdpError(CdpReason.PROTOCOL, f"screenshot data is not base64: {exc}") from exc
    try:
        width, height = image_size(data)
    except ValueError as exc:
        raise CdpError(CdpReason.PROTOCOL, f"screenshot is not a readable image: {exc}") from exc
    return data, hashlib.sha256(data).hexdigest(), width, height


def _current_url(history: dict[str, Any]) -> str:
    entries = history.get("entries")
    index = history.get("currentIndex")
    if isinstance(entries, list) and isinstance(index, int) and 0 <= index < len(entries):
        entry = entries[index]
        if isinstance(entry, dict) and isinstance(entry.get("url"), str):
            return str(entry["url"])
    raise CdpError(CdpReason.PROTOCOL, "Page.getNavigationHistory: no current entry")


def _log_failure(action: str, err: CdpError) -> None:
    log.debug("cdp.failed", action=action, reason=err.reason.value, detail=err.detail)


def _classify(exc: BaseException, action: str) -> CdpError:
    """Any exception from aiohttp/the OS while doing *action*, as a CdpError."""
    if isinstance(exc, aiohttp.WSServerHandshakeError):
        return CdpError(CdpReason.PROTOCOL, f"{action}: websocket handshake refused (HTTP {exc.status})")
    if isinstance(exc, aiohttp.ClientConnectorError | aiohttp.ServerDisconnectedError | ConnectionError | OSError):
        return CdpError(CdpReason.UNREACHABLE, f"{action}: {type(exc).__name__}: {exc}")
    if isinstance(exc, aiohttp.ClientPayloadError | aiohttp.ClientResponseError | aiohttp.InvalidURL):
        return CdpError(CdpReason.PROTOCOL, f"{action}: {type(exc).__name__}: {exc}")
    if isinstance(exc, aiohttp.ClientError):
        return CdpError(CdpReason.UNREACHABLE, f"{action}: {type(exc).__name__}: {exc}")
    return CdpError(CdpReason.PROTOCOL, f"{action}: unexpected {type(exc).__name__}: {exc}")
