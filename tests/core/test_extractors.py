import pytest
import torch

from dif.errors import ArtifactError
from dif.extractors import DEFAULT_EXTRACTOR, DnCNN, available, create, load_denoiser, save_denoiser


@pytest.mark.parametrize("key", ["laplacian@1", "signlap@1", "lapnorm@1", "boxhp5@1"])
def test_fixed_filters_remove_flat_and_linear_content(key):
    ext = create(key)
    ramp = torch.linspace(0, 1, 64)[None, None, None, :].expand(2, 3, 64, 64)
    res = ext(ramp)
    assert res.shape == ramp.shape
    assert res[..., 4:-4, 4:-4].abs().max() < 1e-3


@pytest.mark.parametrize("key", ["laplacian@1", "signlap@1", "lapnorm@1", "boxhp5@1"])
def test_fixed_filters_are_their_kernel_applied_per_channel_with_a_replicated_border(key):
    """The filters sum shifted copies of the image; they must be the depthwise convolution of the
    recorded kernel, and the sign residual must not move at all on 8-bit pixels."""
    from torch.nn import functional as F

    ext = create(key)
    kernel = ext.kernel
    pad = kernel.shape[-1] // 2
    eight_bit = torch.randint(0, 256, (2, 3, 37, 29), generator=torch.Generator().manual_seed(0)).float() / 255
    for image in (eight_bit, torch.rand(2, 3, 37, 29, generator=torch.Generator().manual_seed(1))):
        linear = F.conv2d(F.pad(image, (pad, pad, pad, pad), mode="replicate"), kernel, groups=3)
        if key == "laplacian@1" or key == "boxhp5@1":
            assert torch.allclose(ext(image), linear, atol=1e-6)
        elif key == "signlap@1" and image is eight_bit:
            assert torch.equal(ext(image), torch.sign(linear) * (linear.abs() > ext.dead_zone))
        elif key == "lapnorm@1":
            local = F.avg_pool2d(linear * linear, 7, 1, 3, count_include_pad=False)
            assert torch.allclose(ext(image), linear / (local.sqrt() + 1e-3), atol=1e-4)


def test_residual_keeps_high_frequency_pattern():
    checker = (torch.arange(32)[:, None] + torch.arange(32)[None, :]) % 2
    image = (0.5 + 0.1 * checker.float())[None, None].expand(1, 3, 32, 32)
    res = create("laplacian@1")(image)
    assert res[..., 2:-2, 2:-2].abs().mean() > 0.05


def test_sign_extractor_outputs_signs():
    res = create("signlap@1")(torch.rand(1, 3, 32, 32))
    assert set(res.unique().tolist()) <= {-1.0, 0.0, 1.0}


def test_default_is_registered_and_digest_is_stable():
    assert DEFAULT_EXTRACTOR in available()
    assert create(DEFAULT_EXTRACTOR).digest() == create(DEFAULT_EXTRACTOR).digest()
    assert create("laplacian@1").digest() != create("boxhp5@1").digest()


def test_unknown_key_lists_known_ones():
    with pytest.raises(ArtifactError, match="signlap@1"):
        create("magic@9")


def test_learned_extractor_needs_weights():
    with pytest.raises(ArtifactError, match="train-denoiser"):
        create("dncnn@1")


def test_denoiser_round_trip_and_tamper_detection(tmp_path):
    torch.manual_seed(0)
    model = DnCNN(depth=3, width=4).eval()
    save_denoiser(model, tmp_path / "d", {"note": "test"})
    back = create("dncnn@1", tmp_path / "d")
    x = torch.rand(1, 3, 16, 16)
    assert torch.allclose(back(x), model(x))
    meta = (tmp_path / "d" / "metadata.json").read_text().replace(model.digest(), "0" * 64)
    (tmp_path / "d" / "metadata.json").write_text(meta)
    with pytest.raises(ArtifactError, match="digest"):
        load_denoiser(tmp_path / "d")
