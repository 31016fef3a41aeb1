"""SPADE / GauGAN (Park et al. 2019, "Semantic Image Synthesis with Spatially-Adaptive Normalization"):
the SPADE layer (Eq. 1), its residual block and generator (Sec. 3, Fig. 4), the VAE style encoder
(Appendix B) and the multiscale PatchGAN discriminator. Parameter names follow the NVlabs release."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils import spectral_norm

PARAM_FREE_NORMS = ("batch", "instance", "syncbatch")
UPSAMPLING_LAYERS = {"normal": 5, "more": 6, "most": 7}  # nearest x2 steps from the base grid to the output
ENCODER_INPUT = 256  # the style encoder always sees the image resized to 256 x 256
SLOPE = 0.2  # LeakyReLU slope used throughout the released networks


def _param_free_norm(kind: str, channels: int) -> nn.Module:
    if kind == "batch":
        return nn.BatchNorm2d(channels, affine=False)
    if kind == "instance":
        return nn.InstanceNorm2d(channels, affine=False)
    if kind == "syncbatch":
        # Synchronises statistics across processes in distributed training; otherwise plain batch norm.
        return nn.SyncBatchNorm(channels, affine=False)
    raise ValueError(f"param_free must be one of {PARAM_FREE_NORMS}, not {kind!r}")


def _maybe_sn(layer: nn.Module, spectral: bool) -> nn.Module:
    # torch's hook-based spectral norm stores weight_orig / weight_u / weight_v, as the released files do.
    return spectral_norm(layer) if spectral else layer


class SPADE(nn.Module):
    """out = x̂ · (1 + γ(m)) + β(m) (Eq. 1): x̂ is x normalised without learned affine parameters;
    γ, β are per-pixel maps computed from the label map m by a shared conv + ReLU and one conv each.

    m (N, label_nc, H', W') is resized to x's H x W with nearest neighbours, so one-hot classes never
    blend. `param_free`: `batch` (running statistics, as released), `instance`, or `syncbatch`.
    """

    def __init__(
        self, norm_nc: int, label_nc: int, hidden: int = 128, kernel: int = 3, param_free: str = "batch"
    ) -> None:
        super().__init__()
        if kernel % 2 == 0:
            raise ValueError(f"SPADE kernel must be odd to keep the size, not {kernel}")
        pad = kernel // 2
        self.param_free_norm = _param_free_norm(param_free, norm_nc)
        self.mlp_shared = nn.Sequential(nn.Conv2d(label_nc, hidden, kernel, padding=pad), nn.ReLU())
        self.mlp_gamma = nn.Conv2d(hidden, norm_nc, kernel, padding=pad)
        self.mlp_beta = nn.Conv2d(hidden, norm_nc, kernel, padding=pad)

    def forward(self, x: torch.Tensor, seg: torch.Tensor) -> torch.Tensor:
        normalized = self.param_free_norm(x)
        seg = F.interpolate(seg, size=x.shape[-2:], mode="nearest")
        actv = self.mlp_shared(seg)
        return normalized * (1 + self.mlp_gamma(actv)) + self.mlp_beta(actv)


class SPADEResnetBlock(nn.Module):
    """x_s + conv_1(act(norm_1(conv_0(act(norm_0(x)))))), act = LeakyReLU(0.2), every norm a SPADE.

    The middle width is min(fin, fout). When fin != fout the shortcut is learned: conv_s (1x1, no
    bias) after its own SPADE norm_s; otherwise it is the identity. Convs are spectrally normalised
    when `spectral`.
    """

    def __init__(
        self,
        fin: int,
        fout: int,
        label_nc: int,
        spectral: bool = True,
        hidden: int = 128,
        kernel: int = 3,
        param_free: str = "batch",
    ) -> None:
        super().__init__()
        self.learned_shortcut = fin != fout
        fmiddle = min(fin, fout)
        self.conv_0 = _maybe_sn(nn.Conv2d(fin, fmiddle, 3, padding=1), spectral)
        self.conv_1 = _maybe_sn(nn.Conv2d(fmiddle, fout, 3, padding=1), spectral)
        norm = {"label_nc": label_nc, "hidden": hidden, "kernel": kernel, "param_free": param_free}
        self.norm_0 = SPADE(fin, **norm)
        self.norm_1 = SPADE(fmiddle, **norm)
        if self.learned_shortcut:
            self.conv_s = _maybe_sn(nn.Conv2d(fin, fout, 1, bias=False), spectral)
            self.norm_s = SPADE(fin, **norm)

    def forward(self, x: torch.Tensor, seg: torch.Tensor) -> torch.Tensor:
        x_s = self.conv_s(self.norm_s(x, seg)) if self.learned_shortcut else x
        dx = self.conv_0(F.leaky_relu(self.norm_0(x, seg), SLOPE))
        dx = self.conv_1(F.leaky_relu(self.norm_1(dx, seg), SLOPE))
        return x_s + dx


class SPADEGenerator(nn.Module):
    """Label map (N, label_nc, H, W), e.g. one-hot classes (+ instance edges) -> image (N, out_ch, H, W)
    in [-1, 1].

    A base grid of 16·ngf channels (from `fc`) goes through head_0, G_middle_0, G_middle_1 (16·ngf),
    up_0..up_3 (8, 4, 2, 1 ·ngf) and, with `most`, up_4 (ngf/2), with nearest x2 upsampling between
    them: 5 (`normal`), 6 (`more`, an extra step between the middle blocks) or 7 (`most`) steps. Then
    LeakyReLU(0.2), conv_img and tanh. `label_nc` is the released `semantic_nc`.

    Without the VAE the base grid is the label map nearest-downsampled by 2**steps, computed from
    the actual input size (the release fixes it from crop_size/aspect_ratio), so any H, W that are
    multiples of `size_multiple` = 2**steps work; pad other sizes (e.g. replicate the border labels)
    and crop the output. With `use_vae`, `fc` is Linear(z_dim -> 16·ngf·sh·sw) with the grid fixed by
    crop_size and aspect_ratio as released (sw = crop_size // 2**steps, sh = round(sw / aspect_ratio)):
    the label map may have any size, and the output is always `output_size`.
    """

    def __init__(
        self,
        label_nc: int,
        ngf: int = 64,
        num_upsampling_layers: str = "normal",
        crop_size: int = 256,
        aspect_ratio: float = 1.0,
        use_vae: bool = False,
        z_dim: int = 256,
        spectral: bool = True,
        param_free: str = "batch",
        hidden: int = 128,
        kernel: int = 3,
        out_ch: int = 3,
    ) -> None:
        super().__init__()
        if num_upsampling_layers not in UPSAMPLING_LAYERS:
            raise ValueError(
                f"num_upsampling_layers must be one of {tuple(UPSAMPLING_LAYERS)}, not {num_upsampling_layers!r}"
            )
        self.label_nc, self.ngf, self.z_dim, self.use_vae = label_nc, ngf, z_dim, use_vae
        self.num_upsampling_layers = num_upsampling_layers
        self.num_up = UPSAMPLING_LAYERS[num_upsampling_layers]
        self.sw = crop_size // 2**self.num_up
        self.sh = round(self.sw / aspect_ratio)
        if use_vae:
            if self.sw < 1 or self.sh < 1:
                raise ValueError(
                    f"crop_size {crop_size} / aspect {aspect_ratio} gives an empty {self.sh}x{self.sw} grid"
                )
            self.fc: nn.Module = nn.Linear(z_dim, 16 * ngf * self.sw * self.sh)
        else:
            self.fc = nn.Conv2d(label_nc, 16 * ngf, 3, padding=1)
        block = {
            "label_nc": label_nc,
            "spectral": spectral,
            "hidden": hidden,
            "kernel": kernel,
            "param_free": param_free,
        }
        self.head_0 = SPADEResnetBlock(16 * ngf, 16 * ngf, **block)
        self.G_middle_0 = SPADEResnetBlock(16 * ngf, 16 * ngf, **block)
        self.G_middle_1 = SPADEResnetBlock(16 * ngf, 16 * ngf, **block)
        self.up_0 = SPADEResnetBlock(16 * ngf, 8 * ngf, **block)
        self.up_1 = SPADEResnetBlock(8 * ngf, 4 * ngf, **block)
        self.up_2 = SPADEResnetBlock(4 * ngf, 2 * ngf, **block)
        self.up_3 = SPADEResnetBlock(2 * ngf, ngf, **block)
        final_nc = ngf
        if num_upsampling_layers == "most":
            self.up_4 = SPADEResnetBlock(ngf, ngf // 2, **block)
            final_nc = ngf // 2
        self.conv_img = nn.Conv2d(final_nc, out_ch, 3, padding=1)

    @property
    def size_multiple(self) -> int:
        """Input H and W must be multiples of this (1 with the VAE, whose grid does not depend on the input)."""
        return 1 if self.use_vae else 2**self.num_up

    @property
    def output_size(self) -> tuple[int, int] | None:
        """(H, W) of every output with the VAE; None when the output has the input's size."""
        return (self.sh * 2**self.num_up, self.sw * 2**self.num_up) if self.use_vae else None

    def forward(
        self, seg: torch.Tensor, z: torch.Tensor | None = None, *, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        """`z` (N, z_dim) is used only with the VAE; when None it is drawn from N(0, I) with `generator`."""
        if seg.ndim != 4 or seg.shape[1] != self.label_nc:
            raise ValueError(f"SPADEGenerator expects N x {self.label_nc} x H x W label maps, got {tuple(seg.shape)}")
        if self.use_vae:
            if z is None:
                z = torch.randn(seg.shape[0], self.z_dim, generator=generator, device=seg.device, dtype=seg.dtype)
            x = self.fc(z).view(-1, 16 * self.ngf, self.sh, self.sw)
        else:
            h, w = seg.shape[-2:]
            m = self.size_multiple
            if h % m or w % m:
                raise ValueError(
                    f"SPADEGenerator({self.num_upsampling_layers!r}) needs H and W that are multiples of {m}, got "
                    f"{h}x{w}; pad the label map (e.g. replicate its border) to {-(-h // m) * m}x{-(-w // m) * m} "
                    "and crop the output"
                )
            x = self.fc(F.interpolate(seg, size=(h // m, w // m), mode="nearest"))
        x = self.head_0(x, seg)
        x = self.G_middle_0(_up(x), seg)
        if self.num_up > 5:  # `more` and `most` add a step between the middle blocks
            x = _up(x)
        x = self.G_middle_1(x, seg)
        for block in (self.up_0, self.up_1, self.up_2, self.up_3):
            x = block(_up(x), seg)
        if self.num_up == 7:
            x = self.up_4(_up(x), seg)
        return torch.tanh(self.conv_img(F.leaky_relu(x, SLOPE)))


def _up(x: torch.Tensor) -> torch.Tensor:
    return F.interpolate(x, scale_factor=2, mode="nearest")


def _conv_in(cin: int, cout: int, kernel: int, stride: int, spectral: bool) -> nn.Sequential:
    """The released `spectralinstance` unit: spectrally normalised conv (bias dropped, since the norm
    removes it) followed by parameter-free instance norm."""
    # Padding ceil((k - 1) / 2) = k // 2 as released: 1 for the encoder's 3x3, 2 for the discriminator's 4x4.
    conv = _maybe_sn(nn.Conv2d(cin, cout, kernel, stride, padding=kernel // 2, bias=False), spectral)
    return nn.Sequential(conv, nn.InstanceNorm2d(cout, affine=False))


class ConvEncoder(nn.Module):
    """Style image (N, in_ch, H, W) in [-1, 1] -> (mu, logvar), each (N, z_dim) (Appendix B).

    The image is resized (bilinear) to 256 x 256, then six stride-2 3x3 convs (ndf, 2, 4, 8, 8, 8
    ·ndf; five when crop_size < 256), each spectral conv + instance norm with LeakyReLU(0.2) between,
    bring it to 4 x 4; fc_mu and fc_var read the flattened map. (With five convs the map is 8 x 8 and
    the linear layers are sized for it; the release sized them for 4 x 4 in both cases.)
    """

    def __init__(
        self, ndf: int = 64, z_dim: int = 256, crop_size: int = 256, in_ch: int = 3, spectral: bool = True
    ) -> None:
        super().__init__()
        widths = [ndf, ndf * 2, ndf * 4, ndf * 8, ndf * 8] + ([ndf * 8] if crop_size >= ENCODER_INPUT else [])
        prev = in_ch
        for i, width in enumerate(widths, start=1):
            setattr(self, f"layer{i}", _conv_in(prev, width, 3, 2, spectral))
            prev = width
        self.n_layers = len(widths)
        self.s0 = ENCODER_INPUT // 2**self.n_layers
        self.fc_mu = nn.Linear(prev * self.s0 * self.s0, z_dim)
        self.fc_var = nn.Linear(prev * self.s0 * self.s0, z_dim)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if x.shape[-2:] != (ENCODER_INPUT, ENCODER_INPUT):
            x = F.interpolate(x, size=(ENCODER_INPUT, ENCODER_INPUT), mode="bilinear", align_corners=False)
        for i in range(1, self.n_layers + 1):
            x = F.leaky_relu(getattr(self, f"layer{i}")(x), SLOPE)
        x = x.flatten(1)
        return self.fc_mu(x), self.fc_var(x)


def reparameterize(mu: torch.Tensor, logvar: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """z = mu + eps · exp(logvar / 2), eps ~ N(0, I): a sample that gradients flow through."""
    std = torch.exp(0.5 * logvar)
    eps = torch.randn(std.shape, generator=generator, device=std.device, dtype=std.dtype)
    return mu + eps * std


class NLayerDiscriminator(nn.Module):
    """(N, input_nc, H, W) -> list of n_layers + 1 feature maps, the last the patch logits (N, 1, h, w).

    model0: conv k4 s2 (bias) + LeakyReLU(0.2); model1..model{n-1}: spectral conv k4 (stride 2, the
    last stride 1) + instance norm + LeakyReLU, widths doubling up to max_nf; model{n}: conv k4 -> 1.
    For SPADE, input_nc = label channels + image channels (the pair is concatenated).
    """

    def __init__(
        self,
        input_nc: int,
        ndf: int = 64,
        n_layers: int = 4,
        spectral: bool = True,
        max_nf: int = 512,
        get_intermediate_features: bool = True,
    ) -> None:
        super().__init__()
        if n_layers < 1:
            raise ValueError(f"NLayerDiscriminator needs n_layers >= 1, not {n_layers}")
        self.get_intermediate_features = get_intermediate_features
        self.model0 = nn.Sequential(nn.Conv2d(input_nc, ndf, 4, 2, 2), nn.LeakyReLU(SLOPE))
        nf = ndf
        for n in range(1, n_layers):
            prev, nf = nf, min(nf * 2, max_nf)
            stride = 1 if n == n_layers - 1 else 2
            setattr(self, f"model{n}", nn.Sequential(_conv_in(prev, nf, 4, stride, spectral), nn.LeakyReLU(SLOPE)))
        setattr(self, f"model{n_layers}", nn.Sequential(nn.Conv2d(nf, 1, 4, 1, 2)))

    def forward(self, x: torch.Tensor) -> list[torch.Tensor] | torch.Tensor:
        features = []
        for layer in self.children():
            x = layer(x)
            features.append(x)
        return features if self.get_intermediate_features else features[-1]


class MultiscaleDiscriminator(nn.Module):
    """num_D NLayerDiscriminators on the input at full, 1/2, 1/4, ... resolution.

    Returns one list per discriminator: all n_layers + 1 feature maps with
    `get_intermediate_features` (for the feature-matching loss), else just [logits]; the last entry
    of each list is the logits. Between scales: 3x3 average pooling, stride 2, padding 1, not counting
    the padding (so borders are not darkened).
    """

    def __init__(
        self,
        input_nc: int,
        num_D: int = 2,
        n_layers: int = 4,
        ndf: int = 64,
        get_intermediate_features: bool = True,
        spectral: bool = True,
        max_nf: int = 512,
    ) -> None:
        super().__init__()
        self.get_intermediate_features = get_intermediate_features
        for i in range(num_D):
            setattr(self, f"discriminator_{i}", NLayerDiscriminator(input_nc, ndf, n_layers, spectral, max_nf, True))

    @staticmethod
    def downsample(x: torch.Tensor) -> torch.Tensor:
        return F.avg_pool2d(x, kernel_size=3, stride=2, padding=1, count_include_pad=False)

    def forward(self, x: torch.Tensor) -> list[list[torch.Tensor]]:
        result = []
        for i, D in enumerate(self.children()):
            if i:
                x = self.downsample(x)
            features = D(x)
            result.append(features if self.get_intermediate_features else features[-1:])
        return result
