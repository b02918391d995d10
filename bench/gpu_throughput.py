"""GPU throughput: the service end to end against its ceilings, all measured in one run.

    python -m bench.gpu_throughput [--images DIR] [--device cuda] [--seconds 15] [--json out.json]
    python -m bench.gpu_throughput --device cpu --quick      # checks the script itself on a CPU

Made for the device machine (``bench/gpu/run.sh`` installs the carried wheels and runs it).
For each configuration (fixed filter fp32, a reference-sized 17x64 DnCNN in fp32 and in
bf16 + channels-last):

1. decode ceiling: decode + crop on a pool of ``--decode-threads`` threads, the same work the
   service's decode pool does, in images/s (``bench/ceilings.py``);
2. model ceiling: ``Detector.residuals`` + the scorer on pre-decoded batches of
   ``--batch`` images in a bare loop (crops in host memory, copied through the pinned
   staging buffer), in images/s;
3. end to end: ``python -m app`` on the device, driven closed loop by ``--clients``
   client processes, in images/s with p50/p99;

and reports end to end / min(decode, model) (goal >= 0.8). Also timed: scoring 256
residuals against 1,000 fingerprints as one matrix product vs a per-generator loop.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import statistics
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

from app.engine import load_model_set
from bench.ceilings import decode_ceiling
from dif.detector import Detector, Prepared
from dif.extractors import DnCNN, ResidualExtractor, create, save_denoiser
from dif.images import decode_image
from dif.scoring import standardize
from testkit.fingerprints import write_random_set
from testkit.images import Blob, sample_blobs
from testkit.load.drivers import closed_loop
from testkit.paths import LTIM
from testkit.servers import start_app


@dataclass(frozen=True)
class Config:
    name: str
    extractor: str  # registry key
    precision: str


CONFIGS = (Config("signlap fp32", "signlap@1", "fp32"), Config("dncnn fp32", "dncnn@1", "fp32"),
           Config("dncnn bf16+cl", "dncnn@1", "bf16"))


@dataclass
class Row:
    config: str
    decode_ips: float
    model_ips: float
    end_to_end_ips: float
    p50_ms: float
    p99_ms: float
    statuses: dict[str, int]

    @property
    def ratio(self) -> float:
        return self.end_to_end_ips / min(self.decode_ips, self.model_ips)


def timed_rate(step: Callable[[], int], seconds: float, sync: Callable[[], None]) -> float:
    """Items per second of ``step`` (which returns how many it did), after one warm-up call."""
    step()
    sync()
    done, started = 0, time.perf_counter()
    while time.perf_counter() - started < seconds:
        done += step()
    sync()
    return done / (time.perf_counter() - started)


def synchronizer(device: torch.device) -> Callable[[], None]:
    return (lambda: torch.cuda.synchronize(device)) if device.type == "cuda" else (lambda: None)


# -- artifacts ----------------------------------------------------------------------------------


def extractor_for(key: str, root: Path, depth: int = 17, width: int = 64) -> tuple[ResidualExtractor, Path | None]:
    """The extractor and its weights folder; a learned one gets random weights (only its cost matters)."""
    if key != "dncnn@1":
        return create(key), None
    folder = root / f"dncnn{depth}x{width}"
    if not folder.exists():
        torch.manual_seed(0)
        save_denoiser(DnCNN(depth=depth, width=width).eval(), folder, {"note": "random weights: throughput only"})
    return create(key, folder), folder


# -- ceilings -----------------------------------------------------------------------------------


def model_ceiling(detector: Detector, prepared: list[Prepared], batch: int, seconds: float) -> float:
    """Residuals + scoring of pre-decoded batches in a bare loop (no decode, no HTTP, no batcher)."""
    batches = [[prepared[(start + i) % len(prepared)] for i in range(batch)]
               for start in range(0, len(prepared), batch)]
    position = 0

    def step() -> int:
        nonlocal position
        # The service's chunking (the device's default), so the ceiling is of the computation it runs.
        residuals, groups = detector.residuals(batches[position % len(batches)])
        detector.scorer.score(residuals, groups, batch)
        position += 1
        return batch

    with torch.inference_mode():
        return timed_rate(step, seconds, synchronizer(detector.device))


def gemm_vs_loop(device: torch.device, residuals: int = 256, generators: int = 1000) -> dict[str, float]:
    """Milliseconds to correlate ``residuals`` with ``generators`` fingerprints: one product vs a loop."""
    gen = torch.Generator().manual_seed(0)
    res = torch.randn((residuals, 3, 256, 256), generator=gen).to(device)
    fps = torch.randn((generators, 3, 256, 256), generator=gen).to(device)
    sync = synchronizer(device)
    unit_fps = standardize(fps)

    def product() -> torch.Tensor:
        return standardize(res) @ unit_fps.T

    def loop() -> torch.Tensor:
        unit = standardize(res)
        return torch.stack([unit @ unit_fps[g] for g in range(generators)], dim=1)

    assert torch.allclose(product(), loop(), atol=1e-4)
    out = {}
    for name, fn in (("one_product_ms", product), ("per_generator_loop_ms", loop)):
        fn()
        sync()
        started = time.perf_counter()
        for _ in range(5):
            fn()
        sync()
        out[name] = (time.perf_counter() - started) / 5 * 1000
    return out


# -- end to end ---------------------------------------------------------------------------------


def _client(url: str, images: list[Blob], concurrency: int, seconds: float, queue: Any) -> None:
    try:
        result = asyncio.run(closed_loop(url, images, concurrency, seconds))
        queue.put({"throughput": result.throughput, "latencies": [s.latency for s in result.ok],
                   "statuses": {str(k): v for k, v in result.statuses().items()}})
    except BaseException as exc:  # the parent waits on the queue: always answer it
        queue.put({"throughput": 0.0, "latencies": [], "statuses": {}, "error": repr(exc)})
        raise


def end_to_end(url: str, images: list[Blob], clients: int, concurrency: int, seconds: float) -> dict[str, Any]:
    """Several client processes (one Python client tops out well below a GPU service)."""
    ctx = multiprocessing.get_context("spawn")
    queue = ctx.Queue()
    procs = [ctx.Process(target=_client, args=(url, images[i::clients] or images, concurrency, seconds, queue))
             for i in range(clients)]
    for p in procs:
        p.start()
    parts = [queue.get(timeout=seconds + 300) for _ in procs]
    for p in procs:
        p.join(60)
    latencies = sorted(x for part in parts for x in part["latencies"])
    statuses: dict[str, int] = {}
    for part in parts:
        for code, n in part["statuses"].items():
            statuses[code] = statuses.get(code, 0) + n
    quantile = (lambda q: latencies[min(len(latencies) - 1, int(q * len(latencies)))] * 1000) if latencies else (
        lambda q: float("nan"))
    errors = [p["error"] for p in parts if "error" in p]
    if errors:
        raise RuntimeError(f"client processes failed: {errors}")
    return {"ips": sum(p["throughput"] for p in parts), "p50_ms": quantile(0.5),
            "p99_ms": quantile(0.99), "statuses": statuses}


# -- the run ------------------------------------------------------------------------------------


def measure(config: Config, args: argparse.Namespace, images: list[Blob], work: Path) -> Row:
    device = torch.device(args.device)
    extractor, weights = extractor_for(config.extractor, work, args.dncnn_depth, args.dncnn_width)
    fingerprints = write_random_set(work / f"set-{config.extractor}", args.generators, extractor.describe())
    decode = decode_ceiling(images, fingerprints, args.seconds, args.decode_threads, weights)
    loaded = load_model_set(fingerprints, weights, torch.device("cpu"), 1)
    prepared = [loaded.detector.prepare(decode_image(blob)) for _, blob in images]
    detector = Detector(loaded.fingerprints, create(config.extractor, weights), device, precision=config.precision)
    model = model_ceiling(detector, prepared, args.batch, args.seconds)
    del detector
    env = {"DIF_DEVICE": args.device, "DIF_FINGERPRINTS_DIR": str(fingerprints), "DIF_PRECISION": config.precision,
           "DIF_MAX_BATCH_SIZE": str(args.batch), "DIF_DECODE_THREADS": str(args.decode_threads),
           "DIF_QUEUE_CAPACITY": "4096", "DIF_MAX_WAIT_MS": "5", "DIF_REQUEST_TIMEOUT_S": "120",
           "DIF_TORCH_THREADS": "0" if args.device == "cuda" else "1", "DIF_LOG_LEVEL": "warning"}
    if weights is not None:
        env["DIF_EXTRACTOR_DIR"] = str(weights)
    server = start_app(env, work / f"server-{config.extractor}-{config.precision}.log", inherit_dif=False)
    try:
        e2e = end_to_end(server.url, images, args.clients, args.concurrency, args.seconds)
    finally:
        server.stop()
    return Row(config.name, decode, model, e2e["ips"], e2e["p50_ms"], e2e["p99_ms"], e2e["statuses"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=Path, default=LTIM, help="folder tree of sample images")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu", choices=["cuda", "cpu"])
    parser.add_argument("--seconds", type=float, default=15.0, help="length of each timed phase")
    parser.add_argument("--batch", type=int, default=64, help="images per forward pass (DIF_MAX_BATCH_SIZE)")
    parser.add_argument("--decode-threads", type=int, default=max(1, (os.cpu_count() or 2) // 2))
    parser.add_argument("--clients", type=int, default=4, help="client processes for the end-to-end run")
    parser.add_argument("--concurrency", type=int, default=64, help="requests in flight per client process")
    parser.add_argument("--generators", type=int, default=5, help="fingerprints loaded (the embedded set has 5)")
    parser.add_argument("--configs", default=",".join(c.name for c in CONFIGS))
    parser.add_argument("--dncnn-depth", type=int, default=17, help="layers of the learned extractor (reference: 17)")
    parser.add_argument("--dncnn-width", type=int, default=64, help="its channels (reference: 64)")
    parser.add_argument("--quick", action="store_true", help="tiny run to check the script (CPU)")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    if args.quick:
        args.seconds, args.batch, args.clients, args.concurrency = 2.0, 4, 1, 4
        args.dncnn_depth, args.dncnn_width = 3, 8
    images = sample_blobs(args.images)
    chosen = [c for c in CONFIGS if c.name in args.configs.split(",")]
    print(f"device {args.device} ({torch.cuda.get_device_name() if args.device == 'cuda' else 'CPU'}), "
          f"{len(images)} images, batch {args.batch}, {args.decode_threads} decode threads, "
          f"{args.clients}x{args.concurrency} clients, {args.generators} generators, torch {torch.__version__}",
          flush=True)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for config in chosen:
            rows.append(measure(config, args, images, Path(tmp)))
            r = rows[-1]
            print(f"{r.config:<20} decode {r.decode_ips:8.1f}  model {r.model_ips:8.1f}  end-to-end "
                  f"{r.end_to_end_ips:8.1f} img/s (p50 {r.p50_ms:.0f} ms, p99 {r.p99_ms:.0f} ms, {r.statuses})  "
                  f"= {r.ratio:.2f} of min(decode, model)", flush=True)
    scoring = gemm_vs_loop(torch.device(args.device), residuals=256, generators=64 if args.quick else 1000)
    print(f"scoring 256 residuals x {64 if args.quick else 1000} fingerprints: one product "
          f"{scoring['one_product_ms']:.1f} ms, per-generator loop {scoring['per_generator_loop_ms']:.1f} ms "
          f"({scoring['per_generator_loop_ms'] / scoring['one_product_ms']:.0f}x)")
    if args.json:
        args.json.write_text(json.dumps({"rows": [{**asdict(r), "ratio": r.ratio} for r in rows],
                                         "scoring": scoring, "args": {k: str(v) for k, v in vars(args).items()},
                                         "median_ratio": statistics.median(r.ratio for r in rows) if rows else None},
                                        indent=2))


if __name__ == "__main__":
    main()
