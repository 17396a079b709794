"""Content for kiosk tests: real media files (PNG, WebM from ffmpeg, HTML bundles) in a manifest signed like central
signs it."""

from __future__ import annotations

import hashlib
import struct
import subprocess
import zipfile
import zlib
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from nacl.signing import SigningKey

from varta.kiosk_manifest import Asset, Manifest, Playlist, PlaylistItem, sign_manifest


def png(path: Path, rgb: tuple[int, int, int], width: int = 320, height: int = 180) -> Path:
    """A solid-colour PNG."""
    row = b"\x00" + bytes(rgb) * width
    raw = row * height

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b"")
    )
    return path


def webm(path: Path, seconds: float = 3.0) -> Path:
    """A VP8 test-pattern video made with ffmpeg."""
    subprocess.run(
        ["ffmpeg", "-hide_banner", "-loglevel", "error", "-y", "-f", "lavfi", "-i",
         f"testsrc=size=320x180:rate=15:duration={seconds}", "-c:v", "libvpx", "-b:v", "300k", str(path)],
        check=True, timeout=120,
    )  # fmt: skip
    return path


def bundle(path: Path, files: dict[str, str | bytes], *, symlinks: dict[str, str] | None = None) -> Path:
    """A zip with *files* (name → content) and optional *symlinks* (name → target) entries."""
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, content in files.items():
            zf.writestr(name, content)
        for name, target in (symlinks or {}).items():
            info = zipfile.ZipInfo(name)
            info.external_attr = 0o120777 << 16
            zf.writestr(info, target)
    return path


def sha256_of(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


KIND_MIME = {".png": ("image", "image/png"), ".webm": ("video", "video/webm"), ".zip": ("bundle", "application/zip")}


@dataclass
class Content:
    """Builds signed manifests over files; ``version`` goes up with every :meth:`signed`."""

    key: SigningKey
    kiosk_id: str = "node-1"
    version: int = 0
    files: dict[str, Path] = field(default_factory=dict)

    def asset(self, path: Path, name: str = "") -> Asset:
        kind, mime = KIND_MIME[path.suffix]
        sha = sha256_of(path)
        self.files[sha] = path
        return Asset(sha256=sha, size=path.stat().st_size, kind=kind, mime=mime, name=name or path.name)  # type: ignore[arg-type]

    def signed(self, playlist: list[tuple[Path, int | None]], *, key: SigningKey | None = None) -> bytes:
        """A manifest playing *playlist* ((file, duration) pairs) all the time, signed with *key* (else central's)."""
        self.version += 1
        assets = {}
        items = []
        for path, duration in playlist:
            asset = self.asset(path)
            assets[asset.sha256] = asset
            items.append(PlaylistItem(asset=asset.sha256, duration_s=duration, title=path.stem))
        manifest = Manifest(
            version=self.version,
            issued_at=datetime.now(UTC),
            assets=tuple(assets.values()),
            playlists=(Playlist(id="main", name="Main", items=tuple(items)),),
            default_playlist_id="main",
            kiosk_ids=(self.kiosk_id,),
        )
        return sign_manifest(key or self.key, manifest).model_dump_json().encode()
