import io

import numpy as np
import pytest
import torch
from PIL import Image

from dif.errors import CorruptImage, ImageTooLarge, ImageTooSmall, UnsupportedImage
from dif.images import crop_offsets, decode_image, grid_crops


def encode(image: Image.Image, fmt: str = "PNG") -> bytes:
    buf = io.BytesIO()
    image.save(buf, format=fmt)
    return buf.getvalue()


def test_decodes_rgb_png_to_unit_range_chw():
    arr = np.zeros((5, 7, 3), dtype=np.uint8)
    arr[1, 2] = (255, 128, 0)
    t = decode_image(encode(Image.fromarray(arr)))
    assert t.shape == (3, 5, 7) and t.dtype == torch.float32
    assert torch.allclose(t[:, 1, 2], torch.tensor([1.0, 128 / 255, 0.0]))


@pytest.mark.parametrize("mode", ["RGBA", "L", "P", "LA", "CMYK", "1"])
def test_other_modes_become_three_channels(mode):
    image = Image.new("RGB", (9, 4), (10, 200, 30)).convert(mode)
    fmt = "JPEG" if mode == "CMYK" else "PNG"
    t = decode_image(encode(image, fmt))
    assert t.shape == (3, 4, 9)
    assert float(t.min()) >= 0.0 and float(t.max()) <= 1.0


def test_sixteen_bit_keeps_precision():
    arr = np.full((4, 4), 40000, dtype=np.uint16)
    arr[0, 0] = 40001
    t = decode_image(encode(Image.fromarray(arr)))
    assert t.shape == (3, 4, 4)
    assert t[0, 0, 0] > t[0, 1, 1]
    assert abs(float(t[0, 1, 1]) - 40000 / 65535) < 1e-6


def test_text_is_unsupported():
    with pytest.raises(UnsupportedImage):
        decode_image(b"<html>not an image</html>")


def test_truncated_png_is_corrupt():
    data = encode(Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)))
    with pytest.raises(CorruptImage):
        decode_image(data[: len(data) // 2])


def test_pixel_limit_checked_from_header():
    data = encode(Image.new("RGB", (300, 300)))
    with pytest.raises(ImageTooLarge):
        decode_image(data, max_pixels=300 * 299)


def test_offsets_are_aligned_centre_first():
    offsets = crop_offsets(600, 256, 3, 16)
    assert offsets[0] == (600 - 256) // 2 // 16 * 16
    assert all(o % 16 == 0 and 0 <= o <= 600 - 256 for o in offsets)
    assert len(set(offsets)) == len(offsets) == 3


def test_grid_crops_count_and_alignment():
    image = torch.rand(3, 520, 700)
    crops, positions = grid_crops(image, 256, 4, 16)
    assert crops.shape == (4, 3, 256, 256)
    assert len(set(positions)) == 4
    for (top, left), crop in zip(positions, crops, strict=True):
        assert top % 16 == 0 and left % 16 == 0
        assert torch.equal(crop, image[:, top : top + 256, left : left + 256])


def test_exact_size_image_gives_one_crop():
    crops, positions = grid_crops(torch.rand(3, 256, 256), 256, 4, 16)
    assert crops.shape[0] == 1 and positions == [(0, 0)]


def test_small_image_refused_with_size_in_message():
    with pytest.raises(ImageTooSmall, match="255x300"):
        grid_crops(torch.rand(3, 300, 255), 256, 1, 16)
