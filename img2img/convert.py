"""Released checkpoints -> our format. Loads safely (safetensors, or `torch.load(weights_only=True)`),
peels the wrappers releases use, and detects the architecture from key names and tensor shapes
(ESRGAN / Real-ESRGAN RRDBNet in all three naming generations, SRVGGNetCompact). ncnn: `img2img.ncnn`."""

from __future__ import annotations

import os
import pickle
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from img2img.archs import build_arch
from img2img.convert_junyanz import DETECTORS as JUNYANZ_DETECTORS
from img2img.convert_spade import DETECTORS as SPADE_DETECTORS
from img2img.errors import WeightsError
from img2img.weights import Card

PICKLE_SUFFIXES = (".pth", ".pt", ".ckpt", ".bin")
_PREFIXES = ("module.", "netG.")


@dataclass
class Context:
    """What a detector knows besides the tensors: names for the card and user hints."""

    name: str = "converted"
    source: str = ""
    act: str | None = None  # activation hint for compact nets whose file cannot tell (no PReLU weights)


# A detector returns None when the keys are not its family, and raises WeightsError when they are
# but the shapes do not add up. Later families (pix2pix, CycleGAN, SPADE, StackGAN) add one each.
Detector = Callable[[dict[str, torch.Tensor], Context], "tuple[dict[str, torch.Tensor], Card] | None"]


# ---------------------------------------------------------------- safe loading and wrappers


def load_state_dict_file(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Tensors of a .safetensors / .pth / .pt / .ckpt / .bin file, wrappers removed. Never unpickles code."""
    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"weights file not found: {path}")
    suffix = path.suffix.lower()
    if suffix == ".safetensors":
        from safetensors.torch import load_file

        try:
            return unwrap_state_dict(load_file(str(path)), str(path))
        except WeightsError:
            raise
        except Exception as e:  # safetensors raises several types for a bad header
            raise WeightsError(f"{path}: not a valid .safetensors file ({e})") from e
    if suffix not in PICKLE_SUFFIXES:
        raise WeightsError(
            f"{path}: unsupported weights file type {suffix!r}; expected .safetensors, "
            f"{', '.join(PICKLE_SUFFIXES)} or an ncnn .param (with its .bin beside it)"
        )
    try:
        obj = torch.load(str(path), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        if "weights only load failed" in str(e).lower():
            raise WeightsError(
                f"{path}: refused: the file tries to run code or holds non-tensor objects "
                "(pickled classes/functions), so it was not loaded. Only plain state dicts of tensors are "
                "accepted; re-save it with torch.save(model.state_dict(), ...) in a trusted environment"
            ) from None
        raise WeightsError(f"{path}: not a readable PyTorch checkpoint ({_first_line(e)})") from None
    except Exception as e:  # torch raises RuntimeError/KeyError/EOFError/... for damaged files
        raise WeightsError(
            f"{path}: not a readable PyTorch checkpoint (damaged or truncated?): {_first_line(e)}"
        ) from None
    return unwrap_state_dict(obj, str(path))


def _first_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return f"{type(e).__name__}: {text[0][:200]}" if text else type(e).__name__


def unwrap_state_dict(obj: Any, origin: str = "checkpoint") -> dict[str, torch.Tensor]:
    """Peel `params_ema`/`params`, mmagic `state_dict` (generator_ema preferred), `model`, and
    `module.` / `netG.` prefixes; return the plain name -> tensor dict."""
    for _ in range(4):  # wrappers nest at most a few levels deep
        if not isinstance(obj, dict):
            raise WeightsError(f"{origin}: expected a dict of tensors, found {type(obj).__name__}")
        if isinstance(obj.get("params_ema"), dict):
            obj = obj["params_ema"]
        elif isinstance(obj.get("params"), dict):
            obj = obj["params"]
        elif isinstance(obj.get("state_dict"), dict):
            obj = _pick_generator(obj["state_dict"])
        elif isinstance(obj.get("model"), dict) and not _all_tensors(obj):
            obj = obj["model"]
        else:
            break
    sd = {str(k): v for k, v in obj.items() if isinstance(v, torch.Tensor)}
    if not sd:
        raise WeightsError(f"{origin}: holds no tensors (top-level keys: {list(obj)[:8]})")
    for prefix in _PREFIXES:
        if all(k.startswith(prefix) for k in sd):
            sd = {k[len(prefix) :]: v for k, v in sd.items()}
    return sd


def _all_tensors(d: dict) -> bool:
    return all(isinstance(v, torch.Tensor) for v in d.values())


def _pick_generator(sd: dict) -> dict:
    # mmagic keeps G, its EMA copy and D in one dict; the EMA generator is the released one.
    for prefix in ("generator_ema.", "generator."):
        picked = {k[len(prefix) :]: v for k, v in sd.items() if str(k).startswith(prefix)}
        if picked:
            return picked
    return sd


# ---------------------------------------------------------------- shared helpers


def upscale_card(
    arch: str,
    arch_kwargs: dict[str, Any],
    ctx: Context,
    *,
    scale: int,
    size_multiple: int = 1,
    receptive_radius: int = 16,
    layout: str = "",
    extra: dict[str, Any] | None = None,
) -> Card:
    """The card of a converted super-resolution network (inputs/outputs in [0, 1])."""
    return Card(
        name=ctx.name,
        arch=arch,
        arch_kwargs=dict(arch_kwargs),
        task="upscale",
        scale=scale,
        in_channels=int(arch_kwargs.get("in_ch", 3)),
        out_channels=int(arch_kwargs.get("out_ch", 3)),
        value_range=(0.0, 1.0),
        size_multiple=size_multiple,
        receptive_radius=receptive_radius,
        source=ctx.source,
        extra={"converted_from": layout, **(extra or {})},
    )


def check_fits(arch: str, kwargs: dict[str, Any], sd: dict[str, torch.Tensor], layout: str) -> None:
    """Raise WeightsError unless `sd` has exactly the keys and shapes of `arch(**kwargs)`."""
    with torch.device("meta"):  # shapes only: no memory, no init cost
        own = build_arch(arch, **kwargs).state_dict()
    missing = [k for k in own if k not in sd]
    unexpected = [k for k in sd if k not in own]
    bad = [
        f"{k} {tuple(sd[k].shape)} != {tuple(own[k].shape)}"
        for k in own
        if k in sd and sd[k].shape != own[k].shape
    ]
    if missing or unexpected or bad:
        raise WeightsError(
            f"{layout} weights do not fit {arch}({kwargs}): missing {missing[:3]}, "
            f"unexpected {unexpected[:3]}, shape mismatch {bad[:3]}"
        )


def _shape(sd: dict[str, torch.Tensor], key: str, layout: str) -> tuple[int, ...]:
    """Shape of a conv weight that the layout requires."""
    if key not in sd:
        raise WeightsError(f"{layout} file lacks {key!r}")
    if sd[key].dim() != 4:
        raise WeightsError(
            f"{layout}: {key} should be a conv weight [out, in, k, k], not {list(sd[key].shape)}"
        )
    return tuple(sd[key].shape)


def _fp32(sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k: v.detach().to(torch.float32).contiguous() for k, v in sd.items()}


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
    card = upscale_card(
        "SRVGGNetCompact", kwargs, ctx, scale=scale, receptive_radius=num_conv + 2, layout=layout
    )
    return sd, card


DETECTORS: list[Detector] = [detect_rrdb_basicsr, detect_rrdb_esrgan, detect_rrdb_old, detect_srvgg, *JUNYANZ_DETECTORS]
DETECTORS += SPADE_DETECTORS


# ---------------------------------------------------------------- public entry points


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
        "RRDB_trunk.N.RDBN / model.1.sub.N.RDBN) or SRVGGNetCompact (body.N convs + PReLU); "
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

        from img2img.weights import CARD_KEY, load_weights

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


def read_ncnn(
    param_path: str | os.PathLike, bin_path: str | os.PathLike
) -> tuple[dict[str, torch.Tensor], Card]:
    """Read an ncnn RRDBNet / SRVGGNetCompact model (`.param` text + `.bin` weights)."""
    from img2img.ncnn import read_ncnn as _read

    return _read(param_path, bin_path)


def count_params(sd: dict[str, torch.Tensor]) -> int:
    return sum(v.numel() for v in sd.values())
