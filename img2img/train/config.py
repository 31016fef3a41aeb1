"""The engine's config (`train:` section) and a whole run's resolved config: the recipe name, the
engine's section and the recipe's own dataclass, read from YAML with dotted overrides."""

from __future__ import annotations

import dataclasses
import difflib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from img2img.config import _suggest, apply_overrides, num, parse, read_yaml, to_dict
from img2img.errors import ConfigError


@dataclass
class EMAConfig:
    decay: float = num(0.999, ge=0.0, le=1.0)  # shadow = decay * shadow + (1 - decay) * weights
    networks: list[str] = field(default_factory=list)  # e.g. [G]; empty = no EMA
    warmup: bool = True  # decay ramps as (1 + n) / (10 + n) up to `decay` over the first updates


@dataclass
class ScheduleConfig:
    kind: Literal["constant", "linear", "multistep", "cosine"] = "constant"
    milestones: list[int] = field(default_factory=list)  # multistep: steps where lr *= gamma
    gamma: float = num(0.5, gt=0.0)
    decay_steps: int = num(0, ge=0)  # linear: decay to 0 over the last N steps (pix2pix / CycleGAN)
    min_lr_ratio: float = num(0.0, ge=0.0, le=1.0)  # cosine: floor as a fraction of the start lr
    warmup_steps: int = num(0, ge=0)  # linear warm-up from 0, any kind


@dataclass
class TrainConfig:
    """The engine's section; every recipe shares it."""

    steps: int = num(1000, gt=0)  # optimisation iterations (one batch each, all due phases)
    batch_size: int = num(16, gt=0)  # per process
    num_workers: int = num(2, ge=0)
    seed: int = 0
    device: str = "auto"  # auto | cpu | cuda | cuda:N (under torchrun: the local GPU)
    # auto: bf16 autocast on a CPU that computes bf16 natively (AVX512-BF16 / AMX; measured 1.4-2x per
    # step), else off (emulated bf16 is 10-30x slower); off on CUDA/MPS. fp16 needs CUDA.
    amp: Literal["auto", "off", "bf16", "fp16"] = "auto"
    grad_clip: float = num(0.0, ge=0.0)  # max global grad norm per phase; 0 = off
    fused_adam: bool = True  # torch's fused Adam(W) kernel where it supports the parameters (CPU, CUDA)
    memory_format: Literal["auto", "channels_last", "contiguous"] = "auto"  # auto: channels_last on CUDA+amp, else NCHW
    compile: bool = False  # torch.compile of every trained network (needs a C++ compiler on CPU)
    ema: EMAConfig = field(default_factory=EMAConfig)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    log_every: int = num(50, gt=0)
    sample_every: int = num(1000, ge=0)  # 0 = never
    val_every: int = num(0, ge=0)  # 0 = only at the end (if the recipe has validation data)
    ckpt_every: int = num(1000, gt=0)
    keep_last: int = num(3, gt=0)  # checkpoints kept in out_dir/checkpoints
    out_dir: str = "runs/run"  # relative to the current directory
    resume: str | None = None  # null | auto | path to a checkpoint or run folder
    overwrite: bool = False  # with resume off, replace an earlier run in out_dir (its checkpoints, weights, stats)
    init_from: dict[str, str] = field(default_factory=dict)  # NET: weights file, catalog name, or run
    max_skipped_fraction: float = num(0.05, ge=0.0, le=1.0)  # abort when more samples are unreadable
    progress: bool = True  # tqdm bar on the main process


@dataclass
class RunConfig:
    """A resolved config: the recipe name, the engine's section and the recipe's config object."""

    recipe: str
    train: TrainConfig
    spec: Any  # the recipe's config dataclass; its fields are top-level YAML sections

    def to_dict(self) -> dict[str, Any]:
        return {"recipe": self.recipe, "train": to_dict(self.train), **to_dict(self.spec)}

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False, default_flow_style=None)


def from_dict(data: Mapping[str, Any], registry: Mapping[str, Any] | None = None) -> RunConfig:
    """Resolve plain data (a YAML file after overrides, or a checkpoint's config) into a RunConfig.
    `registry` maps recipe names to recipe classes with a `Config` dataclass (default: RECIPES)."""
    if registry is None:
        from img2img.recipes import RECIPES as registry
    data = dict(data)
    name = data.pop("recipe", None)
    if name is None:
        raise ConfigError(f"recipe: required key is missing; one of {', '.join(sorted(registry))}")
    if name not in registry:
        close = difflib.get_close_matches(str(name), list(registry), n=1)
        hint = f"did you mean {close[0]}?" if close else f"known: {', '.join(sorted(registry))}"
        raise ConfigError(f"recipe: unknown recipe {name!r}; {hint}")
    spec_cls = registry[name].Config
    spec_keys = {f.name for f in dataclasses.fields(spec_cls)}
    for key in data:
        if key != "train" and key not in spec_keys:
            raise ConfigError(f"{key}: unknown key; {_suggest(key, spec_keys | {'recipe', 'train'}, '')}")
    train = parse(TrainConfig, data.pop("train", None), "train")
    spec = parse(spec_cls, data, "")
    registry[name].check_config(spec)
    return RunConfig(recipe=name, train=train, spec=spec)


def load_config(
    path: str | Path, overrides: Iterable[str] = (), registry: Mapping[str, Any] | None = None
) -> RunConfig:
    """Read a YAML config, apply dotted overrides, and check everything."""
    return from_dict(apply_overrides(read_yaml(path), overrides), registry)
