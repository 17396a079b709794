"""HTML bundles: a zip uploaded by an operator is either a harmless little web site or refused with a reason.

Every refusal must leave nothing behind: the destination folder is never created and no staging folder remains.
"""

from __future__ import annotations

import io
import os
import stat
import struct
import tempfile
import warnings
import zipfile
from collections.abc import Iterable
from pathlib import Path

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from varta.bundles import (
    INDEX_NAME,
    BundleError,
    BundleInfo,
    BundleLimits,
    BundleReason,
    check_bundle,
    extract_bundle,
)

FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])

INDEX = b"<!doctype html><title>Transit</title><link rel=stylesheet href=css/site.css><img src=img/map.png>"
SITE: dict[str, bytes] = {
    INDEX_NAME: INDEX,
    "css/site.css": b"body { margin: 0 }\n" * 50,
    "img/map.png": bytes(range(256)) * 40,
    "js/app.js": b"console.log('hello');\n",
}

Member = tuple[str | zipfile.ZipInfo, bytes]


def _zip(path: Path, members: Iterable[Member], compression: int = zipfile.ZIP_DEFLATED) -> Path:
    """Write a zip; names may repeat (zipfile only warns)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with zipfile.ZipFile(path, "w", compression=compression) as zf:
            for name, data in members:
                zf.writestr(name, data)
    return path


def _site(path: Path, *extra: Member, site: dict[str, bytes] = SITE) -> Path:
    return _zip(path, [*site.items(), *extra])


def _entry(name: str, mode: int) -> zipfile.ZipInfo:
    info = zipfile.ZipInfo(name)
    info.create_system = 3  # Unix
    info.external_attr = mode << 16
    return info


def _patch_entry(path: Path, name: str, *, file_size: int | None = None, flag_bits: int | None = None) -> None:
    """Rewrite header fields of *name* in both the local header and the central directory (forged headers)."""
    data = bytearray(path.read_bytes())
    encoded = name.encode()
    with zipfile.ZipFile(path) as zf:
        local = zf.getinfo(name).header_offset
    central = 0
    while (central := data.find(b"PK\x01\x02", central)) >= 0:
        name_length = struct.unpack_from("<H", data, central + 28)[0]
        if data[central + 46 : central + 46 + name_length] == encoded:
            break
        central += 4
    assert central >= 0, f"no central record for {name}"
    if file_size is not None:
        struct.pack_into("<L", data, local + 22, file_size)
        struct.pack_into("<L", data, central + 24, file_size)
    if flag_bits is not None:
        struct.pack_into("<H", data, local + 6, flag_bits)
        struct.pack_into("<H", data, central + 8, flag_bits)
    path.write_bytes(bytes(data))


def _replace(path: Path, old: bytes, new: bytes) -> None:
    """Replace every occurrence of *old* by *new* (same length) in the zip's bytes (names live in two places)."""
    assert len(old) == len(new)
    data = path.read_bytes()
    assert data.count(old) >= 2
    path.write_bytes(data.replace(old, new))


def _understate_count(path: Path) -> None:
    """Make the end-of-directory record claim the zip holds one entry (zipfile ignores that count)."""
    data = bytearray(path.read_bytes())
    end = data.rfind(b"PK\x05\x06")
    struct.pack_into("<HH", data, end + 8, 1, 1)  # entries on this disk / in total
    path.write_bytes(bytes(data))


def _refused(bundle: Path, tmp_path: Path, limits: BundleLimits | None = None) -> BundleError:
    """Both check and extract refuse *bundle* for the same reason, and extraction leaves nothing behind."""
    with pytest.raises(BundleError) as checked:
        check_bundle(bundle, limits)
    dest = tmp_path / "out" / "bundle"
    dest.parent.mkdir(exist_ok=True)
    with pytest.raises(BundleError) as extracted:
        extract_bundle(bundle, dest, limits)
    assert extracted.value.reason is checked.value.reason
    assert not dest.exists()
    assert list(dest.parent.iterdir()) == []
    assert str(extracted.value).startswith("bundle refused: ")
    return extracted.value


# ---------------------------------------------------------------------------------------------------- good bundles


def test_a_good_bundle_extracts_with_its_files_and_safe_modes(tmp_path: Path) -> None:
    bundle = _site(tmp_path / "site.zip", ("img/", b""))
    dest = tmp_path / "bundles" / "abc123"
    dest.parent.mkdir()
    info = extract_bundle(bundle, dest)
    assert sorted(info.files) == sorted(SITE)
    assert info.total_bytes == sum(len(data) for data in SITE.values())
    assert info.compressed_bytes == bundle.stat().st_size
    assert info.has_index
    for name, data in SITE.items():
        assert (dest / name).read_bytes() == data
    for item in [dest, *dest.rglob("*")]:
        mode = os.lstat(item).st_mode
        assert not stat.S_ISLNK(mode)
        assert stat.S_IMODE(mode) == (0o755 if stat.S_ISDIR(mode) else 0o644), item
    assert [p.name for p in dest.parent.iterdir()] == ["abc123"]  # no staging folder left over


def test_check_reports_what_extract_would_write(tmp_path: Path) -> None:
    bundle = _site(tmp_path / "site.zip")
    dest = tmp_path / "dest"
    assert check_bundle(bundle) == extract_bundle(bundle, dest)
    assert check_bundle(str(bundle)) == BundleInfo(
        files=tuple(SITE),
        total_bytes=sum(map(len, SITE.values())),
        compressed_bytes=bundle.stat().st_size,
        has_index=True,
    )


def test_stored_and_empty_members_are_fine(tmp_path: Path) -> None:
    bundle = _zip(tmp_path / "stored.zip", [*SITE.items(), ("empty.txt", b"")], compression=zipfile.ZIP_STORED)
    info = extract_bundle(bundle, tmp_path / "dest")
    assert (tmp_path / "dest" / "empty.txt").read_bytes() == b""
    assert "empty.txt" in info.files


def test_highly_compressible_small_text_is_not_a_zip_bomb(tmp_path: Path) -> None:
    """Ratios are only checked above the grace size: 500 KiB of spaces compresses ~1000:1 and is fine."""
    bundle = _site(tmp_path / "site.zip", ("blank.css", b" " * 500_000))
    assert "blank.css" in check_bundle(bundle).files


def test_an_existing_destination_is_never_touched(tmp_path: Path) -> None:
    bundle = _site(tmp_path / "site.zip")
    dest = tmp_path / "dest"
    dest.mkdir()
    (dest / "keep.txt").write_text("old content")
    with pytest.raises(FileExistsError):
        extract_bundle(bundle, dest)
    assert [p.name for p in dest.iterdir()] == ["keep.txt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dest", "site.zip"]


# ---------------------------------------------------------------------------------------------------- names


def test_a_parent_folder_entry_is_path_traversal_with_a_clear_message(tmp_path: Path) -> None:
    error = _refused(_site(tmp_path / "evil.zip", ("../../etc/passwd", b"root::0:0")), tmp_path)
    assert error.reason is BundleReason.PATH_TRAVERSAL
    assert str(error) == "bundle refused: entry '../../etc/passwd' leaves the bundle folder"


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        ("css/../../escape.html", BundleReason.PATH_TRAVERSAL),
        ("..", BundleReason.PATH_TRAVERSAL),
        ("/etc/cron.d/evil", BundleReason.PATH_TRAVERSAL),
        ("C:/Windows/evil.dll", BundleReason.PATH_TRAVERSAL),
        ("c:evil.html", BundleReason.PATH_TRAVERSAL),
        ("..\\..\\evil.html", BundleReason.PATH_TRAVERSAL),
        ("css\\site.css", BundleReason.PATH_TRAVERSAL),
        ("css//site.css", BundleReason.BAD_NAME),
        ("./index2.html", BundleReason.BAD_NAME),
        ("bell\x07.html", BundleReason.BAD_NAME),
        ("line\nbreak.html", BundleReason.BAD_NAME),
        ("a/" * 300 + "deep.html", BundleReason.BAD_NAME),
        ("x" * 256 + ".html", BundleReason.BAD_NAME),
    ],
)
def test_unsafe_entry_names_are_refused(tmp_path: Path, name: str, reason: BundleReason) -> None:
    error = _refused(_site(tmp_path / "evil.zip", (name, b"x")), tmp_path)
    assert error.reason is reason
    shown = name[:120] if name.isprintable() else name.encode("unicode_escape").decode()
    assert f"entry '{shown}" in str(error)


def test_a_nul_byte_in_a_name_is_refused_although_zipfile_would_hide_it(tmp_path: Path) -> None:
    bundle = _site(tmp_path / "evil.zip", ("evil.html#png", b"<script>"))
    _replace(bundle, b"evil.html#png", b"evil.html\x00png")
    assert _refused(bundle, tmp_path).reason is BundleReason.BAD_NAME


# ---------------------------------------------------------------------------------------------------- entry types


def test_a_symlink_entry_is_refused(tmp_path: Path) -> None:
    link = _entry("passwd", stat.S_IFLNK | 0o777)
    error = _refused(_site(tmp_path / "link.zip", (link, b"../../../../etc/passwd")), tmp_path)
    assert error.reason is BundleReason.SYMLINK
    assert "'passwd'" in str(error)


def test_a_symlinked_folder_followed_by_a_file_inside_it_is_refused(tmp_path: Path) -> None:
    members: list[Member] = [(_entry("css", stat.S_IFLNK | 0o777), b"/etc"), ("css/cron.d", b"evil")]
    assert _refused(_site(tmp_path / "link.zip", *members), tmp_path).reason is BundleReason.SYMLINK


@pytest.mark.parametrize("kind", [stat.S_IFIFO, stat.S_IFCHR, stat.S_IFBLK, stat.S_IFSOCK])
def test_devices_fifos_and_sockets_are_special_files(tmp_path: Path, kind: int) -> None:
    special = _entry("dev", kind | 0o666)
    assert _refused(_site(tmp_path / "dev.zip", (special, b"")), tmp_path).reason is BundleReason.SPECIAL_FILE


def test_an_encrypted_entry_is_refused(tmp_path: Path) -> None:
    bundle = _site(tmp_path / "locked.zip")
    _patch_entry(bundle, "js/app.js", flag_bits=0x01)
    error = _refused(bundle, tmp_path)
    assert error.reason is BundleReason.ENCRYPTED
    assert "'js/app.js'" in str(error)


def test_an_unusual_compression_method_is_unsupported(tmp_path: Path) -> None:
    bundle = _zip(tmp_path / "bz.zip", SITE.items(), compression=zipfile.ZIP_BZIP2)
    assert _refused(bundle, tmp_path).reason is BundleReason.UNSUPPORTED


def test_an_entry_listed_twice_is_a_duplicate(tmp_path: Path) -> None:
    bundle = _site(tmp_path / "dup.zip", (INDEX_NAME, b"<script>evil()</script>"))
    assert _refused(bundle, tmp_path).reason is BundleReason.DUPLICATE_ENTRY


def test_a_name_that_is_both_a_file_and_a_folder_is_a_duplicate(tmp_path: Path) -> None:
    bundle = _site(tmp_path / "clash.zip", ("js/app.js/x.js", b"x"))
    error = _refused(bundle, tmp_path)
    assert error.reason is BundleReason.DUPLICATE_ENTRY
    assert "both a file and a folder" in str(error)


# ---------------------------------------------------------------------------------------------------- index


def test_a_bundle_without_index_html_at_the_top_is_refused(tmp_path: Path) -> None:
    site = {k: v for k, v in SITE.items() if k != INDEX_NAME}
    assert _refused(_zip(tmp_path / "x.zip", site.items()), tmp_path).reason is BundleReason.NO_INDEX


def test_a_bundle_zipped_with_its_folder_gets_a_hint(tmp_path: Path) -> None:
    bundle = _zip(tmp_path / "x.zip", [(f"transit/{name}", data) for name, data in SITE.items()])
    error = _refused(bundle, tmp_path)
    assert error.reason is BundleReason.NO_INDEX
    assert "'transit/index.html'" in str(error)
    assert "zip the folder's contents" in str(error)


def test_an_index_html_folder_does_not_count(tmp_path: Path) -> None:
    site = {k: v for k, v in SITE.items() if k != INDEX_NAME}
    bundle = _zip(tmp_path / "x.zip", [*site.items(), ("index.html/", b""), ("index.html/a.txt", b"")])
    assert _refused(bundle, tmp_path).reason is BundleReason.NO_INDEX


# ---------------------------------------------------------------------------------------------------- sizes


def test_a_zip_over_the_compressed_limit_is_too_large(tmp_path: Path) -> None:
    bundle = _site(tmp_path / "big.zip", ("video.bin", os.urandom(20_000)))
    error = _refused(bundle, tmp_path, BundleLimits(max_compressed_bytes=10_000))
    assert error.reason is BundleReason.TOO_LARGE


def test_one_oversized_file_is_too_large(tmp_path: Path) -> None:
    bundle = _site(tmp_path / "big.zip", ("video.bin", os.urandom(20_000)))
    error = _refused(bundle, tmp_path, BundleLimits(max_file_bytes=15_000))
    assert error.reason is BundleReason.TOO_LARGE
    assert str(error) == "bundle refused: entry 'video.bin' is 19.5 KiB; the limit is 14.6 KiB"


def test_files_that_together_unpack_beyond_the_total_limit_are_too_large(tmp_path: Path) -> None:
    members = [(f"img/{n}.bin", os.urandom(5_000)) for n in range(4)]
    error = _refused(_site(tmp_path / "big.zip", *members), tmp_path, BundleLimits(max_total_bytes=15_000))
    assert error.reason is BundleReason.TOO_LARGE


def test_too_many_files_are_refused_before_the_directory_is_read(tmp_path: Path) -> None:
    members = [(f"img/{n}.txt", b"x") for n in range(20)]
    error = _refused(_site(tmp_path / "many.zip", *members), tmp_path, BundleLimits(max_files=10))
    assert error.reason is BundleReason.TOO_MANY_FILES


def test_a_table_of_contents_too_big_for_the_file_limit_is_refused_before_it_is_parsed(tmp_path: Path) -> None:
    members = [(f"img/{n}-" + "x" * 200 + ".txt", b"x") for n in range(9)]
    bundle = _site(tmp_path / "long.zip", *members)
    _understate_count(bundle)
    error = _refused(bundle, tmp_path, BundleLimits(max_files=1))
    assert error.reason is BundleReason.TOO_MANY_FILES
    assert "table of contents" in str(error)


def test_too_many_files_are_refused_even_when_the_end_record_understates_the_count(tmp_path: Path) -> None:
    bundle = _site(tmp_path / "many.zip", *[(f"img/{n}.txt", b"x") for n in range(20)])
    _understate_count(bundle)
    assert _refused(bundle, tmp_path, BundleLimits(max_files=10)).reason is BundleReason.TOO_MANY_FILES


def test_an_honest_but_extreme_compression_ratio_is_a_zip_bomb(tmp_path: Path) -> None:
    bundle = _site(tmp_path / "bomb.zip", ("zeros.bin", bytes(8 * 1024 * 1024)))
    error = _refused(bundle, tmp_path)
    assert error.reason is BundleReason.ZIP_BOMB
    assert "'zeros.bin'" in str(error)


@pytest.mark.parametrize("compression", [zipfile.ZIP_DEFLATED, zipfile.ZIP_STORED])
def test_a_member_whose_header_understates_its_size_is_a_zip_bomb(tmp_path: Path, compression: int) -> None:
    """The headers claim 100 bytes; the data unpacks to 3 MiB. Real bytes are counted, headers are not believed."""
    bundle = _zip(tmp_path / "liar.zip", [*SITE.items(), ("liar.bin", bytes(3 * 1024 * 1024))], compression)
    _patch_entry(bundle, "liar.bin", file_size=100)
    with zipfile.ZipFile(bundle) as zf:
        assert zf.getinfo("liar.bin").file_size == 100
    error = _refused(bundle, tmp_path, BundleLimits(max_ratio=1_000_000))
    assert error.reason is BundleReason.ZIP_BOMB
    assert "declares 100 bytes" in str(error)


def test_a_member_whose_header_overstates_its_size_is_corrupt(tmp_path: Path) -> None:
    bundle = _site(tmp_path / "short.zip")
    _patch_entry(bundle, "js/app.js", file_size=5000)
    assert _refused(bundle, tmp_path).reason is BundleReason.CORRUPT


def test_a_member_with_damaged_data_is_corrupt(tmp_path: Path) -> None:
    bundle = _zip(tmp_path / "bad.zip", [*SITE.items(), ("data.txt", b"A" * 1000)], compression=zipfile.ZIP_STORED)
    data = bundle.read_bytes()
    assert data.count(b"A" * 1000) == 1
    bundle.write_bytes(data.replace(b"A" * 1000, b"A" * 999 + b"B"))  # the CRC no longer matches
    assert _refused(bundle, tmp_path).reason is BundleReason.CORRUPT


# ---------------------------------------------------------------------------------------------------- not zips


@pytest.mark.parametrize(
    "content",
    [b"", b"hello, world", b"PK\x03\x04" + bytes(100), b"%PDF-1.7\n" + os.urandom(2000)],
    ids=["empty", "text", "bare-header", "pdf"],
)
def test_something_else_is_not_a_zip(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "upload.zip"
    path.write_bytes(content)
    error = _refused(path, tmp_path)
    assert error.reason is BundleReason.NOT_A_ZIP
    assert "upload.zip is not a readable zip file" in str(error)


def test_a_truncated_zip_is_not_a_zip(tmp_path: Path) -> None:
    bundle = _site(tmp_path / "cut.zip")
    bundle.write_bytes(bundle.read_bytes()[: bundle.stat().st_size // 2])
    assert _refused(bundle, tmp_path).reason is BundleReason.NOT_A_ZIP


# ---------------------------------------------------------------------------------------------------- fuzzing


def _good_zip_bytes() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for name, data in SITE.items():
            zf.writestr(name, data)
    return buffer.getvalue()


GOOD = _good_zip_bytes()


def _outcome(content: bytes) -> BundleInfo | BundleError:
    """Extract *content*; the result or the BundleError. Any other exception fails the test."""
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        bundle = root / "upload.zip"
        bundle.write_bytes(content)
        out = root / "out"
        out.mkdir()
        try:
            info = extract_bundle(bundle, out / "bundle")
        except BundleError as exc:
            assert isinstance(exc.reason, BundleReason)
            assert list(out.iterdir()) == []
            return exc
        extracted = sorted(str(p.relative_to(out / "bundle")) for p in (out / "bundle").rglob("*") if p.is_file())
        assert extracted == sorted(info.files)
        assert all(not p.is_symlink() for p in (out / "bundle").rglob("*"))
        return info


@FUZZ
@given(content=st.binary(max_size=4096))
@example(content=b"PK\x05\x06" + bytes(18))
@example(content=b"PK\x05\x06" + b"\xff" * 18)
@example(content=b"PK\x06\x07" + b"\xff" * 16 + b"PK\x05\x06" + b"\xff" * 18)
def test_arbitrary_bytes_only_ever_raise_bundle_error(content: bytes) -> None:
    assert isinstance(_outcome(content), BundleError)


@FUZZ
@given(changes=st.lists(st.tuples(st.integers(0, len(GOOD) - 1), st.integers(1, 255)), min_size=1, max_size=4))
def test_a_damaged_good_bundle_extracts_or_is_refused_with_a_reason(changes: list[tuple[int, int]]) -> None:
    data = bytearray(GOOD)
    for position, mask in changes:
        data[position] ^= mask
    _outcome(bytes(data))
