"""`make test` does its own set-up: scripts/ci-deps.sh runs first and, when it cannot install, says so in one line.

The script runs for real, with bash, under a PATH that lacks the tools (and, per case, sudo or apt-get),
so the "cannot install" branches are exercised without touching the machine's packages.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from .conftest import REPO, run

SCRIPT = (REPO / "scripts" / "ci-deps.sh").read_text()
NOBODY = 65534


@pytest.fixture
def bin_dir() -> Iterator[Callable[[list[str]], Path]]:
    """Factory: a PATH folder holding only these real commands (links to the machine's own).

    Outside pytest's tmp_path, whose parents are private to this user: the script may run as another.
    """
    root = Path(tempfile.mkdtemp(prefix="ci-deps-"))
    root.chmod(0o755)

    def make(names: list[str]) -> Path:
        for name in names:
            found = shutil.which(name)
            if found is None:
                pytest.skip(f"`{name}` is not installed")
            (root / name).symlink_to(found)
        return root

    yield make
    shutil.rmtree(root)


def ci_deps(path: Path, as_user: int | None = None) -> tuple[int, list[str], str]:
    """Run the script from stdin (so another user needs no access to the checkout): rc, stderr lines, stdout."""
    command = [shutil.which("bash") or "/bin/bash", "-s"]
    if as_user is not None:
        setpriv = shutil.which("setpriv")
        if setpriv is None:
            pytest.skip("`setpriv` (util-linux) is not installed")
        command = [setpriv, f"--reuid={as_user}", f"--regid={as_user}", "--clear-groups", *command]
    result = run(command, input=SCRIPT, env={"PATH": str(path), "HOME": "/"}, timeout=30)
    return result.returncode, result.stderr.splitlines(), result.stdout


def test_make_test_runs_ci_deps_before_the_suite() -> None:
    result = run(["make", "-n", "test"], cwd=REPO, timeout=30)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    deps = lines.index("bash scripts/ci-deps.sh")
    suite = next(i for i, line in enumerate(lines) if "-m pytest" in line)
    assert deps < suite, lines


def test_without_root_or_sudo_it_says_what_to_run_in_one_line(bin_dir: Callable[[list[str]], Path]) -> None:
    path = bin_dir(["id", "apt-get"])
    as_user = NOBODY if os.geteuid() == 0 else None
    if as_user is None and shutil.which("sudo"):
        pytest.skip("this user has sudo; the no-sudo branch needs root to drop to another user")
    rc, err, out = ci_deps(path, as_user)
    assert rc != 0 and out == ""
    assert len(err) == 1, err
    assert "run as root: apt-get update && apt-get install -y prometheus" in err[0]


def test_without_apt_it_says_what_to_install_in_one_line(bin_dir: Callable[[list[str]], Path]) -> None:
    rc, err, out = ci_deps(bin_dir(["id"]))
    assert rc != 0 and out == ""
    assert len(err) == 1 and "promtool and prometheus are missing" in err[0], err


def test_with_prometheus_present_it_asks_for_chromium_alone(bin_dir: Callable[[list[str]], Path]) -> None:
    path = bin_dir(["id", "apt-get", "promtool", "prometheus"])
    as_user = NOBODY if os.geteuid() == 0 else None
    if as_user is None and shutil.which("sudo"):
        pytest.skip("this user has sudo; the no-sudo branch needs root to drop to another user")
    rc, err, out = ci_deps(path, as_user)
    assert rc != 0 and out == "" and len(err) == 1, err
    assert err[0] == "ci-deps: chromium is missing; run as root: apt-get update && apt-get install -y chromium " \
                     "(then make test again)"
