"""Dataset plumbing shared by every family: listing image folders, reading samples so that a corrupt
file yields None instead of crashing a long run, `skip_collate` to drop and count those samples, and
per-sample random generators seeded from (seed, epoch, index) so runs are reproducible."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset, default_collate

from img2img.errors import ConfigError, ImageError

log = logging.getLogger(__name__)
SKIPPED_KEY = "_skipped"  # batch entry: number of samples dropped from this batch


def skip_collate(batch: Sequence[dict[str, Any] | None]) -> dict[str, Any]:
    """Collate dict samples with torch's default collate after dropping the Nones (unreadable files).

    Adds `batch["_skipped"]` = number dropped; when every sample is bad returns only `{"_skipped": n}`,
    so the engine can skip the step, count, and abort above its threshold.
    """
    good = [s for s in batch if s is not None]
    n_bad = len(batch) - len(good)
    if not good:
        return {SKIPPED_KEY: n_bad}
    if not all(isinstance(s, dict) for s in good):
        raise TypeError("skip_collate needs samples that are dicts (or None for a skipped sample)")
    out = default_collate(good)
    out[SKIPPED_KEY] = n_bad
    return out


def list_images(folder: str | Path, *, role: str = "image") -> list[Path]:
    """All image files under `folder` (recursive, sorted); ConfigError when missing or empty."""
    from img2img.io.files import image_files

    root = Path(folder).expanduser()
    if not root.is_dir():
        raise ConfigError(f"{role} folder not found: {root}")
    files = image_files(root, recursive=True)
    if not files:
        raise ConfigError(f"no {role} images (png/jpg/webp/bmp/tiff) found under {root}")
    return files


def image_hw(path: Path) -> tuple[int, int] | None:
    """(height, width) from the file header without decoding, or None when the header is unreadable
    (the sample is then skipped when it is read)."""
    from img2img.io.images import probe_size

    try:
        w, h = probe_size(path)
    except ImageError:
        return None
    return h, w


_warned: set[str] = set()


def read_rgb(path: Path) -> np.ndarray | None:
    """Decode `path` as float32 HxWx3 in [0, 1] (grey repeated to 3 channels, alpha dropped), or
    None when the file cannot be read; each bad file is logged once per process."""
    from img2img.io.images import read_image

    try:
        rgb = read_image(path).rgb
    except (ImageError, OSError) as e:
        if str(path) not in _warned:
            _warned.add(str(path))
            log.warning("skipping unreadable image %s: %s", path, e)
        return None
    if rgb.ndim == 2:
        rgb = rgb[:, :, None]
    if rgb.shape[2] == 1:
        rgb = np.repeat(rgb, 3, axis=2)
    return np.ascontiguousarray(rgb[:, :, :3], dtype=np.float32)


def compact(img: np.ndarray) -> np.ndarray:
    """uint8 copy when `img` (float in [0, 1]) holds exact 8-bit values, else float32: a 4x smaller
    in-memory cache for ordinary images without losing 16-bit ones."""
    if img.dtype == np.uint8:
        return img
    q = np.rint(img * 255.0)
    if np.abs(q / 255.0 - img).max(initial=0.0) < 1e-6:
        return q.astype(np.uint8)
    return img.astype(np.float32, copy=False)


def to_float(img: np.ndarray) -> np.ndarray:
    """float32 in [0, 1] from a `compact` array."""
    if img.dtype == np.uint8:
        return img.astype(np.float32) / 255.0
    return img.astype(np.float32, copy=False)


def to_chw(img: np.ndarray) -> torch.Tensor:
    """HxWxC array -> CHW float32 tensor in [0, 1]."""
    return torch.from_numpy(np.ascontiguousarray(to_float(img).transpose(2, 0, 1)))


class SeededDataset(Dataset):
    """Base for map-style datasets with random sampling: sample `index` of epoch `e` draws from
    `np.random.default_rng([seed, e, index])`, so results are identical for any number of workers,
    differ between samples and epochs, and a resumed run sees the same crops.

    The engine calls `set_epoch(e)` at the start of each epoch (like DistributedSampler.set_epoch).
    The epoch lives in shared memory, so the call also reaches persistent DataLoader workers.
    """

    def __init__(self, seed: int = 0) -> None:
        if seed < 0:
            raise ConfigError(f"seed must be >= 0, got {seed}")
        self.seed = int(seed)
        self._epoch = torch.zeros((), dtype=torch.int64).share_memory_()

    @property
    def epoch(self) -> int:
        return int(self._epoch.item())

    def set_epoch(self, epoch: int) -> None:
        if epoch < 0:
            raise ValueError(f"epoch must be >= 0, got {epoch}")
        self._epoch.fill_(int(epoch))

    def rng(self, index: int) -> np.random.Generator:
        return np.random.default_rng([self.seed, self.epoch, int(index)])
