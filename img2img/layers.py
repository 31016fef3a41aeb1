"""Shared network pieces: the norm-layer factory (batch / instance / none), the weight initialisation
of pix2pix and CycleGAN (Isola et al. 2017, Sec. 6.2: weights from N(0, 0.02)), and the reflection-
padded residual block of the CycleGAN ResNet generator (Zhu et al. 2017, Appendix 7.2)."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

NORMS = ("batch", "instance", "none")
INIT_KINDS = ("normal", "xavier", "kaiming", "orthogonal")
RUNNING_STATS = ("running_mean", "running_var", "num_batches_tracked")

NormFactory = Callable[[int], nn.Module]


def check_norm(norm: str) -> str:
    if norm not in NORMS:
        raise ValueError(f"norm must be one of {NORMS}, not {norm!r}")
    return norm


def norm_layer(norm: str) -> NormFactory:
    """channels -> norm module. `batch`: affine BatchNorm2d with running statistics; `instance`:
    InstanceNorm2d without affine parameters or running statistics (per-image statistics in both
    train and eval mode); `none`: identity."""
    check_norm(norm)
    if norm == "batch":
        return lambda c: nn.BatchNorm2d(c, affine=True, track_running_stats=True)
    if norm == "instance":
        return lambda c: nn.InstanceNorm2d(c, affine=False, track_running_stats=False)
    return lambda c: nn.Identity()


def conv_bias(norm: str) -> bool:
    """Whether a conv followed by this norm carries a bias: batch norm's own shift makes a bias
    redundant; instance norm without affine parameters has none, so the conv keeps its bias."""
    return check_norm(norm) != "batch"


@torch.no_grad()
def init_weights(net: nn.Module, kind: str = "normal", gain: float = 0.02) -> nn.Module:
    """Initialise `net` in place and return it.

    Conv / ConvTranspose / Linear weights: `normal` N(0, gain), `xavier` (gain), `kaiming` (fan-in),
    or `orthogonal` (gain); their biases 0. BatchNorm / affine InstanceNorm scales N(1, gain), shifts 0.
    Spectrally normalised layers are initialised through their original weight.
    """
    if kind not in INIT_KINDS:
        raise ValueError(f"init kind must be one of {INIT_KINDS}, not {kind!r}")
    for m in net.modules():
        if isinstance(m, (nn.Conv1d, nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
            weight = getattr(m, "weight_orig", None)
            if not isinstance(weight, nn.Parameter):
                weight = m.weight
            _init_weight(weight, kind, gain)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d, nn.InstanceNorm2d, nn.GroupNorm)):
            if getattr(m, "weight", None) is not None:
                nn.init.normal_(m.weight, 1.0, gain)
            if getattr(m, "bias", None) is not None:
                nn.init.zeros_(m.bias)
    return net


def _init_weight(weight: torch.Tensor, kind: str, gain: float) -> None:
    if kind == "normal":
        nn.init.normal_(weight, 0.0, gain)
    elif kind == "xavier":
        nn.init.xavier_normal_(weight, gain=gain)
    elif kind == "kaiming":
        nn.init.kaiming_normal_(weight, a=0, mode="fan_in")
    else:
        nn.init.orthogonal_(weight, gain=gain)


class ResnetBlock(nn.Module):
    """x + F(x), F = [pad, conv3x3, norm, ReLU, (Dropout 0.5), pad, conv3x3, norm].

    Kept as one `conv_block` Sequential so the parameter names are `conv_block.1` and
    `conv_block.5` (`conv_block.6` with dropout), as in the released CycleGAN files.
    """

    def __init__(self, dim: int, norm: str = "instance", use_dropout: bool = False, padding: str = "reflect") -> None:
        super().__init__()
        make_norm, bias = norm_layer(norm), conv_bias(norm)
        layers: list[nn.Module] = [*_pad(padding), nn.Conv2d(dim, dim, 3, padding=_conv_pad(padding), bias=bias)]
        layers += [make_norm(dim), nn.ReLU(True)]
        if use_dropout:
            layers.append(nn.Dropout(0.5))
        layers += [*_pad(padding), nn.Conv2d(dim, dim, 3, padding=_conv_pad(padding), bias=bias), make_norm(dim)]
        self.conv_block = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv_block(x)


PADDINGS = ("reflect", "replicate", "zero")


def _pad(padding: str) -> list[nn.Module]:
    """The explicit padding layer in front of a 3x3 conv (none for zero padding, which the conv does)."""
    if padding == "reflect":
        return [nn.ReflectionPad2d(1)]
    if padding == "replicate":
        return [nn.ReplicationPad2d(1)]
    if padding == "zero":
        return []
    raise ValueError(f"padding must be one of {PADDINGS}, not {padding!r}")


def _conv_pad(padding: str) -> int:
    return 1 if padding == "zero" else 0


def count_parameters(net: nn.Module) -> int:
    """Trainable and frozen parameters (buffers such as running statistics excluded)."""
    return sum(p.numel() for p in net.parameters())


def train_mode_inference(net: nn.Module) -> nn.Module:
    """Put `net` (in place) into the state the released pix2pix test images were made in: dropout
    active and batch norm normalising with the current batch's statistics. Momentum 0 keeps the
    running statistics unchanged, so the weights are not altered by running it."""
    net.eval()
    for m in net.modules():
        if isinstance(m, nn.Dropout | nn.Dropout2d):
            m.train()
        elif isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.train()
            m.momentum = 0.0
    return net


def uses_image_statistics(net: nn.Module) -> bool:
    """Whether `net` in its current mode normalises with statistics of the input itself (instance norm,
    or batch norm in training mode): then a tile's output depends on the whole tile, and tiling a large
    image changes the result (visible tone shifts between tiles), so such nets must run on whole images."""
    for m in net.modules():
        if isinstance(m, nn.modules.instancenorm._InstanceNorm) and not m.track_running_stats:
            return True
        if isinstance(m, nn.modules.batchnorm._BatchNorm) and (m.training or not m.track_running_stats):
            return True
        if isinstance(m, nn.GroupNorm | nn.LayerNorm):
            return True
    return False
