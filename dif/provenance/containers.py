"""Container walks done before any parser runs: the C2PA manifest store's size (JPEG APP11, PNG
caBX, WebP C2PA, the JUMBF box itself) and the container's media type from its leading bytes."""

from __future__ import annotations

import mimetypes
from collections.abc import Callable

from dif.provenance.findings import MAX_CONTAINER_STEPS, MAX_JUMBF_CANDIDATES


class Refused(Exception):
    """The manifest store is not handed to the parser (too large, container too fragmented)."""


def manifest_store_size(data: bytes) -> int | None:
    """Bytes of the embedded C2PA manifest store, or None when there is none.

    Looks for the C2PA JUMBF superbox (type ``jumb`` whose description box carries the C2PA
    UUID, which starts with the ASCII ``c2pa``) before calling into the parser, so an image
    without a manifest costs one ``bytes.find``. The size is the larger of what the box
    declares and what the container really holds (JPEG APP11, PNG caBX, WebP C2PA), so a box
    that understates its size is still bounded.
    """
    start = 0
    for _ in range(MAX_JUMBF_CANDIDATES):
        at = data.find(b"jumb", start)
        if at < 0:
            return None
        declared = _c2pa_box_size(data, at)
        if declared is not None:
            return max(declared, _container_store_bytes(data))
        start = at + 1
    return None


def _c2pa_box_size(data: bytes, at: int) -> int | None:
    """Declared size of the JUMBF superbox whose type sits at ``at``, if it is a C2PA store."""
    if at < 4:
        return None
    lbox = int.from_bytes(data[at - 4:at], "big")
    body = at + 4
    if lbox == 1:  # extended size in the 8 bytes after the type
        lbox = int.from_bytes(data[at + 4:at + 12], "big")
        body = at + 12
    elif lbox == 0:  # the box runs to the end of the data
        lbox = len(data) - (at - 4)
    if data[body + 4:body + 8] != b"jumd" or data[body + 8:body + 12] != b"c2pa":
        return None
    return lbox


def _container_store_bytes(data: bytes) -> int:
    if data.startswith(b"\xff\xd8"):
        return _jpeg_app11_bytes(data)
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return _png_chunk_bytes(data, b"caBX")
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return _riff_chunk_bytes(data, b"C2PA")
    return 0  # other containers: the box's declared size and the upload limit bound it


def _jpeg_app11_bytes(data: bytes) -> int:
    pos, total = 2, 0
    for _ in range(MAX_CONTAINER_STEPS):
        if pos + 4 > len(data) or data[pos] != 0xFF:
            return total
        marker = data[pos + 1]
        if marker == 0xFF:  # fill byte
            pos += 1
            continue
        if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7:  # markers without a length
            pos += 2
            continue
        if marker in (0xDA, 0xD9):  # start of scan: no more header segments
            return total
        length = int.from_bytes(data[pos + 2:pos + 4], "big")
        if marker == 0xEB:
            total += length
        pos += 2 + length
    raise Refused(f"over {MAX_CONTAINER_STEPS} JPEG segments before the image data: manifest not parsed")


def _png_chunk_bytes(data: bytes, kind: bytes) -> int:
    return _chunk_bytes(data, kind, 8, _png_chunk, "PNG", last=b"IEND")


def _riff_chunk_bytes(data: bytes, kind: bytes) -> int:
    return _chunk_bytes(data, kind, 12, _riff_chunk, "RIFF")


def _png_chunk(data: bytes, pos: int) -> tuple[bytes, int, int]:
    length = int.from_bytes(data[pos:pos + 4], "big")
    return data[pos + 4:pos + 8], length, pos + 12 + length  # length, type, data, CRC


def _riff_chunk(data: bytes, pos: int) -> tuple[bytes, int, int]:
    length = int.from_bytes(data[pos + 4:pos + 8], "little")
    return data[pos:pos + 4], length, pos + 8 + length + (length & 1)  # type, length, data padded to even


def _chunk_bytes(data: bytes, kind: bytes, pos: int, chunk_at: Callable[[bytes, int], tuple[bytes, int, int]],
                 container: str, last: bytes | None = None) -> int:
    """Bytes of the ``kind`` chunks of a chunked container; ``chunk_at`` reads one chunk's type,
    length and the next chunk's offset."""
    total = 0
    for _ in range(MAX_CONTAINER_STEPS):
        if pos + 8 > len(data):
            return total
        chunk, length, pos = chunk_at(data, pos)
        if chunk == kind:
            total += length
        if chunk == last:
            return total
    raise Refused(f"over {MAX_CONTAINER_STEPS} {container} chunks: manifest not parsed")


def media_type(data: bytes, filename: str | None) -> str | None:
    """The container's MIME type from its leading bytes; the filename only when they do not say."""
    for magic, media_type in ((b"\x89PNG\r\n\x1a\n", "image/png"), (b"\xff\xd8\xff", "image/jpeg"),
                              (b"GIF8", "image/gif"), (b"II*\x00", "image/tiff"), (b"MM\x00*", "image/tiff")):
        if data.startswith(magic):
            return media_type
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    if data[4:8] == b"ftyp":
        brand = data[8:12]
        if brand in (b"avif", b"avis"):
            return "image/avif"
        if brand in (b"heic", b"heix", b"mif1", b"msf1"):
            return "image/heic"
    guessed = mimetypes.guess_type(filename)[0] if filename else None
    # None lets the C2PA library detect the container itself.
    return guessed if guessed and guessed.startswith("image/") else None
