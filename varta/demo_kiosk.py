"""The demo's kiosk content: two HTML bundles and a poster, in a manifest signed with central's key, installed on the
demo kiosk's node as if it had been downloaded (``varta demo``)."""

from __future__ import annotations

import hashlib
import io
import struct
import zipfile
import zlib
from datetime import UTC, datetime
from pathlib import Path

from nacl.signing import SigningKey

from varta.kiosk_manifest import Asset, Manifest, Playlist, PlaylistItem, sign_manifest

WELCOME = """<!doctype html><html lang="uk"><head><meta charset="utf-8"><style>
body{margin:0;height:100vh;display:flex;flex-direction:column;justify-content:center;align-items:center;
background:#0b3d91;color:#fff;font-family:'DejaVu Sans',sans-serif}h1{font-size:9vh;margin:0}p{font-size:4vh}
</style></head><body><h1>Вітаємо у громаді!</h1><p>Міський портал · розклад · укриття</p>
<p>Welcome · city portal · timetables · shelters</p></body></html>"""

TIMETABLE = """<!doctype html><html lang="uk"><head><meta charset="utf-8"><style>
body{margin:0;padding:5vh 6vw;background:#fff;color:#111;font-family:'DejaVu Sans',sans-serif}
h1{font-size:6vh;margin:0 0 3vh}table{width:100%;border-collapse:collapse;font-size:4vh}
td,th{border-bottom:2px solid #ccc;padding:1.2vh;text-align:left}th{background:#0b3d91;color:#fff}
</style></head><body><h1>Розклад автобусів · Bus timetable</h1><table>
<tr><th>Маршрут</th><th>Напрямок</th><th>Відправлення</th></tr>
<tr><td>12</td><td>Вокзал</td><td>08:15 · 09:05 · 10:20</td></tr>
<tr><td>27</td><td>Лікарня</td><td>08:40 · 10:10 · 11:45</td></tr>
<tr><td>3А</td><td>Центр</td><td>кожні 15 хв</td></tr></table></body></html>"""


def _png(rgb: tuple[int, int, int], width: int = 640, height: int = 360) -> bytes:
    raw = (b"\x00" + bytes(rgb) * width) * height

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b"")


def _bundle(html: str) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("index.html", html)
    return buffer.getvalue()


def demo_content(key: SigningKey, kiosk_id: str, folder: Path) -> tuple[bytes, dict[str, Path]]:
    """A signed manifest for *kiosk_id* and the files it lists (written into *folder*)."""
    folder.mkdir(parents=True, exist_ok=True)
    files: dict[str, Path] = {}
    assets: list[Asset] = []
    items: list[PlaylistItem] = []
    for name, data, kind, mime, duration in (
        ("welcome.zip", _bundle(WELCOME), "bundle", "application/zip", 8),
        ("poster.png", _png((250, 200, 40)), "image", "image/png", 4),
        ("timetable.zip", _bundle(TIMETABLE), "bundle", "application/zip", 8),
    ):
        sha = hashlib.sha256(data).hexdigest()
        path = folder / name
        path.write_bytes(data)
        files[sha] = path
        assets.append(Asset(sha256=sha, size=len(data), kind=kind, mime=mime, name=name))
        items.append(PlaylistItem(asset=sha, duration_s=duration, title=name))
    manifest = Manifest(
        version=1,
        issued_at=datetime.now(UTC),
        kiosk_ids=(kiosk_id,),
        assets=tuple(assets),
        playlists=(Playlist(id="demo", name="Demo", items=tuple(items)),),
        default_playlist_id="demo",
    )
    return sign_manifest(key, manifest).to_bytes(), files
