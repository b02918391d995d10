"""Balanced accuracy and ROC AUC for a binary detector (label 1 = fake)."""

from __future__ import annotations

import math

import torch


def roc_auc(scores: torch.Tensor, labels: torch.Tensor) -> float:
    """Mann-Whitney estimate: probability that a random fake outscores a random real (ties count half)."""
    pos, neg = scores[labels == 1], scores[labels == 0]
    if pos.numel() == 0 or neg.numel() == 0:
        return float("nan")
    diff = pos[:, None] - neg[None, :]
    return float(((diff > 0).float() + 0.5 * (diff == 0).float()).mean())


def binary_report(scores: torch.Tensor, labels: torch.Tensor, threshold: float = 0.5) -> dict[str, float | int]:
    pred = scores >= threshold
    real, fake = labels == 0, labels == 1
    acc_real = float((~pred[real]).float().mean()) if real.any() else float("nan")
    acc_fake = float(pred[fake].float().mean()) if fake.any() else float("nan")
    return {
        "accuracy": (acc_real + acc_fake) / 2,
        "accuracy_real": acc_real,
        "accuracy_fake": acc_fake,
        "auc": roc_auc(scores, labels),
        "n_real": int(real.sum()),
        "n_fake": int(fake.sum()),
    }


def wilson(successes: int, trials: int, z: float = 1.96) -> list[float]:
    """95 % Wilson score interval of a proportion: honest at 0 or n successes out of few trials."""
    if trials <= 0:
        return [float("nan"), float("nan")]
    p = successes / trials
    centre = (p + z * z / (2 * trials)) / (1 + z * z / trials)
    half = z * math.sqrt(p * (1 - p) / trials + z * z / (4 * trials * trials)) / (1 + z * z / trials)
    return [round(max(0.0, centre - half), 4), round(min(1.0, centre + half), 4)]
