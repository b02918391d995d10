"""Load generator: throughput and latency, closed and open loop, batched vs unbatched, in one run.

    python -m bench.loadgen [--seconds 8] [--batch-sizes 1,4,16] [--concurrency 1,8,32]
                            [--rates 5,10 | --rate-fractions 0.5,0.9] [--arrivals poisson|constant]
                            [--url LABEL=URL ...] [--api-key KEY] [--json out.json]

By default it starts one `python -m app` per `--batch-sizes` entry (DIF_MAX_BATCH_SIZE; the
first is the baseline, 1 = unbatched), all with the shipped fingerprints and the product's
queue capacity and request timeout, and drives each

- closed loop: `--concurrency` workers, each sending its next image when the last is answered;
- open loop: requests on a fixed schedule (`--arrivals`, Poisson by default) at each rate,
  sent whatever the answers do; latency runs from the *scheduled* send time, so queueing
  that a closed loop hides (coordinated omission) is counted. Without `--rates`, the rates
  are `--rate-fractions` of the baseline's best closed-loop throughput measured just before.

Runs are interleaved (every server at one level, then the next level), so the ratios against
the baseline compare runs seconds apart on a machine whose load drifts.

`--url LABEL=URL` (repeatable) drives servers that are already running (a container, a
deployment) instead; the first is the baseline.

Images: every file of ../shared/data/ltim (PNG 256-512 px, JPEG ~550-1050 px), one per request.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from testkit.images import Blob, sample_blobs
from testkit.load.drivers import closed_loop, open_loop
from testkit.load.stats import LoadResult
from testkit.servers import AppProcess, start_app


@dataclass(frozen=True)
class Target:
    label: str
    url: str


def parse_list(text: str, kind: type = float) -> list[Any]:
    return [kind(part) for part in text.split(",") if part.strip()]


@contextmanager
def targets(args: argparse.Namespace) -> Iterator[list[Target]]:
    """The servers to drive: the given URLs, or one fresh server per batch size (stopped afterwards)."""
    if args.url:
        yield [Target(*entry.split("=", 1)) if "=" in entry else Target(entry, entry) for entry in args.url]
        return
    started: list[AppProcess] = []
    with tempfile.TemporaryDirectory(prefix="dif-loadgen-") as tmp:
        try:
            found = []
            for size in parse_list(args.batch_sizes, int):
                env = {"DIF_MAX_BATCH_SIZE": str(size), "DIF_TORCH_THREADS": str(args.torch_threads)}
                if args.fingerprints:
                    env["DIF_FINGERPRINTS_DIR"] = str(args.fingerprints)
                started.append(start_app(env, Path(tmp) / f"server-{size}.log"))
                label = "unbatched (max 1)" if size == 1 else f"batched (max {size})"
                found.append(Target(label, started[-1].url))
            yield found
        finally:
            for server in started:
                server.stop()


def run_all(args: argparse.Namespace, servers: list[Target], images: list[Blob]) -> list[LoadResult]:
    headers = {"X-API-Key": args.api_key} if args.api_key else None
    results: list[LoadResult] = []
    for concurrency in parse_list(args.concurrency, int):
        for target in servers:
            results.append(asyncio.run(closed_loop(target.url, images, concurrency, args.seconds, target.label,
                                                   warmup_s=args.warmup, timeout_s=args.timeout, headers=headers)))
            progress(results[-1])
    rates = parse_list(args.rates) if args.rates else auto_rates(results, servers[0].label, args.rate_fractions)
    for rate in rates:
        for target in servers:
            results.append(asyncio.run(open_loop(target.url, images, rate, args.seconds, target.label,
                                                 warmup_s=args.warmup, timeout_s=args.timeout,
                                                 poisson=args.arrivals == "poisson", headers=headers)))
            progress(results[-1])
    return results


def auto_rates(results: list[LoadResult], baseline: str, fractions: str) -> list[float]:
    closed = [r.throughput for r in results if r.label == baseline and r.mode == "closed"]
    best = max(closed, default=0.0)
    if best <= 0:
        sys.exit("the baseline answered nothing in closed loop; give --rates")
    return [round(best * f, 1) for f in parse_list(fractions)]


def progress(r: LoadResult) -> None:
    unit = "c" if r.mode == "closed" else "rate"
    print(f"  {r.label:20s} {r.mode:6s} {unit}={r.level:<6g} {r.throughput:6.1f} img/s  "
          f"p50 {r.latency_ms(.5):7.0f} ms  p99 {r.latency_ms(.99):7.0f} ms  {r.statuses()}", file=sys.stderr)


def ratio(a: float, b: float) -> str:
    return f"{a / b:.2f}x" if b and not (math.isnan(a) or math.isnan(b)) else "n/a"


def report(results: list[LoadResult], servers: list[Target], args: argparse.Namespace, n_images: int) -> None:
    print(f"\nDIF load generator: {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f} at the end, "
          f"{n_images} images, {args.seconds:g} s per run after {args.warmup:g} s warm-up, "
          f"open loop {args.arrivals}, DIF_TORCH_THREADS={args.torch_threads}\n")
    print("| server | mode | concurrency / offered req/s | img/s | p50 ms | p99 ms | 429 | other errors "
          "| mean batch | client send lag p99 ms |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in results:
        s = r.summary()
        print(f"| {r.label} | {r.mode} | {r.level:g} | {s['throughput']:.1f} | {s['p50_ms']:.0f} | {s['p99_ms']:.0f} "
              f"| {s['rejected_429']} | {s['errors']} | {s['mean_batch']:.1f} | {s['send_lag_p99_ms']:.0f} |")
    base = servers[0].label
    if len(servers) < 2:
        return
    print(f"\nRatios against {base}, measured in this run (throughput > 1 and latency < 1 are better):\n")
    print("| server | mode | level | throughput | p50 | p99 |")
    print("|---|---|---:|---:|---:|---:|")
    for r in results:
        if r.label == base:
            continue
        b = next(x for x in results if x.label == base and x.mode == r.mode and x.level == r.level)
        print(f"| {r.label} | {r.mode} | {r.level:g} | {ratio(r.throughput, b.throughput)} "
              f"| {ratio(r.latency_ms(.5), b.latency_ms(.5))} | {ratio(r.latency_ms(.99), b.latency_ms(.99))} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=8.0, help="measured seconds per run")
    parser.add_argument("--warmup", type=float, default=1.0, help="seconds before measuring, per run")
    parser.add_argument("--batch-sizes", default="1,4,16", help="DIF_MAX_BATCH_SIZE per self-started server; "
                        "the first is the baseline")
    parser.add_argument("--concurrency", default="1,8,32", help="closed-loop levels")
    parser.add_argument("--rates", default="", help="open-loop request rates (req/s); default: --rate-fractions")
    parser.add_argument("--rate-fractions", default="0.5,0.9",
                        help="open-loop rates as fractions of the baseline's best closed-loop throughput")
    parser.add_argument("--arrivals", choices=("poisson", "constant"), default="poisson")
    parser.add_argument("--url", action="append", default=[], metavar="LABEL=URL",
                        help="drive a running server instead (repeatable; the first is the baseline)")
    parser.add_argument("--api-key", default=os.environ.get("DIF_API_KEY"), help="X-API-Key for --url servers")
    parser.add_argument("--fingerprints", type=Path, default=None, help="DIF_FINGERPRINTS_DIR (default: shipped)")
    parser.add_argument("--torch-threads", type=int, default=1, help="DIF_TORCH_THREADS of self-started servers")
    parser.add_argument("--timeout", type=float, default=120.0, help="client timeout per request, seconds")
    parser.add_argument("--json", type=Path, default=None, help="also write every summary here")
    args = parser.parse_args()

    images = sample_blobs()
    with targets(args) as servers:
        results = run_all(args, servers, images)
    report(results, servers, args, len(images))
    if args.json:
        args.json.write_text(json.dumps({"args": {k: str(v) for k, v in vars(args).items() if k != "api_key"},
                                         "cpus": os.cpu_count(), "load_average": os.getloadavg(),
                                         "runs": [r.summary() for r in results]}, indent=2))


if __name__ == "__main__":
    main()
