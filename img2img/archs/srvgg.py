"""SRVGGNetCompact: Real-ESRGAN's compact SR network (Wang et al. 2021, "Real-ESRGAN").

A plain stack of 3x3 convs + PReLU at low resolution, a pixel shuffle, and a residual over the
nearest-upsampled input. `body` is one flat list so the released `body.N` names load directly.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class SRVGGNetCompact(nn.Module):
    """Input/output in [0, 1], NCHW; output is `scale` times larger. Any input size works."""

    def __init__(
        self, in_ch: int = 3, out_ch: int = 3, nf: int = 64, num_conv: int = 16, scale: int = 4, act: str = "prelu"
    ) -> None:
        super().__init__()
        self.scale = scale
        self.size_multiple = 1
        layers: list[nn.Module] = [nn.Conv2d(in_ch, nf, 3, 1, 1), self._act(act, nf)]
        for _ in range(num_conv):
            layers += [nn.Conv2d(nf, nf, 3, 1, 1), self._act(act, nf)]
        layers.append(nn.Conv2d(nf, out_ch * scale * scale, 3, 1, 1))
        self.body = nn.ModuleList(layers)
        self.upsampler = nn.PixelShuffle(scale)

    @staticmethod
    def _act(kind: str, nf: int) -> nn.Module:
        if kind == "prelu":
            return nn.PReLU(num_parameters=nf)
        if kind == "lrelu":
            return nn.LeakyReLU(0.1, inplace=True)
        if kind == "relu":
            return nn.ReLU(inplace=True)
        raise ValueError(f"unknown activation {kind!r}: use prelu, lrelu or relu")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = x
        for layer in self.body:
            out = layer(out)
        out = self.upsampler(out)
        if out.shape[1] == x.shape[1]:
            out = out + F.interpolate(x, scale_factor=self.scale, mode="nearest")
        return out
