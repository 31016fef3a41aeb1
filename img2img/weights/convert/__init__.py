"""Released checkpoints -> our format: one module per source family (`esrgan`, `ncnn`, `junyanz`, `spade`, `stackgan`),
their shared loading and checks in `common`. `convert_file` takes any supported file; each family's
detector returns None for keys that are not its own and raises WeightsError for broken ones."""

from __future__ import annotations

import os
from pathlib import Path

import torch

from img2img.errors import WeightsError
from img2img.weights.convert import esrgan, junyanz, spade, stackgan
from img2img.weights.convert.common import Context, Detector, count_params, load_state_dict_file, unwrap_state_dict
from img2img.weights.format import Card

__all__ = [
    "DETECTORS",
    "Context",
    "convert_file",
    "convert_state_dict",
    "count_params",
    "load_state_dict_file",
    "read_ncnn",
    "unwrap_state_dict",
]

DETECTORS: list[Detector] = [*esrgan.DETECTORS, *junyanz.DETECTORS, *spade.DETECTORS, *stackgan.DETECTORS]


def convert_state_dict(
    sd: dict, *, name: str = "converted", source: str = "", act: str | None = None
) -> tuple[dict[str, torch.Tensor], Card]:
    """Detect the architecture of a (possibly wrapped) state dict; return our state dict and its card."""
    sd = unwrap_state_dict(sd, source or name)
    ctx = Context(name=name, source=source, act=act)
    for detect in DETECTORS:
        found = detect(sd, ctx)
        if found is not None:
            return found
    head = ", ".join(f"{k} {list(v.shape)}" for k, v in list(sd.items())[:6])
    raise WeightsError(
        f"{source or name}: unknown checkpoint layout. Expected RRDBNet (conv_first + body.N.rdbN / "
        "RRDB_trunk.N.RDBN / model.1.sub.N.RDBN), SRVGGNetCompact (body.N convs + PReLU), a pix2pix/CycleGAN "
        "generator (model.N... / model.model.N...), an NVlabs SPADE generator (fc + head_0 + conv_img) or a StackGAN "
        "generator (ca_net.fc + fc.0 + upsampleN); "
        f"the file has {len(sd)} tensors starting with: {head}"
    )


def convert_file(
    path: str | os.PathLike, *, name: str | None = None, act: str | None = None
) -> tuple[dict[str, torch.Tensor], Card]:
    """Convert any supported file: .safetensors (ours or bare), .pth/.pt/.ckpt/.bin, ncnn .param (+ .bin)."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix == ".param" or (suffix == ".bin" and path.with_suffix(".param").is_file()):
        sd, card = read_ncnn(path.with_suffix(".param"), path.with_suffix(".bin"))
        if name:
            card.name = name
        return sd, card
    if suffix == ".safetensors" and path.is_file():
        from safetensors import safe_open

        from img2img.weights.format import CARD_KEY, load_weights

        try:
            with safe_open(str(path), framework="pt") as f:
                has_card = CARD_KEY in (f.metadata() or {})
        except Exception as e:
            raise WeightsError(f"{path}: not a valid .safetensors file ({e})") from e
        if has_card or path.with_suffix(".json").is_file():
            sd, card = load_weights(path)
            if name:
                card.name = name
            return sd, card
    sd = load_state_dict_file(path)
    return convert_state_dict(sd, name=name or path.stem, source=path.name, act=act)


def read_ncnn(param_path: str | os.PathLike, bin_path: str | os.PathLike) -> tuple[dict[str, torch.Tensor], Card]:
    """Read an ncnn RRDBNet / SRVGGNetCompact model (`.param` text + `.bin` weights)."""
    from img2img.weights.convert.ncnn import read_ncnn as _read

    return _read(param_path, bin_path)
