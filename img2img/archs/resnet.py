"""CycleGAN ResNet generator (Zhu et al. 2017, Appendix 7.2; after Johnson et al. 2016):
c7s1-64, d128, d256, n x R256, u128, u64, c7s1-out, tanh, with reflection padding. Parameter names
match the released pix2pix/CycleGAN `*_net_G.pth` files (`model.1`, `model.4`, ..., `model.26`)."""

from __future__ import annotations

import torch
from torch import nn

from img2img.layers import ResnetBlock, check_norm, conv_bias, norm_layer

N_DOWN = 2  # stride-2 stages; fixed in the paper and in every released file


class ResnetGenerator(nn.Module):
    """Image (NCHW in [-1, 1], H and W multiples of 4) -> image of the same size in [-1, 1].

    `resnet_9blocks` (n_blocks 9, for 256 px training crops) and `resnet_6blocks` (128 px).
    norm `instance` gives every conv a bias and no norm parameters; `batch` the reverse.
    One flat Sequential `model`: [pad, conv7, norm, ReLU] (0-3), two [conv3 s2, norm, ReLU] (4-9),
    n residual blocks (10..), two [ConvT3 s2, norm, ReLU], [pad, conv7, Tanh].
    """

    size_multiple = 2**N_DOWN

    def __init__(
        self,
        in_ch: int = 3,
        out_ch: int = 3,
        ngf: int = 64,
        n_blocks: int = 9,
        norm: str = "instance",
        use_dropout: bool = False,
    ) -> None:
        super().__init__()
        if n_blocks < 0 or ngf < 1 or in_ch < 1 or out_ch < 1:
            raise ValueError(f"ResnetGenerator needs n_blocks >= 0 and positive widths, got {n_blocks=}, {ngf=}")
        make_norm, bias = norm_layer(check_norm(norm)), conv_bias(norm)
        layers: list[nn.Module] = [
            nn.ReflectionPad2d(3),
            nn.Conv2d(in_ch, ngf, 7, bias=bias),
            make_norm(ngf),
            nn.ReLU(True),
        ]
        # Encoder: halve the resolution and double the width, twice.
        for i in range(N_DOWN):
            c = ngf * 2**i
            layers += [nn.Conv2d(c, 2 * c, 3, stride=2, padding=1, bias=bias), make_norm(2 * c), nn.ReLU(True)]
        width = ngf * 2**N_DOWN
        layers += [ResnetBlock(width, norm, use_dropout, "reflect") for _ in range(n_blocks)]
        # Decoder: fractionally strided convs that exactly double H and W (output_padding 1).
        for i in range(N_DOWN, 0, -1):
            c = ngf * 2**i
            up = nn.ConvTranspose2d(c, c // 2, 3, stride=2, padding=1, output_padding=1, bias=bias)
            layers += [up, make_norm(c // 2), nn.ReLU(True)]
        layers += [nn.ReflectionPad2d(3), nn.Conv2d(ngf, out_ch, 7), nn.Tanh()]
        self.model = nn.Sequential(*layers)
        # Input pixels on each side that reach one output pixel through the convolutions (measured
        # by back-propagation with norm "none"); instance norm statistics span the whole input.
        self.receptive_radius = 8 * n_blocks + 10

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 4 or x.shape[-2] % self.size_multiple or x.shape[-1] % self.size_multiple:
            raise ValueError(
                f"ResnetGenerator expects N x C x H x W input with H and W multiples of {self.size_multiple}, "
                f"got {tuple(x.shape)}; pad the image (the inference engine does this)"
            )
        return self.model(x)
