"""ONNX export of image -> image models (upscale, translate): the network with its value-range mapping
and the final clamp inside the graph, so the graph takes and gives NCHW float32 RGB (or grey) in [0, 1];
height and width are dynamic in steps of the model's size multiple. What stays outside the graph, as
in our own engine: decoding, EXIF orientation, alpha (premultiply, run, un-premultiply), grey/RGB
conversion, padding to the size multiple (reflect) and cropping back, tiling and blending, resizing to
an `outscale`, and quantising to 8 or 16 bits. The card travels in the file's metadata (`img2img.card`).

Needs the optional packages `onnx`, `onnxscript` (torch's exporter) and, for the parity check,
`onnxruntime` (`pip install "img2img[onnx]"`)."""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from img2img.errors import Img2ImgError

MAX_SIDE = 1 << 14  # the largest height / width the exported graph declares
PARITY_TOLERANCE = 1e-4  # max |onnxruntime - torch| on the probe, in [0, 1] units
OPSET = 18


class _InGraph(nn.Module):
    """[0, 1] -> the card's value range -> network -> [0, 1], clamped."""

    def __init__(self, net: nn.Module, value_range: tuple[float, float]) -> None:
        super().__init__()
        self.net = net
        self.lo, self.hi = float(value_range[0]), float(value_range[1])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        span = self.hi - self.lo
        y = self.net(x * span + self.lo)
        return ((y - self.lo) / span).clamp(0.0, 1.0)


@dataclass
class OnnxReport:
    path: Path
    input_shape: tuple[int, ...]  # the probe's shape
    output_shape: tuple[int, ...]
    max_abs_diff: float | None  # onnxruntime vs torch on the probe; None when not checked
    size_multiple: int
    scale: int

    def to_dict(self) -> dict[str, Any]:
        return {
            "path": str(self.path), "input_shape": list(self.input_shape), "output_shape": list(self.output_shape),
            "max_abs_diff": self.max_abs_diff, "size_multiple": self.size_multiple, "scale": self.scale,
        }  # fmt: skip


def _require(module: str) -> Any:
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as e:
        raise Img2ImgError(f'ONNX export needs the package {module!r}: pip install "img2img[onnx]"') from e


def probe_tensor(image: np.ndarray | None, channels: int, multiple: int, side: int = 64) -> torch.Tensor:
    """A 1 x C x H x W probe in [0, 1]: the image (grey/RGB as the model takes, cropped to a multiple of
    `multiple`), or a fixed-seed smooth random image of `side` (rounded up to the multiple)."""
    if image is None:
        side = multiple * max(1, -(-side // multiple))
        g = torch.Generator().manual_seed(0)
        x = torch.rand(1, channels, side // 8 + 1, side // 8 + 1, generator=g)
        return torch.nn.functional.interpolate(x, size=(side, side), mode="bilinear", align_corners=False)
    img = np.asarray(image, np.float32)
    img = img[..., None] if img.ndim == 2 else img[..., :3]
    if img.shape[2] != channels:
        img = np.repeat(img.mean(axis=2, keepdims=True), channels, axis=2) if channels in (1, 3) else img
    h, w = (img.shape[0] // multiple) * multiple, (img.shape[1] // multiple) * multiple
    if h < 1 or w < 1:
        raise Img2ImgError(
            f"the probe image ({img.shape[1]}x{img.shape[0]}) is smaller than the size multiple {multiple}"
        )
    return torch.from_numpy(np.ascontiguousarray(img[:h, :w])).permute(2, 0, 1)[None].clamp(0, 1)


def export_onnx(
    model: Any, path: str | os.PathLike, *, probe: np.ndarray | None = None, check: bool = True, opset: int = OPSET
) -> OnnxReport:
    """Write `model` (an image -> image Model from `img2img.load`) as ONNX at `path` (atomically) and, with
    `check`, run the file in onnxruntime on the probe and compare with torch (fp32 CPU); a difference
    above PARITY_TOLERANCE is an error and nothing is written."""
    if getattr(model, "kind", None) != "image":
        raise Img2ImgError(
            f"{model.card.name} is a {model.task} model: ONNX export covers image -> image models (upscale, "
            "translate); label-map and text models run through img2img.load"
        )
    if getattr(model, "train_mode", False) or getattr(model, "ensemble", False):
        raise Img2ImgError(
            "ONNX export runs the network in eval mode once: load the model without train_mode / ensemble"
        )
    onnx = _require("onnx")
    _require("onnxscript")
    path = Path(path)
    card = model.card
    net = _InGraph(model.net, card.value_range).to("cpu", torch.float32).eval()
    m = int(model.size_multiple)
    x = probe_tensor(probe, model.in_channels, m)
    hb, wb = (
        torch.export.Dim("h_blocks", min=1, max=MAX_SIDE // m),
        torch.export.Dim("w_blocks", min=1, max=MAX_SIDE // m),
    )
    dims = ({2: hb * m if m > 1 else hb, 3: wb * m if m > 1 else wb},)
    with torch.no_grad():
        want = net(x)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        try:
            program = torch.onnx.export(
                net, (x,), input_names=["image"], output_names=["output"], dynamic_shapes=dims, dynamo=True,
                opset_version=opset, verbose=False,
            )  # fmt: skip
        except Exception as e:  # the exporter's errors are many kinds; name the model and the cause
            raise Img2ImgError(f"{card.name} ({card.arch}): torch could not export it to ONNX: {_summary(e)}") from e
        proto = program.model_proto
        meta = {
            "img2img.card": json.dumps(card.to_dict(), sort_keys=True),
            "img2img.io": json.dumps(
                {
                    "input": "image: N x C x H x W float32 in [0, 1], H and W multiples of size_multiple",
                    "output": f"output: N x C x {card.scale}H x {card.scale}W float32 in [0, 1]",
                    "size_multiple": m,
                    "scale": int(card.scale),
                    "in_channels": model.in_channels,
                    "out_channels": model.out_channels,
                }
            ),  # fmt: skip
        }
        for key, value in meta.items():
            entry = proto.metadata_props.add()
            entry.key, entry.value = key, value
        onnx.save_model(proto, str(tmp))
        diff = None
        if check:
            got = run_onnx(tmp, x.numpy())
            if got.shape != tuple(want.shape):
                raise Img2ImgError(f"ONNX output shape {got.shape} differs from torch's {tuple(want.shape)}")
            diff = float(np.abs(got - want.numpy()).max())
            if not diff <= PARITY_TOLERANCE:
                raise Img2ImgError(
                    f"{card.name}: onnxruntime and torch differ by {diff:.3g} on the probe (tolerance "
                    f"{PARITY_TOLERANCE:g}); the file was not written"
                )
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return OnnxReport(path, tuple(x.shape), tuple(want.shape), diff, m, int(card.scale))


def _summary(e: BaseException) -> str:
    """The exporter's own one-line cause, without its advice on filing bug reports."""
    lines = [ln.strip() for ln in str(e).splitlines() if ln.strip()]
    if "## Exception summary" in lines:
        after = lines[lines.index("## Exception summary") + 1 :]
        if after:
            return after[0][:500]
    return (lines[0] if lines else type(e).__name__)[:500]


def run_onnx(path: str | os.PathLike, x: np.ndarray, threads: int | None = None) -> np.ndarray:
    """Run an exported file in onnxruntime (CPU) on an NCHW float32 batch in [0, 1]."""
    ort = _require("onnxruntime")
    options = ort.SessionOptions()
    if threads:
        options.intra_op_num_threads = int(threads)
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    return session.run(None, {"image": np.ascontiguousarray(x, np.float32)})[0]


def read_onnx_card(path: str | os.PathLike) -> dict[str, Any]:
    """The card stored in an exported file's metadata."""
    onnx = _require("onnx")
    proto = onnx.load(str(path), load_external_data=False)
    props = {p.key: p.value for p in proto.metadata_props}
    if "img2img.card" not in props:
        raise Img2ImgError(f"{path}: not an img2img ONNX export (no img2img.card metadata)")
    return json.loads(props["img2img.card"])
