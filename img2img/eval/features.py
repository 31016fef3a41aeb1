"""Inception features of image folders for the distribution metrics: the two preprocessing conventions in use
(pytorch-fid's bilinear resize of Heusel et al. 2017's port, clean-fid's PIL bicubic of Parmar et al. 2022),
streaming extraction with per-file failures, and an .npz cache keyed by extractor, preprocessing and file list."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from img2img.errors import ImageError, Img2ImgError
from img2img.eval.inception import (
    FID_WEIGHTS_FILE,
    FID_WEIGHTS_SHA256,
    INPUT_SIZE,
    FIDInceptionV3,
    load_fid_inception,
    random_inception,
)

EXTENSIONS = frozenset({".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff"})
PREPROCESSING = ("pytorch-fid", "clean-fid")
RANDOM_NOTE = "RANDOM WEIGHTS: for relative comparisons between sets only, not comparable with published numbers"
_CACHE_FORMAT = 1


def _rgb3(rgb: np.ndarray) -> np.ndarray:
    """HxWx3 float32 in [0, 1]; grey is repeated, alpha is ignored (both references drop it via PIL "RGB")."""
    rgb = np.asarray(rgb, np.float32)
    return np.repeat(rgb, 3, axis=2) if rgb.shape[2] == 1 else rgb


def preprocess_pytorch_fid(rgb: np.ndarray) -> torch.Tensor:
    """pytorch-fid: the [0, 1] image resized to 299x299 by `F.interpolate(mode="bilinear", align_corners=False)`
    (no antialiasing), then scaled to [-1, 1] as 2x - 1. Returns 3 x 299 x 299 float32. 8-bit images give exactly
    pytorch-fid's input; 16-bit ones keep their precision (its PIL "RGB" conversion would not)."""
    x = torch.from_numpy(np.ascontiguousarray(_rgb3(rgb).transpose(2, 0, 1)))[None]
    x = F.interpolate(x, size=(INPUT_SIZE, INPUT_SIZE), mode="bilinear", align_corners=False)
    return 2 * x[0] - 1


def preprocess_clean_fid(rgb: np.ndarray) -> torch.Tensor:
    """clean-fid ("clean" mode): the image as uint8, each channel resized to 299x299 by PIL bicubic in float
    ("F" mode, so not re-quantised), clipped to [0, 255], then (x - 128) / 128 as its TensorFlow-graph Inception
    does. Returns 3 x 299 x 299 float32."""
    u8 = np.clip(np.rint(_rgb3(rgb) * 255), 0, 255).astype(np.uint8)
    chans = [
        np.asarray(Image.fromarray(u8[:, :, c].astype(np.float32)).resize((INPUT_SIZE,) * 2, Image.Resampling.BICUBIC))
        for c in range(3)
    ]
    x = np.clip(np.stack(chans), 0, 255).astype(np.float32)
    return (torch.from_numpy(x) - 128) / 128


_PREPROCESS = {"pytorch-fid": preprocess_pytorch_fid, "clean-fid": preprocess_clean_fid}


@dataclass
class Extractor:
    """A feature network and what identifies it: `kind` "inception" (the FID weights) or "random"."""

    kind: str
    net: FIDInceptionV3
    fingerprint: str  # weights sha256, or the random seed and torch version; part of the cache key
    device: torch.device

    @property
    def label(self) -> str:
        if self.kind == "random":
            return f"random-inception ({self.fingerprint}; {RANDOM_NOTE})"
        return f"fid-inception ({FID_WEIGHTS_FILE})"

    @torch.inference_mode()
    def __call__(self, batch: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
        pool, logits = self.net(batch.to(self.device, torch.float32))
        return pool.float().cpu().numpy(), logits.float().cpu().numpy()


def make_extractor(
    kind: str = "inception", weights: str | Path | None = None, seed: int = 0, device: str | torch.device = "cpu"
) -> Extractor:
    """`kind="inception"` loads the FID weights file `weights` (sha256-checked); `kind="random"` builds the same
    network with random weights from `seed` (see `random_inception`)."""
    try:
        device = torch.device(device)
    except RuntimeError:
        raise Img2ImgError(f"unknown device {device!r}; use cpu, cuda or cuda:N") from None
    if kind == "inception":
        if weights is None:
            raise Img2ImgError("the inception extractor needs its weights file")
        net, fingerprint = load_fid_inception(weights), FID_WEIGHTS_SHA256
    elif kind == "random":
        torch_version = ".".join(torch.__version__.split(".")[:2])
        net, fingerprint = random_inception(seed), f"seed {seed}, torch {torch_version}"
    else:
        raise Img2ImgError(f"unknown feature extractor {kind!r}; use 'inception' or 'random'")
    return Extractor(kind=kind, net=net.to(device), fingerprint=fingerprint, device=device)


def list_images(folder: str | Path) -> list[Path]:
    """Image files directly inside `folder` (png, jpg, jpeg, webp, bmp, tif, tiff), sorted by name."""
    folder = Path(folder)
    if not folder.is_dir():
        raise Img2ImgError(f"{folder} is not a folder of images")
    from img2img.io.files import image_files

    return [p for p in image_files(folder) if p.suffix.lower() in EXTENSIONS]


@dataclass
class FeatureSet:
    """Features of the readable images of one folder, rows in `names` order."""

    names: list[str]
    pool: np.ndarray  # N x 2048 float32, the FID/KID/PR features
    logits: np.ndarray  # N x 1008 float32, bias-free logits (Inception Score input)
    failures: list[tuple[str, str]] = field(default_factory=list)  # (file name, reason), skipped
    cached: bool = False  # True when read from the cache instead of computed


def _cache_key(folder: Path, files: list[Path], extractor: Extractor, preprocess: str) -> str:
    listing = []
    for p in files:
        st = p.stat()
        listing.append([p.name, st.st_size, st.st_mtime_ns])
    ident = {"format": _CACHE_FORMAT, "extractor": [extractor.kind, extractor.fingerprint], "preprocess": preprocess}
    ident.update(folder=str(folder.resolve()), files=listing)
    return hashlib.sha256(json.dumps(ident, sort_keys=True).encode()).hexdigest()


def _load_cache(path: Path, key: str) -> FeatureSet | None:
    try:
        with np.load(path, allow_pickle=False) as z:
            if str(z["key"]) != key:
                return None
            fails = list(zip(z["failed_names"].tolist(), z["failed_reasons"].tolist(), strict=True))
            return FeatureSet(z["names"].tolist(), z["pool"], z["logits"], fails, cached=True)
    except (OSError, KeyError, ValueError):  # missing, truncated or foreign file: recompute
        return None


def _save_cache(path: Path, key: str, fs: FeatureSet, label: str, preprocess: str) -> None:
    from img2img.io.fileio import atomic_target

    with atomic_target(path) as tmp, open(tmp, "wb") as f:  # a killed run never leaves half a cache file
        np.savez(
            f, key=np.array(key), extractor=np.array(label), preprocess=np.array(preprocess),
            names=np.array(fs.names, dtype=str), pool=fs.pool, logits=fs.logits,
            failed_names=np.array([n for n, _ in fs.failures], dtype=str),
            failed_reasons=np.array([r for _, r in fs.failures], dtype=str),
        )  # fmt: skip


def _batches(files: list[Path], preprocess, batch_size: int, failures: list, bar) -> Iterator[tuple[list, list]]:
    """Decode and preprocess one file at a time, yielding batches; unreadable files go to `failures`."""
    from img2img.io.images import read_image

    names, tensors = [], []
    for p in files:
        try:
            tensors.append(preprocess(read_image(p, animated="first").rgb))
            names.append(p.name)
        except ImageError as e:
            failures.append((p.name, str(e)))
        bar.update(1)
        if len(tensors) == batch_size:
            yield names, tensors
            names, tensors = [], []
    if tensors:
        yield names, tensors


def extract_folder(
    folder: str | Path,
    extractor: Extractor,
    preprocess: str = "pytorch-fid",
    batch_size: int = 32,
    cache_dir: str | Path | None = None,
    progress: bool = False,
) -> FeatureSet:
    """Features of every image in `folder`, `batch_size` images in memory at a time. Files that fail to decode
    are listed in `failures` and skipped. With `cache_dir`, results are stored as `features-<key>.npz` and reused
    while the extractor, the preprocessing and the file list (names, sizes, mtimes) are unchanged."""
    if preprocess not in _PREPROCESS:
        raise Img2ImgError(f"unknown preprocessing {preprocess!r}; use one of {', '.join(PREPROCESSING)}")
    if batch_size < 1:
        raise Img2ImgError(f"--batch-size must be at least 1, not {batch_size}")
    folder = Path(folder)
    files = list_images(folder)
    if not files:
        raise Img2ImgError(f"{folder} holds no images ({', '.join(sorted(EXTENSIONS))})")
    cache_path, key = None, ""
    if cache_dir is not None:
        key = _cache_key(folder, files, extractor, preprocess)
        cache_path = Path(cache_dir) / f"features-{key[:24]}.npz"
        hit = _load_cache(cache_path, key)
        if hit is not None:
            return hit
    from tqdm import tqdm

    names, pools, logits, failures = [], [], [], []
    bar = tqdm(total=len(files), unit="img", desc=folder.name, disable=not progress, leave=False)
    for batch_names, tensors in _batches(files, _PREPROCESS[preprocess], batch_size, failures, bar):
        p, lg = extractor(torch.stack(tensors))
        names += batch_names
        pools.append(p)
        logits.append(lg)
    bar.close()
    if not names:
        raise Img2ImgError(f"no readable images in {folder}: {failures[0][1]}")
    fs = FeatureSet(names, np.concatenate(pools), np.concatenate(logits), failures)
    if cache_path is not None:
        _save_cache(cache_path, key, fs, extractor.label, preprocess)  # the label says when weights are random
    return fs
