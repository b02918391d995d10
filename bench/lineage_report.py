"""Figures of docs/lineage.md: synthetic-family AUC over seeds, and lineage timings.

    python -m bench.lineage_report --seeds 0-8 --refs /tmp/refs   # refs: `dif import-reference ... --all`

Families are built three seeds at a time (one population of 15 generators per
group; tests/lineage builds one family). Prints one JSON object; its ``checks`` hold the bounds
the suite asserted while it built three families (AUC >= 0.95 per group and >= 0.9 per seed,
false positives <= 3 % of unrelated pairs, at least half the related pairs called related), and
the exit status is 1 when one fails.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from dataclasses import replace
from pathlib import Path

import torch

from dif.artifact import load_all
from dif.lineage import LineageConfig, Population, compare, matrix, orientation
from testkit.paths import LTIM
from training.lineage_family import FamilyConfig, build_families, is_related, lineage_auc


def seed_range(text: str) -> list[int]:
    lo, _, hi = text.partition("-")
    return list(range(int(lo), int(hi or lo) + 1))


# Ablations: what each step of the method is worth.
VARIANTS = {
    "no_principal_direction": LineageConfig(components=0),
    "aligned_only": LineageConfig(max_shift=0),
}


def family_auc(seeds: list[int], data: Path, config: LineageConfig, prior: str) -> dict[str, object]:
    started = time.perf_counter()
    family = FamilyConfig()
    members = build_families(seeds, data, replace(family, train=replace(family.train, prior=prior)))
    built = time.perf_counter() - started
    fps = [m.fingerprint for m in members]
    result = matrix(fps, Population(fps, config))
    truth, scores, naive, called = [], [], [], []
    for (i, j), c in result.comparisons.items():
        truth.append(is_related(members[i], members[j]))
        scores.append(c.similarity)
        called.append(c.related)
        pair = torch.stack([fps[i].tensor.flatten(), fps[j].tensor.flatten()])
        naive.append(float(torch.corrcoef(pair)[0, 1]))
    related = sum(truth)
    # Each seed on its own: its related pairs against every unrelated pair.
    seed_auc = {}
    for seed in seeds:
        own = [k for k, (i, j) in enumerate(result.comparisons) if not truth[k] or members[i].family == seed]
        seed_auc[seed] = lineage_auc([scores[k] for k in own], [truth[k] for k in own])
    ablations = {}
    for name, variant in VARIANTS.items():
        other = matrix(fps, Population(fps, variant))
        ablations[name] = lineage_auc([c.similarity for c in other.comparisons.values()], truth)
    return {
        "seeds": seeds, "auc": lineage_auc(scores, truth), "seed_auc": seed_auc,
        "naive_auc": lineage_auc(naive, truth),
        "ablation_auc": ablations,
        "true_positives": sum(c and t for c, t in zip(called, truth, strict=True)), "related_pairs": related,
        "false_positives": sum(c and not t for c, t in zip(called, truth, strict=True)),
        "unrelated_pairs": len(truth) - related, "build_seconds": round(built, 1),
    }


def reference_ranks(refs: Path) -> dict[str, object]:
    """Where SD1.4 ranks among MidJourney's neighbours, step by step."""
    fps = load_all(refs)
    names = [fp.name for fp in fps]
    mj = names.index("mj")

    def rank(scores: dict[str, float]) -> dict[str, object]:
        order = sorted(scores, key=lambda n: -scores[n])
        return {"sd14_rank": order.index("sd14") + 1, "top": order[:3]}

    units = torch.stack([fp.tensor.flatten() for fp in fps])
    naive = torch.corrcoef(units)[mj]
    signs = [orientation(fp) for fp in fps]
    out: dict[str, object] = {
        "naive": rank({n: float(naive[k]) for k, n in enumerate(names) if k != mj}),
        "oriented": rank({n: float(naive[k]) * signs[k] * signs[mj] for k, n in enumerate(names) if k != mj}),
    }
    for label, config in (("means_removed_aligned", LineageConfig(components=0, max_shift=0)),
                          ("means_removed", LineageConfig(components=0)),
                          ("full_method", LineageConfig())):
        result = matrix(fps, Population(fps, config))
        row = result.values()[mj]
        out[label] = rank({n: row[k] for k, n in enumerate(names) if k != mj})
    return out


def timings(refs: Path, config: LineageConfig, repeats: int = 3) -> dict[str, float]:
    fps = load_all(refs)
    names = [fp.name for fp in fps]
    a, b = fps[names.index("mj")], fps[names.index("sd14")]

    def best(fn) -> float:
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t0)
        return min(times)

    warm = Population(fps, config)
    _ = warm.null
    outsider = type(a)(name="outsider", tensor=a.tensor + 0.1 * torch.randn(a.tensor.shape),
                       calibration=a.calibration, extractor=a.extractor)
    return {
        "fingerprints": len(fps),
        "cold_pair_s": best(lambda: compare(a, b, Population(fps, config))),  # what `dif lineage` pays
        "warm_member_pair_s": best(lambda: compare(a, b, warm)),
        "warm_upload_pair_s": best(lambda: compare(outsider, b, warm)),  # POST /lineage with an upload
        "full_matrix_s": best(lambda: matrix(fps, Population(fps, config))),
        "torch_threads": torch.get_num_threads(),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", default="0-8", help="family seeds, e.g. 0-8 (groups of three)")
    parser.add_argument("--data", type=Path, default=LTIM)
    parser.add_argument("--refs", type=Path, default=None, help="imported reference artifacts, for timings")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--prior", default="unet", choices=["unet", "mean"],
                        help="fingerprint prior of the synthetic family (the trainer's CPU default is mean)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    config = LineageConfig()
    seeds = seed_range(args.seeds)
    groups = [family_auc(seeds[k : k + 3], args.data, config, args.prior) for k in range(0, len(seeds), 3)]
    report: dict[str, object] = {
        "config": config.to_dict(), "prior": args.prior, "groups": groups,
        "auc_mean": statistics.mean(g["auc"] for g in groups),  # type: ignore[misc]
        "auc_min": min(g["auc"] for g in groups),  # type: ignore[type-var]
        "naive_auc_mean": statistics.mean(g["naive_auc"] for g in groups),  # type: ignore[misc]
    }
    report["checks"] = checks = {
        "auc >= 0.95 per group": all(g["auc"] >= 0.95 for g in groups),  # type: ignore[operator]
        "auc >= 0.9 per seed": all(a >= 0.9 for g in groups for a in g["seed_auc"].values()),  # type: ignore[attr-defined]
        "false positives <= 3 % of unrelated pairs": all(
            g["false_positives"] <= 0.03 * g["unrelated_pairs"] for g in groups),  # type: ignore[operator]
        "half the related pairs called related": all(
            g["true_positives"] >= g["related_pairs"] // 2 for g in groups),  # type: ignore[operator]
    }
    if args.refs:
        report["reference_ranks"] = reference_ranks(args.refs)
        report["timings"] = timings(args.refs, config)
    print(json.dumps(report, indent=2))
    return 0 if all(checks.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
