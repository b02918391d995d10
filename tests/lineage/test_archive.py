"""Uploaded artifact archives: read in memory, hostile layouts refused with clear 4xx errors."""

from __future__ import annotations

import io
import os
import pickle
import tarfile
import zipfile
from pathlib import Path

import pytest
import torch

from dif.archive import (
    MAX_MEMBERS,
    ArchiveError,
    ArchiveTooLarge,
    fingerprint_from_archive,
    read_archive,
)
from dif.artifact import METADATA_FILE, WEIGHTS_FILE, Fingerprint, save_fingerprint
from dif.calibration import Calibration
from dif.errors import ArtifactError
from dif.extractors import create
from testkit.archives import tar_of, zip_of


@pytest.fixture(scope="module")
def artifact(tmp_path_factory: pytest.TempPathFactory) -> dict[str, bytes]:
    fp = Fingerprint(name="upload", tensor=torch.randn(3, 32, 32), calibration=Calibration(0.0, 0.1, 0.01, 0.01),
                     extractor=create("signlap@1").describe())
    folder = save_fingerprint(fp, tmp_path_factory.mktemp("artifact") / "upload")
    return {p.name: p.read_bytes() for p in folder.iterdir()}


def test_zip_of_the_artifact_folder(artifact: dict[str, bytes]) -> None:
    fp = fingerprint_from_archive(zip_of({f"upload/{n}": d for n, d in artifact.items()}))
    assert fp.name == "upload" and fp.tensor.shape == (3, 32, 32)


@pytest.mark.parametrize("mode", ["w", "w:gz"])
def test_tar_at_the_root(artifact: dict[str, bytes], mode: str) -> None:
    core = {n: artifact[n] for n in (WEIGHTS_FILE, METADATA_FILE)}
    assert fingerprint_from_archive(tar_of(core, mode)).name == "upload"


def test_nothing_is_written_to_disk(artifact: dict[str, bytes], tmp_path: Path,
                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    fingerprint_from_archive(tar_of({f"upload/{n}": d for n, d in artifact.items()}))
    fingerprint_from_archive(zip_of(artifact))
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(("name", "message"), [
    ("../fingerprint.safetensors", "path traversal"),
    ("upload/../../metadata.json", "path traversal"),
    ("/etc/fingerprint.safetensors", "absolute path"),
    ("C:/fingerprint.safetensors", "absolute path"),
    ("upload\\fingerprint.safetensors", "invalid name"),
    ("a/b/fingerprint.safetensors", "nested"),
    ("upload/evil.py", "unexpected file"),
    (".", "archive root"),  # a file, not the `./` folder entry
    ("./.", "archive root"),
])
def test_hostile_names_are_refused(artifact: dict[str, bytes], name: str, message: str) -> None:
    files = {WEIGHTS_FILE: artifact[WEIGHTS_FILE], METADATA_FILE: artifact[METADATA_FILE], name: b"x"}
    for data in (zip_of(files), tar_of(files)):
        with pytest.raises(ArchiveError, match=message):
            read_archive(data)


def test_two_top_folders_and_missing_files(artifact: dict[str, bytes]) -> None:
    with pytest.raises(ArchiveError, match="one top folder"):
        read_archive(zip_of({f"a/{WEIGHTS_FILE}": artifact[WEIGHTS_FILE], f"b/{METADATA_FILE}": b"{}"}))
    with pytest.raises(ArchiveError, match="lacks metadata.json"):
        read_archive(zip_of({WEIGHTS_FILE: artifact[WEIGHTS_FILE]}))
    with pytest.raises(ArchiveError, match="twice"):
        read_archive(tar_of({WEIGHTS_FILE: b"1", f"./{WEIGHTS_FILE}": b"2", METADATA_FILE: b"{}"}))
    with pytest.raises(ArchiveError, match="at most"):
        read_archive(zip_of({f"f{k}.png": b"" for k in range(MAX_MEMBERS + 1)}))


def test_symlinks_are_refused(artifact: dict[str, bytes]) -> None:
    core = {n: artifact[n] for n in (WEIGHTS_FILE, METADATA_FILE)}
    with pytest.raises(ArchiveError, match="link"):
        read_archive(tar_of({WEIGHTS_FILE: core[WEIGHTS_FILE]},
                            links={METADATA_FILE: (tarfile.SYMTYPE, "/etc/passwd")}))
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr(WEIGHTS_FILE, core[WEIGHTS_FILE])
        info = zipfile.ZipInfo(METADATA_FILE)
        info.external_attr = (0o120777 << 16)
        z.writestr(info, "/etc/passwd")
    with pytest.raises(ArchiveError, match="symlink"):
        read_archive(buf.getvalue())


def test_zip_bomb_is_refused_before_inflating(artifact: dict[str, bytes]) -> None:
    bomb = zip_of({WEIGHTS_FILE: artifact[WEIGHTS_FILE], METADATA_FILE: b" " * 50_000_000})
    assert len(bomb) < 200_000
    with pytest.raises(ArchiveTooLarge, match="bytes"):
        read_archive(bomb)


def test_tar_bomb_is_refused_on_its_header(artifact: dict[str, bytes]) -> None:
    big = tar_of({METADATA_FILE: b"{" + b" " * 2_000_000 + b"}", WEIGHTS_FILE: artifact[WEIGHTS_FILE]}, "w:gz")
    with pytest.raises(ArchiveTooLarge, match="declares"):
        read_archive(big)


def test_lying_zip_sizes_are_caught_while_reading(artifact: dict[str, bytes]) -> None:
    data = bytearray(zip_of({WEIGHTS_FILE: artifact[WEIGHTS_FILE], METADATA_FILE: artifact[METADATA_FILE]},
                            zipfile.ZIP_STORED))
    data[200:260] = b"\x00" * 60  # corrupt stored data: CRC no longer matches
    with pytest.raises(ArtifactError):
        fingerprint_from_archive(bytes(data))


def test_a_pickle_is_never_loaded(artifact: dict[str, bytes], tmp_path: Path) -> None:
    marker = tmp_path / "pwned"

    class Payload:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    evil = pickle.dumps({"fingerprint": Payload()})
    with pytest.raises(ArtifactError, match="safetensors"):
        fingerprint_from_archive(zip_of({WEIGHTS_FILE: evil, METADATA_FILE: artifact[METADATA_FILE]}))
    with pytest.raises(ArchiveError, match="neither a zip nor a tar"):
        read_archive(evil)
    assert not marker.exists()


def test_garbage_and_encrypted(artifact: dict[str, bytes]) -> None:
    with pytest.raises(ArchiveError):
        read_archive(b"PK\x03\x04" + b"\x00" * 100)
    with pytest.raises(ArchiveError):
        read_archive(b"\x1f\x8b" + b"\x00" * 100)
    data = bytearray(zip_of({WEIGHTS_FILE: artifact[WEIGHTS_FILE], METADATA_FILE: artifact[METADATA_FILE]}))
    # Set the "encrypted" flag of the first local and central headers.
    data[6] |= 1
    central = data.find(b"PK\x01\x02")
    data[central + 8] |= 1
    with pytest.raises(ArchiveError, match="encrypted"):
        read_archive(bytes(data))


@pytest.mark.parametrize(("dirs", "prefix"), [
    (["./"], "./"),                # `cd upload && tar czf ../a.tar.gz .` (GNU tar)
    (["."], "./"),                 # the same root entry without its slash (other tar writers)
    (["./upload/"], "./upload/"),  # `tar czf a.tar.gz ./upload`
    (["./upload"], "./upload/"),
])
def test_tar_made_with_dot_names(artifact: dict[str, bytes], dirs: list[str], prefix: str) -> None:
    files = {f"{prefix}{n}": d for n, d in artifact.items()}
    assert fingerprint_from_archive(tar_of(files, "w:gz", dirs=dirs)).name == "upload"


def test_tar_of_the_parent_holding_the_folder(artifact: dict[str, bytes]) -> None:
    """`cd parent && tar czf ../a.tar.gz .`: the root entry ``./`` does not count as a second top folder."""
    files = {f"./upload/{n}": d for n, d in artifact.items()}
    assert fingerprint_from_archive(tar_of(files, "w:gz", dirs=["./", "./upload/"])).name == "upload"


@pytest.mark.parametrize("name", ["./../", "./..", "../", "./upload/../", "./upload/../../x/"])
def test_dot_folders_still_refuse_traversal(artifact: dict[str, bytes], name: str) -> None:
    files = {f"./{n}": d for n, d in artifact.items()}
    with pytest.raises(ArchiveError, match="traversal"):
        read_archive(tar_of(files, "w:gz", dirs=[name]))
