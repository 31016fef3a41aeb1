"""Super-resolution benchmark evaluation with the protocol SR papers report (SRCNN, VDSR, EDSR, ESRGAN):
MATLAB-bicubic LR, output quantised to 8 bits, PSNR/SSIM on Y with `scale` border pixels cropped.
Finds Set5/Set14-style pairs, `lr/` + `hr/` folders, or a plain HR folder (LR made on the fly)."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from img2img.errors import Img2ImgError
from img2img.eval.metrics import psnr, rgb_to_y, ssim
from img2img.io.resize import imresize

LAYOUTS = ("paired-files", "lr-hr-folders", "hr-only")
_EXTS = (".png", ".bmp", ".tif", ".tiff", ".jpg", ".jpeg", ".webp")
_LUMA = np.array([65.481, 128.553, 24.966]) / 219.0  # rgb2ycbcr luma rescaled to 0-255 (= rgb2gray)


class DatasetError(Img2ImgError):
    """An evaluation folder has no recognisable layout, or its LR/HR sizes disagree with the scale."""


@dataclass
class SRPair:
    """One benchmark image: its HR file and, unless LR is synthesised, its LR file."""

    name: str
    hr: Path
    lr: Path | None = None


@dataclass
class SRDataset:
    root: Path  # the folder the pairs came from (e.g. Set5/image_SRF_4)
    layout: str  # one of LAYOUTS
    scale: int
    pairs: list[SRPair]


def _images(folder: Path) -> list[Path]:
    from img2img.io.files import image_files

    return [p for p in image_files(folder) if p.suffix.lower() in _EXTS]


def _subdir(folder: Path, name: str) -> Path | None:
    from img2img.io.files import subfolder

    return subfolder(folder, name)


def _match_lr_hr(lr_dir: Path, hr_dir: Path, scale: int) -> list[SRPair]:
    """Pair by file stem; an LR stem may carry the DIV2K-style suffix `x{scale}` (0801x4 <-> 0801)."""
    hrs = {p.stem: p for p in _images(hr_dir)}
    pairs, orphans = [], []
    for lr in _images(lr_dir):
        stem = lr.stem
        hr = hrs.pop(stem, None)
        if hr is None and stem.lower().endswith(f"x{scale}"):
            stem = stem[: -len(f"x{scale}")]
            hr = hrs.pop(stem, None)
        if hr is None:
            orphans.append(lr.name)
        else:
            pairs.append(SRPair(stem, hr, lr))
    if orphans or hrs:
        raise DatasetError(
            f"{lr_dir.parent}: LR and HR files must match by name; no HR for {orphans[:5]}, "
            f"no LR for {sorted(p.name for p in hrs.values())[:5]}"
        )
    return pairs


def _match_suffixes(folder: Path) -> list[SRPair]:
    """Pair `<name>_LR.<ext>` with `<name>_HR.<ext>` in one folder (SelfExSR Set5/Set14 layout)."""
    files = _images(folder)
    lrs = {p.stem[:-3]: p for p in files if p.stem.upper().endswith("_LR")}
    hrs = {p.stem[:-3]: p for p in files if p.stem.upper().endswith("_HR")}
    if set(lrs) != set(hrs):
        raise DatasetError(
            f"{folder}: every *_HR image needs a *_LR image with the same name; unmatched: "
            f"{sorted(set(lrs) ^ set(hrs))[:5]}"
        )
    return [SRPair(name, hrs[name], lrs[name]) for name in sorted(hrs)]


def discover_sr_dataset(path: str | Path, scale: int) -> SRDataset:
    """Find the evaluation images under `path` for `scale`.

    Accepted layouts, tried in this order: a benchmark root holding `image_SRF_{scale}/` (Set5, Set14);
    `*_LR` / `*_HR` files side by side; `lr/` + `hr/` folders matched by file name; a plain folder of
    HR images (LR made with MATLAB bicubic). Raises DatasetError naming what was expected.
    """
    root = Path(path).expanduser()
    if not root.is_dir():
        raise DatasetError(f"{root}: not a folder; pass the folder holding the evaluation images")
    srf = [p for p in root.iterdir() if p.is_dir() and p.name.startswith("image_SRF_")]
    if srf:
        want = root / f"image_SRF_{scale}"
        if not want.is_dir():
            have = sorted(p.name.removeprefix("image_SRF_") for p in srf)
            raise DatasetError(f"{root} has no image_SRF_{scale}/ for x{scale}; scales present: {have}")
        root = want
    files = _images(root)
    if any(p.stem.upper().endswith(("_LR", "_HR")) for p in files):
        return SRDataset(root, "paired-files", scale, _match_suffixes(root))
    lr_dir, hr_dir = _subdir(root, "lr"), _subdir(root, "hr")
    if lr_dir and hr_dir:
        return SRDataset(root, "lr-hr-folders", scale, _match_lr_hr(lr_dir, hr_dir, scale))
    if hr_dir and not files:
        root, files = hr_dir, _images(hr_dir)
    if files:
        return SRDataset(root, "hr-only", scale, [SRPair(p.stem, p) for p in files])
    raise DatasetError(
        f"{root}: no evaluation images found. Expected *_LR/*_HR image pairs, lr/ + hr/ folders, "
        f"image_SRF_<scale>/ folders, or a folder of HR images ({' '.join(_EXTS)})"
    )


def _to_u8(img: np.ndarray) -> np.ndarray:
    # 8-bit quantisation as writing a PNG does: clip, then round half up.
    return np.floor(np.clip(img, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


def _read(path: Path) -> np.ndarray:
    from img2img.io.images import read_image

    img = read_image(path)
    rgb = img.rgb.astype(np.float64)
    # Snap 8-bit files back onto the exact k/255 grid that float32 decoding blurs by ~1e-8.
    return np.round(rgb * 255.0) / 255.0 if img.bit_depth == 8 else rgb


def load_pair(pair: SRPair, scale: int) -> tuple[np.ndarray, np.ndarray]:
    """LR and HR of one pair as float64 HxWxC in [0, 1] (C = 1 grey or 3 RGB), HR exactly scale x LR.

    HR is cropped at the bottom/right to a multiple of `scale` (MATLAB `modcrop`); a missing LR is
    made with MATLAB bicubic `imresize` of the 8-bit HR, rounded to 8 bits as a saved file would be.
    """
    hr = _read(pair.hr)
    if pair.lr is None:
        h, w = (hr.shape[0] // scale) * scale, (hr.shape[1] // scale) * scale
        if h == 0 or w == 0:
            raise DatasetError(f"{pair.hr}: {hr.shape[1]}x{hr.shape[0]} is smaller than the scale x{scale}")
        hr = hr[:h, :w]
        lr = imresize(_to_u8(hr), 1.0 / scale).astype(np.float64) / 255.0
        return lr, hr
    lr = _read(pair.lr)
    lh, lw = lr.shape[:2]
    if (hr.shape[0] // scale, hr.shape[1] // scale) != (lh, lw):
        raise DatasetError(
            f"{pair.name}: LR {lw}x{lh} times {scale} is {lw * scale}x{lh * scale}, but HR is "
            f"{hr.shape[1]}x{hr.shape[0]}; is the scale right (--scale)?"
        )
    if lr.shape[2] != hr.shape[2]:
        raise DatasetError(f"{pair.name}: LR has {lr.shape[2]} channel(s) but HR has {hr.shape[2]}")
    return lr, hr[: lh * scale, : lw * scale]


class Upscaler(Protocol):
    """What `evaluate_sr` runs: float HxWxC [0, 1] LR -> float HxWxC [0, 1], `scale` x larger."""

    name: str
    scale: int

    def __call__(self, lr: np.ndarray) -> np.ndarray: ...


class BicubicUpscaler:
    """The paper baseline: MATLAB bicubic `imresize` of the LR image."""

    def __init__(self, scale: int) -> None:
        self.scale = int(scale)
        self.name = "bicubic"
        self.description = "MATLAB bicubic imresize (Keys, a = -0.5) of the LR image, in floating point"

    def __call__(self, lr: np.ndarray) -> np.ndarray:
        return imresize(lr, float(self.scale))


class ModelUpscaler:
    """An `img2img.infer.model.Model`; grey inputs are replicated for RGB models, and a one-channel model is
    fed the Y channel (0-255 studio swing, divided by 255) and returns Y."""

    def __init__(self, model: Any) -> None:
        if getattr(model, "task", "upscale") != "upscale":
            raise Img2ImgError(f"{model.card.name} is a {model.task} model; eval sr needs an upscale model")
        self.model = model
        self.scale = int(model.scale)
        self.name = str(model.card.name)
        card = model.card
        self.description = f"{card.arch} x{card.scale} from {card.source or 'our weights'} ({model.precision}" + (
            ", x8 self-ensemble)" if model.ensemble else ")"
        )

    def __call__(self, lr: np.ndarray) -> np.ndarray:
        import torch

        c_in = int(self.model.in_channels)
        if c_in == 1 and lr.shape[2] == 3:
            lr = rgb_to_y(lr)[..., None] / 255.0
        elif c_in == 3 and lr.shape[2] == 1:
            lr = np.repeat(lr, 3, axis=2)
        elif c_in != lr.shape[2]:
            raise Img2ImgError(f"{self.name} takes {c_in}-channel images; cannot evaluate it here")
        x = torch.from_numpy(np.ascontiguousarray(lr.transpose(2, 0, 1), dtype=np.float32))[None]
        y = self.model.run_tensor(x)
        return y[0].permute(1, 2, 0).double().numpy()


def _metric_inputs(sr: np.ndarray, hr: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Bring SR output and HR into one colour space: both RGB (metrics take Y), or both luminance."""
    if hr.shape[2] == 1:  # grey ground truth: compare luminance, as benchmark scripts do
        return (sr[..., 0] if sr.shape[2] == 1 else sr @ _LUMA), hr[..., 0]
    if sr.shape[2] == 1:  # a Y-only model: its output is Y/255
        return sr[..., 0], rgb_to_y(hr) / 255.0
    return sr, hr


@dataclass
class ImageScore:
    name: str
    psnr: float
    ssim: float
    lr_size: tuple[int, int]  # (H, W)
    hr_size: tuple[int, int]


@dataclass
class SREvaluation:
    model: str
    scale: int
    data: str
    layout: str
    method: str = ""  # how the output is made (baseline or network)
    images: list[ImageScore] = field(default_factory=list)

    @property
    def mean_psnr(self) -> float:
        return float(np.mean([s.psnr for s in self.images])) if self.images else math.nan

    @property
    def mean_ssim(self) -> float:
        return float(np.mean([s.ssim for s in self.images])) if self.images else math.nan

    def protocol(self) -> dict[str, Any]:
        lr = (
            "made from the 8-bit HR (cropped to a multiple of the scale) by MATLAB bicubic imresize "
            "(edge-replicating border, rounded per axis; recreates Set5/Set14 LR files exactly)"
            if self.layout == "hr-only"
            else "read from the dataset (Set5/Set14 LR are MATLAB bicubic downscales)"
        )
        return {
            "method": self.method,
            "lr": lr,
            "output": "clipped to [0, 1] and rounded to 8 bits before the metrics",
            "color": "Y of MATLAB rgb2ycbcr (BT.601, 16-235) for RGB; grey images compared as luminance",
            "crop_border": self.scale,
            "psnr": "10 log10(255^2 / MSE) on the 0-255 scale",
            "ssim": "Wang et al. 2004: 11x11 Gaussian window, sigma 1.5, K1 0.01, K2 0.03, mean over "
            "valid windows (no padding), per image",
            "mean": "arithmetic mean of per-image values",
        }

    def to_dict(self) -> dict[str, Any]:
        def finite(v: float) -> float | None:  # JSON has no inf (identical images)
            return round(v, 6) if math.isfinite(v) else None

        images = [
            {**asdict(s), "psnr": finite(s.psnr), "ssim": finite(s.ssim)} for s in self.images
        ]  # fmt: skip
        return {
            "task": "sr",
            "model": self.model,
            "scale": self.scale,
            "data": self.data,
            "layout": self.layout,
            "count": len(self.images),
            "mean": {"psnr": finite(self.mean_psnr), "ssim": finite(self.mean_ssim)},
            "images": images,
            "protocol": self.protocol(),
        }


def evaluate_sr(
    upscaler: Upscaler,
    dataset: SRDataset,
    *,
    save_dir: Path | None = None,
    on_image: Callable[[ImageScore], None] | None = None,
) -> SREvaluation:
    """Run `upscaler` on every pair, score it, optionally save the 8-bit outputs as `<name>.png`."""
    from img2img.io.images import write_image

    s = dataset.scale
    if upscaler.scale != s:
        raise Img2ImgError(f"{upscaler.name} upscales x{upscaler.scale}, but the evaluation is x{s}")
    method = str(getattr(upscaler, "description", upscaler.name))
    result = SREvaluation(upscaler.name, s, str(dataset.root), dataset.layout, method)
    for pair in dataset.pairs:
        lr, hr = load_pair(pair, s)
        out = upscaler(lr)
        if out.shape[:2] != hr.shape[:2]:
            raise Img2ImgError(f"{pair.name}: output is {out.shape[1]}x{out.shape[0]}, expected HR size")
        sr = _to_u8(out).astype(np.float64) / 255.0
        if save_dir is not None:
            write_image(Path(save_dir) / f"{pair.name}.png", sr)
        a, b = _metric_inputs(sr, hr)
        score = ImageScore(
            pair.name,
            psnr(a, b, crop_border=s),
            ssim(a, b, crop_border=s),
            (int(lr.shape[0]), int(lr.shape[1])),
            (int(hr.shape[0]), int(hr.shape[1])),
        )
        result.images.append(score)
        if on_image is not None:
            on_image(score)
    return result
