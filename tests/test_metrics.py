"""PSNR/SSIM with the SR protocol: exact values on synthetic inputs, the MATLAB Y formula, border
cropping, and agreement with scikit-image's Gaussian SSIM on the valid region."""

from __future__ import annotations

import math

import numpy as np
import pytest

from img2img.eval.metrics import gaussian_window, psnr, rgb_to_y, ssim, ssim_map


def _rng_image(seed: int, shape=(48, 40, 3)) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, shape, dtype=np.uint8)


def test_rgb_to_y_matches_matlab_rgb2ycbcr_range() -> None:
    px = np.array([[[0, 0, 0], [255, 255, 255], [255, 0, 0], [0, 255, 0], [0, 0, 255]]], np.uint8)
    y = rgb_to_y(px)[0]
    np.testing.assert_allclose(y, [16.0, 235.0, 16 + 65.481, 16 + 128.553, 16 + 24.966], atol=1e-9)
    np.testing.assert_allclose(rgb_to_y(px.astype(np.float32) / 255), rgb_to_y(px), atol=1e-4)
    with pytest.raises(ValueError, match="HxWx3"):
        rgb_to_y(np.zeros((4, 4)))


def test_psnr_identical_is_inf_and_ssim_is_one() -> None:
    a = _rng_image(0)
    assert psnr(a, a.copy()) == math.inf
    assert ssim(a, a.copy()) == pytest.approx(1.0, abs=1e-12)
    assert ssim(a, a.copy(), y_channel=False) == pytest.approx(1.0, abs=1e-12)


@pytest.mark.parametrize("k", [1, 3, 10])
def test_psnr_of_uniform_error_follows_the_formula(k: int) -> None:
    a = np.full((20, 20), 100, np.uint8)
    b = a + np.uint8(k)
    assert psnr(a, b) == pytest.approx(10 * math.log10(255**2 / k**2), abs=1e-12)
    # float input in [0, 1] means the same thing as uint8
    assert psnr(a / 255.0, b / 255.0) == pytest.approx(psnr(a, b), abs=1e-9)
    # RGB on Y: a uniform grey shift of k moves Y by k * 219 / 255
    rgb_a, rgb_b = np.repeat(a[..., None], 3, 2), np.repeat(b[..., None], 3, 2)
    assert psnr(rgb_a, rgb_b) == pytest.approx(10 * math.log10(255**2 / (k * 219 / 255) ** 2), abs=1e-9)
    assert psnr(rgb_a, rgb_b, y_channel=False) == pytest.approx(psnr(a, b), abs=1e-12)


def test_crop_border_ignores_border_errors() -> None:
    a = _rng_image(1, (30, 30))
    b = a.copy()
    b[:4, :] = 0
    b[:, -4:] = 255
    assert psnr(a, b, crop_border=4) == math.inf
    assert psnr(a, b, crop_border=3) < 40
    assert ssim(a, b, crop_border=4) == pytest.approx(1.0, abs=1e-12)
    with pytest.raises(ValueError, match="leaves nothing"):
        psnr(a, b, crop_border=15)


def test_shape_and_dtype_errors() -> None:
    with pytest.raises(ValueError, match="differ in shape"):
        psnr(np.zeros((4, 4)), np.zeros((4, 5)))
    with pytest.raises(TypeError, match="uint8 or float"):
        psnr(np.zeros((4, 4), np.int32), np.zeros((4, 4), np.int32))
    with pytest.raises(ValueError, match="11x11"):
        ssim(np.zeros((12, 12)), np.zeros((12, 12)), crop_border=1)


def test_gaussian_window_is_matlab_fspecial() -> None:
    g = gaussian_window(11, 1.5)
    assert g.sum() == pytest.approx(1.0) and g.argmax() == 5
    assert g[0] / g[5] == pytest.approx(math.exp(-25 / 4.5))


def test_ssim_map_is_valid_region_only() -> None:
    a, b = _rng_image(2, (30, 25)).astype(np.float64), _rng_image(3, (30, 25)).astype(np.float64)
    assert ssim_map(a, b).shape == (20, 15)


@pytest.mark.parametrize("y_channel", [True, False])
def test_ssim_agrees_with_scikit_image_gaussian_ssim(y_channel: bool) -> None:
    metrics = pytest.importorskip("skimage.metrics")
    rng = np.random.default_rng(4)
    a = _rng_image(5, (64, 56, 3))
    b = np.clip(a.astype(int) + rng.integers(-90, 91, a.shape), 0, 255).astype(np.uint8)
    ours = ssim(a, b, y_channel=y_channel, crop_border=2)
    # scikit-image filters with reflective padding, then averages its map only after dropping the
    # (win - 1) / 2 = 5 border positions touched by padding - exactly our valid windows - so the
    # mean over its cropped map must equal ours. Feed it the same cropped (and Y) planes.
    planes = [rgb_to_y(a)[2:-2, 2:-2], rgb_to_y(b)[2:-2, 2:-2]] if y_channel else [
        a[2:-2, 2:-2].astype(np.float64), b[2:-2, 2:-2].astype(np.float64)]  # fmt: skip
    kw = dict(gaussian_weights=True, sigma=1.5, use_sample_covariance=False, data_range=255)
    if not y_channel:
        kw["channel_axis"] = 2
    ref = metrics.structural_similarity(planes[0], planes[1], **kw)
    assert ours == pytest.approx(ref, abs=1e-8)  # same maths, so far tighter than the 1e-4 asked
    assert 0.2 < ours < 0.99  # a real, non-trivial value


def test_ssim_detects_structure_not_just_brightness() -> None:
    a = _rng_image(6, (40, 40))
    brighter = np.clip(a.astype(int) + 5, 0, 255).astype(np.uint8)
    shuffled = np.random.default_rng(7).permutation(a.ravel()).reshape(a.shape)
    assert ssim(a, brighter) > 0.95
    assert ssim(a, shuffled) < 0.1
