"""pix2pix U-Net generator (Isola et al. 2017, Sec. 3.1.1 and Appendix 6.1.1): an encoder-decoder
whose level i is skip-connected to level n - i, built from nested blocks. Parameter names match the
released `*_net_G.pth` files (`model.model.0`, `model.model.1.model.3.model.1`, ...)."""

from __future__ import annotations

import torch
from torch import nn

from img2img.layers import check_norm, conv_bias, norm_layer

MIN_DOWNS = 5  # the four fixed outer levels (ngf -> 8 ngf) plus the innermost


class UNetSkipBlock(nn.Module):
    """One U-Net level: down (LeakyReLU 0.2, conv4 s2, norm) -> `inner` -> up (ReLU, ConvT4 s2, norm),
    returning [LeakyReLU(x), up] along channels (the skip connection; see `forward`); the outermost
    returns the output itself.

    Sequential layout, index by index as in the released files:
      outermost: [conv, inner, ReLU, ConvT (bias), Tanh]
      middle:    [LeakyReLU, conv, norm, inner, ReLU, ConvT, norm, (Dropout 0.5)]
      innermost: [LeakyReLU, conv, ReLU, ConvT, norm]
    """

    def __init__(
        self,
        outer: int,
        inner: int,
        *,
        in_ch: int | None = None,
        submodule: nn.Module | None = None,
        outermost: bool = False,
        norm: str = "batch",
        use_dropout: bool = False,
    ) -> None:
        super().__init__()
        self.outermost = outermost
        make_norm, bias = norm_layer(norm), conv_bias(norm)
        down = nn.Conv2d(outer if in_ch is None else in_ch, inner, 4, stride=2, padding=1, bias=bias)
        if outermost:
            assert submodule is not None
            up = nn.ConvTranspose2d(inner * 2, outer, 4, stride=2, padding=1)  # no norm after it: keeps a bias
            layers = [down, submodule, nn.ReLU(True), up, nn.Tanh()]
        elif submodule is None:  # innermost: no norm on the bottleneck, nothing to concatenate
            up = nn.ConvTranspose2d(inner, outer, 4, stride=2, padding=1, bias=bias)
            layers = [nn.LeakyReLU(0.2), down, nn.ReLU(True), up, make_norm(outer)]
        else:
            up = nn.ConvTranspose2d(inner * 2, outer, 4, stride=2, padding=1, bias=bias)
            layers = [nn.LeakyReLU(0.2), down, make_norm(inner), submodule, nn.ReLU(True), up, make_norm(outer)]
            if use_dropout:
                layers.append(nn.Dropout(0.5))
        self.model = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.outermost:
            return self.model(x)
        # The skip carries LeakyReLU(x), not x: the reference implementation's in-place activation
        # overwrote its copy of x before concatenating, and the released weights were trained so.
        h = skip = self.model[0](x)
        for layer in list(self.model)[1:]:
            h = layer(h)
        return torch.cat([skip, h], 1)


class UNetGenerator(nn.Module):
    """Image (NCHW in [-1, 1], H and W multiples of 2**num_downs) -> image of the same size in [-1, 1].

    `unet_256`: num_downs 8 (a 256 px input reaches 1x1 at the bottleneck); `unet_128`: num_downs 7.
    Widths ngf, 2, 4, 8 ngf, then 8 ngf for the remaining levels; dropout 0.5 (`use_dropout`) after the
    num_downs - 5 middle 8ngf -> 8ngf levels, i.e. the first three decoder stages of unet_256.
    norm `batch` (pix2pix) leaves every conv bias-free except the outermost up-conv; `instance`
    gives every conv a bias.
    """

    # The bottleneck sees (nearly) the whole input: 7 stride-2 k4 convs alone reach 382 px, so tiles
    # would need more context than they hold. Inference runs it on whole images.
    whole_image = True

    def __init__(
        self,
        in_ch: int = 3,
        out_ch: int = 3,
        num_downs: int = 8,
        ngf: int = 64,
        norm: str = "batch",
        use_dropout: bool = True,
    ) -> None:
        super().__init__()
        if num_downs < MIN_DOWNS or ngf < 1 or in_ch < 1 or out_ch < 1:
            raise ValueError(f"UNetGenerator needs num_downs >= {MIN_DOWNS} and positive widths, got {num_downs=}")
        check_norm(norm)
        self.size_multiple = 2**num_downs
        # The convolutions alone reach 2**num_downs - 1 pixels to each side (the whole training crop);
        # for tiled inference half a size multiple of overlap hides seams at an affordable cost.
        self.receptive_radius = self.size_multiple // 2
        # Build from the bottleneck outwards: each level wraps the one below it.
        block = UNetSkipBlock(ngf * 8, ngf * 8, norm=norm)
        for _ in range(num_downs - MIN_DOWNS):
            block = UNetSkipBlock(ngf * 8, ngf * 8, submodule=block, norm=norm, use_dropout=use_dropout)
        for mult in (4, 2, 1):
            block = UNetSkipBlock(ngf * mult, ngf * mult * 2, submodule=block, norm=norm)
        self.model = UNetSkipBlock(out_ch, ngf, in_ch=in_ch, submodule=block, outermost=True, norm=norm)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        m = self.size_multiple
        if x.ndim != 4 or x.shape[-2] % m or x.shape[-1] % m:
            raise ValueError(
                f"UNetGenerator(num_downs={m.bit_length() - 1}) expects N x C x H x W input with H and W "
                f"multiples of {m}, got {tuple(x.shape)}; pad or crop the image (the inference engine pads)"
            )
        return self.model(x)
