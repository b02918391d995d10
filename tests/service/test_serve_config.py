"""``dif serve`` configuration: an artifact folder is a set of one; a bad configuration is one line, no traceback."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from testkit.fingerprints import write_artifacts
from testkit.servers import AppProcess, run_app_to_exit


def test_an_artifact_folder_is_served_as_a_set_of_one(process_server: Callable[..., AppProcess],
                                                      fingerprints_dir: Path) -> None:
    server = process_server(DIF_FINGERPRINTS_DIR=str(fingerprints_dir / "beta"))
    listed = httpx.get(f"{server.url}/generators", timeout=30).json()
    assert [g["name"] for g in listed["generators"]] == ["beta"]


def broken_artifact(root: Path) -> Path:
    write_artifacts(root, ["alpha"])
    (root / "alpha" / "metadata.json").write_text("{ not json")
    return root


@pytest.mark.parametrize(("make", "says"), [
    (lambda tmp: tmp / "missing", "does not exist"),
    (lambda tmp: (tmp / "empty").mkdir() or tmp / "empty", "no fingerprint artifacts"),
    (lambda tmp: broken_artifact(tmp / "broken"), "metadata.json"),
], ids=["missing-folder", "empty-folder", "broken-artifact"])
def test_a_bad_fingerprint_folder_is_one_line_without_a_traceback(tmp_path: Path, make, says: str) -> None:  # type: ignore[no-untyped-def]
    folder = make(tmp_path)
    result = run_app_to_exit({"DIF_FINGERPRINTS_DIR": str(folder), "DIF_DEVICE": "cpu"})
    output = result.stdout + result.stderr
    assert result.returncode == 3, output
    assert "Traceback" not in output and 'File "' not in output, output
    errors = [line for line in output.splitlines() if says in line]
    assert len(errors) == 1 and str(folder) in errors[0], output


def test_a_bad_setting_is_one_line_without_a_traceback(tmp_path: Path, fingerprints_dir: Path) -> None:
    copy = shutil.copytree(fingerprints_dir, tmp_path / "set")
    result = run_app_to_exit({"DIF_FINGERPRINTS_DIR": str(copy), "DIF_PORT": "not-a-port"}, argv=())
    output = result.stdout + result.stderr
    assert result.returncode == 2, output
    assert "Traceback" not in output and "port" in output.lower(), output
