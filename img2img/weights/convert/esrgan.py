"""ESRGAN / Real-ESRGAN RRDBNet in its three naming generations, and Real-ESRGAN SRVGGNetCompact:
hyperparameters from tensor shapes (see OFFICIAL_FORMATS)."""

from __future__ import annotations

import re

import torch

from img2img.errors import WeightsError
from img2img.weights.convert.common import Context, _fp32, _shape, check_fits, upscale_card
from img2img.weights.format import Card

# ---------------------------------------------------------------- RRDBNet (ESRGAN / Real-ESRGAN)


def _rrdb_from_basicsr(sd: dict[str, torch.Tensor], ctx: Context, layout: str) -> tuple[dict, Card]:
    """`sd` already uses our (BasicSR) names: infer nf/nb/gc/scale/channels, validate, build the card."""
    nf, cin = _shape(sd, "conv_first.weight", layout)[:2]
    out_ch = _shape(sd, "conv_last.weight", layout)[0]
    gc = _shape(sd, "body.0.rdb1.conv1.weight", layout)[0]
    nb = len({m.group(1) for k in sd if (m := re.match(r"body\.(\d+)\.", k))})
    n_up = len({m.group(1) for k in sd if (m := re.match(r"conv_up(\d+)\.weight$", k))})
    ratio = cin // out_ch if out_ch and cin % out_ch == 0 else 0
    unshuffle = {1: 1, 4: 2, 16: 4}.get(ratio)
    if unshuffle is None:
        raise WeightsError(
            f"{layout} RRDBNet: conv_first takes {cin} channels for {out_ch} output channels; expected "
            f"{out_ch} (x4/x8), {4 * out_ch} (x2 pixel-unshuffle) or {16 * out_ch} (x1 pixel-unshuffle)"
        )
    if n_up not in (2, 3) or (unshuffle > 1 and n_up != 2):
        raise WeightsError(
            f"{layout} RRDBNet has {n_up} upsampling convs; supported: 2 (x4 body, also used by the x2/x1 "
            "pixel-unshuffle models) or 3 (x8)"
        )
    # The x2 / x1 releases pixel-unshuffle by 2 / 4 in front of an unchanged x4 body.
    scale = 4 // unshuffle if unshuffle > 1 else (8 if n_up == 3 else 4)
    kwargs = {"in_ch": cin // unshuffle**2, "out_ch": out_ch, "nf": nf, "nb": nb, "gc": gc, "scale": scale}
    sd = _fp32(sd)
    check_fits("RRDBNet", kwargs, sd, layout)
    card = upscale_card("RRDBNet", kwargs, ctx, scale=scale, size_multiple=unshuffle, layout=layout)
    return sd, card


def detect_rrdb_basicsr(sd: dict[str, torch.Tensor], ctx: Context) -> tuple[dict, Card] | None:
    if "conv_first.weight" not in sd or "body.0.rdb1.conv1.weight" not in sd:
        return None
    return _rrdb_from_basicsr(sd, ctx, "BasicSR RRDBNet (body.N.rdbN)")


_ESRGAN_RENAMES = [
    (re.compile(r"^RRDB_trunk\.(\d+)\.RDB(\d)\.conv(\d)\."), r"body.\1.rdb\2.conv\3."),
    (re.compile(r"^trunk_conv\."), "conv_body."),
    (re.compile(r"^upconv(\d)\."), r"conv_up\1."),
    (re.compile(r"^HRconv\."), "conv_hr."),
]


def detect_rrdb_esrgan(sd: dict[str, torch.Tensor], ctx: Context) -> tuple[dict, Card] | None:
    if "RRDB_trunk.0.RDB1.conv1.weight" not in sd:
        return None
    out = {}
    for key, value in sd.items():
        for pattern, repl in _ESRGAN_RENAMES:
            key = pattern.sub(repl, key)
        out[key] = value
    return _rrdb_from_basicsr(out, ctx, "ESRGAN RRDBNet (RRDB_trunk/trunk_conv/upconv/HRconv)")


def detect_rrdb_old(sd: dict[str, torch.Tensor], ctx: Context) -> tuple[dict, Card] | None:
    if "model.0.weight" not in sd or "model.1.sub.0.RDB1.conv1.0.weight" not in sd:
        return None
    layout = "old-arch ESRGAN RRDBNet (model.N)"
    top = sorted({int(m.group(1)) for k in sd if (m := re.match(r"model\.(\d+)\.weight$", k))})
    n_up = (top[-1] - 4) // 3 if top else 0
    # Old-arch layout: upsample convs at 3t (t = 1..n_up), HR conv at 3n+2, last conv at 3n+4.
    expected = [0] + [3 * t for t in range(1, n_up + 1)] + [3 * n_up + 2, 3 * n_up + 4]
    if n_up < 1 or top != expected:
        raise WeightsError(f"{layout}: top-level convs at model.{top}, expected model.{expected}")
    nb = len({m.group(1) for k in sd if (m := re.match(r"model\.1\.sub\.(\d+)\.RDB", k))})
    names = {0: "conv_first", 3 * n_up + 2: "conv_hr", 3 * n_up + 4: "conv_last"}
    names.update({3 * t: f"conv_up{t}" for t in range(1, n_up + 1)})
    out = {}
    for key, value in sd.items():
        if m := re.match(r"model\.1\.sub\.(\d+)\.RDB(\d)\.conv(\d)\.0\.(weight|bias)$", key):
            key = f"body.{m.group(1)}.rdb{m.group(2)}.conv{m.group(3)}.{m.group(4)}"
        elif m := re.match(rf"model\.1\.sub\.{nb}\.(weight|bias)$", key):
            key = f"conv_body.{m.group(1)}"
        elif (m := re.match(r"model\.(\d+)\.(weight|bias)$", key)) and int(m.group(1)) in names:
            key = f"{names[int(m.group(1))]}.{m.group(2)}"
        out[key] = value
    return _rrdb_from_basicsr(out, ctx, layout)


# ---------------------------------------------------------------- SRVGGNetCompact (Real-ESRGAN)


def detect_srvgg(sd: dict[str, torch.Tensor], ctx: Context) -> tuple[dict, Card] | None:
    if "body.0.weight" not in sd or len(sd["body.0.weight"].shape) != 4 or "conv_first.weight" in sd:
        return None
    layout = "Real-ESRGAN SRVGGNetCompact (body.N)"
    convs = sorted(
        int(m.group(1)) for k, v in sd.items() if (m := re.match(r"body\.(\d+)\.weight$", k)) and v.dim() == 4
    )
    last = convs[-1]
    # Convs sit at even indices, activations (PReLU with weights, or parameter-free) at odd ones.
    if last < 2 or last % 2 or convs != list(range(0, last + 1, 2)):
        raise WeightsError(f"{layout}: convs at body.{convs}, expected body.0, body.2, ..., body.2n+2")
    num_conv = (last - 2) // 2
    nf, in_ch = _shape(sd, "body.0.weight", layout)[:2]
    last_out = _shape(sd, f"body.{last}.weight", layout)[0]
    out_ch = in_ch  # the output is added to the upsampled input
    scale = round((last_out / out_ch) ** 0.5)
    if scale < 1 or out_ch * scale * scale != last_out:
        raise WeightsError(f"{layout}: last conv has {last_out} outputs, not {in_ch} x scale^2")
    if "body.1.weight" in sd:
        act = "prelu"
    elif ctx.act in ("relu", "lrelu"):
        act = ctx.act
    else:
        raise WeightsError(
            f"{layout}: the file has no PReLU weights, so its activation (ReLU or LeakyReLU 0.1) is not "
            "stored in it; say which with act='relu' or act='lrelu' (`img2img convert --act ...`)"
        )
    kwargs = {"in_ch": in_ch, "out_ch": out_ch, "nf": nf, "num_conv": num_conv, "scale": scale, "act": act}
    sd = _fp32(sd)
    check_fits("SRVGGNetCompact", kwargs, sd, layout)
    # Every 3x3 conv widens the receptive field by one low-res pixel: the exact context a tile needs.
    card = upscale_card("SRVGGNetCompact", kwargs, ctx, scale=scale, receptive_radius=num_conv + 2, layout=layout)
    return sd, card


DETECTORS = [detect_rrdb_basicsr, detect_rrdb_esrgan, detect_rrdb_old, detect_srvgg]
