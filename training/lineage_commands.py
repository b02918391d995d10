"""``dif lineage``, ``dif lineage-matrix``, ``dif cross-detect``: model lineage from the command line.

The parsers are built without torch (``dif lineage --help`` answers at once); each handler
imports the heavy modules it uses when it runs.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dif.errors import ArtifactError

if TYPE_CHECKING:

    from dif.artifact import Fingerprint
    from dif.lineage import LineageConfig

# dif.lineage.LineageConfig's defaults, here so that building the parser needs no torch
# (tests/core/test_cli.py checks they are the same).
DEFAULT_MAX_SHIFT = 4
DEFAULT_ALPHA = 1e-3


def load_artifacts(paths: list[Path]) -> list[Fingerprint]:
    """Artifacts named by ``paths``: an artifact folder itself, or a folder of artifact folders."""
    from dif.artifact import METADATA_FILE, discover, load_fingerprint

    found: list[Fingerprint] = []
    for path in paths:
        if (path / METADATA_FILE).is_file():
            found.append(load_fingerprint(path))
        elif path.is_dir():
            children = discover(path)
            if not children:
                raise ArtifactError(f"{path} is neither an artifact folder nor a folder of artifacts")
            found += [load_fingerprint(child) for child in children]
        else:
            raise ArtifactError(f"{path} does not exist; pass artifact folders (or folders of them)")
    return found


def unique(fingerprints: list[Fingerprint]) -> list[Fingerprint]:
    """Drop repeated artifacts (same tensor), keeping the first."""
    from dif.artifact import tensor_digest

    seen: dict[str, Fingerprint] = {}
    for fp in fingerprints:
        seen.setdefault(tensor_digest(fp.tensor), fp)
    return list(seen.values())


def population_pool(compared: list[Fingerprint], extra: list[Path], siblings: list[Path]) -> list[Fingerprint]:
    """The compared fingerprints, those of ``extra`` folders and of ``siblings`` (folders beside them).

    Only fingerprints of the compared ones' crop size can be part of it.
    """
    from dif.artifact import discover, load_fingerprint

    pool = [*compared, *load_artifacts(extra)]
    for folder in siblings:
        if folder.is_dir():
            pool += [load_fingerprint(p) for p in discover(folder)]
    size = compared[0].crop_size
    return unique([fp for fp in pool if fp.crop_size == size])


def config_of(args: argparse.Namespace) -> LineageConfig:
    from dif.lineage import LineageConfig

    return LineageConfig(max_shift=args.max_shift, alpha=args.alpha)


def cmd_lineage(args: argparse.Namespace) -> int:
    from dif.artifact import load_fingerprint
    from dif.lineage import Population, compare

    a, b = load_fingerprint(args.a_dir), load_fingerprint(args.b_dir)
    siblings = [] if args.population else sorted({args.a_dir.resolve().parent, args.b_dir.resolve().parent})
    started = time.perf_counter()
    population = Population(population_pool([a, b], args.population or [], siblings), config_of(args))
    result = compare(a, b, population)
    report: dict[str, Any] = {**result.to_dict(), "null": population.null.to_dict(),
                              "seconds": round(time.perf_counter() - started, 3)}
    if args.json:
        print(json.dumps(report, sort_keys=True))
    else:
        verdict = "related" if result.related else "not related"
        print(f"{a.name} vs {b.name}: {verdict} (similarity {result.similarity:+.2f}, threshold "
              f"{result.threshold:.2f}, p={result.p_value:.2g}, {result.hypothesis} at shift "
              f"{list(result.shift)}, correlation {result.correlation:+.3f}; population of {result.population})")
        for warning in result.warnings:
            print(f"warning: {warning}")
    return 0


def cmd_lineage_matrix(args: argparse.Namespace) -> int:
    from dif.lineage import Population, matrix
    from dif.render import lineage_heatmap, save_png

    fingerprints = unique(load_artifacts(args.fp_dirs))
    started = time.perf_counter()
    population = Population(population_pool(fingerprints, args.population or [], []), config_of(args))
    result = matrix(fingerprints, population)
    seconds = time.perf_counter() - started
    if args.png:
        save_png(lineage_heatmap(result, population.config), args.png)
    if args.json:
        print(json.dumps({**result.to_dict(), "null": population.null.to_dict(),
                          "seconds": round(seconds, 3)}, sort_keys=True))
    else:
        for c in result.comparisons.values():
            if c.related:
                print(f"related: {c.a} ~ {c.b} (similarity {c.similarity:+.2f}, shift {list(c.shift)})")
        print(f"{len(result.comparisons)} pairs of {len(result.names)} fingerprints in {seconds:.2f} s"
              + (f"; heatmap in {args.png}" if args.png else ""))
    return 0


def cmd_cross_detect(args: argparse.Namespace) -> int:
    """Accuracy of each fingerprint on each generator's labelled folder (rows: fingerprints, columns: data)."""
    import numpy as np

    from dif.extractors import create
    from dif.render import heatmap_image, save_png
    from training.data import FAKE, build_cache, scan
    from training.evaluate import evaluate_cache
    from training.pipeline import image_statistic
    from training.trainer import resolve_device

    fingerprints = unique(load_artifacts(args.fp_dirs))
    device = resolve_device(args.device)
    folders = [d for d in args.data if (d / "1_fake").is_dir()] or \
        [d for root in args.data for d in sorted(root.iterdir()) if (d / "1_fake").is_dir()]
    if not folders:
        raise ArtifactError("no data folder with 0_real/ and 1_fake/ found; pass generator folders or their parent")
    caches: dict[tuple[str, int, int, int, str], Any] = {}
    rows: list[dict[str, Any]] = []
    for fp in fingerprints:
        extractor = create(fp.extractor_key, args.extractor_dir)
        row: list[dict[str, Any]] = []
        for folder in folders:
            key = (fp.extractor_key, fp.crop_size, fp.detection.max_crops, fp.detection.align, str(folder))
            if key not in caches:
                caches[key] = build_cache(scan(folder), extractor, fp.crop_size, fp.detection.max_crops,
                                          fp.detection.align, device, progress=False)
            cache = caches[key]
            report = evaluate_cache(fp, cache, device)
            # The raw feature on B's fakes: a threshold can flag every generator's images (they share
            # "fake" traits), while the feature's level says how much of A's own trace B's images carry.
            feature = image_statistic(fp.tensor, cache, fp.detection, device)[cache.labels == FAKE]
            row.append({"data": folder.name, "accuracy": report["accuracy"],
                        "fake_detected": report["accuracy_fake"], "real_kept": report["accuracy_real"],
                        "auc": report["auc"], "fake_feature": float(feature.mean())})
        rows.append({"fingerprint": fp.name, "results": row})
    values = np.array([[r[args.metric] for r in row["results"]] for row in rows], dtype=float)
    if args.png:
        title = f"Cross-detection: {args.metric} of each fingerprint on each generator's labelled images"
        save_png(heatmap_image(values, [r["fingerprint"] for r in rows], title=title,
                               col_labels=[f.name for f in folders], value_label=args.metric,
                               row_title="fingerprint", col_title="images of",
                               caption="The diagonal is each fingerprint on its own generator; a high value "
                                       "off it means the fingerprint also flags another generator's images."),
                 args.png)
    if args.json:
        print(json.dumps({"metric": args.metric, "data": [f.name for f in folders], "rows": rows}, sort_keys=True))
    else:
        width = max(len(f.name) for f in folders) + 2
        print(" " * 16 + "".join(f.name.rjust(width) for f in folders))
        for entry, line in zip(rows, values, strict=True):
            print(entry["fingerprint"][:15].ljust(16) + "".join(f"{v:.3f}".rjust(width) for v in line))
    return 0


def _add_lineage_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--population", type=Path, nargs="+", default=None,
                   help="artifact folders (or folders of them) that, with those compared, teach what "
                        "fingerprints share and what unrelated pairs look like")
    p.add_argument("--max-shift", type=int, default=DEFAULT_MAX_SHIFT,
                   help="largest shift (pixels per axis) the shifted hypothesis searches")
    p.add_argument("--alpha", type=float, default=DEFAULT_ALPHA,
                   help="false-positive rate of the related decision, per pair")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of a summary")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("lineage", help="is B derived from A? compare two fingerprint artifacts",
                       description="Default population: every artifact in the folders holding A and B.")
    p.add_argument("a_dir", type=Path, help="artifact folder of A, the possible parent")
    p.add_argument("b_dir", type=Path, help="artifact folder of B, the possible descendant")
    _add_lineage_options(p)
    p.set_defaults(func=cmd_lineage)

    p = sub.add_parser("lineage-matrix", help="lineage of every pair of fingerprints, as JSON and a heatmap")
    p.add_argument("fp_dirs", type=Path, nargs="+", help="artifact folders, or folders of artifact folders")
    p.add_argument("--png", type=Path, default=None, help="write the heatmap here")
    _add_lineage_options(p)
    p.set_defaults(func=cmd_lineage_matrix)

    p = sub.add_parser("cross-detect", help="accuracy of each fingerprint on each generator's labelled images")
    p.add_argument("fp_dirs", type=Path, nargs="+", help="artifact folders, or folders of artifact folders")
    p.add_argument("--data", type=Path, nargs="+", required=True,
                   help="generator folders with 0_real/ and 1_fake/, or one folder holding them")
    p.add_argument("--metric", default="accuracy",
                   choices=["accuracy", "fake_detected", "real_kept", "auc", "fake_feature"],
                   help="the number shown in the heatmap")
    p.add_argument("--png", type=Path, default=None, help="write the heatmap here")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"],
                   help="where residuals and scores are computed (auto: CUDA if available)")
    p.add_argument("--extractor-dir", type=Path, default=None, help="weights folder of a learned extractor")
    p.set_defaults(func=cmd_cross_detect)
