"""Image -> image models (upscale, translate): the input padded to the network's multiple, tiled with a
feathered blend where the network allows it (whole images where per-image statistics or an image-wide
receptive field would make tiles differ), out-of-memory retries with smaller tiles, grey / RGB / alpha
images (alpha premultiplied around the network), value ranges and output scale."""

from __future__ import annotations

import logging
import math

import numpy as np
import torch
from torch import nn

from img2img.errors import ImageError, Img2ImgError
from img2img.infer import tiling
from img2img.infer.model import Model, TileForward
from img2img.io.images import to_samples
from img2img.weights.format import Card

log = logging.getLogger(__name__)

ALPHA_MODES = ("model", "bicubic", "none")
# compile: the torch engine through torch.compile, its code cached; onnxruntime: fp32 on the CPU through the
# cached ONNX export
ENGINES = ("torch", "compile", "onnxruntime")
LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)  # BT.601


def whole_image_reason(net: nn.Module, card: Card, train_mode: bool) -> str | None:
    """Why `net` cannot be tiled without changing its output, or None when it can."""
    from img2img.layers import uses_image_statistics

    if train_mode:
        return "train_mode normalises with each image's own statistics"
    if uses_image_statistics(net.eval()):
        return f"{card.name} ({card.arch}) normalises with each image's own statistics"
    if getattr(net, "whole_image", False):
        return f"{card.name} ({card.arch}) has a receptive field as large as the image"
    return None


class ImageModel(Model):
    """Image -> image (upscale, translate): tiled where the network allows. Images are float32 in [0, 1]."""

    kind = "image"

    def __init__(
        self,
        card: Card,
        net: nn.Module,
        *,
        device: str | torch.device = "auto",
        precision: str = "auto",
        tile: int | None = None,
        tile_overlap: int | None = None,
        max_output_pixels: int | None = None,
        train_mode: bool = False,
        ensemble: bool = False,
        engine: str = "torch",
    ) -> None:
        if engine not in ENGINES:
            raise Img2ImgError(f"engine must be one of {', '.join(ENGINES)}, not {engine!r}")
        if engine == "onnxruntime":
            _check_onnxruntime_options(device, precision, train_mode)
            device, precision = "cpu", "fp32"
        if engine == "compile":
            from img2img.compiling import prepare

            prepare()
        for label, value in (("tile", tile), ("tile_overlap", tile_overlap)):
            if value is not None and (not isinstance(value, int) or value < 0):
                raise Img2ImgError(f"{label} must be a whole number >= 0 (0 for tile = whole image), not {value!r}")
        super().__init__(card, device=device, precision=precision, max_output_pixels=max_output_pixels)
        self.scale = int(card.scale)
        self.in_channels, self.out_channels = int(card.in_channels), int(card.out_channels)
        self.size_multiple = math.lcm(int(card.size_multiple), int(getattr(net, "size_multiple", 1)))
        self.train_mode = bool(train_mode)
        from img2img.layers import train_mode_inference

        # Per-image statistics (instance norm, batch statistics) differ per tile, and a receptive field
        # as large as the image needs all of it: such nets run whole images.
        why = whole_image_reason(net, card, self.train_mode)
        self.whole_images = why is not None
        if why and tile not in (None, 0):
            raise Img2ImgError(f"{why}, so it runs whole images: leave tile unset (or 0), not {tile}")
        self.tile = 0 if self.whole_images else tile
        self.tile_overlap = card.receptive_radius if tile_overlap is None else tile_overlap
        self.ensemble = bool(ensemble)
        self.engine = engine
        if engine == "onnxruntime":
            from img2img.infer.onnx import OrtTileForward, cached_session

            self.net = net.to("cpu", torch.float32).eval().requires_grad_(False)
            self.notes = []
            session, self.onnx_path = cached_session(self, notes=self.notes)
            self._forward = OrtTileForward(session, self.ensemble)
            self._forward.notes = self.notes
        else:
            self._forward = TileForward(
                net, self.device, self.precision, card.value_range, self.ensemble, compile=engine == "compile"
            )
            self.net = self._forward.net
        if train_mode:  # dropout on, batch statistics: how the released pix2pix results were made
            train_mode_inference(self.net)
        self.notes = self._forward.notes  # fp16 reruns and out-of-memory retries, for logs
        self._oom_tile: int | None = None  # after an out-of-memory, later runs stay at or below this
        self._bytes_per_px: float | None = None
        self._lean_budget: int | None = None  # the activation budget of the last lean tile choice

    # Tensor API ------------------------------------------------------------------------------

    def run_tensor(
        self, x: torch.Tensor, *, tile: int | None = None, progress: tiling.Progress | None = None,
        sink: tiling.Sink | None = None,
    ) -> torch.Tensor | None:  # fmt: skip
        """NCHW float in [0, 1] (or uint8 samples, made float tile by tile) with the model's input channels
        -> NCHW float32 in [0, 1] on the
        CPU, exactly `scale` times larger. Tiled; halves the tile and retries on out-of-memory. With
        `sink`, the output goes to it in finished blocks (see `tiling.run_tiled`) and None is
        returned; the automatic tile is then chosen for a small memory peak when the output is large."""
        if x.ndim != 4 or x.shape[1] != self.in_channels or x.shape[2] < 1 or x.shape[3] < 1:
            raise ImageError(f"expected an N x {self.in_channels} x H x W tensor, got shape {tuple(x.shape)}")
        self._check_size(x.shape[2], x.shape[3], (x.shape[2] * self.scale, x.shape[3] * self.scale))
        forward = self._forward
        if x.dtype == torch.uint8:  # samples: each tile becomes float32 on its own
            x = x.detach().to("cpu")

            def forward(tile: torch.Tensor) -> torch.Tensor:
                return self._forward(tile.to(torch.float32).div_(255.0))

        else:
            x = x.detach().to("cpu", torch.float32)  # tiles go to the device one at a time
            if not bool(torch.isfinite(x).all()):
                raise ImageError("input tensor contains NaN or Inf values")
        t = self._pick_tile(x.shape[0], x.shape[2], x.shape[3], self.tile if tile is None else tile, sink is not None)
        while True:
            try:
                with torch.no_grad():
                    return tiling.run_tiled(
                        forward,
                        x,
                        scale=self.scale,
                        tile=t,
                        overlap=self.tile_overlap,
                        multiple=self.size_multiple,
                        progress=progress,
                        sink=sink,
                    )
            except RuntimeError as e:  # torch.OutOfMemoryError is a RuntimeError
                if not tiling.is_out_of_memory(e):
                    raise
            # Outside the except block, so the failed attempt's tensors are already released.
            t = self._shrink_after_oom(t, x.shape[2], x.shape[3])

    def _shrink_after_oom(self, tile: int, h: int, w: int) -> int:
        if self.device.type == "cuda":
            torch.cuda.empty_cache()
        if self.whole_images:
            raise Img2ImgError(
                f"out of memory on {self.device} for a {w}x{h} image, and {self.card.name} runs whole images "
                "only (it normalises with per-image statistics); use a smaller image or device='cpu'"
            )
        current = tile if tile > 0 else max(h, w)
        if current <= tiling.MIN_TILE:
            raise Img2ImgError(
                f"out of memory on {self.device} even with {current}px tiles; "
                "free memory (close other programs), use device='cpu', or a smaller model"
            )
        smaller = max(tiling.MIN_TILE, current // 2)
        self._oom_tile = smaller
        note = f"out of memory with tile {tile or 'whole image'}; retried with tile {smaller}"
        log.warning(note)
        self.notes.append(note)
        return smaller

    def _pick_tile(self, n: int, h: int, w: int, tile: int | None, lean: bool = False) -> int:
        if self.whole_images:
            return 0
        self._lean_budget = None
        if tile is None:
            tile = self._auto_tile(n, h, w, lean)
        limit_tail = getattr(self.net, "limit_tail_memory", None)  # RRDBNet: a whole tail may not outgrow it
        if callable(limit_tail):
            limit_tail(self._lean_budget)
        if self._oom_tile is not None:
            tile = self._oom_tile if tile == 0 else min(tile, self._oom_tile)
        return tile

    def _auto_tile(self, n: int, h: int, w: int, lean: bool = False) -> int:
        """Whole image when it fits, else the largest tile the device's memory allows (see
        `tiling.memory_budget` and `tiling.activation_bytes_per_pixel`). `lean` (a banded, quantised
        output): for a large output the budget is also held to `tiling.lean_budget`, so that the work
        beside the 8-bit result stays below it."""
        elem = 2 if self.precision == "fp16" else 4  # autocast keeps some fp32 tensors: count bf16 as 4
        budget, cap = tiling.memory_budget(self.device)
        floor = 0
        if lean:
            lean_cap = tiling.lean_budget(n, h * self.scale, w * self.scale, self.out_channels)
            if lean_cap < budget:
                budget = self._lean_budget = lean_cap
                floor = tiling.LEAN_MIN_TILE  # below it the tiles' overlap would multiply the work

        def size(per_px: float) -> int:
            return tiling.auto_tile_size(
                h, w, bytes_per_pixel=per_px * n, budget=budget, cap=cap, overlap=self.tile_overlap,
                multiple=self.size_multiple,
            )  # fmt: skip

        if self._bytes_per_px is None:  # most images fit under the bound: no measuring pass at all
            if size(tiling.activation_bytes_bound(self.net, self.in_channels, self.scale, elem)) == 0:
                return 0
            compute = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(self.precision, torch.float32)
            self._bytes_per_px = tiling.activation_bytes_per_pixel(
                self.net, self.in_channels, self.size_multiple, elem, compute
            )
        tile = size(self._bytes_per_px)
        return max(tile, floor) if tile else 0

    # Image API -------------------------------------------------------------------------------

    def __call__(
        self,
        image: np.ndarray,
        *,
        alpha_mode: str = "model",
        outscale: float | None = None,
        progress: tiling.Progress | None = None,
        dtype: type | np.dtype | None = None,
    ) -> np.ndarray:
        """float32 HxW or HxWxC (C = 1 grey, 2 grey+alpha, 3 RGB, 4 RGBA; straight alpha) in
        [0, 1] -> float32 in [0, 1] with the same layout, round(H*outscale) x round(W*outscale).
        uint8 / uint16 samples are taken as samples / 255 (65535); uint8 ones with the model's channels and
        a banded result (below) go to the network tile by tile, so the input is never held in float32.

        alpha_mode: `model` runs alpha through the network, `bicubic` resizes it, `none` drops it.
        Colour is premultiplied by alpha around the network, so hidden colour cannot leak.
        dtype: np.uint8 or np.uint16 returns rounded samples instead of floats. At the model's own scale
        (no outscale resize, alpha by the model or none) they are made band by band as the tiles finish,
        so a large result never exists in float32: the memory beside the result stays a fraction of it.
        """
        img, squeeze = _as_hwc(image)
        if alpha_mode not in ALPHA_MODES:
            raise Img2ImgError(f"alpha_mode must be one of {ALPHA_MODES}, not {alpha_mode!r}")
        if dtype is not None and np.dtype(dtype) not in (np.uint8, np.uint16):
            raise Img2ImgError(f"dtype must be None (float32), np.uint8 or np.uint16, not {dtype!r}")
        h, w = img.shape[:2]
        final = _final_size(h, w, self.scale if outscale is None else outscale)
        self._check_size(h, w, (h * self.scale, w * self.scale), final)
        banded = dtype is not None and final == (h * self.scale, w * self.scale) and alpha_mode != "bicubic"
        same_channels = img.shape[2] == self.in_channels == self.out_channels
        if img.dtype == np.uint8 and not (banded and same_channels):  # resizes, channel conversions: floats
            img = img.astype(np.float32) / np.float32(255.0)
        if banded:
            out = self._process_banded(img, alpha_mode, np.dtype(dtype), progress)
        else:
            out = self._process(img, alpha_mode, final, progress)
            if dtype is not None:
                out = to_samples(out, np.dtype(dtype))
        return out[..., 0] if squeeze else out

    def _network_batch(self, img: np.ndarray, alpha_mode: str) -> tuple[torch.Tensor, dict]:
        """The NCHW batch the network runs for `img` (colour, premultiplied when alpha is kept, and alpha as
        a grey image when the model upscales it) and how to put its output back together."""
        c = img.shape[2]
        has_alpha = c in (2, 4)
        colour, alpha = img[..., : c - has_alpha], img[..., c - 1] if has_alpha else None
        keep_alpha = alpha is not None and alpha_mode != "none"
        if keep_alpha:
            colour = colour * alpha[..., None]  # premultiply: colour hidden under alpha=0 becomes black
        # Do run colour (and alpha as a grey image) through the network in one batch.
        batch, per_channel = self._colour_batch(colour)
        if keep_alpha and alpha_mode == "model":
            batch.append(np.repeat(alpha[..., None], self.in_channels, axis=2))
        stacked = batch[0][None] if len(batch) == 1 else np.stack(batch)  # one image: a view, not a copy
        x = torch.from_numpy(stacked).permute(0, 3, 1, 2)
        layout = {"colour": colour.shape[2], "per_channel": per_channel, "alpha": alpha if keep_alpha else None}
        return x, layout

    @staticmethod
    def _assemble(y: np.ndarray, layout: dict, alpha_mode: str) -> np.ndarray:
        """N x H x W x C network outputs -> H x W x (colour + alpha) premultiplied floats (alpha by the model)."""
        cc = layout["colour"]
        if layout["per_channel"]:
            out = np.concatenate([y[i] for i in range(cc)], axis=2)
        else:
            out = _convert_channels(y[0], cc)
        if layout["alpha"] is not None and alpha_mode == "model":
            out = np.concatenate([out, y[-1].mean(axis=2)[..., None]], axis=2)
        return out

    @staticmethod
    def _finish(out: np.ndarray, keep_alpha: bool) -> np.ndarray:
        """Clip to [0, 1] and un-premultiply colour (in place when `out` is our own buffer)."""
        out = np.clip(out, 0, 1, out=out if out.flags.c_contiguous and out.flags.writeable else None)
        if keep_alpha:  # un-premultiply; near alpha=0 the colour is invisible, so only avoid blow-ups
            out[..., :-1] = np.clip(out[..., :-1] / np.maximum(out[..., -1:], 1 / 512), 0, 1)
        return out

    def _process_banded(
        self, img: np.ndarray, alpha_mode: str, dtype: np.dtype, progress: tiling.Progress | None
    ) -> np.ndarray:
        x, layout = self._network_batch(img, alpha_mode)
        keep_alpha = layout["alpha"] is not None
        h, w = img.shape[:2]
        result = np.empty((h * self.scale, w * self.scale, layout["colour"] + keep_alpha), dtype)

        def sink(r0: int, r1: int, c0: int, c1: int, block: torch.Tensor) -> None:
            part = self._assemble(block.permute(0, 2, 3, 1).numpy(), layout, alpha_mode)
            result[r0:r1, c0:c1] = to_samples(self._finish(part, keep_alpha), dtype)

        self.run_tensor(x, progress=progress, sink=sink)
        return result

    def _process(
        self, img: np.ndarray, alpha_mode: str, final: tuple[int, int], progress: tiling.Progress | None
    ) -> np.ndarray:
        import cv2

        x, layout = self._network_batch(img, alpha_mode)
        y = self.run_tensor(x, progress=progress).permute(0, 2, 3, 1).numpy()
        out = self._assemble(y, layout, alpha_mode)
        keep_alpha = layout["alpha"] is not None
        if keep_alpha and alpha_mode == "bicubic":
            size = (out.shape[1], out.shape[0])
            a = cv2.resize(np.ascontiguousarray(layout["alpha"]), size, interpolation=cv2.INTER_CUBIC)
            out = np.concatenate([out, a[..., None]], axis=2)
        if out.shape[:2] != final:  # resize premultiplied colour: correct at alpha edges
            shrink = final[0] * final[1] < out.shape[0] * out.shape[1]
            flag = cv2.INTER_AREA if shrink else cv2.INTER_LANCZOS4
            out = cv2.resize(np.ascontiguousarray(out), (final[1], final[0]), interpolation=flag)
            out = out.reshape(final[0], final[1], -1)  # cv2 drops a single channel axis
        # In place when `out` is already our own contiguous buffer; else this is the one copy made.
        return self._finish(out, keep_alpha)

    def _colour_batch(self, colour: np.ndarray) -> tuple[list[np.ndarray], bool]:
        """Network inputs for grey or RGB `colour`, and whether they are per-channel grey images."""
        cc, mi, mo = colour.shape[2], self.in_channels, self.out_channels
        if mi not in (1, 3) or mo not in (1, 3):
            raise Img2ImgError(
                f"{self.card.name} maps {mi} to {mo} channels, not grey/RGB images; use Model.run_tensor"
            )
        if cc == mi:
            return [colour], False
        if mi == 3:  # grey into an RGB model: replicate, and convert the output back to luma
            return [np.repeat(colour, 3, axis=2)], False
        if mo == 1:  # RGB into a grey -> grey model: each channel as its own grey image
            return [colour[..., i : i + 1] for i in range(3)], True
        return [colour @ LUMA[:, None]], False  # RGB into a grey -> RGB model: its input is luma

    def describe(self) -> dict:
        """Name, task, scale, device, precision, tiling and size, for logs and info panels."""
        return {
            **super().describe(), "scale": self.scale, "in_channels": self.in_channels,
            "out_channels": self.out_channels, "tile": "auto" if self.tile is None else self.tile,
            "tile_overlap": self.tile_overlap, "train_mode": self.train_mode, "ensemble": self.ensemble,
            "params": sum(p.numel() for p in self.net.parameters()), "notes": list(self.notes),
            "engine": self.engine,
        }  # fmt: skip

    def __repr__(self) -> str:
        d = self.describe()
        return f"Model({d['name']!r}, {d['task']} x{d['scale']}, {d['device']}, {d['precision']})"


def _check_onnxruntime_options(device: str | torch.device, precision: str, train_mode: bool) -> None:
    """The onnxruntime engine runs the exported eval-mode graph in fp32 on the CPU."""
    if str(device) not in ("auto", "cpu"):
        raise Img2ImgError(
            f"the onnxruntime engine runs on the CPU: use device='cpu' (not {device!r}) or engine='torch'"
        )
    if str(precision).strip().lower() not in ("auto", "fp32", "float32"):
        raise Img2ImgError(f"the onnxruntime engine runs fp32: use precision='auto' or 'fp32' (not {precision!r})")
    if train_mode:
        raise Img2ImgError("the onnxruntime engine runs the exported eval-mode graph: train_mode needs engine='torch'")


def _as_hwc(image: np.ndarray) -> tuple[np.ndarray, bool]:
    """Validate a public-API image; returns float32 HxWxC and whether it was HxW."""
    if not isinstance(image, np.ndarray):
        raise ImageError(f"expected a numpy array, got {type(image).__name__}")
    samples = image.dtype in (np.uint8, np.uint16)
    if not (samples or np.issubdtype(image.dtype, np.floating)):
        raise ImageError(f"expected float32 pixels in [0, 1] or uint8 / uint16 samples, got {image.dtype}")
    squeeze = image.ndim == 2
    img = image[..., None] if squeeze else image
    if img.ndim != 3 or img.shape[2] not in (1, 2, 3, 4) or min(img.shape[:2]) < 1:
        raise ImageError(f"expected HxW or HxWxC with C in 1-4 (grey, grey+alpha, RGB, RGBA), got {image.shape}")
    if img.dtype == np.uint8:
        return img, squeeze
    if img.dtype == np.uint16:
        return img.astype(np.float32) / np.float32(65535.0), squeeze
    img = img.astype(np.float32, copy=False)
    lo, hi = float(img.min()), float(img.max())
    if not (math.isfinite(lo) and math.isfinite(hi)):
        raise ImageError("image contains NaN or Inf values")
    if lo < -0.01 or hi > 1.01:
        raise ImageError(f"pixel values span [{lo:g}, {hi:g}], expected [0, 1]; divide 8-bit data by 255")
    return (np.clip(img, 0, 1) if lo < 0 or hi > 1 else img), squeeze


def _final_size(h: int, w: int, outscale: float) -> tuple[int, int]:
    if not (isinstance(outscale, int | float) and math.isfinite(outscale) and outscale > 0):
        raise Img2ImgError(f"outscale must be a positive number, not {outscale!r}")
    return max(1, round(h * outscale)), max(1, round(w * outscale))


def _convert_channels(img: np.ndarray, channels: int) -> np.ndarray:
    """HxWx{1,3} -> HxWx`channels`: grey is replicated, RGB becomes BT.601 luma."""
    if img.shape[2] == channels:
        return img
    if channels == 1:
        return img @ LUMA[:, None]
    return np.repeat(img, channels, axis=2)
