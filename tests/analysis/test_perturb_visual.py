"""The nine visual corruptions on real images: effect, size, mode, determinism, RNG hygiene."""

from __future__ import annotations

import random

import numpy as np
import pytest
from PIL import Image
from skimage import data

from vittle.analysis.perturb import apply
from vittle.analysis.perturb.visual import VISUAL_NAMES, corrupt, working_size


def _psnr(a: Image.Image, b: Image.Image) -> float:
    mse = np.mean((np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64)) ** 2)
    return float(10 * np.log10(255.0**2 / max(mse, 1e-12)))


@pytest.fixture(scope="module")
def photos() -> list[Image.Image]:
    return [Image.fromarray(load()).resize((96, 96), Image.Resampling.BILINEAR)
            for load in (data.astronaut, data.chelsea, data.coffee)]


def test_the_nine_paper_corruptions():
    assert VISUAL_NAMES == ("defocus_blur", "zoom_blur", "contrast", "brightness", "fog", "frost",
                            "gaussian_noise", "shot_noise", "speckle_noise")


@pytest.mark.parametrize("name", VISUAL_NAMES)
def test_changes_pixels_keeps_size_and_mode(photos, name):
    clean = photos[1]
    out = corrupt(clean, name, 3, seed=0)
    assert out.size == clean.size and out.mode == clean.mode
    difference = np.abs(np.asarray(out, dtype=np.int16) - np.asarray(clean, dtype=np.int16))
    assert difference.mean() > 2.0  # a visible change, not rounding


@pytest.mark.parametrize("name", VISUAL_NAMES)
def test_psnr_falls_with_severity(photos, name):
    mean_psnr = [np.mean([_psnr(p, corrupt(p, name, s, seed=0)) for p in photos]) for s in range(1, 6)]
    assert mean_psnr[0] > mean_psnr[2] > mean_psnr[4], mean_psnr
    assert mean_psnr[0] - mean_psnr[4] > 1.0, mean_psnr
    # ImageNet-C's fog and frost tables are not strictly monotone between severities 3
    # and 4 (frost 4 keeps less image but fog 4 decays faster): allow half a decibel.
    steps = np.diff(mean_psnr)
    assert np.all(steps < 0.5), mean_psnr


@pytest.mark.parametrize("name", VISUAL_NAMES)
def test_same_seed_same_output(photos, name):
    first = np.asarray(corrupt(photos[0], name, 2, seed=7))
    again = np.asarray(apply(f"{name}:2", image=photos[0], seed=7)[0])
    assert np.array_equal(first, again)


@pytest.mark.parametrize("name", ["gaussian_noise", "shot_noise", "speckle_noise", "fog"])
def test_different_seed_different_noise(photos, name):
    a = np.asarray(corrupt(photos[0], name, 3, seed=1), dtype=np.int16)
    b = np.asarray(corrupt(photos[0], name, 3, seed=2), dtype=np.int16)
    assert np.abs(a - b).mean() > 1.0


def test_global_rng_state_is_untouched(photos):
    random.seed(123)
    np.random.seed(123)
    expected = (random.random(), np.random.rand())
    random.seed(123)
    np.random.seed(123)
    for name in ("gaussian_noise", "frost", "fog"):
        corrupt(photos[2], name, 4, seed=5)
    assert (random.random(), np.random.rand()) == expected


def test_a_caller_s_memo_computes_a_corruption_once_and_hands_out_copies(photos):
    from vittle.memo import Memo

    memo = Memo(2)
    first = corrupt(photos[0], "zoom_blur", 1, seed=0, memo=memo)
    first.putpixel((0, 0), (1, 2, 3))
    second = corrupt(photos[0], "zoom_blur", 1, seed=0, memo=memo)
    assert (memo.hits, memo.misses) == (1, 1) and second.getpixel((0, 0)) != (1, 2, 3)
    assert np.array_equal(np.asarray(second), np.asarray(corrupt(photos[0], "zoom_blur", 1, seed=0)))  # no memo: the same result
    apply("zoom_blur:1", image=photos[0], seed=0, memo=memo)
    assert memo.hits == 2
    corrupt(photos[0], "zoom_blur", 1, seed=1, memo=memo)  # another seed is another corruption
    assert (memo.hits, memo.misses, len(memo)) == (2, 2, 2)


def _as_mode(rgb: Image.Image, mode: str) -> Image.Image:
    if mode == "I;16":
        return Image.fromarray(np.asarray(rgb.convert("L")).astype(np.uint16) * 257)
    if mode == "RGBA":
        image = rgb.convert("RGBA")
        image.putalpha(Image.linear_gradient("L").resize(rgb.size))
        return image
    return rgb.convert(mode)


@pytest.mark.parametrize("mode", ["RGBA", "LA", "P", "CMYK", "I;16", "L", "I", "F", "1"])
def test_other_modes_keep_mode_and_size(photos, mode):
    image = _as_mode(photos[1], mode)
    out = corrupt(image, "gaussian_noise", 3, seed=0)
    assert out.mode == image.mode and out.size == image.size
    assert not np.array_equal(np.asarray(out), np.asarray(image))
    if mode in ("RGBA", "LA"):  # alpha is set aside, not corrupted
        assert np.array_equal(np.asarray(out.getchannel("A")), np.asarray(image.getchannel("A")))


def test_sixteen_bit_keeps_its_range(photos):
    image = _as_mode(photos[0], "I;16")
    out = np.asarray(corrupt(image, "contrast", 1, seed=0)).astype(np.float64)
    assert out.max() > 255  # still 16-bit values, not 8-bit ones in a 16-bit image
    assert abs(out.mean() - np.asarray(image).mean()) < 0.1 * 65535


@pytest.mark.parametrize("size", [(1, 1), (5, 5), (31, 200)])
@pytest.mark.parametrize("name", VISUAL_NAMES)
def test_tiny_images_keep_their_size(size, name):
    image = Image.new("RGB", size, (120, 90, 60))
    assert corrupt(image, name, 5, seed=0).size == size


def test_large_image_fog_keeps_size_and_works_below_the_limit():
    assert working_size(1500, 1200, 1024) == (1024, 819)
    image = Image.fromarray(data.astronaut()).resize((1500, 1200))
    out = corrupt(image, "fog", 3, seed=0)
    assert out.size == (1500, 1200)
    assert _psnr(image, out) < 25


def test_bad_arguments_fail_with_the_valid_values(photos):
    with pytest.raises(ValueError, match="defocus_blur"):
        corrupt(photos[0], "glass_blur", 1)
    with pytest.raises(ValueError, match=r"\[1, 2, 3, 4, 5\]"):
        corrupt(photos[0], "frost", 6)
