"""Safe reading of an uploaded artifact archive (.zip, .tar, .tar.gz), entirely in memory.

An upload is hostile until proven otherwise. Nothing is written to disk and
nothing is unpickled; every limit is checked on the member headers before the
member's data is read (or, for a compressed tar, decompressed):

- at most ``MAX_MEMBERS`` entries, each file at most its own size limit, and a
  zip entry's compression ratio at most ``MAX_RATIO`` (zip bombs);
- only regular files and directories: symlinks, hard links, devices and FIFOs
  are refused, as are encrypted zip entries;
- names must be relative, without ``..``, backslashes or drive letters, and
  either all at the root or all inside one top folder (the artifact folder);
- the files must be the artifact's ``fingerprint.safetensors`` and
  ``metadata.json``; its two preview PNGs are tolerated and ignored (never
  decoded); anything else is refused.
"""

from __future__ import annotations

import io
import tarfile
import zipfile
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import IO

from dif.artifact import MAX_METADATA_BYTES, METADATA_FILE, WEIGHTS_FILE, Fingerprint, parse_fingerprint
from dif.errors import ArtifactError

MAX_ARCHIVE_BYTES = 128 * 1024 * 1024
MAX_MEMBERS = 16
MAX_WEIGHTS_BYTES = 64 * 1024 * 1024  # a [3, 2048, 2048] float32 fingerprint is 48 MiB
MAX_PREVIEW_BYTES = 32 * 1024 * 1024
MAX_RATIO = 100  # float32 fingerprints barely compress; a higher ratio is a bomb
REQUIRED = (WEIGHTS_FILE, METADATA_FILE)
IGNORED = ("fingerprint.png", "spectrum.png")
SIZE_LIMITS = {WEIGHTS_FILE: MAX_WEIGHTS_BYTES, METADATA_FILE: MAX_METADATA_BYTES,
               **{name: MAX_PREVIEW_BYTES for name in IGNORED}}


class ArchiveError(ArtifactError):
    code = "invalid_archive"
    status = 422


class ArchiveTooLarge(ArchiveError):
    code = "archive_too_large"
    status = 413


@dataclass(frozen=True)
class Entry:
    name: str  # as stored in the archive
    is_dir: bool
    size: int  # declared uncompressed size


def archive_kind(data: bytes) -> str | None:
    """``"zip"``, ``"tar"`` or ``None``, from the bytes themselves (never from the file name)."""
    if data[:4] in (b"PK\x03\x04", b"PK\x05\x06"):
        return "zip"
    if data[:2] == b"\x1f\x8b" or data[:3] == b"BZh" or data[:6] == b"\xfd7zXZ\x00":
        return "tar"  # compressed; tarfile says whether a tar is inside
    if len(data) >= 262 and data[257:262] == b"ustar":
        return "tar"
    return None


def _member_path(name: str) -> PurePosixPath:
    """Validated relative path of an archive member."""
    if not name or "\\" in name or "\x00" in name:
        raise ArchiveError(f"archive member {name!r} has an invalid name")
    if name.startswith("/") or (len(name) > 1 and name[1] == ":"):
        raise ArchiveError(f"archive member {name!r} is an absolute path; archive the artifact folder itself")
    path = PurePosixPath(name)
    if any(part in ("..", "") for part in path.parts) or ".." in name.split("/"):
        raise ArchiveError(f"archive member {name!r} points outside the archive (path traversal)")
    return path


def check_entry(entry: Entry) -> tuple[str | None, str | None]:
    """One member on its own: safe name, at most one folder deep, an artifact file within its size limit.

    Returns its top folder ("" at the root; None for the archive root itself) and its artifact file
    name (None for a folder).
    """
    path = _member_path(entry.name.rstrip("/") if entry.is_dir else entry.name)
    parts = path.parts
    if entry.is_dir:
        if not parts:
            # `.` or `./`: what `cd artifact && tar czf ../a.tar.gz .` stores first. It names the
            # archive's root, not a folder in it, so it says nothing about the layout.
            return None, None
        if len(parts) > 1:
            raise ArchiveError(f"archive folder {entry.name!r} is nested; only one top folder is allowed")
        return parts[0], None
    if not parts:
        raise ArchiveError(f"archive member {entry.name!r} is a file named after the archive root")
    if len(parts) > 2:
        raise ArchiveError(f"archive member {entry.name!r} is nested; only one top folder is allowed")
    base = parts[-1]
    if base not in SIZE_LIMITS:
        raise ArchiveError(f"unexpected file {entry.name!r} in the archive; an artifact holds only "
                           f"{WEIGHTS_FILE} and {METADATA_FILE} (and its preview PNGs)")
    if entry.size > SIZE_LIMITS[base]:
        raise ArchiveTooLarge(f"{entry.name!r} declares {entry.size} bytes, over the {SIZE_LIMITS[base]} "
                              "bytes an artifact file may have")
    return (parts[0] if len(parts) == 2 else ""), base


def select(entries: list[Entry]) -> dict[str, Entry]:
    """Check the layout and return the entries to read, keyed by artifact file name."""
    if len(entries) > MAX_MEMBERS:
        raise ArchiveError(f"archive has {len(entries)} entries; an artifact has at most {MAX_MEMBERS}")
    tops: set[str] = set()
    files: dict[str, Entry] = {}
    for entry in entries:
        top, base = check_entry(entry)
        if top is not None:
            tops.add(top)
        if base is None:
            continue
        if base in files:
            raise ArchiveError(f"archive holds {base} twice")
        files[base] = entry
    if len(tops) > 1:
        raise ArchiveError("archive files must all be at its root or all inside one top folder, "
                           f"found {sorted(t or '/' for t in tops)}")
    missing = [name for name in REQUIRED if name not in files]
    if missing:
        raise ArchiveError(f"archive lacks {', '.join(missing)}; zip or tar the artifact folder "
                           f"({WEIGHTS_FILE} + {METADATA_FILE})")
    return {name: files[name] for name in REQUIRED}


def _read_limited(stream: IO[bytes], limit: int, name: str) -> bytes:
    data = stream.read(limit + 1)
    if data is None or len(data) > limit:
        raise ArchiveTooLarge(f"{name!r} inflates beyond {limit} bytes (decompression bomb?)")
    return data


def _zip_files(data: bytes) -> dict[str, bytes]:
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
    except (zipfile.BadZipFile, zipfile.LargeZipFile, ValueError, EOFError) as exc:
        raise ArchiveError(f"not a readable zip archive ({exc})") from exc
    with archive:
        infos = archive.infolist()
        entries = []
        for info in infos:
            mode = (info.external_attr >> 16) & 0o170000
            if mode == 0o120000:
                raise ArchiveError(f"archive member {info.filename!r} is a symlink; symlinks are refused")
            if info.flag_bits & 0x1:
                raise ArchiveError(f"archive member {info.filename!r} is encrypted")
            if not info.is_dir() and info.file_size > MAX_RATIO * max(info.compress_size, 1) + 4096:
                raise ArchiveTooLarge(f"archive member {info.filename!r} expands {info.file_size} bytes from "
                                      f"{info.compress_size} (decompression bomb?)")
            entries.append(Entry(info.filename, info.is_dir(), info.file_size))
        chosen = select(entries)
        out = {}
        try:
            for name, entry in chosen.items():
                with archive.open(entry.name) as stream:
                    out[name] = _read_limited(stream, SIZE_LIMITS[name], entry.name)
        except (zipfile.BadZipFile, NotImplementedError, OSError, EOFError, RuntimeError) as exc:
            raise ArchiveError(f"cannot read the zip archive's data ({exc})") from exc
        return out


def _tar_files(data: bytes) -> dict[str, bytes]:
    try:
        archive = tarfile.open(fileobj=io.BytesIO(data), mode="r:*")
    except (tarfile.TarError, EOFError, OSError, ValueError) as exc:
        raise ArchiveError(f"not a readable tar archive ({exc})") from exc
    with archive:
        members: list[tarfile.TarInfo] = []
        seen: set[str | None] = set()
        try:
            # Headers one at a time: a limit breaks off before the next member is decompressed.
            while (info := archive.next()) is not None:
                if not (info.isfile() or info.isdir()):
                    raise ArchiveError(f"archive member {info.name!r} is a link or special file; "
                                       "only regular files are accepted")
                members.append(info)
                if len(members) > MAX_MEMBERS:
                    raise ArchiveError(f"archive has more than {MAX_MEMBERS} entries")
                # Now, not after the loop: reading the next header makes tarfile skip this member's
                # data, and in a .tar.gz skipping means inflating it (a gigabyte of junk: seconds of CPU).
                _, base = check_entry(Entry(info.name, info.isdir(), info.size))
                if base is not None and base in seen:
                    raise ArchiveError(f"archive holds {base} twice")
                seen.add(base)
            chosen = select([Entry(m.name, m.isdir(), m.size) for m in members])
            by_name = {m.name: m for m in members}
            out = {}
            for name, entry in chosen.items():
                stream = archive.extractfile(by_name[entry.name])
                if stream is None:
                    raise ArchiveError(f"cannot read {entry.name!r} from the archive")
                out[name] = _read_limited(stream, SIZE_LIMITS[name], entry.name)
            return out
        except (tarfile.TarError, EOFError, OSError, ValueError) as exc:
            raise ArchiveError(f"cannot read the tar archive ({exc})") from exc


def read_archive(data: bytes) -> dict[str, bytes]:
    """The artifact's two files from an archive's bytes: ``{WEIGHTS_FILE: ..., METADATA_FILE: ...}``."""
    if len(data) > MAX_ARCHIVE_BYTES:
        raise ArchiveTooLarge(f"archive is {len(data)} bytes, over the limit of {MAX_ARCHIVE_BYTES}")
    kind = archive_kind(data)
    if kind == "zip":
        return _zip_files(data)
    if kind == "tar":
        return _tar_files(data)
    raise ArchiveError("upload is neither a zip nor a tar archive; send the artifact folder as .zip, .tar or "
                       f".tar.gz, or its {WEIGHTS_FILE} and {METADATA_FILE} as two files")


def parse_upload(weights: bytes, metadata: bytes, source: str = "upload") -> Fingerprint:
    """``parse_fingerprint`` for untrusted bytes: any value it trips over is the upload's fault (4xx).

    The loader validates the fields it knows; an upload may still put, say, a
    string where a number belongs in a field it converts without checking.
    """
    try:
        return parse_fingerprint(weights, metadata, source=source)
    except ArtifactError:
        raise
    except (ValueError, TypeError, KeyError, AttributeError, OverflowError, RecursionError) as exc:
        raise ArtifactError(f"{source}: metadata.json holds a value of the wrong type or range ({exc}); "
                            "re-export the artifact with `dif train` or `dif import-reference`") from exc


def fingerprint_from_archive(data: bytes, source: str = "upload") -> Fingerprint:
    """Validated fingerprint from an uploaded archive."""
    files = read_archive(data)
    return parse_upload(files[WEIGHTS_FILE], files[METADATA_FILE], source=source)
