"""Archives built in memory, as a user (or an attacker) would upload them."""

from __future__ import annotations

import io
import tarfile
import zipfile


def zip_of(files: dict[str, bytes], compression: int = zipfile.ZIP_DEFLATED,
           symlinks: dict[str, str] | None = None) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression) as z:
        for name, data in files.items():
            # ZipInfo keeps the name as given (absolute, ../)
            z.writestr(zipfile.ZipInfo(name), data, compress_type=compression)
        for name, target in (symlinks or {}).items():
            info = zipfile.ZipInfo(name)
            info.external_attr = 0o120777 << 16  # S_IFLNK: extracted by unzip as a symlink
            z.writestr(info, target)
    return buf.getvalue()


def tar_of(files: dict[str, bytes], mode: str = "w", links: dict[str, tuple[bytes, str]] | None = None,
           dirs: tuple[str, ...] | list[str] = ()) -> bytes:
    """GNU format, as GNU tar writes it, folder entries (``dirs``: ``./``, ``mj/``) first.

    ``mode``: "w" or "w:gz"; ``links``: name -> (tarfile.SYMTYPE or LNKTYPE, target).
    """
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode=mode, format=tarfile.GNU_FORMAT) as t:
        for name in dirs:
            info = tarfile.TarInfo(name)
            info.type = tarfile.DIRTYPE
            t.addfile(info)
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            t.addfile(info, io.BytesIO(data))
        for name, (kind, target) in (links or {}).items():
            info = tarfile.TarInfo(name)
            info.type, info.linkname = kind, target
            t.addfile(info)
    return buf.getvalue()
