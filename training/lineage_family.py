"""A synthetic generator family with known lineage, to validate ``dif.lineage``.

Per family seed: a parent generator (a tiny autoencoder whose 8x transposed-
convolution upsampling leaves a period-8 trace of its weights, like a latent
decoder), children fine-tuned from a copy of it on other photos (the last one
renders its images one and two pixels off the grid, so its fingerprint is a
shifted copy), and unrelated generators of the same architecture trained from
other seeds on the parent's own data. Every generator renders different photos,
and its fingerprint is trained by our trainer on those images against real
photos, as for a real generator. 64-pixel crops and short runs keep a family of
five to about 10 s on one CPU core.
"""

from __future__ import annotations

import copy
import itertools
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn
from torch.nn import functional as F

from dif.artifact import Fingerprint
from dif.calibration import fit
from dif.detector import extract_residuals
from dif.extractors import DEFAULT_EXTRACTOR, ResidualExtractor, create
from dif.images import decode_image
from dif.scoring import standardize
from training.data import list_images
from training.metrics import roc_auc
from training.trainer import TrainConfig, train_fingerprint

# Sources are cut this much larger than the crop and the generator's images are
# taken from the middle: the borders' zero padding would otherwise put the same
# artefact into every generator's fingerprint.
SOURCE_MARGIN = 16


class TinyGenerator(nn.Module):
    """Three strided convolutions down, three transposed ones up (8x, like a latent decoder):
    an autoencoder whose upsampling leaves a period-8 trace of its weights."""

    def __init__(self, width: int = 8, levels: int = 3):
        super().__init__()
        down: list[nn.Module] = []
        up: list[nn.Module] = []
        for level in range(levels):
            down += [nn.Conv2d(3 if level == 0 else width, width, 4, stride=2, padding=1), nn.LeakyReLU(0.2)]
            last = level == levels - 1
            up += [nn.ConvTranspose2d(width, 3 if last else width, 4, stride=2, padding=1)]
            if not last:
                up.append(nn.LeakyReLU(0.2))
        self.down = nn.Sequential(*down)
        self.up = nn.Sequential(*up)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.up(self.down(x - 0.5)) + 0.5


@dataclass(frozen=True)
class FamilyConfig:
    crop: int = 64
    generator_width: int = 8
    generator_crop: int = 32  # generators are fully convolutional: train them on small crops
    parent_steps: int = 150
    # A gentle fine-tune (about 3% of the weights' norm): the child's outputs
    # move towards its new data, as a fine-tuned model's do.
    child_steps: int = 100
    lr: float = 3e-3
    child_lr: float = 1e-4
    batch: int = 8
    children: int = 2
    # Where the last child's images sit on its pixel grid: its fingerprint is a shifted copy.
    child_shift: tuple[int, int] = (1, 2)
    unrelated: int = 2
    fake_images: int = 96
    real_images: int = 96
    keep_images: bool = False  # keep each generator's images (for cross-detection)
    # DIF's deep prior (a U-Net fed fixed noise), pinned: it is the harder case
    # for lineage (every fingerprint carries the network's own prior), and the
    # one the reference fingerprints were made with. A 60-step run needs a fast
    # learning rate, input noise well above the per-step jitter and a short
    # EMA, or the fingerprint would still be mostly the untrained network's
    # output; and a wide hinge margin, since a 64-pixel crop's correlations are
    # larger than a 256-pixel one's. With these the fingerprint correlates ~0.9
    # with the generator's mean residual (its ideal, the "mean" prior).
    train: TrainConfig = field(default_factory=lambda: TrainConfig(
        steps=60, lr=2e-2, noise_scale=1.0, ema=0.9, width=8, depth=2, batch_per_class=96, margin=0.3, seed=0,
        prior="unet", loss="pairwise", ema_start=0.0))


def photo_crops(folders: list[Path], size: int) -> torch.Tensor:
    """Every non-overlapping ``size`` crop of every photo in ``folders``: ``[N, 3, size, size]``."""
    crops = []
    for folder in folders:
        for path in list_images(folder):
            image = decode_image(path)
            _, h, w = image.shape
            tiles = image[:, : h // size * size, : w // size * size].unfold(1, size, size).unfold(2, size, size)
            crops.append(tiles.permute(1, 2, 0, 3, 4).reshape(-1, 3, size, size))
    if not crops:
        raise ValueError(f"no photos found in {', '.join(map(str, folders))}")
    return torch.cat(crops)


def fit_generator(net: TinyGenerator, data: torch.Tensor, steps: int, lr: float, batch: int, crop: int,
                  gen: torch.Generator) -> TinyGenerator:
    """Reconstruction training: the generator learns to output photos like ``data``."""
    opt = torch.optim.Adam(net.parameters(), lr=lr)
    for _ in range(steps):
        x = data[torch.randint(0, data.shape[0], (batch,), generator=gen)]
        top, left = (int(v) for v in torch.randint(0, data.shape[-1] - crop + 1, (2,), generator=gen))
        x = x[..., top : top + crop, left : left + crop]
        loss = F.mse_loss(net(x), x)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return net


def generate(net: TinyGenerator, sources: torch.Tensor, size: int, offset: tuple[int, int] = (0, 0)) -> torch.Tensor:
    """The generator's images, quantised to 8 bits like any saved image, cropped at ``offset``.

    ``sources`` are larger than ``size`` so that every offset crops real output, not padding.
    """
    with torch.no_grad():
        out = (net(sources).clamp(0, 1) * 255).round() / 255
    top, left = SOURCE_MARGIN // 2 + offset[0], SOURCE_MARGIN // 2 + offset[1]
    return out[..., top : top + size, left : left + size].contiguous()


@dataclass
class Member:
    name: str
    family: int
    role: str  # parent, child or unrelated
    fingerprint: Fingerprint
    images: torch.Tensor | None = None  # the generator's images, when FamilyConfig.keep_images


def fingerprint_of(name: str, fakes: torch.Tensor, real_res: torch.Tensor, extractor: ResidualExtractor,
                   config: FamilyConfig) -> Fingerprint:
    fake_res = extract_residuals(extractor, fakes)
    tensor = train_fingerprint(real_res, fake_res, config.train, torch.device("cpu"), progress=False)
    unit = standardize(tensor[None])[0]
    calibration = fit(standardize(real_res) @ unit, standardize(fake_res) @ unit, "train")
    return Fingerprint(name=name, tensor=tensor.contiguous(), calibration=calibration,
                       extractor=extractor.describe())


def build_family(seed: int, photos: dict[str, torch.Tensor], config: FamilyConfig,
                 extractor: ResidualExtractor) -> list[Member]:
    """Parent, ``children`` fine-tuned copies and ``unrelated`` same-architecture generators for one seed.

    ``photos`` holds disjoint crop sets: ``parent`` (the parent's and the
    unrelated generators' data), ``child`` (fine-tuning data), ``source`` (inputs
    whose outputs are the generators' images) and ``real`` (the real class).
    """
    gen = torch.Generator().manual_seed(10_000 + seed)
    torch.manual_seed(seed)
    parent = fit_generator(TinyGenerator(config.generator_width), photos["parent"], config.parent_steps,
                           config.lr, config.batch, config.generator_crop, gen)
    nets: list[tuple[str, str, TinyGenerator, tuple[int, int]]] = [(f"f{seed}-parent", "parent", parent, (0, 0))]
    for c in range(config.children):
        child_data = photos["child"][c :: config.children]
        child = fit_generator(copy.deepcopy(parent), child_data, config.child_steps, config.child_lr,
                              config.batch, config.generator_crop, gen)
        offset = config.child_shift if c == config.children - 1 else (0, 0)
        nets.append((f"f{seed}-child{c}", "child", child, offset))
    for u in range(config.unrelated):
        torch.manual_seed(1_000 * (seed + 1) + u)
        other = fit_generator(TinyGenerator(config.generator_width), photos["parent"], config.parent_steps,
                              config.lr, config.batch, config.generator_crop, gen)
        nets.append((f"f{seed}-other{u}", "unrelated", other, (0, 0)))
    reals = photos["real"][torch.randperm(photos["real"].shape[0], generator=gen)[: config.real_images]]
    real_res = extract_residuals(extractor, reals[..., : config.crop, : config.crop].contiguous())
    members = []
    for name, role, net, offset in nets:
        # Each generator renders its own photos: shared content would make fingerprints alike for no lineage reason.
        pick = torch.randperm(photos["source"].shape[0], generator=gen)[: config.fake_images]
        fakes = generate(net, photos["source"][pick], config.crop, offset)
        members.append(Member(name, seed, role, fingerprint_of(name, fakes, real_res, extractor, config),
                              fakes if config.keep_images else None))
    return members


def split_photos(root: Path, crop: int) -> dict[str, torch.Tensor]:
    """Disjoint crop sets from the ``0_real`` photos of the data folders under ``root``."""
    folders = sorted(p / "0_real" for p in root.iterdir() if (p / "0_real").is_dir())
    if len(folders) < 4:
        raise ValueError(f"{root} needs at least 4 folders with 0_real/ photos")
    return {
        "real": photo_crops(folders[0:1], crop),
        "parent": photo_crops(folders[1:2], crop),
        "child": photo_crops(folders[2:3], crop),
        "source": photo_crops(folders[3:], crop + SOURCE_MARGIN),
    }


def is_related(x: Member, y: Member) -> bool:
    """Same family and not an independently trained generator: parent-child and siblings."""
    return x.family == y.family and x.role != "unrelated" and y.role != "unrelated"


def pair_labels(members: list[Member]) -> list[tuple[Member, Member, bool]]:
    return [(x, y, is_related(x, y)) for x, y in itertools.combinations(members, 2)]


def lineage_auc(scores: list[float], related: list[bool]) -> float:
    return roc_auc(torch.tensor(scores, dtype=torch.float64), torch.tensor(related, dtype=torch.long))


def default_extractor() -> ResidualExtractor:
    return create(DEFAULT_EXTRACTOR)


def build_families(seeds: list[int], data_root: Path, config: FamilyConfig = FamilyConfig()) -> list[Member]:
    """Families of every seed, from the real photos under ``data_root`` (``*/0_real``)."""
    photos = split_photos(data_root, config.crop)
    extractor = default_extractor()
    return [member for seed in seeds for member in build_family(seed, photos, config, extractor)]
