"""Released NVlabs SPADE / GauGAN generators (`<epoch>_net_G.pth`, Park et al. 2019) -> our format.
Their names already are `SPADEGenerator`'s; the detector infers the options from tensor shapes, bakes
spectral normalisation into plain weights (W = W_orig / σ, σ = uᵀ W_orig v with the stored u, v, as torch
computes it in eval mode), keeps the batch-norm running statistics, and writes a `synthesize` card."""

from __future__ import annotations

import math
import re
from typing import TYPE_CHECKING, Any

import torch

from img2img.archs.spade import UPSAMPLING_LAYERS
from img2img.errors import WeightsError
from img2img.weights.format import Card

if TYPE_CHECKING:
    from img2img.weights.convert.common import Context

ARCH = "SPADEGenerator"
LAYOUT = "NVlabs SPADE generator (fc, head_0, G_middle_0/1, up_0..up_3[, up_4], conv_img)"
CITYSCAPES_SEMANTIC_NC = 36  # 35 labels + instance edges; the release trains Cityscapes with `more`
SPECTRAL_SUFFIXES = ("_orig", "_u", "_v")


# ---------------------------------------------------------------- spectral norm


def bake_spectral_norm(sd: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], int]:
    """Replace every `p.weight_orig` / `p.weight_u` / `p.weight_v` triple by `p.weight` = W_orig / σ.

    σ = uᵀ · W_orig.reshape(out, -1) · v with the stored vectors: exactly the weight torch's
    `spectral_norm` uses in eval mode (no power iteration). Computed in float64, stored as float32.
    Returns the new dict and the number of baked layers.
    """
    out = dict(sd)
    origs = [k[: -len("_orig")] for k in sd if k.endswith(".weight_orig")]
    for key in origs:
        missing = [key + s for s in ("_u", "_v") if key + s not in sd]
        if missing:
            raise WeightsError(f"{LAYOUT}: {key}_orig is spectrally normalised but the file lacks {missing}")
        w, u, v = (sd[key + s].detach().to(torch.float64) for s in SPECTRAL_SUFFIXES)
        mat = w.reshape(w.shape[0], -1)
        if u.shape != (mat.shape[0],) or v.shape != (mat.shape[1],):
            raise WeightsError(
                f"{LAYOUT}: {key}_u {list(u.shape)} / _v {list(v.shape)} do not fit {key}_orig {list(w.shape)}"
            )
        sigma = torch.dot(u, mat @ v)
        if not torch.isfinite(sigma) or sigma.abs() < 1e-12:
            raise WeightsError(f"{LAYOUT}: {key} has a degenerate spectral norm ({sigma.item():g})")
        for s in SPECTRAL_SUFFIXES:
            del out[key + s]
        out[key] = (w / sigma).to(torch.float32)
    return out, len(origs)


# ---------------------------------------------------------------- shape inference


def _shape(sd: dict[str, torch.Tensor], key: str, dims: int) -> tuple[int, ...]:
    if key not in sd:
        raise WeightsError(f"{LAYOUT}: the file lacks {key!r}; expected a SPADE generator state dict")
    if sd[key].dim() != dims:
        raise WeightsError(f"{LAYOUT}: {key} should have {dims} dimensions, not shape {list(sd[key].shape)}")
    return tuple(sd[key].shape)


def _vae_grid(cells: int, aspect_ratio: float | None) -> tuple[int, int]:
    """(sh, sw) with sh · sw = cells for the VAE's Linear layer; the file stores only the product."""
    ratios = [aspect_ratio] if aspect_ratio else [1.0, 2.0]  # square, then the Cityscapes 2:1 release
    for ratio in ratios:
        sh = round(math.sqrt(cells / ratio))
        sw = round(sh * ratio)
        if sh >= 1 and sh * sw == cells:
            return sh, sw
    raise WeightsError(
        f"{LAYOUT}: the VAE generator's fc makes a grid of {cells} cells, which is not "
        f"{f'a {aspect_ratio:g}:1' if aspect_ratio else 'a square or 2:1'} (W:H) grid; convert with "
        "img2img.convert_spade.spade_generator_from_state_dict(sd, ctx, aspect_ratio=W/H) naming the "
        "training --aspect_ratio"
    )


def _infer_kwargs(
    sd: dict[str, torch.Tensor], num_upsampling_layers: str | None, aspect_ratio: float | None, notes: list[str]
) -> dict[str, Any]:
    hidden, semantic_nc, kernel = _shape(sd, "head_0.norm_0.mlp_shared.0.weight", 4)[:3]
    width = _shape(sd, "head_0.conv_0.weight", 4)[0]
    if width % 16:
        raise WeightsError(f"{LAYOUT}: head_0 is {width} channels wide, not 16 x ngf")
    ngf = width // 16
    out_ch = _shape(sd, "conv_img.weight", 4)[0]
    if "up_4.conv_0.weight" in sd:
        mode = "most"
    elif num_upsampling_layers:
        mode = num_upsampling_layers
    else:
        # `normal` and `more` differ only by a parameter-free upsampling step: the file cannot tell.
        mode = "more" if semantic_nc == CITYSCAPES_SEMANTIC_NC else "normal"
        why = "semantic_nc 36, as the Cityscapes release" if mode == "more" else "the release default"
        notes.append(
            f"num_upsampling_layers {mode!r} assumed ({why}); "
            "`normal` and `more` have identical tensors, so if the model was trained with the other one, convert "
            "with spade_generator_from_state_dict(sd, ctx, num_upsampling_layers=...)"
        )
    if mode not in UPSAMPLING_LAYERS or (mode == "most") != ("up_4.conv_0.weight" in sd):
        raise WeightsError(
            f"{LAYOUT}: num_upsampling_layers {mode!r} does not fit the file "
            f"({'has' if 'up_4.conv_0.weight' in sd else 'has no'} up_4, which only `most` has)"
        )
    param_free = "batch" if "head_0.norm_0.param_free_norm.running_mean" in sd else "instance"
    kwargs: dict[str, Any] = {"label_nc": semantic_nc, "ngf": ngf, "num_upsampling_layers": mode}
    fc = sd.get("fc.weight")
    if fc is not None and fc.dim() == 2:  # Linear(z_dim -> 16·ngf·sh·sw): the VAE variant
        rows, z_dim = fc.shape
        if rows % width:
            raise WeightsError(f"{LAYOUT}: the VAE fc has {rows} outputs, not a multiple of 16 x ngf = {width}")
        sh, sw = _vae_grid(rows // width, aspect_ratio)
        steps = UPSAMPLING_LAYERS[mode]
        kwargs.update(use_vae=True, z_dim=z_dim, crop_size=sw * 2**steps, aspect_ratio=sw / sh)
        notes.append(f"VAE generator: z_dim {z_dim}, base grid {sh}x{sw}, output {sh * 2**steps}x{sw * 2**steps}")
    kwargs.update(spectral=False, param_free=param_free, hidden=hidden, kernel=kernel, out_ch=out_ch)
    return kwargs


def receptive_radius(num_upsampling_layers: str, kernel: int = 3) -> int:
    """Upper bound (output pixels) of how far a label pixel reaches: it enters at the coarsest grid
    (nearest resize, then a SPADE's two convs), then passes both convs of every block and every x2 step."""
    n, r = UPSAMPLING_LAYERS[num_upsampling_layers], kernel // 2
    middle = n - 1 if n == 5 else n - 2  # `more` / `most` upsample between the middle blocks
    block_scales = [2**n, 2 ** (n - 1)] + [2**s for s in range(middle, -1, -1)]
    return 2**n * (1 + 2 * r) + 2 * r * sum(block_scales) + (2 ** (n + 1) - 2) + r


# ---------------------------------------------------------------- detector


def _reconcile_buffers(sd: dict[str, torch.Tensor], kwargs: dict[str, Any], notes: list[str]) -> dict:
    """Add the BatchNorm batch counters files from torch < 0.4.1 lack (torch starts them at 0 too)."""
    from img2img.archs import build_arch

    with torch.device("meta"):  # names only
        own = build_arch(ARCH, **kwargs).state_dict()
    no_count = [k for k in own if k.endswith(".num_batches_tracked") and k not in sd]
    if no_count and all(k.rsplit(".", 1)[0] + ".running_mean" in sd for k in no_count):
        sd = {**sd, **{k: torch.zeros((), dtype=torch.long) for k in no_count}}
        notes.append(f"added {len(no_count)} BatchNorm num_batches_tracked counters (0) missing from the old file")
    return sd


def spade_generator_from_state_dict(
    sd: dict[str, torch.Tensor],
    ctx: Context,
    *,
    num_upsampling_layers: str | None = None,
    aspect_ratio: float | None = None,
) -> tuple[dict[str, torch.Tensor], Card]:
    """Convert a SPADE generator state dict. `num_upsampling_layers` (`normal`/`more`, which the
    tensors cannot tell apart) and `aspect_ratio` (W / H of a VAE generator's grid) override guesses."""
    from img2img.weights.convert.common import check_fits

    notes: list[str] = []
    sd, baked = bake_spectral_norm(sd)
    if baked:
        notes.append(f"baked spectral normalisation of {baked} convs into plain weights (W_orig / sigma)")
    kwargs = _infer_kwargs(sd, num_upsampling_layers, aspect_ratio, notes)
    if kwargs["param_free"] == "batch":
        notes.append("batch norm (sync batch norm in the release) runs with its stored running statistics")
    sd = _reconcile_buffers(sd, kwargs, notes)
    check_fits(ARCH, kwargs, sd, LAYOUT)
    sd = {
        k: (v.detach().to(torch.float32) if v.is_floating_point() else v.detach().to(torch.long)).contiguous()
        for k, v in sd.items()
    }
    mode, vae = kwargs["num_upsampling_layers"], kwargs.get("use_vae", False)
    card = Card(
        name=ctx.name,
        arch=ARCH,
        arch_kwargs=dict(kwargs),
        task="synthesize",
        scale=1,
        in_channels=int(kwargs["label_nc"]),
        out_channels=int(kwargs["out_ch"]),
        value_range=(-1.0, 1.0),
        size_multiple=1 if vae else 2 ** UPSAMPLING_LAYERS[mode],
        receptive_radius=receptive_radius(mode, int(kwargs["kernel"])),
        source=ctx.source,
        extra={"family": "spade", "converted_from": LAYOUT, "semantic_nc": int(kwargs["label_nc"]), "notes": notes},
    )
    return sd, card


def detect_spade(sd: dict[str, torch.Tensor], ctx: Context) -> tuple[dict, Card] | None:
    """A released SPADE generator: `conv_img` plus SPADE residual blocks named `head_0.*`."""
    if "conv_img.weight" not in sd or not any(re.match(r"head_0\.(conv|norm)_", k) for k in sd):
        return None
    return spade_generator_from_state_dict(sd, ctx)


DETECTORS = [detect_spade]
