"""MATLAB-compatible bicubic imresize: kernel facts, size rules, numpy/torch agreement, and the
strongest check there is: it recreates the MATLAB-made Set5/Set14 LR files bit for bit."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch

from img2img.io.resize import contributions, cubic, imresize

DATA = Path(os.environ.get("IMG2IMG_DATA", Path(__file__).resolve().parents[1].parent / "shared" / "data"))


def test_cubic_kernel_interpolates_and_has_support_two() -> None:
    x = np.array([0.0, 1.0, 2.0, -1.0, 2.5, -3.0])
    np.testing.assert_array_equal(cubic(x), [1.0, 0.0, 0.0, 0.0, 0.0, 0.0])
    # a = -0.5 values worked out from Keys' formula.
    np.testing.assert_allclose(cubic(np.array([0.5, 1.5, 0.25, 1.75])), [0.5625, -0.0625, 0.8671875, -0.0234375])


@pytest.mark.parametrize("scale", [0.25, 1 / 3, 0.5, 0.7, 1.5, 2.0, 3.0, 4.0])
def test_weights_sum_to_one_and_indices_stay_inside(scale: float) -> None:
    n = 37
    idx, w = contributions(n, int(np.ceil(n * scale)), scale)
    np.testing.assert_allclose(w.sum(axis=1), 1.0, atol=1e-12)
    assert idx.min() >= 0 and idx.max() < n


def test_upscale_first_pixel_matches_hand_computation() -> None:
    # x2 of the row 1 2 3 4: output 1 sits at input coordinate 0.75, taps at -1 0 1 2 (1-based)
    # with weights -0.0234375, 0.2265625, 0.8671875, -0.0703125. Replicate border: taps -1, 0 -> 1.
    row = np.array([[1.0, 2.0, 3.0, 4.0]])
    out = imresize(row, output_size=(1, 8))
    first = -0.0234375 * 1 + 0.2265625 * 1 + 0.8671875 * 1 - 0.0703125 * 2
    assert out[0, 0] == pytest.approx(first, abs=1e-12)
    assert out[0, -1] == pytest.approx(5.0 - first, abs=1e-12)  # mirror image of the same sum
    sym = imresize(row, output_size=(1, 8), border="symmetric")  # taps -1, 0 -> 2, 1
    assert sym[0, 0] == pytest.approx(-0.0234375 * 2 + 0.2265625 + 0.8671875 - 0.0703125 * 2, abs=1e-12)


@pytest.mark.parametrize("scale", [0.25, 0.3, 0.5, 1.7, 2.0, 4.0])
@pytest.mark.parametrize("border", ["replicate", "symmetric"])
def test_constant_image_stays_constant(scale: float, border: str) -> None:
    img = np.full((23, 19, 3), -7.25)  # any range: no clipping inside
    out = imresize(img, scale, border=border)
    assert out.shape == (int(np.ceil(23 * scale)), int(np.ceil(19 * scale)), 3)
    np.testing.assert_allclose(out, -7.25, atol=1e-12)


@pytest.mark.parametrize("scale", [2.0, 3.0, 4.0, 0.5, 0.25])
def test_linear_ramp_stays_linear_away_from_borders(scale: float) -> None:
    h, w = 40, 48
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    img = 3.0 * yy - 2.0 * xx + 5.0
    out = imresize(img, scale)
    oy, ox = np.mgrid[0 : out.shape[0], 0 : out.shape[1]].astype(np.float64)
    # Output pixel i (0-based) sits at input coordinate (i + 0.5) / scale - 0.5.
    expect = 3.0 * ((oy + 0.5) / scale - 0.5) - 2.0 * ((ox + 0.5) / scale - 0.5) + 5.0
    m = int(np.ceil(3 * max(scale, 1 / scale)))  # beyond the kernel's reach of the border
    np.testing.assert_allclose(out[m:-m, m:-m], expect[m:-m, m:-m], atol=1e-9)
    assert not np.allclose(out[0, 0], expect[0, 0], atol=1e-3)  # the border really is handled differently


def test_size_rules_and_bad_arguments() -> None:
    img = np.zeros((10, 7))
    assert imresize(img, 0.5).shape == (5, 4)  # ceil, as MATLAB
    assert imresize(img, output_size=(3, 20)).shape == (3, 20)
    assert imresize(img, (2.0, 0.5)).shape == (20, 4)
    with pytest.raises(ValueError, match="either scale or output_size"):
        imresize(img, 2.0, output_size=(4, 4))
    with pytest.raises(ValueError, match="positive"):
        imresize(img, -1.0)
    with pytest.raises(ValueError, match="HxW"):
        imresize(np.zeros((2, 2, 2, 2)), 2.0)
    with pytest.raises(ValueError, match="border"):
        imresize(img, 2.0, border="wrap")


def test_dtype_kept_and_no_clipping() -> None:
    img = np.zeros((16, 16), np.float32)
    img[8:, :] = 1.0
    out = imresize(img, 4.0)
    assert out.dtype == np.float32
    assert out.min() < 0 and out.max() > 1  # cubic overshoot survives: callers decide on clipping


def test_uint8_rounds_like_matlab() -> None:
    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, (32, 24, 3), dtype=np.uint8)
    out = imresize(img, 0.5)
    assert out.dtype == np.uint8 and out.shape == (16, 12, 3)
    # Rounded after each axis (rows first): differs from a float pass rounded once, by at most 1.
    once = np.floor(np.clip(imresize(img.astype(np.float64), 0.5), 0, 255) + 0.5)
    assert np.abs(out.astype(int) - once).max() <= 1


@pytest.mark.parametrize("scale", [0.25, 0.5, 3.0])
def test_torch_batch_matches_numpy(scale: float) -> None:
    rng = np.random.default_rng(1)
    imgs = rng.random((2, 20, 18, 3))
    x = torch.from_numpy(imgs).permute(0, 3, 1, 2).contiguous()  # NCHW float64
    out = imresize(x, scale)
    assert isinstance(out, torch.Tensor) and out.dtype == torch.float64
    for i in range(2):
        np.testing.assert_allclose(out[i].permute(1, 2, 0).numpy(), imresize(imgs[i], scale), atol=1e-12)
    small = imresize(x.float(), scale)
    assert small.dtype == torch.float32
    with pytest.raises(ValueError, match="floating-point"):
        imresize(torch.zeros(1, 1, 4, 4, dtype=torch.uint8), 2.0)


def _lr_pairs() -> list[tuple[Path, Path, int]]:
    out = []
    for bench in ("Set5", "Set14"):
        for s in (2, 3, 4):
            for hr in sorted((DATA / "sr" / bench / f"image_SRF_{s}").glob("*_HR.png")):
                out.append((hr, hr.with_name(hr.name.replace("_HR", "_LR")), s))
    return out


@pytest.mark.slow
def test_recreates_matlab_made_benchmark_lr_files_exactly() -> None:
    pairs = _lr_pairs()
    if not pairs:
        pytest.skip(reason=f"Set5/Set14 not found under {DATA / 'sr'} (set IMG2IMG_DATA)")
    from PIL import Image

    assert len(pairs) == 57  # Set5 + Set14 at x2, x3, x4
    for hr_path, lr_path, s in pairs:
        hr = np.asarray(Image.open(hr_path))
        lr = np.asarray(Image.open(lr_path))
        ours = imresize(hr, 1.0 / s)
        assert ours.shape == lr.shape, hr_path.name
        diff = np.abs(ours.astype(int) - lr)
        assert diff.max() == 0, f"{hr_path.parent.name}/{hr_path.name}: {np.count_nonzero(diff)} pixels differ"
    # Mirrored borders (newer MATLAB releases) would not have made these files: only the border differs.
    hr = np.asarray(Image.open(pairs[-1][0]))
    lr = np.asarray(Image.open(pairs[-1][1])).astype(int)
    sym = imresize(hr, 0.25, border="symmetric").astype(int)
    assert np.array_equal(sym[2:-2, 2:-2], lr[2:-2, 2:-2]) and not np.array_equal(sym, lr)
