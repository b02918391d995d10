"""What the hardware allows the service at best, measured in the same run as the service itself."""

from __future__ import annotations

import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import torch

from app.engine import load_model_set
from dif.images import decode_image
from testkit.images import Blob


def decode_ceiling(images: Sequence[Blob], fingerprints: Path, seconds: float, threads: int = 2,
                   extractor_dir: Path | None = None) -> float:
    """Images per second that decode + crop alone reach on ``threads`` threads: the service's upper bound."""
    model = load_model_set(fingerprints, extractor_dir, torch.device("cpu"), 1)

    def one(data: bytes) -> None:
        model.detector.prepare(decode_image(data))

    done = 0
    started = time.monotonic()
    with ThreadPoolExecutor(threads) as pool:
        while time.monotonic() - started < seconds:
            list(pool.map(one, [d for _, d in images]))
            done += len(images)
    return done / (time.monotonic() - started)
