"""Our weights format: `name.safetensors` (tensors, with the card JSON also in the header metadata)
plus a `name.json` card beside it. Loading never unpickles anything."""

from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from img2img.archs import build_arch
from img2img.errors import WeightsError

CARD_KEY = "img2img.card"
TASKS = ("upscale", "translate", "synthesize", "generate")


@dataclass
class Card:
    """Everything needed to rebuild and correctly use a network, plus where it came from."""

    name: str
    arch: str
    arch_kwargs: dict[str, Any]
    task: str  # upscale | translate | synthesize | generate
    scale: int = 1  # output size / input size
    in_channels: int = 3
    out_channels: int = 3
    value_range: tuple[float, float] = (0.0, 1.0)  # range the network expects and produces
    size_multiple: int = 1  # input H and W must be multiples of this (we pad)
    receptive_radius: int = 16  # input pixels of context a tile needs on each side for seamless blending
    source: str = ""  # provenance: original file, URL, or "trained by img2img"
    license: str = ""
    description: str = ""
    training: dict[str, Any] = field(default_factory=dict)  # steps, data, config, wall time ...
    metrics: dict[str, Any] = field(default_factory=dict)  # measured numbers, with the protocol used
    extra: dict[str, Any] = field(default_factory=dict)  # task-specific (e.g. direction for translate)

    def __post_init__(self) -> None:
        if self.task not in TASKS:
            raise WeightsError(f"card {self.name!r}: task must be one of {TASKS}, not {self.task!r}")
        self.value_range = tuple(float(v) for v in self.value_range)  # type: ignore[assignment]

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["value_range"] = list(self.value_range)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Card:
        known = {f.name for f in dataclasses.fields(cls)}
        missing = {"name", "arch", "arch_kwargs", "task"} - set(d)
        if missing:
            raise WeightsError(f"weights card lacks {sorted(missing)}")
        return cls(**{k: v for k, v in d.items() if k in known})


def card_path(weights_path: str | os.PathLike) -> Path:
    return Path(weights_path).with_suffix(".json")


def save_weights(path: str | os.PathLike, net: nn.Module | dict[str, torch.Tensor], card: Card) -> Path:
    """Write `path` (.safetensors) and its `.json` card atomically; returns the weights path."""
    from safetensors.torch import save_file

    path = Path(path)
    if path.suffix != ".safetensors":
        raise WeightsError(f"weights must be saved as .safetensors, got {path.name}")
    sd = net.state_dict() if isinstance(net, nn.Module) else net
    sd = {k: v.detach().to("cpu").contiguous().clone() for k, v in sd.items()}
    text = json.dumps(card.to_dict(), indent=2, sort_keys=True)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    save_file(sd, str(tmp), metadata={CARD_KEY: text})
    os.replace(tmp, path)
    tmp_card = card_path(path).with_name(card_path(path).name + ".tmp")
    tmp_card.write_text(text + "\n")
    os.replace(tmp_card, card_path(path))
    return path


def read_card(path: str | os.PathLike) -> Card:
    """The card of a .safetensors file: from its header, else from the JSON beside it."""
    from safetensors import safe_open

    path = Path(path)
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
    except Exception as e:  # safetensors raises several types for a bad header
        raise WeightsError(f"{path}: not a valid .safetensors file ({e})") from e
    if CARD_KEY in meta:
        return Card.from_dict(json.loads(meta[CARD_KEY]))
    if card_path(path).exists():
        return Card.from_dict(json.loads(card_path(path).read_text()))
    raise WeightsError(
        f"{path}: no img2img card in the header and no {card_path(path).name} beside it; "
        "convert released checkpoints with `img2img convert FILE OUT.safetensors`"
    )


def load_weights(path: str | os.PathLike) -> tuple[dict[str, torch.Tensor], Card]:
    from safetensors.torch import load_file

    path = Path(path)
    if not path.exists():
        raise WeightsError(f"weights file not found: {path}")
    card = read_card(path)
    try:
        sd = load_file(str(path))
    except Exception as e:
        raise WeightsError(f"{path}: cannot read tensors ({e})") from e
    return sd, card


def build_network(card: Card, state_dict: dict[str, torch.Tensor]) -> nn.Module:
    """Instantiate `card.arch` and load `state_dict` strictly, naming any mismatch."""
    net = build_arch(card.arch, **card.arch_kwargs)
    own = net.state_dict()
    missing = [k for k in own if k not in state_dict]
    unexpected = [k for k in state_dict if k not in own]
    bad_shape = [
        f"{k}: file {tuple(state_dict[k].shape)} vs {card.arch} {tuple(own[k].shape)}"
        for k in own
        if k in state_dict and state_dict[k].shape != own[k].shape
    ]
    if missing or unexpected or bad_shape:
        parts = []
        if missing:
            parts.append(f"missing {len(missing)} (e.g. {missing[:3]})")
        if unexpected:
            parts.append(f"unexpected {len(unexpected)} (e.g. {unexpected[:3]})")
        if bad_shape:
            parts.append(f"shape mismatch {bad_shape[:3]}")
        raise WeightsError(f"weights do not fit {card.arch}({card.arch_kwargs}): " + "; ".join(parts))
    net.load_state_dict(state_dict, strict=True)
    return net.eval()


def load_network(path: str | os.PathLike) -> tuple[nn.Module, Card]:
    sd, card = load_weights(path)
    return build_network(card, sd), card
