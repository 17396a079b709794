"""The kiosk's content cache on the node: the signed manifest in use and the assets it lists.

Layout under ``kiosk.content_dir``: ``manifest.json`` (the signed manifest as central sent it), ``blobs/<sha256>``
(every asset, checked against its hash), ``bundles/<sha256>/`` (HTML bundles, extracted and checked). Nothing is
used unless the manifest's signature verifies with one of central's keys (``commands.central_public_keys``), so
content the city did not sign never reaches the screen, even from a tampered SD card.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import shutil
from collections.abc import Mapping, Sequence
from enum import StrEnum
from pathlib import Path

import structlog

from varta.aio import wait_for
from varta.bundles import BundleError, BundleLimits, extract_bundle
from varta.kiosk_manifest import Manifest, ManifestError, verify_manifest

log = structlog.get_logger(__name__)

MANIFEST_FILE = "manifest.json"
IO_TIMEOUT_S = 10.0
INSTALL_TIMEOUT_S = 300.0
MAX_MANIFEST_BYTES = 1024 * 1024


class RefusedReason(StrEnum):
    """Why new content was refused (the kiosk keeps playing what it had)."""

    MANIFEST = "manifest"  # see the manifest reason in the detail: bad signature, unknown key, stale version…
    MISSING_ASSET = "missing_asset"
    HASH_MISMATCH = "hash_mismatch"
    SIZE_MISMATCH = "size_mismatch"
    BUNDLE = "bundle"  # see the bundle reason: path traversal, symlink, too large…
    DISK = "disk"


class ContentRefused(Exception):
    """New content was not installed; *reason* (and *code*: the manifest's or bundle's own reason) says why."""

    def __init__(self, reason: RefusedReason, code: str, detail: str) -> None:
        super().__init__(f"{reason}/{code}: {detail}")
        self.reason = reason
        self.code = code
        self.detail = detail


class ContentCache:
    """Paths of the cache and loading of the current manifest."""

    def __init__(
        self,
        root: Path,
        central_public_keys: Sequence[str],
        *,
        kiosk_id: str,
        groups: Sequence[str] = (),
        bundle_limits: BundleLimits | None = None,
    ) -> None:
        self.root = root
        self.kiosk_id = kiosk_id
        self.groups = set(groups)
        self.central_public_keys = list(central_public_keys)
        self.bundle_limits = bundle_limits or BundleLimits()
        self.current_version: int | None = None
        self.mime: dict[str, str] = {}
        """sha256 → MIME type of every asset of the manifest in use: the only files the player server serves."""

    def use(self, manifest: Manifest | None) -> None:
        """Serve the assets of *manifest* (None: nothing)."""
        self.mime = {a.sha256: a.mime for a in manifest.assets} if manifest else {}

    @property
    def manifest_path(self) -> Path:
        """The signed manifest in use."""
        return self.root / MANIFEST_FILE

    def blob(self, sha256: str) -> Path:
        """Where an asset's file lives."""
        return self.root / "blobs" / sha256

    def bundle_dir(self, sha256: str) -> Path:
        """Where a bundle is extracted."""
        return self.root / "bundles" / sha256

    def missing(self, manifest: Manifest) -> list[str]:
        """Assets of *manifest* not (completely) in the cache."""
        gone = []
        for asset in manifest.assets:
            blob = self.blob(asset.sha256)
            if (
                not blob.is_file()
                or blob.stat().st_size != asset.size
                or (asset.kind == "bundle" and not (self.bundle_dir(asset.sha256) / "index.html").is_file())
            ):
                gone.append(asset.sha256)
        return gone

    def meant_for_us(self, manifest: Manifest) -> bool:
        """The manifest names this kiosk or one of its groups (a manifest signed for another kiosk is refused)."""
        if manifest.kiosk_ids is not None:
            return self.kiosk_id in manifest.kiosk_ids
        return manifest.kiosk_group in self.groups

    async def load_current(self) -> Manifest | None:
        """The manifest in use, verified again (None: none yet, or it no longer verifies — then it is set aside)."""
        try:
            raw = await wait_for(asyncio.to_thread(self._read), IO_TIMEOUT_S)
        except FileNotFoundError:
            return None
        except (OSError, TimeoutError) as exc:
            log.error("kiosk.manifest_unreadable", path=str(self.manifest_path), error=str(exc)[:200])
            return None
        try:
            manifest = verify_manifest(raw, self.central_public_keys)
        except ManifestError as exc:
            log.error("kiosk.manifest_refused_at_start", reason=str(exc.reason), detail=exc.detail[:300])
            return None
        if not self.meant_for_us(manifest):
            log.error("kiosk.manifest_not_ours_at_start", version=manifest.version)
            return None
        gone = await asyncio.to_thread(self.missing, manifest)
        if gone:
            log.error("kiosk.cache_incomplete", missing=len(gone), version=manifest.version)
            return None
        self.current_version = manifest.version
        return manifest

    def _read(self) -> bytes:
        with self.manifest_path.open("rb") as fh:
            data = fh.read(MAX_MANIFEST_BYTES + 1)
        if len(data) > MAX_MANIFEST_BYTES:
            raise OSError(f"{self.manifest_path} is larger than {MAX_MANIFEST_BYTES} bytes")
        return data

    async def install(self, signed: bytes, files: Mapping[str, Path]) -> Manifest:
        """Check and install new content: the signed manifest and its assets (*files*: sha256 → a downloaded file).

        Everything is checked before anything is used — the signature, that the version is newer than the one in
        use, each asset's size and sha256, each bundle (no path leaving its folder, no symlinks, within limits) —
        and only then is ``manifest.json`` replaced, atomically. On any failure :class:`ContentRefused` is raised
        and the cache still serves the previous content.
        """
        try:
            manifest = verify_manifest(signed, self.central_public_keys)
        except ManifestError as exc:
            raise ContentRefused(RefusedReason.MANIFEST, str(exc.reason), exc.detail) from None
        if not self.meant_for_us(manifest):
            raise ContentRefused(
                RefusedReason.MANIFEST,
                "not_for_this_kiosk",
                f"the manifest is for {manifest.kiosk_group or ', '.join(manifest.kiosk_ids or ())},"
                f" not kiosk {self.kiosk_id} (groups: {', '.join(sorted(self.groups)) or 'none'})",
            )
        if self.current_version is not None and manifest.version <= self.current_version:
            raise ContentRefused(
                RefusedReason.MANIFEST,
                "stale_version",
                f"version {manifest.version} is not newer than the one in use ({self.current_version})",
            )
        await wait_for(asyncio.to_thread(self._install_sync, signed, manifest, files), INSTALL_TIMEOUT_S)
        self.current_version = manifest.version
        log.info("kiosk.content_installed", version=manifest.version, assets=len(manifest.assets))
        return manifest

    def _install_sync(self, signed: bytes, manifest: Manifest, files: Mapping[str, Path]) -> None:
        try:
            for sub in ("blobs", "bundles", "tmp"):
                (self.root / sub).mkdir(parents=True, exist_ok=True)
            for asset in manifest.assets:
                self._take_asset(asset.sha256, asset.size, asset.kind, asset.name, files.get(asset.sha256))
            tmp = self.root / "tmp" / f"manifest.{os.getpid()}.json"
            with tmp.open("wb") as fh:
                fh.write(signed)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, self.manifest_path)
        except OSError as exc:
            raise ContentRefused(RefusedReason.DISK, "os_error", f"{exc.strerror or exc}") from None

    def _take_asset(self, sha256: str, size: int, kind: str, name: str, source: Path | None) -> None:
        blob = self.blob(sha256)
        if not (blob.is_file() and blob.stat().st_size == size):
            if source is None or not source.is_file():
                raise ContentRefused(
                    RefusedReason.MISSING_ASSET, "missing", f"asset {name!r} ({sha256[:12]}…) is missing"
                )
            actual_size = source.stat().st_size
            if actual_size != size:
                raise ContentRefused(
                    RefusedReason.SIZE_MISMATCH,
                    "size",
                    f"asset {name!r} has {actual_size} bytes, the manifest says {size}",
                )
            digest = _sha256(source)
            if digest != sha256:
                raise ContentRefused(
                    RefusedReason.HASH_MISMATCH, "sha256", f"asset {name!r} does not match its sha256 in the manifest"
                )
            tmp = self.root / "tmp" / f"{sha256}.{os.getpid()}"
            shutil.copyfile(source, tmp)
            os.replace(tmp, blob)
        if kind == "bundle" and not (self.bundle_dir(sha256) / "index.html").is_file():
            target = self.bundle_dir(sha256)
            if target.exists():
                shutil.rmtree(target)  # a half-extracted leftover of a crash
            try:
                extract_bundle(blob, target, self.bundle_limits)
            except BundleError as exc:
                blob.unlink(missing_ok=True)  # never kept: the next manifest must not find it "cached"
                raise ContentRefused(RefusedReason.BUNDLE, str(exc.reason), exc.detail) from None


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1024 * 1024), b""):
            digest.update(chunk)
    return digest.hexdigest()
