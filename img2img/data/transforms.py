"""Paired augmentation: one random decision applied identically to every image of a sample (LR/HR
crops aligned by the scale, flips and 90-degree rotations, and albumentations pipelines for
same-size pairs such as pix2pix's A/B). Arrays are HxWxC numpy; randomness comes from the caller."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from img2img.errors import ConfigError


def paired_random_crop(
    lr: np.ndarray, hr: np.ndarray, lr_patch: int, scale: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Random `lr_patch`-square LR crop and the HR crop covering the same area (LR coords x scale).

    `hr` must be `scale` times `lr` in both dimensions (extra HR rows/columns beyond that are
    ignored, as when an HR image is not a multiple of the scale).
    """
    h, w = lr.shape[:2]
    if hr.shape[0] // scale != h or hr.shape[1] // scale != w:
        raise ValueError(f"HR {hr.shape[:2]} is not {scale}x LR {lr.shape[:2]}")
    if h < lr_patch or w < lr_patch:
        raise ValueError(f"LR image {h}x{w} is smaller than the {lr_patch}px LR patch")
    top = int(rng.integers(0, h - lr_patch + 1))
    left = int(rng.integers(0, w - lr_patch + 1))
    hp = lr_patch * scale
    lr_c = lr[top : top + lr_patch, left : left + lr_patch]
    hr_c = hr[top * scale : top * scale + hp, left * scale : left * scale + hp]
    return lr_c, hr_c


def random_crop(*imgs: np.ndarray, size: int, rng: np.random.Generator) -> tuple[np.ndarray, ...]:
    """The same random `size`-square window cut from every image (all must share H and W)."""
    h, w = imgs[0].shape[:2]
    if any(im.shape[:2] != (h, w) for im in imgs):
        raise ValueError(f"random_crop needs equal sizes, got {[im.shape[:2] for im in imgs]}")
    if h < size or w < size:
        raise ValueError(f"image {h}x{w} is smaller than the {size}px crop")
    top, left = int(rng.integers(0, h - size + 1)), int(rng.integers(0, w - size + 1))
    return tuple(im[top : top + size, left : left + size] for im in imgs)


def augment_pair(
    *imgs: np.ndarray, rng: np.random.Generator, hflip: bool = True, vflip: bool = True, rot90: bool = True
) -> tuple[np.ndarray, ...]:
    """Apply one random choice of horizontal flip, vertical flip and transpose (together: the 8
    symmetries of the square) to every image; returns contiguous arrays in the same order."""
    # Always draw all three so the random stream does not depend on which options are enabled.
    do_h, do_v, do_t = (rng.random(3) < 0.5).tolist()
    out = []
    for im in imgs:
        if hflip and do_h:
            im = im[:, ::-1]
        if vflip and do_v:
            im = im[::-1]
        if rot90 and do_t:
            im = im.swapaxes(0, 1)  # transpose + the flips above reach every 90-degree rotation
        out.append(np.ascontiguousarray(im))
    return tuple(out)


def import_albumentations() -> Any:
    """albumentations, imported without its network update check (no traffic at run time)."""
    os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")
    import albumentations

    return albumentations


def _build_transform(spec: Any, A: Any) -> Any:
    if isinstance(spec, Mapping):
        spec = dict(spec)
        name = spec.pop("name", None)
        if not isinstance(name, str) or not hasattr(A, name):
            raise ConfigError(f"albumentations transform {name!r} not found (spec {spec})")
        try:
            return getattr(A, name)(**spec)
        except (TypeError, ValueError) as e:
            raise ConfigError(f"albumentations {name}: bad arguments {spec} ({e})") from e
    return spec  # already an albumentations transform


class PairedAlbumentations:
    """One albumentations pipeline applied identically to an image and its partner images.

    `transforms`: albumentations transform objects, or dicts `{"name": "HorizontalFlip", "p": 0.5}`
    (YAML-friendly). `targets` names the partner images after the first and their kind: "image"
    (interpolated like the first) or "mask" (nearest-neighbour, for label maps).
    Call with the images in that order and a numpy Generator; returns them transformed, in order.
    """

    def __init__(self, transforms: Sequence[Any], targets: Mapping[str, str] | None = None) -> None:
        A = import_albumentations()
        targets = dict(targets) if targets is not None else {"target": "image"}
        bad = {k: v for k, v in targets.items() if v not in ("image", "mask") or k in ("image", "mask")}
        if bad:
            raise ConfigError(f"paired targets must map new names to 'image' or 'mask', got {bad}")
        self.names = list(targets)
        self.compose = A.Compose([_build_transform(t, A) for t in transforms], additional_targets=targets)

    def __call__(self, image: np.ndarray, *others: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, ...]:
        if len(others) != len(self.names):
            raise ValueError(f"expected {len(self.names)} partner image(s) ({self.names}), got {len(others)}")
        # Reseed from the caller's generator so the sample is reproducible and independent of workers.
        self.compose.set_random_seed(int(rng.integers(0, 2**32)))
        res = self.compose(image=image, **dict(zip(self.names, others, strict=True)))
        return (res["image"], *(res[n] for n in self.names))
