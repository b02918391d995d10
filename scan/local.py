"""``dif detect``: score files on this machine, one row per file, as they come.

Threads read, decode and crop the next files (PIL and the provenance reader release the GIL)
while the main thread runs the forward pass, the way the service's decode pool feeds its
batcher. Rows come out in file order, each as soon as its batch is scored.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
import time
from collections import deque
from collections.abc import Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import IO, Any, Protocol

import torch
from tqdm import tqdm

from dif.detector import Detector
from dif.devices import resolve_device
from dif.provenance import check_trust_anchors
from scan.rows import Decoded, DecodeOptions, Stamp, columns, decode, load_set, operating_point, score, unreadable
from scan.sources import local_files
from scan.summary import Summary

CPU_BATCH, GPU_BATCH = 8, 32


def default_batch(device: torch.device) -> int:
    return CPU_BATCH if device.type == "cpu" else GPU_BATCH


def read_trust_anchors(path: str | None) -> str | None:
    """The PEM bundle, refused up front (exit 2) rather than on the first signed image."""
    if path is None:
        return None
    pem = Path(path).read_text()
    check_trust_anchors(pem)
    return pem


def positive(value: int | None, flag: str) -> None:
    if value is not None and value < 1:
        raise ValueError(f"{flag} must be at least 1, not {value}")


class Writer(Protocol):
    def write(self, row: dict[str, Any]) -> None: ...


class TextWriter:
    """One tab-separated line per file: path, verdict, top, p-value, then each generator's p and score."""

    def __init__(self, stream: IO[str], generators: tuple[str, ...]):
        self.stream, self.generators = stream, generators

    def write(self, row: dict[str, Any]) -> None:
        if row["error_code"] is not None:
            fields = [row["path"], "error", f"{row['error_code']}: {row['error']}"]
        else:
            per = " ".join(f"{g}:p={row[f'p_value_{g}']:.3g},s={row[f'score_{g}']:.2f}" for g in self.generators)
            fields = [row["path"], row["verdict"], row["top"] or "-", f"p={row['p_value']:.3g}", per]
        print("\t".join(fields), file=self.stream, flush=True)


class JsonWriter:
    def __init__(self, stream: IO[str]):
        self.stream = stream

    def write(self, row: dict[str, Any]) -> None:
        print(json.dumps(row), file=self.stream, flush=True)


class CsvWriter:
    def __init__(self, stream: IO[str], generators: tuple[str, ...]):
        self.writer = csv.DictWriter(stream, fieldnames=columns(generators))
        self.writer.writeheader()

    def write(self, row: dict[str, Any]) -> None:
        # A list has no CSV form; candidates are names without ';' (artifact names are [a-z0-9_.-]).
        flat = {**row, "candidates": None if row["candidates"] is None else ";".join(row["candidates"])}
        self.writer.writerow(flat)


def read_and_decode(path: Path, detector: Detector, options: DecodeOptions) -> Decoded:
    try:
        data = path.read_bytes()
    except OSError as exc:
        return unreadable(str(path), exc)
    return decode(str(path), data, detector, options)


def decoded_in_order(pool: ThreadPoolExecutor, files: Iterable[Path], detector: Detector,
                     options: DecodeOptions, ahead: int) -> Iterator[Decoded]:
    """Files decoded by ``pool``, at most ``ahead`` in flight (bounded memory), yielded in file order."""
    pending: deque[Future[Decoded]] = deque()
    for path in files:
        pending.append(pool.submit(read_and_decode, path, detector, options))
        if len(pending) >= ahead:
            yield pending.popleft().result()
    while pending:
        yield pending.popleft().result()


def batched(items: Iterable[Decoded], size: int) -> Iterator[list[Decoded]]:
    batch: list[Decoded] = []
    for item in items:
        batch.append(item)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


def cmd_detect(args: argparse.Namespace) -> int:
    point = operating_point(args.fpr)
    positive(args.batch_size, "--batch-size")
    positive(args.decode_threads, "--decode-threads")
    files = local_files(args.paths)
    if not files:
        raise ValueError(f"no files under {' '.join(args.paths)}")
    options = DecodeOptions(args.max_pixels, read_trust_anchors(args.trust_anchors))
    loaded = load_set(args.fingerprints, args.extractor_dir)
    device = resolve_device(args.device)
    detector = Detector(loaded.fingerprints, loaded.extractor, device, precision=args.precision)
    stamp = Stamp.of(loaded)
    batch_size = args.batch_size or default_batch(device)
    csv_file = None if args.csv in (None, "-") else open(args.csv, "w", newline="")  # noqa: SIM115
    writer: Writer
    if args.csv is not None:
        writer = CsvWriter(csv_file or sys.stdout, stamp.generators)
    elif args.json:
        writer = JsonWriter(sys.stdout)
    else:
        writer = TextWriter(sys.stdout, stamp.generators)
    summary = Summary()
    started = time.perf_counter()
    try:
        with ThreadPoolExecutor(args.decode_threads, thread_name_prefix="decode") as pool, \
                tqdm(total=len(files), unit="img", file=sys.stderr, disable=args.no_progress) as bar:
            decoded = decoded_in_order(pool, files, detector, options, ahead=2 * batch_size + args.decode_threads)
            for batch in batched(decoded, batch_size):
                for row in score(detector, batch, point, stamp):
                    writer.write(row)
                    summary.add(row["verdict"], row["top"], row["error_code"])
                bar.update(len(batch))
    finally:
        if csv_file is not None:
            csv_file.close()
    for line in summary.lines(time.perf_counter() - started):
        print(line, file=sys.stderr)
    return 1 if summary.failed else 0
