"""Images: the shared samples, and tiny or hostile ones built in memory."""

from __future__ import annotations

import io
import struct
import zlib
from pathlib import Path

from PIL import Image

from .paths import LTIM

Blob = tuple[str, bytes]  # (file name, contents): one upload


def sample_paths(root: Path = LTIM) -> list[Path]:
    """Every sample image under ``root`` (PNG 256-512 px and JPEG up to ~1000 px): real decode costs."""
    paths = sorted(root.glob("*/*/*"))
    if not paths:
        # Raised, not skipped: without ../shared a test must fail and a bench must stop.
        raise FileNotFoundError(f"no images under {root}: ../shared must sit beside the repository")
    return paths


def sample_blobs(root: Path = LTIM) -> list[Blob]:
    return [(p.name, p.read_bytes()) for p in sample_paths(root)]


def tiny_png(size: int = 16) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (size, size), (120, 30, 200)).save(buf, format="PNG")
    return buf.getvalue()


def bomb_png(width: int = 100_000, height: int = 100_000) -> bytes:
    """A valid PNG header declaring ``width`` x ``height``, with almost no data behind it."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\x00" * 64))
            + chunk(b"IEND", b""))
