"""What to scan: files and folders on this machine, or any location pyarrow's filesystems read.

Folders are walked recursively and every file in them is a candidate (a text file among the
photos becomes an error row, never a silent skip); only hidden names (``.DS_Store``, ``.git``)
are left out. Paths are listed, sorted, once, in the driver: ``--resume`` and the summary need
the list, and a stable order makes two runs over the same folder comparable.
"""

from __future__ import annotations

import fnmatch
import glob
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pyarrow.fs

GLOB_CHARS = frozenset("*?[")
LIST_SUFFIXES = (".txt", ".lst")


def local_files(paths: Sequence[str | Path]) -> list[Path]:
    """Every file named or under a named folder, sorted, without duplicates."""
    found: dict[Path, None] = {}
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            found.update(dict.fromkeys(_walk(path)))
        elif path.is_file():
            found[path] = None
        else:
            raise FileNotFoundError(f"{raw}: no such file or folder")
    return list(found)


def _walk(root: Path) -> Iterator[Path]:
    for folder, dirs, names in os.walk(root):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        yield from (Path(folder) / n for n in sorted(names) if not n.startswith("."))


@dataclass(frozen=True)
class Listing:
    """Files on one filesystem; ``uri(path)`` is how a row names each (``s3://bucket/key``, ``/abs/path``)."""

    filesystem: pyarrow.fs.FileSystem
    paths: list[str]
    scheme: str  # "" for local paths

    def uri(self, path: str) -> str:
        return f"{self.scheme}://{path}" if self.scheme else path


def list_source(sources: Sequence[str]) -> Listing:
    """Expand folders, globs and ``.txt`` lists of paths/URIs into files of one filesystem."""
    parts = [_one(source) for source in sources]
    kinds = {(p.filesystem.type_name, p.scheme) for p in parts}
    if len(kinds) != 1:
        raise ValueError(f"all sources must be on one filesystem, got {sorted(k for _, k in kinds)}")
    paths = list(dict.fromkeys(path for part in parts for path in part.paths))
    return Listing(parts[0].filesystem, paths, parts[0].scheme)


def _resolve(source: str) -> tuple[pyarrow.fs.FileSystem, str, str]:
    from pyarrow import fs

    if "://" in source:
        filesystem, path = fs.FileSystem.from_uri(source)
        scheme = source.split("://", 1)[0]
        return filesystem, path, "" if scheme == "file" else scheme
    return fs.LocalFileSystem(), os.path.abspath(source), ""


def _one(source: str) -> Listing:
    from pyarrow import fs

    filesystem, path, scheme = _resolve(source)
    if GLOB_CHARS & set(path):
        return Listing(filesystem, _glob(filesystem, path, scheme), scheme)
    info = filesystem.get_file_info(path)
    if info.type == fs.FileType.Directory:
        selector = fs.FileSelector(path, recursive=True)
        files = [i.path for i in filesystem.get_file_info(selector) if i.type == fs.FileType.File
                 and not any(part.startswith(".") for part in i.path[len(path):].split("/"))]
        return Listing(filesystem, sorted(files), scheme)
    if info.type == fs.FileType.File and path.endswith(LIST_SUFFIXES):
        return _from_list(filesystem, path, scheme)
    if info.type == fs.FileType.File:
        return Listing(filesystem, [path], scheme)
    raise FileNotFoundError(f"{source}: no such file or folder")


def _glob(filesystem: pyarrow.fs.FileSystem, pattern: str, scheme: str) -> list[str]:
    from pyarrow import fs

    if not scheme:  # the shell's rules: `*` stays within a folder, `**` spans folders
        return sorted(p for p in glob.glob(pattern, recursive=True) if os.path.isfile(p))
    # Object stores have no folders to walk one by one: list under the fixed prefix, match the rest.
    fixed = []
    for part in pattern.split("/"):
        if GLOB_CHARS & set(part):
            break
        fixed.append(part)
    selector = fs.FileSelector("/".join(fixed), recursive=True, allow_not_found=True)
    return sorted(i.path for i in filesystem.get_file_info(selector)
                  if i.type == fs.FileType.File and fnmatch.fnmatchcase(i.path, pattern))


def _from_list(filesystem: pyarrow.fs.FileSystem, path: str, scheme: str) -> Listing:
    """A text file of paths or URIs, one a line (``#`` comments and blank lines skipped)."""
    with filesystem.open_input_stream(path) as stream:
        lines = stream.read().decode("utf-8").splitlines()
    entries = [line.strip() for line in lines if line.strip() and not line.lstrip().startswith("#")]
    if not entries:
        raise ValueError(f"{path}: the list names no file")
    base = os.path.dirname(path)

    def absolute(entry: str) -> str:  # relative entries are relative to the list's own folder
        if "://" in entry or os.path.isabs(entry):
            return entry
        return f"{scheme}://{base}/{entry}" if scheme else os.path.join(base, entry)

    resolved = [_resolve(absolute(e)) for e in entries]
    schemes = {s for _, _, s in resolved}
    if len(schemes) != 1:
        raise ValueError(f"{path}: every entry must be on one filesystem, got schemes {sorted(schemes)}")
    return Listing(resolved[0][0], [p for _, p, _ in resolved], schemes.pop())
