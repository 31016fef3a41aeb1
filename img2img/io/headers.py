"""Image file headers read without decoding pixels: format by magic bytes, then width, height and the
fields the decoder checks (bit depth, orientation, TIFF sample format) for PNG, JPEG, TIFF, WebP and BMP,
so decompression bombs are refused before any pixel is decoded."""

from __future__ import annotations

import struct
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from img2img.errors import ImageError


@dataclass(frozen=True)
class _Header:
    format: str
    width: int
    height: int
    png_bits: int = 0  # PNG only: IHDR bit depth and colour type (0 grey, 2 RGB, 3 palette, 4 LA, 6 RGBA)
    png_colour: int = -1
    tags: dict[int, Any] = field(default_factory=dict)  # TIFF only: the first page's tags we use
    more_pages: bool = False  # TIFF only
    orientation_at: int = 0  # TIFF only: file offset of the orientation value


_MAGIC = (
    (b"\x89PNG\r\n\x1a\n", "png"), (b"\xff\xd8\xff", "jpeg"), (b"GIF87a", "gif"), (b"GIF89a", "gif"),
    (b"II*\x00", "tiff"), (b"MM\x00*", "tiff"), (b"II+\x00", "tiff"), (b"MM\x00+", "tiff"), (b"BM", "bmp"),
)  # fmt: skip


def _sniff(d: Any) -> str | None:
    if d[:4] == b"RIFF" and d[8:12] == b"WEBP":
        return "webp"
    return next((fmt for magic, fmt in _MAGIC if d[: len(magic)] == magic), None)


def _png_header(d: Any) -> _Header:
    if d[12:16] != b"IHDR":
        raise ValueError("first chunk is not IHDR")
    w, h, bits, colour = struct.unpack_from(">IIBB", d, 16)
    return _Header("png", w, h, bits, colour)


def _jpeg_header(d: Any) -> _Header:
    sof = set(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}  # frame headers; C4/C8/CC are other segments
    pos = 2
    while True:
        if d[pos] != 0xFF:
            raise ValueError("marker expected")
        while d[pos] == 0xFF:  # fill bytes
            pos += 1
        marker = d[pos]
        pos += 1
        if marker in sof:
            h, w = struct.unpack_from(">HH", d, pos + 3)
            return _Header("jpeg", w, h)
        if marker in (0xD9, 0xDA):
            raise ValueError("no frame header before the image data")
        if not (marker == 0x01 or 0xD0 <= marker <= 0xD8):  # these markers carry no length
            pos += struct.unpack_from(">H", d, pos)[0]


_TIFF_TAGS = (256, 257, 258, 262, 274, 338, 339, 34675)  # size, bits, photometric, orientation, extra, format, ICC
_TIFF_TYPES = {1: "B", 3: "H", 4: "I", 7: "B", 16: "Q"}


def _tiff_header(d: Any) -> _Header:
    order = "<" if d[:2] == b"II" else ">"
    big = struct.unpack_from(order + "H", d, 2)[0] == 43  # BigTIFF: 8-byte offsets and counts
    off, cnt, step = ("Q", "Q", 20) if big else ("I", "H", 12)
    ifd = struct.unpack_from(order + off, d, 8 if big else 4)[0]
    count = struct.unpack_from(order + cnt, d, ifd)[0]
    start = ifd + struct.calcsize(cnt)
    tags: dict[int, Any] = {}
    orientation_at = 0
    for e in range(start, start + count * step, step):
        tag, kind, n = struct.unpack_from(order + "HH" + off, d, e)
        if tag in _TIFF_TAGS and kind in _TIFF_TYPES and (n <= 16 or kind == 7):  # bounded work
            size, at = struct.calcsize(_TIFF_TYPES[kind]) * n, e + 4 + struct.calcsize(off)
            at = struct.unpack_from(order + off, d, at)[0] if size > struct.calcsize(off) else at
            fmt = f"{order}{n}{_TIFF_TYPES[kind]}"
            tags[tag] = bytes(d[at : at + size]) if kind == 7 else struct.unpack_from(fmt, d, at)
            orientation_at = at if tag == 274 and kind == 3 else orientation_at
    more = struct.unpack_from(order + off, d, start + count * step)[0] != 0
    return _Header("tiff", tags[256][0], tags[257][0], tags=tags, more_pages=more, orientation_at=orientation_at)


def _webp_header(d: Any) -> _Header:
    if len(d) < 30:
        raise ValueError("too short")
    kind = d[12:16]
    if kind == b"VP8X":
        w, h = 1 + int.from_bytes(d[24:27], "little"), 1 + int.from_bytes(d[27:30], "little")
    elif kind == b"VP8L":
        bits = struct.unpack_from("<I", d, 21)[0]
        w, h = (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1
    elif kind == b"VP8 ":
        w, h = (v & 0x3FFF for v in struct.unpack_from("<HH", d, 26))
    else:
        raise ValueError(f"unknown WebP chunk {bytes(kind)!r}")
    return _Header("webp", w, h)


def _bmp_header(d: Any) -> _Header:
    if struct.unpack_from("<I", d, 14)[0] == 12:  # old OS/2 header with 16-bit sizes
        return _Header("bmp", *struct.unpack_from("<HH", d, 18))
    w, h = struct.unpack_from("<ii", d, 18)
    return _Header("bmp", w, abs(h))  # negative height means rows are stored top-down


_HEADER_PARSERS: dict[str, Callable[[Any], _Header]] = {
    "png": _png_header, "jpeg": _jpeg_header, "tiff": _tiff_header,
    "webp": _webp_header, "bmp": _bmp_header,
    "gif": lambda d: _Header("gif", *struct.unpack_from("<HH", d, 6)),
}  # fmt: skip


def _parse_header(data: Any, name: str) -> _Header:
    if len(data) == 0:
        raise ImageError(f"{name}: the file is empty (0 bytes)")
    fmt = _sniff(data)
    if fmt is None:
        raise ImageError(f"{name}: not an image (the content is not PNG, JPEG, WebP, TIFF, BMP or GIF)")
    try:
        return _HEADER_PARSERS[fmt](data)
    except (struct.error, IndexError, KeyError, ValueError, OverflowError) as e:
        raise ImageError(f"{name}: the {fmt.upper()} header is truncated or corrupt") from e
