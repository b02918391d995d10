"""Residual extractors: image ``[N, 3, H, W]`` in ``[0, 1]`` -> noise residual, same shape.

A small registry keyed by ``name@version``: artifacts record which extractor made
their fingerprint (id, version and a digest of its weights), and the service
refuses to score a fingerprint with a different extractor than it was trained on.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torch import nn
from torch.nn import functional as F

from dif.detection import DEFAULT_EXTRACTOR as DEFAULT_EXTRACTOR  # its home is torch-free; re-exported
from dif.errors import ArtifactError


class ResidualExtractor(nn.Module):
    """Base class; subclasses set ``name`` and ``version`` and implement ``forward``."""

    name: str = "base"
    version: int = 1
    # Learned extractors are deep conv stacks: they gain from bf16 and channels-last on a GPU.
    # Fixed filters are cheap and their sign/dead-zone maths needs fp32, so they always run fp32.
    learned: bool = False

    @property
    def key(self) -> str:
        return f"{self.name}@{self.version}"

    def digest(self) -> str:
        """sha256 over the extractor's identity and every weight, for provenance."""
        h = hashlib.sha256(self.key.encode())
        for pname, tensor in sorted(self.state_dict().items()):
            h.update(pname.encode())
            h.update(tensor.detach().to(torch.float32).cpu().contiguous().numpy().tobytes())
        return h.hexdigest()

    def describe(self) -> dict[str, str | int]:
        return {"id": self.name, "version": self.version, "digest": self.digest()}


class FixedFilter(ResidualExtractor):
    """A fixed ``k x k`` kernel applied per channel, the border replicated so the output keeps the size."""

    kernel: torch.Tensor

    def __init__(self, kernel: torch.Tensor) -> None:
        super().__init__()
        size = kernel.shape[-1]
        self.register_buffer("kernel", kernel.expand(3, 1, size, size).clone(), persistent=True)
        # (row, column, weight) of each non-zero tap, as Python numbers: reading them off the
        # buffer per call would wait on a GPU.
        self._taps = [(i, j, float(kernel[i, j])) for i in range(size) for j in range(size) if float(kernel[i, j])]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The kernel as a sum of shifted copies of the padded image, one per non-zero tap.

        The same filter as a depthwise ``conv2d`` (to float rounding; the sign residual's output
        is identical) and, on a CPU, far cheaper: oneDNN's depthwise convolution cost 7.8 ms per
        4-crop image for the 3x3 Laplacian, its five taps 2.7 ms with everything else the
        residual does (one thread; it was most of the model's time).
        """
        size = self.kernel.shape[-1]
        pad = size // 2
        padded = F.pad(x, (pad, pad, pad, pad), mode="replicate")
        height, width = x.shape[-2:]
        out: torch.Tensor | None = None
        for i, j, weight in self._taps:
            tap = padded[..., i : i + height, j : j + width]
            out = tap * weight if out is None else out.add_(tap, alpha=weight)
        return out if out is not None else torch.zeros_like(x)


class Laplacian(FixedFilter):
    """Parameter-free 3x3 high-pass (negative discrete Laplacian), per channel."""

    name = "laplacian"
    version = 1

    def __init__(self) -> None:
        super().__init__(torch.tensor([[0.0, -1.0, 0.0], [-1.0, 4.0, -1.0], [0.0, -1.0, 0.0]]) / 4.0)


class SignLaplacian(Laplacian):
    """Sign of the Laplacian residual.

    Strong edges dominate a linear residual and drown the generator's faint
    pattern; keeping only the sign gives every pixel one vote. Chosen as the
    default by cross-validated accuracy (docs/accuracy.md, "Residual extractor comparison").
    """

    name = "signlap"
    version = 1

    # Below a tenth of one 8-bit grey level, a residual is rounding error, not signal.
    dead_zone = 1e-4

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # hardshrink zeroes exactly the dead zone: one pass where sign(r) * (|r| > dead zone) took
        # four and a bool-to-float conversion (0.08 vs 2.4 ms for two crops on one thread).
        return F.hardshrink(super().forward(x), self.dead_zone).sign_()


class LocalNormLaplacian(Laplacian):
    """Laplacian residual divided by its local RMS (7x7): a softer edge equaliser than the sign."""

    name = "lapnorm"
    version = 1

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        r = super().forward(x)
        local = F.avg_pool2d(r * r, 7, 1, 3, count_include_pad=False)
        return r / (local.sqrt() + 1e-3)


class BoxHighPass(FixedFilter):
    """Image minus its 5x5 local mean: keeps a wider high band than the Laplacian."""

    name = "boxhp5"
    version = 1

    def __init__(self) -> None:
        kernel = -torch.ones(5, 5) / 25.0
        kernel[2, 2] += 1.0
        super().__init__(kernel)


class DnCNN(ResidualExtractor):
    """DnCNN-style denoiser; the residual is its noise estimate (input minus clean image)."""

    name = "dncnn"
    version = 1
    learned = True

    def __init__(self, depth: int = 6, width: int = 16) -> None:
        super().__init__()
        self.depth, self.width = depth, width
        layers: list[nn.Module] = [nn.Conv2d(3, width, 3, padding=1), nn.ReLU(inplace=True)]
        for _ in range(depth - 2):
            layers += [nn.Conv2d(width, width, 3, padding=1, bias=False),
                       nn.BatchNorm2d(width), nn.ReLU(inplace=True)]
        layers.append(nn.Conv2d(width, 3, 3, padding=1))
        self.body = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # Centre the input so the learned bias does not depend on image brightness.
        return self.body(x - 0.5)

    def describe(self) -> dict[str, str | int]:
        return {**super().describe(), "depth": self.depth, "width": self.width}


_BUILTIN: dict[str, Callable[[], ResidualExtractor]] = {
    "laplacian@1": Laplacian,
    "boxhp5@1": BoxHighPass,
    "signlap@1": SignLaplacian,
    "lapnorm@1": LocalNormLaplacian,
}


def available() -> list[str]:
    return sorted([*_BUILTIN, "dncnn@1"])


def create(key: str, weights_dir: Path | str | None = None) -> ResidualExtractor:
    """Build an extractor by key; learned ones load their safetensors from ``weights_dir``."""
    if key in _BUILTIN:
        return _BUILTIN[key]().eval()
    if key == "dncnn@1":
        if weights_dir is None:
            raise ArtifactError(
                "extractor dncnn@1 needs trained weights: run `dif train-denoiser REAL_DIR --out DIR` "
                "and pass that DIR (or set DIF_EXTRACTOR_DIR)"
            )
        return load_denoiser(Path(weights_dir))
    raise ArtifactError(f"unknown residual extractor {key!r}; known: {', '.join(available())}")


DENOISER_WEIGHTS = "denoiser.safetensors"
DENOISER_META = "metadata.json"


def save_denoiser(model: DnCNN, out_dir: Path, extra: dict[str, object]) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    save_file(state, str(out_dir / DENOISER_WEIGHTS))
    meta = {**model.describe(), **extra}
    (out_dir / DENOISER_META).write_text(json.dumps(meta, indent=2, sort_keys=True))


def load_denoiser(weights_dir: Path) -> DnCNN:
    meta_path, weights_path = weights_dir / DENOISER_META, weights_dir / DENOISER_WEIGHTS
    if not meta_path.is_file() or not weights_path.is_file():
        raise ArtifactError(
            f"{weights_dir} must hold {DENOISER_WEIGHTS} and {DENOISER_META} "
            "(made by `dif train-denoiser`)"
        )
    meta = json.loads(meta_path.read_text())
    model = DnCNN(depth=int(meta["depth"]), width=int(meta["width"]))
    try:
        model.load_state_dict(load_file(str(weights_path)))
    except RuntimeError as exc:
        raise ArtifactError(f"denoiser weights in {weights_dir} do not match its metadata: {exc}") from exc
    if meta.get("digest") and meta["digest"] != model.digest():
        raise ArtifactError(f"denoiser weights in {weights_dir} do not match the digest in its metadata")
    return model.eval()
