"""RRDBNet, the ESRGAN generator (Wang et al. 2018, "ESRGAN", Fig. 4).

Parameter names follow BasicSR >= 1.0 (`conv_first`, `body.i.rdbj.convk`, `conv_body`, `conv_up1`, ...)
so that Real-ESRGAN / BasicSR files load directly. Scales 1 and 2 pixel-unshuffle the input (as
Real-ESRGAN's x1/x2 models do) and keep a x4 body.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class ResidualDenseBlock(nn.Module):
    """Five densely connected 3x3 convs; output scaled by 0.2 and added to the input."""

    def __init__(self, nf: int = 64, gc: int = 32) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(nf, gc, 3, 1, 1)
        self.conv2 = nn.Conv2d(nf + gc, gc, 3, 1, 1)
        self.conv3 = nn.Conv2d(nf + 2 * gc, gc, 3, 1, 1)
        self.conv4 = nn.Conv2d(nf + 3 * gc, gc, 3, 1, 1)
        self.conv5 = nn.Conv2d(nf + 4 * gc, nf, 3, 1, 1)
        self.lrelu = nn.LeakyReLU(0.2, inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x1 = self.lrelu(self.conv1(x))
        x2 = self.lrelu(self.conv2(torch.cat((x, x1), 1)))
        x3 = self.lrelu(self.conv3(torch.cat((x, x1, x2), 1)))
        x4 = self.lrelu(self.conv4(torch.cat((x, x1, x2, x3), 1)))
        x5 = self.conv5(torch.cat((x, x1, x2, x3, x4), 1))
        return x5 * 0.2 + x


class RRDB(nn.Module):
    """Residual-in-residual dense block: three RDBs, residual scaled by 0.2."""

    def __init__(self, nf: int = 64, gc: int = 32) -> None:
        super().__init__()
        self.rdb1 = ResidualDenseBlock(nf, gc)
        self.rdb2 = ResidualDenseBlock(nf, gc)
        self.rdb3 = ResidualDenseBlock(nf, gc)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.rdb3(self.rdb2(self.rdb1(x))) * 0.2 + x


class RRDBNet(nn.Module):
    """ESRGAN generator. Input/output in [0, 1], NCHW; output is `scale` times larger.

    scale 1 / 2 pixel-unshuffle the input by 4 / 2 (so H, W must be multiples of 4 / 2);
    scale 4 / 8 use two / three nearest-neighbour x2 upsampling stages.
    """

    def __init__(
        self, in_ch: int = 3, out_ch: int = 3, nf: int = 64, nb: int = 23, gc: int = 32, scale: int = 4
    ) -> None:
        super().__init__()
        if scale not in (1, 2, 4, 8):
            raise ValueError(f"RRDBNet supports scale 1, 2, 4 or 8, not {scale}")
        self.scale = scale
        self.unshuffle = {1: 4, 2: 2}.get(scale, 1)
        self.conv_first = nn.Conv2d(in_ch * self.unshuffle**2, nf, 3, 1, 1)
        self.body = nn.Sequential(*[RRDB(nf, gc) for _ in range(nb)])
        self.conv_body = nn.Conv2d(nf, nf, 3, 1, 1)
        self.n_up = 3 if scale == 8 else 2
        self.conv_up1 = nn.Conv2d(nf, nf, 3, 1, 1)
        self.conv_up2 = nn.Conv2d(nf, nf, 3, 1, 1)
        if self.n_up == 3:
            self.conv_up3 = nn.Conv2d(nf, nf, 3, 1, 1)
        self.conv_hr = nn.Conv2d(nf, nf, 3, 1, 1)
        self.conv_last = nn.Conv2d(nf, out_ch, 3, 1, 1)
        self.lrelu = nn.LeakyReLU(0.2, inplace=True)

    @property
    def size_multiple(self) -> int:
        return self.unshuffle

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.unshuffle > 1:
            x = F.pixel_unshuffle(x, self.unshuffle)
        feat = self.conv_first(x)
        feat = feat + self.conv_body(self.body(feat))
        for i in range(1, self.n_up + 1):
            up = F.interpolate(feat, scale_factor=2, mode="nearest")
            feat = self.lrelu(getattr(self, f"conv_up{i}")(up))
        return self.conv_last(self.lrelu(self.conv_hr(feat)))
