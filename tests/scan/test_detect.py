"""`dif detect`: one row per file, the service's numbers, errors as rows, exit codes, output forms."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import pytest

from dif.decision import VERDICTS
from dif.fingerprint_set import EMBEDDED_FINGERPRINTS, load_fingerprint_set
from tests.core.test_cli import HEAVY, imported_by

from .conftest import (
    BROKEN,
    SIGNED,
    Collection,
    assert_same_as_service,
    detect_rows,
    relative,
    run_captured,
    run_cli,
)

SET = ["--fingerprints", str(EMBEDDED_FINGERPRINTS)]


@pytest.fixture(scope="module")
def detected(collection: Collection) -> tuple[int, dict[str, dict], str]:
    """The whole collection through `dif detect --json`, once for the module."""
    code, out, err = run_captured(["detect", "--json", *SET, "--trust-anchors", str(collection.anchors),
                                   str(collection.root)])
    return code, relative([json.loads(line) for line in out.splitlines()], collection.root), err


def test_every_file_gets_one_row_and_the_bad_ones_their_error(collection: Collection, detected) -> None:
    code, rows, err = detected
    assert code == 1, "some files could not be scored"
    assert set(rows) == {*collection.scorable, *BROKEN}
    for name, error_code in BROKEN.items():
        assert rows[name]["error_code"] == error_code, rows[name]
        assert rows[name]["verdict"] is None and rows[name]["p_value_mj"] is None
    for name in collection.scorable:
        assert rows[name]["error_code"] is None and rows[name]["verdict"] in VERDICTS, rows[name]
    # The fingerprints find the generators whose outputs these are.
    # MJ and SD1.4 share a VAE grid, so both fingerprints fire: named, or both listed as candidates.
    for name in ("mj", "sd14"):
        row = rows[f"fakes/{name}.png"]
        assert row["verdict"] == "fake" and row["top"] in (name, None) and name in row["candidates"]
    assert rows["bad/notes.txt"]["size"] == (collection.root / "bad/notes.txt").stat().st_size
    loaded = load_fingerprint_set(EMBEDDED_FINGERPRINTS)
    assert {r["fingerprints_digest"] for r in rows.values()} == {loaded.digest}
    assert "8 files" not in err and "9 files" in err and "errors: 3" in err


def test_declared_provenance_is_read_from_the_file(detected) -> None:
    _, rows, _ = detected
    signed = rows[SIGNED]
    assert (signed["c2pa_state"], signed["c2pa_trust"], signed["declared_ai"]) == ("valid", "trusted", True)
    assert signed["provenance_validated"] and signed["provenance_decisive"]
    assert signed["verdict"] == "fake" and "provenance" in signed["evidence"]  # the service's rule, dif.verdict
    plain = rows["photos/street.png"]
    assert (plain["c2pa_state"], plain["provenance_decisive"]) == ("absent", False)
    # Read even where the pixels cannot be scored: a text file declares nothing.
    assert (rows["bad/notes.txt"]["c2pa_state"], rows["bad/notes.txt"]["declared_ai"]) == ("absent", False)


def test_the_numbers_are_the_services(collection: Collection, detected, service_results) -> None:
    _, rows, _ = detected
    assert set(service_results) == set(collection.scorable)
    for name, answer in service_results.items():
        assert_same_as_service(rows[name], answer)


def test_all_scored_exits_0_with_a_text_line_per_file_and_a_progress_bar(collection: Collection, capsys) -> None:
    code, out, err = run_cli(["detect", *SET, collection.path("fakes"), collection.path("photos/street.png")], capsys)
    assert code == 0
    lines = out.splitlines()
    assert len(lines) == 4
    mj = next(line for line in lines if line.startswith(collection.path("fakes/mj.png")))
    assert mj.split("\t")[1] == "fake" and mj.split("\t")[2] in ("mj", "-")
    assert "4/4" in err, "tqdm's bar reaches the total on stderr"


def test_a_stricter_rate_changes_the_decision_not_the_evidence(collection: Collection, capsys) -> None:
    files = [collection.path("fakes/sd14.png"), collection.path("photos/portrait.png")]
    _, default, _ = detect_rows([*SET, *files], capsys)
    _, strict, _ = detect_rows([*SET, "--fpr", "0.0001", *files], capsys)
    for a, b in zip(default, strict, strict=True):
        assert (a["rate"], b["rate"]) == (0.01, 0.0001)
        assert a["p_value_sd14"] == b["p_value_sd14"] and a["p_value"] == b["p_value"]
    # score is log(p_adj) / (2 log rate): the same evidence is a smaller share of a stricter rate's scale.
    moderate = [(i, key) for i, row in enumerate(default) for key in row
                if key.startswith("score_") and 0.0 < row[key] < 1.0]
    assert moderate, "some generator's evidence is neither none nor saturated"
    assert all(strict[i][key] < default[i][key] for i, key in moderate)


def test_csv_holds_the_json_rows(collection: Collection, tmp_path: Path, capsys) -> None:
    files = [collection.path("fakes/mj.png"), collection.path("bad/notes.txt")]
    _, rows, _ = detect_rows([*SET, *files], capsys)
    out = tmp_path / "rows.csv"
    code, stdout, _ = run_cli(["detect", *SET, "--no-progress", "--csv", str(out), *files], capsys)
    assert code == 1 and stdout == ""
    table = list(csv.DictReader(out.open()))
    assert [r["path"] for r in table] == [r["path"] for r in rows]
    assert list(table[0]) == list(rows[0]), "same columns, same order"
    assert float(table[0]["p_value_mj"]) == rows[0]["p_value_mj"]
    assert table[0]["candidates"] == ";".join(rows[0]["candidates"])
    assert table[1]["error_code"] == "unsupported_media_type" and table[1]["verdict"] == ""


@pytest.mark.parametrize("argv, says", [
    (["/nonexistent/folder"], "no such file or folder"),
    (["--fpr", "0.5", "."], "--fpr must be between"),
    (["--fpr", "often", "."], "--fpr must be a number"),
    (["--fingerprints", "/nonexistent", "."], "does not exist"),
    (["--batch-size", "0", "."], "--batch-size must be at least 1"),
])
def test_usage_errors_are_one_line_and_exit_2(argv: list[str], says: str, capsys) -> None:
    code, out, err = run_cli(["detect", *argv], capsys)
    assert code == 2 and out == ""
    assert len(err.splitlines()) == 1 and err.startswith("dif detect: error:") and says in err, err


def test_an_empty_folder_is_a_usage_error(tmp_path: Path, capsys) -> None:
    code, _, err = run_cli(["detect", *SET, str(tmp_path)], capsys)
    assert code == 2 and err.startswith("dif detect: error: no files under")


@pytest.mark.parametrize("command", ["detect", "scan"])
def test_help_imports_neither_torch_nor_ray(command: str) -> None:
    heavy = imported_by([command, "--help"]) & {*HEAVY, "ray", "pyarrow"}
    assert not heavy, f"`dif {command} --help` imports {sorted(heavy)}"


def test_scan_without_ray_is_one_line_naming_the_extra(tmp_path: Path) -> None:
    # As in the service image or a base install: `import ray` fails, dif detect still works.
    code = ("import sys; sys.modules['ray'] = None; from dif_cli import main; "
            f"sys.exit(main(['scan', {str(tmp_path)!r}, '--out', {str(tmp_path / 'out')!r}]))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 2, result.stderr
    assert len(result.stderr.splitlines()) == 1 and "pip install 'dif-service[scan]'" in result.stderr
