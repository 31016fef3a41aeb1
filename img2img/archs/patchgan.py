"""pix2pix / CycleGAN discriminators (Isola et al. 2017, Sec. 3.2.2 and Appendix 6.1.2): the
PatchGAN, which classifies every N x N patch (70 x 70 with n_layers 3) as real or fake, and the 1 x 1
PixelGAN. Parameter names match the released `*_net_D.pth` files (`model.0`, `model.2`/`model.3`, ...)."""

from __future__ import annotations

import torch
from torch import nn

from img2img.layers import check_norm, conv_bias, norm_layer

KERNEL, PAD = 4, 1


def patch_size(n_layers: int) -> int:
    """Receptive field (pixels) of one output logit: 70 for n_layers 3, 34 for 2, 16 for 1."""
    # Walk back from one output pixel: two stride-1 4x4 convs, then n_layers stride-2 4x4 convs.
    rf = 1
    for stride in [1, 1] + [2] * n_layers:
        rf = rf * stride + (KERNEL - stride)
    return rf


class PatchDiscriminator(nn.Module):
    """(N, in_ch, H, W) -> (N, 1, H', W') realness logits, one per overlapping patch.

    C64 (no norm) then n_layers - 1 stride-2 convs widening x2 (capped at 8 ndf) with norm and
    LeakyReLU(0.2), one stride-1 conv to min(2**n_layers, 8) ndf, and a stride-1 conv to 1 channel.
    For pix2pix, in_ch = input + output channels (the pair is concatenated). A 256 px input gives a
    30 x 30 map with n_layers 3. Convs followed by batch norm carry no bias.
    """

    def __init__(self, in_ch: int = 6, ndf: int = 64, n_layers: int = 3, norm: str = "batch") -> None:
        super().__init__()
        if n_layers < 1 or ndf < 1 or in_ch < 1:
            raise ValueError(f"PatchDiscriminator needs n_layers >= 1 and positive widths, got {n_layers=}, {ndf=}")
        make_norm, bias = norm_layer(check_norm(norm)), conv_bias(norm)
        layers: list[nn.Module] = [nn.Conv2d(in_ch, ndf, KERNEL, 2, PAD), nn.LeakyReLU(0.2, True)]
        mult = 1
        for n in range(1, n_layers + 1):
            prev, mult = mult, min(2**n, 8)
            stride = 2 if n < n_layers else 1  # the last widening conv keeps the resolution
            layers += [
                nn.Conv2d(ndf * prev, ndf * mult, KERNEL, stride, PAD, bias=bias),
                make_norm(ndf * mult),
                nn.LeakyReLU(0.2, True),
            ]
        layers.append(nn.Conv2d(ndf * mult, 1, KERNEL, 1, PAD))
        self.model = nn.Sequential(*layers)
        self.patch_size = patch_size(n_layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)


class PixelDiscriminator(nn.Module):
    """(N, in_ch, H, W) -> (N, 1, H, W): a 1 x 1 PatchGAN ("PixelGAN"), judging colour per pixel.

    conv1x1 in -> ndf (bias), LeakyReLU, conv1x1 ndf -> 2 ndf, norm, LeakyReLU, conv1x1 -> 1.
    With batch norm the last two convs carry no bias, as in the released layout (`net.0`, `net.2`,
    `net.3`, `net.5`).
    """

    patch_size = 1

    def __init__(self, in_ch: int = 6, ndf: int = 64, norm: str = "batch") -> None:
        super().__init__()
        if ndf < 1 or in_ch < 1:
            raise ValueError(f"PixelDiscriminator needs positive widths, got {in_ch=}, {ndf=}")
        make_norm, bias = norm_layer(check_norm(norm)), conv_bias(norm)
        self.net = nn.Sequential(
            nn.Conv2d(in_ch, ndf, 1),
            nn.LeakyReLU(0.2, True),
            nn.Conv2d(ndf, ndf * 2, 1, bias=bias),
            make_norm(ndf * 2),
            nn.LeakyReLU(0.2, True),
            nn.Conv2d(ndf * 2, 1, 1, bias=bias),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)
