"""PSNR and SSIM with the protocol SR papers report: Y channel of MATLAB's `rgb2ycbcr` (BT.601 studio
swing), `scale` pixels cropped from each border, SSIM of Wang et al. 2004 (11x11 Gaussian window,
sigma 1.5, K1 = 0.01, K2 = 0.03) averaged over valid window positions. All maths in float64."""

from __future__ import annotations

import math

import numpy as np

# MATLAB rgb2ycbcr, luma row, for R, G, B in [0, 1] -> Y in [16, 235].
_Y_WEIGHTS = np.array([65.481, 128.553, 24.966], dtype=np.float64)
_Y_OFFSET = 16.0


def _to_255(img: np.ndarray) -> np.ndarray:
    """uint8 (0-255) or float in [0, 1] -> float64 on the 0-255 scale."""
    img = np.asarray(img)
    if img.dtype == np.uint8:
        return img.astype(np.float64)
    if np.issubdtype(img.dtype, np.integer) or img.dtype == np.bool_:
        raise TypeError(f"metrics take uint8 or float images in [0, 1], got {img.dtype}")
    return img.astype(np.float64) * 255.0


def rgb_to_y(img: np.ndarray) -> np.ndarray:
    """Luma of MATLAB's `rgb2ycbcr` as float64 on the 0-255 scale (16 for black, 235 for white).

    `img`: HxWx3 RGB, uint8 or float in [0, 1]. Not rounded (MATLAB rounds only for uint8 input;
    the difference is below 0.01 dB at the PSNRs SR reports).
    """
    x = _to_255(img)
    if x.ndim != 3 or x.shape[2] != 3:
        raise ValueError(f"rgb_to_y expects an HxWx3 image, got shape {x.shape}")
    return _Y_OFFSET + x @ (_Y_WEIGHTS / 255.0)


def _prepare(a: np.ndarray, b: np.ndarray, crop_border: int, y_channel: bool) -> tuple[np.ndarray, np.ndarray]:
    """Both images on the 0-255 scale as HxWxC float64, converted to Y if asked, borders cropped."""
    if a.shape != b.shape:
        raise ValueError(f"images differ in shape: {a.shape} vs {b.shape}")
    if a.ndim not in (2, 3):
        raise ValueError(f"expected HxW or HxWxC images, got shape {a.shape}")
    if a.ndim == 3 and a.shape[2] not in (1, 3):
        raise ValueError(f"expected 1 or 3 channels, got {a.shape[2]}")
    out = []
    for img in (a, b):
        if img.ndim == 3 and img.shape[2] == 3 and y_channel:
            x = rgb_to_y(img)[..., None]
        else:
            # A grey image is already luminance: benchmark scripts use it as is, not via rgb2ycbcr.
            x = _to_255(img)
            x = x[..., None] if x.ndim == 2 else x
        out.append(x)
    c = int(crop_border)
    if c < 0:
        raise ValueError(f"crop_border must be >= 0, got {crop_border}")
    if c:
        if 2 * c >= a.shape[0] or 2 * c >= a.shape[1]:
            raise ValueError(f"crop_border {c} leaves nothing of a {a.shape[0]}x{a.shape[1]} image")
        out = [x[c:-c, c:-c] for x in out]
    return out[0], out[1]


def psnr(
    a: np.ndarray, b: np.ndarray, *, crop_border: int = 0, y_channel: bool = True, data_range: float = 255
) -> float:
    """Peak signal-to-noise ratio in dB (inf for identical images).

    `a`, `b`: HxW, HxWx1 or HxWx3 images, uint8 or float in [0, 1] (converted to the 0-255 scale, so
    `data_range` is the peak on that scale). RGB images are compared on Y when `y_channel`.
    """
    x, y = _prepare(a, b, crop_border, y_channel)
    mse = float(np.mean((x - y) ** 2))
    if mse == 0:
        return math.inf
    return 10.0 * math.log10(data_range**2 / mse)


def gaussian_window(size: int = 11, sigma: float = 1.5) -> np.ndarray:
    """Normalised 1-D Gaussian; its outer product is MATLAB's `fspecial('gaussian', size, sigma)`."""
    r = (size - 1) / 2.0
    x = np.arange(size, dtype=np.float64) - r
    g = np.exp(-(x * x) / (2.0 * sigma * sigma))
    return g / g.sum()


def _filter_valid(img: np.ndarray, g: np.ndarray) -> np.ndarray:
    """Separable correlation of an HxW image with g (x) g, 'valid' positions only (no padding)."""
    win = np.lib.stride_tricks.sliding_window_view(img, g.size, axis=0)
    tmp = win @ g
    win = np.lib.stride_tricks.sliding_window_view(tmp, g.size, axis=1)
    return win @ g


def ssim_map(x: np.ndarray, y: np.ndarray, *, data_range: float = 255, window: int = 11, sigma: float = 1.5):
    """SSIM index at every valid window position of two single-channel float64 images."""
    g = gaussian_window(window, sigma)
    c1 = (0.01 * data_range) ** 2
    c2 = (0.03 * data_range) ** 2
    mu_x, mu_y = _filter_valid(x, g), _filter_valid(y, g)
    # Population (biased) moments, as in the reference implementation.
    sxx = _filter_valid(x * x, g) - mu_x * mu_x
    syy = _filter_valid(y * y, g) - mu_y * mu_y
    sxy = _filter_valid(x * y, g) - mu_x * mu_y
    num = (2 * mu_x * mu_y + c1) * (2 * sxy + c2)
    den = (mu_x * mu_x + mu_y * mu_y + c1) * (sxx + syy + c2)
    return num / den


def ssim(
    a: np.ndarray, b: np.ndarray, *, crop_border: int = 0, y_channel: bool = True, data_range: float = 255
) -> float:
    """Structural similarity (Wang et al. 2004), mean over valid 11x11 windows; 1.0 for identical images.

    Same inputs as `psnr`. Without `y_channel`, RGB SSIM is the mean of the per-channel values.
    """
    x, y = _prepare(a, b, crop_border, y_channel)
    if min(x.shape[0], x.shape[1]) < 11:
        raise ValueError(f"SSIM needs at least 11x11 pixels after cropping, got {x.shape[0]}x{x.shape[1]}")
    vals = [float(ssim_map(x[..., c], y[..., c], data_range=data_range).mean()) for c in range(x.shape[2])]
    return float(np.mean(vals))


def translation_metrics(out: np.ndarray, target: np.ndarray) -> dict[str, float]:
    """How close a translated image is to its ground truth (pix2pix's paired evaluation): L1 (mean
    absolute error on [0, 1]), PSNR and SSIM on RGB. Both HxWx3 in [0, 1]; quantised to 8 bits first,
    as saved images would be."""
    a, b = np.round(np.clip(out, 0, 1) * 255) / 255, np.round(np.clip(target, 0, 1) * 255) / 255
    return {"l1": float(np.abs(a - b).mean()), "psnr": psnr(a, b, y_channel=False), "ssim": ssim(a, b, y_channel=False)}
