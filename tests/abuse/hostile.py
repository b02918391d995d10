"""A corpus of hostile and odd uploads, built in memory at test time (nothing binary is committed).

``hostile_cases(max_pixels)`` returns ``Case(name, filename, data, expected)``: what a
client might send to ``POST /detect`` and the statuses the service may answer. Each
case has exactly one expected status unless the format genuinely allows two outcomes
(noted where so). Bytes are either written by Pillow or assembled by hand (PNG chunks,
TIFF IFDs, patched headers) where Pillow refuses to write something a client could send.
"""

from __future__ import annotations

import io
import struct
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image

OK = frozenset({200})
CORRUPT = frozenset({400})  # corrupt_image
UNSUPPORTED = frozenset({415})  # unsupported_media_type
TOO_LARGE = frozenset({413})  # image_too_large
TOO_SMALL = frozenset({422})  # image_too_small
SIZE = 320  # above the 256 crop, not a multiple of it: exercises the crop grid

# The error code each refusal status must carry (the JSON error shape's `code`).
CODES = {400: "corrupt_image", 413: "image_too_large", 415: "unsupported_media_type", 422: "image_too_small"}


@dataclass(frozen=True)
class Case:
    name: str
    filename: str
    data: bytes
    expected: frozenset[int]


# -- building blocks ----------------------------------------------------------------------------


def noise(width: int = SIZE, height: int = SIZE, channels: int = 3, seed: int = 0) -> np.ndarray:
    """Uint8 noise: scores well away from any degenerate input."""
    shape = (height, width, channels) if channels > 1 else (height, width)
    return np.random.default_rng(seed).integers(0, 256, shape, dtype=np.uint8)


def encode(image: Image.Image, fmt: str, **options: Any) -> bytes:
    buf = io.BytesIO()
    image.save(buf, format=fmt, **options)
    return buf.getvalue()


def rgb(width: int = SIZE, height: int = SIZE, seed: int = 0) -> Image.Image:
    return Image.fromarray(noise(width, height, 3, seed))


def png_chunk(kind: bytes, data: bytes, crc: int | None = None) -> bytes:
    crc = zlib.crc32(kind + data) if crc is None else crc
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)


def raw_png(width: int, height: int, depth: int, colour: int, rows: bytes, extra: bytes = b"") -> bytes:
    """A PNG assembled chunk by chunk; ``rows`` are the filtered scanlines (filter byte first)."""
    header = struct.pack(">IIBBBBB", width, height, depth, colour, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", header) + extra
            + png_chunk(b"IDAT", zlib.compress(rows, 9)) + png_chunk(b"IEND", b""))


def zero_rows(width: int, height: int, bytes_per_pixel: int) -> bytes:
    """Filtered scanlines of zeros, streamed into zlib: a huge image costs a tiny file."""
    return (b"\x00" + b"\x00" * width * bytes_per_pixel) * height


def png_16bit_rgb(width: int = SIZE, height: int = SIZE) -> bytes:
    """Pillow cannot write 16-bit RGB PNGs; clients can."""
    pixels = np.random.default_rng(1).integers(0, 65536, (height, width, 3), dtype=np.uint16)
    rows = b"".join(b"\x00" + row.astype(">u2").tobytes() for row in pixels)
    return raw_png(width, height, 16, 2, rows)


def png_deflate_bomb(width: int, height: int) -> bytes:
    """A real, complete greyscale PNG of zeros: every byte valid, pixel count just over the limit."""
    compressor = zlib.compressobj(9)
    row = b"\x00" * (width + 1)
    body = b"".join(compressor.compress(row) for _ in range(height)) + compressor.flush()
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", header) + png_chunk(b"IDAT", body)
            + png_chunk(b"IEND", b""))


def tiff(width: int, height: int, strip: bytes) -> bytes:
    """A minimal little-endian 8-bit greyscale TIFF whose header may declare any size."""
    entries = [(256, 4, width), (257, 4, height), (258, 3, 8), (259, 3, 1), (262, 3, 1),
               (273, 4, 0), (277, 3, 1), (278, 4, height), (279, 4, len(strip))]
    ifd_size = 2 + 12 * len(entries) + 4
    data_offset = 8 + ifd_size
    ifd = struct.pack("<H", len(entries))
    for tag, kind, value in entries:
        value = data_offset if tag == 273 else value
        packed = struct.pack("<HH", value, 0) if kind == 3 else struct.pack("<I", value)
        ifd += struct.pack("<HHI", tag, kind, 1) + packed
    return b"II*\x00" + struct.pack("<I", 8) + ifd + struct.pack("<I", 0) + strip


def patch(data: bytes, offset: int, fmt: str, *values: int) -> bytes:
    out = bytearray(data)
    struct.pack_into(fmt, out, offset, *values)
    return bytes(out)


def jpeg_claiming(width: int, height: int) -> bytes:
    """A small JPEG whose SOF0 frame header is rewritten to declare ``width`` x ``height``."""
    data = encode(rgb(64, 64), "JPEG", quality=90)
    sof = data.index(b"\xff\xc0")
    return patch(data, sof + 5, ">HH", height, width)


def jpeg_with_orientation(orientation: int) -> bytes:
    image = rgb(SIZE, 288, seed=7)  # not square, so a rotation would show in width/height
    exif = Image.Exif()
    exif[0x0112] = orientation
    return encode(image, "JPEG", quality=95, exif=exif.tobytes())


def animated_gif() -> bytes:
    frames = [Image.fromarray(noise(seed=s)).convert("P") for s in range(3)]
    return encode(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=40, loop=0)


def multipage_tiff() -> bytes:
    pages = [rgb(seed=s) for s in range(3)]
    return encode(pages[0], "TIFF", save_all=True, append_images=pages[1:])


def float_tiff(values: np.ndarray) -> bytes:
    return encode(Image.fromarray(values.astype(np.float32)), "TIFF")


def palette_png(transparent: bool) -> bytes:
    image = rgb().quantize(64)
    return encode(image, "PNG", transparency=0) if transparent else encode(image, "PNG")


def checkerboard() -> bytes:
    board = (np.indices((SIZE, SIZE)).sum(axis=0) % 2 * 255).astype(np.uint8)
    return encode(Image.fromarray(board).convert("RGB"), "PNG")


def constant(value: tuple[int, int, int], fmt: str = "PNG") -> bytes:
    return encode(Image.new("RGB", (SIZE, SIZE), value), fmt)


def huge_icc_jpeg() -> bytes:
    """A JPEG carrying a 60 KB EXIF segment and a 1 MB (multi-segment) ICC profile."""
    icc = b"\x00" * 128 + bytes(np.random.default_rng(2).integers(0, 256, 1_000_000, dtype=np.uint8))
    exif = Image.Exif()
    exif[0x010E] = "x" * 60_000  # ImageDescription: close to one APP1 segment's 64 KB
    return encode(rgb(), "JPEG", quality=90, icc_profile=icc, exif=exif.tobytes())


def huge_text_png() -> bytes:
    """A 4 MB zTXt chunk that inflates beyond Pillow's text limit, placed before the image data."""
    text = b"comment\x00\x00" + zlib.compress(b"A" * 16_000_000, 9)
    good = encode(rgb(), "PNG")
    after_header = 8 + 25  # signature + IHDR chunk
    return good[:after_header] + png_chunk(b"zTXt", text) + good[after_header:]


def bad_crc_png() -> bytes:
    good = encode(rgb(), "PNG")
    return patch(good, 8 + 4 + 4 + 13, ">I", 0xDEADBEEF)  # the IHDR CRC


def eps() -> bytes:
    """PostScript: Pillow identifies it, and loading would run Ghostscript. Must be refused on format."""
    return (b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 320 320\n"
            b"/Helvetica findfont 12 scalefont setfont 10 10 moveto (hi) show showpage\n%%EOF\n")


def lab_tiff() -> bytes:
    return encode(rgb().convert("LAB"), "TIFF")


# -- the corpus ---------------------------------------------------------------------------------


def hostile_cases(max_pixels: int) -> list[Case]:
    """Every case, for a server whose DIF_MAX_PIXELS is ``max_pixels``."""
    side = int(max_pixels**0.5)
    builders: list[tuple[str, str, Callable[[], bytes], frozenset[int]]] = [
        # broken or truncated data: the header reads, the pixels do not
        ("png-truncated", "cut.png", lambda: encode(rgb(), "PNG")[:4000], CORRUPT),
        ("jpeg-truncated", "cut.jpg", lambda: encode(rgb(), "JPEG")[:3000], CORRUPT),
        ("png-header-only", "header.png", lambda: encode(rgb(), "PNG")[:40], CORRUPT),
        ("png-bad-crc", "crc.png", bad_crc_png, CORRUPT),
        ("png-zero-width", "zero.png", lambda: raw_png(0, 10, 8, 0, b""), CORRUPT),
        ("zero-bytes", "empty.png", lambda: b"", UNSUPPORTED),
        ("lab-tiff", "lab.tif", lab_tiff, OK),
        # not images, or formats we do not take, whatever the file name says
        ("html-named-png", "page.png", lambda: b"<!doctype html><html><body>hi</body></html>", UNSUPPORTED),
        ("svg-named-png", "vector.png", lambda: b'<svg xmlns="http://www.w3.org/2000/svg" width="9999999" '
                                                b'height="9999999"><rect width="1" height="1"/></svg>',
         UNSUPPORTED),
        ("eps-named-png", "doc.png", eps, UNSUPPORTED),
        ("ico", "favicon.ico", lambda: encode(rgb(256, 256), "ICO", sizes=[(256, 256)]), UNSUPPORTED),
        # headers declaring far more pixels than the limit: refused before decoding
        ("png-claims-100k", "bomb.png", lambda: raw_png(100_000, 100_000, 8, 2, b"\x00" * 64), TOO_LARGE),
        ("jpeg-claims-65k", "bomb.jpg", lambda: jpeg_claiming(65_000, 65_000), TOO_LARGE),
        ("gif-claims-65k", "bomb.gif", lambda: patch(encode(rgb(64, 64).convert("P"), "GIF"), 6, "<HH",
                                                     65_535, 65_535), TOO_LARGE),
        ("bmp-claims-100k", "bomb.bmp", lambda: patch(encode(rgb(64, 64), "BMP"), 18, "<ii",
                                                      100_000, 100_000), TOO_LARGE),
        ("tiff-claims-100k", "bomb.tif", lambda: tiff(100_000, 100_000, b"\x00" * 64), TOO_LARGE),
        ("png-deflate-bomb", "zeros.png", lambda: png_deflate_bomb(side + 1, side + 1), TOO_LARGE),
        # valid but odd: must score, with finite numbers
        ("png-just-under-limit", "big.png", lambda: png_deflate_bomb(side, side), OK),
        ("png-16bit-grey", "grey16.png", lambda: encode(Image.fromarray(
            noise(channels=1).astype(np.uint16) * 257), "PNG"), OK),
        ("png-16bit-rgb", "rgb16.png", png_16bit_rgb, OK),
        ("jpeg-cmyk", "cmyk.jpg", lambda: encode(rgb().convert("CMYK"), "JPEG"), OK),
        ("png-palette", "palette.png", lambda: palette_png(False), OK),
        ("png-palette-transparent", "palette-t.png", lambda: palette_png(True), OK),
        ("png-rgba", "rgba.png", lambda: encode(Image.fromarray(noise(channels=4)), "PNG"), OK),
        ("png-la", "la.png", lambda: encode(rgb().convert("LA"), "PNG"), OK),
        ("png-grey", "grey.png", lambda: encode(rgb().convert("L"), "PNG"), OK),
        ("png-1bit", "bits.png", lambda: encode(rgb().convert("1"), "PNG"), OK),
        ("gif-animated", "anim.gif", animated_gif, OK),
        ("tiff-multipage", "pages.tif", multipage_tiff, OK),
        ("tiff-float", "float.tif", lambda: float_tiff(np.random.default_rng(3).normal(0, 100, (SIZE, SIZE))), OK),
        ("tiff-float-nan", "nan.tif", lambda: float_tiff(np.full((SIZE, SIZE), np.nan)), CORRUPT),
        ("tiff-float-inf", "inf.tif", lambda: float_tiff(np.where(noise(channels=1) > 128, np.inf, 1.0)), CORRUPT),
        ("tiff-1bit", "bits.tif", lambda: encode(rgb().convert("1"), "TIFF"), OK),
        ("webp-lossless", "img.webp", lambda: encode(rgb(), "WEBP", lossless=True), OK),
        ("webp-lossy", "lossy.webp", lambda: encode(rgb(), "WEBP", quality=80), OK),
        ("bmp", "img.bmp", lambda: encode(rgb(), "BMP"), OK),
        ("ppm-16bit", "img.ppm", lambda: b"P6 320 320 65535\n" + png_16bit_rgb_pixels(), OK),
        ("jpeg-exif-orientation-6", "rot6.jpg", lambda: jpeg_with_orientation(6), OK),
        ("jpeg-exif-orientation-8", "rot8.jpg", lambda: jpeg_with_orientation(8), OK),
        ("jpeg-huge-icc-exif", "icc.jpg", huge_icc_jpeg, OK),
        ("png-huge-ztxt", "text.png", huge_text_png, CORRUPT),
        ("constant-grey", "flat.png", lambda: constant((128, 128, 128)), OK),
        ("all-white", "white.png", lambda: constant((255, 255, 255)), OK),
        ("all-black", "black.png", lambda: constant((0, 0, 0)), OK),
        ("all-black-jpeg", "black.jpg", lambda: constant((0, 0, 0), "JPEG"), OK),
        ("checkerboard", "board.png", checkerboard, OK),
        ("garbage-after-iend", "tail.png", lambda: encode(rgb(), "PNG") + b"\x00garbage" * 10_000, OK),
        ("png-zip-polyglot", "poly.png", lambda: encode(rgb(), "PNG") + b"PK\x03\x04" + b"\x00" * 26, OK),
        # too small to hold a crop
        ("one-pixel", "dot.png", lambda: encode(Image.new("RGB", (1, 1), (9, 9, 9)), "PNG"), TOO_SMALL),
        ("10000x2", "line.png", lambda: encode(rgb(10_000, 2), "PNG"), TOO_SMALL),
    ]
    return [Case(name, filename, build(), expected) for name, filename, build, expected in builders]


def png_16bit_rgb_pixels() -> bytes:
    return np.random.default_rng(4).integers(0, 65536, (SIZE, SIZE, 3), dtype=np.uint16).astype(">u2").tobytes()
