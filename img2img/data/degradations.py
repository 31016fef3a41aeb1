"""Blind degradation for training real-world SR (Real-ESRGAN, Wang et al. 2021, Sec. 3.1): two rounds of
blur -> random resize -> noise -> JPEG, then a resize to HR/scale and a last JPEG in random order.
Gaussian kernels only (isotropic and anisotropic); all randomness comes from the caller's Generator."""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

from img2img.errors import ConfigError

_INTERP = {"area": cv2.INTER_AREA, "bilinear": cv2.INTER_LINEAR, "bicubic": cv2.INTER_CUBIC}
Range = tuple[float, float]


@dataclass
class DegradationConfig:
    """Ranges are sampled uniformly. Defaults follow Real-ESRGAN's x4 training setup."""

    kernel_sizes: tuple[int, ...] = (7, 9, 11, 13, 15, 17, 19, 21)  # odd blur kernel sizes
    aniso_prob: float = 0.3  # share of anisotropic (rotated, elliptical) Gaussian kernels
    resize_modes: tuple[str, ...] = ("area", "bilinear", "bicubic")
    # First round.
    blur_prob: float = 1.0
    blur_sigma: Range = (0.2, 3.0)  # Gaussian sigma in pixels, per axis
    resize_probs: tuple[float, float, float] = (0.2, 0.7, 0.1)  # up, down, keep
    resize_range: Range = (0.15, 1.5)  # size factor
    gaussian_noise_prob: float = 0.5  # else Poisson
    noise_sigma: Range = (1.0, 30.0)  # Gaussian noise std, in 8-bit levels
    poisson_scale: Range = (0.05, 3.0)
    gray_noise_prob: float = 0.4  # same noise in every channel
    jpeg_quality: Range = (30, 95)
    # Second round (resize factor relative to the final LR size).
    blur_prob2: float = 0.8
    blur_sigma2: Range = (0.2, 1.5)
    resize_probs2: tuple[float, float, float] = (0.3, 0.4, 0.3)
    resize_range2: Range = (0.3, 1.2)
    gaussian_noise_prob2: float = 0.5
    noise_sigma2: Range = (1.0, 25.0)
    poisson_scale2: Range = (0.05, 2.5)
    gray_noise_prob2: float = 0.4
    jpeg_quality2: Range = (30, 95)

    def __post_init__(self) -> None:
        for name in ("aniso_prob", "blur_prob", "gaussian_noise_prob", "gray_noise_prob", "blur_prob2"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ConfigError(f"degradation.{name} must be in [0, 1], got {getattr(self, name)}")
        for name in ("resize_probs", "resize_probs2"):
            p = getattr(self, name)
            if len(p) != 3 or min(p) < 0 or not math.isclose(sum(p), 1.0, abs_tol=1e-6):
                raise ConfigError(f"degradation.{name} must be 3 probabilities (up, down, keep) summing to 1")
        for name in ("blur_sigma", "resize_range", "noise_sigma", "poisson_scale", "jpeg_quality"):
            for key in (name, name + "2"):
                lo, hi = getattr(self, key)
                if not 0 < lo <= hi:
                    raise ConfigError(f"degradation.{key} must be (low, high) with 0 < low <= high")
        for key in ("jpeg_quality", "jpeg_quality2"):
            if getattr(self, key)[1] > 100:
                raise ConfigError(f"degradation.{key} must lie within 1..100")
        if not self.kernel_sizes or any(k < 3 or k % 2 == 0 for k in self.kernel_sizes):
            raise ConfigError(f"degradation.kernel_sizes must be odd sizes >= 3, got {self.kernel_sizes}")
        unknown = set(self.resize_modes) - set(_INTERP)
        if unknown or not self.resize_modes:
            raise ConfigError(f"degradation.resize_modes: unknown {sorted(unknown)}; use {list(_INTERP)}")


def gaussian_kernel(size: int, sigma_x: float, sigma_y: float, theta: float) -> np.ndarray:
    """Normalised size x size Gaussian with axis stds (sigma_x, sigma_y) rotated by theta radians."""
    c, s = math.cos(theta), math.sin(theta)
    rot = np.array([[c, -s], [s, c]])
    cov = rot @ np.diag([sigma_x**2, sigma_y**2]) @ rot.T
    r = np.arange(size) - (size - 1) / 2.0
    xy = np.stack(np.meshgrid(r, r, indexing="xy"), axis=-1)  # (y, x) grid of (x, y) offsets
    k = np.exp(-0.5 * np.einsum("...i,ij,...j->...", xy, np.linalg.inv(cov), xy))
    return (k / k.sum()).astype(np.float32)


def random_kernel(rng: np.random.Generator, sigma: Range, cfg: DegradationConfig) -> np.ndarray:
    size = int(rng.choice(cfg.kernel_sizes))
    sx = rng.uniform(*sigma)
    if rng.random() < cfg.aniso_prob:
        return gaussian_kernel(size, sx, rng.uniform(*sigma), rng.uniform(-math.pi, math.pi))
    return gaussian_kernel(size, sx, sx, 0.0)


def _blur(img: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    # Reflect-pad ourselves: the kernel may be wider than a heavily downsized image.
    p = kernel.shape[0] // 2
    padded = np.pad(img, ((p, p), (p, p), (0, 0)), mode="symmetric")
    out = cv2.filter2D(padded, -1, kernel, borderType=cv2.BORDER_CONSTANT)
    return out[p:-p, p:-p]


def _resize(img: np.ndarray, hw: tuple[int, int], rng: np.random.Generator, cfg: DegradationConfig) -> np.ndarray:
    mode = str(rng.choice(cfg.resize_modes))
    h, w = max(1, hw[0]), max(1, hw[1])
    out = cv2.resize(img, (w, h), interpolation=_INTERP[mode])
    return out if out.ndim == 3 else out[:, :, None]


def _noise(img: np.ndarray, rng: np.random.Generator, gauss_p: float, sigma: Range, poisson: Range, gray_p: float):
    gray = rng.random() < gray_p
    if rng.random() < gauss_p:
        std = rng.uniform(*sigma) / 255.0
        noise = rng.normal(0.0, std, size=img.shape[:2] + ((1,) if gray else (3,)))
    else:
        scale = rng.uniform(*poisson)
        # Shot noise at 8-bit photon counts; grey noise comes from the luma and is shared by channels.
        base = img @ np.array([0.299, 0.587, 0.114], dtype=img.dtype) if gray else img
        base = np.clip(base, 0.0, 1.0)
        noise = (rng.poisson(base * 255.0) / 255.0 - base) * scale
        noise = noise[:, :, None] if gray else noise
    return np.clip(img + noise.astype(np.float32), 0.0, 1.0)


def jpeg(img: np.ndarray, quality: int) -> np.ndarray:
    """Round-trip RGB float [0, 1] through an in-memory JPEG at `quality`."""
    u8 = np.clip(np.rint(img * 255.0), 0, 255).astype(np.uint8)
    ok, buf = cv2.imencode(".jpg", cv2.cvtColor(u8, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    if not ok:
        raise RuntimeError("OpenCV could not encode a JPEG")
    return cv2.cvtColor(cv2.imdecode(buf, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB).astype(np.float32) / 255.0


def _size_factor(rng: np.random.Generator, probs: tuple[float, float, float], rng_range: Range) -> float:
    kind = rng.choice(3, p=np.asarray(probs) / sum(probs))
    if kind == 0:
        return rng.uniform(1.0, max(1.0, rng_range[1]))
    if kind == 1:
        return rng.uniform(min(1.0, rng_range[0]), 1.0)
    return 1.0


def degrade(hr: np.ndarray, scale: int, rng: np.random.Generator, cfg: DegradationConfig | None = None) -> np.ndarray:
    """Synthesise a realistic LR image: float32 HxWx3 in [0, 1] -> (H/scale)x(W/scale)x3 in [0, 1],
    quantised to 8-bit levels. H and W must be multiples of `scale`."""
    cfg = cfg or DegradationConfig()
    if hr.ndim != 3 or hr.shape[2] != 3:
        raise ValueError(f"degrade expects an HxWx3 image, got shape {hr.shape}")
    h, w = hr.shape[:2]
    if scale < 1 or h % scale or w % scale:
        raise ValueError(f"image {h}x{w} is not a multiple of scale {scale}")
    out_hw = (h // scale, w // scale)
    img = np.clip(hr.astype(np.float32), 0.0, 1.0)
    # Round 1, at HR resolution.
    if rng.random() < cfg.blur_prob:
        img = _blur(img, random_kernel(rng, cfg.blur_sigma, cfg))
    f = _size_factor(rng, cfg.resize_probs, cfg.resize_range)
    img = _resize(img, (round(h * f), round(w * f)), rng, cfg)
    img = _noise(img, rng, cfg.gaussian_noise_prob, cfg.noise_sigma, cfg.poisson_scale, cfg.gray_noise_prob)
    img = jpeg(img, int(rng.integers(cfg.jpeg_quality[0], cfg.jpeg_quality[1] + 1)))
    # Round 2, around the final LR resolution.
    if rng.random() < cfg.blur_prob2:
        img = _blur(img, random_kernel(rng, cfg.blur_sigma2, cfg))
    f = _size_factor(rng, cfg.resize_probs2, cfg.resize_range2)
    img = _resize(img, (round(out_hw[0] * f), round(out_hw[1] * f)), rng, cfg)
    img = _noise(img, rng, cfg.gaussian_noise_prob2, cfg.noise_sigma2, cfg.poisson_scale2, cfg.gray_noise_prob2)
    # Final resize to the LR size and JPEG, in random order (resize-then-JPEG keeps block artefacts).
    q = int(rng.integers(cfg.jpeg_quality2[0], cfg.jpeg_quality2[1] + 1))
    if rng.random() < 0.5:
        img = jpeg(_resize(img, out_hw, rng, cfg), q)
    else:
        img = _resize(jpeg(img, q), out_hw, rng, cfg)
    return (np.clip(np.rint(img * 255.0), 0, 255) / 255.0).astype(np.float32)
