"""The fingerprint artifact: ``fingerprints/<name>/``.

Files:
- ``fingerprint.safetensors``: one float32 tensor ``fingerprint`` of shape ``[3, S, S]``;
- ``metadata.json``: schema below (``SCHEMA_VERSION``). Version 2 adds ``null`` (the decision
  rule's null model, ``dif.decision``); version 1 artifacts still load, their null re-derived
  from the fingerprint's orientation with the theoretical N(0, 1) and no tail correction.
  Version 3 adds ``detection.lattice`` and ``detection.min_cosine`` (a lattice's shift search
  gated by the grid cosine, ``dif.detection.Detection.gated``): a build that reads only up to 2
  would search such a lattice ungated, so it must refuse it; version 2 artifacts load ungated.
  ``detection.floor_cosine`` (the zero-shift test's floor, ``Detection.floored``) came later
  within version 3 without a bump: a build that ignores it only tests such a lattice as before,
  which still holds the stated rate, and a version 3 artifact without it loads unfloored;
- ``fingerprint.png`` / ``spectrum.png``: for people, never read back.

Only safetensors and JSON are ever parsed, so a hostile artifact cannot run code.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeGuard

import torch
from safetensors import SafetensorError
from safetensors.torch import load, save

from dif import __version__
from dif.calibration import Calibration
from dif.decision import NullModel
from dif.detection import FEATURES as FEATURES  # re-exported: its home is torch-free
from dif.detection import Detection
from dif.errors import ArtifactError
from dif.render import fingerprint_image, save_png, spectrum_image

log = logging.getLogger("dif.artifact")

SCHEMA_VERSION = 3
READABLE_SCHEMAS = (1, 2, 3)
WEIGHTS_FILE = "fingerprint.safetensors"
METADATA_FILE = "metadata.json"
TENSOR_KEY = "fingerprint"
NAME_PATTERN = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,63}$")
REQUIRED_KEYS = ("schema_version", "name", "crop_size", "extractor", "calibration", "detection")
MAX_METADATA_BYTES = 1_000_000


@dataclass(frozen=True)
class Crossval:
    """What ``dif train --crossval`` recorded under ``metrics.crossval`` and the code reads back."""

    accuracy: float | None = None
    heldout_fake_p: tuple[float, ...] = ()  # the held-out fakes' p-values: TPR at any rate and family size
    tpr_at_fpr: dict[str, float] = field(default_factory=dict)

    @classmethod
    def from_metadata(cls, meta: Mapping[str, Any]) -> Crossval | None:
        """None when none was recorded. Read leniently, as the service always has: a value that is
        not a number counts as not recorded (an uploaded artifact is compared, never refused, for it)."""
        metrics = meta.get("metrics")
        recorded = metrics.get("crossval") if isinstance(metrics, dict) else None
        if not isinstance(recorded, dict) or not recorded:
            return None
        accuracy, p, tpr = recorded.get("accuracy"), recorded.get("heldout_fake_p"), recorded.get("tpr_at_fpr")
        p_values = tuple(float(v) for v in p) if isinstance(p, list) and all(map(_is_number, p)) else ()
        rates = {str(k): float(v) for k, v in tpr.items() if _is_number(v)} if isinstance(tpr, dict) else {}
        return cls(float(accuracy) if _is_number(accuracy) else None, p_values, rates)


def _is_number(value: object) -> TypeGuard[int | float]:
    return isinstance(value, (int, float))


@dataclass
class Fingerprint:
    name: str
    tensor: torch.Tensor  # [3, S, S] float32
    calibration: Calibration
    extractor: dict[str, Any]
    detection: Detection = field(default_factory=Detection)
    # What the trainer or importer recorded besides the typed fields (samples, estimator, metrics...).
    metadata: dict[str, Any] = field(default_factory=dict)
    # None: derived from the calibration's orientation with the theoretical N(0, 1) null.
    null: NullModel | None = None
    schema_version: int = SCHEMA_VERSION  # of the metadata.json it was read from (1: migrated)
    crossval: Crossval | None = field(default=None, init=False)  # read from metadata["metrics"]

    def __post_init__(self) -> None:
        if self.null is None:
            self.null = derived_null(self.calibration)
        self.crossval = Crossval.from_metadata(self.metadata)

    @property
    def null_model(self) -> NullModel:
        assert self.null is not None  # set in __post_init__
        return self.null

    @property
    def crop_size(self) -> int:
        return int(self.tensor.shape[-1])

    @property
    def extractor_key(self) -> str:
        return f"{self.extractor['id']}@{self.extractor['version']}"

    def full_metadata(self) -> dict[str, Any]:
        meta = dict(self.metadata)
        meta.setdefault("created_at", dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"))
        meta.setdefault("code_version", __version__)
        meta.update(
            schema_version=SCHEMA_VERSION, name=self.name, crop_size=self.crop_size,
            extractor=self.extractor, calibration=self.calibration.to_dict(),
            detection=self.detection.to_dict(), null=self.null_model.to_dict(),
            fingerprint_sha256=tensor_digest(self.tensor),
        )
        return meta


def tensor_digest(tensor: torch.Tensor) -> str:
    return hashlib.sha256(tensor.detach().cpu().float().contiguous().numpy().tobytes()).hexdigest()


def save_fingerprint(fp: Fingerprint, out_dir: Path | str) -> Path:
    """Write the artifact folder (safetensors, metadata, PNGs) and return it."""
    out = Path(out_dir)
    validate_name(fp.name)
    validate_tensor(fp.tensor, expected_size=fp.crop_size, source=str(out))
    out.mkdir(parents=True, exist_ok=True)
    tensor = fp.tensor.detach().cpu().float().contiguous()
    (out / WEIGHTS_FILE).write_bytes(save({TENSOR_KEY: tensor}))
    (out / METADATA_FILE).write_text(json.dumps(fp.full_metadata(), indent=2, sort_keys=True) + "\n")
    save_png(fingerprint_image(tensor), out / "fingerprint.png")
    save_png(spectrum_image(tensor), out / "spectrum.png")
    return out


def load_fingerprint(path: Path | str) -> Fingerprint:
    """Load and validate one artifact folder."""
    folder = Path(path)
    weights, meta_file = folder / WEIGHTS_FILE, folder / METADATA_FILE
    if not folder.is_dir():
        raise ArtifactError(f"{folder} is not a folder; point at a fingerprint folder holding {WEIGHTS_FILE}")
    for required in (weights, meta_file):
        if not required.is_file():
            raise ArtifactError(
                f"{folder} has no {required.name}; train one with `dif train` or convert a reference "
                "checkpoint with `dif import-reference`"
            )
    return parse_fingerprint(weights.read_bytes(), meta_file.read_bytes(), source=str(folder))


def parse_fingerprint(weights: bytes, metadata: bytes, source: str = "upload") -> Fingerprint:
    """Validate raw artifact bytes (used by the loader and by uploads)."""
    meta = parse_metadata(metadata, source)
    try:
        tensors = load(weights)
    except (SafetensorError, ValueError, RuntimeError, OSError) as exc:
        raise ArtifactError(
            f"{source}: {WEIGHTS_FILE} is not a valid safetensors file ({exc}); "
            "pickled .pt files are never loaded, convert them with `dif import-reference`"
        ) from exc
    if set(tensors) != {TENSOR_KEY}:
        raise ArtifactError(f"{source}: {WEIGHTS_FILE} must hold exactly one tensor named {TENSOR_KEY!r}, "
                            f"found {sorted(tensors)}")
    tensor = tensors[TENSOR_KEY]
    validate_tensor(tensor, expected_size=meta.crop_size, source=source)
    return Fingerprint(
        name=meta.name, tensor=tensor, calibration=meta.calibration, extractor=meta.extractor,
        detection=meta.detection, metadata=meta.recorded, null=meta.null, schema_version=meta.schema_version,
    )


@dataclass(frozen=True)
class ArtifactMetadata:
    """A metadata.json, validated once (``parse_metadata``): the fields the code reads, typed."""

    schema_version: int
    name: str
    crop_size: int
    extractor: dict[str, Any]  # at least id and version
    calibration: Calibration
    detection: Detection
    null: NullModel  # recorded (schema 2) or derived (schema 1)
    recorded: dict[str, Any]  # the whole object as written


def derived_null(calibration: Calibration) -> NullModel:
    """The null of an artifact that records none: its orientation, theory's N(0, 1), no tail correction."""
    sign = 1.0 if calibration.fake_centre >= calibration.real_centre else -1.0
    return NullModel(sign=sign, method="gaussian (derived: no null recorded)")


def _null(meta: dict[str, Any], calibration: Calibration, source: str) -> NullModel:
    if meta["schema_version"] == 1:
        # Migrated, not refused: schema 1 decided at the midpoint of fitted centres, a rule
        # that ignored false positives. Its fingerprint is still good; only the rule changes.
        log.warning("%s: schema 1 artifact, decision rule re-derived (z null N(0, 1), no tail correction, "
                    "no cross-validated TPR recorded); rebuild it with `dif train` for both", source)
        return derived_null(calibration)
    try:
        return NullModel.from_dict(meta["null"])
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise ArtifactError(f"{source}: null must be an object with a scale >= 1 and a sign of +1 or -1 ({exc}); "
                            "re-create the artifact with `dif train`") from exc


def parse_metadata(raw: bytes, source: str) -> ArtifactMetadata:
    if len(raw) > MAX_METADATA_BYTES:
        raise ArtifactError(f"{source}: {METADATA_FILE} is larger than {MAX_METADATA_BYTES} bytes")
    try:
        meta = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ArtifactError(f"{source}: {METADATA_FILE} is not valid JSON ({exc})") from exc
    if not isinstance(meta, dict):
        raise ArtifactError(f"{source}: {METADATA_FILE} must be a JSON object")
    missing = [k for k in REQUIRED_KEYS if k not in meta]
    if missing:
        raise ArtifactError(f"{source}: {METADATA_FILE} lacks {', '.join(missing)}; re-create it with `dif train`")
    if meta["schema_version"] not in READABLE_SCHEMAS or isinstance(meta["schema_version"], bool):
        raise ArtifactError(
            f"{source}: schema_version {meta['schema_version']!r} is not supported (this build reads "
            f"{', '.join(map(str, READABLE_SCHEMAS))}); re-export the artifact with this version of `dif`"
        )
    if meta["schema_version"] >= 2 and not isinstance(meta.get("null"), dict):
        raise ArtifactError(f"{source}: schema_version {meta['schema_version']} needs a null object; "
                            "re-create it with `dif train`")
    validate_name(meta["name"], source)
    if not isinstance(meta["crop_size"], int) or not 16 <= meta["crop_size"] <= 2048:
        raise ArtifactError(f"{source}: crop_size must be an integer between 16 and 2048")
    if not isinstance(meta["detection"], dict):
        raise ArtifactError(f"{source}: detection must be an object")
    calibration = _calibration(meta, source)
    return ArtifactMetadata(
        schema_version=meta["schema_version"], name=meta["name"], crop_size=meta["crop_size"],
        extractor=_extractor(meta, source), calibration=calibration, detection=Detection.from_dict(meta["detection"]),
        null=_null(meta, calibration, source), recorded=meta,
    )


def _calibration(meta: dict[str, Any], source: str) -> Calibration:
    try:
        cal = Calibration.from_dict(meta["calibration"])
    except (KeyError, TypeError, ValueError) as exc:
        raise ArtifactError(f"{source}: calibration needs numeric real_centre, fake_centre, "
                            f"real_spread, fake_spread ({exc})") from exc
    values = (cal.real_centre, cal.fake_centre, cal.real_spread, cal.fake_spread)
    if not all(v == v and abs(v) != float("inf") for v in values):
        raise ArtifactError(f"{source}: calibration values must be finite")
    if cal.fake_centre == cal.real_centre:
        raise ArtifactError(f"{source}: real and fake centres are equal, the fingerprint cannot separate them")
    return cal


def _extractor(meta: dict[str, Any], source: str) -> dict[str, Any]:
    ext = meta["extractor"]
    if not isinstance(ext, dict) or not {"id", "version"} <= set(ext):
        raise ArtifactError(f"{source}: extractor must be an object with id and version")
    return ext


def validate_name(name: object, source: str = "artifact") -> None:
    if not isinstance(name, str) or not NAME_PATTERN.match(name):
        raise ArtifactError(
            f"{source}: name {name!r} must be 1-64 characters of lower-case letters, digits, '.', '_' or '-'"
        )


def validate_tensor(tensor: torch.Tensor, expected_size: int, source: str) -> None:
    if tensor.dtype != torch.float32:
        raise ArtifactError(f"{source}: fingerprint must be float32, found {tensor.dtype}")
    if tuple(tensor.shape) != (3, expected_size, expected_size):
        raise ArtifactError(
            f"{source}: fingerprint must have shape [3, {expected_size}, {expected_size}] "
            f"(crop_size in metadata), found {list(tensor.shape)}"
        )
    if not bool(torch.isfinite(tensor).all()):
        raise ArtifactError(f"{source}: fingerprint holds NaN or infinite values")
    if float(tensor.std()) == 0.0:
        raise ArtifactError(f"{source}: fingerprint is constant and cannot correlate with anything")


def discover(root: Path | str) -> list[Path]:
    """Artifact folders directly under ``root`` (those holding a metadata file), sorted by name; ``root``
    itself when it is an artifact folder (a set of one: pointing at `dif train --out` is a natural mistake)."""
    base = Path(root)
    if not base.is_dir():
        raise ArtifactError(f"fingerprint folder {base} does not exist; set DIF_FINGERPRINTS_DIR")
    if _is_artifact(base):
        return [base]
    return sorted(p for p in base.iterdir() if _is_artifact(p))


def _is_artifact(folder: Path) -> bool:
    return (folder / METADATA_FILE).is_file() and (folder / WEIGHTS_FILE).exists()


def load_all(root: Path | str) -> list[Fingerprint]:
    found = [load_fingerprint(p) for p in discover(root)]
    names = [f.name for f in found]
    if len(set(names)) != len(names):
        raise ArtifactError(f"{root}: two artifacts share a name: {sorted(names)}")
    return found
