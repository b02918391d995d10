"""Service benchmark: real servers, real images, every ratio measured in the same run.

    python -m bench.service_bench [--seconds 8] [--json out.json]

Starts `python -m app` three times (13 generators batched, 13 generators with
DIF_MAX_BATCH_SIZE=1, 1 generator batched), drives each with concurrency 1, 8
and 32 over loopback, and prints throughput and p50/p99 latency, the 13-vs-1
generator cost, a per-image time breakdown and the decode-bound ceiling of this
machine (decode + crop on two threads, measured here, in this run).

Servers and the closed-loop driver come from testkit (shared with bench/loadgen.py,
bench/soak.py and the test suite).

Images: every file of ../shared/data/ltim (PNG 256-512 px and JPEG up to ~1000 px).
Fingerprints: random tensors with the default extractor: scoring cost does not
depend on their values, only on what each is decided on and whether it is periodic. The
servers score plain `z`; the 13-vs-1 cost is also measured in-process for each kind the
trainer makes (`z_bg` of the mean, `z_bg` with the gated phase search of the periodic
lattices, `z` with the 8-pixel shift-search backstop of the mean).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
from dataclasses import asdict
from pathlib import Path

import torch

from app.engine import forward, load_model_set
from bench.ceilings import decode_ceiling
from dif.detection import Detection
from dif.images import decode_image
from testkit.fingerprints import write_random_set
from testkit.images import Blob, sample_blobs
from testkit.load.drivers import closed_loop
from testkit.load.stats import LoadResult
from testkit.servers import start_app

CONCURRENCY = (1, 8, 32)
# What a fingerprint is decided on changes what scoring computes: z_bg one more matrix product,
# the backstop an inverse FFT per image and fingerprint over its shift window.
DETECTIONS = {"z_bg at zero shift (mean/zbg)": Detection(feature="zbg"),
              "z_bg + every phase, gated by the grid cosine (periodic lattices)":
                  Detection(feature="zbg", backstop_window=4, lattice=8, min_cosine=0.4),
              "z + 8-px shift backstop (mean estimators)": Detection(backstop_window=8)}


# -- in-process measurements --------------------------------------------------------------------


def forward_cost(images: list[Blob], sets: dict[int, Path], batches: tuple[int, ...] = (1, 4, 16),
                 repeats: int = 5) -> dict[tuple[int, int], dict[str, float]]:
    """Median ms per image of forward passes (residual, scoring), keyed by (generators, batch size).

    One thread, like the servers; set sizes and batch sizes interleaved so load drift hits them alike.
    Every batch size passes the same ``max(batches)`` images (batch 1: one at a time), so a small
    batch's figure is not one image's, which a single hiccup of this shared machine could double.
    """
    torch.set_num_threads(1)
    models = {count: load_model_set(root, None, torch.device("cpu"), 1) for count, root in sets.items()}
    any_model = next(iter(models.values()))
    span = max(batches)
    prepared = [any_model.detector.prepare(decode_image(d)) for _, d in images[:span]]
    samples: dict[tuple[int, int], list[tuple[float, float]]] = {}
    for _ in range(repeats + 1):
        for batch in batches:
            for count, model in models.items():
                results = [forward(model, prepared[start : start + batch])[0] for start in range(0, span, batch)]
                samples.setdefault((count, batch), []).append((sum(r.residual_s for r in results),
                                                               sum(r.scoring_s for r in results)))
    return {key: {"residual_ms": statistics.median(r for r, _ in values[1:]) * 1000 / span,
                  "scoring_ms": statistics.median(s for _, s in values[1:]) * 1000 / span}
            for key, values in samples.items()}


# -- report -------------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=8.0, help="measured seconds per run (after 1 s warm-up)")
    parser.add_argument("--json", type=Path, default=None, help="also write the raw numbers here")
    parser.add_argument("--torch-threads", type=int, default=1,
                        help="DIF_TORCH_THREADS of the servers (1: the model on one core, decoding on the other)")
    args = parser.parse_args()

    images = sample_blobs()
    with tempfile.TemporaryDirectory(prefix="dif-bench-") as tmp:
        root = Path(tmp)
        sets = {13: write_random_set(root / "set13", 13), 1: write_random_set(root / "set1", 1)}
        ceiling = decode_ceiling(images, sets[1], seconds=min(args.seconds, 6.0))
        forward_ms = forward_cost(images, sets)
        by_detection = {label: forward_cost(images, {n: write_random_set(root / f"kind{k}-{n}", n, detection=d)
                                                     for n in (13, 1)}, batches=(1, 16))
                        for k, (label, d) in enumerate(DETECTIONS.items())}
        runs: list[LoadResult] = []
        servers = {  # label -> (fingerprints, max batch, concurrency levels)
            "13 gen, batched (max 16)": (sets[13], 16, CONCURRENCY),
            "13 gen, max_batch_size=1": (sets[13], 1, CONCURRENCY),
            "13 gen, batched (max 4)": (sets[13], 4, (8, 32)),
            "1 gen, batched (max 16)": (sets[1], 16, (1, 32)),
        }
        # All servers up at once (idle ones cost nothing) and runs interleaved, so the ratios
        # compare runs minutes apart at most, whatever else the machine is doing.
        started = {label: start_app(server_env(fps, batch, args.torch_threads), root / f"server-{i}.log")
                   for i, (label, (fps, batch, _)) in enumerate(servers.items())}
        try:
            for concurrency in CONCURRENCY:
                for label, (_, _, levels) in servers.items():
                    if concurrency not in levels:
                        continue
                    runs.append(asyncio.run(closed_loop(started[label].url, images, concurrency, args.seconds, label)))
                    print(f"  {label:28s} c={concurrency:<3d} {runs[-1].throughput:6.1f} img/s", file=sys.stderr)
        finally:
            for server in started.values():
                server.stop()
    report(runs, ceiling, forward_ms, len(images), args)
    report_detections(forward_ms, by_detection)
    if args.json:
        args.json.write_text(json.dumps({
            "runs": [r.summary() for r in runs], "decode_ceiling": ceiling,
            "forward_ms": _keyed(forward_ms),
            "samples": [[asdict(sample) for sample in r.samples] for r in runs],
            "forward_ms_by_detection": {label: _keyed(costs) for label, costs in by_detection.items()},
        }, indent=2))


def _keyed(costs: dict[tuple[int, int], dict[str, float]]) -> dict[str, dict[str, float]]:
    """JSON keys for (generators, batch size)."""
    return {f"{g} gen, batch {b}": v for (g, b), v in costs.items()}


def report_detections(plain: dict[tuple[int, int], dict[str, float]],
                      by_detection: dict[str, dict[tuple[int, int], dict[str, float]]]) -> None:
    print("\n13 generators vs 1 by what they are decided on (model per image, residual + scoring, ms; "
          "one thread, in-process):\n")
    print("| decided on | batch | 1 gen | 13 gen | ratio | 13 gen vs plain z's 13 gen |")
    print("|---|---:|---:|---:|---:|---:|")
    for label, costs in by_detection.items():
        for batch in sorted({b for _, b in costs}):
            one, many, base = (sum(c[key].values()) for c, key in
                               ((costs, (1, batch)), (costs, (13, batch)), (plain, (13, batch))))
            print(f"| {label} | {batch} | {one:.1f} | {many:.1f} | {many / one:.2f}x | {many / base:.2f}x |")


def server_env(fingerprints: Path, max_batch_size: int, torch_threads: int) -> dict[str, str]:
    # A deep queue and a long timeout: this bench measures speed, not refusals.
    return {"DIF_FINGERPRINTS_DIR": str(fingerprints), "DIF_MAX_BATCH_SIZE": str(max_batch_size),
            "DIF_QUEUE_CAPACITY": "4096", "DIF_REQUEST_TIMEOUT_S": "120", "DIF_TORCH_THREADS": str(torch_threads)}


def report(runs: list[LoadResult], ceiling: float, forward_ms: dict[tuple[int, int], dict[str, float]], n_images: int,
           args: argparse.Namespace) -> None:
    def find(label: str, c: int) -> LoadResult:
        return next(r for r in runs if r.label.startswith(label) and r.level == c)

    print(f"\nDIF service benchmark: {os.cpu_count()} CPUs, torch {torch.__version__}, "
          f"DIF_TORCH_THREADS={args.torch_threads}, {n_images} images (PNG 256-512 px, JPEG ~550-1050 px), "
          f"{args.seconds:g} s per run after 1 s warm-up, load average {os.getloadavg()[0]:.1f} at the end\n")
    print("| server | concurrency | img/s | p50 ms | p99 ms | mean batch | errors |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for r in runs:
        s = r.summary()
        print(f"| {r.label} | {r.level:g} | {s['throughput']:.1f} | {s['p50_ms']:.0f} | {s['p99_ms']:.0f} "
              f"| {s['mean_batch']:.1f} | {s['errors'] + s['rejected_429']} |")

    print("\nBatched vs max_batch_size=1 (13 generators):\n")
    print("| concurrency | throughput ratio | p50 ratio | p99 ratio |")
    print("|---:|---:|---:|---:|")
    for c in CONCURRENCY:
        b, u = find("13 gen, batched (max 16)", c), find("13 gen, max_batch_size=1", c)
        print(f"| {c} | {b.throughput / u.throughput:.2f}x | {b.latency_ms(.5) / u.latency_ms(.5):.2f}x "
              f"| {b.latency_ms(.99) / u.latency_ms(.99):.2f}x |")

    t13, t1 = find("13 gen, batched (max 16)", 32), find("1 gen, batched", 32)
    s13, s1 = find("13 gen, batched (max 16)", 1), find("1 gen, batched", 1)
    print("\n13 generators vs 1 (goal <= 1.2x; scoring each generator separately would cost 13x):\n")
    print("| measure | 1 gen | 13 gen | ratio |")
    print("|---|---:|---:|---:|")
    for batch in sorted({b for _, b in forward_ms}):
        f1, f13 = forward_ms[(1, batch)], forward_ms[(13, batch)]
        m1, m13 = f1["residual_ms"] + f1["scoring_ms"], f13["residual_ms"] + f13["scoring_ms"]
        print(f"| model per image, batch {batch} (residual + scoring), ms | {m1:.1f} | {m13:.1f} | {m13 / m1:.2f}x |")
        print(f"| scoring alone per image, batch {batch}, ms | {f1['scoring_ms']:.1f} | {f13['scoring_ms']:.1f} "
              f"| {f13['scoring_ms'] / f1['scoring_ms']:.2f}x |")
    print(f"| service time per image at c=32 (1 / throughput), ms | {1000 / t1.throughput:.1f} "
          f"| {1000 / t13.throughput:.1f} | {t1.throughput / t13.throughput:.2f}x |")
    print(f"| p50 latency at c=1, ms | {s1.latency_ms(.5):.0f} | {s13.latency_ms(.5):.0f} "
          f"| {s13.latency_ms(.5) / s1.latency_ms(.5):.2f}x |")

    print("\nWhere a request's time goes, ms (13 generators, batched, max 16; means of the responses' "
          "timings_ms; the forward pass is its whole batch's, which the request waits for):\n")
    print("| concurrency | decode queue | decode | crop | batch queue wait | forward pass (residual + scoring) "
          "| other server time (upload, multipart, event loop) | client side | latency |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for c in CONCURRENCY:
        r = find("13 gen, batched (max 16)", c)
        parts = [r.mean_timing("decode_queue_ms"), r.mean_timing("decode_ms"), r.mean_timing("crop_ms"),
                 r.mean_timing("queue_ms"), r.mean_timing("residual_ms") + r.mean_timing("scoring_ms")]
        server_total = r.mean_timing("total_ms")
        latency = statistics.fmean(s.latency for s in r.ok) * 1000
        cells = " | ".join(f"{p:.1f}" for p in parts)
        print(f"| {c} | {cells} | {server_total - sum(parts):.1f} | {latency - server_total:.1f} | {latency:.1f} |")

    print("\nCPU cost per image, ms (same runs; residual and scoring are the batch's time over its size):\n")
    print("| concurrency | mean batch | decode | crop | residual | scoring | total |")
    print("|---:|---:|---:|---:|---:|---:|---:|")
    for c in CONCURRENCY:
        r = find("13 gen, batched (max 16)", c)
        parts = [r.mean_timing("decode_ms"), r.mean_timing("crop_ms"), r.mean_timing("residual_ms", per_image=True),
                 r.mean_timing("scoring_ms", per_image=True)]
        cells = " | ".join(f"{p:.1f}" for p in parts)
        print(f"| {c} | {r.mean_batch:.1f} | {cells} | {sum(parts):.1f} |")

    best = max(runs, key=lambda r: r.throughput if r.label.startswith("13 gen") else 0.0)
    model_ms = min(v["residual_ms"] + v["scoring_ms"] for (g, _), v in forward_ms.items() if g == 13)
    print(f"\nDecode-bound ceiling (decode + crop only, 2 threads, same images): {ceiling:.1f} img/s. "
          f"Best 13-generator service throughput: {best.throughput:.1f} img/s ({best.label}, c={best.level:g}) "
          f"= {100 * best.throughput / ceiling:.0f}% of it. The model alone costs at best {model_ms:.0f} ms per "
          f"image on one thread (13 generators), a ceiling of {1000 / model_ms:.1f} img/s for the inference core.")


if __name__ == "__main__":
    main()
