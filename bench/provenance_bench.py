"""Cost of reading provenance beside decoding: decode alone vs decode + read_provenance, in one run.

    python -m bench.provenance_bench [--repeats 5] [--part all|decode|service]

Every image of ../shared/data/ltim/*/{0_real,1_fake} is held in memory and, each repeat, goes
through both paths back to back, in alternating order (so a burst from another job on the
shared cores lands on both). The ratio is total(decode + read_provenance) / total(decode)
over all repeats; the issue's target is <= 1.10. A warm-up pass first loads Pillow's plugins
and the C2PA library. The images carry no C2PA manifest, so this is the cost every upload pays
(one bytes.find for the C2PA box, a header-level Pillow open for XMP/EXIF/PNG text). Then the
same comparison for copies of a few samples signed here with a test CA (testkit/c2pa.py), the
cost an upload carrying Content Credentials pays: c2pa parses and validates the manifest and
hashes the asset.

Then the same through the real service (``--part service``, or both with the default ``all``):
two ``python -m app`` servers on the embedded fingerprints, one with DIF_PROVENANCE=true (the
default) and one with DIF_PROVENANCE=false, each image POSTed alone to /detect, alternating
between the two servers in alternating order, ``--repeats`` times. The ratio is the same as
above on the client-measured request latency: what a caller waits for, per image, with and
without provenance reading (target <= 1.10).
"""

from __future__ import annotations

import argparse
import io
import statistics
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import httpx
from PIL import Image

from dif.images import decode_image
from dif.provenance import c2pa_version, read_provenance
from testkit.paths import LTIM
from testkit.servers import AppProcess, start_app

SIGNED_SAMPLES = 8


def load(root: Path) -> list[tuple[str, bytes]]:
    paths = sorted(p for p in root.glob("*/[01]_*/*") if p.is_file())
    return [(str(p.relative_to(root)), p.read_bytes()) for p in paths]


def decode_only(data: bytes) -> float:
    start = time.perf_counter()
    decode_image(data)
    return time.perf_counter() - start


def decode_and_read(name: str, data: bytes) -> float:
    start = time.perf_counter()
    decode_image(data)
    read_provenance(data, filename=name)
    return time.perf_counter() - start


def read_only(data: bytes, name: str) -> float:
    start = time.perf_counter()
    read_provenance(data, filename=name)
    return time.perf_counter() - start


def signed_copies(images: list[tuple[str, bytes]]) -> list[tuple[str, bytes]]:
    """A few samples re-encoded as JPEG and signed with an AI-generated action by a test CA."""
    # The test CA and signer of the suite: only a development checkout signs.
    from testkit.c2pa import AI, make_ca, manifest, sign

    ca = make_ca("Bench")
    out = []
    for name, data in images[:: max(1, len(images) // SIGNED_SAMPLES)][:SIGNED_SAMPLES]:
        buffer = io.BytesIO()
        Image.open(io.BytesIO(data)).convert("RGB").save(buffer, "JPEG", quality=95)
        out.append((name, sign(ca, buffer.getvalue(), "image/jpeg", manifest(AI, agent="Bench"))))
    return out


Timings = list[list[float]]  # per image, one timing per repeat


def alternate(images: list[tuple[str, bytes]], repeats: int, without: Callable[[str, bytes], float],
              with_: Callable[[str, bytes], float]) -> tuple[Timings, Timings]:
    """Per-image timings of two paths, back to back in alternating order, so load drift hits both alike."""
    plain: Timings = [[] for _ in images]
    both: Timings = [[] for _ in images]
    for repeat in range(repeats):
        for index, (name, data) in enumerate(images):
            if (index + repeat) % 2:
                plain[index].append(without(name, data))
                both[index].append(with_(name, data))
            else:
                both[index].append(with_(name, data))
                plain[index].append(without(name, data))
    return plain, both


def compare(images: list[tuple[str, bytes]], repeats: int) -> tuple[Timings, Timings, Timings]:
    """Per-image timings of decode, decode + read_provenance, read_provenance alone."""
    plain, both = alternate(images, repeats, lambda _, data: decode_only(data), decode_and_read)
    alone = [[read_only(data, name) for _ in range(repeats)] for name, data in images]
    return plain, both, alone


def detect_latency(client: httpx.Client, url: str, name: str, data: bytes) -> float:
    """Seconds from sending one image to /detect to having its answer (client side)."""
    start = time.perf_counter()
    response = client.post(f"{url}/detect", files={"file": (name, data)})
    elapsed = time.perf_counter() - start
    response.raise_for_status()
    return elapsed


def compare_service(images: list[tuple[str, bytes]], repeats: int, servers: dict[bool, AppProcess]
                    ) -> tuple[Timings, Timings, float]:
    """Per-image /detect latency without and with provenance reading, and the servers' own provenance_ms."""
    with httpx.Client(timeout=120) as client:
        for name, data in images[:4]:  # first requests pay one-off costs on both servers
            for server in servers.values():
                detect_latency(client, server.url, name, data)
        plain, both = alternate(images, repeats, lambda n, d: detect_latency(client, servers[False].url, n, d),
                                lambda n, d: detect_latency(client, servers[True].url, n, d))
        reported = [client.post(f"{servers[True].url}/detect", files={"file": (n, d)}).json()
                    for n, d in images]
    provenance_ms = statistics.fmean(r["timings_ms"]["provenance_ms"] for r in reported)
    assert all(r["provenance"] is not None for r in reported)
    return plain, both, provenance_ms


def service_report(images: list[tuple[str, bytes]], signed: list[tuple[str, bytes]], repeats: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        servers: dict[bool, AppProcess] = {}
        try:
            for reading in (False, True):
                servers[reading] = start_app({"DIF_PROVENANCE": str(reading).lower()},
                                             Path(tmp) / f"server-provenance-{reading}.log", inherit_dif=False)
            for title, chosen in (("shared samples through POST /detect; target ratio <= 1.10", images),
                                  (f"{len(signed)} signed JPEGs through POST /detect", signed)):
                plain, both, provenance_ms = compare_service(chosen, repeats, servers)
                report(title, plain, both, None, labels=("/detect, DIF_PROVENANCE=false",
                                                         "/detect, DIF_PROVENANCE=true"))
                print(f"  provenance_ms reported by the service: mean {provenance_ms:.3f} ms/image")
        finally:
            for server in servers.values():
                server.stop()


def report(title: str, plain: Timings, both: Timings, alone: Timings | None,
           labels: tuple[str, str] = ("decode", "decode + read_provenance")) -> None:
    """Per-image medians over the repeats (robust to another job's burst), then their mean and sum."""
    ms = 1000.0
    rows = [(labels[0], plain), (labels[1], both)] + ([("read_provenance alone", alone)] if alone else [])
    medians = {label: [statistics.median(t) for t in timings] for label, timings in rows}
    print(title)
    for label, values in medians.items():
        print(f"  {label:30s}: mean {statistics.fmean(values) * ms:7.3f} ms/image, "
              f"median {statistics.median(values) * ms:7.3f}, max {max(values) * ms:7.3f}")
    ratio = sum(medians[labels[1]]) / sum(medians[labels[0]])
    raw = sum(map(sum, both)) / sum(map(sum, plain))
    print(f"  ratio ({labels[1]}) / ({labels[0]}): {ratio:.3f} on per-image medians, "
          f"{raw:.3f} on all {sum(map(len, plain))} raw timings")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--part", choices=("all", "decode", "service"), default="all",
                        help="decode: in-process decode vs decode + read_provenance; service: /detect latency "
                             "with and without DIF_PROVENANCE")
    args = parser.parse_args()

    images = load(LTIM)
    if not images:
        raise SystemExit(f"no images under {LTIM}")
    print(f"{len(images)} images from {LTIM}; {c2pa_version()}")
    findings = Counter()
    for name, data in images:  # warm-up, and what the samples declare
        decode_image(data)
        found = read_provenance(data, filename=name)
        findings[(found.c2pa.state, found.declared_ai, found.declared_generator)] += 1

    signed = signed_copies(images)
    for name, data in signed:
        found = read_provenance(data, filename=name)
        assert found.c2pa.state == "valid" and found.declared_ai, found.evidence
    if args.part in ("all", "decode"):
        report("shared samples (no manifest); target ratio <= 1.10", *compare(images, args.repeats))
        report(f"{len(signed)} samples as signed JPEGs (C2PA manifest parsed and validated)",
               *compare(signed, args.repeats))
    if args.part in ("all", "service"):
        service_report(images, signed, args.repeats)
    print("findings (c2pa state, declared_ai, declared_generator): count")
    for key, count in sorted(findings.items(), key=lambda kv: -kv[1]):
        print(f"  {key}: {count}")


if __name__ == "__main__":
    main()
