"""From cached residuals to a fingerprint with its null model, and from a fingerprint to p-values."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import torch

from dif.calibration import Calibration, fit
from dif.decision import DEFAULT_RATE, NullModel, backstopped, fit_null, fit_search_null, gated, p_values, widest
from dif.detection import Detection
from dif.scoring import CorrelationScorer
from training.config import AUTO, DEFAULT_FAMILY_SIZE, ESTIMATORS, Estimator, FitConfig
from training.data import FAKE, REAL, ResidualCache
from training.trainer import TrainConfig, train_fingerprint


def image_statistics(fingerprint: torch.Tensor, cache: ResidualCache, detection: Detection,
                     device: torch.device, names: tuple[str, ...], images: list[int] | None = None,
                     chunk: int = 64) -> list[torch.Tensor]:
    """``Scores`` features ``names`` of one fingerprint for ``images`` of ``cache``.

    The service's maths on cached residuals; images are scored ``chunk`` at a time, so only
    that many images' crops are ever copied.
    """
    chosen = list(range(len(cache.labels))) if images is None else images
    # The shift surface costs an inverse FFT per image: only when a window feature is asked for.
    window = detection.window if any(name.startswith("peak") or name == "grid_cosine" for name in names) else 0
    scorer = CorrelationScorer(fingerprint[None].to(device), max_shift=window,
                               background=detection.statistic == "zbg", lattice=detection.lattice)
    out = [torch.empty(len(chosen)) for _ in names]
    for start in range(0, len(chosen), chunk):
        part = cache.subset(chosen[start : start + chunk])
        count = len(part.labels)
        scores = scorer.score(part.residuals.to(device, torch.float32), part.image_of_crop.to(device), count)
        for column, name in zip(out, names, strict=True):
            column[start : start + count] = scores.feature(name)[:, 0].cpu()
    return out


def image_statistic(fingerprint: torch.Tensor, cache: ResidualCache, detection: Detection,
                    device: torch.device, images: list[int] | None = None) -> torch.Tensor:
    """The statistic decisions are taken on (``Detection.statistic``) for ``images`` of ``cache``."""
    return image_statistics(fingerprint, cache, detection, device, (detection.statistic,), images)[0]


@dataclass(frozen=True)
class Scored:
    """One fingerprint's decision quantities for a set of images."""

    p: torch.Tensor  # per-image p-values: what the rule decides on
    units: torch.Tensor  # the statistic in null units (sign x stat / scale): ranks images for AUC,
    # where a shift search's p-values all round to 1 in the bulk of the distribution

    def __getitem__(self, mask: torch.Tensor) -> Scored:
        return Scored(self.p[mask], self.units[mask])

    @staticmethod
    def cat(parts: list[Scored]) -> Scored:
        return Scored(torch.cat([s.p for s in parts]), torch.cat([s.units for s in parts]))


def _p(statistic: torch.Tensor, sign: float, scale: float, searched: int) -> torch.Tensor:
    def one(value: float) -> torch.Tensor:
        return torch.tensor([value], dtype=torch.float64)

    return p_values(statistic[:, None], one(sign), one(scale), one(searched))[:, 0]


def null_scored(statistic: torch.Tensor, null: NullModel, detection: Detection,
                backstop: torch.Tensor | None = None, cosine: torch.Tensor | None = None) -> Scored:
    """p-values of one fingerprint's statistic by ``dif.decision.p_values`` (with the shift-search
    backstop's ``peak_zbg`` where the detection has one, gated by ``cosine`` where the detection
    is gated), and its null units."""
    p = _p(statistic, null.sign, null.scale, detection.searched)
    if backstop is not None and detection.backstop:
        search = _p(backstop, null.sign, null.backstop_scale, detection.backstop_searched)
        if detection.gated:
            assert cosine is not None, "a gated search needs the images' grid_cosine"
            search = gated(search, cosine, torch.full_like(search, detection.min_cosine))
            p = gated(p, cosine, torch.full_like(p, detection.floor_cosine))
        p = backstopped(p, search, torch.ones_like(p, dtype=torch.bool))
    return Scored(p, statistic.double() * null.sign / null.scale)


def score_cache(fingerprint: torch.Tensor, null: NullModel, cache: ResidualCache, detection: Detection,
                device: torch.device, images: list[int] | None = None) -> Scored:
    columns = image_statistics(fingerprint, cache, detection, device, detection.decision_statistics, images)
    statistic, *backstop = columns  # the backstop's peak and grid_cosine, where the detection has them
    return null_scored(statistic, null, detection, *backstop)


def stratified_folds(labels: list[int] | torch.Tensor, folds: int, seed: int) -> list[list[int]]:
    """Image indices of each fold; each class is shuffled and dealt round-robin."""
    labels = torch.as_tensor(labels)
    gen = torch.Generator().manual_seed(seed)
    buckets: list[list[int]] = [[] for _ in range(folds)]
    for label in (REAL, FAKE):
        members = torch.nonzero(labels == label).flatten()
        members = members[torch.randperm(len(members), generator=gen)]
        for position, index in enumerate(members.tolist()):
            buckets[position % folds].append(index)
    return [sorted(b) for b in buckets]


def _train_on(cache: ResidualCache, images: list[int], train: TrainConfig, device: torch.device,
              progress: bool) -> torch.Tensor:
    return train_fingerprint(cache.class_crops(images, REAL), cache.class_crops(images, FAKE), train, device,
                             progress)


@dataclass(frozen=True)
class Fitted:
    fingerprint: torch.Tensor
    calibration: Calibration  # centres and spreads of the statistic (informational, for people and lineage)
    null: NullModel
    detection: Detection  # the chosen estimator's statistic
    estimator: dict[str, Any]  # which estimator, how it was chosen, every candidate's inner-CV figures


def candidates(config: FitConfig) -> list[tuple[str, FitConfig]]:
    """The (name, config) pairs inner cross-validation chooses among."""
    def applied(e: Estimator) -> FitConfig:
        return replace(config, train=replace(config.train, prior=e.prior, period=e.period),
                       detection=replace(config.detection, feature=e.feature, max_shift=0,
                                                 backstop_window=e.window,
                                                 lattice=e.period if e.prior == "lattice" else 0))

    if config.estimator == "flags":
        return [("flags", config)]
    if config.estimator == AUTO:
        return [(name, applied(e)) for name, e in ESTIMATORS.items()]
    if config.estimator not in ESTIMATORS:
        raise ValueError(f"estimator must be auto, flags or one of {', '.join(ESTIMATORS)}, not {config.estimator!r}")
    return [(config.estimator, applied(ESTIMATORS[config.estimator]))]


# Below this inner-CV TPR the first (plainest) candidate is kept: see fit_fingerprint.
WEAK_INNER_TPR = 0.5
# A lattice's zero-shift test counts only above this quantile of held-out photos' grid cosines
# (``_floor``): the photos that passed it in the false-positive bench had cosines of 0.25-0.32, at or
# below their collection's 95th percentile, while a generator's own fakes sit at 0.45 and up.
FLOOR_QUANTILE = 0.95


def group_null(groups: list[torch.Tensor]) -> NullModel:
    """``fit_null`` on each collection of held-out reals that has any, the widest kept."""
    return widest([fit_null(g) for g in groups if g.numel()])


def inner_passes(null: NullModel, fakes: torch.Tensor) -> torch.Tensor:
    """Which held-out statistics the service would call fake at the default per-generator threshold."""
    threshold = float(-torch.special.ndtri(torch.tensor(DEFAULT_RATE / DEFAULT_FAMILY_SIZE, dtype=torch.float64)))
    return fakes.double() / null.scale >= threshold


def inner_merit(null: NullModel, fakes: torch.Tensor) -> tuple[float, float]:
    """How well held-out statistics separate, as the service would decide: (TPR at the default
    per-generator threshold under the null fitted on the held-out reals, median fake in null units)."""
    return float(inner_passes(null, fakes).double().mean()), float((fakes.double() / null.scale).median())


def _deal(images: list[int], parts: int) -> list[list[int]]:
    """``images`` dealt round-robin into ``parts`` lists."""
    return [images[k::parts] for k in range(parts)]


InnerFit = tuple[list[list[int]], dict[TrainConfig, torch.Tensor]]  # held-out reals per collection, fits


def _copies_statistics(fingerprint: torch.Tensor, cache: ResidualCache, detection: Detection,
                       names: tuple[str, ...], device: torch.device, images: list[int]) -> list[list[torch.Tensor]]:
    """Per name, the statistic of the upscaled, re-saved and cropped copies of ``images`` (reals
    have copies, fakes none): ``[[column]]`` or ``[[]]`` per name."""
    if cache.real_copies is None or not (which := cache.real_copies.of(images)):
        return [[] for _ in names]
    return [[c] for c in image_statistics(fingerprint, cache.real_copies.cache, detection, device, names, which)]


def _copies_statistic(fingerprint: torch.Tensor, cache: ResidualCache, detection: Detection, name: str,
                      device: torch.device, images: list[int]) -> list[torch.Tensor]:
    """Statistic ``name`` of the copies of ``images``."""
    return _copies_statistics(fingerprint, cache, detection, (name,), device, images)[0]


def _statistics_with_copies(fingerprint: torch.Tensor, cache: ResidualCache, detection: Detection,
                            names: tuple[str, ...], device: torch.device, images: list[int]
                            ) -> list[list[torch.Tensor]]:
    """Per name, the statistic of ``images`` and of their copies (one window search for all names)."""
    if not images:
        return [[] for _ in names]
    own = image_statistics(fingerprint, cache, detection, device, names, images)
    copies = _copies_statistics(fingerprint, cache, detection, names, device, images)
    return [[column, *more] for column, more in zip(own, copies, strict=True)]


def _statistic_with_copies(fingerprint: torch.Tensor, cache: ResidualCache, detection: Detection, name: str,
                           device: torch.device, images: list[int]) -> list[torch.Tensor]:
    """Statistic ``name`` of ``images`` and of their copies."""
    return _statistics_with_copies(fingerprint, cache, detection, (name,), device, images)[0]


def _held_out_search(cache: ResidualCache, inner_fits: list[InnerFit], chosen: FitConfig, device: torch.device
                     ) -> dict[str, list[torch.Tensor]]:
    """Per collection, the backstop statistic (and a lattice's grid cosine) of every held-out real and
    its copies, each from a fingerprint that did not see it (only for the chosen estimator: the
    window search costs an inverse FFT each)."""
    detection = chosen.detection
    names = (detection.backstop_statistic, *(("grid_cosine",) if detection.lattice else ()))
    groups: dict[str, list[list[torch.Tensor]]] = {name: [[] for _ in inner_fits[0][0]] for name in names}
    for collections, trained in inner_fits:
        for k, held in enumerate(collections):
            columns = _statistics_with_copies(trained[chosen.train], cache, detection, names, device, held)
            for name, found in zip(names, columns, strict=True):
                groups[name][k] += found
    return {name: [torch.cat(g) for g in by_collection if g] for name, by_collection in groups.items()}


def fit_fingerprint(cache: ResidualCache, images: list[int], config: FitConfig, device: torch.device,
                    progress: bool = True, null_only: list[int] | None = None) -> Fitted:
    """Choose the estimator, train on ``images`` of the cache and fit the null model.

    With ``inner-cv`` every training image's statistic is measured with a fingerprint that
    did not see it (an inner k-fold), once per candidate estimator. The candidate whose held-out
    fakes pass the service's threshold most often (then: sit highest) wins, and its held-out
    reals widen the null where they spread more than N(0, 1). Training images themselves
    correlate with their own fingerprint and say nothing about unseen photos.

    ``null_only``: real photos of the cache that never train the fingerprint and only widen
    its null (a second photo collection: a null read from one collection alone was measured too
    narrow for another). Dealt over the inner folds, each is scored, with its copies, by one
    inner fingerprint, like a held-out training real.
    """
    options = candidates(config)
    labels = cache.labels[images]
    inner = min(config.inner_folds, int((labels == REAL).sum()), int((labels == FAKE).sum()))
    if config.calibration == "train" or inner < 2:
        name, chosen = options[0]
        fingerprint = _train_on(cache, images, chosen.train, device, progress)
        stats = image_statistic(fingerprint, cache, chosen.detection, device, images)
        # No held-out reals to measure the shift search's null on: zero shift only.
        return Fitted(fingerprint, fit(stats[labels == REAL], stats[labels == FAKE], "train"), NullModel(),
                      replace(chosen.detection, backstop_window=0),
                      {"name": name, "chosen_by": "given (no inner folds)"})
    held_out = {name: torch.empty(len(images)) for name, _ in options}
    copies: dict[str, list[torch.Tensor]] = {name: [] for name, _ in options}  # of the training reals
    outside: dict[str, list[torch.Tensor]] = {name: [] for name, _ in options}  # null_only photos, copies
    inner_fits: list[InnerFit] = []
    inner_held: list[list[int]] = []  # positions in ``images`` held out by each inner fold
    outsiders = _deal(list(null_only or []), inner)
    for held, extra in zip(stratified_folds(labels, inner, config.train.seed + 1), outsiders, strict=True):
        out = set(held)
        kept = [images[i] for i in range(len(images)) if i not in out]
        held_images = [images[i] for i in held]
        trained: dict[TrainConfig, torch.Tensor] = {}  # mean/z and mean/zbg share one fingerprint
        for name, option in options:
            if option.train not in trained:
                trained[option.train] = _train_on(cache, kept, option.train, device, progress=False)
            inner_fp = trained[option.train]
            statistic = option.detection.statistic
            held_out[name][held] = image_statistic(inner_fp, cache, option.detection, device, held_images)
            copies[name] += _copies_statistic(inner_fp, cache, option.detection, statistic, device, held_images)
            outside[name] += _statistic_with_copies(inner_fp, cache, option.detection, statistic, device, extra)
        held_reals = [images[i] for i in held if labels[i] == REAL]
        inner_fits.append(([held_reals, extra] if null_only else [held_reals], trained))
        inner_held.append(held)
    # One null per photo collection (the training reals; the null_only photos), the widest kept.
    nulls = {name: group_null([torch.cat([stats[labels == REAL], *copies[name]]), torch.cat(outside[name] or
                                                                                           [torch.empty(0)])])
             for name, stats in held_out.items()}
    merits = {name: inner_merit(nulls[name], stats[labels == FAKE]) for name, stats in held_out.items()}
    name = max(merits, key=lambda n: merits[n])  # first of equals: the list's order breaks ties
    if merits[name][0] < WEAK_INNER_TPR:
        # A fingerprint that misses most fakes anyway buys little from a structured estimator and
        # risks its null (z_bg meets upscaled photos' resampling traces): the plain one is kept.
        name = options[0][0]
    chosen = dict(options)[name]
    stats = held_out[name]
    fingerprint = _train_on(cache, images, chosen.train, device, progress)
    weak = merits[max(merits, key=lambda n: merits[n])][0] < WEAK_INNER_TPR
    chosen_by = f"inner-cv-{inner}" + (" (weak: plainest kept)" if weak else "") if len(options) > 1 else "given"
    estimator = {"name": name, "chosen_by": chosen_by,
                 "null_reals": nulls[name].n_reals,
                 "candidates": {n: {"tpr": round(m[0], 4), "median_fake": round(m[1], 3)} for n, m in merits.items()}}
    null = nulls[name]
    detection = chosen.detection
    if detection.backstop:
        searched = detection.backstop_searched
        held_out_search = _held_out_search(cache, inner_fits, chosen, device)
        scales = [fit_search_null(null, peaks, searched).search_scale
                  for peaks in held_out_search[detection.backstop_statistic]]
        null = replace(null, search_scale=max(s for s in scales if s is not None))
        if detection.lattice:
            detection = _gate(cache, images, inner_held, inner_fits, chosen, null, stats, device)
            estimator["min_cosine"] = round(detection.min_cosine, 4)
            if detection.gated:
                detection = _floor(detection, held_out_search["grid_cosine"])
                estimator["floor_cosine"] = round(detection.floor_cosine, 4)
    return Fitted(fingerprint, fit(stats[labels == REAL], stats[labels == FAKE], f"inner-cv-{inner}"),
                  null, detection, estimator)


def _floor(detection: Detection, photo_cosines: list[torch.Tensor]) -> Detection:
    """The zero-shift test's floor (``Detection.floored``): the ``FLOOR_QUANTILE`` of the held-out
    photos' grid cosines, in the collection where it is highest, never above the search's gate
    (which the generator's own held-out fakes reach)."""
    levels = [float(torch.quantile(c[torch.isfinite(c)].double(), FLOOR_QUANTILE))
              for c in photo_cosines if bool(torch.isfinite(c).any())]
    if not levels:
        return detection
    return replace(detection, floor_cosine=min(max(levels), detection.min_cosine))


def _gate(cache: ResidualCache, images: list[int], inner_held: list[list[int]], inner_fits: list[InnerFit],
          chosen: FitConfig, null: NullModel, held_out: torch.Tensor, device: torch.device) -> Detection:
    """The lattice's backstop gated at the least grid cosine of the held-out fakes that pass at zero
    shift (``Detection.gated``), each measured with the inner fingerprint that did not see it: a
    copy of such a fake moved off the grid keeps its cosine, another generator's trace does not.
    With no passing held-out fake (a lattice whose fakes inner CV cannot catch) there is no
    cosine to require, so the backstop is dropped rather than left ungated.
    """
    if null.sign < 0:  # fakes anti-correlate: there is no phase to find
        return replace(chosen.detection, backstop_window=0)
    labels = cache.labels[images]
    cosines: list[torch.Tensor] = []
    for held, (_, trained) in zip(inner_held, inner_fits, strict=True):
        fakes = [i for i in held if labels[i] == FAKE]
        passing = [images[i] for i, ok in zip(fakes, inner_passes(null, held_out[fakes]).tolist(), strict=True) if ok]
        if passing:
            cosines += image_statistics(trained[chosen.train], cache, chosen.detection, device, ("grid_cosine",),
                                        passing)
    found = torch.cat(cosines) if cosines else torch.empty(0)
    found = found[torch.isfinite(found)]
    if not found.numel():
        return replace(chosen.detection, backstop_window=0)
    return replace(chosen.detection, min_cosine=float(found.min().clamp(0.0, 1.0)))
