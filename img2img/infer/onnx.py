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

from img2img.errors import Img2ImgError, WeightsError

MAX_SIDE = 1 << 14  # the largest height / width the exported graph declares
PARITY_TOLERANCE = 1e-4  # max |onnxruntime - torch| on the probe, in [0, 1] units
OPSET = 18


class _InGraph(nn.Module):
    """[0, 1] -> the card's value range -> network -> [0, 1], clamped."""

    def __init__(self, net: nn.Module, value_range: tuple[float, float], clamp: bool = True) -> None:
        super().__init__()
        self.net, self.clamp = net, clamp
        self.lo, self.hi = float(value_range[0]), float(value_range[1])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        span = self.hi - self.lo
        y = (self.net(x * span + self.lo) - self.lo) / span
        return y.clamp(0.0, 1.0) if self.clamp else y


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
    model: Any, path: str | os.PathLike, *, probe: np.ndarray | None = None, check: bool = True, opset: int = OPSET,
    exporter: str = "dynamo", clamp: bool = True,
) -> OnnxReport:  # fmt: skip
    """Write `model` (an image -> image Model from `img2img.load`) as ONNX at `path` (atomically) and, with
    `check`, run the file in onnxruntime on the probe and compare with torch (fp32 CPU); a difference
    above PARITY_TOLERANCE is an error and nothing is written.

    exporter: `dynamo` (torch.export, the maintained path; tens of seconds for an RRDB net) or
    `torchscript` (the tracing exporter: a few seconds, used for the engine cache, see `cached_session`).
    clamp: end the graph with the clamp to [0, 1] (off for the engine, which clamps after self-ensemble)."""
    if exporter not in ("dynamo", "torchscript"):
        raise Img2ImgError(f"exporter must be 'dynamo' or 'torchscript', not {exporter!r}")
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
    net = _InGraph(model.net, card.value_range, clamp).to("cpu", torch.float32).eval()
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
            proto = _trace(net, x, dims, opset) if exporter == "torchscript" else _export(net, x, dims, opset)
        except Exception as e:  # the exporter's errors are many kinds; name the model and the cause
            raise Img2ImgError(f"{card.name} ({card.arch}): torch could not export it to ONNX: {_summary(e)}") from e
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


def _export(net: nn.Module, x: torch.Tensor, dims: tuple, opset: int) -> Any:
    program = torch.onnx.export(
        net, (x,), input_names=["image"], output_names=["output"], dynamic_shapes=dims, dynamo=True,
        opset_version=opset, verbose=False,
    )  # fmt: skip
    return program.model_proto


def _trace(net: nn.Module, x: torch.Tensor, dims: tuple, opset: int) -> Any:
    """The tracing exporter: the graph of one probe run, with height and width declared dynamic. Every
    image network here has a static control flow, and the parity check runs on the result."""
    import io
    import warnings

    onnx = _require("onnx")
    buffer = io.BytesIO()
    axes = {"image": {0: "batch", 2: "height", 3: "width"}, "output": {0: "batch", 2: "out_height", 3: "out_width"}}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the exporter's deprecation notice and tracer warnings
        torch.onnx.export(
            net, (x,), buffer, input_names=["image"], output_names=["output"], dynamic_axes=axes, dynamo=False,
            opset_version=opset,
        )  # fmt: skip
    return onnx.load_from_string(buffer.getvalue())


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


# --- the onnxruntime engine -----------------------------------------------------------------------


def engine_cache_dir() -> Path:
    """`$IMG2IMG_HOME/onnx`, else `~/.cache/img2img/onnx`: the engine's exported graphs."""
    from img2img.resources import home_dir

    return home_dir() / "onnx"


def model_key(model: Any, opset: int = OPSET) -> str:
    """A digest of what the exported graph depends on: the card, every weight's bytes, the opset and the
    torch and onnx versions. A changed file, another model or an upgrade gives another cache entry."""
    import hashlib

    onnx = _require("onnx")
    h = hashlib.sha256()
    h.update(json.dumps(model.card.to_dict(), sort_keys=True, default=str).encode())
    versions = f"opset {opset}|torch {torch.__version__}|onnx {onnx.__version__}"
    h.update(f"|engine graph, no clamp, any batch|{versions}|".encode())
    for name, tensor in model.net.state_dict().items():
        t = tensor.detach().to("cpu").contiguous()
        h.update(f"{name}:{t.dtype}:{tuple(t.shape)}".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


def _new_session(path: Path, threads: int) -> Any:
    ort = _require("onnxruntime")
    options = ort.SessionOptions()
    options.intra_op_num_threads = max(1, int(threads))
    options.inter_op_num_threads = 1
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def cached_session(model: Any, *, threads: int | None = None, notes: list[str] | None = None) -> tuple[Any, Path]:
    """An onnxruntime session for `model` (an image Model), from the engine cache: exported (and checked
    against torch) on first use, reused afterwards. A cache file that onnxruntime cannot open, or that is
    not this model's, is exported again (and the reason noted)."""
    _require("onnxruntime")
    threads = threads or torch.get_num_threads()
    key = model_key(model)
    stem = "".join(c if c.isalnum() or c in "-_." else "_" for c in model.card.name)[:80] or "model"
    path = engine_cache_dir() / f"{stem}-{key[:24]}.onnx"
    if path.is_file():
        try:
            stored = read_onnx_card(path)
            if stored.get("name") != model.card.name:
                raise Img2ImgError(f"it holds {stored.get('name')!r}")
            return _new_session(path, threads), path
        except Exception as e:  # a truncated or foreign file: export again rather than fail the run
            note = f"the cached ONNX graph {path} was unusable ({_summary(e)}); exported it again"
            if notes is not None:
                notes.append(note)
            path.unlink(missing_ok=True)
    from types import SimpleNamespace

    view = SimpleNamespace(  # the eval network itself, whatever ensemble the model runs around it
        kind="image", card=model.card, net=model.net, size_multiple=model.size_multiple,
        in_channels=model.in_channels, out_channels=model.out_channels, train_mode=False, ensemble=False,
    )  # fmt: skip
    try:
        try:
            export_onnx(view, path, exporter="torchscript", clamp=False)
        except Img2ImgError:  # the tracing exporter cannot take every network: the maintained one can more
            export_onnx(view, path, exporter="dynamo", clamp=False)
    except OSError as e:
        raise Img2ImgError(
            f"cannot write the ONNX export to {path.parent} ({e.strerror or e}); point IMG2IMG_HOME at a "
            "writable folder, or use engine='torch'"
        ) from e
    return _new_session(path, threads), path


class OrtTileForward:
    """The onnxruntime counterpart of `TileForward`: a CPU float32 tile in [0, 1] -> the output in [0, 1]
    through the exported graph (value-range mapping inside it), fp32, with the same self-ensemble and the
    clamp after it."""

    def __init__(self, session: Any, ensemble: bool = False) -> None:
        self.session, self.ensemble = session, bool(ensemble)
        self.notes: list[str] = []
        self.one_at_a_time = session.get_inputs()[0].shape[0] == 1  # a graph exported with a fixed batch of 1

    def __call__(self, x: torch.Tensor, *extra: torch.Tensor, map_input: bool = True) -> torch.Tensor:
        if extra or not map_input:
            raise Img2ImgError("the onnxruntime engine runs image -> image graphs with one input")
        from img2img.infer.model import dihedral, undo_dihedral

        x = x.to("cpu", torch.float32)
        if not self.ensemble:
            y = self._run(x)
        else:
            y = sum(undo_dihedral(self._run(dihedral(x, k)), k) for k in range(8)) / 8
        if not bool(torch.isfinite(y).all()):
            raise WeightsError("the network produced NaN/Inf in fp32: its weights are broken")
        return y.clamp_(0, 1)

    def _run(self, x: torch.Tensor) -> torch.Tensor:
        if self.one_at_a_time and x.shape[0] > 1:
            return torch.cat([self._run(x[i : i + 1]) for i in range(x.shape[0])])
        feed = np.ascontiguousarray(x.numpy(), dtype=np.float32)
        try:
            out = self.session.run(None, {"image": feed})[0]
        except Exception as e:  # onnxruntime's own exception types; an allocation failure reads as out of memory
            if "allocat" in str(e).lower():
                raise RuntimeError(f"out of memory in onnxruntime: {_summary(e)}") from e
            raise
        return torch.from_numpy(out)
