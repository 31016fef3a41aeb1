"""Released pix2pix / CycleGAN generators (`<epoch>_net_G.pth`, `latest_net_G_A.pth`) -> our format.
Their parameter names already are ours (`UNetGenerator`, `ResnetGenerator`); the detectors infer the
options from tensor shapes, drop the running statistics old files carry for InstanceNorm, and write
a `translate` card with value range [-1, 1]."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

import torch

from img2img.errors import WeightsError
from img2img.layers import RUNNING_STATS
from img2img.weights.format import Card

if TYPE_CHECKING:
    from img2img.weights.convert.common import Context

RESNET_LAYOUT = "pix2pix/CycleGAN ResNet generator (model.N, model.N.conv_block.M)"
UNET_LAYOUT = "pix2pix U-Net generator (nested model.model.1.model.3...)"
EXPECTED = "pix2pix/CycleGAN generators (ResNet model.N.conv_block.M, or U-Net model.model.0 + model.model.1...)"
FIRST_BLOCK = 10  # ResNet: pad, conv, norm, ReLU, then two (conv, norm, ReLU) before the blocks
_BLOCK = re.compile(r"model\.(\d+)\.conv_block\.\d+\.")
TRAIN_MODE_NOTE = (
    "the released pix2pix results were made with the generator in train mode (dropout on, batch statistics "
    "of the test batch); this card runs it in eval mode (running statistics, no dropout) unless inference "
    "is asked for train-mode evaluation, which changes the images"
)


def _conv_shape(sd: dict[str, torch.Tensor], key: str, layout: str) -> tuple[int, ...]:
    if key not in sd:
        raise WeightsError(f"{layout}: the file lacks {key!r}; expected {EXPECTED}")
    if sd[key].dim() != 4:
        raise WeightsError(f"{layout}: {key} should be a conv weight [out, in, k, k], not {list(sd[key].shape)}")
    return tuple(sd[key].shape)


def _prepare(
    sd: dict[str, torch.Tensor], arch: str, kwargs: dict[str, Any], layout: str, notes: list[str]
) -> dict[str, torch.Tensor]:
    """Reconcile norm buffers with `arch(**kwargs)`, check every key and shape, and return float32
    floating-point tensors (integer buffers such as `num_batches_tracked` stay int64)."""
    from img2img.archs import build_arch
    from img2img.weights.convert.common import check_fits

    with torch.device("meta"):  # names and shapes only
        own = build_arch(arch, **kwargs).state_dict()
    # Files from torch < 0.4 keep running statistics on InstanceNorm, which no longer has any.
    stale = [k for k in sd if k not in own and k.rsplit(".", 1)[-1] in RUNNING_STATS]
    if stale and kwargs.get("norm") == "instance":
        sd = {k: v for k, v in sd.items() if k not in set(stale)}
        notes.append(
            f"dropped {len(stale)} InstanceNorm running-statistic tensors (e.g. {stale[0]}) saved by an old "
            "PyTorch; instance norm uses per-image statistics, so they were never used"
        )
    # Files from torch < 0.4.1 predate BatchNorm's batch counter; torch itself starts it at 0 then.
    no_count = [k for k in own if k.endswith(".num_batches_tracked") and k not in sd]
    if no_count and all(k.rsplit(".", 1)[0] + ".running_mean" in sd for k in no_count):
        sd = {**sd, **{k: torch.zeros((), dtype=torch.long) for k in no_count}}
        notes.append(f"added {len(no_count)} BatchNorm num_batches_tracked counters (0) missing from the old file")
    check_fits(arch, kwargs, sd, layout)
    return {
        k: (v.detach().to(torch.float32) if v.is_floating_point() else v.detach().to(torch.long)).contiguous()
        for k, v in sd.items()
    }


def _card(
    arch: str,
    kwargs: dict[str, Any],
    ctx: Context,
    *,
    family: str,
    layout: str,
    multiple: int,
    radius: int,
    notes: list[str],
) -> Card:
    return Card(
        name=ctx.name,
        arch=arch,
        arch_kwargs=dict(kwargs),
        task="translate",
        scale=1,
        in_channels=int(kwargs["in_ch"]),
        out_channels=int(kwargs["out_ch"]),
        value_range=(-1.0, 1.0),
        size_multiple=multiple,
        receptive_radius=radius,
        source=ctx.source,
        extra={
            "family": family,
            "converted_from": layout,
            "train_mode_eval": False,  # recorded, never forced: an inference option (see notes)
            "notes": notes,
        },
    )


# ---------------------------------------------------------------- ResNet generator (CycleGAN)


def detect_junyanz_resnet(sd: dict[str, torch.Tensor], ctx: Context) -> tuple[dict, Card] | None:
    """`resnet_9blocks` / `resnet_6blocks` (any width and block count), with or without dropout."""
    if "model.1.weight" not in sd or not any(_BLOCK.match(k) for k in sd):
        return None
    layout = RESNET_LAYOUT
    ngf, in_ch, kh, kw = _conv_shape(sd, "model.1.weight", layout)
    if (kh, kw) != (7, 7):
        raise WeightsError(f"{layout}: model.1 should be the 7x7 input conv, found {kh}x{kw}")
    blocks = sorted({int(m.group(1)) for k in sd if (m := _BLOCK.match(k))})
    n_blocks = len(blocks)
    if blocks != list(range(FIRST_BLOCK, FIRST_BLOCK + n_blocks)):
        raise WeightsError(f"{layout}: residual blocks at model.{blocks}, expected consecutive model.10, model.11, ...")
    last = FIRST_BLOCK + n_blocks + 7  # two (ConvT, norm, ReLU) stages, then the reflection pad
    out_ch = _conv_shape(sd, f"model.{last}.weight", layout)[0]
    # Dropout sits between the block's two convs and moves the second one from index 5 to 6.
    use_dropout = f"model.{FIRST_BLOCK}.conv_block.6.weight" in sd
    norm = "batch" if "model.2.weight" in sd else "instance"  # only affine batch norm has weights
    kwargs = {"in_ch": in_ch, "out_ch": out_ch, "ngf": ngf, "n_blocks": n_blocks, "norm": norm}
    kwargs["use_dropout"] = use_dropout
    notes = [f"resnet_{n_blocks}blocks, ngf {ngf}, {norm} norm{', dropout' if use_dropout else ''}"]
    out = _prepare(sd, "ResnetGenerator", kwargs, layout, notes)
    if norm == "instance":
        notes.append(
            "instance norm normalises with each input's own statistics, so tiled inference (tile > 0) can "
            "shift tones between tiles; tile=0 processes the whole image at once"
        )
    card = _card(
        "ResnetGenerator", kwargs, ctx, family="cyclegan", layout=layout, multiple=4,
        radius=8 * n_blocks + 10, notes=notes,
    )  # fmt: skip
    return out, card


# ---------------------------------------------------------------- U-Net generator (pix2pix)


def _unet_level(k: int) -> str:
    """Sequential prefix of U-Net level k >= 1 (level 0 is the outermost, `model.model`)."""
    return "model.model.1" + ".model.3" * (k - 1) + ".model"


def detect_junyanz_unet(sd: dict[str, torch.Tensor], ctx: Context) -> tuple[dict, Card] | None:
    """`unet_256` / `unet_128` (any depth >= 5 and width); batch norm keeps its running statistics."""
    if "model.model.0.weight" not in sd:
        return None
    layout = UNET_LAYOUT
    ngf, in_ch = _conv_shape(sd, "model.model.0.weight", layout)[:2]
    out_ch = _conv_shape(sd, "model.model.3.weight", layout)[1]  # ConvTranspose: [in, out, k, k]
    depth = 0
    while f"{_unet_level(depth + 1)}.1.weight" in sd:
        depth += 1
    num_downs = depth + 1
    if num_downs < 5:
        raise WeightsError(f"{layout}: found {num_downs} down-sampling levels; the U-Net has at least 5")
    norm = "batch" if f"{_unet_level(1)}.2.weight" in sd else "instance"
    # Dropout has no parameters, so the file cannot tell; pix2pix trains with it by default.
    kwargs = {"in_ch": in_ch, "out_ch": out_ch, "num_downs": num_downs, "ngf": ngf, "norm": norm, "use_dropout": True}
    notes = [
        f"unet with {num_downs} downs (unet_{2**num_downs}), ngf {ngf}, {norm} norm; dropout assumed (it has no "
        "weights and acts only in train mode)",
        TRAIN_MODE_NOTE,
        f"the U-Net sees its whole input; tiled inference (tile > 0) blends tiles over {2**num_downs // 2} px, "
        "tile=0 processes the whole image at once",
    ]
    out = _prepare(sd, "UNetGenerator", kwargs, layout, notes)
    card = _card(
        "UNetGenerator", kwargs, ctx, family="pix2pix", layout=layout, multiple=2**num_downs,
        radius=2**num_downs // 2, notes=notes,
    )  # fmt: skip
    return out, card


DETECTORS = [detect_junyanz_unet, detect_junyanz_resnet]
