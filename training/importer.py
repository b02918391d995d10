"""Convert the reference implementation's checkpoints into our artifact format.

A reference generator folder holds ``chk_<k>.pt`` (a dict with ``Fingerprint``
``[1, 3, S, S]`` and the per-step mean correlations ``Train Real`` / ``Train
Fake``) and ``train_hypers.pt`` (a pickled dict of hyper-parameters that holds a
``torch.device``). Neither file is trusted:

- checkpoints are read with ``torch.load(weights_only=True)``, which refuses
  anything but tensors and plain containers;
- the hyper-parameters are read with ``RestrictedUnpickler``, which only builds
  plain built-in values and ``torch.device``; any other global (``os.system``,
  ``subprocess.Popen``, ``builtins.eval``...) is refused before it is called.

The reference centres are kept: real / fake centre = mean of the last
``CENTRE_STEPS`` training-step correlations. Their spreads are the standard
deviation of those same values, floored at ``SPREAD_FLOOR``: each value is
already a mean over a batch, so its spread understates a single image's by
about sqrt(batch size), and an unfloored spread would make the logistic absurdly
steep. The reference's DnCNN extractor weights were never published, so the
artifact records our default extractor and flags the mismatch.
"""

from __future__ import annotations

import hashlib
import io
import math
import pickle
import re
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from dif import __version__
from dif.artifact import Detection, Fingerprint, validate_name, validate_tensor
from dif.calibration import MIN_SPREAD, Calibration
from dif.errors import ArtifactError
from dif.extractors import DEFAULT_EXTRACTOR, create

CENTRE_STEPS = 20
SPREAD_FLOOR = MIN_SPREAD
HYPERS_FILE = "train_hypers.pt"
CHECKPOINT_PATTERN = re.compile(r"^chk_(\d+)\.pt$")
MAX_HYPERS_BYTES = 1_000_000
MAX_CHECKPOINT_BYTES = 512_000_000
EXTRACTOR_NOTE = {"trained_with": "reference DnCNN (weights unpublished)", "mismatch": True}

# The only globals a hyper-parameter pickle may name. Plain containers and
# numbers need no global at all; these cover the rest of what a dict of
# settings legitimately holds.
_SAFE_BUILTINS = frozenset({"dict", "list", "tuple", "set", "frozenset", "int", "float", "complex",
                            "str", "bytes", "bytearray", "bool", "slice", "range"})
_SAFE_GLOBALS = {("torch", "device"): torch.device}


class UnsafePickle(ArtifactError):
    code = "unsafe_pickle"
    status = 422


class RestrictedUnpickler(pickle.Unpickler):
    """Builds plain values and ``torch.device`` only; every other global raises before it is looked up."""

    def find_class(self, module: str, name: str) -> Any:
        if module == "builtins" and name in _SAFE_BUILTINS:
            return getattr(__import__("builtins"), name)
        if (module, name) in _SAFE_GLOBALS:
            return _SAFE_GLOBALS[(module, name)]
        raise UnsafePickle(
            f"refusing to unpickle {module}.{name}: a hyper-parameter file may only hold plain values "
            "and torch.device (this file may be malicious; it was not executed)"
        )

    def persistent_load(self, pid: Any) -> Any:
        raise UnsafePickle("refusing persistent references (tensor storages) in a hyper-parameter file")


def restricted_loads(data: bytes) -> Any:
    """Unpickle ``data`` (a raw pickle, or a ``torch.save`` zip holding ``data.pkl``) with ``RestrictedUnpickler``."""
    if data[:4] == b"PK\x03\x04":
        data = _zip_pickle(data)
    try:
        return RestrictedUnpickler(io.BytesIO(data)).load()
    except UnsafePickle:
        raise
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, IndexError,
            KeyError, RecursionError, MemoryError, RuntimeError) as exc:
        raise ArtifactError(f"not a readable pickle ({type(exc).__name__}: {exc})") from exc


def _zip_pickle(data: bytes) -> bytes:
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            names = [n for n in archive.namelist() if n.endswith("/data.pkl") or n == "data.pkl"]
            if len(names) != 1:
                raise ArtifactError("a torch.save archive must hold exactly one data.pkl")
            info = archive.getinfo(names[0])
            if info.file_size > MAX_HYPERS_BYTES:
                raise ArtifactError(f"data.pkl is larger than {MAX_HYPERS_BYTES} bytes")
            return archive.read(info)
    except zipfile.BadZipFile as exc:
        raise ArtifactError(f"corrupt torch.save archive ({exc})") from exc


def plain(value: Any) -> Any:
    """JSON-safe copy: devices become strings, tuples and sets lists, non-finite floats strings."""
    if isinstance(value, torch.device):
        return str(value)
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [plain(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, (bytes, bytearray)):
        return value.hex()
    if isinstance(value, (complex, slice, range)):
        return str(value)
    return value


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def read_hypers(path: Path) -> dict[str, Any]:
    if path.stat().st_size > MAX_HYPERS_BYTES:
        raise ArtifactError(f"{path} is larger than {MAX_HYPERS_BYTES} bytes; a hyper-parameter file is tiny")
    try:
        value = restricted_loads(path.read_bytes())
    except ArtifactError as exc:
        raise type(exc)(f"{path}: {exc}") from exc
    if not isinstance(value, dict):
        raise ArtifactError(f"{path}: expected a dict of hyper-parameters, found {type(value).__name__}")
    return plain(value)


def latest_checkpoint(folder: Path) -> Path:
    found = sorted((int(m.group(1)), p) for p in folder.iterdir()
                   if p.is_file() and (m := CHECKPOINT_PATTERN.match(p.name)))
    if not found:
        raise ArtifactError(f"{folder} holds no chk_<k>.pt checkpoint; point at a reference generator folder")
    return found[-1][1]


@dataclass(frozen=True)
class ReferenceCheckpoint:
    fingerprint: torch.Tensor  # [3, S, S] float32
    train_real: list[float]
    train_fake: list[float]
    loss: list[float]


def read_checkpoint(path: Path) -> ReferenceCheckpoint:
    if path.stat().st_size > MAX_CHECKPOINT_BYTES:
        raise ArtifactError(f"{path} is larger than {MAX_CHECKPOINT_BYTES} bytes")
    try:
        data = torch.load(path, weights_only=True, map_location="cpu")
    except (pickle.UnpicklingError, RuntimeError, EOFError, ValueError, AttributeError, OSError) as exc:
        raise ArtifactError(
            f"{path}: not a reference checkpoint torch.load can read safely (weights_only): {exc}"
        ) from exc
    if not isinstance(data, dict) or "Fingerprint" not in data:
        raise ArtifactError(f"{path}: expected a dict with a 'Fingerprint' tensor (a reference chk_<k>.pt)")
    tensor = data["Fingerprint"]
    if not isinstance(tensor, torch.Tensor):
        raise ArtifactError(f"{path}: 'Fingerprint' must be a tensor, found {type(tensor).__name__}")
    if tensor.ndim == 4 and tensor.shape[0] == 1:
        tensor = tensor[0]
    if tensor.ndim != 3 or tensor.shape[0] != 3 or tensor.shape[1] != tensor.shape[2]:
        raise ArtifactError(f"{path}: 'Fingerprint' must have shape [1, 3, S, S] or [3, S, S], "
                            f"found {list(data['Fingerprint'].shape)}")
    if not tensor.is_floating_point():
        raise ArtifactError(f"{path}: 'Fingerprint' must be floating point, found {tensor.dtype}")
    tensor = tensor.detach().to(torch.float32).contiguous()
    try:
        validate_tensor(tensor, expected_size=int(tensor.shape[-1]), source=str(path))
    except ArtifactError as exc:
        raise ArtifactError(f"{exc}; this checkpoint cannot be imported") from exc
    return ReferenceCheckpoint(tensor, _curve(data, "Train Real", path), _curve(data, "Train Fake", path),
                               _curve(data, "Loss", path, required=False))


def _curve(data: dict[str, Any], key: str, path: Path, required: bool = True) -> list[float]:
    values = data.get(key)
    if values is None and not required:
        return []
    if isinstance(values, torch.Tensor):
        values = values.flatten().tolist()
    if not isinstance(values, (list, tuple)) or not values:
        raise ArtifactError(f"{path}: '{key}' must be a non-empty list of per-step correlations")
    try:
        floats = [float(v) for v in values]
    except (TypeError, ValueError) as exc:
        raise ArtifactError(f"{path}: '{key}' must hold numbers ({exc})") from exc
    if not all(math.isfinite(v) for v in floats):
        raise ArtifactError(f"{path}: '{key}' holds NaN or infinite values")
    return floats


def reference_calibration(real: list[float], fake: list[float]) -> Calibration:
    """Centres and floored spreads of the last ``CENTRE_STEPS`` step means (see module doc)."""
    def centre_spread(values: list[float]) -> tuple[float, float]:
        tail = torch.tensor(values[-CENTRE_STEPS:], dtype=torch.float64)
        spread = float(tail.std(unbiased=True)) if tail.numel() > 1 else 0.0
        return float(tail.mean()), max(spread, SPREAD_FLOOR)

    real_centre, real_spread = centre_spread(real)
    fake_centre, fake_spread = centre_spread(fake)
    if real_centre == fake_centre:
        raise ArtifactError("the reference's real and fake centres are equal: the fingerprint separates nothing")
    return Calibration(real_centre, fake_centre, real_spread, fake_spread, method=f"reference-last-{CENTRE_STEPS}")


def default_name(folder: Path) -> str:
    return re.sub(r"[^a-z0-9_.-]", "-", folder.resolve().name.lower()).strip("-._")[:64] or "reference"


def import_reference(folder: Path | str, name: str | None = None) -> Fingerprint:
    """Read one reference generator folder into a ``Fingerprint`` (not yet saved)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise ArtifactError(f"{folder} is not a folder; point at a reference generator folder "
                            f"(chk_0.pt, {HYPERS_FILE})")
    name = name or default_name(folder)
    validate_name(name, str(folder))
    checkpoint_path = latest_checkpoint(folder)
    checkpoint = read_checkpoint(checkpoint_path)
    hypers_path = folder / HYPERS_FILE
    hypers = read_hypers(hypers_path) if hypers_path.is_file() else None
    files = {checkpoint_path.name: sha256_file(checkpoint_path)}
    if hypers is not None:
        files[HYPERS_FILE] = sha256_file(hypers_path)
    metadata = {
        "provenance": {
            "source": "reference implementation (Sinitsa & Fried, WACV 2024)",
            "path": str(folder.resolve()),
            "files_sha256": files,
            "importer": f"dif {__version__}",
        },
        "reference_hyperparameters": hypers,
        "reference_training": {
            "steps": len(checkpoint.train_real),
            "centre_steps": CENTRE_STEPS,
            "final_loss": checkpoint.loss[-1] if checkpoint.loss else None,
        },
    }
    return Fingerprint(
        name=name, tensor=checkpoint.fingerprint,
        calibration=reference_calibration(checkpoint.train_real, checkpoint.train_fake),
        extractor={**create(DEFAULT_EXTRACTOR).describe(), **EXTRACTOR_NOTE},
        detection=Detection(feature="correlation", max_shift=0),
        metadata=metadata,
    )


def reference_folders(root: Path | str) -> list[Path]:
    """Generator folders directly under ``root`` (those holding a chk_<k>.pt), sorted."""
    base = Path(root)
    if not base.is_dir():
        raise ArtifactError(f"{base} is not a folder")
    found = sorted(p for p in base.iterdir()
                   if p.is_dir() and any(CHECKPOINT_PATTERN.match(c.name) for c in p.iterdir()))
    if not found:
        raise ArtifactError(f"{base} holds no generator folders with a chk_<k>.pt; drop --all for a single folder")
    return found
