"""ncnn model reader (`.param` text graph + `.bin` weights) for Real-ESRGAN's RRDBNet and
SRVGGNetCompact. Every layer's kind, shape and fused activation is checked against our arch, and
the `.bin` must be consumed exactly, so a file that only looks similar is refused."""

from __future__ import annotations

import os
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from img2img.archs import build_arch
from img2img.errors import WeightsError
from img2img.weights.convert.common import Context, check_fits, upscale_card
from img2img.weights.format import Card

MAGIC = "7767517"
FP16_TAG = 0x01306B47
WEIGHTED = ("Convolution", "PReLU")
# Layers that carry no weights and whose meaning we check (or that only route blobs).
PLAIN = ("Input", "Split", "Concat", "Eltwise", "BinaryOp", "Interp", "PixelShuffle", "ReLU", "Noop")
_INTERP_KIND = {1: "nearest", 2: "bilinear", 3: "bicubic"}


@dataclass
class Layer:
    """One `.param` line: `Type name n_in n_out in_blobs... out_blobs... k=v ...`."""

    type: str
    name: str
    inputs: list[str]
    outputs: list[str]
    params: dict[int, Any] = field(default_factory=dict)
    line: int = 0


def parse_param(path: str | os.PathLike) -> list[Layer]:
    """Parse an ncnn text `.param`; a bad magic, count or line raises WeightsError naming the line."""
    path = Path(path)
    try:
        lines = path.read_text(encoding="ascii").splitlines()
    except (OSError, UnicodeDecodeError) as e:
        raise WeightsError(f"{path}: cannot read as an ncnn text .param file ({e})") from e
    if not lines or lines[0].strip() != MAGIC:
        first = lines[0].strip()[:40] if lines else "<empty file>"
        raise WeightsError(f"{path}: not an ncnn .param file (first line {first!r}, expected magic {MAGIC})")
    try:
        n_layers = int(lines[1].split()[0])
    except (IndexError, ValueError):
        raise WeightsError(f"{path}: line 2 must be 'layer_count blob_count'") from None
    layers = [_parse_line(path, i + 1, text) for i, text in enumerate(lines) if i >= 2 and text.strip()]
    if len(layers) != n_layers:
        raise WeightsError(f"{path}: header announces {n_layers} layers but the file has {len(layers)}")
    return layers


def _parse_line(path: Path, lineno: int, text: str) -> Layer:
    tok = text.split()
    try:
        n_in, n_out = int(tok[2]), int(tok[3])
        blobs = tok[4 : 4 + n_in + n_out]
        if len(blobs) != n_in + n_out:
            raise ValueError("too few blob names")
        params = {}
        for item in tok[4 + n_in + n_out :]:
            key, value = item.split("=", 1)
            k = int(key)
            if k <= -23300:  # array parameter: -23300-id = count,v1,v2,...
                vals = [float(v) for v in value.split(",")]
                params[-k - 23300] = vals[1 : 1 + int(vals[0])]
            else:
                params[k] = float(value) if re.search(r"[.eE]", value) else int(value)
    except (IndexError, ValueError, OverflowError) as e:
        raise WeightsError(f"{path}:{lineno}: malformed layer line ({e}): {text.strip()[:80]}") from None
    return Layer(tok[0], tok[1], blobs[:n_in], blobs[n_in:], params, lineno)


class _Bin:
    """Sequential reader over the `.bin` bytes with exact-size checks."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.data = path.read_bytes()
        self.pos = 0

    def _take(self, nbytes: int, what: str) -> int:
        if self.pos + nbytes > len(self.data):
            raise WeightsError(
                f"{self.path}: truncated: {what} needs {nbytes} bytes at offset {self.pos}, "
                f"only {len(self.data) - self.pos} left (file is {len(self.data)} bytes)"
            )
        start, self.pos = self.pos, self.pos + nbytes
        return start

    def fp32(self, n: int, what: str) -> torch.Tensor:
        start = self._take(4 * n, what)
        return torch.from_numpy(np.frombuffer(self.data, "<f4", n, start).astype(np.float32))

    def tagged(self, n: int, what: str) -> torch.Tensor:
        """A weight blob: a 4-byte storage tag, then fp16 (padded to 4 bytes) or fp32 values."""
        tag = int.from_bytes(self.data[self._take(4, what) : self.pos], "little")
        if tag == FP16_TAG:
            start = self._take(2 * n + (2 * n) % 4, what)
            return torch.from_numpy(np.frombuffer(self.data, "<f2", n, start).astype(np.float32))
        if tag == 0:
            return self.fp32(n, what)
        raise WeightsError(
            f"{self.path}: {what} uses storage tag {tag:#010x} at offset {self.pos - 4}; "
            "only fp16 (0x01306b47) and fp32 (0) weights are supported"
        )

    def finish(self) -> None:
        if self.pos != len(self.data):
            raise WeightsError(
                f"{self.path}: {len(self.data) - self.pos} bytes left over after the last layer "
                "(the .bin does not belong to this .param)"
            )


def read_ncnn(param_path: str | os.PathLike, bin_path: str | os.PathLike) -> tuple[dict[str, torch.Tensor], Card]:
    """Our state dict + card for an ncnn RRDBNet or SRVGGNetCompact model."""
    param_path, bin_path = Path(param_path), Path(bin_path)
    for p in (param_path, bin_path):
        if not p.is_file():
            raise WeightsError(f"ncnn model file not found: {p} (the .param and .bin must sit side by side)")
    layers = parse_param(param_path)
    kinds = Counter(layer.type for layer in layers)
    unknown = sorted(set(kinds) - set(WEIGHTED) - set(PLAIN))
    if unknown:
        raise WeightsError(f"{param_path}: layer types {unknown} are not part of RRDBNet or SRVGGNetCompact graphs")
    if kinds["PReLU"] or kinds["PixelShuffle"]:
        arch, kwargs, extra = _plan_srvgg(param_path, layers)
    elif kinds["Concat"] and kinds["Eltwise"]:
        arch, kwargs, extra = _plan_rrdb(param_path, layers, kinds)
    else:
        raise WeightsError(
            f"{param_path}: unrecognised ncnn graph (layer types {dict(kinds)}); expected RRDBNet "
            "(Concat + Eltwise dense blocks) or SRVGGNetCompact (Convolution + PReLU + PixelShuffle)"
        )
    sd = _read_weights(param_path, bin_path, layers, arch, kwargs)
    layout = f"ncnn {arch}"
    check_fits(arch, kwargs, sd, layout)
    ctx = Context(name=param_path.stem, source=f"{param_path.name} + {bin_path.name} (ncnn)")
    radius = kwargs["num_conv"] + 2 if arch == "SRVGGNetCompact" else 16
    card = upscale_card(arch, kwargs, ctx, scale=kwargs["scale"], receptive_radius=radius, layout=layout, extra=extra)
    return sd, card


def _out(path: Path, layer: Layer) -> int:
    out = layer.params.get(0)
    if not isinstance(out, int) or out < 1:
        raise WeightsError(f"{path}:{layer.line}: {layer.name} lacks a valid output channel count (0=...)")
    return out


def _in_channels(path: Path, layer: Layer) -> int:
    out, k = layer.params.get(0, 0), layer.params.get(1, 0)
    count = layer.params.get(6, 0)
    if not out or not k or count % (out * k * k):
        raise WeightsError(f"{path}:{layer.line}: {layer.name} weight count {count} is not out x in x {k} x {k}")
    return count // (out * k * k)


def _plan_srvgg(path: Path, layers: list[Layer]) -> tuple[str, dict[str, Any], dict[str, Any]]:
    convs = [x for x in layers if x.type == "Convolution"]
    prelus = [x for x in layers if x.type == "PReLU"]
    shuffles = [x for x in layers if x.type == "PixelShuffle"]
    if len(convs) < 3 or len(shuffles) != 1:
        raise WeightsError(f"{path}: SRVGGNetCompact needs >= 3 convolutions and one PixelShuffle")
    scale = int(shuffles[0].params.get(0, 1))
    in_ch, last_out = _in_channels(path, convs[0]), _out(path, convs[-1])
    if last_out != in_ch * scale * scale:
        raise WeightsError(f"{path}: last conv has {last_out} outputs, expected {in_ch} x {scale}^2")
    if prelus:
        act = "prelu"
    else:
        act = {"relu": "relu", "lrelu:0.1": "lrelu"}.get(_conv_act(convs[0], _next(layers, convs[0])), "")
        if not act:
            raise WeightsError(f"{path}: SRVGGNetCompact activation must be PReLU, ReLU or LeakyReLU(0.1)")
    extra: dict[str, Any] = {}
    residual = False
    for interp in (x for x in layers if x.type == "Interp"):
        kind, factor = _INTERP_KIND.get(interp.params.get(0, 0), "?"), float(interp.params.get(1, 1.0))
        if kind == "nearest" and factor == scale:
            residual = True  # the nearest-upsampled input the network output is added to
        elif kind in ("bilinear", "bicubic") and interp is layers[-1]:
            # UP2X/UP3X releases resize the x4 output; keep the x4 network and record the intended scale.
            extra = {"outscale": round(scale * factor, 4), "output_resize": kind}
        else:
            raise WeightsError(f"{path}:{interp.line}: unexpected {kind} resize x{factor} in an SRVGGNetCompact graph")
    if not residual or not any(x.type == "BinaryOp" for x in layers):
        raise WeightsError(f"{path}: graph lacks the nearest-upsampled input residual of SRVGGNetCompact")
    kwargs = {"in_ch": in_ch, "out_ch": in_ch, "nf": _out(path, convs[0]), "num_conv": len(convs) - 2}
    return "SRVGGNetCompact", {**kwargs, "scale": scale, "act": act}, extra


def _plan_rrdb(path: Path, layers: list[Layer], kinds: Counter) -> tuple[str, dict[str, Any], dict[str, Any]]:
    convs = [x for x in layers if x.type == "Convolution"]
    interps = [x for x in layers if x.type == "Interp"]
    bad = [x for x in interps if x.params.get(0) != 1 or float(x.params.get(1, 0)) != 2.0]
    if bad:
        raise WeightsError(f"{path}:{bad[0].line}: RRDBNet upsamples only by nearest x2; found {bad[0].params}")
    n_up = len(interps)
    nb, rest = divmod(len(convs) - 4 - n_up, 15)  # first, 15 per block, trunk, ups, HR, last
    if n_up not in (2, 3) or rest or nb < 1:
        raise WeightsError(
            f"{path}: {len(convs)} convolutions and {n_up} upsamplings do not form an RRDBNet "
            "(1 + 15 x blocks + 1 + 2 or 3 + 2 convolutions)"
        )
    if kinds["Eltwise"] != 4 * nb or kinds["Concat"] != 12 * nb:
        raise WeightsError(
            f"{path}: {nb} RRDB blocks need {4 * nb} residual sums and {12 * nb} concats, "
            f"found {kinds['Eltwise']} and {kinds['Concat']}"
        )
    nf, out_ch, in_ch = _out(path, convs[0]), _out(path, convs[-1]), _in_channels(path, convs[0])
    if in_ch != out_ch:
        raise WeightsError(
            f"{path}: first conv takes {in_ch} channels for {out_ch} outputs; pixel-unshuffle (x2/x1) ncnn "
            "RRDBNet graphs are not supported, convert the .pth release instead"
        )
    kwargs = {"in_ch": in_ch, "out_ch": out_ch, "nf": nf, "nb": nb, "gc": _out(path, convs[1])}
    return "RRDBNet", {**kwargs, "scale": 8 if n_up == 3 else 4}, {}


def _conv_act(conv: Layer, nxt: Layer | None) -> str:
    """The activation applied to a conv's output: fused (9=type) or a following ReLU/PReLU layer."""
    kind = conv.params.get(9, 0)
    if kind == 1:
        return "relu"
    if kind == 2:
        slope = (conv.params.get(10) or [0.0])[0]
        return f"lrelu:{slope:g}" if slope else "relu"
    if kind:
        return f"activation type {kind}"
    if nxt is not None and nxt.inputs == conv.outputs:
        if nxt.type == "PReLU":
            return "prelu"
        if nxt.type == "ReLU":
            slope = float(nxt.params.get(0, 0.0))
            return f"lrelu:{slope:g}" if slope else "relu"
    return "none"


def _next(layers: list[Layer], layer: Layer) -> Layer | None:
    idx = next(i for i, x in enumerate(layers) if x is layer)
    return layers[idx + 1] if idx + 1 < len(layers) else None


def _expected_act(arch: str, kwargs: dict[str, Any], name: str, is_last: bool) -> str:
    if arch == "RRDBNet":
        lrelu = re.search(r"rdb\d\.conv[1-4]$|conv_up\d$|conv_hr$", name)
        return "lrelu:0.2" if lrelu else "none"
    if is_last:
        return "none"
    return {"prelu": "prelu", "relu": "relu", "lrelu": "lrelu:0.1"}[kwargs["act"]]


def _read_weights(
    param_path: Path, bin_path: Path, layers: list[Layer], arch: str, kwargs: dict[str, Any]
) -> dict[str, torch.Tensor]:
    """Pair the file's weighted layers with our arch's modules in network order and read the .bin."""
    with torch.device("meta"):
        net = build_arch(arch, **kwargs)
    slots = [(n, m) for n, m in net.named_modules() if isinstance(m, (nn.Conv2d, nn.PReLU))]
    weighted = [x for x in layers if x.type in WEIGHTED]
    if len(slots) != len(weighted):
        raise WeightsError(f"{param_path}: {len(weighted)} weighted layers, {arch}({kwargs}) has {len(slots)}")
    last_conv = [n for n, m in slots if isinstance(m, nn.Conv2d)][-1]
    following = {id(a): b for a, b in zip(layers, layers[1:], strict=False)}
    blob, sd = _Bin(bin_path), {}
    for (name, mod), layer in zip(slots, weighted, strict=True):
        where = f"{param_path}:{layer.line} {layer.type} {layer.name} (our {name})"
        if isinstance(mod, nn.PReLU):
            if layer.type != "PReLU" or layer.params.get(0) != mod.num_parameters:
                raise WeightsError(f"{where}: expected PReLU with {mod.num_parameters} slopes")
            sd[f"{name}.weight"] = blob.fp32(mod.num_parameters, where)
            continue
        p, k = layer.params, mod.kernel_size[0]
        geometry = (
            p.get(0),
            p.get(1),
            p.get(11, p.get(1)),
            p.get(2, 1),
            p.get(3, 1),
            p.get(4, 0),
            p.get(5, 0),
        )
        want = (mod.out_channels, k, k, 1, 1, mod.padding[0], 1)
        if layer.type != "Convolution" or geometry != want or p.get(6) != mod.weight.numel() or p.get(8, 0):
            raise WeightsError(
                f"{where}: expected a {k}x{k} stride-1 pad-{mod.padding[0]} convolution with bias, "
                f"{mod.in_channels}->{mod.out_channels} ({mod.weight.numel()} weights); the line says {p}"
            )
        got, want_act = (
            _conv_act(layer, following.get(id(layer))),
            _expected_act(arch, kwargs, name, name == last_conv),
        )
        if got != want_act:
            raise WeightsError(f"{where}: activation {got!r} where {arch} applies {want_act!r}")
        sd[f"{name}.weight"] = blob.tagged(mod.weight.numel(), where).reshape(mod.weight.shape)
        sd[f"{name}.bias"] = blob.fp32(mod.out_channels, where)
    blob.finish()
    return sd
