"""Scanning a collection: `dif scan` (1 and 2 scoring actors) vs `dif detect` vs the HTTP service, one run.

    python -m bench.scan_bench [--images 500] [--concurrency 8] [--json out.json]

The same ``--images`` files (the shared samples, ltim's 100 and cbsd68's 68, cycled and copied
into a temporary folder under distinct names) go through each path, every file once:

- ``dif detect`` in this process (2 decode threads, torch's default threads, batches of 8);
- ``dif scan`` on a Ray started once here with this machine's CPUs (its start-up is reported
  apart: a job pays it once), with ``--workers 1`` (1 CPU each) and ``--workers 2`` (half a CPU
  each, so that a CPU is left for the decode tasks), Parquet written to a temporary folder;
- ``python -m app`` (testkit's ``start_app``, DIF_MAX_BATCH_SIZE=4 as on CPU hosts), each file
  POSTed once by ``--concurrency`` clients; the server is ready before the clock starts.

Each figure is images/s over the whole pass (loading the set, starting actors, writing rows
included for the CLIs). Ratios are against ``dif detect``, and the decode ceiling
(bench/ceilings.py's ``decode_ceiling``: decode + crop alone on 2 threads) bounds all of them.
A scan of 8 files (after a first one that starts Ray's worker processes) gives a scan job's
fixed cost, and from it the steady rate of the 500.
On a GPU machine the scorers would be GPU actors (``--num-gpus-per-worker 1``); see docs/scan.md.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import io
import json
import logging
import os
import shutil
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import httpx

from bench.ceilings import decode_ceiling
from dif.fingerprint_set import EMBEDDED_FINGERPRINTS
from dif_cli import main
from testkit.paths import DATA as SHARED
from testkit.servers import start_app


def build_collection(folder: Path, count: int) -> list[Path]:
    """``count`` files cycled from the shared samples, each under its own name."""
    sources = sorted(SHARED.glob("ltim/*/*/*")) + sorted((SHARED / "real" / "cbsd68").glob("*.png"))
    if not sources:
        raise SystemExit(f"no images under {SHARED}: the bench needs ../shared beside the repository")
    files = []
    for i in range(count):
        source = sources[i % len(sources)]
        target = folder / f"{i:04d}-{source.parent.name}-{source.name}"
        shutil.copyfile(source, target)
        files.append(target)
    return files


def timed_cli(argv: list[str]) -> tuple[float, int, str]:
    """Seconds, exit code and stderr of ``dif ARGV`` in this process (rows on stdout are dropped)."""
    err = io.StringIO()
    started = time.perf_counter()
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(err):
        code = main(argv)
    return time.perf_counter() - started, code, err.getvalue()


async def post_each_once(url: str, files: Sequence[Path], concurrency: int) -> tuple[float, int]:
    """Every file POSTed to /detect once, ``concurrency`` requests in flight; seconds and 200s."""
    gate = asyncio.Semaphore(concurrency)
    blobs = [(f.name, f.read_bytes()) for f in files]
    async with httpx.AsyncClient(timeout=300) as client:
        async def one(name: str, data: bytes) -> int:
            async with gate:
                response = await client.post(f"{url}/detect", files={"file": (name, data)})
                return response.status_code

        started = time.perf_counter()
        codes = await asyncio.gather(*(one(n, d) for n, d in blobs))
    return time.perf_counter() - started, sum(1 for c in codes if c == 200)


def run(count: int, concurrency: int, ceiling_s: float) -> dict[str, Any]:
    import ray

    fingerprints = ["--fingerprints", str(EMBEDDED_FINGERPRINTS)]
    results: dict[str, Any] = {"images": count, "cpus": os.cpu_count()}
    with tempfile.TemporaryDirectory(prefix="scan-bench-") as tmp:
        root = Path(tmp)
        (root / "images").mkdir()
        files = build_collection(root / "images", count)
        blobs = [(f.name, f.read_bytes()) for f in files]
        results["decode_ceiling"] = decode_ceiling(blobs, EMBEDDED_FINGERPRINTS, ceiling_s, threads=2)

        seconds, code, _ = timed_cli(["detect", "--json", "--no-progress", *fingerprints, str(root / "images")])
        assert code == 0, "every bench image scores"
        results["dif detect"] = count / seconds

        started = time.perf_counter()
        ray.init(address="local", num_cpus=os.cpu_count(), include_dashboard=False, logging_level="warning")
        ray.data.DataContext.get_current().enable_progress_bars = False
        logging.getLogger("ray.data").setLevel(logging.WARNING)
        results["ray_start_s"] = time.perf_counter() - started
        try:
            small = root / "small"
            small.mkdir()
            for f in files[:8]:
                shutil.copyfile(f, small / f.name)
            # The first scan of a session also starts Ray's worker processes; the second is what a job pays.
            fixed = [timed_cli(["scan", str(small), "--out", str(root / f"out-small-{i}"), *fingerprints,
                                "--workers", "1"])[0] for i in range(2)][-1]
            results["scan_fixed_s"] = fixed
            for workers, cpus in ((1, "1"), (2, "0.5")):
                seconds, code, err = timed_cli(["scan", str(root / "images"), "--out", str(root / f"out-{workers}"),
                                                *fingerprints, "--workers", str(workers), "--cpus-per-worker", cpus])
                assert code == 0, err
                results[f"dif scan, {workers} worker{'s' if workers > 1 else ''}"] = count / seconds
                results[f"scan_{workers}_steady"] = (count - 8) / max(seconds - fixed, 1e-9)
        finally:
            ray.shutdown()

        env = {"DIF_FINGERPRINTS_DIR": str(EMBEDDED_FINGERPRINTS), "DIF_MAX_BATCH_SIZE": "4",
               "DIF_TORCH_THREADS": "0", "DIF_DECODE_THREADS": "2"}
        server = start_app(env, root / "server.log")
        try:
            seconds, ok = asyncio.run(post_each_once(server.url, files, concurrency))
        finally:
            server.stop()
        assert ok == count, f"{count - ok} requests failed: {(root / 'server.log').read_text()[-2000:]}"
        results[f"HTTP service, {concurrency} clients"] = count / seconds
    return results


def table(results: dict[str, Any]) -> str:
    baseline = results["dif detect"]
    ceiling = results["decode_ceiling"]
    paths = [k for k in results if k.startswith(("dif ", "HTTP"))]
    lines = [f"| path ({results['images']} images, {results['cpus']} CPUs) | images/s | vs dif detect | "
             "vs decode ceiling |", "|---|---|---|---|"]
    for path in paths:
        lines.append(f"| {path} | {results[path]:.1f} | {results[path] / baseline:.2f} | "
                     f"{results[path] / ceiling:.2f} |")
    lines.append(f"| decode + crop ceiling (2 threads) | {ceiling:.1f} | {ceiling / baseline:.2f} | 1.00 |")
    lines.append("")
    lines.append(f"Ray start-up (once per job): {results['ray_start_s']:.1f} s; a scan job's fixed cost "
                 f"(8 files, actors started and the set loaded): {results['scan_fixed_s']:.1f} s; steady "
                 f"rate without it: {results['scan_1_steady']:.1f} images/s (1 worker), "
                 f"{results['scan_2_steady']:.1f} (2 workers).")
    return "\n".join(lines)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=500)
    parser.add_argument("--concurrency", type=int, default=8, help="HTTP requests in flight")
    parser.add_argument("--ceiling-seconds", type=float, default=10.0)
    parser.add_argument("--json", type=Path, default=None, help="also write the figures here")
    return parser.parse_args()


if __name__ == "__main__":
    args = parse_args()
    figures = run(args.images, args.concurrency, args.ceiling_seconds)
    print(table(figures))
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2) + "\n")
