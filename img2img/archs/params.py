"""The declared keyword arguments of every architecture in `ARCHS`: each argument's type and range (or
allowed values). Weights cards come from files anyone can write, so a card's `arch_kwargs` are checked
against these before a network is built (`check_arch_kwargs`); the bounds are generous for real use and
keep a hostile card (`nb: 100000`, `nf: 1e7`) from building anything at all."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from img2img.layers import NORMS

WIDTH = (1, 4096)  # channels of a conv / linear layer
CHANNELS = (1, 64)  # image channels in or out


@dataclass(frozen=True)
class Int:
    lo: int
    hi: int
    power_of_two: bool = False

    def problem(self, v: Any) -> str:
        if isinstance(v, bool) or not isinstance(v, int):
            return f"must be a whole number, not {v!r}"
        if not self.lo <= v <= self.hi:
            return f"must be in {self.lo}..{self.hi}, not {v}"
        if self.power_of_two and v & (v - 1):
            return f"must be a power of two in {self.lo}..{self.hi}, not {v}"
        return ""


@dataclass(frozen=True)
class Optional:
    """`rule`, or null for the arch's own default (e.g. Stage-II's c_dim: Stage I's)."""

    rule: Any

    def problem(self, v: Any) -> str:
        return "" if v is None else self.rule.problem(v)


@dataclass(frozen=True)
class Float:
    lo: float
    hi: float

    def problem(self, v: Any) -> str:
        if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v):
            return f"must be a finite number, not {v!r}"
        return "" if self.lo <= v <= self.hi else f"must be in [{self.lo}, {self.hi}], not {v}"


@dataclass(frozen=True)
class Choice:
    values: tuple

    def problem(self, v: Any) -> str:
        ok = any(v == c and type(v) is type(c) for c in self.values)
        return "" if ok else f"must be one of {', '.join(map(repr, self.values))}, not {v!r}"


@dataclass(frozen=True)
class Kwargs:
    """Keyword arguments of another architecture (e.g. Stage-II's `stage1`), or null."""

    arch: str

    def problem(self, v: Any) -> str:
        if v is None:
            return ""
        if not isinstance(v, dict):
            return f"must be the keyword arguments of {self.arch} (a mapping), not {type(v).__name__}"
        return "; ".join(kwargs_problems(self.arch, v))


BOOL = Choice((True, False))
NORM = Choice(NORMS)


def _w(lo: int = 1) -> Int:
    return Int(lo, WIDTH[1])


PARAMS: dict[str, dict[str, Int | Float | Choice | Kwargs]] = {
    "RRDBNet": {"in_ch": Int(*CHANNELS), "out_ch": Int(*CHANNELS), "nf": _w(), "nb": Int(0, 128), "gc": _w(),
                "scale": Choice((1, 2, 4, 8))},
    "SRVGGNetCompact": {"in_ch": Int(*CHANNELS), "out_ch": Int(*CHANNELS), "nf": _w(), "num_conv": Int(0, 256),
                        "scale": Int(1, 8), "act": Choice(("prelu", "lrelu", "relu"))},
    "VGGStyleDiscriminator": {"in_ch": Int(*CHANNELS), "nf": _w(), "input_size": Choice((128, 256))},
    "UNetDiscriminatorSN": {"in_ch": Int(*CHANNELS), "nf": _w(), "skip": BOOL},
    "UNetGenerator": {"in_ch": Int(*CHANNELS), "out_ch": Int(*CHANNELS), "num_downs": Int(5, 16), "ngf": _w(),
                      "norm": NORM, "use_dropout": BOOL},
    "ResnetGenerator": {"in_ch": Int(*CHANNELS), "out_ch": Int(*CHANNELS), "ngf": _w(), "n_blocks": Int(0, 256),
                        "norm": NORM, "use_dropout": BOOL},
    "PatchDiscriminator": {"in_ch": Int(1, 4096), "ndf": _w(), "n_layers": Int(1, 16), "norm": NORM},
    "PixelDiscriminator": {"in_ch": Int(1, 4096), "ndf": _w(), "norm": NORM},
    "StageIGenerator": {"t_dim": Int(1, 16384), "c_dim": _w(), "z_dim": _w(), "gf": _w(),
                        "image_size": Int(8, 4096, power_of_two=True)},
    "StageIDiscriminator": {"df": _w(), "c_dim": _w(), "image_size": Int(8, 4096, power_of_two=True), "uncond": BOOL},
    "StageIIGenerator": {"stage1": Kwargs("StageIGenerator"), "gf": _w(), "c_dim": Optional(_w()), "r_num": Int(0, 64),
                         "up_factor": Int(1, 16, power_of_two=True), "stage1_train_mode": BOOL},
    "StageIIDiscriminator": {"df": _w(), "c_dim": _w(), "image_size": Int(8, 4096, power_of_two=True)},
    "SentenceEncoder": {"vocab_size": Int(1, 1_000_000), "embed_dim": _w(), "hidden": _w(), "out_dim": Int(1, 16384),
                        "num_layers": Int(1, 16), "dropout": Float(0.0, 1.0)},
    "ImageEncoder": {"in_ch": Int(*CHANNELS), "width": _w(), "n_layers": Int(1, 12), "out_dim": Int(1, 16384)},
    "SPADEGenerator": {"label_nc": Int(1, 65538), "ngf": _w(),
                       "num_upsampling_layers": Choice(("normal", "more", "most")), "crop_size": Int(1, 8192),
                       "aspect_ratio": Float(0.05, 20.0), "use_vae": BOOL, "z_dim": _w(),
                       "spectral": BOOL, "param_free": Choice(("batch", "instance", "syncbatch")),
                       "hidden": _w(), "kernel": Choice((1, 3, 5, 7)), "out_ch": Int(*CHANNELS)},
    "ConvEncoder": {"ndf": _w(), "z_dim": _w(), "crop_size": Int(1, 8192), "in_ch": Int(*CHANNELS), "spectral": BOOL},
    "MultiscaleDiscriminator": {"input_nc": Int(1, 65538), "num_D": Int(1, 8), "n_layers": Int(1, 16), "ndf": _w(),
                                "get_intermediate_features": BOOL, "spectral": BOOL, "max_nf": _w()},
}  # fmt: skip


def kwargs_problems(arch: str, kwargs: Any) -> list[str]:
    """What is wrong with `kwargs` for `arch` against its declared ranges ([] = nothing)."""
    rules = PARAMS.get(arch)
    if rules is None:
        return [f"{arch} declares no parameter ranges"]
    if not isinstance(kwargs, dict):
        return [f"arch_kwargs must be a mapping, not {type(kwargs).__name__}"]
    found = []
    for k, v in kwargs.items():
        if k not in rules:
            found.append(f"{arch} has no argument {k!r} (it takes {', '.join(rules)})")
        elif why := rules[k].problem(v):
            found.append(f"{k} {why}")
    return found
