"""README.md stays true to the code: settings, metrics, routes, commands; and .ci/run runs them."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

from app.main import create_app
from app.metrics import Metrics
from app.settings import Settings
from dif_cli import build_parser

from .conftest import REPO, run

README = (REPO / "README.md").read_text()
TWO_COMMANDS = """\
```bash
make run    # set up .venv (pinned CPU torch first) and serve the embedded fingerprints on :8000
make test   # set up .venv (+ apt prometheus, chromium) and run the whole suite (needs ../shared beside the clone)
```"""


def test_the_two_commands_are_there_and_are_what_ci_runs() -> None:
    assert f"## The two commands\n\n{TWO_COMMANDS}\n" in README
    makefile = (REPO / "Makefile").read_text()
    assert re.search(r"^run: ", makefile, re.M) and re.search(r"^test: ", makefile, re.M)
    ci = [line.split("#")[0].strip() for line in (REPO / ".ci" / "run").read_text().splitlines()]
    assert "make test" in ci  # which runs scripts/ci-deps.sh itself (tests/ship/test_ci_deps.py)


def test_every_setting_is_in_the_table() -> None:
    for name in Settings.model_fields:
        assert f"| `DIF_{name.upper()}` |" in README, f"DIF_{name.upper()} is missing from the settings table"
    listed = set(re.findall(r"`(DIF_[A-Z_]+)`", README))
    known = {f"DIF_{n.upper()}" for n in Settings.model_fields}
    assert listed <= known | {"DIF_FINGERPRINTS_HOST_DIR"}, f"not settings: {listed - known}"


def test_every_metric_is_listed() -> None:
    for family in Metrics().registry.collect():
        if not family.name.startswith("dif_"):
            continue
        name = family.name + ("_total" if family.type == "counter" else "")
        assert f"| `{name}` |" in README, f"{name} is missing from the metrics table"


def test_every_route_has_a_curl_example() -> None:
    curls = [line for line in README.splitlines() if line.startswith("curl ")]
    for path, methods in create_app(Settings()).openapi()["paths"].items():
        pattern = re.compile(r"\$URL" + re.sub(r"\\\{\w+\\\}", r"[\\w.-]+", re.escape(path)) + r"(\s|$)")
        for method in methods:
            examples = [c for c in curls if pattern.search(c)]
            if method == "post":
                examples = [c for c in examples if "-X POST" in c or " -F " in c]
            assert examples, f"no curl example for {method.upper()} {path}"


def test_every_cli_command_is_mentioned() -> None:
    sub = next(a for a in build_parser()._actions if a.dest == "command")
    for command in sub.choices:  # type: ignore[union-attr]
        assert f"dif {command}" in README, f"`dif {command}` is not in the README"


def test_paths_it_names_exist() -> None:
    for path in set(re.findall(r"`((?:deploy|docker|docs|tests|bench|scripts|\.ci)/[\w./-]*)`", README)):
        assert (REPO / path).exists(), f"README names {path}, which does not exist"


def test_ci_fails_without_the_shared_data(tmp_path: Path) -> None:
    clone = tmp_path / "clone"
    (clone / ".ci").mkdir(parents=True)
    shutil.copy2(REPO / ".ci" / "run", clone / ".ci" / "run")
    result = run(["bash", str(clone / ".ci" / "run")], timeout=30)
    assert result.returncode != 0
    assert "../shared/data/ltim is missing" in result.stderr


def test_the_lineage_upload_layout_is_what_the_archive_reader_accepts() -> None:
    from dif.archive import IGNORED, MAX_MEMBERS, REQUIRED

    section = README.split("### What goes in `my-generator.zip`", 1)[1].split("\n## ", 1)[0]
    for name in (*REQUIRED, *IGNORED):
        assert name in section, f"{name} is missing from the upload layout"
    assert f"more than {MAX_MEMBERS} entries" in section
    for archive in ("zip -r my-generator.zip my-generator", "tar czf ../my-generator.tar.gz ."):
        assert archive in section  # both run end to end in tests/lineage/test_lineage_api.py

