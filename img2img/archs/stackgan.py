"""StackGAN networks (Zhang et al. 2017, "StackGAN: Text to Photo-realistic Image Synthesis with Stacked
GANs"): conditioning augmentation (Sec. 3.2, Eq. 3 for the KL term), the Stage-I 64x64 and Stage-II
256x256 generators and their matching-aware discriminators. Parameter names follow the PyTorch release
(`ca_net.fc`, `fc.0`, `upsample1..4`, `img.0`, `STAGE1_G.*`, `encode_img.N`, `get_cond_logits.outlogits.N`),
so its `netG_epoch_N.pth` / `netD_epoch_N.pth` state dicts load directly at the released widths."""

from __future__ import annotations

import math

import torch
from torch import nn

REDUCTIONS = ("mean", "batchmean")


def conv3x3(cin: int, cout: int) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, 3, 1, 1, bias=False)  # every conv here is followed by BN or tanh


def up_block(cin: int, cout: int) -> nn.Sequential:
    """Nearest x2 + conv3x3 + BN + ReLU (conv at `.1`, BN at `.2`, as released)."""
    return nn.Sequential(
        nn.Upsample(scale_factor=2, mode="nearest"), conv3x3(cin, cout), nn.BatchNorm2d(cout), nn.ReLU(True)
    )


def _log2(value: int, what: str, minimum: int) -> int:
    """log2(value) for a power of two >= minimum; ValueError otherwise."""
    n = int(round(math.log2(value))) if value > 0 else -1
    if value < minimum or 2**n != value:
        raise ValueError(f"{what} must be a power of two >= {minimum}, got {value}")
    return n


def _check_width(width: int, what: str) -> None:
    if width < 1:
        raise ValueError(f"{what} would have {width} channels: increase the base width or use fewer up-blocks")


class ResBlock(nn.Module):
    """relu(x + [conv, BN, ReLU, conv, BN](x)); `block.0` and `block.3` are the convs, as released."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.block = nn.Sequential(
            conv3x3(channels, channels),
            nn.BatchNorm2d(channels),
            nn.ReLU(True),
            conv3x3(channels, channels),
            nn.BatchNorm2d(channels),
        )
        self.relu = nn.ReLU(True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.relu(x + self.block(x))


class CANet(nn.Module):
    """Conditioning augmentation: text embedding (N, t_dim) -> (c, mu, logvar), each (N, c_dim).

    As in the release, ReLU is applied to the linear layer's output before it is split into mu and
    log sigma^2 (so both are >= 0). c = mu + exp(logvar / 2) * eps with eps ~ N(0, I), drawn from
    `generator` when given (on the generator's device, then moved to mu's).
    """

    def __init__(self, t_dim: int = 1024, c_dim: int = 128) -> None:
        super().__init__()
        if t_dim < 1 or c_dim < 1:
            raise ValueError(f"CANet needs positive dimensions, got {t_dim=}, {c_dim=}")
        self.t_dim, self.c_dim = t_dim, c_dim
        self.fc = nn.Linear(t_dim, 2 * c_dim)
        self.relu = nn.ReLU()

    def encode(self, text_embedding: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if text_embedding.ndim != 2 or text_embedding.shape[1] != self.t_dim:
            raise ValueError(f"text embedding must be (N, {self.t_dim}), got {tuple(text_embedding.shape)}")
        x = self.relu(self.fc(text_embedding))
        return x[:, : self.c_dim], x[:, self.c_dim :]

    def forward(
        self, text_embedding: torch.Tensor, generator: torch.Generator | None = None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        mu, logvar = self.encode(text_embedding)
        device = generator.device if generator is not None else mu.device
        eps = torch.randn(mu.shape, generator=generator, device=device, dtype=mu.dtype).to(mu.device)
        return mu + torch.exp(0.5 * logvar) * eps, mu, logvar


def kl_loss(mu: torch.Tensor, logvar: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
    """KL(N(mu, diag(exp(logvar))) || N(0, I)), the CA regulariser (paper Eq. 3).

    `mean` (the release): -0.5 * mean over batch AND dimensions of (1 + logvar - mu^2 - exp(logvar)),
    i.e. the per-sample KL divided by c_dim. `batchmean`: the per-sample KL (summed over dimensions),
    averaged over the batch.
    """
    if reduction not in REDUCTIONS:
        raise ValueError(f"reduction must be one of {REDUCTIONS}, not {reduction!r}")
    element = 1 + logvar - mu.pow(2) - logvar.exp()
    if reduction == "mean":
        return -0.5 * element.mean()
    return -0.5 * element.sum(dim=1).mean()


def _check_noise(noise: torch.Tensor, text_embedding: torch.Tensor, z_dim: int) -> None:
    if noise.ndim != 2 or noise.shape[1] != z_dim or noise.shape[0] != text_embedding.shape[0]:
        raise ValueError(f"noise must be (N, {z_dim}) with N = {text_embedding.shape[0]}, got {tuple(noise.shape)}")


class StageIGenerator(nn.Module):
    """(text embedding (N, t_dim), noise (N, z_dim)) -> (fake (N, 3, S, S) in [-1, 1], mu, logvar).

    [z, c] -> Linear (no bias) + BN1d + ReLU -> (8 gf, 4, 4), then log2(S / 4) up-blocks halving the
    width (four at S = 64: 8gf -> gf/2), then conv3x3 -> 3 + tanh. `gf` is the release's GF_DIM (birds
    128, COCO 192). The release returns a leading None as well; this returns the three tensors.
    """

    def __init__(self, t_dim: int = 1024, c_dim: int = 128, z_dim: int = 100, gf: int = 128, image_size: int = 64):
        super().__init__()
        n_up = _log2(image_size, "StageIGenerator image_size", 8) - 2
        if z_dim < 1 or gf < 1:
            raise ValueError(f"StageIGenerator needs positive z_dim and gf, got {z_dim=}, {gf=}")
        self.t_dim, self.c_dim, self.z_dim, self.image_size = t_dim, c_dim, z_dim, image_size
        self.gf_dim = ngf = gf * 8
        _check_width(ngf // 2**n_up, "the last Stage-I up-block")
        self.ca_net = CANet(t_dim, c_dim)
        # Noise comes first in the concatenation: the columns of the released fc.0 weight are [z | c].
        self.fc = nn.Sequential(nn.Linear(z_dim + c_dim, ngf * 16, bias=False), nn.BatchNorm1d(ngf * 16), nn.ReLU(True))
        for k in range(1, n_up + 1):
            self.add_module(f"upsample{k}", up_block(ngf // 2 ** (k - 1), ngf // 2**k))
        self.n_up = n_up
        self.img = nn.Sequential(conv3x3(ngf // 2**n_up, 3), nn.Tanh())

    def forward(
        self, text_embedding: torch.Tensor, noise: torch.Tensor, generator: torch.Generator | None = None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        _check_noise(noise, text_embedding, self.z_dim)
        c, mu, logvar = self.ca_net(text_embedding, generator)
        h = self.fc(torch.cat((noise, c), 1)).view(-1, self.gf_dim, 4, 4)
        for k in range(1, self.n_up + 1):
            h = getattr(self, f"upsample{k}")(h)
        return self.img(h), mu, logvar


class DGetLogits(nn.Module):
    """Features (N, 8 df, 4, 4) [+ condition (N, c_dim) repeated spatially] -> (N,) logits.

    Conditional: conv3x3 (8df + c_dim -> 8df) + BN + LeakyReLU(0.2) + conv 4x4 stride 4 -> 1, at
    `outlogits.{0,1,3}`; unconditional: the 4x4 conv alone at `outlogits.0`. The release ends with a
    sigmoid (no parameters) and trains with BCE; this returns logits, for BCE-with-logits.
    """

    def __init__(self, df: int, c_dim: int, condition: bool = True) -> None:
        super().__init__()
        self.c_dim, self.condition = c_dim, condition
        if condition:
            self.outlogits = nn.Sequential(
                conv3x3(df * 8 + c_dim, df * 8),
                nn.BatchNorm2d(df * 8),
                nn.LeakyReLU(0.2, True),
                nn.Conv2d(df * 8, 1, 4, 4),
            )
        else:
            self.outlogits = nn.Sequential(nn.Conv2d(df * 8, 1, 4, 4))

    def forward(self, features: torch.Tensor, c: torch.Tensor | None = None) -> torch.Tensor:
        if self.condition:
            if c is None:
                raise ValueError("the conditional logits need the condition c (N, c_dim)")
            c = c.view(-1, self.c_dim, 1, 1).expand(-1, -1, features.shape[2], features.shape[3])
            features = torch.cat((features, c), 1)
        return self.outlogits(features).view(-1)


def image_encoder(image_size: int, df: int) -> nn.Sequential:
    """(N, 3, S, S) -> (N, 8 df, 4, 4): log2(S / 4) stride-2 4x4 convs doubling the width (the first
    without BN) and ending at 8 df when S <= 64; above 64 the width keeps doubling and 3x3 convs bring
    it back down to 8 df (the release's Stage-II layout: ... 32 df, 16 df, 8 df)."""
    n_down = _log2(image_size, "discriminator image_size", 8) - 2
    if df < 1:
        raise ValueError(f"discriminator width df must be positive, got {df}")
    shift = max(0, 4 - n_down)  # small inputs start wider so the encoder still ends at 8 df
    widths = [df * 2 ** (i + shift) for i in range(n_down)]
    layers: list[nn.Module] = [nn.Conv2d(3, widths[0], 4, 2, 1, bias=False), nn.LeakyReLU(0.2, True)]
    for cin, cout in zip(widths, widths[1:], strict=False):
        layers += [nn.Conv2d(cin, cout, 4, 2, 1, bias=False), nn.BatchNorm2d(cout), nn.LeakyReLU(0.2, True)]
    width = widths[-1]
    while width > df * 8:
        layers += [conv3x3(width, width // 2), nn.BatchNorm2d(width // 2), nn.LeakyReLU(0.2, True)]
        width //= 2
    return nn.Sequential(*layers)


class StageIDiscriminator(nn.Module):
    """Matching-aware Stage-I discriminator. `forward(image)` -> features (N, 8 df, 4, 4), as released;
    `get_cond_logits(features, c)` -> (N,) logits for (image, text) pairs; `get_uncond_logits` (only
    with `uncond=True`; None in the release's Stage I) -> (N,) realness logits. Images in [-1, 1]."""

    def __init__(self, df: int = 64, c_dim: int = 128, image_size: int = 64, uncond: bool = False) -> None:
        super().__init__()
        self.df, self.c_dim, self.image_size = df, c_dim, image_size
        self.encode_img = image_encoder(image_size, df)
        self.get_cond_logits = DGetLogits(df, c_dim, condition=True)
        self.get_uncond_logits = DGetLogits(df, c_dim, condition=False) if uncond else None

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        if image.ndim != 4 or tuple(image.shape[1:]) != (3, self.image_size, self.image_size):
            raise ValueError(f"expected images (N, 3, {self.image_size}, {self.image_size}), got {tuple(image.shape)}")
        return self.encode_img(image)


class StageIIDiscriminator(StageIDiscriminator):
    """Stage-II discriminator for 256x256 images (`image_size` configurable): the same interface, always
    with both conditional and unconditional logits, as released."""

    def __init__(self, df: int = 64, c_dim: int = 128, image_size: int = 256) -> None:
        super().__init__(df=df, c_dim=c_dim, image_size=image_size, uncond=True)


class StageIIGenerator(nn.Module):
    """(text embedding, noise) -> (stage1_img (N, 3, S, S), fake (N, 3, S*up, S*up), mu, logvar), all
    images in [-1, 1].

    `stage1` is a StageIGenerator or its keyword arguments; it is held as `STAGE1_G` (frozen: no
    gradients, and kept in eval mode unless `stage1_train_mode`, the release's behaviour, where its batch
    norm used batch statistics and kept updating its running statistics during Stage-II training).
    The Stage-I image is encoded to S/4 (conv3x3 -> gf, two 4x4 stride-2 convs -> 4 gf), joined with c
    repeated spatially (`hr_joint`), refined by `r_num` residual blocks, and upsampled by 4 * up_factor
    with up-blocks halving the width (four at up_factor 4: 4gf -> gf/4), then conv3x3 + tanh. Stage II
    has its own `ca_net`; t_dim and (by default) c_dim come from Stage I.
    """

    def __init__(
        self,
        stage1: StageIGenerator | dict | None = None,
        gf: int = 128,
        c_dim: int | None = None,
        r_num: int = 4,
        up_factor: int = 4,
        stage1_train_mode: bool = False,
    ) -> None:
        super().__init__()
        if not isinstance(stage1, StageIGenerator):
            stage1 = StageIGenerator(**(stage1 or {}))
        n_up = _log2(up_factor, "StageIIGenerator up_factor", 1) + 2
        if gf < 1 or r_num < 0:
            raise ValueError(f"StageIIGenerator needs gf >= 1 and r_num >= 0, got {gf=}, {r_num=}")
        _check_width(gf * 4 // 2**n_up, "the last Stage-II up-block")
        self.STAGE1_G = stage1
        self.STAGE1_G.requires_grad_(False)
        self.stage1_train_mode = stage1_train_mode
        self.c_dim = c_dim = stage1.c_dim if c_dim is None else c_dim
        self.gf_dim, self.n_up = gf, n_up
        self.image_size = stage1.image_size * up_factor
        self.ca_net = CANet(stage1.t_dim, c_dim)
        self.encoder = nn.Sequential(
            conv3x3(3, gf),
            nn.ReLU(True),
            nn.Conv2d(gf, gf * 2, 4, 2, 1, bias=False),
            nn.BatchNorm2d(gf * 2),
            nn.ReLU(True),
            nn.Conv2d(gf * 2, gf * 4, 4, 2, 1, bias=False),
            nn.BatchNorm2d(gf * 4),
            nn.ReLU(True),
        )
        self.hr_joint = nn.Sequential(conv3x3(c_dim + gf * 4, gf * 4), nn.BatchNorm2d(gf * 4), nn.ReLU(True))
        self.residual = nn.Sequential(*[ResBlock(gf * 4) for _ in range(r_num)])
        for k in range(1, n_up + 1):
            self.add_module(f"upsample{k}", up_block(gf * 4 // 2 ** (k - 1), gf * 4 // 2**k))
        self.img = nn.Sequential(conv3x3(gf * 4 // 2**n_up, 3), nn.Tanh())

    def train(self, mode: bool = True) -> StageIIGenerator:
        super().train(mode)
        if not self.stage1_train_mode:
            self.STAGE1_G.eval()
        return self

    def forward(
        self, text_embedding: torch.Tensor, noise: torch.Tensor, generator: torch.Generator | None = None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        with torch.no_grad():
            stage1_img, _, _ = self.STAGE1_G(text_embedding, noise, generator)
        h = self.encoder(stage1_img)
        c, mu, logvar = self.ca_net(text_embedding, generator)
        c = c.view(-1, self.c_dim, 1, 1).expand(-1, -1, h.shape[2], h.shape[3])
        h = self.residual(self.hr_joint(torch.cat((h, c), 1)))
        for k in range(1, self.n_up + 1):
            h = getattr(self, f"upsample{k}")(h)
        return stage1_img, self.img(h), mu, logvar
