"""Released StackGAN PyTorch generators (`netG_epoch_N.pth`, Zhang et al. 2017) -> our format. Their tensor
names already are `StageIGenerator`'s / `StageIIGenerator`'s (`ca_net.fc`, `fc.0`/`fc.1`, `upsample{k}`,
`img.0`; Stage II adds `STAGE1_G.*`, `encoder`, `hr_joint`, `residual.{r}.block`); the detector infers
every size from tensor shapes and writes a `generate` card that takes embeddings (the release's
char-CNN-RNN text encoder is not part of the file: pass 1024-d embeddings, one row per prompt)."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

import torch

from img2img.errors import WeightsError
from img2img.weights.format import Card

if TYPE_CHECKING:
    from img2img.weights.convert.common import Context

LAYOUT = "StackGAN generator (ca_net.fc, fc.0, upsample1..N, img.0; Stage II: STAGE1_G.*, encoder, hr_joint)"


def _shape(sd: dict[str, torch.Tensor], key: str, dims: int) -> tuple[int, ...]:
    if key not in sd:
        raise WeightsError(f"{LAYOUT}: the file lacks {key!r}")
    if sd[key].dim() != dims:
        raise WeightsError(f"{LAYOUT}: {key} should have {dims} dimensions, not shape {list(sd[key].shape)}")
    return tuple(sd[key].shape)


def _count(sd: dict[str, torch.Tensor], pattern: str) -> int:
    found = {int(m.group(1)) for k in sd if (m := re.match(pattern, k))}
    if found and found != set(range(min(found), max(found) + 1)):
        raise WeightsError(f"{LAYOUT}: blocks {sorted(found)} are not consecutive ({pattern})")
    return len(found)


def _stage1_kwargs(sd: dict[str, torch.Tensor], prefix: str = "") -> dict[str, Any]:
    two_c, t_dim = _shape(sd, f"{prefix}ca_net.fc.weight", 2)
    rows, cols = _shape(sd, f"{prefix}fc.0.weight", 2)
    if two_c % 2 or rows % 128:
        raise WeightsError(f"{LAYOUT}: {prefix}ca_net.fc {two_c}x{t_dim} / {prefix}fc.0 {rows}x{cols} do not add up")
    c_dim = two_c // 2
    n_up = _count(sd, rf"{re.escape(prefix)}upsample(\d+)\.1\.weight$")
    if n_up < 1:
        raise WeightsError(f"{LAYOUT}: no {prefix}upsample1.1.weight: not a StackGAN Stage-I generator")
    return {"t_dim": t_dim, "c_dim": c_dim, "z_dim": cols - c_dim, "gf": rows // 128, "image_size": 4 * 2**n_up}


def _stage2_kwargs(sd: dict[str, torch.Tensor]) -> dict[str, Any]:
    stage1 = _stage1_kwargs(sd, "STAGE1_G.")
    gf = _shape(sd, "encoder.0.weight", 4)[0]
    two_c, _t = _shape(sd, "ca_net.fc.weight", 2)
    n_up = _count(sd, r"upsample(\d+)\.1\.weight$")
    if n_up < 2:
        raise WeightsError(f"{LAYOUT}: a Stage-II generator has at least two up-blocks, this one {n_up}")
    return {"stage1": stage1, "gf": gf, "c_dim": two_c // 2, "r_num": _count(sd, r"residual\.(\d+)\.block\.0\.weight$"),
            "up_factor": 2 ** (n_up - 2)}  # fmt: skip


def detect_stackgan(sd: dict[str, torch.Tensor], ctx: Context) -> tuple[dict, Card] | None:
    """A Stage-I (`ca_net.fc` + `fc.0` + `upsample1`) or Stage-II (`STAGE1_G.` + `hr_joint`) generator."""
    if "ca_net.fc.weight" not in sd or not ("fc.0.weight" in sd or "STAGE1_G.fc.0.weight" in sd):
        return None
    from img2img.archs.stackgan import StageIGenerator, StageIIGenerator

    two = any(k.startswith("STAGE1_G.") for k in sd)
    kwargs = _stage2_kwargs(sd) if two else _stage1_kwargs(sd)
    try:
        with torch.device("meta"):
            net = StageIIGenerator(**kwargs) if two else StageIGenerator(**kwargs)
    except ValueError as e:
        raise WeightsError(f"{LAYOUT}: sizes inferred from the file do not make a generator: {e}") from None
    own = net.state_dict()
    extra = sorted(set(sd) - set(own) - {k for k in sd if k.endswith("num_batches_tracked")})
    missing = sorted(set(own) - set(sd) - {k for k in own if k.endswith("num_batches_tracked")})
    wrong = [k for k in own if k in sd and tuple(own[k].shape) != tuple(sd[k].shape)]
    if extra or missing or wrong:
        raise WeightsError(
            f"{LAYOUT}: the file does not fit a generator with {kwargs}: "
            f"missing {missing[:4]}, unexpected {extra[:4]}, wrong shapes {wrong[:4]}"
        )
    out = {k: v.detach().to(torch.float32 if v.is_floating_point() else torch.long).contiguous() for k, v in sd.items()}
    for k in own:  # older torch saved batch norm without the counter
        if k.endswith("num_batches_tracked") and k not in out:
            out[k] = torch.zeros((), dtype=torch.long)
    s1 = kwargs["stage1"] if two else kwargs
    size1 = int(s1["image_size"])
    stages = [{"stage": 1, "module": "STAGE1_G" if two else "", "output": 0, "size": size1}]
    size = size1
    if two:
        size = size1 * int(kwargs["up_factor"])  # Stage II: the Stage-I size x up_factor
        stages.append({"stage": 2, "module": "", "output": 1, "size": size})
    card = Card(
        name=ctx.name, arch="StageIIGenerator" if two else "StageIGenerator", arch_kwargs=kwargs, task="generate",
        value_range=(-1.0, 1.0), size_multiple=1, receptive_radius=0, source=ctx.source,
        inputs={"embedding_dim": int(s1["t_dim"]), "noise_dim": int(s1["z_dim"]), "stages": stages, "tokenizer": {}},
        output={"size": "fixed", "height": size, "width": size},
        extra={"family": "stackgan", "converted_from": LAYOUT, "stage": 2 if two else 1,
               "notes": ["embeddings only: the release's char-CNN-RNN text encoder is not in the file"]},
    )  # fmt: skip
    return out, card


DETECTORS = [detect_stackgan]
