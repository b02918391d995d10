"""``dif scan``: a collection through Ray Data into Parquet, on this machine or a cluster.

Why a distributed engine and not a loop of our own: past one machine a scan needs what Ray
Data already does and a loop would have to grow: streaming reads from object storage with
backpressure (a 100-million-file bucket never sits in memory), CPU decode tasks scheduled on
every node, a pool of GPU actors that each load the set once and are fed big batches, retries
of failed tasks, and Parquet written as it goes. The same script runs on a laptop (a local
Ray) and on Kubernetes (a KubeRay RayJob, deploy/ray/).

The pipeline: ``read_binary_files`` -> ``decode_batch`` (CPU tasks: ``scan.rows.decode``, the
service's crops and provenance) -> ``Scorer`` (actor pool: ``Detector.predict``) ->
``write_parquet``. Rows are those of ``dif detect``; a file that cannot be scored is a row
with ``error_code``, and a listed file that vanished before it was read is a ``not_found`` row.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.dataset as pads
import pyarrow.fs as pafs
import pyarrow.parquet as pq
import ray
import torch

from dif.decision import OperatingPoint
from dif.detector import Detector, Prepared
from dif.fingerprint_set import FingerprintSet
from scan.local import default_batch, positive, read_trust_anchors
from scan.rows import (
    LEADING,
    TRAILING,
    Decoded,
    DecodeOptions,
    Stamp,
    columns,
    decode,
    load_set,
    operating_point,
    provenance_columns,
    row,
    score,
)
from scan.sources import Listing, list_source
from scan.summary import Summary

DECODE_BATCH = 16
# Memory a decode task reserves: a 40-megapixel image (DIF_MAX_PIXELS) is 480 MB as float32.
# Declaring it also keeps Ray from fusing decoding into the scoring actors, which would
# serialise the two on one CPU instead of decoding on every free one.
DECODE_MEMORY = 768 * 1024 * 1024
# Rows per Parquet file: small files make a 10-million-row scan a million objects to list.
ROWS_PER_FILE = 10_000

_FLOAT, _STRING, _BOOL = pa.float64(), pa.string(), pa.bool_()
FIXED_TYPES: dict[str, pa.DataType] = {
    "path": _STRING, "size": pa.int64(), "width": pa.int32(), "height": pa.int32(), "crops": pa.int32(),
    "verdict": _STRING, "fake": _BOOL, "evidence": _STRING, "top": _STRING, "candidates": pa.list_(_STRING),
    "p_value": _FLOAT,
    "rate": _FLOAT, "error_code": _STRING, "error": _STRING, "c2pa_state": _STRING, "c2pa_trust": _STRING,
    "declared_ai": _BOOL, "declared_generator": _STRING, "declared_by": _STRING, "provenance_validated": _BOOL,
    "provenance_decisive": _BOOL, "model_version": _STRING, "extractor": _STRING, "fingerprints_digest": _STRING,
}
assert set(FIXED_TYPES) == {*LEADING, *TRAILING}
# Between the decode tasks and the scorers: a row's own fields, and its crops as raw bytes.
DECODED = pa.schema([
    ("path", _STRING), ("size", pa.int64()), ("error_code", _STRING), ("error", _STRING),
    *[(name, FIXED_TYPES[name]) for name in provenance_columns(None)],
    ("crops", pa.binary()), ("crops_dtype", _STRING), ("crops_shape", pa.list_(pa.int32())),
    ("positions", pa.list_(pa.int32())), ("height", pa.int32()), ("width", pa.int32()),
])


def schema(generators: tuple[str, ...]) -> pa.Schema:
    """The Parquet schema of a scan with these generators (``dif detect --json`` has the same fields)."""
    return pa.schema([(name, FIXED_TYPES.get(name, _FLOAT)) for name in columns(generators)])


# -- between the stages ---------------------------------------------------------------------------


def pack(item: Decoded) -> dict[str, Any]:
    record: dict[str, Any] = {"path": item.path, "size": item.size, "error_code": item.error_code,
                              "error": item.error, **item.provenance}
    if item.prepared is not None:
        crops = item.prepared.crops.contiguous()
        record.update(crops=crops.numpy().tobytes(), crops_dtype=str(crops.numpy().dtype),
                      crops_shape=list(crops.shape), positions=[v for p in item.prepared.positions for v in p],
                      height=item.prepared.height, width=item.prepared.width)
    return record


def unpack(record: dict[str, Any]) -> Decoded:
    prepared = None
    if record["crops"] is not None:
        array = np.frombuffer(record["crops"], dtype=record["crops_dtype"]).reshape(record["crops_shape"])
        flat = record["positions"]
        prepared = Prepared(crops=torch.from_numpy(array.copy()), positions=list(zip(flat[::2], flat[1::2],
                            strict=True)), height=record["height"], width=record["width"])
    provenance = {name: record[name] for name in provenance_columns(None)}
    return Decoded(record["path"], record["size"], prepared, provenance, record["error_code"], record["error"])


# -- the two stages ------------------------------------------------------------------------------

_decoders: dict[str, Detector] = {}


def _decoder(loaded: ray.ObjectRef) -> Detector:
    """A CPU ``Detector`` to cut crops with, built once per worker process (``Detector.prepare`` is the
    service's own cropping; the set travels through the object store once per node)."""
    key = loaded.hex()
    if key not in _decoders:
        fset: FingerprintSet = ray.get(loaded)
        _decoders[key] = Detector(fset.fingerprints, fset.extractor, "cpu")
    return _decoders[key]


def decode_batch(batch: pa.Table, loaded: ray.ObjectRef, options: DecodeOptions, scheme: str) -> pa.Table:
    """CPU task: read bytes -> crops and provenance, or the file's error."""
    detector = _decoder(loaded)
    records = []
    for path, data in zip(batch["path"].to_pylist(), batch["bytes"].to_pylist(), strict=True):
        records.append(pack(decode(f"{scheme}://{path}" if scheme else path, data, detector, options)))
    return pa.Table.from_pylist(records, schema=DECODED)


class Scorer:
    """Actor: one set on one device for its whole life, one forward pass per batch."""

    def __init__(self, loaded: ray.ObjectRef, point: OperatingPoint, precision: str, threads: int):
        fset: FingerprintSet = ray.get(loaded)
        on_gpu = bool(ray.get_gpu_ids()) and torch.cuda.is_available()
        if not on_gpu:
            torch.set_num_threads(max(1, threads))
        self.detector = Detector(fset.fingerprints, fset.extractor, "cuda" if on_gpu else "cpu", precision=precision)
        self.point, self.stamp = point, Stamp.of(fset)
        self.schema = schema(self.stamp.generators)

    def __call__(self, batch: pa.Table) -> pa.Table:
        items = [unpack(record) for record in batch.to_pylist()]
        return pa.Table.from_pylist(score(self.detector, items, self.point, self.stamp), schema=self.schema)


# -- the run -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Destination:
    filesystem: pafs.FileSystem
    path: str

    @classmethod
    def parse(cls, out: str) -> Destination:
        if "://" in out:
            filesystem, path = pafs.FileSystem.from_uri(out)
            return cls(filesystem, path)
        return cls(pafs.LocalFileSystem(), os.path.abspath(out))

    def files(self) -> set[str]:
        found = self.filesystem.get_file_info(pafs.FileSelector(self.path, recursive=True, allow_not_found=True))
        return {f.path for f in found if f.type == pafs.FileType.File and f.path.endswith(".parquet")}

    def write(self, table: pa.Table, name: str) -> None:
        """One more Parquet file beside Ray's (a few rows the driver made itself)."""
        self.filesystem.create_dir(self.path, recursive=True)
        pq.write_table(table, f"{self.path}/{name}-{uuid.uuid4().hex}.parquet", filesystem=self.filesystem)

    def read(self, files: set[str], names: list[str]) -> pa.Table:
        if not files:
            return pa.table({name: pa.array([], type=_STRING) for name in names})
        return pads.dataset(sorted(files), filesystem=self.filesystem, format="parquet").to_table(columns=names)


def already_scanned(dest: Destination, resume: bool, stamp: Stamp) -> set[str]:
    """Paths DEST has rows for; refuses to mix runs that would not be comparable."""
    files = dest.files()
    if files and not resume:
        raise ValueError(f"{dest.path} already holds a scan ({len(files)} Parquet files); pass --resume to add "
                         "only the files it has no row for, or write to another folder")
    done = dest.read(files, ["path", "fingerprints_digest"])
    digests = set(done["fingerprints_digest"].to_pylist())
    if digests - {stamp.fingerprints_digest}:
        raise ValueError(f"{dest.path} holds rows of another fingerprint set (digest "
                         f"{', '.join(sorted(d[:12] for d in digests))}, this one {stamp.fingerprints_digest[:12]}); "
                         "resume with the same set or write to another folder")
    return set(done["path"].to_pylist())


@contextmanager
def connected(address: str | None) -> Iterator[None]:
    """Ray for the run: joined or started here, and shut down only if this run started it."""
    if ray.is_initialized():  # a caller (a test session, a notebook) already holds one
        yield
        return
    ray.init(address=address, logging_level=logging.WARNING)
    try:
        yield
    finally:
        ray.shutdown()


def actor_pool(workers: int | None, gpus: float, cpus: float) -> ray.data.ActorPoolStrategy:
    if workers is not None:
        return ray.data.ActorPoolStrategy(size=workers)
    if gpus > 0:  # no cap: one actor per (share of a) GPU, as many as the cluster has or grows to
        return ray.data.ActorPoolStrategy(min_size=1, max_size=None)
    # CPU scorers get half the CPUs; decoding keeps the rest busy.
    return ray.data.ActorPoolStrategy(min_size=1, max_size=max(1, int(ray.cluster_resources().get("CPU", 1)
                                                                      // (2 * cpus))))


def missing_rows(paths: list[str], stamp: Stamp) -> list[dict[str, Any]]:
    """Rows for listed files the read did not find (deleted since, or named by a list and never there)."""
    return [row(Decoded(p, None, error_code="not_found", error="listed but not found when read"), None, stamp)
            for p in paths]


def cmd_scan(args: argparse.Namespace) -> int:
    point = operating_point(args.fpr)
    positive(args.batch_size, "--batch-size")
    positive(args.workers, "--workers")
    if args.num_gpus_per_worker < 0 or args.cpus_per_worker <= 0:
        raise ValueError("--num-gpus-per-worker must be >= 0 and --cpus-per-worker > 0")
    options = DecodeOptions(args.max_pixels, read_trust_anchors(args.trust_anchors))
    loaded = load_set(args.fingerprints, args.extractor_dir)
    stamp = Stamp.of(loaded)
    listing = list_source(args.sources)
    if not listing.paths:
        raise ValueError(f"no files in {' '.join(args.sources)}")
    dest = Destination.parse(args.out)
    done = already_scanned(dest, args.resume, stamp)
    todo = [p for p in listing.paths if listing.uri(p) not in done]
    summary = Summary(skipped=len(listing.paths) - len(todo))
    started = time.perf_counter()
    before = dest.files()
    if todo:
        with connected(args.ray_address):
            run(todo, listing, dest, loaded, point, options, args)
    written = dest.read(dest.files() - before, ["path", "verdict", "top", "error_code"])
    absent = sorted(set(map(listing.uri, todo)) - set(written["path"].to_pylist()))
    if absent:
        dest.write(pa.Table.from_pylist(missing_rows(absent, stamp), schema=schema(stamp.generators)), "not_found")
    for verdict, top, error in zip(*(written[c].to_pylist() for c in ("verdict", "top", "error_code")), strict=True):
        summary.add(verdict, top, error)
    for _ in absent:
        summary.add(None, None, "not_found")
    for line in summary.lines(time.perf_counter() - started):
        print(line, file=sys.stderr)
    return 1 if summary.failed else 0


def run(todo: list[str], listing: Listing, dest: Destination, loaded: FingerprintSet, point: OperatingPoint,
        options: DecodeOptions, args: argparse.Namespace) -> None:
    gpus, cpus = args.num_gpus_per_worker, args.cpus_per_worker
    batch = args.batch_size or default_batch(torch.device("cuda" if gpus > 0 else "cpu"))
    total = ray.cluster_resources().get("CPU", 0)
    if args.workers is not None and gpus == 0 and args.workers * cpus > total - 1:
        # Not refused: an autoscaling cluster may grow. A fixed one (a laptop) waits forever.
        print(f"dif scan: warning: {args.workers} workers x {cpus:g} CPUs leave none of the cluster's {total:g} "
              "CPUs to decode with; the scan waits for the cluster to grow (lower --cpus-per-worker)",
              file=sys.stderr)
    shared = ray.put(loaded)
    files = ray.data.read_binary_files(todo, include_paths=True, filesystem=listing.filesystem,
                                       ignore_missing_paths=True)
    # The stubs want a one-argument function; fn_kwargs gives decode_batch the rest.
    decoded = files.map_batches(decode_batch,  # type: ignore[arg-type]
                                batch_size=DECODE_BATCH, batch_format="pyarrow", num_cpus=1, memory=DECODE_MEMORY,
                                fn_kwargs={"loaded": shared, "options": options, "scheme": listing.scheme})
    scored = decoded.map_batches(Scorer, batch_size=batch, batch_format="pyarrow",
                                 compute=actor_pool(args.workers, gpus, cpus), num_gpus=gpus, num_cpus=cpus,
                                 fn_constructor_kwargs={"loaded": shared, "point": point,
                                                        "precision": args.precision, "threads": int(cpus)})
    scored.write_parquet(dest.path, filesystem=dest.filesystem, min_rows_per_file=ROWS_PER_FILE)
