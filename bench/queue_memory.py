"""Memory held by a full queue: admitted images with crops queued as uint8 vs float32, in one run.

    python -m bench.queue_memory [--images 200]

Starts a real server in this process, holds the inference thread (the scorer waits on a gate)
so every upload stays admitted, sends ``--images`` uploads at once, and reads this process's
RSS growth once they are all queued; then opens the gate and checks every answer is 200. Each
mode runs in a fresh process: ``dif.detector.compact`` as shipped (8-bit crops packed as uint8),
and replaced by the identity (float32 crops, the behaviour before ``ed2fa4c``). The client is in
the same process, so each figure includes the uploads' bytes on both sides.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import psutil

import dif.detector
from testkit.fingerprints import write_artifacts
from testkit.images import sample_blobs
from testkit.paths import MIB, REPO
from testkit.servers import ScorerProbe, ThreadServer, make_settings, metric_value


async def flood(url: str, images: list[tuple[str, bytes]]) -> list[asyncio.Task[httpx.Response]]:
    client = httpx.AsyncClient(base_url=url, timeout=300, limits=httpx.Limits(max_connections=len(images)))
    return [asyncio.create_task(client.post("/detect", files={"file": image})) for image in images]


def held_memory(fingerprints: Path, images: list[tuple[str, bytes]]) -> float:
    """MiB of RSS growth while ``images`` are admitted and waiting for the held inference thread."""
    server = ThreadServer(make_settings(fingerprints, queue_capacity=len(images) + 16, max_batch_size=4,
                                        request_timeout_s=300, decode_threads=2)).start()
    probe = ScorerProbe.install(server)
    probe.gate.clear()
    process = psutil.Process()

    async def scenario() -> float:
        gc.collect()
        before = process.memory_info().rss
        tasks = await flood(server.url, images)
        async with httpx.AsyncClient(base_url=server.url) as monitor:
            deadline = time.monotonic() + 120
            # One batch is inside the held scorer; the rest wait in the queue.
            while metric_value((await monitor.get("/metrics")).text, "dif_queue_depth_images") < len(images) - 4:
                assert time.monotonic() < deadline, "the uploads never all reached the queue"
                await asyncio.sleep(0.2)
        held = (process.memory_info().rss - before) / MIB
        probe.gate.set()
        answers = await asyncio.gather(*tasks)
        assert all(a.status_code == 200 for a in answers), {a.status_code for a in answers}
        return held

    try:
        return asyncio.run(scenario())
    finally:
        probe.gate.set()
        server.stop()


def measure(mode: str, count: int) -> float:
    """One mode in this process (fresh, so no heap left by the other mode hides growth)."""
    pool = sample_blobs()
    images = [pool[i % len(pool)] for i in range(count)]
    if mode == "float32":
        dif.detector.compact = lambda crops: crops
    with tempfile.TemporaryDirectory() as tmp:
        return held_memory(write_artifacts(Path(tmp) / "fp", ["a", "b", "c", "d", "e"]), images)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=200)
    parser.add_argument("--mode", choices=["float32", "uint8"], default=None, help="(internal) one mode only")
    args = parser.parse_args()
    if args.mode:
        print(measure(args.mode, args.images))
        return
    results = {}
    for mode in ("float32", "uint8"):
        out = subprocess.run([sys.executable, "-m", "bench.queue_memory", "--mode", mode, "--images", str(args.images)],
                             cwd=REPO, check=True, capture_output=True, text=True).stdout
        results[mode] = float(out.strip().splitlines()[-1])
    for mode, mib in results.items():
        label = f"{mode} crops" + (" (shipped)" if mode == "uint8" else "")
        print(f"{label:<22} {mib:7.1f} MiB for {args.images} queued images = {mib / args.images:.2f} MiB each")
    print(f"uint8 / float32: {results['uint8'] / results['float32']:.2f}x")


if __name__ == "__main__":
    main()
