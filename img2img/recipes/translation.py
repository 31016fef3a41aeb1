"""Pieces shared by the image-translation recipes (pix2pix, CycleGAN): the paper's weight init,
[-1, 1] <-> [0, 1] conversion, padded evaluation of a generator on any image size, held-out metrics
and the weights card of a translation generator."""

from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from img2img.config import ArchSpec, arch_kwargs, num

InitKind = Literal["normal", "xavier", "kaiming", "orthogonal"]


@dataclass
class InitConfig:
    kind: InitKind = "normal"  # the papers: N(0, 0.02)
    gain: float = num(0.02, gt=0.0)


@dataclass
class Domains:
    """Human names of the two image kinds, shown in the app and the weights card."""

    A: str = "A"  # what the network sees (after data.direction), e.g. "label map"
    B: str = "B"  # what it produces, e.g. "photo"


def build(spec: ArchSpec, init: InitConfig) -> nn.Module:
    from img2img.layers import init_weights

    return init_weights(spec.build(), init.kind, init.gain)


def to01(x: torch.Tensor) -> torch.Tensor:
    """[-1, 1] network images -> [0, 1] for grids and metrics (grey repeated to RGB)."""
    x = ((x.float() + 1) / 2).clamp(0, 1)
    return x.repeat(1, 3, 1, 1) if x.ndim == 4 and x.shape[1] == 1 else x


def size_multiple(net: nn.Module) -> int:
    return int(getattr(net, "size_multiple", 1))


def run_padded(net: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """net(x) for any H, W: reflect-pad to the net's size multiple, crop the output back."""
    m = size_multiple(net)
    h, w = x.shape[-2:]
    ph, pw = -h % m, -w % m
    if ph or pw:
        mode = "reflect" if ph < h and pw < w else "replicate"
        x = F.pad(x, (0, pw, 0, ph), mode=mode)
    return net(x)[..., :h, :w]


def test_time_train_mode(net: nn.Module) -> nn.Module:
    """A copy of `net` run as the released pix2pix results were made: dropout on and batch norm
    with the statistics of the test batch (running statistics left untouched)."""
    from img2img.layers import train_mode_inference

    return train_mode_inference(copy.deepcopy(net))


def image_metrics(out: torch.Tensor, target: torch.Tensor) -> dict[str, float]:
    """`metrics.translation_metrics` (L1, PSNR, SSIM on RGB) of one CHW pair in [-1, 1]."""
    from img2img.eval.metrics import translation_metrics

    a = to01(out[None])[0].permute(1, 2, 0).cpu().numpy()
    b = to01(target[None])[0].permute(1, 2, 0).cpu().numpy()
    return translation_metrics(a, b)


def mean_metrics(rows: list[dict[str, float]], prefix: str = "") -> dict[str, float]:
    if not rows:
        return {}
    return {f"{prefix}{k}": float(np.mean([r[k] for r in rows])) for k in rows[0]}


def translate_card(
    spec: ArchSpec, net_name: str, *, family: str, maps: str, domains: tuple[str, str], protocol: str
) -> dict[str, Any]:
    """Card fields for a generator users run with `img2img translate`; `maps` (AtoB | BtoA) is the
    way it translates in terms of the training folders' A and B."""
    kwargs = arch_kwargs(spec)
    with torch.device("meta"):
        net = spec.build()
    return {
        "metrics_protocol": protocol,
        "arch": spec.arch,
        "arch_kwargs": kwargs,
        "task": "translate",
        "scale": 1,
        "in_channels": int(kwargs.get("in_ch", 3)),
        "out_channels": int(kwargs.get("out_ch", 3)),
        "value_range": (-1.0, 1.0),
        "size_multiple": size_multiple(net),
        "receptive_radius": int(getattr(net, "receptive_radius", 16)),
        "description": f"{family} {net_name}: {domains[0]} -> {domains[1]}",
        "extra": {"family": family, "direction": f"{domains[0]} → {domains[1]}", "network": net_name,
                  "maps": maps, "train_mode_eval": False},
    }  # fmt: skip


def val_images(folder: str | Path, size: int, max_images: int) -> list[tuple[str, torch.Tensor]]:
    """(name, CHW float32 in [-1, 1]) for the first images of a folder, resized to size x size
    (0 = native size); unreadable files are skipped (and logged by the loader)."""
    from img2img.data.base import list_images, read_rgb
    from img2img.data.paired import ImageOptions, preprocess, to_model_tensor

    opts = ImageOptions(preprocess="resize_and_crop", load_size=size, crop_size=size, flip=False)
    out = []
    for path in list_images(folder, role="validation")[:max_images]:
        img = read_rgb(path)
        if img is None:
            continue
        if size:
            img = preprocess([img], opts, np.random.default_rng(0))[0]
        out.append((path.stem, to_model_tensor(img, 3)))
    return out


@dataclass
class TranslateVal:
    size: int = num(0, ge=0)  # resize held-out images to size x size first (0 = data.crop_size)
    max_images: int = num(100, gt=0)
    train_mode: bool = False  # evaluate with dropout on and batch statistics (how pix2pix's results were made)
