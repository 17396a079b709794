"""Downloads of kiosk content over a flaky uplink: the signed manifest, then every asset it lists.

Made for 4G links with scheduled blackouts, shared with the node's MQTT telemetry:

* **Resumable.** An asset is written to ``work_dir/partial/<sha256>.part`` and continued with ``Range: bytes=<n>-``
  after a broken connection, a retry or a restart of the agent; only a checked file is moved to
  ``work_dir/done/<sha256>``. A failed download is cheap: the partial stays for the next attempt.
* **Gentle.** One token bucket per :class:`Downloader` caps all of its downloads together at
  ``max_rate_bytes_s``; the socket's receive buffer is kept small too, so the kernel does not fill seconds' worth
  of link ahead of the cap. :meth:`Downloader.fetch_all` fetches one asset at a time.
* **Checked.** Never more than the expected number of bytes is written; every file must hash to the sha256 it was
  asked for (hashed incrementally while writing, off the event loop).
* **Retried.** Connection failures, timeouts, truncated bodies, 5xx, 408 and 429 are retried with exponential
  back-off (1, 2, 4, … s, capped); an attempt that made progress resets the count, so a slow but moving download
  over a link that keeps dropping still finishes. Other 4xx and malformed answers fail at once.
* **No redirects.** Only ``http``/``https`` URLs, and no redirect is followed (a 3xx is an ``http_error``): content
  comes from exactly the host central named, never from wherever that host points.

Manifests and assets are public content protected by signatures and hashes: no credentials are sent, and proxies
from the environment are not used (pass a ``session_factory`` for that).
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import re
import socket
import threading
import time
import weakref
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from enum import StrEnum
from pathlib import Path
from typing import Any, BinaryIO, Final, TypeVar
from urllib.parse import urlsplit

import aiohttp
import structlog
from pydantic import BaseModel, ConfigDict, Field

from varta.contract import KioskContentParams
from varta.kiosk_manifest import MAX_SIGNED_MANIFEST_BYTES, verify_manifest

log = structlog.get_logger(__name__)
_T = TypeVar("_T")

_SHA256_RE: Final = re.compile(r"^[0-9a-f]{64}$")
_CONTENT_RANGE_RE: Final = re.compile(r"^bytes (\d+)-(\d+)/(\d+|\*)$")
_HASH_READ_BYTES: Final = 1024 * 1024
_MAX_DETAIL: Final = 300

ProgressCallback = Callable[[int, int], None]
"""Called with (bytes on disk, total bytes) after every chunk written."""
SessionFactory = Callable[[], aiohttp.ClientSession]


class DownloadSettings(BaseModel):
    """How content is downloaded (bandwidth, patience)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    max_rate_bytes_s: int | None = Field(
        default=2_000_000, ge=1024, description="cap for all downloads together, bytes/s (None: unlimited)"
    )
    timeout_s: float = Field(default=30.0, gt=0, le=600, description="per request: connect, and each idle read")
    retries: int = Field(default=5, ge=0, le=100, description="retries of a transient failure (without progress)")
    backoff_initial_s: float = Field(default=1.0, ge=0, le=600, description="first back-off; doubles each retry")
    backoff_max_s: float = Field(default=60.0, ge=0, le=3600, description="longest back-off")
    max_manifest_bytes: int = Field(default=MAX_SIGNED_MANIFEST_BYTES, ge=1, le=MAX_SIGNED_MANIFEST_BYTES)
    chunk_bytes: int = Field(default=64 * 1024, ge=1024, le=4 * 1024 * 1024, description="read and write size")


class DownloadReason(StrEnum):
    """Why a download failed (machine-readable; counted in :meth:`Downloader.stats`)."""

    UNREACHABLE = "unreachable"  # no connection, or it broke (also: a body that ended early), after all retries
    TIMEOUT = "timeout"  # connect or read took longer than timeout_s, after all retries
    HTTP_ERROR = "http_error"  # a 4xx, a redirect, or 5xx/408/429 after all retries
    NOT_FOUND = "not_found"  # 404 or 410
    TOO_LARGE = "too_large"  # more bytes than expected (or than max_manifest_bytes)
    HASH_MISMATCH = "hash_mismatch"  # the bytes do not hash to the sha256 asked for
    BAD_RESPONSE = "bad_response"  # an answer that is not what HTTP promises (Content-Range, length, encoding…)


class DownloadError(Exception):
    """A failed download: a reason code and a short detail."""

    def __init__(self, reason: DownloadReason, detail: str = "") -> None:
        super().__init__(f"download failed ({reason.value}): {detail}" if detail else f"download failed ({reason})")
        self.reason = reason
        self.detail = detail[:_MAX_DETAIL]


class _Transient(Exception):
    """A failure worth retrying; becomes a :class:`DownloadError` once retries are exhausted."""

    def __init__(self, reason: DownloadReason, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason
        self.detail = detail


class _TokenBucket:
    """Bytes/s cap shared by concurrent downloads: each chunk is paid for after it arrived, debt is slept off."""

    def __init__(self, rate: int | None, burst: int) -> None:
        self.rate = rate
        self.burst = float(burst)
        self._tokens = float(burst)
        self._stamp = time.monotonic()

    async def take(self, n: int) -> None:
        if self.rate is None:
            return
        now = time.monotonic()
        self._tokens = min(self.burst, self._tokens + (now - self._stamp) * self.rate) - n
        self._stamp = now
        if self._tokens < 0:
            await asyncio.sleep(-self._tokens / self.rate)


class _Partial:
    """An asset being written: the open ``.part`` file and the hash of what it holds (methods block: use threads)."""

    def __init__(self, path: Path, size: int) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._lock = threading.Lock()  # a write still running in a thread finishes before close()
        self._fh: BinaryIO | None = path.open("ab")
        self.have = os.fstat(self._fh.fileno()).st_size
        self.hasher = hashlib.sha256()
        if self.have > size:
            self._fh.truncate(0)
            self.have = 0
        self.resumed_from = self.have
        if self.have:
            with path.open("rb") as fh:
                left = self.have
                while left > 0:
                    block = fh.read(min(_HASH_READ_BYTES, left))
                    if not block:
                        break
                    self.hasher.update(block)
                    left -= len(block)

    def append(self, data: bytes) -> None:
        with self._lock:
            if self._fh is None:
                raise ValueError("partial file is closed")
            self._fh.write(data)
            self.hasher.update(data)
            self.have += len(data)

    def reset(self) -> None:
        """Start over from zero bytes."""
        with self._lock:
            if self._fh is None:
                raise ValueError("partial file is closed")
            self._fh.flush()
            self._fh.truncate(0)
            self.hasher = hashlib.sha256()
            self.have = 0
            self.resumed_from = 0

    def finish(self, target: Path) -> None:
        """Flush to disk and move to *target* (the caller has checked the hash)."""
        with self._lock:
            if self._fh is None:
                raise ValueError("partial file is closed")
            self._fh.flush()
            os.fsync(self._fh.fileno())
            self._fh.close()
            self._fh = None
            target.parent.mkdir(parents=True, exist_ok=True)
            os.replace(self.path, target)

    def close(self, *, delete: bool = False) -> None:
        with self._lock:
            if self._fh is not None:
                self._fh.close()
                self._fh = None
            if delete:
                self.path.unlink(missing_ok=True)


class Downloader:
    """Fetches manifests and assets into *work_dir* (``partial/``, ``done/``); see the module docstring.

    *session_factory* is called once per public call and the session it returns is closed afterwards (default: a
    session without proxies, automatic decompression or cookies). *sleep* is used for back-off only.
    """

    def __init__(
        self,
        settings: DownloadSettings,
        *,
        work_dir: Path,
        session_factory: SessionFactory | None = None,
        sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep,
    ) -> None:
        self.settings = settings
        self.work_dir = work_dir
        self._session_factory = session_factory or self._default_session
        self._sleep = sleep
        self._bucket = _TokenBucket(settings.max_rate_bytes_s, settings.chunk_bytes)
        self._timeout = aiohttp.ClientTimeout(
            total=None, connect=settings.timeout_s, sock_connect=settings.timeout_s, sock_read=settings.timeout_s
        )
        self._locks: weakref.WeakValueDictionary[str, asyncio.Lock] = weakref.WeakValueDictionary()
        self.bytes_downloaded = 0
        self.resumes = 0
        self.restarts = 0
        self.retries = 0
        self.failures: Counter[str] = Counter()

    # ----------------------------------------------------------------------------------------------- public API

    def partial_path(self, sha256: str) -> Path:
        """Where an asset is written while it downloads."""
        return self.work_dir / "partial" / f"{_check_sha(sha256)}.part"

    def done_path(self, sha256: str) -> Path:
        """Where a downloaded and checked asset is kept until :meth:`cleanup`."""
        return self.work_dir / "done" / _check_sha(sha256)

    async def fetch_manifest(self, url: str, sha256: str) -> bytes:
        """The bytes at *url* (at most ``max_manifest_bytes``), which must hash to *sha256*."""
        _check_url(url)
        _check_sha(sha256)
        async with self._session() as session, self._counted():
            return await self._fetch_manifest(session, url, sha256)

    async def fetch_asset(
        self, base_url: str, sha256: str, size: int, *, on_progress: ProgressCallback | None = None
    ) -> Path:
        """Download ``<base_url>/<sha256>`` (*size* bytes), resuming a partial; returns the checked file in done/."""
        url = _asset_url(base_url, sha256)
        if size <= 0:
            raise ValueError("size must be positive")
        async with self._session() as session, self._counted():
            return await self._fetch_asset(session, url, sha256, size, on_progress)

    async def fetch_all(
        self, params: KioskContentParams, public_keys: Sequence[str], have: Callable[[str, int], bool]
    ) -> tuple[bytes, dict[str, Path]]:
        """The signed manifest of *params* and every asset of it that *have(sha256, size)* says is missing.

        Assets are fetched one at a time. Returns (signed manifest bytes, {sha256: downloaded file}). A manifest whose
        signature does not verify raises :class:`varta.kiosk_manifest.ManifestError` (before any asset is fetched).
        """
        _check_url(params.manifest_url)
        _check_sha(params.manifest_sha256)
        _asset_url(params.content_base_url, "0" * 64)
        async with self._session() as session:
            async with self._counted():
                signed = await self._fetch_manifest(session, params.manifest_url, params.manifest_sha256)
            manifest = verify_manifest(signed, public_keys)
            files: dict[str, Path] = {}
            for asset in manifest.assets:
                if asset.sha256 in files or have(asset.sha256, asset.size):
                    continue
                url = _asset_url(params.content_base_url, asset.sha256)
                async with self._counted():
                    files[asset.sha256] = await self._fetch_asset(session, url, asset.sha256, asset.size, None)
        log.info("kiosk.content_downloaded", version=manifest.version, assets=len(manifest.assets), fetched=len(files))
        return signed, files

    def cleanup(self, keep: set[str]) -> None:
        """Delete downloaded and partial files whose sha256 is not in *keep* (call when no download is running)."""
        for sub, suffix in (("done", ""), ("partial", ".part")):
            folder = self.work_dir / sub
            if not folder.is_dir():
                continue
            for path in folder.iterdir():
                name = path.name.removesuffix(suffix) if suffix else path.name
                if name not in keep and (path.is_file() or path.is_symlink()):
                    path.unlink(missing_ok=True)

    def stats(self) -> dict[str, Any]:
        """Counters for the node's health report and tests."""
        return {
            "bytes_downloaded": self.bytes_downloaded,
            "resumes": self.resumes,
            "restarts": self.restarts,
            "retries": self.retries,
            "failures": dict(self.failures),
        }

    # ----------------------------------------------------------------------------------------------- internals

    def _default_session(self) -> aiohttp.ClientSession:
        rcvbuf = None if self.settings.max_rate_bytes_s is None else max(64 * 1024, self.settings.max_rate_bytes_s // 2)

        def make_socket(addr_info: tuple[Any, ...]) -> socket.socket:
            family, type_, proto = addr_info[0], addr_info[1], addr_info[2]
            sock = socket.socket(family=family, type=type_, proto=proto)
            if rcvbuf is not None:  # a small window: the sender slows down with us instead of filling the link
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
            return sock

        return aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=4, socket_factory=make_socket),
            trust_env=False,
            auto_decompress=False,
            cookie_jar=aiohttp.DummyCookieJar(),
            timeout=self._timeout,
        )

    @asynccontextmanager
    async def _session(self) -> AsyncIterator[aiohttp.ClientSession]:
        session = self._session_factory()
        try:
            yield session
        finally:
            await session.close()

    @asynccontextmanager
    async def _counted(self) -> AsyncIterator[None]:
        try:
            yield
        except DownloadError as exc:
            self.failures[exc.reason.value] += 1
            raise

    async def _retrying(self, what: str, attempt: Callable[[], Awaitable[_T]], progress: Callable[[], int]) -> _T:
        """Run *attempt* until it returns; retry :class:`_Transient` failures with back-off."""
        failures = 0
        while True:
            before = progress()
            try:
                return await attempt()
            except _Transient as exc:
                failures = 1 if progress() > before else failures + 1
                if failures > self.settings.retries:
                    log.warning("kiosk.download_failed", what=what, reason=str(exc.reason), detail=exc.detail[:200])
                    raise DownloadError(exc.reason, exc.detail) from None
                delay = min(self.settings.backoff_initial_s * 2 ** (failures - 1), self.settings.backoff_max_s)
                self.retries += 1
                log.info(
                    "kiosk.download_retry", what=what, reason=str(exc.reason), detail=exc.detail[:200], delay_s=delay
                )
                await self._sleep(delay)

    async def _get(
        self, session: aiohttp.ClientSession, url: str, headers: Mapping[str, str]
    ) -> aiohttp.ClientResponse:
        return await session.get(
            url, headers={"Accept-Encoding": "identity", **headers}, allow_redirects=False, timeout=self._timeout
        )

    # manifest

    async def _fetch_manifest(self, session: aiohttp.ClientSession, url: str, sha256: str) -> bytes:
        received = [0]

        async def attempt() -> bytes:
            limit = self.settings.max_manifest_bytes
            body = bytearray()
            async with _network_errors(), await self._get(session, url, {}) as resp:
                _check_status(resp, url, ranged=False)
                _check_encoding(resp)
                if resp.content_length is not None and resp.content_length > limit:
                    raise DownloadError(DownloadReason.TOO_LARGE, f"manifest: {resp.content_length} > {limit} B")
                async for chunk in resp.content.iter_chunked(self.settings.chunk_bytes):
                    if len(body) + len(chunk) > limit:
                        raise DownloadError(DownloadReason.TOO_LARGE, f"manifest: more than {limit} bytes")
                    await self._bucket.take(len(chunk))
                    body += chunk
                    received[0] += len(chunk)
                    self.bytes_downloaded += len(chunk)
                if resp.content_length is not None and len(body) != resp.content_length:
                    raise _Transient(DownloadReason.UNREACHABLE, f"body ended after {len(body)} bytes")
            data = bytes(body)
            if hashlib.sha256(data).hexdigest() != sha256:
                raise DownloadError(DownloadReason.HASH_MISMATCH, f"manifest from {url} does not match its sha256")
            return data

        return await self._retrying(url, attempt, lambda: received[0])

    # assets

    async def _fetch_asset(
        self,
        session: aiohttp.ClientSession,
        url: str,
        sha256: str,
        size: int,
        on_progress: ProgressCallback | None,
    ) -> Path:
        lock = self._locks.get(sha256)
        if lock is None:
            lock = self._locks[sha256] = asyncio.Lock()
        async with lock:
            done = self.done_path(sha256)
            if await asyncio.to_thread(_is_file_of_size, done, size):  # moved there only after its hash matched
                return done
            partial = await asyncio.to_thread(_Partial, self.partial_path(sha256), size)
            try:
                return await self._download_into(session, url, sha256, size, partial, on_progress)
            finally:
                partial.close()

    async def _download_into(
        self,
        session: aiohttp.ClientSession,
        url: str,
        sha256: str,
        size: int,
        partial: _Partial,
        on_progress: ProgressCallback | None,
    ) -> Path:
        retried_from_zero = False
        while True:
            while partial.have < size:  # more than once only after a 416 made us start over
                await self._retrying(
                    url, lambda: self._asset_attempt(session, url, size, partial, on_progress), lambda: partial.have
                )
            if partial.hasher.hexdigest() == sha256:
                done = self.done_path(sha256)
                await asyncio.to_thread(partial.finish, done)
                log.info("kiosk.asset_downloaded", sha256=sha256[:12], size=size)
                return done
            if partial.resumed_from and not retried_from_zero:
                # the bytes kept from before may be what is wrong (power loss, SD card): one fresh download
                log.warning("kiosk.asset_resumed_mismatch", sha256=sha256[:12], kept=partial.resumed_from)
                retried_from_zero = True
                self.restarts += 1
                await asyncio.to_thread(partial.reset)
                continue
            await asyncio.to_thread(partial.close, delete=True)
            raise DownloadError(DownloadReason.HASH_MISMATCH, f"{url} does not match its sha256")

    async def _asset_attempt(
        self,
        session: aiohttp.ClientSession,
        url: str,
        size: int,
        partial: _Partial,
        on_progress: ProgressCallback | None,
    ) -> None:
        start = partial.have
        headers = {"Range": f"bytes={start}-"} if start else {}
        async with _network_errors(), await self._get(session, url, headers) as resp:
            if resp.status == 416 and start:
                # the server's file is not longer than what we have: ours is not a prefix of it, start over
                log.info("kiosk.asset_range_refused", url=url, had=start)
                self.restarts += 1
                await asyncio.to_thread(partial.reset)
                return
            _check_status(resp, url, ranged=True)
            _check_encoding(resp)
            if resp.status == 206:
                _check_content_range(resp, start, size)
                if start:
                    self.resumes += 1
                    log.info("kiosk.asset_resumed", url=url, at=start, size=size)
            elif start:  # 200: the server ignored the Range header
                self.restarts += 1
                log.info("kiosk.asset_range_ignored", url=url, had=start)
                await asyncio.to_thread(partial.reset)
                start = 0
            expected = size - start
            if resp.content_length is not None and resp.content_length != expected:
                reason = DownloadReason.TOO_LARGE if resp.content_length > expected else DownloadReason.BAD_RESPONSE
                raise DownloadError(reason, f"{url}: Content-Length {resp.content_length}, expected {expected}")
            async for chunk in resp.content.iter_chunked(self.settings.chunk_bytes):
                if partial.have + len(chunk) > size:
                    await asyncio.to_thread(partial.close, delete=True)
                    raise DownloadError(DownloadReason.TOO_LARGE, f"{url}: more than the {size} bytes expected")
                await self._bucket.take(len(chunk))
                await asyncio.to_thread(partial.append, chunk)
                self.bytes_downloaded += len(chunk)
                if on_progress is not None:
                    on_progress(partial.have, size)
        if partial.have < size:
            raise _Transient(DownloadReason.UNREACHABLE, f"body ended after {partial.have} of {size} bytes")


# --------------------------------------------------------------------------------------------------- helpers


@asynccontextmanager
async def _network_errors() -> AsyncIterator[None]:
    """aiohttp's and the OS's network failures as :class:`_Transient` (or a final ``bad_response``)."""
    try:
        yield
    except TimeoutError as exc:  # aiohttp's connect and read timeouts are TimeoutErrors too
        raise _Transient(DownloadReason.TIMEOUT, _describe(exc)) from None
    except (aiohttp.ClientConnectionError, aiohttp.ClientPayloadError, ConnectionError) as exc:
        raise _Transient(DownloadReason.UNREACHABLE, _describe(exc)) from None
    except aiohttp.ClientError as exc:  # malformed status line or headers, invalid URL…
        raise DownloadError(DownloadReason.BAD_RESPONSE, _describe(exc)) from None


def _describe(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return f"{type(exc).__name__}: {text}"[:_MAX_DETAIL]


def _check_status(resp: aiohttp.ClientResponse, url: str, *, ranged: bool) -> None:
    status = resp.status
    if status == 200 or (ranged and status == 206):
        return
    detail = f"{url}: HTTP {status}"
    if status in (404, 410):
        raise DownloadError(DownloadReason.NOT_FOUND, detail)
    if status >= 500 or status in (408, 429):
        raise _Transient(DownloadReason.HTTP_ERROR, detail)
    if 300 <= status < 400:
        location = resp.headers.get("Location", "")[:200]
        raise DownloadError(DownloadReason.HTTP_ERROR, f"{detail}: redirects are not followed ({location})")
    if status >= 400:
        raise DownloadError(DownloadReason.HTTP_ERROR, detail)
    raise DownloadError(DownloadReason.BAD_RESPONSE, detail)


def _check_encoding(resp: aiohttp.ClientResponse) -> None:
    encoding = resp.headers.get("Content-Encoding", "identity").strip().lower()
    if encoding not in ("", "identity"):
        raise DownloadError(DownloadReason.BAD_RESPONSE, f"Content-Encoding {encoding[:40]} although identity asked")


def _check_content_range(resp: aiohttp.ClientResponse, start: int, size: int) -> None:
    header = resp.headers.get("Content-Range", "")
    match = _CONTENT_RANGE_RE.match(header.strip())
    if (
        match is None
        or int(match[1]) != start
        or int(match[2]) != size - 1
        or (match[3] != "*" and int(match[3]) != size)
    ):
        raise DownloadError(
            DownloadReason.BAD_RESPONSE, f"206 with Content-Range {header[:80]!r} for bytes {start}-{size - 1}/{size}"
        )


def _check_sha(sha256: str) -> str:
    if not _SHA256_RE.match(sha256):
        raise ValueError("not a lower-case hex sha256")
    return sha256


def _check_url(url: str) -> str:
    """Only absolute ``http``/``https`` URLs without credentials (ValueError otherwise)."""
    if not url.isascii() or not url.isprintable() or " " in url:
        raise ValueError("a download URL must be printable ASCII without spaces")
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"only http:// and https:// URLs are downloaded, not {url[:100]!r}")
    if parts.username is not None or parts.password is not None:
        raise ValueError("a download URL must not carry credentials")
    _ = parts.port  # raises ValueError for a malformed port
    return url


def _asset_url(base_url: str, sha256: str) -> str:
    parts = urlsplit(_check_url(base_url))
    if parts.query or parts.fragment or base_url.endswith("/"):
        raise ValueError("content_base_url must not end with '/' nor carry a query or fragment")
    return f"{base_url}/{_check_sha(sha256)}"


def _is_file_of_size(path: Path, size: int) -> bool:
    try:
        return path.is_file() and path.stat().st_size == size
    except OSError:
        return False
