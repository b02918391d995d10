"""Fingerprint artifacts made up on the spot: random tensors with a fixed, plausible calibration.

Scoring costs depend on what a fingerprint is decided on and whether it is periodic (a lattice),
not on its values, and a random one calls every image real, so these serve the service tests and
the throughput benches alike.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch

from dif.artifact import Detection, Fingerprint, save_fingerprint
from dif.calibration import Calibration
from dif.extractors import DEFAULT_EXTRACTOR, create

CALIBRATION = Calibration(0.0, 0.02, 0.01, 0.01)


def trainer_metrics(seed: int) -> dict[str, Any]:
    """Held-out fakes' p-values as the trainer records them: seed 0 covers its generator, later ones less."""
    heldout = [10.0 ** -(6 - 2 * seed)] * 6 + [0.3] * 4
    return {"metrics": {"crossval": {"accuracy": 0.75 + seed / 100, "heldout_fake_p": heldout}}}


def random_fingerprint(name: str, seed: int, extractor: dict[str, Any] | None = None,
                       metadata: dict[str, Any] | None = None, detection: Detection | None = None) -> Fingerprint:
    detection = detection or Detection()
    gen = torch.Generator().manual_seed(seed)
    # A lattice fingerprint is periodic (what the lattice estimators make), and the scorer
    # searches a periodic one on its folded cell, which is what such a fingerprint costs.
    period = detection.lattice
    tensor = (torch.randn((3, period, period), generator=gen).repeat(1, 256 // period, 256 // period) if period
              else torch.randn((3, 256, 256), generator=gen))
    return Fingerprint(name=name, tensor=tensor, calibration=CALIBRATION,
                       extractor=extractor or create(DEFAULT_EXTRACTOR).describe(), detection=detection,
                       metadata={} if metadata is None else metadata)


def make_fingerprint(name: str, seed: int, extractor: dict[str, Any] | None = None) -> Fingerprint:
    """A random fingerprint whose metadata looks trained (the service reports those metrics)."""
    return random_fingerprint(name, seed, extractor or create("signlap@1").describe(), trainer_metrics(seed))


def write_artifacts(root: Path, names: Iterable[str], first_seed: int = 0) -> Path:
    """One trained-looking random artifact per name under ``root`` (seeds ``first_seed``, +1, ...)."""
    root.mkdir(parents=True, exist_ok=True)
    for offset, name in enumerate(names):
        save_fingerprint(make_fingerprint(name, first_seed + offset), root / name)
    return root


def write_random_set(root: Path, count: int, extractor: dict[str, Any] | None = None,
                     detection: Detection | None = None) -> Path:
    """``count`` random fingerprints (``gen00``, ...) without metrics: any number of them, for cost benches.

    ``detection`` sets what scoring computes (``z_bg``, a shift-search backstop), which is what costs."""
    width = max(2, len(str(count - 1)))
    for i in range(count):
        fp = random_fingerprint(f"gen{i:0{width}d}", i, extractor, detection=detection)
        save_fingerprint(fp, root / fp.name)
    return root


def twin_fingerprint(name: str, image: bytes) -> Fingerprint:
    """A fingerprint equal to ``image``'s mean crop residual: the image matches it as strongly as any can."""
    from dif.detector import Detector
    from dif.images import decode_image

    template = make_fingerprint(name, 7)
    detector = Detector([template], create(template.extractor_key), torch.device("cpu"))
    residuals, _ = detector.residuals([detector.prepare(decode_image(image))])
    return replace(template, tensor=residuals.mean(dim=0))
