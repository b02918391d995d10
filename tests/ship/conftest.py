"""Fixtures for the shipping checks: tools from the `ship` extra, the repo's files, a free port."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any
from unittest import mock

import pytest
import yaml

from app.settings import Settings
from testkit.paths import REPO

DEPLOY = REPO / "deploy"


def tool(name: str, hint: str = "pip install -e '.[dev]' (the `ship` extra)") -> str:
    """Path of a command-line tool the checks need; a missing one fails (never skips) the test."""
    # The venv's own bin/ first: `make test` runs .venv/bin/python without activating the venv.
    path = shutil.which(name, path=os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")]))
    if path is None:
        pytest.fail(f"`{name}` is missing: {hint}")
    return path


def run(cmd: list[str], timeout: float = 120, **kwargs: Any) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, **kwargs)


def kubernetes_validate(docs: list[dict[str, Any]], out: Path, version: str | None) -> str:
    """``kubernetes-validate --strict`` on ``docs`` (written to ``out``) for Kubernetes ``version``
    (None: the newest it knows); its output, after asserting it found no error."""
    out.write_text(yaml.safe_dump_all(docs))
    result = run([tool("kubernetes-validate"), "--strict", *(["-k", version] if version else []), str(out)])
    output = result.stdout + result.stderr
    assert result.returncode == 0 and "ERROR" not in output, output
    return output


def load_yaml_docs(path: Path) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


def settings_from_env(env: dict[str, Any]) -> Settings:
    """The Settings a service started with exactly these DIF_* variables would read (the
    same path as in a container: the environment), so a bad value fails here."""
    own = {k: str(v) for k, v in env.items() if k.startswith("DIF_")}
    clean = {k: v for k, v in os.environ.items() if not k.startswith("DIF_")}
    with mock.patch.dict(os.environ, {**clean, **own}, clear=True):
        return Settings()


@pytest.fixture(scope="session")
def repo() -> Path:
    return REPO
