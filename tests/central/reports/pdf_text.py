"""A small reader for the PDFs fpdf2 writes: page count and the text of each page (no poppler, no pypdf).

fpdf2 shows text in embedded TrueType subsets as 2-byte glyph ids (Identity-H); each font carries a ToUnicode CMap
that maps them back to characters. This reader follows exactly that: objects → pages → content streams → ``Tf`` /
``Tj`` / ``TJ`` → CMap. It handles uncompressed and Flate-compressed streams.
"""

from __future__ import annotations

import re
import zlib
from dataclasses import dataclass

_OBJ = re.compile(rb"(\d+) 0 obj\s*")
_REF = rb"(\d+) 0 R"


@dataclass
class PdfObject:
    dictionary: bytes
    stream: bytes | None


def objects(data: bytes) -> dict[int, PdfObject]:
    """Every ``N 0 obj`` with its dictionary text and (decoded) stream."""
    found: dict[int, PdfObject] = {}
    pos = 0
    while (m := _OBJ.search(data, pos)) is not None:
        number = int(m[1])
        start = m.end()
        stream_at = data.find(b"stream", start)
        end_at = data.find(b"endobj", start)
        if stream_at != -1 and stream_at < end_at:
            dictionary = data[start:stream_at]
            length = int(re.search(rb"/Length (\d+)", dictionary)[1])  # type: ignore[index]
            body_start = stream_at + len(b"stream")
            body_start += 2 if data[body_start : body_start + 2] == b"\r\n" else 1
            raw = data[body_start : body_start + length]
            if b"/FlateDecode" in dictionary:
                raw = zlib.decompress(raw)
            found[number] = PdfObject(dictionary, raw)
            pos = data.find(b"endobj", body_start + length) + len(b"endobj")
        else:
            found[number] = PdfObject(data[start:end_at], None)
            pos = end_at + len(b"endobj")
    return found


def page_objects(objs: dict[int, PdfObject]) -> list[PdfObject]:
    """The page objects, in the order of the page tree's ``/Kids``."""
    root = next(o for o in objs.values() if re.search(rb"/Type\s*/Pages\b", o.dictionary))
    kids = re.search(rb"/Kids\s*\[([^\]]*)\]", root.dictionary)
    assert kids is not None
    return [objs[int(n)] for n in re.findall(_REF, kids[1])]


def page_count(data: bytes) -> int:
    """How many pages the PDF has (the page objects, checked against the tree's ``/Count``)."""
    objs = objects(data)
    pages = page_objects(objs)
    root = next(o for o in objs.values() if re.search(rb"/Type\s*/Pages\b", o.dictionary))
    count = re.search(rb"/Count (\d+)", root.dictionary)
    assert count is not None and int(count[1]) == len(pages)
    return len(pages)


def _cmap(stream: bytes) -> dict[int, str]:
    mapping: dict[int, str] = {}
    for block in re.findall(rb"beginbfchar(.*?)endbfchar", stream, re.S):
        for src, dst in re.findall(rb"<([0-9A-Fa-f]+)>\s*<([0-9A-Fa-f]+)>", block):
            mapping[int(src, 16)] = bytes.fromhex(dst.decode()).decode("utf-16-be")
    for block in re.findall(rb"beginbfrange(.*?)endbfrange", stream, re.S):
        for lo, hi, dst in re.findall(rb"<([0-9A-Fa-f]+)>\s*<([0-9A-Fa-f]+)>\s*<([0-9A-Fa-f]+)>", block):
            first = int(dst, 16)
            for i, code in enumerate(range(int(lo, 16), int(hi, 16) + 1)):
                mapping[code] = chr(first + i)
    return mapping


def _fonts(objs: dict[int, PdfObject], page: PdfObject) -> dict[bytes, dict[int, str]]:
    resources = page.dictionary
    ref = re.search(rb"/Resources " + _REF, resources)
    if ref is not None:
        resources = objs[int(ref[1])].dictionary
    fonts: dict[bytes, dict[int, str]] = {}
    font_dict = re.search(rb"/Font\s*<<(.*?)>>", resources, re.S)
    if font_dict is None:
        return fonts
    for name, number in re.findall(rb"/(\w+) " + _REF, font_dict[1]):
        font = objs[int(number)].dictionary
        to_unicode = re.search(rb"/ToUnicode " + _REF, font)
        stream = objs[int(to_unicode[1])].stream if to_unicode else None
        fonts[name] = _cmap(stream) if stream else {}
    return fonts


def _literal(content: bytes, i: int) -> tuple[bytes, int]:
    """The PDF string literal starting at ``content[i] == '('``; returns its bytes and the index after it."""
    out = bytearray()
    depth = 0
    i += 1
    while True:
        c = content[i]
        if c == 0x5C:  # backslash
            n = content[i + 1]
            simple = {ord("n"): 10, ord("r"): 13, ord("t"): 9, ord("b"): 8, ord("f"): 12}
            if n in simple:
                out.append(simple[n])
                i += 2
            elif 0x30 <= n <= 0x37:
                digits = re.match(rb"[0-7]{1,3}", content[i + 1 : i + 4])
                assert digits is not None
                out.append(int(digits[0], 8) & 0xFF)
                i += 1 + len(digits[0])
            elif n in (10, 13):
                i += 2
            else:
                out.append(n)
                i += 2
            continue
        if c == ord("("):
            depth += 1
        elif c == ord(")"):
            if depth == 0:
                return bytes(out), i + 1
            depth -= 1
        out.append(c)
        i += 1


def _decode(raw: bytes, cmap: dict[int, str]) -> str:
    return "".join(cmap.get(int.from_bytes(raw[k : k + 2], "big"), "?") for k in range(0, len(raw) - 1, 2))


def page_texts(data: bytes) -> list[str]:
    """The text of every page: each shown string on a line of its own."""
    objs = objects(data)
    texts: list[str] = []
    for page in page_objects(objs):
        fonts = _fonts(objs, page)
        contents = re.search(rb"/Contents " + _REF, page.dictionary)
        assert contents is not None
        content = objs[int(contents[1])].stream or b""
        lines: list[str] = []
        font: dict[int, str] = {}
        i = 0
        current: list[str] = []
        while i < len(content):
            c = content[i]
            if c == ord("("):
                raw, i = _literal(content, i)
                current.append(_decode(raw, font))
                continue
            if c == ord("/"):
                m = re.match(rb"/(\w+)\s+[\d.]+\s+Tf", content[i:])
                if m is not None:
                    font = fonts.get(m[1], {})
                    i += m.end()
                    continue
            if content[i : i + 2] in (b"Tj", b"TJ"):
                lines.append("".join(current))
                current = []
                i += 2
                continue
            i += 1
        texts.append("\n".join(lines))
    return texts
