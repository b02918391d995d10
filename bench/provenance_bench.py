"""Cost of reading provenance beside decoding: decode alone vs decode + read_provenance, in one run.

    python bench/provenance_bench.py [--repeats 5]

Every image of ../shared/data/ltim/*/{0_real,1_fake} is held in memory and, each repeat, goes
through both paths back to back, in alternating order (so a burst from another job on the
shared cores lands on both). The ratio is total(decode + read_provenance) / total(decode)
over all repeats; the issue's target is <= 1.10. A warm-up pass first loads Pillow's plugins
and the C2PA library. The images carry no C2PA manifest, so this is the cost every upload pays
(one bytes.find for the C2PA box, a header-level Pillow open for XMP/EXIF/PNG text). Then the
same comparison for copies of a few samples signed here with a test CA (tests/provenance), the
cost an upload carrying Content Credentials pays: c2pa parses and validates the manifest and
hashes the asset.
"""

from __future__ import annotations

import argparse
import io
import statistics
import sys
import time
from collections import Counter
from pathlib import Path

from PIL import Image

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from dif.images import decode_image  # noqa: E402
from dif.provenance import c2pa_version, read_provenance  # noqa: E402

LTIM = REPO.parent / "shared" / "data" / "ltim"
SIGNED_SAMPLES = 8


def load(root: Path) -> list[tuple[str, bytes]]:
    paths = sorted(p for p in root.glob("*/[01]_*/*") if p.is_file())
    return [(str(p.relative_to(root)), p.read_bytes()) for p in paths]


def decode_only(data: bytes) -> float:
    start = time.perf_counter()
    decode_image(data)
    return time.perf_counter() - start


def decode_and_read(data: bytes, name: str) -> float:
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
    # The test CA and signer of tests/provenance: only a development checkout signs.
    from tests.provenance.conftest import AI, make_ca, manifest, sign

    ca = make_ca("Bench")
    out = []
    for name, data in images[:: max(1, len(images) // SIGNED_SAMPLES)][:SIGNED_SAMPLES]:
        buffer = io.BytesIO()
        Image.open(io.BytesIO(data)).convert("RGB").save(buffer, "JPEG", quality=95)
        out.append((name, sign(ca, buffer.getvalue(), "image/jpeg", manifest(AI, agent="Bench"))))
    return out


Timings = list[list[float]]  # per image, one timing per repeat


def compare(images: list[tuple[str, bytes]], repeats: int) -> tuple[Timings, Timings, Timings]:
    """Per-image timings of decode, decode + read_provenance, read_provenance alone."""
    plain: Timings = [[] for _ in images]
    both: Timings = [[] for _ in images]
    alone: Timings = [[] for _ in images]
    for repeat in range(repeats):
        for index, (name, data) in enumerate(images):
            if (index + repeat) % 2:
                plain[index].append(decode_only(data))
                both[index].append(decode_and_read(data, name))
            else:
                both[index].append(decode_and_read(data, name))
                plain[index].append(decode_only(data))
            alone[index].append(read_only(data, name))
    return plain, both, alone


def report(title: str, plain: Timings, both: Timings, alone: Timings) -> None:
    """Per-image medians over the repeats (robust to another job's burst), then their mean and sum."""
    ms = 1000.0
    medians = {key: [statistics.median(t) for t in timings]
               for key, timings in (("plain", plain), ("both", both), ("alone", alone))}
    print(title)
    for key, label in (("plain", "decode"), ("both", "decode + read_provenance"), ("alone", "read_provenance alone")):
        values = medians[key]
        print(f"  {label:26s}: mean {statistics.fmean(values) * ms:7.3f} ms/image, "
              f"median {statistics.median(values) * ms:7.3f}, max {max(values) * ms:7.3f}")
    ratio = sum(medians["both"]) / sum(medians["plain"])
    raw = sum(map(sum, both)) / sum(map(sum, plain))
    print(f"  ratio (decode + read_provenance) / decode: {ratio:.3f} on per-image medians, "
          f"{raw:.3f} on all {sum(map(len, plain))} raw timings")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=5)
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

    report("shared samples (no manifest); target ratio <= 1.10", *compare(images, args.repeats))
    signed = signed_copies(images)
    for name, data in signed:
        found = read_provenance(data, filename=name)
        assert found.c2pa.state == "valid" and found.declared_ai, found.evidence
    report(f"{len(signed)} samples as signed JPEGs (C2PA manifest parsed and validated)",
           *compare(signed, args.repeats))
    print("findings (c2pa state, declared_ai, declared_generator): count")
    for key, count in sorted(findings.items(), key=lambda kv: -kv[1]):
        print(f"  {key}: {count}")


if __name__ == "__main__":
    main()
