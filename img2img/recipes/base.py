"""What a training method declares to the engine: its networks, its phases, and per phase a dict of
named, already-weighted loss terms. A recipe never calls backward/step/.to/autocast or a logger;
the engine (`img2img.train.Trainer`) does all of that, the same way for every recipe."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import Dataset


@dataclass
class Phase:
    """One optimizer: the networks it updates, its Adam(W) settings, and how often it runs."""

    name: str
    networks: list[str]
    lr: float
    betas: tuple[float, float] = (0.9, 0.999)
    every: int = 1  # run on steps where step % every == 0
    weight_decay: float = 0.0  # > 0 switches to AdamW

    def __post_init__(self) -> None:
        if not self.networks:
            raise ValueError(f"phase {self.name!r} updates no networks")
        if self.every < 1 or self.lr < 0:
            raise ValueError(f"phase {self.name!r}: every must be >= 1 and lr >= 0")


Nets = dict[str, nn.Module]
Batch = dict[str, Any]
ImageRow = list[torch.Tensor]  # CHW tensors in [0, 1]; the engine pads them into one grid


class Recipe:
    """Base class. Subclasses set `name` and `Config` (their config dataclass) and implement
    `build_networks`, `phases`, `losses`, `make_dataset`; the rest has sensible defaults.

    Call order per iteration: for each due phase (in `phases()` order) the engine enables grads on
    that phase's networks only, calls `losses(phase, batch, nets, scratch)`, sums the terms and
    steps. `scratch` is a dict that lives for one iteration, so a G phase can leave its fake images
    for the D phase (`scratch["fake"].detach()`) instead of running G twice.
    """

    name: ClassVar[str] = ""
    Config: ClassVar[type] = object

    def __init__(self, cfg: Any, *, seed: int = 0) -> None:
        self.cfg = cfg
        self.seed = seed
        self.diffaug: Any = None  # a DiffAugment for D's inputs (recipes build it from loss.diffaugment)
        self.notes: list[str] = []  # warnings for the user; the engine prints them with its banner

    def d_input(self, x: torch.Tensor) -> torch.Tensor:
        """What a discriminator is shown: `x` through the run's differentiable augmentation, if any."""
        return self.diffaug(x) if self.diffaug else x

    def build_diffaug(self, policy: list[str], value_range: tuple[float, float]) -> None:
        if policy:
            from img2img.recipes.diffaug import DiffAugment

            self.diffaug = DiffAugment(policy, value_range, key="loss.diffaugment")

    @classmethod
    def check_config(cls, cfg: Any) -> None:
        """Cross-field checks (raise ConfigError naming the keys); run at load time, so --dry-run
        catches them too."""

    # ---- what to build
    def build_networks(self) -> Nets:
        raise NotImplementedError

    def phases(self) -> list[Phase]:
        raise NotImplementedError

    def init_sources(self) -> dict[str, str]:
        """Weights the recipe needs loaded before a fresh run, NET -> source (as in `train.init_from`,
        which overrides them), e.g. a frozen pretrained network; not used when resuming."""
        return {}

    def aux_modules(self) -> dict[str, nn.Module]:
        """Frozen helper modules used by losses (e.g. VGG features): moved to the device, never
        trained or checkpointed."""
        return {}

    # ---- what to compute
    def losses(self, phase: str, batch: Batch, nets: Nets, scratch: dict[str, Any]) -> dict[str, torch.Tensor]:
        raise NotImplementedError

    def make_dataset(self) -> Dataset:
        raise NotImplementedError

    # ---- state kept across iterations besides network weights (e.g. CycleGAN image pools)
    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        pass

    # ---- what to show and measure (nets are the EMA copies where the run keeps EMA)
    @torch.no_grad()
    def sample_images(self, batch: Batch, nets: Nets) -> list[ImageRow]:
        return []

    @torch.no_grad()
    def validate(self, nets: Nets, device: torch.device) -> dict[str, float]:
        """Measured numbers on held-out data (empty when the config has none)."""
        return {}

    # ---- what to ship
    def export_card(self, net: str) -> dict[str, Any] | None:
        """Card fields (arch, arch_kwargs, task, scale, value_range, ...) for a network users run,
        or None for training-only networks such as discriminators."""
        return None

    def data_description(self) -> dict[str, Any]:
        """What the run trained on, recorded in exported cards."""
        return {}

    # ---- fine-tuning (img2img finetune)
    finetune_config: ClassVar[str] = ""  # shipped config to start from when the card holds no training config

    @classmethod
    def finetune(cls, raw: dict[str, Any], card: Any, weights: str, data: Any, options: dict[str, Any]) -> None:
        """Adapt the run config `raw` (in place) to fine-tune `weights` (with `card`) on the folder `data`:
        the generator from the card, the data layout checked against the task, `train.init_from`."""
        from img2img.errors import ConfigError

        raise ConfigError(
            f"img2img finetune covers esrgan, pix2pix, cyclegan and spade weights, not {cls.name}: train {cls.name} "
            "models with `img2img train` and a config from configs/ (see the README)"
        )


def batch_size_of(batch: Batch) -> int:
    """Number of samples in a collated batch (first tensor's leading dimension)."""
    for v in batch.values():
        if isinstance(v, torch.Tensor):
            return int(v.shape[0])
    return 0


def upsample_to(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Nearest-neighbour resize of a CHW image (for showing low-res inputs next to outputs)."""
    return F.interpolate(x[None].float(), size=size, mode="nearest")[0]
