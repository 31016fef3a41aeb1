"""Super-resolution discriminators: ESRGAN's VGG-style classifier (Wang et al. 2018, Sec. 4.1, as in
SRGAN Fig. 4) and Real-ESRGAN's U-Net discriminator with spectral normalisation (Wang et al. 2021,
Sec. 3.3), which gives one realness logit per pixel. Parameter names follow BasicSR so that released
discriminator files load directly."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils import spectral_norm


class VGGStyleDiscriminator(nn.Module):
    """ESRGAN discriminator: image (NCHW, input_size x input_size) -> one realness logit per image.

    Stage i (i = 0..4, plus stage 5 for 256 px) is a 3x3 conv then a stride-2 4x4 conv, each followed
    by BatchNorm (except the very first conv, which has a bias) and LeakyReLU(0.2); widths
    nf, 2nf, 4nf, 8nf, 8nf(, 8nf). The 4x4x8nf map goes through Linear(-> 100), LeakyReLU, Linear(-> 1).
    """

    def __init__(self, in_ch: int = 3, nf: int = 64, input_size: int = 128) -> None:
        super().__init__()
        if input_size not in (128, 256):
            raise ValueError(f"VGGStyleDiscriminator supports input_size 128 or 256, not {input_size}")
        self.input_size = input_size
        self.n_stages = 5 if input_size == 128 else 6
        widths = [nf, nf * 2, nf * 4, nf * 8] + [nf * 8] * (self.n_stages - 4)
        prev = in_ch
        for i, width in enumerate(widths):
            # The first conv keeps its bias (no norm after it); the others feed a BatchNorm.
            setattr(self, f"conv{i}_0", nn.Conv2d(prev, width, 3, 1, 1, bias=i == 0))
            if i > 0:
                setattr(self, f"bn{i}_0", nn.BatchNorm2d(width, affine=True))
            setattr(self, f"conv{i}_1", nn.Conv2d(width, width, 4, 2, 1, bias=False))
            setattr(self, f"bn{i}_1", nn.BatchNorm2d(width, affine=True))
            prev = width
        self.linear1 = nn.Linear(prev * 4 * 4, 100)
        self.linear2 = nn.Linear(100, 1)
        self.lrelu = nn.LeakyReLU(0.2, inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 4 or x.shape[-2:] != (self.input_size, self.input_size):
            raise ValueError(
                f"VGGStyleDiscriminator(input_size={self.input_size}) expects N x C x {self.input_size} x "
                f"{self.input_size} input, got {tuple(x.shape)}; crop the patches to {self.input_size} px "
                "or build it with the matching input_size"
            )
        feat = self.lrelu(self.conv0_0(x))
        feat = self.lrelu(self.bn0_1(self.conv0_1(feat)))
        for i in range(1, self.n_stages):
            feat = self.lrelu(getattr(self, f"bn{i}_0")(getattr(self, f"conv{i}_0")(feat)))
            feat = self.lrelu(getattr(self, f"bn{i}_1")(getattr(self, f"conv{i}_1")(feat)))
        feat = self.lrelu(self.linear1(feat.flatten(1)))
        return self.linear2(feat)


def _act(t: torch.Tensor) -> torch.Tensor:
    return F.leaky_relu(t, 0.2)


def _up(t: torch.Tensor) -> torch.Tensor:
    return F.interpolate(t, scale_factor=2, mode="bilinear", align_corners=False)


class UNetDiscriminatorSN(nn.Module):
    """Real-ESRGAN discriminator: image (NCHW, H and W multiples of 8) -> N x 1 x H x W logits.

    Encoder: 3x3 conv (nf) then three stride-2 4x4 convs (2nf, 4nf, 8nf); decoder: three bilinear x2
    upsamplings each followed by a 3x3 conv (4nf, 2nf, nf), with the matching encoder map added when
    `skip`; then two 3x3 convs (nf) and a 3x3 conv to one channel. Every conv except the first and
    the last is spectrally normalised and has no bias; LeakyReLU(0.2) after all but the last.
    """

    def __init__(self, in_ch: int = 3, nf: int = 64, skip: bool = True) -> None:
        super().__init__()
        self.skip = skip
        self.conv0 = nn.Conv2d(in_ch, nf, 3, 1, 1)
        self.conv1 = spectral_norm(nn.Conv2d(nf, nf * 2, 4, 2, 1, bias=False))
        self.conv2 = spectral_norm(nn.Conv2d(nf * 2, nf * 4, 4, 2, 1, bias=False))
        self.conv3 = spectral_norm(nn.Conv2d(nf * 4, nf * 8, 4, 2, 1, bias=False))
        self.conv4 = spectral_norm(nn.Conv2d(nf * 8, nf * 4, 3, 1, 1, bias=False))
        self.conv5 = spectral_norm(nn.Conv2d(nf * 4, nf * 2, 3, 1, 1, bias=False))
        self.conv6 = spectral_norm(nn.Conv2d(nf * 2, nf, 3, 1, 1, bias=False))
        self.conv7 = spectral_norm(nn.Conv2d(nf, nf, 3, 1, 1, bias=False))
        self.conv8 = spectral_norm(nn.Conv2d(nf, nf, 3, 1, 1, bias=False))
        self.conv9 = nn.Conv2d(nf, 1, 3, 1, 1)

    @property
    def size_multiple(self) -> int:
        return 8

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 4 or x.shape[-2] % 8 or x.shape[-1] % 8:
            raise ValueError(
                f"UNetDiscriminatorSN expects N x C x H x W input with H and W multiples of 8, got {tuple(x.shape)}"
            )
        x0 = _act(self.conv0(x))
        x1 = _act(self.conv1(x0))
        x2 = _act(self.conv2(x1))
        x3 = _act(self.conv3(x2))
        # Decoder: upsample, conv, then add the encoder map of the same resolution.
        x4 = _act(self.conv4(_up(x3)))
        x4 = x4 + x2 if self.skip else x4
        x5 = _act(self.conv5(_up(x4)))
        x5 = x5 + x1 if self.skip else x5
        x6 = _act(self.conv6(_up(x5)))
        x6 = x6 + x0 if self.skip else x6
        out = _act(self.conv7(x6))
        out = _act(self.conv8(out))
        return self.conv9(out)
