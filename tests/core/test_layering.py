"""The layering contracts of pyproject.toml (``[tool.importlinter]``), checked by the real ``lint-imports``."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
PACKAGES = ("dif", "dif_cli", "app", "training", "scan", "testkit", "tests", "bench")


def lint_imports(root: Path) -> subprocess.CompletedProcess[str]:
    """``lint-imports`` of this interpreter's environment, on the packages under ``root``."""
    tool = Path(sys.executable).parent / "lint-imports"
    return subprocess.run([str(tool), "--no-cache"], cwd=root, env={"PYTHONPATH": str(root), "PATH": "/usr/bin:/bin"},
                          capture_output=True, text=True, timeout=120)


def test_the_code_keeps_every_layering_contract() -> None:
    result = lint_imports(REPO)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    assert "0 broken" in result.stdout


def test_a_broken_layer_fails_the_check(tmp_path: Path) -> None:
    """The contracts are not vacuous: the core naming a layer above it, the service naming training,
    shipped code naming the benches and a test naming a bench are each reported."""
    for package in PACKAGES:
        shutil.copytree(REPO / package, tmp_path / package, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(REPO / "pyproject.toml", tmp_path)
    for module, line in (("dif/errors.py", "import app.settings"), ("app/deps.py", "import training.config"),
                         ("scan/summary.py", "import bench.common"), ("tests/conftest.py", "import bench.common")):
        with open(tmp_path / module, "a") as f:
            f.write(f"\n{line}  # noqa\n")
    result = lint_imports(tmp_path)
    assert result.returncode != 0
    for importer, imported in (("dif.errors", "app.settings"), ("app.deps", "training.config"),
                               ("scan.summary", "bench"), ("tests.conftest", "bench.common")):
        assert f"{importer} -> {imported}" in result.stdout, result.stdout[-3000:]
