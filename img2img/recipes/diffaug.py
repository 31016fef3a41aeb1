"""Differentiable augmentation of what a discriminator sees (DiffAugment, Zhao et al. 2020), on the
training device, with kornia. The same kind of random transform is applied to real and to generated
images every time D looks at them, in D's step and in G's, and gradients flow through it back to G:
D cannot memorise a small training set, and G is not pushed to reproduce the augmentations (they
are never applied to G's output alone).

Policies, as in the paper: `color` (brightness x[0.5, 1.5], contrast x[0.5, 1.5], saturation
x[0, 2]), `translation` (up to 1/8 of the size, zero fill), `cutout` (a square of half the side set to
zero). Each sample draws its own parameters; a D input made of several RGB images side by side in
the channels (pix2pix's conditional D sees input ⊕ output) gets one colour change for all of them,
so the pair stays consistent."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal, get_args

import torch

from img2img.errors import ConfigError

Policy = Literal["color", "translation", "cutout"]
POLICIES: tuple[str, ...] = get_args(Policy)


class DiffAugment:
    """Callable on NCHW batches whose values lie in `value_range`; returns the same shape and dtype."""

    def __init__(self, policy: Sequence[str], value_range: tuple[float, float] = (0.0, 1.0), *, key: str = "") -> None:
        where = f"{key}: " if key else ""
        unknown = [p for p in policy if p not in POLICIES]
        if unknown:
            raise ConfigError(f"{where}unknown DiffAugment policy {unknown}; choose from {', '.join(POLICIES)}")
        try:
            import kornia.augmentation as K
        except ImportError as e:
            raise ConfigError(f"{where}DiffAugment needs kornia: pip install 'img2img[train]' (or kornia)") from e
        self.policy = tuple(dict.fromkeys(policy))  # ordered, no repeats
        self.lo, self.hi = value_range
        self.color = K.ColorJitter(brightness=0.5, contrast=0.5, saturation=1.0, p=1.0) if "color" in policy else None
        self.translation = (
            K.RandomAffine(degrees=0.0, translate=(0.125, 0.125), resample="nearest", padding_mode="zeros", p=1.0)
            if "translation" in policy
            else None
        )
        self.cutout = (
            K.RandomErasing(scale=(0.25, 0.25), ratio=(1.0, 1.0), value=0.0, p=1.0) if "cutout" in policy else None
        )

    def __bool__(self) -> bool:
        return bool(self.policy)

    def __repr__(self) -> str:
        return f"DiffAugment({list(self.policy)})"

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if not self.policy:
            return x
        if x.ndim != 4:
            raise ValueError(f"DiffAugment expects NCHW batches, got shape {tuple(x.shape)}")
        dtype = x.dtype
        # kornia works in [0, 1] and float32 (autocast may hand us bf16 / fp16 activations).
        y = (x.float() - self.lo) / (self.hi - self.lo)
        if self.color is not None:
            y = self._color(y)
        if self.translation is not None:
            y = self.translation(y)
        if self.cutout is not None:
            y = self.cutout(y)
        return (y * (self.hi - self.lo) + self.lo).to(dtype)

    def _color(self, y: torch.Tensor) -> torch.Tensor:
        c = y.shape[1]
        if c % 3:
            raise ConfigError(f"DiffAugment 'color' needs RGB images (a multiple of 3 channels), got {c} channels")
        params = self.color.forward_parameters(y[:, :3].shape)
        groups = [self.color(y[:, i : i + 3], params=params) for i in range(0, c, 3)]
        return torch.cat(groups, 1) if len(groups) > 1 else groups[0]
