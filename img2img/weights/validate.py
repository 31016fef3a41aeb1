"""A weights file is untrusted until checked: its safetensors header is parsed here (bounded, nothing
unpickled), its card is checked field by field and against its arch's declared parameter ranges
(`archs.params`), and each network is built on the `meta` device (no memory) so that every tensor shape
and the parameter count can be compared with the file, and the memory it needs with the budget, before
any real tensor is allocated. Every problem is a `WeightsError` naming the file and what to fix."""

from __future__ import annotations

import inspect
import json
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from img2img.errors import Img2ImgError, WeightsError

MAX_HEADER_BYTES = 100 * 2**20  # a safetensors header (tensor index + card); real ones are a few hundred KB
DEFAULT_MAX_WEIGHTS_GB = 8.0  # memory the networks of one weights file may take once built (fp32)
BUDGET_ENV = "IMG2IMG_MAX_WEIGHTS_GB"
DTYPE_BYTES = {"F64": 8, "F32": 4, "F16": 2, "BF16": 2, "F8_E4M3": 1, "F8_E5M2": 1, "I64": 8, "I32": 4,
               "I16": 2, "I8": 1, "U64": 8, "U32": 4, "U16": 2, "U8": 1, "BOOL": 1}  # fmt: skip


@dataclass
class Header:
    """What a safetensors header says: string metadata and, per tensor, its dtype and shape."""

    metadata: dict[str, str]
    shapes: dict[str, tuple[int, ...]]
    dtypes: dict[str, str]


def read_header(path: str | os.PathLike) -> Header:
    """Parse the header of a `.safetensors` file without reading its tensors; any damage is a WeightsError."""
    path = Path(path)
    try:
        with open(path, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            head = f.read(8)
            n = int.from_bytes(head, "little") if len(head) == 8 else -1
            if n < 2 or n > min(MAX_HEADER_BYTES, size - 8):
                raise WeightsError(f"{path}: not a valid .safetensors file (header length {n} in a {size}-byte file)")
            raw = f.read(n)
    except OSError as e:
        raise WeightsError(f"{path}: cannot read the weights file ({e.strerror or e})") from None
    return parse_header(raw, size - 8 - n, str(path))


def parse_header(raw: bytes, data_bytes: int, where: str = "weights") -> Header:
    """The header JSON `raw` of a safetensors file whose tensor data is `data_bytes` long."""
    bad = f"{where}: not a valid .safetensors file"
    try:
        obj = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as e:
        raise WeightsError(f"{bad} (header is not JSON: {str(e)[:120]})") from None
    if not isinstance(obj, dict):
        raise WeightsError(f"{bad} (header is not a JSON object)")
    meta = obj.pop("__metadata__", None) or {}
    if not isinstance(meta, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in meta.items()):
        raise WeightsError(f"{bad} (__metadata__ must map strings to strings)")
    shapes, dtypes, spans = {}, {}, []
    for name, info in obj.items():
        if not isinstance(info, dict):
            raise WeightsError(f"{bad} (entry {name[:80]!r} is not an object)")
        dtype, shape, offsets = info.get("dtype"), info.get("shape"), info.get("data_offsets")
        if dtype not in DTYPE_BYTES:
            raise WeightsError(f"{bad} (tensor {name[:80]!r} has unknown dtype {str(dtype)[:20]!r})")
        if not (isinstance(shape, list) and len(shape) <= 16 and all(_whole(d) and d >= 0 for d in shape)):
            raise WeightsError(f"{bad} (tensor {name[:80]!r} has a bad shape)")
        if not (isinstance(offsets, list) and len(offsets) == 2 and all(_whole(o) for o in offsets)):
            raise WeightsError(f"{bad} (tensor {name[:80]!r} has bad data_offsets)")
        start, end = offsets
        if not 0 <= start <= end <= data_bytes or end - start != math.prod(shape) * DTYPE_BYTES[dtype]:
            raise WeightsError(f"{bad} (tensor {name[:80]!r}: its data lies outside the file or has the wrong size)")
        shapes[name], dtypes[name] = tuple(shape), dtype
        spans.append((start, end))
    spans.sort()
    if any(a[1] > b[0] for a, b in zip(spans, spans[1:], strict=False)):
        raise WeightsError(f"{bad} (tensor data overlaps)")
    return Header(meta, shapes, dtypes)


def _whole(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


# --- The card ---


def card_from_text(text: str, where: str) -> Any:
    """A card from its JSON text, checked (see `check_card_dict`)."""
    from img2img.weights.format import Card

    try:
        d = json.loads(text)
    except (ValueError, RecursionError) as e:
        raise WeightsError(f"{where}: the weights card is not valid JSON ({str(e)[:120]})") from None
    check_card_dict(d, where)
    try:
        card = Card.from_dict(d)
    except Img2ImgError:
        raise
    except (TypeError, ValueError, AttributeError) as e:  # a field of the right name but the wrong shape
        raise WeightsError(f"{where}: bad weights card ({e})") from None
    return card


def check_card_dict(d: Any, where: str) -> None:
    """Every field of a card (a decoded JSON object) has the right type and a sensible value, and its arch
    kwargs lie in the arch's declared ranges; a WeightsError says which field and why."""
    from img2img.archs import ARCHS
    from img2img.archs.params import kwargs_problems
    from img2img.weights.format import OUTPUT_SIZES, TASK_KINDS

    def fail(msg: str) -> WeightsError:
        return WeightsError(f"{where}: bad weights card: {msg}")

    if not isinstance(d, dict):
        raise fail(f"it must be a JSON object, not {type(d).__name__}")
    missing = {"name", "arch", "arch_kwargs", "task"} - set(d)
    if missing:
        raise fail(f"it lacks {sorted(missing)}")
    for key in ("name", "arch", "task", "source", "license", "description"):
        if key in d and not isinstance(d[key], str):
            raise fail(f"{key} must be a string")
    for key in ("arch_kwargs", "training", "metrics", "extra", "inputs", "output", "networks"):
        if key in d and not isinstance(d[key], dict):
            raise fail(f"{key} must be a JSON object")
    if d["task"] not in TASK_KINDS:
        raise fail(f"task must be one of {tuple(TASK_KINDS)}, not {d['task'][:40]!r}")
    kind = TASK_KINDS[d["task"]]
    ints = {"scale": (1, 16), "in_channels": (1, 64), "out_channels": (1, 64), "size_multiple": (1, 4096),
            "receptive_radius": (0, 4096)}  # fmt: skip
    for key, (lo, hi) in ints.items():
        if key in d and not (_whole(d[key]) and lo <= d[key] <= hi):
            raise fail(f"{key} must be a whole number in {lo}..{hi}, not {str(d[key])[:40]}")
    vr = d.get("value_range", [0.0, 1.0])
    if not (isinstance(vr, list | tuple) and len(vr) == 2 and all(_number(v) for v in vr) and vr[0] < vr[1]):
        raise fail(f"value_range must be two finite numbers [lo, hi] with lo < hi, not {str(vr)[:40]}")
    nets = {"": (d["arch"], d["arch_kwargs"])}
    for name, spec in d.get("networks", {}).items():
        if not (name and "." not in name and isinstance(spec, dict) and isinstance(spec.get("arch"), str)):
            raise fail(f"networks.{name[:40]} needs an arch name and a plain network name")
        if not isinstance(spec.get("arch_kwargs", {}), dict):
            raise fail(f"networks.{name[:40]}.arch_kwargs must be a JSON object")
        nets[name] = (spec["arch"], spec.get("arch_kwargs", {}))
    for name, (arch, kwargs) in nets.items():
        label = f"networks.{name}" if name else "arch"
        if arch not in ARCHS:
            raise fail(f"{label}: unknown architecture {arch[:60]!r}; known: {', '.join(sorted(ARCHS))}")
        problems = kwargs_problems(arch, kwargs)
        if problems:
            raise fail(f"{label} {arch}: {'; '.join(problems)}")
    _check_output(d.get("output", {}), kind, fail, OUTPUT_SIZES)
    if d.get("inputs"):  # without them the Model of the kind says what it lacks
        if kind == "text" and is_text_encoder(d):  # a StackGAN text encoder: tokenizer + embedding size only
            dim = d["inputs"].get("embedding_dim")
            if not (_whole(dim) and 1 <= dim <= 65536) or not isinstance(d["inputs"].get("tokenizer"), dict):
                raise fail("a text encoder's card needs inputs.embedding_dim (1..65536) and inputs.tokenizer")
        else:
            _check_inputs(d["inputs"], kind, fail)
            _check_inputs_fit_the_arch(d, ARCHS[d["arch"]], kind, fail)
    if kind == "image":
        _check_image_consistency(d, ARCHS[d["arch"]], fail)


def _number(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)


def _check_output(out: dict, kind: str, fail: Any, sizes: tuple) -> None:
    size = out.get("size", "scale" if kind == "image" else ("same" if kind == "labels" else "fixed"))
    if size not in sizes:
        raise fail(f"output.size must be one of {sizes}, not {str(size)[:40]!r}")
    for key in ("height", "width"):
        if key in out and not (_whole(out[key]) and 1 <= out[key] <= 16384):
            raise fail(f"output.{key} must be a whole number in 1..16384")


def is_text_encoder(d: dict) -> bool:
    """A card of a text encoder exported for StackGAN training (`extra.role`), not a generator."""
    extra = d.get("extra")
    return isinstance(extra, dict) and extra.get("role") == "text_encoder"


def _check_inputs(inputs: dict, kind: str, fail: Any) -> None:
    if kind == "labels":
        from img2img.errors import LabelError
        from img2img.io.labels import LabelSpec

        z = inputs.get("z_dim", 0)
        if not (_whole(z) and 0 <= z <= 4096):
            raise fail("inputs.z_dim must be a whole number in 0..4096")
        for key in ("palette", "classes"):
            if key in inputs and not isinstance(inputs[key], list):
                raise fail(f"inputs.{key} must be a list")
        if not all(
            isinstance(c, list) and all(_whole(v) and 0 <= v <= 255 for v in c) for c in inputs.get("palette", [])
        ):
            raise fail("inputs.palette must list [r, g, b] colours with values 0..255")
        try:
            LabelSpec.from_dict(inputs)
        except LabelError as e:
            raise fail(f"inputs: {e}") from None
        except (TypeError, ValueError) as e:
            raise fail(f"inputs: {e}") from None
    elif kind == "text":
        for key, lo in (("embedding_dim", 1), ("noise_dim", 1)):
            if not (_whole(inputs.get(key)) and lo <= inputs[key] <= 65536):
                raise fail(f"inputs.{key} must be a whole number in {lo}..65536")
        stages = inputs.get("stages")
        if not (isinstance(stages, list) and 1 <= len(stages) <= 16):
            raise fail("inputs.stages must list 1..16 stages, e.g. [{'stage': 1, 'module': '', 'output': 0}]")
        for s in stages:
            ok = isinstance(s, dict) and _whole(s.get("stage")) and 1 <= s["stage"] <= 16
            ok = (
                ok
                and isinstance(s.get("module", ""), str)
                and _whole(s.get("output", 0))
                and 0 <= s.get("output", 0) < 16
            )
            if not ok:
                raise fail("each of inputs.stages needs a stage 1..16, a module name and an output index 0..15")
        if "tokenizer" in inputs and not isinstance(inputs["tokenizer"] or {}, dict):
            raise fail("inputs.tokenizer must be a JSON object")


def _arch_value(cls: type, kwargs: dict, key: str) -> Any:
    """The value `key` takes in `cls(**kwargs)` (given, else the default; None when it has no such argument)."""
    params = inspect.signature(cls.__init__).parameters
    if key in kwargs:
        return kwargs[key]
    return params[key].default if key in params and params[key].default is not inspect.Parameter.empty else None


def _check_inputs_fit_the_arch(d: dict, cls: type, kind: str, fail: Any) -> None:
    """What the card says the model consumes matches the main network's inputs, so no run fails on a shape."""
    inputs, kwargs = d["inputs"], d["arch_kwargs"]
    if kind == "labels":
        want = _arch_value(cls, kwargs, "label_nc")
        have = inputs["label_nc"] + (inputs.get("dontcare") is not None) + bool(inputs.get("instance"))
        if isinstance(want, int) and want != have:
            raise fail(f"inputs give {have} input channels (classes, don't-care, instance edges) but {d['arch']} "
                       f"takes label_nc={want}")  # fmt: skip
        z = inputs.get("z_dim", 0)
        if z and _arch_value(cls, kwargs, "use_vae") and _arch_value(cls, kwargs, "z_dim") != z:
            raise fail(f"inputs.z_dim is {z} but {d['arch']} has z_dim={_arch_value(cls, kwargs, 'z_dim')}")
    elif kind == "text":
        if "stage1" in inspect.signature(cls.__init__).parameters:  # Stage II: the text goes in at Stage I
            from img2img.archs import ARCHS

            cls, kwargs = ARCHS["StageIGenerator"], kwargs.get("stage1") or {}
        for key, arch_key in (("embedding_dim", "t_dim"), ("noise_dim", "z_dim")):
            want = _arch_value(cls, kwargs, arch_key)
            if isinstance(want, int) and want != inputs[key]:
                raise fail(f"inputs.{key} is {inputs[key]} but {d['arch']} takes {arch_key}={want}")


def _check_image_consistency(d: dict, cls: type, fail: Any) -> None:
    """An image model's card and its arch agree on the scale (the output size is computed from the card's)."""
    params = inspect.signature(cls.__init__).parameters
    kwargs = d["arch_kwargs"]
    for card_key, arch_key, default in (("scale", "scale", 1),):
        if arch_key not in params:
            continue
        arch_value = kwargs.get(arch_key, params[arch_key].default)
        card_value = d.get(card_key, default)
        if arch_value != card_value:
            raise fail(f"{card_key} is {card_value} but {d['arch']} has {arch_key}={arch_value}")


# --- The networks against the file ---


def budget_bytes() -> int:
    raw = os.environ.get(BUDGET_ENV, "").strip()
    try:
        gb = float(raw) if raw else DEFAULT_MAX_WEIGHTS_GB
    except ValueError:
        raise WeightsError(f"{BUDGET_ENV}={raw!r} is not a number of gigabytes") from None
    if not gb > 0:
        raise WeightsError(f"{BUDGET_ENV} must be a positive number of gigabytes, not {raw}")
    return int(gb * 2**30)


def meta_state(arch: str, kwargs: dict[str, Any]) -> tuple[Any, dict[str, tuple[int, ...]]]:
    """The network built on the meta device (no memory) and the shape of each of its state tensors."""
    import torch

    from img2img.archs import build_arch

    try:
        with torch.device("meta"):
            net = build_arch(arch, **kwargs)
    except Img2ImgError:
        raise
    except (ValueError, ZeroDivisionError, RuntimeError, OverflowError) as e:
        raise WeightsError(f"{arch}({kwargs}) cannot be built: {e}") from None
    return net, {k: tuple(v.shape) for k, v in net.state_dict().items()}


def check_file(card: Any, header: Header, where: str) -> int:
    """Every network of `card`, built on the meta device, matches the file's tensors key by key and shape by
    shape, and all of them fit the memory budget. Returns the bytes they will take."""
    from img2img.weights.format import fit_problems, split_bundle

    parts = split_bundle(card, header.shapes)
    specs = {
        "": (card.arch, card.arch_kwargs),
        **{n: (s["arch"], s.get("arch_kwargs", {})) for n, s in card.networks.items()},
    }
    total = 0
    for name, (arch, kwargs) in specs.items():
        what = f"network {name}: " if name else ""
        net, own = meta_state(arch, kwargs)
        problem = fit_problems(own, parts[name], arch)
        if problem:
            raise WeightsError(f"{where}: {what}weights do not fit {arch}({kwargs}): {problem}")
        n_own, n_file = sum(map(math.prod, own.values())), sum(map(math.prod, parts[name].values()))
        if n_own != n_file:
            raise WeightsError(f"{where}: {what}{arch} has {n_own:,} values but the file holds {n_file:,}")
        total += n_own * 4
        if name == "" and card.kind == "text":
            for s in card.inputs.get("stages", []):
                module = s.get("module", "")
                try:
                    stage_net = net.get_submodule(module) if module else net
                except AttributeError:
                    raise WeightsError(f"{where}: inputs.stages names module {module!r}, which {arch} lacks") from None
                del stage_net
    budget = budget_bytes()
    if total > budget:
        raise WeightsError(
            f"{where}: its networks need {total / 2**30:.1f} GB once built, over the {budget / 2**30:.1f} GB "
            f"budget; raise {BUDGET_ENV} if this machine has the memory and you trust the file"
        )
    return total


def check_weights_file(path: str | os.PathLike) -> tuple[Any, Header]:
    """The checked card and header of our `.safetensors` file: everything short of reading its tensors."""
    from img2img.weights.format import read_card

    header = read_header(path)
    card = read_card(path, header=header)
    check_file(card, header, str(path))
    return card, header
