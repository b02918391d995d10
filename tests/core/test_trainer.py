import torch

from training.metrics import binary_report, roc_auc
from training.pipeline import stratified_folds
from training.trainer import TrainConfig, pairwise_margin_loss, train_fingerprint


def residuals(n, size=32, seed=0, pattern=None, strength=0.5):
    gen = torch.Generator().manual_seed(seed)
    out = torch.randn((n, 3, size, size), generator=gen)
    return out + strength * pattern if pattern is not None else out


def test_unet_prior_is_deterministic_under_seed():
    cfg = TrainConfig(prior="unet", steps=4, width=4, seed=7)
    real, fake = residuals(3), residuals(2, seed=1)
    a = train_fingerprint(real, fake, cfg, torch.device("cpu"), progress=False)
    b = train_fingerprint(real, fake, cfg, torch.device("cpu"), progress=False)
    assert a.shape == (3, 32, 32) and torch.equal(a, b)
    c = train_fingerprint(real, fake, TrainConfig(prior="unet", steps=4, width=4, seed=8), torch.device("cpu"),
                          progress=False)
    assert not torch.equal(a, c)


def test_unet_prior_learns_a_shared_pattern_with_unequal_odd_classes():
    pattern = torch.sign(torch.randn(3, 32, 32, generator=torch.Generator().manual_seed(5)))
    real, fake = residuals(7, seed=2), residuals(3, seed=3, pattern=pattern, strength=1.0)
    fp = train_fingerprint(real, fake, TrainConfig(prior="unet", steps=40, width=8, lr=3e-3, batch_per_class=5),
                           torch.device("cpu"), progress=False)
    held_fake = residuals(4, seed=9, pattern=pattern, strength=1.0)
    corr = torch.nn.functional.cosine_similarity(
        (held_fake - held_fake.mean()).flatten(1), (fp - fp.mean()).flatten()[None], dim=1)
    assert float(corr.mean()) > 0.05


def test_mean_prior_recovers_pattern_from_one_sample_each():
    pattern = torch.randn(3, 32, 32)
    fp = train_fingerprint(residuals(1, seed=4), residuals(1, seed=5, pattern=pattern, strength=3.0),
                           TrainConfig(prior="mean"), torch.device("cpu"), progress=False)
    assert torch.nn.functional.cosine_similarity(fp.flatten(), pattern.flatten(), dim=0) > 0.5


def test_training_needs_both_classes():
    import pytest

    with pytest.raises(ValueError, match="at least one real and one fake"):
        train_fingerprint(residuals(0), residuals(2), TrainConfig(), torch.device("cpu"), progress=False)


def test_pairwise_loss_zero_when_every_pair_separated():
    assert pairwise_margin_loss(torch.tensor([0.0, 0.1]), torch.tensor([0.2, 0.3]), 0.05) == 0
    assert pairwise_margin_loss(torch.tensor([0.3]), torch.tensor([0.0]), 0.01) > 0.3


def test_folds_partition_and_stratify():
    labels = [0] * 10 + [1] * 7
    folds = stratified_folds(labels, 5, seed=0)
    flat = sorted(i for f in folds for i in f)
    assert flat == list(range(17))
    for f in folds:
        assert 1 <= sum(labels[i] for i in f) <= 2


def test_metrics():
    scores, labels = torch.tensor([0.1, 0.4, 0.6, 0.9]), torch.tensor([0, 1, 0, 1])
    report = binary_report(scores, labels)
    assert report["accuracy"] == 0.5 and report["n_real"] == 2
    assert roc_auc(scores, labels) == 0.75


def test_null_only_photos_widen_the_null_and_never_train():
    """``null_only`` photos (a second collection, ``--null-reals``) are scored like held-out reals
    and can only widen the null; the fingerprint is the one trained without them."""
    from dataclasses import replace
    from pathlib import Path

    from training.config import FitConfig
    from training.data import ResidualCache
    from training.pipeline import fit_fingerprint

    gen = torch.Generator().manual_seed(7)
    pattern = torch.randn((3, 32, 32), generator=gen)
    real = torch.randn((12, 3, 32, 32), generator=gen)
    fake = torch.randn((12, 3, 32, 32), generator=gen) + 0.5 * pattern
    # A wilder collection: photos that happen to carry a little of the pattern (as a crop or a
    # re-save can make them), which the training reals never show.
    wild = torch.randn((12, 3, 32, 32), generator=gen) + 0.12 * pattern
    stack = torch.cat([real, fake, wild])
    labels = torch.tensor([0] * 12 + [1] * 12 + [0] * 12)
    cache = ResidualCache(stack, torch.arange(36), labels, [Path(f"{i}.png") for i in range(36)])
    config = replace(FitConfig(estimator="mean/z", null_variants=()), train=replace(FitConfig().train, deblock=0))
    cpu = torch.device("cpu")
    alone = fit_fingerprint(cache, list(range(24)), config, cpu, progress=False)
    widened = fit_fingerprint(cache, list(range(24)), config, cpu, progress=False, null_only=list(range(24, 36)))
    assert torch.equal(alone.fingerprint, widened.fingerprint)
    assert widened.null.n_reals == alone.null.n_reals + 12
    assert widened.null.scale > 1.5 * alone.null.scale, (alone.null, widened.null)
    # Fitted per collection, the widest kept: pooled with the 24 narrower training reals and
    # their inner-fold statistics, the wild photos' spread would have been diluted.
    from dif.decision import fit_null

    pooled = fit_null(torch.cat([torch.randn(400, generator=gen), 2.0 * torch.randn(100, generator=gen)]))
    from training.pipeline import group_null

    apart = group_null([torch.randn(400, generator=gen), 2.0 * torch.randn(100, generator=gen)])
    assert apart.scale > 1.8 > pooled.scale, (apart, pooled)
