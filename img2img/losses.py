"""Training losses shared by every family: GAN objectives (vanilla, LSGAN, hinge, relativistic average
as in ESRGAN eq. 1-2), the VGG19 perceptual loss on features before activation (ESRGAN Sec. 3.3),
discriminator feature matching (pix2pixHD / SPADE) and the Gaussian KL term (VAE, StackGAN CA)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from img2img.errors import ConfigError, WeightsError, load_refusal

GAN_KINDS = ("vanilla", "lsgan", "hinge", "relativistic")
VGG19_FILE = "vgg19-dcbb9e9d.pth"  # torchvision's ImageNet VGG19 checkpoint name
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

# A discriminator output: one logit map, or one per scale; a scale may also be a list of intermediate
# features whose last entry is the logit map (the multiscale discriminator convention).
Logits = Tensor | Sequence[Tensor | Sequence[Tensor]]


def _logit_list(logits: Logits) -> list[Tensor]:
    if isinstance(logits, Tensor):
        return [logits]
    out = [item if isinstance(item, Tensor) else item[-1] for item in logits]
    if not out:
        raise ValueError("GANLoss got an empty list of logits")
    return out


def _bce_ones(x: Tensor) -> Tensor:
    return F.softplus(-x).mean()  # == BCE-with-logits against target 1, numerically stable


def _bce_zeros(x: Tensor) -> Tensor:
    return F.softplus(x).mean()


class GANLoss(nn.Module):
    """Adversarial objective of one kind; logits may be a Tensor or a per-scale list (averaged).

    vanilla: BCE with logits. lsgan: least squares to targets 1 / 0. hinge: D max-margin,
    G -E[D(fake)]. relativistic: ESRGAN's relativistic average D, D_Ra(a, b) = sigmoid(C(a) - E[C(b)]).
    Both losses are the plain sums of their real and fake terms (not halved).
    Computed in float32 so mixed precision does not saturate the sigmoid.
    """

    def __init__(self, kind: str) -> None:
        super().__init__()
        if kind not in GAN_KINDS:
            raise ConfigError(f"unknown GAN loss kind {kind!r}; choose one of {', '.join(GAN_KINDS)}")
        self.kind = kind

    def extra_repr(self) -> str:
        return f"kind={self.kind!r}"

    def d_loss(self, real_logits: Logits, fake_logits: Logits) -> Tensor:
        """Discriminator loss; `fake_logits` must come from detached generator outputs."""
        reals, fakes = _logit_list(real_logits), _logit_list(fake_logits)
        if len(reals) != len(fakes):
            raise ValueError(f"d_loss: {len(reals)} real vs {len(fakes)} fake logit maps")
        return torch.stack([self._d_one(r.float(), f.float()) for r, f in zip(reals, fakes, strict=True)]).mean()

    def g_loss(self, fake_logits: Logits, real_logits: Logits | None = None) -> Tensor:
        """Generator adversarial loss. `real_logits` (relativistic only) are used as constants."""
        fakes = _logit_list(fake_logits)
        if self.kind != "relativistic":
            return torch.stack([self._g_one(f.float(), None) for f in fakes]).mean()
        if real_logits is None:
            raise ValueError("relativistic g_loss needs real_logits (D's output on the real images)")
        reals = _logit_list(real_logits)
        if len(reals) != len(fakes):
            raise ValueError(f"g_loss: {len(reals)} real vs {len(fakes)} fake logit maps")
        return torch.stack(
            [self._g_one(f.float(), r.detach().float()) for f, r in zip(fakes, reals, strict=True)]
        ).mean()

    def _d_one(self, real: Tensor, fake: Tensor) -> Tensor:
        if self.kind == "vanilla":
            return _bce_ones(real) + _bce_zeros(fake)
        if self.kind == "lsgan":
            return (real - 1).pow(2).mean() + fake.pow(2).mean()
        if self.kind == "hinge":
            return F.relu(1 - real).mean() + F.relu(1 + fake).mean()
        # ESRGAN eq. 1: -E_r[log D_Ra(x_r, x_f)] - E_f[log(1 - D_Ra(x_f, x_r))].
        return _bce_ones(real - fake.mean()) + _bce_zeros(fake - real.mean())

    def _g_one(self, fake: Tensor, real: Tensor | None) -> Tensor:
        if self.kind == "vanilla":
            return _bce_ones(fake)
        if self.kind == "lsgan":
            return (fake - 1).pow(2).mean()
        if self.kind == "hinge":
            return -fake.mean()
        assert real is not None
        # ESRGAN eq. 2: -E_r[log(1 - D_Ra(x_r, x_f))] - E_f[log D_Ra(x_f, x_r)].
        return _bce_zeros(real - fake.mean()) + _bce_ones(fake - real.mean())


def vgg19_cache_path() -> Path:
    """Where torchvision keeps the ImageNet VGG19 file (`$TORCH_HOME/hub/checkpoints/...`)."""
    return Path(torch.hub.get_dir()) / "checkpoints" / VGG19_FILE


# torchvision's VGG19 ("E") feature layout: conv widths, "M" = 2x2 max-pool.
_VGG19_CFG = (
    64,
    64,
    "M",
    128,
    128,
    "M",
    256,
    256,
    256,
    256,
    "M",
    512,
    512,
    512,
    512,
    "M",
    512,
    512,
    512,
    512,
    "M",
)


def vgg19_features() -> nn.Sequential:
    """torchvision's `vgg19().features` layer for layer (same indices and parameter names), built
    without the 120M-parameter classifier; ReLUs are not in-place so pre-activation maps survive."""
    layers: list[nn.Module] = []
    prev = 3
    for v in _VGG19_CFG:
        if v == "M":
            layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
        else:
            layers += [nn.Conv2d(prev, int(v), kernel_size=3, padding=1), nn.ReLU()]
            prev = int(v)
    return nn.Sequential(*layers)


def vgg19_layer_index() -> dict[str, int]:
    """conv{block}_{n} (before activation, ESRGAN) and relu{block}_{n} (after it, SPADE / pix2pixHD) ->
    index in `vgg19_features()`; blocks end at each max-pool."""
    names, block, conv, i = {}, 1, 0, 0
    for v in _VGG19_CFG:
        if v == "M":
            block, conv, i = block + 1, 0, i + 1
        else:
            conv += 1
            names[f"conv{block}_{conv}"] = i
            names[f"relu{block}_{conv}"] = i + 1
            i += 2
    return names


def load_vgg19_state_dict(path: str | Path) -> dict[str, Tensor]:
    """Read a torchvision-layout VGG19 state dict (`features.N.weight`, ...) from .pth or .safetensors."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"VGG19 weights file not found: {path}")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            sd = load_file(str(path))
        else:
            try:  # memory-map so the unused 500 MB classifier of a full checkpoint is never read
                sd = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
            except RuntimeError:  # legacy (non-zip) serialisation cannot be memory-mapped
                sd = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # pickle and safetensors raise many types for a bad file
        raise WeightsError(
            load_refusal(
                path,
                "VGG19 weights",
                e,
                f"Use torchvision's released {VGG19_FILE}, or a .safetensors copy of "
                "its state dict (made from a file you trust, in an isolated environment).",
            )  # fmt: skip
        ) from None
    if isinstance(sd, dict) and isinstance(sd.get("state_dict"), dict):
        sd = sd["state_dict"]
    if not isinstance(sd, dict) or not all(isinstance(v, Tensor) for v in sd.values()):
        raise WeightsError(f"{path}: expected a VGG19 state dict of tensors")
    return sd


def _missing_weights_message() -> str:
    return (
        "the perceptual loss needs ImageNet VGG19 weights, which are never downloaded at run time. "
        f"Copy torchvision's {VGG19_FILE} (https://download.pytorch.org/models/{VGG19_FILE}) to "
        f"{vgg19_cache_path()} (or under $TORCH_HOME/hub/checkpoints/), or pass its location as "
        "weights_path (.pth or .safetensors); for experiments only, allow_random_init=True uses an "
        "untrained VGG19"
    )


class PerceptualLoss(nn.Module):
    """Distance between frozen VGG19 features of `fake` and `real` at named layers (convX_Y: before the
    ReLU, as ESRGAN; reluX_Y: after it, as SPADE).

    Inputs are NCHW RGB in `input_range` (default [0, 1]); they are mapped to [0, 1] and normalised
    with the ImageNet mean/std. Returns sum_layer weight * criterion(features). Gradients reach
    `fake` only; the network is frozen and always in eval mode. `pretrained` says whether ImageNet
    weights were loaded (False only with allow_random_init=True).
    """

    def __init__(
        self,
        layer_weights: Mapping[str, float] | None = None,
        *,
        weights_path: str | Path | None = None,
        allow_random_init: bool = False,
        criterion: str = "l1",
        input_range: tuple[float, float] = (0.0, 1.0),
    ) -> None:
        super().__init__()
        layer_weights = dict(layer_weights) if layer_weights is not None else {"conv5_4": 1.0}
        if criterion not in ("l1", "l2"):
            raise ConfigError(f"perceptual criterion must be 'l1' or 'l2', not {criterion!r}")
        lo, hi = (float(v) for v in input_range)
        if not hi > lo:
            raise ConfigError(f"input_range must be (low, high) with low < high, got {input_range}")
        index = vgg19_layer_index()
        unknown = sorted(set(layer_weights) - set(index))
        if unknown or not layer_weights:
            raise ConfigError(f"perceptual layers {unknown or '{}'} not in VGG19; choose from {', '.join(index)}")
        last = max(index[name] for name in layer_weights)
        self.features = vgg19_features()[: last + 1]
        self.pretrained = self._load_weights(weights_path, allow_random_init)
        self.features.requires_grad_(False)
        self.layer_weights = layer_weights
        self._taps = {index[name]: name for name in layer_weights}
        self.criterion = criterion
        self.input_range = (lo, hi)
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)
        super().train(False)

    def _load_weights(self, weights_path: str | Path | None, allow_random_init: bool) -> bool:
        if weights_path is None and vgg19_cache_path().is_file():
            weights_path = vgg19_cache_path()
        if weights_path is None:
            if allow_random_init:
                return False
            raise ConfigError(_missing_weights_message())
        sd = load_vgg19_state_dict(weights_path)
        own = self.features.state_dict()
        wanted = {k: sd.get(f"features.{k}") for k in own}
        missing = [f"features.{k}" for k, v in wanted.items() if v is None]
        bad = [f"features.{k}" for k, v in wanted.items() if v is not None and v.shape != own[k].shape]
        if missing or bad:
            raise WeightsError(
                f"{weights_path}: not a torchvision VGG19 state dict (missing {missing[:3]}, "
                f"wrong shape {bad[:3]}); {_missing_weights_message()}"
            )
        self.features.load_state_dict(wanted)
        return True

    def train(self, mode: bool = True) -> PerceptualLoss:
        return super().train(False)  # frozen feature extractor: never switch to training behaviour

    def extract(self, x: Tensor) -> dict[str, Tensor]:
        """VGG19 pre-activation features at the configured layers for images in `input_range`."""
        if x.ndim != 4 or x.shape[1] != 3:
            raise ValueError(f"PerceptualLoss expects NCHW RGB images, got shape {tuple(x.shape)}")
        lo, hi = self.input_range
        x = ((x - lo) / (hi - lo) - self.mean.to(x.dtype)) / self.std.to(x.dtype)
        feats, last = {}, max(self._taps)
        for i, layer in enumerate(self.features):
            x = layer(x)
            if i in self._taps:
                feats[self._taps[i]] = x
            if i == last:
                break
        return feats

    def forward(self, fake: Tensor, real: Tensor) -> Tensor:
        if fake.shape != real.shape:
            raise ValueError(f"fake {tuple(fake.shape)} and real {tuple(real.shape)} differ in shape")
        fake_f = self.extract(fake)
        with torch.no_grad():
            real_f = self.extract(real)
        dist = F.l1_loss if self.criterion == "l1" else F.mse_loss
        terms = [w * dist(fake_f[name].float(), real_f[name].float()) for name, w in self.layer_weights.items()]
        return torch.stack(terms).sum()


def feature_matching_loss(real_feats: Sequence[Sequence[Tensor]], fake_feats: Sequence[Sequence[Tensor]]) -> Tensor:
    """pix2pixHD / SPADE feature matching: per scale, the sum over layers of L1(fake, real), averaged
    over scales. Pass only intermediate features (drop each scale's final logits); real ones are
    detached, so gradients reach the generator through the fake features only."""
    if len(real_feats) != len(fake_feats) or not real_feats:
        raise ValueError(f"feature matching: {len(real_feats)} real vs {len(fake_feats)} fake scales")
    per_scale = []
    for i, (reals, fakes) in enumerate(zip(real_feats, fake_feats, strict=True)):
        if len(reals) != len(fakes) or not reals:
            raise ValueError(f"feature matching scale {i}: {len(reals)} real vs {len(fakes)} fake layers")
        per_scale.append(
            torch.stack([F.l1_loss(f.float(), r.detach().float()) for r, f in zip(reals, fakes, strict=True)]).sum()
        )
    return torch.stack(per_scale).mean()


def kl_loss(mu: Tensor, logvar: Tensor, reduction: str = "batchmean") -> Tensor:
    """KL(N(mu, exp(logvar)) || N(0, I)).

    reduction: "batchmean" (sum over latent dims, mean over the batch: the per-sample KL),
    "sum" (SPADE's encoder term) or "mean" (mean over every element: StackGAN's CA term).
    """
    if mu.shape != logvar.shape:
        raise ValueError(f"kl_loss: mu {tuple(mu.shape)} and logvar {tuple(logvar.shape)} differ")
    mu, logvar = mu.float(), logvar.float()
    kl = -0.5 * (1 + logvar - mu.pow(2) - logvar.exp())
    if reduction == "batchmean":
        return kl.sum() / max(mu.shape[0], 1) if mu.ndim > 0 else kl.sum()
    if reduction == "sum":
        return kl.sum()
    if reduction == "mean":
        return kl.mean()
    raise ValueError(f"kl_loss reduction must be 'batchmean', 'sum' or 'mean', not {reduction!r}")
