"""Labelled image folders (``0_real/`` + ``1_fake/``) and their cached residuals.

Residuals are extracted once per crop and kept in memory (fp16 when large), so
training epochs never run the extractor again.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import torch
from tqdm import tqdm

from dif.detector import extract_residuals, residual_chunk
from dif.errors import DatasetError, DifError, ImageTooSmall
from dif.extractors import ResidualExtractor
from dif.images import decode_image, grid_crops

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff"}
REAL, FAKE = 0, 1


@dataclass(frozen=True)
class LabelledImages:
    paths: list[Path]
    labels: list[int]

    def count(self, label: int) -> int:
        return sum(1 for v in self.labels if v == label)

    def digest(self) -> str:
        """sha256 over every file's label and bytes: provenance of a trained artifact."""
        h = hashlib.sha256()
        for path, label in sorted(zip(self.paths, self.labels, strict=True)):
            h.update(f"{label}:{path.name}:".encode())
            h.update(hashlib.sha256(path.read_bytes()).digest())
        return h.hexdigest()


def file_digest(path: Path) -> str:
    """sha256 of a file's bytes: an image's identity by content, whatever its name or folder."""
    return hashlib.sha256(path.read_bytes()).hexdigest()


def list_images(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())


def images_in(folder: Path, missing: str, empty: str) -> list[Path]:
    """The images of ``folder``; ``DatasetError(missing)`` when it is not a folder, ``(empty)`` when it holds none."""
    if not folder.is_dir():
        raise DatasetError(missing)
    found = list_images(folder)
    if not found:
        raise DatasetError(empty)
    return found


def scan(data_dir: Path | str, extra_real: list[Path] | None = None) -> LabelledImages:
    """Images of ``DATA_DIR/0_real`` (label 0) and ``DATA_DIR/1_fake`` (label 1)."""
    root = Path(data_dir)
    paths: list[Path] = []
    labels: list[int] = []
    for sub, label in (("0_real", REAL), ("1_fake", FAKE)):
        folder = root / sub
        found = images_in(folder, f"{root} must contain {sub}/ (real images in 0_real/, generated in 1_fake/)",
                          f"{folder} holds no images ({', '.join(sorted(IMAGE_SUFFIXES))})")
        paths += found
        labels += [label] * len(found)
    return LabelledImages(paths, labels)


def with_extra_reals(images: LabelledImages, extra_real: list[Path]) -> LabelledImages:
    """``images`` followed by every image of the ``extra_real`` folders, labelled real."""
    extra = [p for folder in extra_real for p in list_images(folder)]
    return LabelledImages(images.paths + extra, images.labels + [REAL] * len(extra))


@dataclass(frozen=True)
class CropSet:
    """Chosen crops of one or more residual stores, read a chunk at a time.

    At 1024 + 1024 images one class's residuals are 3 GiB in fp32: copying them
    (subset, class split, cast, standardize) ran the trainer out of 24 GiB, so the
    trainer reads crops through this view instead.
    """

    parts: tuple[tuple[torch.Tensor, torch.Tensor], ...]  # (residuals [M, 3, S, S], chosen crop indices)

    @classmethod
    def of(cls, residuals: torch.Tensor) -> CropSet:
        return cls(((residuals, torch.arange(residuals.shape[0])),))

    def __len__(self) -> int:
        return sum(len(index) for _, index in self.parts)

    @property
    def crop_shape(self) -> torch.Size:
        return self.parts[0][0].shape[1:]

    def take(self, positions: torch.Tensor) -> torch.Tensor:
        """The crops at ``positions`` (in ``range(len(self))``) as float32, grouped by store."""
        out, offset = [], 0
        for store, index in self.parts:
            mine = positions[(positions >= offset) & (positions < offset + len(index))] - offset
            out.append(store[index[mine.to(index.device)]].float())
            offset += len(index)
        return torch.cat(out)

    def chunks(self, size: int) -> Iterator[torch.Tensor]:
        """Every crop once, ``size`` at a time, as float32."""
        for store, index in self.parts:
            for start in range(0, len(index), size):
                yield store[index[start : start + size]].float()


@dataclass
class ResidualCache:
    """All crops' residuals of a set of images, with each crop's image index and label."""

    residuals: torch.Tensor  # [M, 3, S, S]
    image_of_crop: torch.Tensor  # [M] long
    labels: torch.Tensor  # [N] per image
    paths: list[Path]
    # Perturbed copies of the same images (e.g. JPEG re-saved), used for training only.
    augmented: ResidualCache | None = None
    # The real images as users also upload them (upscaled, re-saved), for fitting the null only.
    real_copies: RealCopies | None = None

    def crops_of(self, images: list[int]) -> torch.Tensor:
        """Crop indices belonging to the given images."""
        wanted = torch.zeros(len(self.labels), dtype=torch.bool)
        wanted[images] = True
        return torch.nonzero(wanted[self.image_of_crop]).flatten()

    def subset(self, images: list[int]) -> ResidualCache:
        crop_idx = self.crops_of(images)
        remap = torch.full((len(self.labels),), -1, dtype=torch.long)
        remap[images] = torch.arange(len(images))
        return ResidualCache(
            residuals=self.residuals[crop_idx], image_of_crop=remap[self.image_of_crop[crop_idx]],
            labels=self.labels[images], paths=[self.paths[i] for i in images],
            augmented=self.augmented.subset(images) if self.augmented is not None else None,
        )

    def class_crops(self, images: list[int], label: int) -> CropSet:
        """The crops of ``images`` that carry ``label``, augmented copies included, without copying them."""
        parts = []
        for part in [self] + ([self.augmented] if self.augmented is not None else []):
            index = part.crops_of(images)
            parts.append((part.residuals, index[part.labels[part.image_of_crop[index]] == label]))
        return CropSet(tuple(parts))


def build_cache(images: LabelledImages, extractor: ResidualExtractor, crop: int, max_crops: int,
                align: int, device: torch.device, transform=None, progress: bool = True,
                skip_small: bool = False) -> ResidualCache:
    """Decode, crop and extract every image once. ``transform`` perturbs decoded images (robustness runs).

    ``skip_small``: an image that is (or was cropped) smaller than a crop is left out of the
    cache instead of failing it (copies for the null model, where fewer is fine).
    """
    # One store, filled in place: a list of pieces joined at the end would need twice the memory.
    dtype = torch.float16 if len(images.paths) > 512 else torch.float32
    store: torch.Tensor | None = None
    owners = torch.empty(len(images.paths) * max_crops, dtype=torch.long)
    filled = 0
    kept: list[int] = []
    extractor = extractor.to(device).eval()
    for index, path in enumerate(tqdm(images.paths, desc="residuals", unit="img", disable=not progress)):
        try:
            image = decode_image(path)
            if transform is not None:
                image = transform(image)
            crops, _ = grid_crops(image, crop, max_crops, align)
        except ImageTooSmall as exc:
            if skip_small:
                continue
            raise DatasetError(f"{path}: {exc}") from exc
        except DifError as exc:
            raise DatasetError(f"{path}: {exc}") from exc
        res = extract_residuals(extractor, crops.to(device), residual_chunk(device))
        if store is None:
            # torch.empty leaves untouched pages uncommitted, so the unused tail costs nothing.
            store = torch.empty((len(images.paths) * max_crops, *res.shape[1:]), dtype=dtype, device=res.device)
        store[filled : filled + res.shape[0]] = res
        owners[filled : filled + res.shape[0]] = len(kept)
        kept.append(index)
        filled += res.shape[0]
    if store is None:
        raise DatasetError("no images to extract residuals from")
    return ResidualCache(
        residuals=store[:filled], image_of_crop=owners[:filled].clone(),
        labels=torch.tensor([images.labels[i] for i in kept], dtype=torch.long),
        paths=[images.paths[i] for i in kept],
    )


def merge(caches: list[ResidualCache]) -> ResidualCache:
    """Crops of several caches of the *same* images (e.g. differently perturbed copies)."""
    first = caches[0]
    return ResidualCache(
        residuals=torch.cat([c.residuals for c in caches]),
        image_of_crop=torch.cat([c.image_of_crop for c in caches]),
        labels=first.labels, paths=first.paths,
    )


@dataclass
class RealCopies:
    """Resampled and re-saved copies of a cache's real images: ``cache`` image j is a copy of ``source[j]``."""

    cache: ResidualCache
    source: torch.Tensor  # [J] long: image index in the original cache

    def of(self, images: list[int]) -> list[int]:
        """Copy indices of the given original images."""
        wanted = torch.zeros(int(self.source.max()) + 1 if len(self.source) else 0, dtype=torch.bool)
        chosen = [i for i in images if i < len(wanted)]
        wanted[chosen] = True
        return torch.nonzero(wanted[self.source]).flatten().tolist() if len(wanted) else []


def build_real_copies(images: LabelledImages, extractor: ResidualExtractor, crop: int, max_crops: int,
                      align: int, device: torch.device, transforms: list, progress: bool = True
                      ) -> RealCopies | None:
    """Residuals of every real image under every transform, each copy tagged with its original.

    A copy smaller than a crop (a 256-pixel photo cropped by a few pixels) is left out.
    """
    reals = [i for i, label in enumerate(images.labels) if label == REAL]
    paths = [images.paths[i] for i in reals]
    original = {path: i for path, i in zip(paths, reals, strict=True)}
    offset, parts, source = 0, [], []
    for t in transforms:
        try:
            part = build_cache(LabelledImages(paths, [REAL] * len(paths)), extractor, crop, max_crops, align, device,
                               t, progress, skip_small=True)
        except DatasetError:  # every copy too small
            continue
        parts.append(ResidualCache(part.residuals, part.image_of_crop + offset, part.labels, part.paths))
        source += [original[p] for p in part.paths]
        offset += len(part.labels)
    if not parts:
        return None
    joined = ResidualCache(residuals=torch.cat([p.residuals for p in parts]),
                           image_of_crop=torch.cat([p.image_of_crop for p in parts]),
                           labels=torch.cat([p.labels for p in parts]), paths=[q for p in parts for q in p.paths])
    return RealCopies(joined, torch.tensor(source, dtype=torch.long))


def build_training_cache(images: LabelledImages, extractor: ResidualExtractor, crop: int, max_crops: int,
                         align: int, device: torch.device, augment: list | None = None,
                         progress: bool = True, null_transforms: list | None = None) -> ResidualCache:
    """The clean cache, with the residuals of each ``augment`` transform attached for training and the
    real images' ``null_transforms`` copies attached for the null model."""
    cache = build_cache(images, extractor, crop, max_crops, align, device, progress=progress)
    if augment:
        cache.augmented = merge([build_cache(images, extractor, crop, max_crops, align, device, t, progress)
                                 for t in augment])
    if null_transforms:
        cache.real_copies = build_real_copies(images, extractor, crop, max_crops, align, device, null_transforms,
                                              progress)
    return cache
