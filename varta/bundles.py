"""HTML bundles: zip files of a small web site that a kiosk shows. Validation and safe extraction (stdlib only).

Central checks a bundle when an operator uploads it and the node checks it again after download, with the same
code. Nothing in a zip is trusted: names are checked before anything touches the disk, links, devices and encrypted
entries are refused, and sizes are counted from the bytes that actually come out of the decompressor — a header
that under-declares a member's size is caught, not believed.
"""

from __future__ import annotations

import copy
import os
import re
import shutil
import stat
import struct
import tempfile
import zipfile
import zlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import IO, Final

INDEX_NAME: Final = "index.html"
_MiB: Final = 1024 * 1024
_CHUNK: Final = 64 * 1024
_MAX_COMPONENT_BYTES: Final = 255
#: Generous upper bound of one central-directory record (46 fixed bytes + name + extra fields + comment).
_MAX_DIRECTORY_RECORD_BYTES: Final = 2048
_FILE_MODE: Final = 0o644
_DIR_MODE: Final = 0o755
_FLAG_ENCRYPTED: Final = 0x01
_FLAG_PATCHED: Final = 0x20
_FLAG_STRONG_ENCRYPTION: Final = 0x40
_SUPPORTED_COMPRESSION: Final = frozenset({zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED})
_DRIVE_RE: Final = re.compile(r"^[A-Za-z]:")
_CONTROL_RE: Final = re.compile(r"[\x00-\x1f\x7f-\x9f]")
#: Exceptions zipfile and zlib raise on damaged or hostile archives.
_ZIP_ERRORS: Final = (zipfile.BadZipFile, zlib.error, EOFError, ValueError, OSError, NotImplementedError, struct.error)

_EOCD_SIGNATURE: Final = b"PK\x05\x06"
_EOCD: Final = struct.Struct("<4s4H2LH")
_ZIP64_LOCATOR_SIGNATURE: Final = b"PK\x06\x07"
_ZIP64_LOCATOR: Final = struct.Struct("<4sLQL")
_ZIP64_EOCD_SIGNATURE: Final = b"PK\x06\x06"
_ZIP64_EOCD: Final = struct.Struct("<4sQ2H2L4Q")


class BundleReason(StrEnum):
    """Why a bundle was refused (machine-readable; count them)."""

    NOT_A_ZIP = "not_a_zip"
    TOO_LARGE = "too_large"
    TOO_MANY_FILES = "too_many_files"
    PATH_TRAVERSAL = "path_traversal"
    SYMLINK = "symlink"
    SPECIAL_FILE = "special_file"
    ENCRYPTED = "encrypted"
    ZIP_BOMB = "zip_bomb"
    NO_INDEX = "no_index"
    DUPLICATE_ENTRY = "duplicate_entry"
    BAD_NAME = "bad_name"
    UNSUPPORTED = "unsupported"
    CORRUPT = "corrupt"


class BundleError(ValueError):
    """A bundle that must not be used; ``str()`` is a sentence for the operator."""

    def __init__(self, reason: BundleReason, detail: str) -> None:
        super().__init__(f"bundle refused: {detail}")
        self.reason = reason
        self.detail = detail


@dataclass(frozen=True, slots=True)
class BundleLimits:
    """Upper bounds a bundle must respect (all byte counts are real bytes, never header values)."""

    max_compressed_bytes: int = 50 * _MiB
    max_total_bytes: int = 200 * _MiB
    max_files: int = 2000
    max_file_bytes: int = 100 * _MiB
    max_ratio: int = 200
    #: Members that unpack to no more than this are exempt from the ratio check (small text compresses well).
    ratio_grace_bytes: int = _MiB
    max_name_length: int = 512


@dataclass(frozen=True, slots=True)
class BundleInfo:
    """What a valid bundle contains."""

    files: tuple[str, ...]
    total_bytes: int
    compressed_bytes: int
    has_index: bool


@dataclass(frozen=True, slots=True)
class _Entry:
    info: zipfile.ZipInfo
    path: str
    is_dir: bool


def _show(name: str) -> str:
    """An entry name quoted for a message: control characters escaped, long names clipped."""
    text = "".join(c if c.isprintable() else repr(c)[1:-1] for c in name[:120])
    return f"'{text}{'…' if len(name) > 120 else ''}'"


def _size(size: int) -> str:
    """A byte count for people: '512 bytes', '20.0 KiB', '50.0 MiB'."""
    if size < 10 * 1024:
        return f"{size} bytes"
    if size < _MiB:
        return f"{size / 1024:.1f} KiB"
    return f"{size / _MiB:.1f} MiB"


# --------------------------------------------------------------------------------------------------- checks


def _check_name(name: str, limits: BundleLimits) -> tuple[str, bool]:
    """The entry's relative path (no trailing slash) and whether it is a folder; raises for unsafe names."""
    shown = _show(name)
    if not name:
        raise BundleError(BundleReason.BAD_NAME, "an entry has an empty name")
    if len(name) > limits.max_name_length:
        raise BundleError(BundleReason.BAD_NAME, f"entry {shown} has a name longer than {limits.max_name_length}")
    if _CONTROL_RE.search(name):
        raise BundleError(BundleReason.BAD_NAME, f"entry {shown} has control characters in its name")
    if "\\" in name:
        raise BundleError(BundleReason.PATH_TRAVERSAL, f"entry {shown} uses backslashes as folder separators")
    if name.startswith("/"):
        raise BundleError(BundleReason.PATH_TRAVERSAL, f"entry {shown} is an absolute path")
    if _DRIVE_RE.match(name):
        raise BundleError(BundleReason.PATH_TRAVERSAL, f"entry {shown} starts with a drive letter")
    is_dir = name.endswith("/")
    path = name[:-1] if is_dir else name
    parts = path.split("/")
    if ".." in parts:
        raise BundleError(BundleReason.PATH_TRAVERSAL, f"entry {shown} leaves the bundle folder")
    if any(part in ("", ".") for part in parts):
        raise BundleError(BundleReason.BAD_NAME, f"entry {shown} has an empty or '.' folder in its path")
    if any(len(part.encode()) > _MAX_COMPONENT_BYTES for part in parts):
        raise BundleError(BundleReason.BAD_NAME, f"entry {shown} has a name part longer than 255 bytes")
    return path, is_dir


def _check_type(info: zipfile.ZipInfo, is_dir: bool) -> None:
    """Only regular files and folders; the Unix file type lives in the top 16 bits of ``external_attr``."""
    shown = _show(info.orig_filename)
    kind = stat.S_IFMT(info.external_attr >> 16)
    if kind == stat.S_IFLNK:
        raise BundleError(BundleReason.SYMLINK, f"entry {shown} is a symbolic link (links are not allowed)")
    if kind == stat.S_IFDIR and not is_dir:
        raise BundleError(BundleReason.SPECIAL_FILE, f"entry {shown} is marked as a folder but named like a file")
    if kind not in (0, stat.S_IFREG, stat.S_IFDIR):
        raise BundleError(BundleReason.SPECIAL_FILE, f"entry {shown} is a device, FIFO or socket, not a file")
    if info.flag_bits & (_FLAG_ENCRYPTED | _FLAG_STRONG_ENCRYPTION):
        raise BundleError(BundleReason.ENCRYPTED, f"entry {shown} is encrypted (bundles must not use a password)")
    if info.flag_bits & _FLAG_PATCHED or (not is_dir and info.compress_type not in _SUPPORTED_COMPRESSION):
        raise BundleError(
            BundleReason.UNSUPPORTED, f"entry {shown} uses an unsupported compression (use plain 'deflate')"
        )


def _check_declared_size(info: zipfile.ZipInfo, declared_total: int, limits: BundleLimits) -> None:
    shown = _show(info.orig_filename)
    if info.file_size > limits.max_file_bytes:
        raise BundleError(
            BundleReason.TOO_LARGE,
            f"entry {shown} is {_size(info.file_size)}; the limit is {_size(limits.max_file_bytes)}",
        )
    if declared_total > limits.max_total_bytes:
        raise BundleError(BundleReason.TOO_LARGE, f"the bundle unpacks to more than {_size(limits.max_total_bytes)}")
    if info.file_size > limits.ratio_grace_bytes and info.file_size > max(info.compress_size, 1) * limits.max_ratio:
        raise BundleError(
            BundleReason.ZIP_BOMB,
            f"entry {shown} expands {info.file_size // max(info.compress_size, 1)} times "
            f"(limit {limits.max_ratio}): refused as a zip bomb",
        )


def _index_hint(entries: list[_Entry]) -> str:
    nested = next((e.path for e in entries if not e.is_dir and e.path.endswith("/" + INDEX_NAME)), None)
    if nested:
        return f" (found {_show(nested)}: zip the folder's contents, not the folder itself)"
    return ""


def _inspect(zf: zipfile.ZipFile, limits: BundleLimits) -> list[_Entry]:
    """Check every entry's metadata (names, types, flags, declared sizes) without reading any data."""
    infos = zf.infolist()
    if len(infos) > limits.max_files:
        raise BundleError(
            BundleReason.TOO_MANY_FILES, f"the bundle has {len(infos)} entries; the limit is {limits.max_files}"
        )
    entries: list[_Entry] = []
    seen: set[str] = set()
    folders: set[str] = set()
    declared_total = 0
    for info in infos:
        path, is_dir = _check_name(info.orig_filename, limits)
        _check_type(info, is_dir)
        if path in seen:
            raise BundleError(BundleReason.DUPLICATE_ENTRY, f"entry {_show(path)} appears more than once")
        seen.add(path)
        parts = path.split("/")
        folders.update("/".join(parts[:i]) for i in range(1, len(parts)))
        if is_dir:
            folders.add(path)
        else:
            declared_total += info.file_size
            _check_declared_size(info, declared_total, limits)
        entries.append(_Entry(info=info, path=path, is_dir=is_dir))
    clash = next((e.path for e in entries if not e.is_dir and e.path in folders), None)
    if clash is not None:
        raise BundleError(BundleReason.DUPLICATE_ENTRY, f"entry {_show(clash)} is both a file and a folder")
    if not any(e.path == INDEX_NAME and not e.is_dir for e in entries):
        raise BundleError(BundleReason.NO_INDEX, f"there is no {INDEX_NAME} at the top level{_index_hint(entries)}")
    return entries


def _directory_bounds(fh: IO[bytes], size: int) -> tuple[int, int] | None:
    """(entry count, central directory bytes) from the end record, found the way zipfile finds it; None if absent."""
    tail_size = min(size, _EOCD.size + 0xFFFF)
    fh.seek(size - tail_size)
    tail = fh.read(tail_size)
    at = len(tail) - _EOCD.size
    if at < 0 or tail[at : at + 4] != _EOCD_SIGNATURE:
        at = tail.rfind(_EOCD_SIGNATURE)
    if at < 0 or at + _EOCD.size > len(tail):
        return None
    _, _, _, _, entries, directory_size, _, _ = _EOCD.unpack_from(tail, at)
    if entries != 0xFFFF and directory_size != 0xFFFFFFFF:
        return entries, directory_size
    locator_at = size - tail_size + at - _ZIP64_LOCATOR.size
    if locator_at < 0:
        return None
    fh.seek(locator_at)
    signature, _, record_at, _ = _ZIP64_LOCATOR.unpack(fh.read(_ZIP64_LOCATOR.size))
    if signature != _ZIP64_LOCATOR_SIGNATURE or record_at + _ZIP64_EOCD.size > size:
        return None
    fh.seek(record_at)
    record = fh.read(_ZIP64_EOCD.size)
    if record[:4] != _ZIP64_EOCD_SIGNATURE:
        return None
    fields = _ZIP64_EOCD.unpack(record)
    return fields[7], fields[8]


@contextmanager
def _open_zip(path: Path, limits: BundleLimits) -> Iterator[tuple[zipfile.ZipFile, int]]:
    """Open *path* as a zip after checking its size and its directory's size (before zipfile parses it)."""
    with open(path, "rb") as fh:
        size = os.fstat(fh.fileno()).st_size
        if size > limits.max_compressed_bytes:
            raise BundleError(
                BundleReason.TOO_LARGE, f"the zip is {_size(size)}; the limit is {_size(limits.max_compressed_bytes)}"
            )
        try:
            bounds = _directory_bounds(fh, size)
        except (OSError, ValueError, struct.error):
            bounds = None
        if bounds is not None:
            entries, directory_size = bounds
            if entries > limits.max_files:
                raise BundleError(
                    BundleReason.TOO_MANY_FILES, f"the bundle has {entries} entries; the limit is {limits.max_files}"
                )
            if directory_size > limits.max_files * _MAX_DIRECTORY_RECORD_BYTES:
                raise BundleError(
                    BundleReason.TOO_MANY_FILES,
                    f"the zip's table of contents is {_size(directory_size)}, too big for {limits.max_files} entries",
                )
        try:
            fh.seek(0)
            zf = zipfile.ZipFile(fh)
        except (*_ZIP_ERRORS, zipfile.LargeZipFile):
            raise BundleError(BundleReason.NOT_A_ZIP, f"{path.name} is not a readable zip file") from None
        with zf:
            yield zf, size


# --------------------------------------------------------------------------------------------------- reading


def _copy_entry(
    zf: zipfile.ZipFile, entry: _Entry, budget: int, limits: BundleLimits, sink: Callable[[bytes], object]
) -> int:
    """Decompress one member into *sink*, counting real bytes; returns the count.

    zipfile stops reading at the declared size, so the member is opened with a larger declared size: a header that
    under-declares shows up as more bytes than declared instead of being silently truncated.
    """
    info = entry.info
    shown = _show(entry.path)
    probe = copy.copy(info)
    probe.file_size = max(info.file_size, min(limits.max_file_bytes, budget)) + 1
    compressed = max(info.compress_size, 1)
    count = 0
    try:
        src = zf.open(probe)
    except _ZIP_ERRORS as exc:
        raise BundleError(BundleReason.CORRUPT, f"entry {shown} is damaged ({str(exc)[:200]})") from None
    with src:
        while True:
            try:
                chunk = src.read(_CHUNK)
            except _ZIP_ERRORS as exc:
                raise BundleError(BundleReason.CORRUPT, f"entry {shown} is damaged ({str(exc)[:200]})") from None
            if not chunk:
                break
            count += len(chunk)
            if count > info.file_size:
                raise BundleError(
                    BundleReason.ZIP_BOMB,
                    f"entry {shown} declares {info.file_size} bytes but unpacks to more (zip bomb or forged header)",
                )
            if count > budget:
                raise BundleError(
                    BundleReason.TOO_LARGE, f"the bundle unpacks to more than {_size(limits.max_total_bytes)}"
                )
            if count > limits.ratio_grace_bytes and count > compressed * limits.max_ratio:
                raise BundleError(BundleReason.ZIP_BOMB, f"entry {shown} expands more than {limits.max_ratio} times")
            sink(chunk)
    if count != info.file_size:
        raise BundleError(BundleReason.CORRUPT, f"entry {shown} holds {count} bytes but declares {info.file_size}")
    return count


def _discard(chunk: bytes) -> None:
    """A sink that only lets the bytes be counted."""


def _make_folder(root: Path, relative: str) -> Path:
    """Create ``root/relative`` (and parents) as real folders, mode 0755; never follows a link."""
    folder = root
    for part in relative.split("/") if relative else ():
        folder /= part
        try:
            os.mkdir(folder, _DIR_MODE)
        except FileExistsError:
            if not stat.S_ISDIR(os.lstat(folder).st_mode):
                raise BundleError(
                    BundleReason.DUPLICATE_ENTRY, f"{_show(relative)} is both a file and a folder"
                ) from None
        os.chmod(folder, _DIR_MODE)
    return folder


def _write_entry(zf: zipfile.ZipFile, entry: _Entry, root: Path, budget: int, limits: BundleLimits) -> int:
    parent, _, name = entry.path.rpartition("/")
    folder = _make_folder(root, parent)
    if entry.is_dir:
        _make_folder(folder, name)
        return 0
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
    fd = os.open(folder / name, flags, _FILE_MODE)
    with os.fdopen(fd, "wb") as out:
        os.fchmod(fd, _FILE_MODE)
        count = _copy_entry(zf, entry, budget, limits, out.write)
        out.flush()
        os.fsync(fd)
    return count


def _process(path: Path, limits: BundleLimits, root: Path | None) -> BundleInfo:
    """Check the bundle and stream every member (into *root* when given, else nowhere)."""
    with _open_zip(path, limits) as (zf, size):
        entries = _inspect(zf, limits)
        total = 0
        for entry in entries:
            budget = limits.max_total_bytes - total
            if root is not None:
                total += _write_entry(zf, entry, root, budget, limits)
            elif not entry.is_dir:
                total += _copy_entry(zf, entry, budget, limits, _discard)
    files = tuple(e.path for e in entries if not e.is_dir)
    return BundleInfo(files=files, total_bytes=total, compressed_bytes=size, has_index=INDEX_NAME in files)


# --------------------------------------------------------------------------------------------------- public API


def check_bundle(path: Path | str, limits: BundleLimits | None = None) -> BundleInfo:
    """Validate the bundle at *path* completely (every member is decompressed and counted, nothing is written).

    Raises :class:`BundleError`; an unreadable *path* raises the usual ``OSError``.
    """
    return _process(Path(path), limits or BundleLimits(), None)


def extract_bundle(path: Path | str, dest_dir: Path | str, limits: BundleLimits | None = None) -> BundleInfo:
    """Validate and extract the bundle at *path* into *dest_dir*, which must not exist yet.

    Files are written into a fresh hidden folder next to *dest_dir* (files 0644, folders 0755, no links), which is
    renamed into place only when everything succeeded; on any error it is removed and *dest_dir* is not created.
    Raises :class:`BundleError`, ``FileExistsError`` when *dest_dir* exists, or ``OSError`` for disk problems.
    """
    dest = Path(dest_dir)
    if dest.exists() or dest.is_symlink():
        raise FileExistsError(f"{dest} already exists")
    staging = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", suffix=".partial", dir=dest.parent))
    try:
        info = _process(Path(path), limits or BundleLimits(), staging)
        os.chmod(staging, _DIR_MODE)
        os.rename(staging, dest)  # a non-empty dest created meanwhile makes this fail
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    _fsync_folder(dest.parent)
    return info


def _fsync_folder(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
