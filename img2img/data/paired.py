"""pix2pix training data (Isola et al. 2017): aligned A/B pairs, stored side by side in one image
(`aligned`) or in two folders matched by file name (`folders`). Both images of a pair get the same
resize, random crop and flip. Also the preprocessing options shared with the unpaired (CycleGAN) data."""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch

from img2img.data.base import SeededDataset, image_hw, list_images, read_rgb
from img2img.data.transforms import augment_pair, random_crop
from img2img.errors import ConfigError

log = logging.getLogger(__name__)
PREPROCESS = ("resize_and_crop", "crop", "scale_width", "scale_width_and_crop", "none")
LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)  # ITU-R BT.601, as for 8-bit grey conversion
Preprocess = Literal["resize_and_crop", "crop", "scale_width", "scale_width_and_crop", "none"]


@dataclass
class ImageOptions:
    """How training images are resized, cropped and flipped (shared by paired and unpaired data)."""

    preprocess: Preprocess = "resize_and_crop"  # resize to load_size square, then random crop_size crop
    load_size: int = 286  # resize target (square, or the width for scale_width*)
    crop_size: int = 256  # random square crop (the *crop modes)
    flip: bool = True  # random horizontal flip
    size_multiple: int = 4  # scale_width / none: H, W resized to the nearest multiple (U-Net: 2**num_downs)
    max_dataset_size: int | None = None  # use at most this many images (first by name)
    # Extra albumentations transforms after crop/flip, the same draw for both images of a pair,
    # e.g. [{name: Affine, rotate: [-5, 5], p: 0.5}, {name: RandomBrightnessContrast, p: 0.3}].
    albumentations: list[dict[str, Any]] = field(default_factory=list)

    def check_options(self) -> None:
        if self.preprocess not in PREPROCESS:
            raise ConfigError(f"data.preprocess must be one of {PREPROCESS}, not {self.preprocess!r}")
        if self.load_size < 1 or self.crop_size < 1 or self.size_multiple < 1:
            raise ConfigError(
                f"data.load_size ({self.load_size}), data.crop_size ({self.crop_size}) and "
                f"data.size_multiple ({self.size_multiple}) must be positive"
            )
        if self.preprocess in ("resize_and_crop", "scale_width_and_crop") and self.crop_size > self.load_size:
            raise ConfigError(
                f"data.crop_size ({self.crop_size}) is larger than data.load_size ({self.load_size}): "
                f"{self.preprocess} resizes to load_size and then crops; raise load_size or lower crop_size"
            )
        if self.albumentations:
            _albumentations(self.albumentations, 1)  # unknown transforms or bad arguments fail at load time
        if self.max_dataset_size is not None and self.max_dataset_size < 1:
            raise ConfigError(f"data.max_dataset_size must be >= 1 (or null for all), got {self.max_dataset_size}")


def _resize(img: np.ndarray, h: int, w: int) -> np.ndarray:
    import cv2

    if img.shape[:2] == (h, w):
        return img
    out = cv2.resize(img, (w, h), interpolation=cv2.INTER_CUBIC)
    return np.clip(out.reshape(h, w, -1), 0.0, 1.0)  # bicubic overshoots; cv2 drops a single channel axis


def _nearest_multiple(v: int, m: int) -> int:
    return max(m, int(round(v / m)) * m)


def _scale_width(h: int, w: int, opts: ImageOptions) -> tuple[int, int]:
    # Keep the aspect ratio but never go below the crop height, so a crop always fits.
    return max(opts.crop_size, round(opts.load_size * h / w)), opts.load_size


def preprocess(imgs: Sequence[np.ndarray], opts: ImageOptions, rng: np.random.Generator) -> list[np.ndarray]:
    """One random resize/crop/flip decision applied identically to every image (all the same size).

    HxWxC float arrays in [0, 1] in, contiguous arrays out; randomness only from `rng`.
    """
    h, w = imgs[0].shape[:2]
    out = list(imgs)
    mode, m = opts.preprocess, opts.size_multiple
    if mode == "resize_and_crop":
        out = [_resize(im, opts.load_size, opts.load_size) for im in out]
    elif mode.startswith("scale_width"):
        out = [_resize(im, *_scale_width(h, w, opts)) for im in out]
    if mode.endswith("crop"):
        out = list(random_crop(*out, size=opts.crop_size, rng=rng))
    else:  # whole images: the generator needs H and W divisible by its size multiple
        hh, ww = out[0].shape[:2]
        out = [_resize(im, _nearest_multiple(hh, m), _nearest_multiple(ww, m)) for im in out]
    if opts.flip:
        out = list(augment_pair(*out, rng=rng, hflip=True, vflip=False, rot90=False))
    if opts.albumentations:
        out = [np.clip(im, 0.0, 1.0) for im in _albumentations(opts.albumentations, len(out) - 1)(*out, rng=rng)]
    return [np.ascontiguousarray(im, dtype=np.float32) for im in out]


_PIPELINES: dict[tuple[str, int], Any] = {}  # built once per process (and DataLoader worker)


def _albumentations(spec: list[dict[str, Any]], partners: int) -> Any:
    from img2img.data.transforms import PairedAlbumentations

    key = (json.dumps(spec, sort_keys=True, default=str), partners)
    if key not in _PIPELINES:
        targets = {f"image{i}": "image" for i in range(partners)}
        _PIPELINES[key] = PairedAlbumentations(spec, targets)
    return _PIPELINES[key]


def crop_fits(hw: tuple[int, int] | None, opts: ImageOptions) -> bool:
    """Whether an image of (H, W) (None = unknown) is large enough for `opts.preprocess == "crop"`."""
    return hw is None or opts.preprocess != "crop" or min(hw) >= opts.crop_size


def to_model_tensor(img: np.ndarray, channels: int) -> torch.Tensor:
    """HxWx3 float in [0, 1] -> CHW float32 in [-1, 1] with 1 (BT.601 luma) or 3 channels."""
    if channels == 1:
        img = img[..., :3] @ LUMA[:, None]
    t = torch.from_numpy(np.ascontiguousarray(img.transpose(2, 0, 1), dtype=np.float32))
    return t * 2.0 - 1.0


def check_channels(**channels: int) -> None:
    for name, c in channels.items():
        if c not in (1, 3):
            raise ConfigError(f"data.{name} must be 1 (grey) or 3 (RGB), got {c}")


def relative_key(path: Path, root: Path) -> str:
    """File name relative to its folder, without the extension: how A and B files are matched."""
    return path.relative_to(root).with_suffix("").as_posix()


@dataclass
class PairedDataConfig(ImageOptions):
    root: str = ""  # aligned: folder of A|B images; folders: parent of A/ and B/ (unless dir_A/dir_B)
    layout: Literal["aligned", "folders"] = "aligned"  # aligned = A left half, B right half of one image
    dir_A: str | None = None  # folders layout: explicit A folder (default ROOT/A)
    dir_B: str | None = None  # folders layout: explicit B folder (default ROOT/B)
    direction: Literal["AtoB", "BtoA"] = "AtoB"  # BtoA: the network maps B -> A (facades labels -> photos)
    in_channels: int = 3  # channels of the network input (sample "A", after `direction`)
    out_channels: int = 3  # channels of the target (sample "B")

    def __post_init__(self) -> None:
        self.check_options()
        check_channels(in_channels=self.in_channels, out_channels=self.out_channels)
        if self.layout not in ("aligned", "folders"):
            raise ConfigError(f"data.layout must be 'aligned' or 'folders', not {self.layout!r}")
        if self.direction not in ("AtoB", "BtoA"):
            raise ConfigError(f"data.direction must be 'AtoB' or 'BtoA', not {self.direction!r}")
        if self.layout == "aligned" and not self.root:
            raise ConfigError("data.root is empty: give the folder of side-by-side A|B images")
        if self.layout == "folders" and not self.root and not (self.dir_A and self.dir_B):
            raise ConfigError("data: give data.root (holding A/ and B/) or both data.dir_A and data.dir_B")

    def folders(self) -> tuple[Path, Path]:
        root = Path(self.root).expanduser()
        a = Path(self.dir_A).expanduser() if self.dir_A else root / "A"
        b = Path(self.dir_B).expanduser() if self.dir_B else root / "B"
        return a, b


@dataclass(frozen=True)
class PairItem:
    key: str
    a: Path
    b: Path | None = None  # None: aligned (A and B are the halves of `a`)


def _aligned_items(cfg: PairedDataConfig) -> list[PairItem]:
    root = Path(cfg.root).expanduser()
    files = list_images(root, role="aligned A|B")[: cfg.max_dataset_size]
    items, odd, small = [], [], []
    for p in files:
        hw = image_hw(p)
        if hw is not None and hw[1] % 2:
            odd.append(f"{p.name} ({hw[1]}x{hw[0]})")
        elif not crop_fits(hw and (hw[0], hw[1] // 2), cfg):
            small.append(p.name)
        items.append(PairItem(relative_key(p, root), p))
    if odd:
        raise ConfigError(
            f"aligned pairs in {root} must have an even width (A = left half, B = right half); "
            f"{len(odd)} do not, e.g. {', '.join(odd[:3])}. Use layout: folders for separate A and B images"
        )
    _raise_small(small, cfg, root, "halves of ")
    return items


def _folder_items(cfg: PairedDataConfig) -> list[PairItem]:
    from img2img.io.files import match_files

    dir_a, dir_b = cfg.folders()
    pairs = match_files(
        {"A": list_images(dir_a, role="A"), "B": list_images(dir_b, role="B")}, relative_key, what="paired data",
        rule="A and B files are matched by name without the extension",
    )  # fmt: skip
    a, b = {k: v["A"] for k, v in pairs.items()}, {k: v["B"] for k, v in pairs.items()}
    keys = sorted(a)[: cfg.max_dataset_size]
    mismatched, small = [], []
    for k in keys:
        ha, hb = image_hw(a[k]), image_hw(b[k])
        if ha and hb and ha != hb:
            mismatched.append(f"{k}: A {ha[1]}x{ha[0]} vs B {hb[1]}x{hb[0]}")
        elif not crop_fits(ha, cfg):
            small.append(k)
    if mismatched:
        raise ConfigError(
            f"paired data: A and B images must have the same size; {len(mismatched)} pair(s) differ, e.g. "
            + "; ".join(mismatched[:3])
        )
    _raise_small(small, cfg, dir_a, "")
    return [PairItem(k, a[k], b[k]) for k in keys]


def _raise_small(small: list[str], cfg: ImageOptions, root: Path, what: str) -> None:
    if small:
        raise ConfigError(
            f"{len(small)} image(s) in {root} are smaller than data.crop_size={cfg.crop_size} "
            f"(e.g. {', '.join(small[:3])}); with preprocess: crop the {what}images must be at least that "
            "large. Use preprocess: resize_and_crop or lower crop_size"
        )


class PairedDataset(SeededDataset):
    """pix2pix pairs. Sample -> {"A": CHW float32 in [-1, 1] (network input), "B": CHW float32 in
    [-1, 1] (target), "key": str}, or None when a file cannot be read (see `skip_collate`).

    `direction` BtoA swaps the roles, so "A" is always what the network sees. Grey files become RGB
    (or stay grey for 1-channel configs), alpha is dropped, 16-bit precision is kept until the crop.
    """

    def __init__(self, cfg: PairedDataConfig, seed: int = 0) -> None:
        super().__init__(seed)
        self.cfg = cfg
        self.items = _aligned_items(cfg) if cfg.layout == "aligned" else _folder_items(cfg)

    def __len__(self) -> int:
        return len(self.items)

    def _read(self, item: PairItem) -> tuple[np.ndarray, np.ndarray] | None:
        a = read_rgb(item.a)
        if a is None:
            return None
        if item.b is None:  # aligned: split the side-by-side image
            if a.shape[1] % 2:
                log.warning("skipping %s: width %d is odd, cannot split it into A|B", item.a, a.shape[1])
                return None
            half = a.shape[1] // 2
            return a[:, :half], a[:, half:]
        b = read_rgb(item.b)
        if b is None:
            return None
        if a.shape != b.shape:
            log.warning("skipping %s: A %s and B %s differ in size", item.key, a.shape[:2], b.shape[:2])
            return None
        return a, b

    def __getitem__(self, index: int) -> dict[str, Any] | None:
        if not 0 <= index < len(self):
            raise IndexError(f"PairedDataset index {index} out of range (len {len(self)})")
        item = self.items[index]
        pair = self._read(item)
        if pair is None:
            return None
        a, b = pair if self.cfg.direction == "AtoB" else pair[::-1]
        if not crop_fits(a.shape[:2], self.cfg):  # header was unreadable at construction
            log.warning("skipping %s: %s is smaller than the %dpx crop", item.key, a.shape[:2], self.cfg.crop_size)
            return None
        a, b = preprocess([a, b], self.cfg, self.rng(index))
        return {
            "A": to_model_tensor(a, self.cfg.in_channels),
            "B": to_model_tensor(b, self.cfg.out_channels),
            "key": item.key,
        }

    def describe(self) -> dict[str, Any]:
        """What the dataset holds, for the weights card's training record."""
        c = self.cfg
        return {
            "layout": c.layout,
            "root": c.root if c.layout == "aligned" else [str(p) for p in c.folders()],
            "pairs": len(self.items),
            "direction": c.direction,
            "preprocess": c.preprocess,
            "load_size": c.load_size,
            "crop_size": c.crop_size,
            "flip": c.flip,
        }
