"""MATLAB-compatible bicubic `imresize` (Keys cubic kernel, a = -0.5), the resize that SR benchmarks
use to make low-resolution inputs and the bicubic baseline. Shrinking widens the kernel by 1/scale
(antialiasing); out-of-range taps repeat the edge pixel, as the MATLAB release that made Set5/Set14 did."""

from __future__ import annotations

import math
from functools import lru_cache
from typing import TypeVar

import numpy as np
import torch

ArrayT = TypeVar("ArrayT", np.ndarray, torch.Tensor)

_KERNEL_WIDTH = 4.0  # support of the cubic kernel at scale 1


def cubic(x: np.ndarray) -> np.ndarray:
    """Keys' cubic convolution kernel with a = -0.5 (MATLAB's 'bicubic')."""
    ax = np.abs(x)
    ax2, ax3 = ax * ax, ax * ax * ax
    near = (1.5 * ax3 - 2.5 * ax2 + 1.0) * (ax <= 1)
    far = (-0.5 * ax3 + 2.5 * ax2 - 4.0 * ax + 2.0) * ((ax > 1) & (ax <= 2))
    return near + far


@lru_cache(maxsize=64)
def contributions(
    in_len: int, out_len: int, scale: float, antialias: bool = True, border: str = "replicate"
) -> tuple[np.ndarray, np.ndarray]:
    """Index and weight tables, each (out_len, taps): output pixel i = sum_k w[i, k] * in[idx[i, k]].

    Indices are 0-based and already folded into [0, in_len) by `border`; weights are float64 and
    each row sums to 1.
    """
    shrink_aa = antialias and scale < 1
    width = _KERNEL_WIDTH / scale if shrink_aa else _KERNEL_WIDTH
    # Output pixel centres in input coordinates (1-based, as MATLAB defines them).
    x = np.arange(1, out_len + 1, dtype=np.float64)
    u = x / scale + 0.5 * (1.0 - 1.0 / scale)
    left = np.floor(u - width / 2.0)
    taps = int(math.ceil(width)) + 2
    idx = left[:, None] + np.arange(taps, dtype=np.float64)[None, :]
    dist = u[:, None] - idx
    # Antialiasing stretches the kernel: h(x) = scale * cubic(scale * x).
    weights = scale * cubic(scale * dist) if shrink_aa else cubic(dist)
    weights = weights / weights.sum(axis=1, keepdims=True)
    i0 = idx.astype(np.int64) - 1
    if border == "replicate":
        i0 = np.clip(i0, 0, in_len - 1)
    elif border == "symmetric":  # ... 2 1 | 1 2 ... n | n n-1 ... (period 2n)
        i0 = np.mod(i0, 2 * in_len)
        i0 = np.where(i0 < in_len, i0, 2 * in_len - 1 - i0)
    else:
        raise ValueError(f"border must be 'replicate' or 'symmetric', not {border!r}")
    # Drop tap columns that are zero for every output pixel (MATLAB does the same).
    keep = np.any(weights != 0, axis=0)
    return np.ascontiguousarray(i0[:, keep]), np.ascontiguousarray(weights[:, keep])


def _output_sizes(
    in_hw: tuple[int, int], scale: float | tuple[float, float] | None, output_size: tuple[int, int] | None
) -> tuple[tuple[int, int], tuple[float, float]]:
    """Output (H, W) and the per-axis scale used for coordinate mapping, MATLAB's rules."""
    if output_size is not None:
        if scale is not None:
            raise ValueError("give either scale or output_size, not both")
        oh, ow = (int(v) for v in output_size)
        if oh <= 0 or ow <= 0:
            raise ValueError(f"output_size must be positive, got {output_size}")
        return (oh, ow), (oh / in_hw[0], ow / in_hw[1])
    if scale is None:
        raise ValueError("imresize needs scale or output_size")
    sh, sw = (float(scale), float(scale)) if np.isscalar(scale) else (float(s) for s in scale)  # type: ignore[misc]
    if sh <= 0 or sw <= 0:
        raise ValueError(f"scale must be positive, got {scale}")
    # MATLAB: output size is ceil(scale * input size), but the mapping keeps the given scale.
    return (int(math.ceil(sh * in_hw[0] - 1e-9)), int(math.ceil(sw * in_hw[1] - 1e-9))), (sh, sw)


def _matlab_round_u8(x: np.ndarray) -> np.ndarray:
    # MATLAB rounds half away from zero and saturates when casting to uint8.
    return np.clip(np.floor(x + 0.5), 0, 255).astype(np.uint8)


def _resize_axis_np(img: np.ndarray, axis: int, idx: np.ndarray, w: np.ndarray) -> np.ndarray:
    shape = [1] * img.ndim
    shape[axis] = -1
    out_shape = list(img.shape)
    out_shape[axis] = idx.shape[0]
    out = np.zeros(out_shape, dtype=np.float64)
    tmp = np.empty(out_shape, dtype=np.float64)
    # One gather per tap keeps memory at two output-sized buffers (taps: 4-5 up, 18 for x4 down);
    # cost is linear in the output size, unlike a dense (out x in) weight matrix.
    for k in range(idx.shape[1]):
        np.take(img, idx[:, k], axis=axis, out=tmp)
        tmp *= w[:, k].reshape(shape)
        out += tmp
    return out


def _resize_axis_torch(x: torch.Tensor, dim: int, idx: np.ndarray, w: np.ndarray) -> torch.Tensor:
    ti = torch.from_numpy(idx).to(x.device)
    tw = torch.from_numpy(w).to(device=x.device, dtype=x.dtype)
    shape = [1] * x.ndim
    shape[dim] = -1
    out = None
    for k in range(ti.shape[1]):
        term = tw[:, k].reshape(shape) * x.index_select(dim, ti[:, k])
        out = term if out is None else out + term
    return out


def imresize(
    img: ArrayT,
    scale: float | tuple[float, float] | None = None,
    *,
    output_size: tuple[int, int] | None = None,
    antialias: bool = True,
    border: str = "replicate",
) -> ArrayT:
    """Resize like MATLAB's `imresize(img, scale, 'bicubic')` (or `imresize(img, [H W])`).

    `img`: numpy HxW or HxWxC, or a torch tensor NCHW (also CHW / HW), any value range, never
    clipped. Float numpy input is computed in float64 and returned in its dtype; uint8 numpy input is
    returned as uint8 rounded half away from zero after each axis, which is exactly what MATLAB does
    for uint8 images. Tensors are computed in their own dtype and device (NCHW, so batches work).
    For uint8 the rows are resized first unless the columns shrink more (MATLAB's order, which
    matters there because the intermediate result is rounded).

    `border`: "replicate" clamps out-of-range taps to the edge pixel (older MATLAB releases; the
    Set5/Set14 LR files match it bit for bit); "symmetric" mirrors them (newer MATLAB releases).
    The two differ only within 2 / scale pixels of the border when shrinking, 1-2 when enlarging.
    """
    is_tensor = isinstance(img, torch.Tensor)
    if img.ndim < 2 or (not is_tensor and img.ndim > 3):
        raise ValueError(f"imresize expects HxW or HxWxC arrays or NCHW tensors, got shape {tuple(img.shape)}")
    hdim, wdim = (img.ndim - 2, img.ndim - 1) if is_tensor else (0, 1)
    in_hw = (int(img.shape[hdim]), int(img.shape[wdim]))
    out_hw, scales = _output_sizes(in_hw, scale, output_size)
    if is_tensor and not img.is_floating_point():
        raise ValueError(f"imresize needs a floating-point tensor, got {img.dtype}")
    is_u8 = not is_tensor and img.dtype == np.uint8
    if not is_tensor and not (is_u8 or np.issubdtype(img.dtype, np.floating)):
        raise ValueError(f"imresize supports float or uint8 arrays, got {img.dtype}")
    if is_u8:
        order = (0, 1) if scales[0] <= scales[1] else (1, 0)  # MATLAB's order: smaller scale first
    else:
        # Without intermediate rounding the order changes nothing but speed: gathering along the
        # columns is the slow pass, so run it while the image is still small when enlarging.
        order = (1, 0) if scales[1] > 1 else (0, 1)
    out = img if is_tensor else img.astype(np.float64)
    for a in order:
        if out_hw[a] == in_hw[a] and scales[a] == 1.0:
            continue  # identity along this axis
        idx, w = contributions(in_hw[a], out_hw[a], scales[a], antialias, border)
        dim = (hdim, wdim)[a]
        if is_tensor:
            out = _resize_axis_torch(out, dim, idx, w)
        else:
            out = _resize_axis_np(out, dim, idx, w)
            if is_u8:
                out = _matlab_round_u8(out).astype(np.float64)
    if is_tensor:
        return out.contiguous() if out is not img else out.clone()
    return out.astype(np.uint8) if is_u8 else out.astype(img.dtype, copy=False)
