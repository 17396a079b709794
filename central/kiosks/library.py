"""The kiosk content library's blob store: uploads streamed to disk, hashed, checked and stored by content address.

An upload (``multipart/form-data``: a ``file`` part and an optional ``name`` field) is parsed as it arrives and
written to a temporary file under ``<root>/tmp`` while it is hashed, so nothing is held in memory and a body over
the cap is cut off the moment it crosses it. Disk writes, ``fsync`` and the bundle check run in worker threads.
A good file is renamed atomically to ``<root>/blobs/<sha256>``; the same bytes uploaded twice are one blob.

What a file *is* comes from its first bytes only (PNG, JPEG, WebP, MP4, WebM, ZIP); the client's content type and
file name are never believed. SVG (it can carry script) and anything else are refused, bundles are checked with
:func:`varta.bundles.check_bundle` — the same check the node makes — and every refusal has a reason code
(:class:`UploadRefused`) and is counted.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import re
import struct
import tempfile
import time
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import IO, Any, Final, Literal

import structlog
from python_multipart.exceptions import FormParserError
from python_multipart.multipart import MultipartParser, parse_options_header
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from central.store.kiosk_models import KioskAsset
from varta.bundles import BundleError, BundleLimits, check_bundle
from varta.contract import utcnow

log = structlog.get_logger(__name__)

MiB: Final = 1024 * 1024
#: How many leading bytes decide what a file is.
SNIFF_BYTES: Final = 512
#: Bytes handed to the writer thread at a time.
FLUSH_BYTES: Final = MiB
#: Room for the multipart framing and the ``name`` field around the file itself.
FORM_OVERHEAD_BYTES: Final = 64 * 1024
MAX_NAME_BYTES: Final = 1024
MAX_PARTS: Final = 4
#: Leftover temporary files older than this are removed (an upload cut off by a crash).
STALE_TMP_S: Final = 24 * 3600
_SHA_RE: Final = re.compile(r"^[0-9a-f]{64}$")
_CONTROL_RE: Final = re.compile(r"[\x00-\x1f\x7f-\x9f]")

Kind = Literal["image", "video", "bundle"]


def human_size(size: int) -> str:
    """A byte count for people: '512 bytes', '20.0 KiB', '200 MiB'."""
    if size < 10 * 1024:
        return f"{size} bytes"
    if size < MiB:
        return f"{size / 1024:.1f} KiB"
    return f"{size / MiB:.0f} MiB" if size % MiB == 0 else f"{size / MiB:.1f} MiB"


class UploadReason(StrEnum):
    """Why an upload was refused (machine-readable; bundles use :class:`varta.bundles.BundleReason` codes)."""

    BAD_FORM = "bad_form"
    EMPTY = "empty"
    TOO_LARGE = "too_large"
    UNSUPPORTED_TYPE = "unsupported_type"
    SVG = "svg"
    BAD_NAME = "bad_name"


class UploadRefused(ValueError):
    """An upload that is not stored: *reason* is a code to count, *detail* a sentence for the operator."""

    def __init__(self, reason: str, detail: str, kind: str | None = None) -> None:
        super().__init__(f"upload refused ({reason}): {detail}")
        self.reason = reason
        self.detail = detail
        self.kind = kind


@dataclass(frozen=True, slots=True)
class LibraryLimits:
    """Caps on uploads, per kind (a bundle's cap is its zip size limit)."""

    max_image_bytes: int = 20 * MiB
    max_video_bytes: int = 200 * MiB
    bundle: BundleLimits = field(default_factory=BundleLimits)

    def cap(self, kind: Kind) -> int:
        """Largest file of *kind*."""
        if kind == "image":
            return self.max_image_bytes
        if kind == "video":
            return self.max_video_bytes
        return self.bundle.max_compressed_bytes

    @property
    def max_upload_bytes(self) -> int:
        """Largest file of any kind."""
        return max(self.max_image_bytes, self.max_video_bytes, self.bundle.max_compressed_bytes)


@dataclass(frozen=True, slots=True)
class Detected:
    """What the first bytes say a file is."""

    kind: Kind
    mime: str


@dataclass(frozen=True, slots=True)
class StoredBlob:
    """A checked file in the blob store."""

    sha256: str
    kind: Kind
    mime: str
    size: int
    info: dict[str, Any]
    new_file: bool


@dataclass(frozen=True, slots=True)
class Upload:
    """A received upload: the stored blob, the ``name`` field and the client's file name (display only)."""

    blob: StoredBlob
    name: str | None
    filename: str | None


# --------------------------------------------------------------------------------------------------- detection

_HEIF_BRANDS: Final = frozenset({b"heic", b"heix", b"heim", b"heis", b"mif1", b"msf1", b"avif", b"avis"})


def _looks_like_svg(head: bytes) -> bool:
    text = head.lstrip(b"\xef\xbb\xbf \t\r\n").lower()
    return text.startswith((b"<svg", b"<!doctype svg")) or (text.startswith(b"<?xml") and b"<svg" in text)


def sniff(head: bytes) -> Detected:
    """The kind and MIME type of a file from its first bytes (:data:`SNIFF_BYTES`); raises :class:`UploadRefused`."""
    if not head:
        raise UploadRefused(UploadReason.EMPTY, "the file is empty")
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return Detected("image", "image/png")
    if head.startswith(b"\xff\xd8\xff"):
        return Detected("image", "image/jpeg")
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return Detected("image", "image/webp")
    if head[4:8] == b"ftyp":
        if head[8:12] in _HEIF_BRANDS:
            raise UploadRefused(
                UploadReason.UNSUPPORTED_TYPE, "HEIC/AVIF images are not supported: use PNG, JPEG or WebP", "image"
            )
        return Detected("video", "video/mp4")
    if head.startswith(b"\x1a\x45\xdf\xa3"):
        if b"webm" in head[:SNIFF_BYTES]:
            return Detected("video", "video/webm")
        raise UploadRefused(UploadReason.UNSUPPORTED_TYPE, "Matroska (.mkv) video is not supported: use WebM", "video")
    if head.startswith((b"PK\x03\x04", b"PK\x05\x06")):
        return Detected("bundle", "application/zip")
    if _looks_like_svg(head):
        raise UploadRefused(UploadReason.SVG, "SVG images are not allowed (they can carry script): use PNG or WebP")
    raise UploadRefused(
        UploadReason.UNSUPPORTED_TYPE,
        "not a PNG, JPEG or WebP image, an MP4 or WebM video, or a ZIP bundle (judged by its content, not its name)",
    )


def _jpeg_size(data: bytes) -> tuple[int, int] | None:
    """(width, height) from the first start-of-frame marker of a JPEG, if found in *data*."""
    at = 2
    while at + 9 <= len(data):
        if data[at] != 0xFF:
            return None
        marker = data[at + 1]
        if marker == 0xFF:  # fill byte
            at += 1
            continue
        if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7:
            at += 2
            continue
        (length,) = struct.unpack_from(">H", data, at + 2)
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
            height, width = struct.unpack_from(">HH", data, at + 5)
            return width, height
        at += 2 + length
    return None


def image_size(mime: str, data: bytes) -> tuple[int, int] | None:
    """(width, height) of a PNG, JPEG or WebP from its first bytes, when the header says so cheaply."""
    if mime == "image/png" and len(data) >= 24 and data[12:16] == b"IHDR":
        width, height = struct.unpack_from(">II", data, 16)
        return int(width), int(height)
    if mime == "image/jpeg":
        return _jpeg_size(data)
    if mime == "image/webp" and len(data) >= 30:
        chunk = data[12:16]
        if chunk == b"VP8X":
            return 1 + int.from_bytes(data[24:27], "little"), 1 + int.from_bytes(data[27:30], "little")
        if chunk == b"VP8 " and data[23:26] == b"\x9d\x01\x2a":
            width, height = struct.unpack_from("<HH", data, 26)
            return width & 0x3FFF, height & 0x3FFF
        if chunk == b"VP8L" and data[20] == 0x2F:
            (bits,) = struct.unpack_from("<I", data, 21)
            return 1 + (bits & 0x3FFF), 1 + ((bits >> 14) & 0x3FFF)
    return None


def display_name(name: str | None, filename: str | None, fallback: str) -> str:
    """The asset's name: the ``name`` field (refused if unusable), else the file name's last part, else *fallback*."""
    if name is not None:
        name = name.strip()
        if not name or len(name) > 200 or _CONTROL_RE.search(name):
            raise UploadRefused(UploadReason.BAD_NAME, "name must be 1-200 characters without control characters")
        return name
    if filename:
        base = _CONTROL_RE.sub("", re.split(r"[\\/]", filename)[-1]).strip()[:200].strip()
        if base:
            return base
    return fallback


# --------------------------------------------------------------------------------------------------- the store


class ContentLibrary:
    """The blob store under *root* (``<data_dir>/kiosk``): ``blobs/<sha256>`` and ``tmp/`` for uploads in flight."""

    def __init__(self, root: Path, limits: LibraryLimits | None = None) -> None:
        self.root = root
        self.limits = limits or LibraryLimits()
        self.blobs_dir = root / "blobs"
        self.tmp_dir = root / "tmp"
        self.refused: Counter[str] = Counter()
        self.stored = 0
        self._prepared = False

    def blob_path(self, sha256: str) -> Path:
        """Where the blob with *sha256* lives (ValueError for anything but 64 lower-case hex digits)."""
        if not _SHA_RE.match(sha256):
            raise ValueError("not a sha256")
        return self.blobs_dir / sha256

    def refuse(self, exc: UploadRefused) -> None:
        """Count and log a refusal."""
        self.refused[exc.reason] += 1
        log.warning("kiosk.upload_refused", reason=exc.reason, kind=exc.kind, detail=exc.detail[:300])

    def stats(self) -> dict[str, Any]:
        """Uploads stored and refused by reason."""
        return {"stored": self.stored, "refused": dict(self.refused)}

    def _prepare(self) -> None:
        self.blobs_dir.mkdir(parents=True, exist_ok=True)
        self.tmp_dir.mkdir(parents=True, exist_ok=True)
        if self._prepared:
            return
        self._prepared = True
        cutoff = time.time() - STALE_TMP_S
        for leftover in self.tmp_dir.glob("upload-*"):
            with contextlib.suppress(OSError):
                if leftover.stat().st_mtime < cutoff:
                    leftover.unlink()

    async def writer(self) -> BlobWriter:
        """A writer for one upload (its temporary file is created off the event loop)."""
        await asyncio.to_thread(self._prepare)
        fd, name = await asyncio.to_thread(tempfile.mkstemp, prefix="upload-", dir=self.tmp_dir)
        return BlobWriter(self, os.fdopen(fd, "wb"), Path(name))

    async def receive(self, content_type: str, content_length: str | None, stream: AsyncIterator[bytes]) -> Upload:
        """Store the ``file`` part of a multipart upload (see the module docstring); refusals are counted."""
        try:
            return await _receive(self, content_type, content_length, stream)
        except UploadRefused as exc:
            self.refuse(exc)
            raise

    async def remove(self, sha256: str) -> None:
        """Delete a blob (missing is fine)."""
        path = self.blob_path(sha256)
        await asyncio.to_thread(path.unlink, missing_ok=True)
        log.info("kiosk.blob_removed", sha256=sha256)

    async def exists(self, sha256: str) -> bool:
        """True when the blob is on disk."""
        return await asyncio.to_thread(self.blob_path(sha256).is_file)


class BlobWriter:
    """One upload on its way to the store: buffered, capped, hashed and written in a worker thread."""

    def __init__(self, library: ContentLibrary, fh: IO[bytes], path: Path) -> None:
        self.library = library
        self.limits = library.limits
        self._fh = fh
        self._path = path
        self._hash = hashlib.sha256()
        self._pending = bytearray()
        self._head = bytearray()
        self.size = 0
        self.detected: Detected | None = None
        self._closed = False

    def _cap(self) -> int:
        return self.limits.cap(self.detected.kind) if self.detected else self.limits.max_upload_bytes

    async def write(self, data: bytes) -> None:
        """Take the next bytes of the file (raises :class:`UploadRefused` once it is over its cap)."""
        if not data:
            return
        self.size += len(data)
        if self.detected is None and len(self._head) < SNIFF_BYTES:
            self._head += data[: SNIFF_BYTES - len(self._head)]
            if len(self._head) >= SNIFF_BYTES:
                self.detected = sniff(bytes(self._head))
        if self.size > self._cap():
            kind = self.detected.kind if self.detected else None
            raise UploadRefused(
                UploadReason.TOO_LARGE,
                f"the file is over the limit of {human_size(self._cap())}" + (f" for {kind}s" if kind else ""),
                kind,
            )
        self._pending += data
        if len(self._pending) >= FLUSH_BYTES:
            await self._flush()

    async def _flush(self) -> None:
        if self._pending:
            chunk = bytes(self._pending)
            self._pending.clear()
            await asyncio.to_thread(self._write, chunk)

    def _write(self, chunk: bytes) -> None:
        self._fh.write(chunk)
        self._hash.update(chunk)

    async def finish(self) -> StoredBlob:
        """Check the complete file and move it into the store (raises :class:`UploadRefused`)."""
        if self.detected is None:
            self.detected = sniff(bytes(self._head))
        await self._flush()
        try:
            return await asyncio.to_thread(self._finish, self.detected)
        finally:
            await self.abort()

    def _finish(self, detected: Detected) -> StoredBlob:
        self._fh.flush()
        os.fsync(self._fh.fileno())
        self._fh.close()
        self._closed = True
        sha256 = self._hash.hexdigest()
        info: dict[str, Any] = {}
        if detected.kind == "bundle":
            try:
                bundle = check_bundle(self._path, self.limits.bundle)
            except BundleError as exc:
                raise UploadRefused(exc.reason.value, exc.detail, "bundle") from None
            info = {"files": len(bundle.files), "total_bytes": bundle.total_bytes}
        elif detected.kind == "image":
            with self._path.open("rb") as fh:
                size = image_size(detected.mime, fh.read(256 * 1024))
            if size is not None:
                info = {"width": size[0], "height": size[1]}
        final = self.library.blob_path(sha256)
        new_file = not (final.is_file() and final.stat().st_size == self.size)
        if new_file:
            os.chmod(self._path, 0o644)
            os.replace(self._path, final)
            fd = os.open(final.parent, os.O_RDONLY | os.O_DIRECTORY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        return StoredBlob(sha256, detected.kind, detected.mime, self.size, info, new_file)

    async def abort(self) -> None:
        """Drop the temporary file (nothing happens once it has been moved into the store)."""
        await asyncio.to_thread(self._abort)

    def _abort(self) -> None:
        if not self._closed:
            self._fh.close()
            self._closed = True
        self._path.unlink(missing_ok=True)


# --------------------------------------------------------------------------------------------------- multipart


class _Form:
    """Callbacks of :class:`MultipartParser`: file bytes are queued for the writer, the ``name`` field is kept."""

    def __init__(self) -> None:
        self.parts = 0
        self.header_field = bytearray()
        self.header_value = bytearray()
        self.disposition = b""
        self.field: str | None = None
        self.in_file = False
        self.file_seen = False
        self.filename: str | None = None
        self.name: bytearray | None = None
        self.queued: list[bytes] = []
        self.error: UploadRefused | None = None

    def fail(self, detail: str, reason: str = UploadReason.BAD_FORM) -> None:
        if self.error is None:
            self.error = UploadRefused(reason, detail)

    def on_part_begin(self) -> None:
        self.parts += 1
        self.disposition, self.field, self.in_file = b"", None, False
        if self.parts > MAX_PARTS:
            self.fail(f"more than {MAX_PARTS} form fields: send 'file' and optionally 'name'")

    def on_header_field(self, data: bytes, start: int, end: int) -> None:
        self.header_field += data[start:end]

    def on_header_value(self, data: bytes, start: int, end: int) -> None:
        self.header_value += data[start:end]

    def on_header_end(self) -> None:
        if bytes(self.header_field).lower() == b"content-disposition":
            self.disposition = bytes(self.header_value)
        self.header_field.clear()
        self.header_value.clear()

    def on_headers_finished(self) -> None:
        _, options = parse_options_header(self.disposition)
        field_name = options.get(b"name", b"").decode("utf-8", "replace")
        self.field = field_name
        if field_name == "file":
            if self.file_seen:
                self.fail("send one file per upload")
            self.file_seen = self.in_file = True
            if b"filename" in options:
                self.filename = options[b"filename"].decode("utf-8", "replace")
        elif field_name == "name" and b"filename" not in options and self.name is None:
            self.name = bytearray()
        else:
            self.fail(f"unexpected form field {field_name[:40]!r}: send 'file' and optionally 'name'")

    def on_part_data(self, data: bytes, start: int, end: int) -> None:
        if self.in_file:
            self.queued.append(data[start:end])
        elif self.field == "name" and self.name is not None:
            self.name += data[start:end]
            if len(self.name) > MAX_NAME_BYTES:
                self.fail("the name is too long", UploadReason.BAD_NAME)

    def on_part_end(self) -> None:
        self.in_file = False


async def _receive(
    library: ContentLibrary, content_type: str, content_length: str | None, stream: AsyncIterator[bytes]
) -> Upload:
    mime, params = parse_options_header(content_type)
    boundary = params.get(b"boundary")
    if mime != b"multipart/form-data" or not boundary:
        raise UploadRefused(UploadReason.BAD_FORM, "send the file as multipart/form-data in a field named 'file'")
    body_cap = library.limits.max_upload_bytes + FORM_OVERHEAD_BYTES
    if content_length is not None and content_length.isdigit() and int(content_length) > body_cap:
        raise UploadRefused(
            UploadReason.TOO_LARGE, f"the upload is over the limit of {human_size(library.limits.max_upload_bytes)}"
        )
    form = _Form()
    try:
        parser = MultipartParser(
            boundary,
            {
                "on_part_begin": form.on_part_begin,
                "on_part_data": form.on_part_data,
                "on_part_end": form.on_part_end,
                "on_header_field": form.on_header_field,
                "on_header_value": form.on_header_value,
                "on_header_end": form.on_header_end,
                "on_headers_finished": form.on_headers_finished,
            },
        )
    except (FormParserError, ValueError):
        raise UploadRefused(UploadReason.BAD_FORM, "the multipart boundary is not usable") from None
    writer = await library.writer()
    received = 0
    try:
        async for chunk in stream:
            received += len(chunk)
            if received > body_cap:
                raise UploadRefused(
                    UploadReason.TOO_LARGE,
                    f"the upload is over the limit of {human_size(library.limits.max_upload_bytes)}",
                )
            try:
                parser.write(chunk)
            except (FormParserError, ValueError):
                raise UploadRefused(UploadReason.BAD_FORM, "the multipart body is malformed") from None
            if form.error is not None:
                raise form.error
            for data in form.queued:
                await writer.write(data)
            form.queued.clear()
        try:
            parser.finalize()
        except (FormParserError, ValueError):
            raise UploadRefused(UploadReason.BAD_FORM, "the multipart body is malformed") from None
        if form.error is not None:
            raise form.error
        if not form.file_seen:
            raise UploadRefused(UploadReason.BAD_FORM, "no form field named 'file'")
        name = None
        if form.name is not None:  # checked before the blob is stored
            name = display_name(bytes(form.name).decode("utf-8", "replace"), None, "")
        blob = await writer.finish()
    except BaseException:
        await writer.abort()
        raise
    library.stored += 1
    log.info("kiosk.blob_stored", sha256=blob.sha256, kind=blob.kind, size=blob.size, new_file=blob.new_file)
    return Upload(blob=blob, name=name, filename=form.filename)


# --------------------------------------------------------------------------------------------------- the table


async def record_asset(session: AsyncSession, upload: Upload, uploaded_by: str) -> tuple[KioskAsset, bool]:
    """The asset row of *upload* (created, or the one already there for the same bytes) and whether it is new.

    Commits. The first upload's name stays: the same content uploaded again is the same asset.
    """
    blob = upload.blob
    existing = await session.get(KioskAsset, blob.sha256)
    if existing is not None:
        return existing, False
    asset = KioskAsset(
        sha256=blob.sha256,
        kind=blob.kind,
        mime=blob.mime,
        name=display_name(upload.name, upload.filename, f"{blob.kind} {blob.sha256[:12]}"),
        size=blob.size,
        uploaded_at=utcnow(),
        uploaded_by=uploaded_by,
        info=blob.info,
    )
    session.add(asset)
    try:
        await session.commit()
    except IntegrityError:  # the same bytes uploaded at the same moment: theirs is ours
        await session.rollback()
        existing = await session.get(KioskAsset, blob.sha256)
        if existing is None:
            raise
        return existing, False
    return asset, True
