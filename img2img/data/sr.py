"""Super-resolution training data: random aligned LR/HR patch pairs from HR folders, with LR made on
the fly (MATLAB-style bicubic, quantised to 8 bits as a saved file would be, or Real-ESRGAN blind
degradation), or read from paired LR folders matched by file name."""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from img2img.data.base import SeededDataset, compact, image_hw, list_images, read_rgb, to_chw, to_float
from img2img.data.degradations import DegradationConfig, degrade
from img2img.data.transforms import augment_pair, paired_random_crop
from img2img.errors import ConfigError

log = logging.getLogger(__name__)
DEGRADATIONS = ("bicubic", "realesrgan")


@dataclass
class SRDataConfig:
    hr_dirs: list[str]  # HR image folders (recursive); LR synthesised on the fly unless lr_dirs given
    lr_dirs: list[str] | None = None  # paired LR folders, matched to hr_dirs by file stem (may be the same folder)
    scale: int = 4
    patch_size: int = 128  # HR patch; LR patch = patch_size // scale
    degradation: str = "bicubic"  # bicubic | realesrgan
    augment: bool = True  # random h/v flips and 90-degree rotations, identical for LR and HR
    repeat: int = 1  # virtual epoch length multiplier for small sets
    cache: bool = True  # keep decoded images in memory, per process (use persistent DataLoader workers)

    def __post_init__(self) -> None:
        if isinstance(self.hr_dirs, (str, Path)):
            self.hr_dirs = [str(self.hr_dirs)]
        if isinstance(self.lr_dirs, (str, Path)):
            self.lr_dirs = [str(self.lr_dirs)]
        if not self.hr_dirs:
            raise ConfigError("data.hr_dirs is empty: give at least one folder of HR images")
        if self.lr_dirs is not None and len(self.lr_dirs) != len(self.hr_dirs):
            raise ConfigError(
                f"data.lr_dirs has {len(self.lr_dirs)} folders but data.hr_dirs has {len(self.hr_dirs)}; "
                "give one LR folder per HR folder (the same folder is fine for *_HR / *_LR names)"
            )
        if not isinstance(self.scale, int) or self.scale < 1:
            raise ConfigError(f"data.scale must be a positive integer, got {self.scale!r}")
        if self.patch_size < self.scale or self.patch_size % self.scale:
            raise ConfigError(f"data.patch_size ({self.patch_size}) must be a multiple of data.scale ({self.scale})")
        if self.degradation not in DEGRADATIONS:
            raise ConfigError(f"data.degradation must be one of {DEGRADATIONS}, not {self.degradation!r}")
        if self.lr_dirs is not None and self.degradation != "bicubic":
            raise ConfigError("data.degradation applies only to synthesised LR; drop data.lr_dirs to use it")
        if self.repeat < 1:
            raise ConfigError(f"data.repeat must be >= 1, got {self.repeat}")


@dataclass(frozen=True)
class SRItem:
    key: str  # "<HR folder name>/<relative path>", shown in logs and sample grids
    hr: Path
    lr: Path | None = None


def pair_key(rel: Path, scale: int) -> str:
    """Name shared by an HR file and its LR partner: relative path without extension and without a
    trailing `_HR` / `_LR` / `x4` / `_x4` tag (Set5-style and DIV2K-style names)."""
    stem = re.sub(rf"(_HR|_LR|_?x{scale})$", "", rel.stem, flags=re.IGNORECASE)
    return (rel.parent / stem).as_posix()


def _tagged(path: Path, tag: str) -> bool:
    return path.stem.upper().endswith(tag)


def _hr_items(root: Path, scale: int) -> list[SRItem]:
    files = list_images(root, role="HR")
    # Benchmark folders hold X_HR and X_LR side by side: the LR files are never HR training images.
    hr_keys = {pair_key(p.relative_to(root), scale) for p in files if _tagged(p, "_HR")}
    keep = [p for p in files if not (_tagged(p, "_LR") and pair_key(p.relative_to(root), scale) in hr_keys)]
    return [SRItem(f"{root.name}/{p.relative_to(root).as_posix()}", p) for p in keep]


def _paired_items(hr_root: Path, lr_root: Path, scale: int) -> list[SRItem]:
    hr_files = [p for p in list_images(hr_root, role="HR") if not _tagged(p, "_LR")]
    lr_files = [p for p in list_images(lr_root, role="LR") if not _tagged(p, "_HR")]
    from img2img.io.files import match_files

    pairs = match_files(
        {"HR": hr_files, "LR": lr_files}, lambda p, root: pair_key(p.relative_to(root), scale),
        what=f"paired SR data ({hr_root}, {lr_root})", rule=f"names must match after dropping _HR/_LR/x{scale}",
    )  # fmt: skip
    items = [
        SRItem(f"{hr_root.name}/{v['HR'].relative_to(hr_root).as_posix()}", v["HR"], v["LR"]) for v in pairs.values()
    ]
    bad = []
    for it in items:
        hr_hw, lr_hw = image_hw(it.hr), image_hw(it.lr)  # type: ignore[arg-type]
        if hr_hw and lr_hw and (hr_hw[0] // scale, hr_hw[1] // scale) != lr_hw:
            bad.append(f"{it.key}: HR {hr_hw[0]}x{hr_hw[1]} vs LR {lr_hw[0]}x{lr_hw[1]}")
    if bad:
        raise ConfigError(f"paired SR data: LR size must be HR size / {scale} (data.scale): " + "; ".join(bad[:3]))
    return items


class SRDataset(SeededDataset):
    """Random LR/HR patch pairs. Sample -> {"lr": CHW float32 [0, 1] (patch/scale), "hr": CHW float32
    [0, 1] (patch), "key": str}, or None when the image file cannot be read (see `skip_collate`).

    Images smaller than the HR patch are left out at construction (listed in `too_small`, logged),
    never upsized: that would teach the network interpolation artefacts. Unreadable headers pass the
    check and are skipped when read. Grey images become 3 channels; alpha is dropped.
    """

    def __init__(self, cfg: SRDataConfig, *, seed: int = 0) -> None:
        super().__init__(seed)
        self.cfg = cfg
        self.degradation_cfg = DegradationConfig()
        items: list[SRItem] = []
        for i, hr_dir in enumerate(cfg.hr_dirs):
            hr_root = Path(hr_dir).expanduser()
            if cfg.lr_dirs is None:
                items += _hr_items(hr_root, cfg.scale)
            else:
                items += _paired_items(hr_root, Path(cfg.lr_dirs[i]).expanduser(), cfg.scale)
        self.items, self.too_small = self._drop_small(items)
        if not self.items:
            raise ConfigError(
                f"all {len(items)} images in {cfg.hr_dirs} are smaller than "
                f"data.patch_size={cfg.patch_size}; "
                "lower the patch size or add larger images"
            )
        self._cache: dict[str, tuple[np.ndarray, np.ndarray | None]] = {}

    def _drop_small(self, items: list[SRItem]) -> tuple[list[SRItem], list[str]]:
        keep, small = [], []
        for it in items:
            hw = image_hw(it.hr)
            if hw is not None and min(hw) // self.cfg.scale * self.cfg.scale < self.cfg.patch_size:
                small.append(it.key)
            else:
                keep.append(it)
        if small:
            log.warning(
                "SR data: skipping %d image(s) smaller than the %dpx patch (e.g. %s)",
                len(small),
                self.cfg.patch_size,
                ", ".join(small[:3]),
            )
        return keep, small

    def __len__(self) -> int:
        return len(self.items) * self.cfg.repeat

    def _synth_lr(self, hr: np.ndarray) -> np.ndarray:
        """MATLAB bicubic LR of the whole HR image, as uint8 (what a saved LR file would hold)."""
        from img2img.io.resize import imresize

        lr = imresize(hr, 1.0 / self.cfg.scale)
        if lr.dtype != np.uint8:  # 16-bit sources: round to 8-bit the way imresize does for uint8
            lr = np.clip(np.floor(lr * 255.0 + 0.5), 0, 255).astype(np.uint8)
        return lr

    def _load(self, item: SRItem) -> tuple[np.ndarray, np.ndarray | None] | None:
        """(HR cropped to a multiple of the scale, LR or None) as compact arrays; None if unreadable."""
        if str(item.hr) in self._cache:
            return self._cache[str(item.hr)]
        s = self.cfg.scale
        hr = read_rgb(item.hr)
        lr = read_rgb(item.lr) if item.lr is not None else None
        if hr is None or (item.lr is not None and lr is None):
            return None
        if lr is not None and (hr.shape[0] // s, hr.shape[1] // s) != lr.shape[:2]:
            log.warning("skipping %s: HR %s is not %dx LR %s", item.key, hr.shape[:2], s, lr.shape[:2])
            return None
        h, w = (hr.shape[0] // s * s, hr.shape[1] // s * s)
        hr = compact(hr[:h, :w])
        if lr is not None:
            lr = compact(lr)
        elif self.cfg.degradation == "bicubic":
            lr = self._synth_lr(hr)
        if self.cfg.cache:
            self._cache[str(item.hr)] = (hr, lr)
        return hr, lr

    def __getitem__(self, index: int) -> dict[str, Any] | None:
        if not 0 <= index < len(self):
            raise IndexError(f"SRDataset index {index} out of range (len {len(self)})")
        item = self.items[index % len(self.items)]
        loaded = self._load(item)
        if loaded is None:
            return None
        hr, lr = loaded
        cfg, rng = self.cfg, self.rng(index)
        if min(hr.shape[:2]) < cfg.patch_size:  # header was unreadable at construction
            log.warning("skipping %s: %s is smaller than the %dpx patch", item.key, hr.shape[:2], cfg.patch_size)
            return None
        if lr is None:  # blind degradation of a random HR patch
            top = int(rng.integers(0, hr.shape[0] - cfg.patch_size + 1))
            left = int(rng.integers(0, hr.shape[1] - cfg.patch_size + 1))
            hr = to_float(hr[top : top + cfg.patch_size, left : left + cfg.patch_size])
            lr = degrade(hr, cfg.scale, rng, self.degradation_cfg)
        else:
            lr, hr = paired_random_crop(lr, hr, cfg.patch_size // cfg.scale, cfg.scale, rng)
        if cfg.augment:
            lr, hr = augment_pair(lr, hr, rng=rng)
        return {"lr": to_chw(lr), "hr": to_chw(hr), "key": item.key}

    def describe(self) -> dict[str, Any]:
        """What the dataset holds, for the weights card's training record."""
        return {
            "hr_dirs": list(self.cfg.hr_dirs),
            "lr_dirs": list(self.cfg.lr_dirs) if self.cfg.lr_dirs else None,
            "images": len(self.items),
            "skipped_too_small": len(self.too_small),
            "scale": self.cfg.scale,
            "patch_size": self.cfg.patch_size,
            "degradation": "paired files" if self.cfg.lr_dirs else self.cfg.degradation,
        }
