"""CycleGAN training data (Zhu et al. 2017): two unaligned image sets A and B (`trainA/`, `trainB/`).
Each sample is one A image and one B image drawn independently (at random unless `serial_batches`),
each with its own random resize/crop/flip."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

from img2img.data.base import SeededDataset, image_hw, list_images, read_rgb
from img2img.data.paired import ImageOptions, check_channels, crop_fits, preprocess, relative_key, to_model_tensor
from img2img.errors import ConfigError

log = logging.getLogger(__name__)


@dataclass
class UnpairedDataConfig(ImageOptions):
    root: str = ""  # holds {phase}A/ and {phase}B/ (e.g. horse2zebra/trainA, horse2zebra/trainB)
    phase: str = "train"  # subfolder prefix: train | test | ...
    dir_A: str | None = None  # explicit A folder (overrides ROOT/{phase}A)
    dir_B: str | None = None  # explicit B folder (overrides ROOT/{phase}B)
    direction: Literal["AtoB", "BtoA"] = "AtoB"  # BtoA swaps the domains: sample "A" comes from B's folder
    serial_batches: bool = False  # False: B drawn at random for every sample; True: B paired by index
    in_channels: int = 3  # channels of domain A samples (after `direction`); grey files are converted
    out_channels: int = 3  # channels of domain B samples

    def __post_init__(self) -> None:
        self.check_options()
        check_channels(in_channels=self.in_channels, out_channels=self.out_channels)
        if self.direction not in ("AtoB", "BtoA"):
            raise ConfigError(f"data.direction must be 'AtoB' or 'BtoA', not {self.direction!r}")
        if not self.root and not (self.dir_A and self.dir_B):
            raise ConfigError(
                f"data: give data.root (holding {self.phase}A/ and {self.phase}B/) or both data.dir_A and data.dir_B"
            )

    def folders(self) -> tuple[Path, Path]:
        """(A folder, B folder) after `direction`."""
        root = Path(self.root).expanduser()
        a = Path(self.dir_A).expanduser() if self.dir_A else root / f"{self.phase}A"
        b = Path(self.dir_B).expanduser() if self.dir_B else root / f"{self.phase}B"
        return (a, b) if self.direction == "AtoB" else (b, a)


def _domain(folder: Path, role: str, opts: UnpairedDataConfig) -> list[tuple[str, Path]]:
    files = list_images(folder, role=role)[: opts.max_dataset_size]
    small = [p.name for p in files if not crop_fits(image_hw(p), opts)]
    if small:
        raise ConfigError(
            f"{len(small)} image(s) in {folder} are smaller than data.crop_size={opts.crop_size} "
            f"(e.g. {', '.join(small[:3])}); with preprocess: crop every image must be at least that large. "
            "Use preprocess: resize_and_crop or lower crop_size"
        )
    return [(f"{folder.name}/{relative_key(p, folder)}", p) for p in files]


class UnpairedDataset(SeededDataset):
    """CycleGAN samples. Sample -> {"A": CHW float32 in [-1, 1], "B": CHW float32 in [-1, 1],
    "key_A": str, "key_B": str}, or None when either file cannot be read (see `skip_collate`).

    An epoch has max(|A|, |B|) samples; sample i takes A image i mod |A| and B image i mod |B|
    (`serial_batches`) or a random B image. Grey images in an RGB domain are repeated to 3 channels.
    """

    def __init__(self, cfg: UnpairedDataConfig, seed: int = 0) -> None:
        super().__init__(seed)
        self.cfg = cfg
        dir_a, dir_b = cfg.folders()
        self.items_A = _domain(dir_a, "domain A", cfg)
        self.items_B = _domain(dir_b, "domain B", cfg)

    def __len__(self) -> int:
        return max(len(self.items_A), len(self.items_B))

    def _load(self, path: Path, key: str, rng: np.random.Generator) -> np.ndarray | None:
        img = read_rgb(path)
        if img is None:
            return None
        if not crop_fits(img.shape[:2], self.cfg):  # header was unreadable at construction
            log.warning("skipping %s: %s is smaller than the %dpx crop", key, img.shape[:2], self.cfg.crop_size)
            return None
        return preprocess([img], self.cfg, rng)[0]

    def __getitem__(self, index: int) -> dict[str, Any] | None:
        if not 0 <= index < len(self):
            raise IndexError(f"UnpairedDataset index {index} out of range (len {len(self)})")
        rng = self.rng(index)
        key_a, path_a = self.items_A[index % len(self.items_A)]
        # Random B breaks fixed A/B pairings that serial indexing would repeat every epoch.
        j = index % len(self.items_B) if self.cfg.serial_batches else int(rng.integers(len(self.items_B)))
        key_b, path_b = self.items_B[j]
        a = self._load(path_a, key_a, rng)
        b = self._load(path_b, key_b, rng) if a is not None else None
        if a is None or b is None:
            return None
        return {
            "A": to_model_tensor(a, self.cfg.in_channels),
            "B": to_model_tensor(b, self.cfg.out_channels),
            "key_A": key_a,
            "key_B": key_b,
        }

    def describe(self) -> dict[str, Any]:
        """What the dataset holds, for the weights card's training record."""
        c = self.cfg
        dir_a, dir_b = c.folders()
        return {
            "dir_A": str(dir_a),
            "dir_B": str(dir_b),
            "images_A": len(self.items_A),
            "images_B": len(self.items_B),
            "serial_batches": c.serial_batches,
            "preprocess": c.preprocess,
            "load_size": c.load_size,
            "crop_size": c.crop_size,
            "flip": c.flip,
        }
