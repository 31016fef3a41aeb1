"""The inference engine: `load(name_or_path) -> Model`, a callable that pads, tiles with a
feathered blend, picks device and precision, recovers from out-of-memory and fp16 overflow,
maps value ranges, and handles grey, RGB and alpha images. The CLI and the app use only this."""

from __future__ import annotations

import copy
import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

from img2img.devices import resolve_device
from img2img.errors import ImageTooLargeError, Img2ImgError, WeightsError
from img2img.weights.format import Card, load_bundle

log = logging.getLogger(__name__)

DEFAULT_MAX_OUTPUT_PIXELS = 512_000_000
MAX_OUTPUT_PIXELS_ENV = "IMG2IMG_MAX_OUTPUT_PIXELS"  # the limit for the CLI and the app (load's argument wins)
PRECISIONS = {"auto": "auto", "fp32": "fp32", "float32": "fp32", "bf16": "bf16", "bfloat16": "bf16",
              "fp16": "fp16", "float16": "fp16", "half": "fp16"}  # fmt: skip


def resolve_precision(precision: str, device: torch.device, card: Card | None = None) -> str:
    """`auto` = fp16 on CUDA; on a CPU with native bf16 (AVX512-BF16, AMX) bf16 for a model whose card
    records bf16 fidelity >= 45 dB PSNR against fp32 (`weights.probe`); fp32 otherwise (where bf16 is
    emulated it is several times slower). fp16 on CPU is refused (slow and no faster than bf16 there);
    bf16 works on every device through autocast."""
    p = PRECISIONS.get(str(precision).strip().lower())
    if p is None:
        raise Img2ImgError(f"unknown precision {precision!r}: use auto, fp32, bf16 or fp16")
    if p == "auto":
        if device.type == "cuda":
            return "fp16"
        if device.type == "cpu" and card is not None:
            from img2img.devices import native_bf16
            from img2img.weights.probe import bf16_ok

            return "bf16" if native_bf16() and bf16_ok(card) else "fp32"
        return "fp32"
    if p == "fp16" and device.type == "cpu":
        raise Img2ImgError("fp16 needs a CUDA or MPS device; on CPU use precision='bf16' or 'fp32'")
    return p


def runtime_label(model: Any) -> str:
    """The engine after the precision in status lines (", compile", ", onnxruntime"); empty for torch."""
    engine = getattr(model, "engine", "torch")
    return "" if engine == "torch" else f", {engine}"


def dihedral(x: torch.Tensor, k: int) -> torch.Tensor:
    """The k-th (0-7) of the 8 flips / transposes of an NCHW batch; k = 0 is the identity."""
    if k & 1:
        x = x.flip(-1)
    if k & 2:
        x = x.flip(-2)
    return x.transpose(-1, -2) if k & 4 else x


def undo_dihedral(y: torch.Tensor, k: int) -> torch.Tensor:
    if k & 4:
        y = y.transpose(-1, -2)
    if k & 2:
        y = y.flip(-2)
    return y.flip(-1) if k & 1 else y


class Compiled:
    """`net` compiled on first call; the eager `net` from then on if compiling fails (with a note)."""

    def __init__(self, net: nn.Module, notes: list[str]) -> None:
        self.net, self.notes = net, notes
        self._compiled: Callable[..., Any] | None = torch.compile(net)

    def __call__(self, *args: torch.Tensor) -> Any:
        if self._compiled is not None:
            try:
                return self._compiled(*args)
            except Exception as e:  # noqa: BLE001 - any failure of the compiler: run eagerly instead
                from img2img.infer.tiling import is_out_of_memory

                if is_out_of_memory(e):
                    raise
                first = str(e).strip().splitlines()[0] if str(e).strip() else ""
                note = f"torch.compile failed ({type(e).__name__}: {first[:200]}); running the network eagerly"
                log.warning(note)
                self.notes.append(note)
                self._compiled = None
        return self.net(*args)


class TileForward:
    """Runs one tile through the network on the device at the chosen precision.

    Takes a CPU float32 tile in [0, 1], maps it to the card's value range, and returns a CPU float32
    tile in [0, 1]. Reduced precision that overflows (NaN/Inf) is rerun in fp32, and noted. With
    `ensemble`, the output is the mean over the 8 flips / transposes of the tile, each undone
    (self-ensemble, Lim et al. 2017): 8x the work for a steadier, slightly more accurate result. With
    `compile`, the network runs through torch.compile (`Compiled`; its cache: `img2img.compiling`).
    """

    def __init__(
        self, net: nn.Module, device: torch.device, precision: str, value_range: tuple, ensemble: bool = False,
        output: Callable[[Any], torch.Tensor] | None = None, compile: bool = False,
    ) -> None:  # fmt: skip
        self.device, self.precision, self.ensemble = device, precision, bool(ensemble)
        self.output = output or (lambda y: y)  # picks the image from a network that returns several tensors
        self.lo, self.hi = float(value_range[0]), float(value_range[1])
        self.notes: list[str] = []
        self.fallback_tiles = 0
        net = net.eval().requires_grad_(False)
        # fp16 weights lose bits: keep exact fp32 weights on the CPU for the rerun.
        self._fp32_state = {k: v.clone() for k, v in net.state_dict().items()} if precision == "fp16" else None
        self._fp32_net: nn.Module | None = None
        net = net.to(device)
        if precision == "fp16":
            net = net.half()
        self.channels_last = device.type == "cpu"  # faster oneDNN convolutions on CPU
        if self.channels_last:
            net = net.to(memory_format=torch.channels_last)
        self.net = net
        self.compiled = None
        if compile:
            self.compiled = Compiled(net, self.notes)

    def __call__(self, x: torch.Tensor, *extra: torch.Tensor, map_input: bool = True) -> torch.Tensor:
        """`x` in [0, 1] (mapped to the value range unless `map_input` is off, as for one-hot labels or text
        embeddings) plus `extra` network inputs (e.g. a style latent) -> output in [0, 1] on the CPU."""
        x = x.to(self.device, torch.float32)
        if map_input:
            x = x * (self.hi - self.lo) + self.lo
        if self.channels_last and x.ndim == 4:
            x = x.contiguous(memory_format=torch.channels_last)
        extra = tuple(e.to(self.device, torch.float32) for e in extra)
        with torch.inference_mode():
            y = self._predict(x, extra, self.precision)
            if self.precision != "fp32" and not bool(torch.isfinite(y).all()):
                self._note_fallback()
                y = self._predict(x, extra, "fp32")
            if not bool(torch.isfinite(y).all()):
                raise WeightsError("the network produced NaN/Inf in fp32: its weights are broken")
            y = ((y - self.lo) / (self.hi - self.lo)).clamp_(0, 1)
        return y.to("cpu")

    def _predict(self, x: torch.Tensor, extra: tuple, precision: str) -> torch.Tensor:
        if not self.ensemble:
            return self._run(x, extra, precision)
        total = None
        for k in range(8):
            xk = dihedral(x, k)
            if self.channels_last:
                xk = xk.contiguous(memory_format=torch.channels_last)
            yk = undo_dihedral(self._run(xk, extra, precision), k)
            total = yk if total is None else total.add_(yk)
        return total / 8

    def _run(self, x: torch.Tensor, extra: tuple, precision: str) -> torch.Tensor:
        net = self.compiled or self.net
        if precision == "bf16":
            with torch.autocast(self.device.type, dtype=torch.bfloat16):
                return self.output(net(x, *extra)).float()
        if precision == "fp16":
            return self.output(net(x.half(), *(e.half() for e in extra))).float()
        return self.output(self._fp32()(x, *extra)).float()

    def _fp32(self) -> Any:
        if self._fp32_state is None:
            return self.compiled or self.net
        if self._fp32_net is None:
            net = copy.deepcopy(self.net).float()
            net.load_state_dict(self._fp32_state)
            self._fp32_net = net
        return self._fp32_net

    def _note_fallback(self) -> None:
        """One note, kept up to date, rather than one per tile."""
        self.fallback_tiles += 1
        note = f"{self.precision} produced NaN/Inf; reran in fp32 ({self.fallback_tiles} tile(s) so far)"
        if self.fallback_tiles == 1:
            log.warning(note)
            self._note_index = len(self.notes)
            self.notes.append(note)
        else:
            self.notes[self._note_index] = note


class Model:
    """What `load` returns: a network (or a bundle of them) ready for inference, run the way its card's
    task kind says. `ImageModel` (upscale, translate), `LabelsModel` (synthesize) and `TextModel`
    (generate) share device and precision choice, output limits and `describe`."""

    kind = ""
    # Options of `load` that only some kinds honour, with their neutral values.
    IMAGE_OPTIONS = {"tile": None, "tile_overlap": None, "train_mode": False, "ensemble": False, "engine": "torch"}

    def __init__(
        self, card: Card, *, device: str | torch.device = "auto", precision: str = "auto",
        max_output_pixels: int | None = None,
    ) -> None:  # fmt: skip
        if max_output_pixels is not None and max_output_pixels < 1:
            raise Img2ImgError(f"max_output_pixels must be positive, not {max_output_pixels}")
        self.card, self.task = card, card.task
        self.device = resolve_device(device)
        self.precision = resolve_precision(precision, self.device, card if self.kind == "image" else None)
        self.max_output_pixels = max_output_pixels or _env_output_limit()
        self.notes: list[str] = []

    @classmethod
    def refuse_image_options(cls, card: Card, options: dict[str, Any]) -> None:
        """Tiling, train mode and self-ensemble are image -> image options; say so when given elsewhere."""
        given = [k for k, neutral in cls.IMAGE_OPTIONS.items() if options.get(k, neutral) not in (neutral, 0)]
        if given:
            raise Img2ImgError(f"{card.name} is a {card.task} model: {', '.join(given)} apply to image models only")

    def _check_size(self, h: int, w: int, *outs: tuple[int, int]) -> None:
        for oh, ow in outs:
            if oh * ow > self.max_output_pixels:
                raise ImageTooLargeError(
                    f"a {w}x{h} input gives a {ow}x{oh} output ({oh * ow / 1e6:.0f} MP), over the "
                    f"{self.max_output_pixels / 1e6:.0f} MP limit; if you have the memory for the result, "
                    f"raise it with the environment variable {MAX_OUTPUT_PIXELS_ENV}=N (pixels), or "
                    "img2img.load(..., max_output_pixels=N) from Python"
                )

    def describe(self) -> dict:
        c = self.card
        return dict(
            name=c.name, arch=c.arch, task=self.task, kind=c.kind, device=str(self.device), precision=self.precision,
            max_output_pixels=self.max_output_pixels, notes=list(self.notes),
        )  # fmt: skip

    def __repr__(self) -> str:
        d = self.describe()
        return f"{type(self).__name__}({d['name']!r}, {d['task']}, {d['device']}, {d['precision']})"


def _env_output_limit() -> int:
    raw = os.environ.get(MAX_OUTPUT_PIXELS_ENV, "").strip()
    if not raw:
        return DEFAULT_MAX_OUTPUT_PIXELS
    try:
        value = int(float(raw))
    except (ValueError, OverflowError):
        raise Img2ImgError(f"{MAX_OUTPUT_PIXELS_ENV}={raw!r} is not a number of pixels") from None
    if value < 1:
        raise Img2ImgError(f"{MAX_OUTPUT_PIXELS_ENV} must be a positive number of pixels, not {raw}")
    return value


def load(
    name_or_path: str | Path,
    *,
    device: str = "auto",
    precision: str = "auto",
    tile: int | None = None,
    tile_overlap: int | None = None,
    max_output_pixels: int | None = None,
    train_mode: bool = False,
    ensemble: bool = False,
    engine: str = "torch",
) -> Model:
    """Load a model by catalog name, released checkpoint, or our `.safetensors` file.

    device: auto | cpu | cuda | cuda:N | mps. precision: auto (fp16 on CUDA, else fp32) | fp32 |
    bf16 | fp16. tile: None = automatic, 0 = whole image, N = N x N input pixels per tile.
    tile_overlap: input pixels of context and blend (default: the card's receptive radius).
    train_mode: run dropout and batch norm as in training (batch statistics of each image), as the
    released pix2pix results were made; whole images only. Default: eval mode (running statistics).
    ensemble: average the outputs for the 8 flips / transposes of the input (8x slower; on SR
    benchmarks typically +0.05-0.15 dB PSNR). engine: torch; compile (torch with the network compiled
    by torch.compile on first use, the generated code cached in `$IMG2IMG_HOME/compile`; needs a C++
    compiler); or onnxruntime (fp32 on the CPU through an ONNX export of the network, made and checked
    against torch on first use and cached in `$IMG2IMG_HOME/onnx`). The last five apply to image -> image models only.

    What the returned Model consumes follows from the card's task kind: `ImageModel` (upscale,
    translate) takes images, `LabelsModel` (synthesize) label maps, `TextModel` (generate) prompts.
    """
    nets, card = load_bundle(_resolve_path(name_or_path))
    common = dict(device=device, precision=precision, max_output_pixels=max_output_pixels)
    image_options = dict(tile=tile, tile_overlap=tile_overlap, train_mode=train_mode, ensemble=ensemble, engine=engine)
    if card.kind == "image":
        from img2img.infer.image import ImageModel

        return ImageModel(card, nets[""], **common, **image_options)
    if card.extra.get("role") == "text_encoder":
        raise Img2ImgError(
            f"{card.name} is a text encoder for training StackGAN, not a generator: name it in the `text_encoder:` "
            "key of a stackgan stage-1 config, or generate with the exported StackGAN model"
        )
    Model.refuse_image_options(card, image_options)
    from img2img.infer import tasks

    return tasks.MODELS[card.kind](card, nets, **common)


def _resolve_path(name_or_path: str | Path) -> Path:
    """The catalog resolves names, released checkpoints, and card-less `.safetensors`; without it
    only our own `.safetensors` files load."""
    try:
        from img2img.weights.catalog import resolve_weights
    except ModuleNotFoundError as e:
        if e.name != "img2img.weights.catalog":
            raise
        path = Path(name_or_path).expanduser()
        if path.suffix == ".safetensors" and path.is_file():
            return path
        raise WeightsError(
            f"{name_or_path}: not an existing .safetensors file, and the weights catalog is unavailable"
        ) from e
    return Path(resolve_weights(str(name_or_path)))
