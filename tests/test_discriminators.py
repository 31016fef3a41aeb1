"""SR discriminators: output shapes, exact parameter counts of the default widths, input checks,
gradient flow, and registration in ARCHS."""

from __future__ import annotations

import pytest
import torch

from img2img.archs import ARCHS, build_arch
from img2img.archs.discriminators import UNetDiscriminatorSN, VGGStyleDiscriminator


def n_params(net: torch.nn.Module) -> int:
    return sum(p.numel() for p in net.parameters())


def conv(cin: int, cout: int, k: int, bias: bool) -> int:
    return cin * cout * k * k + (cout if bias else 0)


def vgg_count(nf: int, stages: int, in_ch: int = 3) -> int:
    """From the layer list: stage 0 = 3x3 conv with bias + 4x4 conv + BN; stages 1.. = 3x3 conv + BN +
    4x4 conv + BN (BN: 2 parameters per channel); head Linear(8nf*16 -> 100) + Linear(100 -> 1)."""
    widths = [nf, 2 * nf, 4 * nf, 8 * nf] + [8 * nf] * (stages - 4)
    total = conv(in_ch, nf, 3, True) + conv(nf, nf, 4, False) + 2 * nf
    for prev, w in zip(widths, widths[1:], strict=False):
        total += conv(prev, w, 3, False) + 2 * w + conv(w, w, 4, False) + 2 * w
    return total + (8 * nf * 16 * 100 + 100) + (100 + 1)


def unet_count(nf: int, in_ch: int = 3) -> int:
    """conv0 (bias), three 4x4 down convs, three 3x3 up convs, two 3x3 convs (no bias: spectral norm),
    conv9 to one channel with bias. Spectral norm's u/v vectors are buffers, not parameters."""
    down = conv(nf, 2 * nf, 4, False) + conv(2 * nf, 4 * nf, 4, False) + conv(4 * nf, 8 * nf, 4, False)
    up = conv(8 * nf, 4 * nf, 3, False) + conv(4 * nf, 2 * nf, 3, False) + conv(2 * nf, nf, 3, False)
    return conv(in_ch, nf, 3, True) + down + up + 2 * conv(nf, nf, 3, False) + conv(nf, 1, 3, True)


def test_parameter_counts_are_stable():
    assert vgg_count(64, 5) == 14_499_401  # ESRGAN's 128 px discriminator: ~14.5 M
    assert vgg_count(64, 6) == 21_055_049
    assert unet_count(64) == 4_376_897  # Real-ESRGAN's U-Net discriminator: ~4.4 M
    assert n_params(VGGStyleDiscriminator()) == 14_499_401
    assert n_params(VGGStyleDiscriminator(input_size=256)) == 21_055_049
    assert n_params(UNetDiscriminatorSN()) == 4_376_897
    assert n_params(VGGStyleDiscriminator(in_ch=1, nf=8)) == vgg_count(8, 5, in_ch=1)
    assert n_params(UNetDiscriminatorSN(in_ch=4, nf=16)) == unet_count(16, in_ch=4)


@pytest.mark.parametrize("size", [128, 256])
def test_vgg_discriminator_gives_one_logit_per_image(size):
    d = VGGStyleDiscriminator(nf=8, input_size=size)
    assert d(torch.rand(2, 3, size, size)).shape == (2, 1)


def test_vgg_discriminator_names_the_expected_size():
    d = VGGStyleDiscriminator(nf=8)
    with pytest.raises(ValueError, match="128 x 128"):
        d(torch.rand(1, 3, 96, 96))
    with pytest.raises(ValueError, match="128 or 256"):
        VGGStyleDiscriminator(input_size=192)


def test_unet_discriminator_gives_per_pixel_logits():
    d = UNetDiscriminatorSN(nf=8)
    assert d(torch.rand(2, 3, 64, 40)).shape == (2, 1, 64, 40)
    with pytest.raises(ValueError, match="multiples of 8"):
        d(torch.rand(1, 3, 60, 64))


def test_unet_skip_connections_change_the_output():
    torch.manual_seed(0)
    a = UNetDiscriminatorSN(nf=8, skip=True)
    b = UNetDiscriminatorSN(nf=8, skip=False)
    b.load_state_dict(a.state_dict())
    a.eval(), b.eval()
    x = torch.rand(1, 3, 32, 32)
    assert not torch.allclose(a(x), b(x))


def test_unet_discriminator_is_spectrally_normalised():
    torch.manual_seed(0)
    d = UNetDiscriminatorSN(nf=8)
    keys = d.state_dict().keys()
    assert {"conv1.weight_orig", "conv1.weight_u", "conv1.weight_v"} <= set(keys)
    assert "conv0.weight" in keys and "conv9.weight" in keys  # first and last conv are plain
    d.train()
    for _ in range(20):  # power iterations converge on the largest singular value
        d(torch.rand(1, 3, 16, 16))
    w = d.conv4.weight.detach().flatten(1)
    assert torch.linalg.matrix_norm(w, ord=2).item() == pytest.approx(1.0, abs=0.05)


@pytest.mark.parametrize(
    "net,shape",
    [(VGGStyleDiscriminator(nf=8), (2, 3, 128, 128)), (UNetDiscriminatorSN(nf=8), (2, 3, 32, 32))],
    ids=["vgg", "unet"],
)
def test_gradients_reach_every_parameter_and_the_input(net, shape):
    x = torch.rand(*shape, requires_grad=True)
    net(x).mean().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    missing = [n for n, p in net.named_parameters() if p.grad is None or p.grad.abs().sum() == 0]
    assert not missing


def test_registered_in_archs():
    assert ARCHS["VGGStyleDiscriminator"] is VGGStyleDiscriminator
    assert ARCHS["UNetDiscriminatorSN"] is UNetDiscriminatorSN
    assert isinstance(build_arch("UNetDiscriminatorSN", nf=8), UNetDiscriminatorSN)
