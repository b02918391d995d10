"""Detector precision and staging: bf16 only for learned extractors, results close to fp32."""

import pytest
import torch

from dif.artifact import Fingerprint
from dif.detector import Detector, compact, expand
from dif.extractors import DnCNN, create
from dif.scoring import pearson
from testkit.fingerprints import random_fingerprint


def fingerprints(extractor, count: int = 3) -> list[Fingerprint]:
    return [random_fingerprint(f"g{i}", i, extractor.describe()) for i in range(count)]


def image() -> torch.Tensor:
    return torch.rand((3, 512, 384), generator=torch.Generator().manual_seed(1))


def test_bf16_runs_a_learned_extractor_channels_last_and_stays_close_to_fp32() -> None:
    torch.manual_seed(0)
    model = DnCNN(depth=5, width=16).eval()
    reference = Detector(fingerprints(model), DnCNN(depth=5, width=16).eval(), "cpu")
    reference.extractor.load_state_dict(model.state_dict())
    low = Detector(fingerprints(model), model, "cpu", precision="bf16")
    assert low.low_precision
    assert low.extractor.body[0].weight.is_contiguous(memory_format=torch.channels_last)
    prepared = reference.prepare(image())
    full, groups = reference.residuals([prepared])
    half, half_groups = low.residuals([prepared])
    assert half.dtype == torch.float32 and torch.equal(groups, half_groups)
    # bf16 keeps ~3 significant digits: each crop's residual must still be the same pattern.
    assert pearson(full, half).diagonal().min() > 0.99


def test_fixed_filters_stay_fp32_when_bf16_is_asked_for() -> None:
    extractor = create("signlap@1")
    fp32 = Detector(fingerprints(extractor), extractor, "cpu")
    asked = Detector(fingerprints(extractor), create("signlap@1"), "cpu", precision="bf16")
    assert not asked.low_precision
    prepared = fp32.prepare(image())
    assert torch.equal(fp32.residuals([prepared])[0], asked.residuals([prepared])[0])


def test_8_bit_crops_are_queued_as_exact_uint8_and_others_stay_float(tmp_path) -> None:
    from PIL import Image

    eight_bit = torch.randint(0, 256, (300, 280, 3), dtype=torch.uint8, generator=torch.Generator().manual_seed(2))
    Image.fromarray(eight_bit.numpy()).save(tmp_path / "a.png")
    extractor = create("signlap@1")
    detector = Detector(fingerprints(extractor), extractor, "cpu")
    from dif.images import decode_image

    decoded = decode_image(tmp_path / "a.png")
    packed = detector.prepare(decoded)
    assert packed.crops.dtype == torch.uint8
    top, left = packed.positions[0]
    assert torch.equal(expand(packed.crops)[0], decoded[:, top : top + 256, left : left + 256])
    smooth = detector.prepare(image())  # not k/255 values: must not be rounded
    assert smooth.crops.dtype == torch.float32
    # A batch mixing both scores each image exactly as it would alone.
    together = detector.scores([packed, smooth]).correlation
    assert torch.allclose(together[0], detector.scores([packed]).correlation[0])
    assert torch.allclose(together[1], detector.scores([smooth]).correlation[0])
    assert compact(torch.full((1, 3, 4, 4), 0.5)).dtype == torch.float32  # 0.5 is not k/255


def test_a_cpu_batch_goes_through_in_steps_of_whole_images_and_scores_as_one() -> None:
    """Images of 4 and 1 crops: steps hold whole images, at most CPU_STREAM_CROPS crops unless one
    image has more, and the batch's scores are each image's alone."""
    from dif.detector import CPU_STREAM_CROPS

    extractor = create("signlap@1")
    detector = Detector(fingerprints(extractor), extractor, "cpu")
    big, small = detector.prepare(image()), detector.prepare(image()[:, :256, :256])
    batch = [big, small, big, big, small, small, small, big]
    steps = detector._steps(batch)
    assert [p for step in steps for p in step] == batch
    assert all(sum(p.crops.shape[0] for p in step) <= max(CPU_STREAM_CROPS, step[0].crops.shape[0]) for step in steps)
    assert len(steps) > 1
    together = detector.predict(batch)
    for verdict, prepared in zip(together.images, batch, strict=True):
        alone = detector.predict([prepared]).images[0]
        assert [g.z for g in verdict.generators] == pytest.approx([g.z for g in alone.generators], abs=1e-5)
    assert together.residual_s > 0 and together.scoring_s > 0


def test_unknown_precision_is_refused() -> None:
    extractor = create("signlap@1")
    with pytest.raises(ValueError, match="fp32, bf16"):
        Detector(fingerprints(extractor), extractor, "cpu", precision="fp16")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="pinned staging only exists on a GPU")
def test_pinned_staging_gives_the_same_scores_as_pageable_copies() -> None:
    extractor = create("signlap@1")
    pinned = Detector(fingerprints(extractor), extractor, "cuda")
    pageable = Detector(fingerprints(extractor), create("signlap@1"), "cuda", pin_memory=False)
    batches = [[pinned.prepare(image())] * n for n in (1, 3, 2)]  # grows, then reuses the buffer
    for batch in batches:
        assert torch.allclose(pinned.scores(batch).correlation, pageable.scores(batch).correlation)
