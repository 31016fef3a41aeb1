"""Tiled network evaluation: pad to the size multiple, run overlapping tiles, blend them with
feathered (linear ramp) weights, and pick an automatic tile size from the device's memory.

Geometry, per axis: the padded image is split into near-equal *cores* of at most `tile` pixels.
Around each seam between two cores lies a feather band `overlap` input pixels wide (half on each
side), where the two tiles' outputs are mixed with complementary linear ramps; every tile also
reads `overlap` pixels of context beyond its band. So every output pixel that gets weight comes
from a tile with at least `overlap` pixels of context, and tiling is exact whenever `overlap`
covers the network's receptive radius.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

MIN_TILE = 32  # the out-of-memory fallback never goes below this
CPU_TILE_CAP = 512  # CPU/MPS: bigger tiles gain little speed and cost memory
CUDA_TILE_CAP = 2048
CPU_BUDGET_CAP = 4 << 30  # bytes of activations a CPU tile may use
ACTIVATION_FACTOR = 6  # peak live memory / largest single activation (measured ~4.4-5.4 on CPU)

Forward = Callable[[torch.Tensor], torch.Tensor]
Progress = Callable[[int, int], None]
Sink = Callable[[int, int, int, int, torch.Tensor], None]


def pad_to_multiple(x: torch.Tensor, multiple: int) -> torch.Tensor:
    """Pad the bottom/right of NCHW `x` so H and W are multiples of `multiple` (reflect, or
    replicate when the image is too small to reflect)."""
    h, w = x.shape[-2:]
    ph, pw = (-h) % multiple, (-w) % multiple
    if pw:
        x = F.pad(x, (0, pw, 0, 0), mode="reflect" if pw < w else "replicate")
    if ph:
        x = F.pad(x, (0, 0, 0, ph), mode="reflect" if ph < h else "replicate")
    return x


def split_cores(length: int, tile: int) -> list[tuple[int, int]]:
    """Split [0, length) into ceil(length / tile) near-equal cores (equal sizes balance the work
    and keep the last core from being a sliver narrower than the feather band)."""
    n = max(1, math.ceil(length / tile))
    edges = [round(i * length / n) for i in range(n + 1)]
    return list(zip(edges[:-1], edges[1:], strict=True))


def _span(start: int, end: int, length: int, ext: int, multiple: int) -> tuple[int, int]:
    """Input range a tile reads: its core plus `ext` context on interior sides, aligned to
    `multiple` so pixel-unshuffle nets see the same grid as on the whole image."""
    a = 0 if start == 0 else max(0, start - ext)
    b = length if end == length else min(length, end + ext)
    a -= a % multiple
    b += (-b) % multiple  # length is a multiple, so b stays <= length
    return a, b


def _ramp(start: int, end: int, length: int, half: float, lo: int, hi: int, scale: int) -> torch.Tensor:
    """Weights of one tile for output pixels [lo, hi): 1 inside the core, linear ramps across the
    bands around interior seams. Neighbours' ramps are complementary, so weights sum to 1."""
    c = (torch.arange(lo, hi, dtype=torch.float64) + 0.5) / scale  # pixel centres, input units
    w = torch.ones_like(c)
    if start > 0:
        w *= ((c - (start - half)) / (2 * half)).clamp(0, 1) if half > 0 else (c >= start).double()
    if end < length:
        w *= (((end + half) - c) / (2 * half)).clamp(0, 1) if half > 0 else (c < end).double()
    return w.float()


def run_tiled(
    forward: Forward,
    x: torch.Tensor,
    *,
    scale: int,
    tile: int,
    overlap: int,
    multiple: int = 1,
    progress: Progress | None = None,
    sink: Sink | None = None,
) -> torch.Tensor | None:
    """Evaluate `forward` (NCHW -> NCHW, `scale`x larger, on CPU) over CPU `x` in tiles.

    `tile` = core size in input pixels (0 = whole image in one pass); `overlap` = feather band
    width and context, in input pixels. Returns float32 (N, C', H*scale, W*scale) on CPU; with `sink`,
    returns None and hands the output over in finished blocks instead: `sink(r0, r1, c0, c1, block)`
    with output rows [r0, r1) x columns [c0, c1) as float32 (N, C', r1 - r0, c1 - c0), each pixel once.
    Only the pixels still waiting for a neighbouring tile are then held in float32: one tile's output
    and the seam rows below the current row of tiles, never the whole result.
    """
    n, _, h, w = x.shape
    xp = pad_to_multiple(x, multiple)
    hp, wp = xp.shape[-2:]
    oh, ow = h * scale, w * scale
    out: torch.Tensor | None = None
    if sink is None:

        def sink(r0: int, r1: int, c0: int, c1: int, block: torch.Tensor) -> None:
            nonlocal out
            if out is None:
                out = torch.empty(n, block.shape[1], oh, ow, dtype=torch.float32)
            out[:, :, r0:r1, c0:c1] = block

    if tile <= 0 or (hp <= tile and wp <= tile):
        y = forward(xp)
        _check_out(y, xp, scale)
        if progress:
            progress(1, 1)
        sink(0, oh, 0, ow, y[..., :oh, :ow])
        return out

    rows, cols = split_cores(hp, tile), split_cores(wp, tile)
    shortest = min(e - s for s, e in rows + cols)
    half = min(overlap / 2, shortest / 2)  # bands of adjacent seams must not overlap
    ext = math.ceil(half + overlap)
    total, done = len(rows) * len(cols), 0
    row_spans = [_span(ys, ye, hp, ext, multiple) for ys, ye in rows]
    col_spans = [_span(xs, xe, wp, ext, multiple) for xs, xe in cols]
    # Output rows (columns) above (left of) where the next row's (column's) blend ramp starts get no more
    # weight: they are finished. Rows below where this row's ramp ends got none from it.
    row_final = [min(math.floor((s - half) * scale), oh) for s, _ in rows[1:]] + [oh]
    col_final = [min(math.floor((s - half) * scale), ow) for s, _ in cols[1:]] + [ow]
    row_live = [min(math.ceil((e + half) * scale), oh) for _, e in rows]
    carry: torch.Tensor | None = None  # rows [top, top + carry height) x all columns, from the row above
    top = 0
    for (ys, ye), (y0, y1), r_done, live in zip(rows, row_spans, row_final, row_live, strict=True):
        r1 = min(y1 * scale, oh)
        height = max(r1, top) - top  # this row of tiles covers output rows [top, r1)
        wy = _ramp(ys, ye, hp, half, top, top + height, scale)
        acc: torch.Tensor | None = None  # rows [top, r1) x columns [left, left + acc width)
        left = 0
        next_carry: torch.Tensor | None = None
        for (xs, xe), (x0, x1), c_done in zip(cols, col_spans, col_final, strict=True):
            q0, q1 = min(x0 * scale, ow), min(x1 * scale, ow)
            y = forward(xp[:, :, y0:y1, x0:x1])
            _check_out(y, xp[:, :, y0:y1, x0:x1], scale)
            if acc is None or acc.shape[3] < q1 - left:  # widen to this tile; new columns start from the carry
                grown = torch.zeros(n, y.shape[1], height, max(q1, left) - left, dtype=torch.float32)
                have = 0 if acc is None else acc.shape[3]
                if acc is not None:
                    grown[..., :have] = acc
                if carry is not None:
                    k = min(carry.shape[2], height)
                    grown[:, :, :k, have:] = carry[:, :, :k, left + have : left + grown.shape[3]]
                acc = grown
            a = max(q0, left)  # columns left of `left` are finished: this tile's weight there is zero
            if height > 0 and q1 > a:  # tiles lying wholly in the padding add nothing
                wgt = wy[:, None] * _ramp(xs, xe, wp, half, a, q1, scale)[None, :]
                rows_of_y = y[:, :, top - y0 * scale : top - y0 * scale + height, a - q0 : q1 - q0]
                acc[:, :, :, a - left : q1 - left] += rows_of_y * wgt
            done += 1
            if progress:
                progress(done, total)
            if c_done > left:  # columns [left, c_done) of this row of tiles are complete
                width = c_done - left
                if r_done > top:
                    sink(top, r_done, left, c_done, acc[:, :, : r_done - top, :width])
                if live > r_done:  # the seam rows below, which this row blended into, wait for the next row
                    if next_carry is None:
                        next_carry = torch.zeros(n, acc.shape[1], live - r_done, ow, dtype=torch.float32)
                    next_carry[..., left:c_done] = acc[:, :, r_done - top : live - top, :width]
                acc = acc[..., width:].clone() if width < acc.shape[3] else None
                left = c_done
        carry, top = next_carry, max(top, r_done)
    return out


def _check_out(y: torch.Tensor, x: torch.Tensor, scale: int) -> None:
    want = (x.shape[0], x.shape[2] * scale, x.shape[3] * scale)
    got = (y.shape[0], y.shape[2], y.shape[3])
    if y.ndim != 4 or got != want:
        raise RuntimeError(f"network returned {tuple(y.shape)} for input {tuple(x.shape)}; expected x{scale}")


def is_out_of_memory(e: BaseException) -> bool:
    """True for CUDA/MPS/CPU allocation failures, which torch reports in several forms."""
    if isinstance(e, torch.OutOfMemoryError):
        return True
    text = str(e)
    return isinstance(e, RuntimeError) and (
        "out of memory" in text.lower() or "DefaultCPUAllocator" in text or "can't allocate memory" in text
    )


def activation_bytes_bound(net: nn.Module, in_channels: int, scale: int, elem_bytes: int) -> float:
    """A quick upper bound of `activation_bytes_per_pixel` that runs nothing: the widest layer output
    (conv, linear, norm channels) taken at the output's resolution. It holds for networks whose
    activations never exceed the output resolution (every image network here), so an image that fits
    under it fits; larger images get the measured figure."""
    widest = in_channels
    for m in net.modules():
        for attr in ("out_channels", "out_features", "num_features"):
            value = getattr(m, attr, None)
            if isinstance(value, int):
                widest = max(widest, value)
    return ACTIVATION_FACTOR * elem_bytes * widest * scale * scale


def activation_bytes_per_pixel(
    net: nn.Module, in_channels: int, multiple: int, elem_bytes: int, dtype: torch.dtype = torch.float32
) -> float:
    """Estimated peak activation memory per input pixel: ACTIVATION_FACTOR x the largest output of
    any leaf module, measured by one forward of a small zero image (side about 12 px, a multiple of
    `multiple`) on the network's device; a network on the meta device gets a shape-only pass. A network
    that bounds its widest tensors itself on large inputs (RRDBNet's tail in strips) gives its own peak
    with `inference_peak_elements_per_pixel(dtype)`, `dtype` being what the forward computes in.

    A small real forward is much faster than a first meta pass, which imports torch's Python op
    decompositions (seconds) for activations such as LeakyReLU."""
    own = getattr(net, "inference_peak_elements_per_pixel", None)
    if callable(own):
        return elem_bytes * float(own(dtype))
    side = multiple * math.ceil(12 / multiple)
    largest = [0]

    def hook(_m: nn.Module, _i: object, o: object) -> None:
        if isinstance(o, torch.Tensor):
            largest[0] = max(largest[0], o.numel())

    param = next(iter(net.parameters()), None)
    device = param.device if param is not None else torch.device("cpu")
    dtype = param.dtype if param is not None else torch.float32
    leaves = [m for m in net.modules() if not any(True for _ in m.children())]
    handles = [m.register_forward_hook(hook) for m in leaves]
    try:
        with torch.inference_mode():
            net(torch.zeros(1, in_channels, side, side, device=device, dtype=dtype))
    except Exception:  # an op without a meta kernel, or a size the net refuses: a wide x4 network's figure
        largest[0] = 1024 * side * side
    finally:
        for handle in handles:
            handle.remove()
    return ACTIVATION_FACTOR * elem_bytes * largest[0] / (side * side)


def memory_budget(device: torch.device) -> tuple[int, int]:
    """(bytes a tile's activations may use, largest tile) for `device`.

    CUDA: 60% of the free memory reported by `torch.cuda.mem_get_info`, tiles up to 2048.
    CPU/MPS: half the available system memory, at most 4 GiB, tiles up to 512.
    """
    if device.type == "cuda":
        free, _total = torch.cuda.mem_get_info(device)
        return int(free * 0.6), CUDA_TILE_CAP
    return min(available_system_memory() // 2, CPU_BUDGET_CAP), CPU_TILE_CAP


LEAN_OUTPUT_BYTES = 256 << 20  # outputs above this (as float32) get tiles chosen for memory (`lean_budget`)
LEAN_MIN_BUDGET = 32 << 20
LEAN_MIN_TILE = 128  # smallest lean tile: with ~25 px of context on each side, smaller ones cost 1.8x the work


def lean_budget(n: int, out_h: int, out_w: int, channels: int) -> int:
    """Activation bytes a tile may use when the output is made in quantised bands: unbounded for outputs
    under LEAN_OUTPUT_BYTES as float32, else a third of the 8-bit output (at least LEAN_MIN_BUDGET), so
    the work beside the result (input, a row of tiles in float32, the network) stays about its size."""
    out_bytes = n * out_h * out_w * channels
    if out_bytes * 4 <= LEAN_OUTPUT_BYTES:
        return 1 << 62
    return max(LEAN_MIN_BUDGET, out_bytes // 3)


def available_system_memory() -> int:
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return 8 << 30  # unknown platform: assume a modest machine


def auto_tile_size(
    height: int, width: int, *, bytes_per_pixel: float, budget: int, cap: int, overlap: int, multiple: int = 1
) -> int:
    """Largest core size whose padded tile fits `budget` (0 = the whole image fits in one tile).

    A tile reads its core plus about 1.5 x overlap on each side; the result is rounded down to a
    multiple of 8 (and of `multiple`) and kept within [MIN_TILE, cap].
    """
    side = int(math.sqrt(max(budget, 1) / max(bytes_per_pixel, 1e-9)))
    core = side - 2 * math.ceil(1.5 * overlap)
    step = math.lcm(8, multiple)
    core = max(MIN_TILE, min(cap, core) // step * step)
    hp, wp = height + (-height) % multiple, width + (-width) % multiple
    if hp <= core and wp <= core:
        return 0
    return core
