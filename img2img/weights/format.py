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
# task word -> task kind: what a model consumes (an image, a label map, text) decides how it is run.
TASK_KINDS = {"upscale": "image", "translate": "image", "synthesize": "labels", "generate": "text"}
TASKS = tuple(TASK_KINDS)
OUTPUT_SIZES = ("scale", "same", "fixed")  # x card.scale; the input's size; card.output["height"/"width"]


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
    # What the model consumes beyond an image: labels {label_nc, dontcare, instance, palette, classes,
    # z_dim}; text {tokenizer, embedding_dim, noise_dim, stages}. Read through `labels_spec`/`text_spec`.
    inputs: dict[str, Any] = field(default_factory=dict)
    # Size rule of the output: {"size": "scale"} (x scale), "same", or "fixed" with "height"/"width".
    output: dict[str, Any] = field(default_factory=dict)
    # Further networks of a bundle: NAME -> {"arch", "arch_kwargs"}; their tensors are stored as "NAME.<key>"
    # beside the main network's (e.g. a SPADE style encoder E, a StackGAN text encoder T).
    networks: dict[str, dict[str, Any]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.task not in TASKS:
            raise WeightsError(f"card {self.name!r}: task must be one of {TASKS}, not {self.task!r}")
        self.value_range = tuple(float(v) for v in self.value_range)  # type: ignore[assignment]
        for net, spec in self.networks.items():
            if not (isinstance(spec, dict) and isinstance(spec.get("arch"), str) and "." not in net and net):
                raise WeightsError(f"card {self.name!r}: networks.{net} needs an arch name and a plain network name")
            spec.setdefault("arch_kwargs", {})
        if self.output_size not in OUTPUT_SIZES:
            raise WeightsError(f"card {self.name!r}: output.size must be one of {OUTPUT_SIZES}")

    @property
    def kind(self) -> str:
        """image | labels | text: what the model consumes."""
        return TASK_KINDS[self.task]

    @property
    def output_size(self) -> str:
        """How the output size follows from the input: `scale` (image models' default), `same`, `fixed`."""
        default = "scale" if self.kind == "image" else ("same" if self.kind == "labels" else "fixed")
        return str(self.output.get("size", default))

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["value_range"] = list(self.value_range)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Card:
        if not isinstance(d, dict):
            raise WeightsError(f"a weights card must be a JSON object, not {type(d).__name__}")
        known = {f.name for f in dataclasses.fields(cls)}
        missing = {"name", "arch", "arch_kwargs", "task"} - set(d)
        if missing:
            raise WeightsError(f"weights card lacks {sorted(missing)}")
        return cls(**{k: v for k, v in d.items() if k in known})


def card_path(weights_path: str | os.PathLike) -> Path:
    return Path(weights_path).with_suffix(".json")


def bundle_state_dict(main: nn.Module | dict[str, torch.Tensor], **others: nn.Module | dict) -> dict:
    """One state dict for a bundle: the main network's tensors as they are, each other network's
    under `NAME.` (the names in `Card.networks`)."""
    sd = dict(main.state_dict() if isinstance(main, nn.Module) else main)
    for name, net in others.items():
        clash = [k for k in sd if k.startswith(name + ".")]
        if clash:
            raise WeightsError(f"the main network has tensors under {name}. ({clash[0]}); rename network {name}")
        part = net.state_dict() if isinstance(net, nn.Module) else net
        sd.update({f"{name}.{k}": v for k, v in part.items()})
    return sd


def split_bundle(card: Card, sd: dict[str, torch.Tensor]) -> dict[str, dict[str, torch.Tensor]]:
    """Per network of `card` ("" for the main one), its own tensors."""
    parts: dict[str, dict[str, torch.Tensor]] = {"": {}, **{name: {} for name in card.networks}}
    for k, v in sd.items():
        head, _, rest = k.partition(".")
        parts[head if rest and head in card.networks else ""][rest if head in card.networks and rest else k] = v
    return parts


def save_weights(path: str | os.PathLike, net: nn.Module | dict[str, torch.Tensor], card: Card) -> Path:
    """Write `path` (.safetensors) and its `.json` card atomically; returns the weights path. A bundle's
    other networks (`card.networks`) go in as `NAME.<key>` (see `bundle_state_dict`)."""
    from safetensors.torch import save_file

    path = Path(path)
    if path.suffix != ".safetensors":
        raise WeightsError(f"weights must be saved as .safetensors, got {path.name}")
    sd = net.state_dict() if isinstance(net, nn.Module) else net
    missing = [name for name in card.networks if not any(k.startswith(name + ".") for k in sd)]
    if missing:
        raise WeightsError(f"card {card.name!r} lists networks {missing} whose tensors are not in the bundle")
    sd = {k: v.detach().to("cpu").contiguous().clone() for k, v in sd.items()}
    text = json.dumps(card.to_dict(), indent=2, sort_keys=True)
    from img2img.io.fileio import atomic_target, atomic_write_text

    with atomic_target(path) as tmp:
        save_file(sd, str(tmp), metadata={CARD_KEY: text})
    atomic_write_text(card_path(path), text + "\n")
    return path


def read_card(path: str | os.PathLike, *, header: Any = None) -> Card:
    """The card of a .safetensors file: from its header, else from the JSON beside it. The card is
    untrusted input: it is checked field by field and against its arch's parameter ranges
    (`weights.validate`) before anything uses it."""
    from img2img.weights.validate import card_from_text, read_header

    path = Path(path)
    meta = (header or read_header(path)).metadata
    if CARD_KEY in meta:
        return card_from_text(meta[CARD_KEY], str(path))
    side = card_path(path)
    if side.exists():
        try:
            text = side.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as e:
            raise WeightsError(f"{side}: cannot read the weights card ({e})") from None
        return card_from_text(text, str(side))
    raise WeightsError(
        f"{path}: no img2img card in the header and no {side.name} beside it; "
        "convert released checkpoints with `img2img convert FILE OUT.safetensors`"
    )


def load_weights(path: str | os.PathLike) -> tuple[dict[str, torch.Tensor], Card]:
    """The tensors and card of our weights file. Nothing is allocated before the card is checked and every
    network it names, built on the meta device, is found to match the file's tensors and the memory budget."""
    from safetensors.torch import load_file

    from img2img.weights.validate import check_weights_file

    path = Path(path)
    if not path.exists():
        raise WeightsError(f"weights file not found: {path}")
    card, _ = check_weights_file(path)
    try:
        sd = load_file(str(path))
    except Exception as e:
        raise WeightsError(f"{path}: cannot read tensors ({e})") from e
    return sd, card


def build_network(card: Card, state_dict: dict[str, torch.Tensor]) -> nn.Module:
    """Instantiate `card.arch` and load `state_dict` strictly, naming any mismatch."""
    return _build(card.arch, card.arch_kwargs, state_dict)


def build_bundle(card: Card, state_dict: dict[str, torch.Tensor]) -> dict[str, nn.Module]:
    """Every network of a bundle, built and loaded strictly: {"": main, NAME: other, ...}."""
    parts = split_bundle(card, state_dict)
    nets = {"": _build(card.arch, card.arch_kwargs, parts[""])}
    for name, spec in card.networks.items():
        nets[name] = _build(spec["arch"], spec.get("arch_kwargs", {}), parts[name], f"network {name}: ")
    return nets


def _build(arch: str, kwargs: dict[str, Any], state_dict: dict[str, torch.Tensor], what: str = "") -> nn.Module:
    net = build_arch(arch, **kwargs)
    problem = fit_problems(net.state_dict(), state_dict, arch)
    if problem:
        raise WeightsError(f"{what}weights do not fit {arch}({kwargs}): {problem}")
    net.load_state_dict(state_dict, strict=True)
    return net.eval()


def fit_problems(own: dict[str, torch.Tensor], given: dict[str, torch.Tensor], arch: str) -> str:
    """What keeps `given` from loading strictly into a network whose state dict is `own` ("" = fits):
    missing and unexpected keys and shape mismatches, a few of each named."""
    missing = [k for k in own if k not in given]
    unexpected = [k for k in given if k not in own]
    bad_shape = [
        f"{k}: file {_shape(given[k])} vs {arch} {_shape(own[k])}"
        for k in own
        if k in given and _shape(given[k]) != _shape(own[k])
    ]
    parts = []
    if missing:
        parts.append(f"missing {len(missing)} (e.g. {missing[:3]})")
    if unexpected:
        parts.append(f"unexpected {len(unexpected)} (e.g. {unexpected[:3]})")
    if bad_shape:
        parts.append(f"shape mismatch {bad_shape[:3]}")
    return "; ".join(parts)


def _shape(v: Any) -> tuple[int, ...]:
    """A tensor's shape, or a shape given as such (the header of a file not yet read)."""
    return tuple(v.shape) if hasattr(v, "shape") else tuple(v)


def load_network(path: str | os.PathLike) -> tuple[nn.Module, Card]:
    """The main network of our weights file (a bundle's other networks are ignored) and its card."""
    sd, card = load_weights(path)
    return build_network(card, split_bundle(card, sd)[""]), card


def load_bundle(path: str | os.PathLike) -> tuple[dict[str, nn.Module], Card]:
    """All networks of our weights file ({"": main, NAME: ...}) and its card."""
    sd, card = load_weights(path)
    return build_bundle(card, sd), card
