"""Kiosk content downloads against a real local HTTP server that serves blobs with Range support and misbehaves."""

from __future__ import annotations

import asyncio
import hashlib
import os
import re
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from nacl.signing import SigningKey

from edge.kiosks.content import ContentCache
from edge.kiosks.download import Downloader, DownloadError, DownloadReason, DownloadSettings
from tests.support.ports import free_port
from varta.contract import KioskContentParams
from varta.kiosk_manifest import Asset, Manifest, ManifestError, ManifestReason, sign_manifest
from varta.signing import public_key_text

KIOSK = "kiosk-1"


@dataclass
class Blob:
    """What the server answers for one path (each misbehaviour happens once unless it is a flag)."""

    data: bytes
    statuses: list[int] = field(default_factory=list)  # answered first, one per request
    cut_after: int | None = None  # send up to this body offset, wait for `cut_now`, then drop the connection
    cut_now: asyncio.Event = field(default_factory=asyncio.Event)
    ignore_range: bool = False  # always 200 with the whole body
    extra: bytes = b""  # sent after the data
    chunked: bool = False  # no Content-Length
    corrupt: bool = False  # one byte flipped
    stall_s: float = 0.0  # pause after the headers
    content_range: str | None = None  # a wrong Content-Range to send
    redirect: str | None = None


@dataclass
class BlobServer:
    port: int
    blobs: dict[str, Blob] = field(default_factory=dict)
    requests: list[tuple[str, str | None]] = field(default_factory=list)

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def add(self, data: bytes, **behaviour: Any) -> tuple[str, Blob]:
        """Serve *data* under /blobs/<sha256>; returns the sha256."""
        sha = hashlib.sha256(data).hexdigest()
        blob = self.blobs[f"/blobs/{sha}"] = Blob(data, **behaviour)
        return sha, blob

    def paths(self) -> list[str]:
        return [path for path, _ in self.requests]

    async def handle(self, request: web.Request) -> web.StreamResponse:
        header = request.headers.get("Range")
        self.requests.append((request.path, header))
        blob = self.blobs.get(request.path)
        if blob is None:
            return web.Response(status=404)
        if blob.statuses:
            return web.Response(status=blob.statuses.pop(0))
        if blob.redirect:
            return web.Response(status=302, headers={"Location": blob.redirect})
        data = blob.data
        if blob.corrupt:
            data = bytes([data[0] ^ 0xFF]) + data[1:]
        status, start, headers = 200, 0, {}
        if header and not blob.ignore_range:
            match = re.fullmatch(r"bytes=(\d+)-", header)
            assert match, header
            start = int(match[1])
            if start >= len(data):
                return web.Response(status=416, headers={"Content-Range": f"bytes */{len(data)}"})
            status = 206
            headers["Content-Range"] = blob.content_range or f"bytes {start}-{len(data) - 1}/{len(data)}"
        payload = (data + blob.extra)[start:]
        resp = web.StreamResponse(status=status, headers=headers)
        if not blob.chunked:
            resp.content_length = len(payload)
        await resp.prepare(request)
        if blob.stall_s:
            stall, blob.stall_s = blob.stall_s, 0.0
            await asyncio.sleep(stall)
        if blob.cut_after is not None:
            cut, blob.cut_after = blob.cut_after - start, None
            await resp.write(payload[:cut])
            await asyncio.wait_for(blob.cut_now.wait(), 10)
            assert request.transport is not None
            request.transport.close()
            return resp
        for offset in range(0, len(payload), 32 * 1024):
            await resp.write(payload[offset : offset + 32 * 1024])
        await resp.write_eof()
        return resp


@pytest.fixture
async def server() -> AsyncIterator[BlobServer]:
    srv = BlobServer(port=free_port())
    app = web.Application()
    app.router.add_route("GET", "/{tail:.*}", srv.handle)
    runner = web.AppRunner(app, shutdown_timeout=0.1, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", srv.port).start()
    yield srv
    await runner.cleanup()


class FakeSleep:
    """Back-off sleeps, recorded instead of waited for."""

    def __init__(self) -> None:
        self.delays: list[float] = []

    async def __call__(self, delay: float) -> None:
        self.delays.append(delay)
        await asyncio.sleep(0)


@pytest.fixture
def sleep() -> FakeSleep:
    return FakeSleep()


@pytest.fixture
def work(tmp_path: Path) -> Path:
    return tmp_path / "downloads"


def downloader(work: Path, sleep: FakeSleep, **settings: Any) -> Downloader:
    settings.setdefault("max_rate_bytes_s", None)
    settings.setdefault("timeout_s", 5.0)
    return Downloader(DownloadSettings(**settings), work_dir=work, sleep=sleep)


def files_in(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir()) if folder.is_dir() else []


# --------------------------------------------------------------------------------------------------- assets


async def test_full_download_verifies(server: BlobServer, work: Path, sleep: FakeSleep) -> None:
    data = os.urandom(300_000)
    sha, _ = server.add(data)
    progress: list[tuple[int, int]] = []
    d = downloader(work, sleep)

    path = await d.fetch_asset(server.url("/blobs"), sha, len(data), on_progress=lambda a, b: progress.append((a, b)))

    assert path == work / "done" / sha
    assert path.read_bytes() == data
    assert files_in(work / "partial") == []
    assert server.requests == [(f"/blobs/{sha}", None)]
    assert progress[-1] == (len(data), len(data))
    assert all(have <= len(data) for have, _ in progress)
    assert d.stats() == {"bytes_downloaded": len(data), "resumes": 0, "restarts": 0, "retries": 0, "failures": {}}
    # already there: no second request
    assert await d.fetch_asset(server.url("/blobs"), sha, len(data)) == path
    assert len(server.requests) == 1


async def test_connection_cut_mid_body_resumes_with_range(server: BlobServer, work: Path, sleep: FakeSleep) -> None:
    data = os.urandom(500_000)
    cut = 200_003
    sha, blob = server.add(data, cut_after=cut)
    d = downloader(work, sleep)

    def progress(have: int, _total: int) -> None:
        if have >= cut:
            blob.cut_now.set()

    path = await d.fetch_asset(server.url("/blobs"), sha, len(data), on_progress=progress)

    assert path.read_bytes() == data
    assert server.requests == [(f"/blobs/{sha}", None), (f"/blobs/{sha}", f"bytes={cut}-")]
    assert sleep.delays == [1.0]
    stats = d.stats()
    assert (stats["resumes"], stats["retries"], stats["restarts"]) == (1, 1, 0)
    assert stats["bytes_downloaded"] == len(data)


async def test_partial_from_an_earlier_run_is_resumed(server: BlobServer, work: Path, sleep: FakeSleep) -> None:
    data = os.urandom(200_000)
    sha, _ = server.add(data)
    d = downloader(work, sleep)
    d.partial_path(sha).parent.mkdir(parents=True)
    d.partial_path(sha).write_bytes(data[:120_000])

    path = await d.fetch_asset(server.url("/blobs"), sha, len(data))

    assert path.read_bytes() == data
    assert server.requests == [(f"/blobs/{sha}", "bytes=120000-")]
    assert d.stats()["bytes_downloaded"] == 80_000
    assert d.stats()["resumes"] == 1


async def test_server_ignoring_range_starts_over(server: BlobServer, work: Path, sleep: FakeSleep) -> None:
    data = os.urandom(200_000)
    sha, _ = server.add(data, ignore_range=True)
    d = downloader(work, sleep)
    d.partial_path(sha).parent.mkdir(parents=True)
    d.partial_path(sha).write_bytes(data[:50_000])

    path = await d.fetch_asset(server.url("/blobs"), sha, len(data))

    assert path.read_bytes() == data
    assert server.requests == [(f"/blobs/{sha}", "bytes=50000-")]
    assert d.stats()["bytes_downloaded"] == len(data)
    assert (d.stats()["restarts"], d.stats()["resumes"]) == (1, 0)


async def test_complete_partial_is_checked_without_a_request(server: BlobServer, work: Path, sleep: FakeSleep) -> None:
    data = os.urandom(10_000)
    sha, _ = server.add(data)
    d = downloader(work, sleep)
    d.partial_path(sha).parent.mkdir(parents=True)
    d.partial_path(sha).write_bytes(data)

    assert (await d.fetch_asset(server.url("/blobs"), sha, len(data))).read_bytes() == data
    assert server.requests == []


async def test_partial_longer_than_the_server_file_starts_over(
    server: BlobServer, work: Path, sleep: FakeSleep
) -> None:
    data = os.urandom(10_000)
    sha, blob = server.add(data)
    blob.data = data[:4_000]  # the server's file is shorter than our partial: 416
    d = downloader(work, sleep)
    d.partial_path(sha).parent.mkdir(parents=True)
    d.partial_path(sha).write_bytes(data[:6_000])

    with pytest.raises(DownloadError) as info:
        await d.fetch_asset(server.url("/blobs"), sha, len(data))

    assert info.value.reason is DownloadReason.BAD_RESPONSE  # the full answer has the wrong Content-Length
    assert server.requests == [(f"/blobs/{sha}", "bytes=6000-"), (f"/blobs/{sha}", None)]
    assert d.stats()["restarts"] == 1


async def test_corrupted_bytes_are_a_hash_mismatch(server: BlobServer, work: Path, sleep: FakeSleep) -> None:
    data = os.urandom(100_000)
    sha, _ = server.add(data, corrupt=True)
    d = downloader(work, sleep)

    with pytest.raises(DownloadError) as info:
        await d.fetch_asset(server.url("/blobs"), sha, len(data))

    assert info.value.reason is DownloadReason.HASH_MISMATCH
    assert files_in(work / "done") == []
    assert files_in(work / "partial") == []
    assert len(server.requests) == 1
    assert d.stats()["failures"] == {"hash_mismatch": 1}


async def test_corrupt_partial_is_downloaded_again_once(server: BlobServer, work: Path, sleep: FakeSleep) -> None:
    data = os.urandom(100_000)
    sha, _ = server.add(data)
    d = downloader(work, sleep)
    d.partial_path(sha).parent.mkdir(parents=True)
    d.partial_path(sha).write_bytes(b"\x00" * 30_000)  # e.g. an SD card that lost what was written

    path = await d.fetch_asset(server.url("/blobs"), sha, len(data))

    assert path.read_bytes() == data
    assert server.requests == [(f"/blobs/{sha}", "bytes=30000-"), (f"/blobs/{sha}", None)]


async def test_404_is_final(server: BlobServer, work: Path, sleep: FakeSleep) -> None:
    d = downloader(work, sleep)
    with pytest.raises(DownloadError) as info:
        await d.fetch_asset(server.url("/blobs"), "ab" * 32, 1000)
    assert info.value.reason is DownloadReason.NOT_FOUND
    assert len(server.requests) == 1
    assert sleep.delays == []
    assert d.stats()["failures"] == {"not_found": 1}


async def test_5xx_is_retried_with_back_off(server: BlobServer, work: Path, sleep: FakeSleep) -> None:
    data = os.urandom(50_000)
    sha, _ = server.add(data, statuses=[500, 503, 429])
    d = downloader(work, sleep)

    assert (await d.fetch_asset(server.url("/blobs"), sha, len(data))).read_bytes() == data
    assert len(server.requests) == 4
    assert sleep.delays == [1.0, 2.0, 4.0]
    assert d.stats()["retries"] == 3


async def test_5xx_gives_up_after_the_retries(server: BlobServer, work: Path, sleep: FakeSleep) -> None:
    data = os.urandom(1_000)
    sha, _ = server.add(data, statuses=[500] * 10)
    d = downloader(work, sleep, retries=2)

    with pytest.raises(DownloadError) as info:
        await d.fetch_asset(server.url("/blobs"), sha, len(data))
    assert info.value.reason is DownloadReason.HTTP_ERROR
    assert len(server.requests) == 3


async def test_unreachable_backs_off_up_to_the_cap(work: Path, sleep: FakeSleep) -> None:
    d = downloader(work, sleep, retries=8)
    with pytest.raises(DownloadError) as info:
        await d.fetch_asset(f"http://127.0.0.1:{free_port()}/blobs", "cd" * 32, 1000)
    assert info.value.reason is DownloadReason.UNREACHABLE
    assert sleep.delays == [1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 60.0, 60.0]
    assert d.stats()["failures"] == {"unreachable": 1}


async def test_a_stalled_server_times_out(server: BlobServer, work: Path, sleep: FakeSleep) -> None:
    data = os.urandom(20_000)
    sha, _ = server.add(data, stall_s=1.0)
    d = downloader(work, sleep, timeout_s=0.2, retries=0)

    started = time.monotonic()
    with pytest.raises(DownloadError) as info:
        await d.fetch_asset(server.url("/blobs"), sha, len(data))
    assert info.value.reason is DownloadReason.TIMEOUT
    assert time.monotonic() - started < 0.9
    # the next try works (the stall happened once)
    assert (await d.fetch_asset(server.url("/blobs"), sha, len(data))).read_bytes() == data


@pytest.mark.parametrize("chunked", [True, False], ids=["streamed", "content-length"])
async def test_more_bytes_than_expected_is_too_large(
    server: BlobServer, work: Path, sleep: FakeSleep, chunked: bool
) -> None:
    data = os.urandom(100_000)
    sha, _ = server.add(data, extra=os.urandom(5_000), chunked=chunked)
    progress: list[int] = []
    d = downloader(work, sleep)

    with pytest.raises(DownloadError) as info:
        await d.fetch_asset(server.url("/blobs"), sha, len(data), on_progress=lambda have, _: progress.append(have))

    assert info.value.reason is DownloadReason.TOO_LARGE
    assert all(have <= len(data) for have in progress)
    assert files_in(work / "done") == []
    assert not d.partial_path(sha).exists() or d.partial_path(sha).stat().st_size <= len(data)
    assert len(server.requests) == 1


async def test_wrong_content_range_is_refused(server: BlobServer, work: Path, sleep: FakeSleep) -> None:
    data = os.urandom(10_000)
    sha, _ = server.add(data, content_range="bytes 0-9999/10000")
    d = downloader(work, sleep)
    d.partial_path(sha).parent.mkdir(parents=True)
    d.partial_path(sha).write_bytes(data[:1_000])

    with pytest.raises(DownloadError) as info:
        await d.fetch_asset(server.url("/blobs"), sha, len(data))
    assert info.value.reason is DownloadReason.BAD_RESPONSE
    assert d.partial_path(sha).read_bytes() == data[:1_000]


async def test_redirects_are_not_followed(server: BlobServer, work: Path, sleep: FakeSleep) -> None:
    data = os.urandom(1_000)
    sha, _ = server.add(data)
    server.blobs["/elsewhere/" + sha] = Blob(data, redirect=server.url(f"/blobs/{sha}"))
    d = downloader(work, sleep)

    with pytest.raises(DownloadError) as info:
        await d.fetch_asset(server.url("/elsewhere"), sha, len(data))
    assert info.value.reason is DownloadReason.HTTP_ERROR
    assert "redirect" in info.value.detail
    assert server.paths() == [f"/elsewhere/{sha}"]


@pytest.mark.parametrize(
    ("base", "sha"),
    [
        ("ftp://127.0.0.1/blobs", "ab" * 32),
        ("file:///etc", "ab" * 32),
        ("http://user:pw@127.0.0.1/blobs", "ab" * 32),
        ("http://127.0.0.1/blobs/", "ab" * 32),
        ("http://127.0.0.1/blobs?x=1", "ab" * 32),
        ("http://127.0.0.1/blobs", "../../etc/passwd"),
        ("http://127.0.0.1/blobs", "AB" * 32),
    ],
)
async def test_bad_urls_and_hashes_are_refused(work: Path, sleep: FakeSleep, base: str, sha: str) -> None:
    with pytest.raises(ValueError):
        await downloader(work, sleep).fetch_asset(base, sha, 10)
    assert files_in(work) == []


async def test_bandwidth_cap_is_shared_by_all_downloads(server: BlobServer, work: Path, sleep: FakeSleep) -> None:
    rate = 128 * 1024
    blobs = [os.urandom(128 * 1024), os.urandom(128 * 1024)]
    shas = [server.add(data)[0] for data in blobs]
    d = downloader(work, sleep, max_rate_bytes_s=rate)

    started = time.monotonic()
    paths = await asyncio.gather(*(d.fetch_asset(server.url("/blobs"), sha, 128 * 1024) for sha in shas))
    elapsed = time.monotonic() - started

    assert [p.read_bytes() for p in paths] == blobs
    burst = d.settings.chunk_bytes  # the bucket starts full
    assert elapsed >= 0.9 * (sum(map(len, blobs)) - burst) / rate  # 1.35 s; unthrottled it takes milliseconds


# --------------------------------------------------------------------------------------------------- manifests


async def test_manifest_is_fetched_and_checked(server: BlobServer, work: Path, sleep: FakeSleep) -> None:
    body = os.urandom(5_000)
    server.blobs["/m.json"] = Blob(body)
    d = downloader(work, sleep)

    assert await d.fetch_manifest(server.url("/m.json"), hashlib.sha256(body).hexdigest()) == body
    with pytest.raises(DownloadError) as info:
        await d.fetch_manifest(server.url("/m.json"), hashlib.sha256(b"other").hexdigest())
    assert info.value.reason is DownloadReason.HASH_MISMATCH
    assert d.stats()["failures"] == {"hash_mismatch": 1}


@pytest.mark.parametrize("chunked", [True, False], ids=["streamed", "content-length"])
async def test_manifest_too_big(server: BlobServer, work: Path, sleep: FakeSleep, chunked: bool) -> None:
    body = os.urandom(5_000)
    server.blobs["/m.json"] = Blob(body, chunked=chunked)
    d = downloader(work, sleep, max_manifest_bytes=4_096)

    with pytest.raises(DownloadError) as info:
        await d.fetch_manifest(server.url("/m.json"), hashlib.sha256(body).hexdigest())
    assert info.value.reason is DownloadReason.TOO_LARGE
    assert len(server.requests) == 1


async def test_manifest_retried_after_5xx(server: BlobServer, work: Path, sleep: FakeSleep) -> None:
    body = os.urandom(500)
    server.blobs["/m.json"] = Blob(body, statuses=[502])
    d = downloader(work, sleep)

    assert await d.fetch_manifest(server.url("/m.json"), hashlib.sha256(body).hexdigest()) == body
    assert sleep.delays == [1.0]


def signed_manifest(key: SigningKey, version: int, blobs: list[tuple[bytes, str]]) -> bytes:
    kinds = {"image/png": "image", "image/jpeg": "image", "image/webp": "image", "video/mp4": "video"}
    assets = tuple(
        Asset(sha256=hashlib.sha256(data).hexdigest(), size=len(data), kind=kinds[mime], mime=mime, name=f"a{n}")
        for n, (data, mime) in enumerate(blobs)
    )
    manifest = Manifest(version=version, issued_at=datetime.now(UTC), kiosk_ids=(KIOSK,), assets=assets)
    return sign_manifest(key, manifest).to_bytes()


def publish(server: BlobServer, signed: bytes, version: int) -> KioskContentParams:
    server.blobs[f"/manifests/{version}.json"] = Blob(signed)
    return KioskContentParams(
        device_id=KIOSK,
        version=version,
        manifest_url=server.url(f"/manifests/{version}.json"),
        manifest_sha256=hashlib.sha256(signed).hexdigest(),
        content_base_url=server.url("/blobs"),
    )


async def test_fetch_all_downloads_missing_assets_and_the_cache_installs_them(
    server: BlobServer, work: Path, sleep: FakeSleep, tmp_path: Path
) -> None:
    key = SigningKey.generate()
    public = [public_key_text(key.verify_key)]
    cache = ContentCache(tmp_path / "content", public, kiosk_id=KIOSK)

    def have(sha: str, size: int) -> bool:
        blob = cache.blob(sha)
        return blob.is_file() and blob.stat().st_size == size

    blobs = [(os.urandom(70_000), "image/png"), (os.urandom(3_000), "image/jpeg"), (os.urandom(150_000), "video/mp4")]
    shas = [server.add(data)[0] for data, _ in blobs]
    d = downloader(work, sleep)

    signed, files = await d.fetch_all(publish(server, signed_manifest(key, 1, blobs), 1), public, have)
    assert set(files) == set(shas)
    manifest = await cache.install(signed, files)
    assert manifest.version == 1 and cache.missing(manifest) == []
    d.cleanup(set())
    assert files_in(work / "done") == []

    # version 2 keeps two assets and adds one: only the new one is downloaded
    new = (os.urandom(40_000), "image/png")
    new_sha = server.add(new[0])[0]
    server.requests.clear()
    signed2, files2 = await d.fetch_all(publish(server, signed_manifest(key, 2, [*blobs[1:], new]), 2), public, have)
    assert list(files2) == [new_sha]
    assert server.paths() == ["/manifests/2.json", f"/blobs/{new_sha}"]
    manifest2 = await cache.install(signed2, files2)
    assert manifest2.version == 2 and cache.missing(manifest2) == []
    assert cache.blob(new_sha).read_bytes() == new[0]


async def test_fetch_all_keeps_done_files_and_cleanup_keeps_what_it_is_told(
    server: BlobServer, work: Path, sleep: FakeSleep
) -> None:
    key = SigningKey.generate()
    blobs = [(os.urandom(5_000), "image/png"), (os.urandom(6_000), "image/webp")]
    shas = [server.add(data)[0] for data, _ in blobs]
    params = publish(server, signed_manifest(key, 1, blobs), 1)
    d = downloader(work, sleep)

    await d.fetch_all(params, [public_key_text(key.verify_key)], lambda _sha, _size: False)
    server.requests.clear()
    _, files = await d.fetch_all(params, [public_key_text(key.verify_key)], lambda _sha, _size: False)
    assert set(files) == set(shas)
    assert server.paths() == ["/manifests/1.json"]  # the assets were already in done/

    d.partial_path("ef" * 32).write_bytes(b"x")
    d.cleanup({shas[0]})
    assert files_in(work / "done") == [shas[0]]
    assert files_in(work / "partial") == []


async def test_fetch_all_lets_a_bad_signature_through(server: BlobServer, work: Path, sleep: FakeSleep) -> None:
    blobs = [(os.urandom(1_000), "image/png")]
    server.add(blobs[0][0])
    params = publish(server, signed_manifest(SigningKey.generate(), 1, blobs), 1)
    d = downloader(work, sleep)

    with pytest.raises(ManifestError) as info:
        await d.fetch_all(params, [public_key_text(SigningKey.generate().verify_key)], lambda _sha, _size: False)
    assert info.value.reason is ManifestReason.UNKNOWN_KEY
    assert server.paths() == ["/manifests/1.json"]


async def test_fetch_all_fails_on_a_manifest_that_does_not_match(
    server: BlobServer, work: Path, sleep: FakeSleep
) -> None:
    key = SigningKey.generate()
    params = publish(server, signed_manifest(key, 1, [(os.urandom(1_000), "image/png")]), 1)
    params = params.model_copy(update={"manifest_sha256": "0" * 64})
    d = downloader(work, sleep)

    with pytest.raises(DownloadError) as info:
        await d.fetch_all(params, [public_key_text(key.verify_key)], lambda _sha, _size: False)
    assert info.value.reason is DownloadReason.HASH_MISMATCH
    assert server.paths() == ["/manifests/1.json"]
