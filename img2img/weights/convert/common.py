"""What every converter shares: safe loading of released files (safetensors, or
`torch.load(weights_only=True)`), the wrappers releases put around a state dict, the detector
interface, and the shape checks that name the expected architecture."""

from __future__ import annotations

import os
import pickle
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from img2img.archs import build_arch
from img2img.errors import WeightsError, is_code_refusal, load_refusal, unpickler_reason
from img2img.weights.format import Card, fit_problems

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
        if is_code_refusal(e):
            raise WeightsError(
                load_refusal(
                    path,
                    "these weights",
                    e,
                    "Only plain state dicts of tensors are accepted: if you trust the "
                    "file, re-save it in an isolated environment with `torch.save(model.state_dict(), ...)` or "
                    "as .safetensors, then run `img2img convert` on that.",
                )  # fmt: skip
            ) from None
        reason = unpickler_reason(str(e)) or _first_line(e)
        raise WeightsError(f"{path}: not a readable PyTorch checkpoint ({reason})") from None
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
    problem = fit_problems(own, sd, arch)
    if problem:
        raise WeightsError(f"{layout} weights do not fit {arch}({kwargs}): {problem}")


def _shape(sd: dict[str, torch.Tensor], key: str, layout: str) -> tuple[int, ...]:
    """Shape of a conv weight that the layout requires."""
    if key not in sd:
        raise WeightsError(f"{layout} file lacks {key!r}")
    if sd[key].dim() != 4:
        raise WeightsError(f"{layout}: {key} should be a conv weight [out, in, k, k], not {list(sd[key].shape)}")
    return tuple(sd[key].shape)


def _fp32(sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k: v.detach().to(torch.float32).contiguous() for k, v in sd.items()}


def count_params(sd: dict[str, torch.Tensor]) -> int:
    return sum(v.numel() for v in sd.values())
