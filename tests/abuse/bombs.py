"""Hostile artifact uploads built in memory: archive bombs, unsafe members, pickles that run code.

Bombs cost almost nothing to build: deflate with a full flush resets its history,
so one compressed megabyte of zeros can be repeated to stand for any number of
megabytes; the zip or gzip framing around it is written by hand.
"""

from __future__ import annotations

import io
import json
import os
import pickle
import struct
import tarfile
import zlib
from typing import Any

import torch

from testkit.paths import MIB

GIB = 1 << 30


class RunsShell:
    """Unpickled by a trusting loader, this runs a shell command (here: creates a marker file)."""

    def __init__(self, command: str):
        self.command = command

    def __reduce__(self) -> tuple[Any, tuple[str]]:
        return (os.system, (self.command,))


class OpensFile:
    """Unpickled by a trusting loader, this creates ``path`` (no shell needed)."""

    def __init__(self, path: str):
        self.path = path

    def __reduce__(self) -> tuple[Any, tuple[str, str]]:
        return (open, (self.path, "w"))


def evil_pickle(marker: str) -> bytes:
    return pickle.dumps({"fingerprint": RunsShell(f"touch {marker}"), "meta": OpensFile(marker)})


def evil_torch_save(marker: str) -> bytes:
    """What ``torch.save`` writes for a hostile object: a zip holding ``archive/data.pkl``."""
    buf = io.BytesIO()
    torch.save({"Fingerprint": RunsShell(f"touch {marker}")}, buf)
    return buf.getvalue()


def global_opcode_pickle(marker: str) -> bytes:
    """Protocol 0 naming ``posix.system`` directly: no class of ours involved at all."""
    return b"cposix\nsystem\n(S'touch " + marker.encode() + b"'\ntR."


# -- archives -----------------------------------------------------------------------------------


def _deflate_repeated(head: bytes, zeros: int) -> tuple[bytes, int]:
    """Raw deflate of ``head`` + ``zeros`` zero bytes, and the CRC-32 of that data."""
    assert zeros % MIB == 0
    compressor = zlib.compressobj(9, zlib.DEFLATED, -15)
    first = compressor.compress(head) + compressor.flush(zlib.Z_FULL_FLUSH)
    block = compressor.compress(b"\0" * MIB) + compressor.flush(zlib.Z_FULL_FLUSH)
    tail = compressor.flush()
    crc = zlib.crc32(head)
    zero_block_crc = b"\0" * MIB
    for _ in range(zeros // MIB):  # CRC over the real data, so the archive is valid to its last byte
        crc = zlib.crc32(zero_block_crc, crc)
    return first + block * (zeros // MIB) + tail, crc


def zip_bomb(name: str, inflated: int, declared: int | None = None, others: dict[str, bytes] | None = None) -> bytes:
    """A zip whose member ``name`` deflates to ``inflated`` zero bytes while its headers declare
    ``declared`` (default: the truth), beside stored ``others``. Written by hand: zipfile would
    inflate nothing here, but it would have to deflate a gigabyte to write it."""
    data, crc = _deflate_repeated(b"", inflated)
    members = [(name, 8, crc, data, inflated if declared is None else declared)]
    members += [(other, 0, zlib.crc32(content), content, len(content)) for other, content in (others or {}).items()]
    body, directory = b"", b""
    for member, method, checksum, stored, size in members:
        encoded = member.encode()
        local = struct.pack("<4sHHHHHIIIHH", b"PK\x03\x04", 20, 0, method, 0, 0, checksum, len(stored), size,
                            len(encoded), 0)
        directory += struct.pack("<4sHHHHHHIIIHHHHHII", b"PK\x01\x02", 20, 20, 0, method, 0, 0, checksum,
                                 len(stored), size, len(encoded), 0, 0, 0, 0, 0o100644 << 16, len(body)) + encoded
        body += local + encoded + stored
    end = struct.pack("<4sHHHHIIH", b"PK\x05\x06", 0, 0, len(members), len(members), len(directory), len(body), 0)
    return body + directory + end


def tar_gz_bomb(name: str, inflated: int) -> bytes:
    """A .tar.gz whose one member is ``inflated`` zero bytes, declared honestly in its tar header."""
    info = tarfile.TarInfo(name)
    info.size = inflated
    header = info.tobuf(format=tarfile.GNU_FORMAT)  # base-256 sizes: members over 8 GiB are legal
    data, crc = _deflate_repeated(header, inflated)
    total = len(header) + inflated
    gzip_header = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x02\xff"
    return gzip_header + data + struct.pack("<II", crc, total & 0xFFFFFFFF)


def safetensors_claiming(shape: list[int]) -> bytes:
    """A safetensors header declaring a tensor of ``shape`` over a few bytes of data."""
    count = 4
    for dim in shape:
        count *= dim
    header = json.dumps({"fingerprint": {"dtype": "F32", "shape": shape, "data_offsets": [0, count]}}).encode()
    return struct.pack("<Q", len(header)) + header + b"\0" * 64
