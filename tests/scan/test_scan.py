"""`dif scan` on a real local Ray (2 CPUs, one per session): rows, errors, the service's numbers,
the Parquet schema, --resume, and the sources it lists."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from dif import __version__
from dif.fingerprint_set import EMBEDDED_FINGERPRINTS, load_fingerprint_set
from scan.sources import list_source

from .conftest import (
    BROKEN,
    IMAGES,
    SIGNED,
    Collection,
    assert_same_as_service,
    detect_rows,
    relative,
    run_captured,
    run_cli,
)

SET = ["--fingerprints", str(EMBEDDED_FINGERPRINTS)]


def parquet_files(dest: Path) -> set[Path]:
    return set(dest.rglob("*.parquet"))


def rows_of(files: set[Path] | Path) -> list[dict[str, Any]]:
    paths = sorted(files) if isinstance(files, set) else sorted(parquet_files(files))
    return pa.concat_tables([pq.read_table(p) for p in paths]).to_pylist()


@pytest.fixture(scope="module")
def scanned(collection: Collection, ray_session: None, tmp_path_factory: pytest.TempPathFactory
            ) -> tuple[int, str, Path]:
    dest = tmp_path_factory.mktemp("scan") / "out"
    code, _, err = run_captured(["scan", str(collection.root), "--out", str(dest), *SET,
                                 "--trust-anchors", str(collection.anchors), "--batch-size", "4"])
    return code, err, dest


def test_one_row_per_file_and_errors_where_expected(collection: Collection, scanned) -> None:
    code, err, dest = scanned
    assert code == 1, err
    rows = relative(rows_of(dest), collection.root)
    assert set(rows) == {*collection.scorable, *BROKEN}
    for name, error_code in BROKEN.items():
        assert rows[name]["error_code"] == error_code and rows[name]["verdict"] is None
    assert all(rows[n]["error_code"] is None and rows[n]["verdict"] is not None for n in collection.scorable)
    mj = rows["fakes/mj.png"]  # MJ shares SD1.4's VAE grid: named, or listed with it
    assert mj["verdict"] == "fake" and mj["top"] in ("mj", None) and "mj" in mj["candidates"]
    assert "9 files" in err and "errors: 3" in err and "image_too_small 1" in err


def test_numbers_are_the_services_and_dif_detects(collection: Collection, scanned, service_results, capsys) -> None:
    _, _, dest = scanned
    rows = relative(rows_of(dest), collection.root)
    for name, answer in service_results.items():
        assert_same_as_service(rows[name], answer)
    _, detected, _ = detect_rows([*SET, "--trust-anchors", str(collection.anchors), str(collection.root)], capsys)
    for name, row in relative(detected, collection.root).items():
        # Batches of other sizes and other thread counts round differently in the last float bits.
        assert row.keys() == rows[name].keys()
        for key, value in row.items():
            if isinstance(value, float):
                assert abs(value - rows[name][key]) <= 1e-5, (name, key)
            else:
                assert value == rows[name][key], (name, key)


def test_parquet_schema(collection: Collection, scanned) -> None:
    _, _, dest = scanned
    schemas = {pq.read_schema(p) for p in parquet_files(dest)}
    assert len(schemas) == 1, "every file of a scan has one schema"
    schema = schemas.pop()
    generators = sorted(p.name for p in EMBEDDED_FINGERPRINTS.iterdir() if p.is_dir())
    assert schema.names[:12] == ["path", "size", "width", "height", "crops", "verdict", "fake", "evidence", "top",
                                 "candidates", "p_value", "rate"]
    assert schema.names[12:12 + 2 * len(generators)] == [f"p_value_{g}" for g in generators] + \
        [f"score_{g}" for g in generators]
    types = dict(zip(schema.names, schema.types, strict=True))
    assert all(types[f"{kind}_{g}"] == pa.float64() for kind in ("p_value", "score") for g in generators)
    assert types["candidates"] == pa.list_(pa.string()) and types["size"] == pa.int64()
    assert types["fake"] == types["declared_ai"] == types["provenance_decisive"] == pa.bool_()
    assert all(types[c] == pa.string() for c in ("path", "verdict", "top", "error_code", "error", "c2pa_state",
                                                 "model_version", "extractor", "fingerprints_digest"))
    table = pq.read_table(dest, columns=["model_version", "extractor", "fingerprints_digest"]).to_pylist()
    loaded = load_fingerprint_set(EMBEDDED_FINGERPRINTS)
    assert {tuple(r.values()) for r in table} == {(__version__, loaded.extractor_key, loaded.digest)}
    signed = pq.read_table(dest, filters=[("path", "=", collection.path(SIGNED))]).to_pylist()
    assert signed[0]["provenance_decisive"] is True
    assert (signed[0]["verdict"], signed[0]["fake"]) == ("fake", True) and "provenance" in signed[0]["evidence"]


def test_resume_scores_only_new_files(ray_session: None, tmp_path: Path, capsys) -> None:
    from testkit.paths import LTIM

    source, dest = tmp_path / "incoming", tmp_path / "out"
    source.mkdir()
    names = list(IMAGES.values())
    for i, name in enumerate(names[:2]):
        shutil.copyfile(LTIM / name, source / f"first-{i}.png")
    code, _, err = run_cli(["scan", str(source), "--out", str(dest), *SET], capsys)
    assert code == 0, err
    first = parquet_files(dest)
    assert len(rows_of(first)) == 2
    for i, name in enumerate(names[2:4]):
        shutil.copyfile(LTIM / name, source / f"second-{i}.png")
    code, _, err = run_cli(["scan", str(source), "--out", str(dest), *SET, "--resume"], capsys)
    assert code == 0, err
    added = rows_of(parquet_files(dest) - first)
    assert sorted(Path(r["path"]).name for r in added) == ["second-0.png", "second-1.png"]
    assert "2 files" in err and "2 already scanned" in err
    every = [r["path"] for r in rows_of(dest)]
    assert len(every) == len(set(every)) == 4


def test_a_dest_with_rows_needs_resume_and_the_same_set(ray_session: None, collection: Collection,
                                                        scanned, tmp_path: Path, capsys) -> None:
    _, _, dest = scanned
    before = parquet_files(dest)
    code, _, err = run_cli(["scan", str(collection.root), "--out", str(dest), *SET], capsys)
    assert code == 2 and len(err.splitlines()) == 1 and "pass --resume" in err
    smaller = tmp_path / "four"
    for artifact in sorted(p for p in EMBEDDED_FINGERPRINTS.iterdir() if p.is_dir())[:4]:
        shutil.copytree(artifact, smaller / artifact.name)
    code, _, err = run_cli(["scan", str(collection.root), "--out", str(dest), "--fingerprints", str(smaller),
                            "--resume"], capsys)
    assert code == 2 and "another fingerprint set" in err
    assert parquet_files(dest) == before, "a refused run writes nothing"


def test_a_list_of_paths_with_one_gone(ray_session: None, collection: Collection, tmp_path: Path, capsys) -> None:
    shutil.copyfile(collection.path("photos/street.png"), tmp_path / "street.png")
    gone = str(tmp_path / "deleted-since.png")
    listing = tmp_path / "to-scan.txt"  # relative entries are relative to the list's folder
    listing.write_text(f"# picked for review\n{collection.path('fakes/mj.png')}\nstreet.png\n\n{gone}\n")
    code, _, err = run_cli(["scan", str(listing), "--out", str(tmp_path / "out"), *SET], capsys)
    assert code == 1, err
    rows = {r["path"]: r for r in rows_of(tmp_path / "out")}
    assert set(rows) == {collection.path("fakes/mj.png"), str(tmp_path / "street.png"), gone}
    assert rows[gone]["error_code"] == "not_found" and "mj" in rows[collection.path("fakes/mj.png")]["candidates"]
    assert "not_found 1" in err


def test_sources_folders_globs_and_uris(collection: Collection) -> None:
    everything = list_source([str(collection.root)]).paths
    assert len(everything) == len(collection.scorable) + len(BROKEN)
    pngs = list_source([collection.path("fakes/*.png")]).paths
    assert pngs == [collection.path("fakes/mj.png"), collection.path("fakes/sd14.png")], "* stays in its folder"
    deep = list_source([collection.path("fakes/**/*.png")]).paths
    assert collection.path("fakes/more/dalle_2.png") in deep and len(deep) == 3
    uri = list_source([f"file://{collection.root}/fakes"])
    assert uri.scheme == "" and [uri.uri(p) for p in uri.paths] == deep
    with pytest.raises(FileNotFoundError):
        list_source([collection.path("nothing-here")])
