"""Soak bench: memory and latency drift at a steady 70% of capacity (a bench, not a CI test).

    python -m bench.soak [--minutes 10] [--fraction 0.7] [--batch-size 4] [--out bench/soak-out]
    python -m bench.soak --url http://host:8000 --pid 1234      # an already running server

Starts `python -m app` (DIF_MAX_BATCH_SIZE=4, DIF_TORCH_THREADS=1: the CPU recommendation),
measures its capacity (closed loop, 16 workers), then offers `--fraction` of it open loop
(Poisson arrivals, latency from the scheduled send time) for `--minutes`, sampling the
server's RSS every few seconds. Reports per-minute throughput, p50/p99 and errors, the RSS
drift (first minute vs last, MiB and %/hour) and the p99 drift (last minute / first), and
writes `soak.json` and `soak.png` under `--out`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import psutil
from PIL import Image as PILImage
from PIL import ImageDraw

from testkit.images import Blob, sample_blobs
from testkit.load.drivers import capacity, open_loop
from testkit.load.stats import LoadResult, percentile
from testkit.paths import MIB
from testkit.servers import start_app


@dataclass(frozen=True)
class Minute:
    minute: int
    offered: int
    ok: int
    rejected_429: int
    errors: int
    p50_ms: float
    p99_ms: float
    rss_mib: float  # median of the RSS samples taken in this minute
    load_average: float  # mean 1-minute load average of the machine: other jobs show up here


async def sample_rss(pid: int, every_s: float, until: float, out: list[tuple[float, float, float]]) -> None:
    """(time, server RSS MiB, machine load average) every ``every_s``."""
    process = psutil.Process(pid)
    while time.monotonic() < until:
        out.append((time.monotonic(), process.memory_info().rss / MIB, os.getloadavg()[0]))
        await asyncio.sleep(every_s)


async def soak(url: str, pid: int | None, images: list[Blob], rate: float, seconds: float
               ) -> tuple[LoadResult, list[tuple[float, float, float]]]:
    rss: list[tuple[float, float, float]] = []
    load = open_loop(url, images, rate, seconds, "soak", warmup_s=0.0, timeout_s=120.0)
    if pid is None:
        return await load, rss
    result, _ = await asyncio.gather(load, sample_rss(pid, 5.0, time.monotonic() + seconds, rss))
    return result, rss


def per_minute(result: LoadResult, rss: list[tuple[float, float, float]]) -> list[Minute]:
    start = result.window[0]
    minutes = []
    for m in range(int(result.seconds // 60)):
        lo, hi = start + 60 * m, start + 60 * (m + 1)
        due = [s for s in result.samples if lo <= s.scheduled < hi]
        ok = [s.latency * 1000 for s in due if s.status == 200]
        refused = sum(1 for s in due if s.status == 429)
        memory = [value for t, value, _ in rss if lo <= t < hi]
        load = [value for t, _, value in rss if lo <= t < hi]
        minutes.append(Minute(m + 1, len(due), len(ok), refused, len(due) - len(ok) - refused,
                              percentile(ok, 0.5), percentile(ok, 0.99),
                              statistics.median(memory) if memory else float("nan"),
                              statistics.fmean(load) if load else float("nan")))
    return minutes


def slope_per_hour(samples: list[tuple[float, float]]) -> float:
    """Least-squares slope of (seconds, value) samples, per hour."""
    if len(samples) < 2:
        return float("nan")
    xs, ys = [t for t, _ in samples], [v for _, v in samples]
    return float(statistics.linear_regression(xs, ys).slope) * 3600


def drift(minutes: list[Minute], rss: list[tuple[float, float, float]]) -> dict[str, float]:
    """First minute vs last: RSS in MiB and %/hour (extrapolated linearly), p99 as a ratio.

    Plus the RSS slope over the second half: a leak keeps climbing there, while a high-water
    mark left by one burst (freed memory the allocator keeps) is a step followed by a flat line.
    """
    first, last = minutes[0], minutes[-1]
    half = rss[len(rss) // 2:]
    hours = (last.minute - first.minute) / 60 or float("nan")
    rss_mib = last.rss_mib - first.rss_mib
    return {"rss_first_mib": first.rss_mib, "rss_last_mib": last.rss_mib, "rss_drift_mib": rss_mib,
            "rss_drift_pct_per_hour": 100 * rss_mib / first.rss_mib / hours,
            "rss_peak_mib": max((v for _, v, _ in rss), default=float("nan")),
            "rss_second_half_slope_mib_per_hour": slope_per_hour([(t, v) for t, v, _ in half]),
            "p99_first_ms": first.p99_ms, "p99_last_ms": last.p99_ms,
            "p99_ratio_last_first": last.p99_ms / first.p99_ms}


# -- plot (Pillow: matplotlib is not a dependency) ----------------------------------------------


def plot(path: Path, rss: list[tuple[float, float, float]], minutes: list[Minute], t0: float, title: str) -> None:
    width, height = 1000, 640
    image = PILImage.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(image)
    draw.text((60, 10), title, fill="black")
    x_max = float(len(minutes)) or 1.0
    panel(draw, (60, 40, width - 30, 300), x_max, [((t - t0) / 60, v) for t, v, _ in rss], [("RSS MiB", "#1f77b4")])
    points_p50 = [(m.minute - 0.5, m.p50_ms) for m in minutes]
    points_p99 = [(m.minute - 0.5, m.p99_ms) for m in minutes]
    panel(draw, (60, 350, width - 30, height - 40), x_max, points_p50, [("p50 ms", "#2ca02c")], extra=points_p99,
          extra_label=("p99 ms", "#d62728"))
    draw.text((width // 2 - 40, height - 25), "minutes since the soak started", fill="black")
    image.save(path)


def panel(draw: ImageDraw.ImageDraw, box: tuple[int, int, int, int], x_max: float, points: list[tuple[float, float]],
          labels: list[tuple[str, str]], extra: list[tuple[float, float]] | None = None,
          extra_label: tuple[str, str] | None = None) -> None:
    """One line chart in ``box`` (left, top, right, bottom); the y axis starts at 0 so drift is not exaggerated."""
    left, top, right, bottom = box
    everything = points + (extra or [])
    if not everything:
        return
    y_max = max(y for _, y in everything if y == y) * 1.1 or 1.0
    draw.rectangle(box, outline="black")
    for k in range(5):
        y_value = y_max * k / 4
        y = bottom - (bottom - top) * k / 4
        draw.line((left - 4, y, left, y), fill="black")
        draw.text((2, y - 6), f"{y_value:.0f}", fill="black")
    for minute in range(int(x_max) + 1):
        x = left + (right - left) * minute / x_max
        draw.line((x, bottom, x, bottom + 4), fill="black")
        draw.text((x - 4, bottom + 6), str(minute), fill="black")

    def line(series: list[tuple[float, float]], color: str) -> None:
        xy = [(left + (right - left) * x / x_max, bottom - (bottom - top) * y / y_max) for x, y in series if y == y]
        if len(xy) > 1:
            draw.line(xy, fill=color, width=2)
        for x, y in xy:
            draw.ellipse((x - 2, y - 2, x + 2, y + 2), fill=color)

    line(points, labels[0][1])
    draw.text((left + 8, top + 6), labels[0][0], fill=labels[0][1])
    if extra and extra_label:
        line(extra, extra_label[1])
        draw.text((left + 80, top + 6), extra_label[0], fill=extra_label[1])


# -- main ---------------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=int, default=10)
    parser.add_argument("--fraction", type=float, default=0.7, help="offered load as a fraction of capacity")
    parser.add_argument("--batch-size", type=int, default=4, help="DIF_MAX_BATCH_SIZE of the self-started server")
    parser.add_argument("--capacity-seconds", type=float, default=10.0)
    parser.add_argument("--url", default=None, help="soak a running server instead of starting one")
    parser.add_argument("--pid", type=int, default=None, help="its process id, to sample RSS (with --url)")
    parser.add_argument("--out", type=Path, default=Path("soak-out"))
    args = parser.parse_args()

    images = sample_blobs()
    args.out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="dif-soak-") as tmp:
        server = None if args.url else start_app({"DIF_MAX_BATCH_SIZE": str(args.batch_size)}, Path(tmp) / "server.log")
        url, pid = (args.url, args.pid) if server is None else (server.url, server.proc.pid)
        try:
            cap = asyncio.run(capacity(url, images, args.capacity_seconds))
            rate = round(cap * args.fraction, 2)
            print(f"capacity {cap:.1f} img/s; soaking at {rate} req/s for {args.minutes} min", file=sys.stderr)
            result, rss = asyncio.run(soak(url, pid, images, rate, args.minutes * 60.0))
        finally:
            if server is not None:
                server.stop()
    minutes = per_minute(result, rss)
    summary = drift(minutes, rss)
    report(minutes, summary, cap, rate, args)
    title = (f"DIF soak: {rate} req/s = {args.fraction:.0%} of {cap:.1f} img/s capacity, "
             f"max batch {args.batch_size}, {os.cpu_count()} CPUs")
    plot(args.out / "soak.png", rss, minutes, result.window[0], title)
    (args.out / "soak.json").write_text(json.dumps({
        "capacity_img_s": cap, "rate_req_s": rate, "fraction": args.fraction, "batch_size": args.batch_size,
        "cpus": os.cpu_count(), "load_average_end": os.getloadavg(), "drift": summary,
        "minutes": [asdict(m) for m in minutes], "rss_samples": rss, "totals": result.summary(),
    }, indent=2))


def report(minutes: list[Minute], summary: dict[str, Any], cap: float, rate: float, args: argparse.Namespace) -> None:
    print(f"\nDIF soak: {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f} at the end, capacity "
          f"{cap:.1f} img/s (closed loop, 16 workers), offered {rate} req/s ({args.fraction:.0%}) Poisson for "
          f"{args.minutes} min, DIF_MAX_BATCH_SIZE={args.batch_size}\n")
    print("| minute | offered | 200 | 429 | other | p50 ms | p99 ms | RSS MiB | load average |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for m in minutes:
        print(f"| {m.minute} | {m.offered} | {m.ok} | {m.rejected_429} | {m.errors} | {m.p50_ms:.0f} "
              f"| {m.p99_ms:.0f} | {m.rss_mib:.1f} | {m.load_average:.1f} |")
    print(f"\nRSS {summary['rss_first_mib']:.1f} -> {summary['rss_last_mib']:.1f} MiB (first minute vs last): "
          f"{summary['rss_drift_mib']:+.1f} MiB, {summary['rss_drift_pct_per_hour']:+.2f} %/hour. "
          f"p99 {summary['p99_first_ms']:.0f} -> {summary['p99_last_ms']:.0f} ms "
          f"({summary['p99_ratio_last_first']:.2f}x). Peak RSS {summary['rss_peak_mib']:.1f} MiB; RSS slope over "
          f"the second half {summary['rss_second_half_slope_mib_per_hour']:+.1f} MiB/hour.")


if __name__ == "__main__":
    main()
