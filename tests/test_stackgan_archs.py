"""StackGAN networks: parameter counts and key layout of the released configurations (built on the meta
device), conditioning augmentation and its KL term, output shapes at default and tiny sizes, the frozen
Stage-I generator inside Stage II, and the discriminators' logits."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.distributions import Normal, kl_divergence

from img2img.archs import ARCHS, build_arch
from img2img.archs.stackgan import (
    CANet,
    StageIDiscriminator,
    StageIGenerator,
    StageIIDiscriminator,
    StageIIGenerator,
    image_encoder,
    kl_loss,
)
from img2img.layers import count_parameters

TINY_G1 = dict(t_dim=12, c_dim=6, z_dim=5, gf=4, image_size=16)


def meta(name: str, **kw) -> nn.Module:
    with torch.device("meta"):  # shapes only: the full-size nets cost no memory or init time
        return build_arch(name, **kw)


def conv(cin: int, cout: int, k: int, bias: bool = False) -> int:
    return cin * cout * k * k + (cout if bias else 0)


def ups(widths: list[int]) -> int:
    """Up-blocks (conv3x3 without bias + BN) between consecutive widths."""
    return sum(conv(a, b, 3) + 2 * b for a, b in zip(widths, widths[1:], strict=False))


def g1_count(t_dim=1024, c_dim=128, z_dim=100, gf=128) -> int:
    ngf = 8 * gf
    fc = (z_dim + c_dim) * 16 * ngf + 2 * 16 * ngf  # Linear without bias + BatchNorm1d
    return t_dim * 2 * c_dim + 2 * c_dim + fc + ups([ngf // 2**k for k in range(5)]) + conv(ngf // 16, 3, 3)


def g2_own_count(t_dim=1024, c_dim=128, gf=128, r_num=4) -> int:
    encoder = conv(3, gf, 3) + conv(gf, 2 * gf, 4) + 2 * 2 * gf + conv(2 * gf, 4 * gf, 4) + 2 * 4 * gf
    joint = conv(c_dim + 4 * gf, 4 * gf, 3) + 2 * 4 * gf
    residual = r_num * 2 * (conv(4 * gf, 4 * gf, 3) + 2 * 4 * gf)
    head = ups([4 * gf // 2**k for k in range(5)]) + conv(gf // 4, 3, 3)
    return t_dim * 2 * c_dim + 2 * c_dim + encoder + joint + residual + head


def d_count(widths: list[int], df: int, c_dim: int) -> int:
    """encode_img: first 4x4 conv without BN, then conv + BN per width (4x4 while widening, 3x3 down),
    plus the conditional (3x3 + BN + 4x4 biased) and, for Stage II, unconditional (4x4 biased) logits."""
    total = conv(3, widths[0], 4)
    for a, b in zip(widths, widths[1:], strict=False):
        total += conv(a, b, 4 if b > a else 3) + 2 * b
    return total + conv(8 * df + c_dim, 8 * df, 3) + 2 * 8 * df + conv(8 * df, 1, 4, True)


def test_parameter_counts_of_the_released_configurations() -> None:
    # Birds (GF 128, DF 64, R_NUM 4); the reference networks at these widths have the same counts.
    assert count_parameters(meta("StageIGenerator")) == g1_count() == 10_301_248
    g2 = meta("StageIIGenerator")
    assert count_parameters(g2) == g1_count() + g2_own_count() == 36_591_328
    assert count_parameters(meta("StageIDiscriminator")) == d_count([64, 128, 256, 512], 64, 128) == 5_715_713
    d2_widths = [64, 128, 256, 512, 1024, 2048, 1024, 512]
    assert count_parameters(meta("StageIIDiscriminator")) == d_count(d2_widths, 64, 128) + conv(512, 1, 4, True)
    assert count_parameters(meta("StageIIDiscriminator")) == 71_269_122
    # COCO: GF 192, DF 96, R_NUM 2 in Stage II.
    coco_g2 = meta("StageIIGenerator", stage1={"gf": 192}, gf=192, r_num=2)
    assert count_parameters(coco_g2) == g1_count(gf=192) + g2_own_count(gf=192, r_num=2)
    assert count_parameters(meta("StageIDiscriminator", df=96)) == d_count([96, 192, 384, 768], 96, 128)


def test_released_key_layout() -> None:
    g2 = meta("StageIIGenerator").state_dict()
    shapes = {k: tuple(v.shape) for k, v in g2.items()}
    assert shapes["STAGE1_G.ca_net.fc.weight"] == (256, 1024)
    assert shapes["STAGE1_G.fc.0.weight"] == (16384, 228) and "STAGE1_G.fc.0.bias" not in shapes
    assert shapes["STAGE1_G.fc.1.running_var"] == (16384,)
    assert shapes["STAGE1_G.upsample1.1.weight"] == (512, 1024, 3, 3)
    assert shapes["STAGE1_G.upsample4.2.weight"] == (64,)
    assert shapes["STAGE1_G.img.0.weight"] == (3, 64, 3, 3)
    assert shapes["ca_net.fc.bias"] == (256,)
    assert shapes["encoder.0.weight"] == (128, 3, 3, 3) and shapes["encoder.5.weight"] == (512, 256, 4, 4)
    assert shapes["hr_joint.0.weight"] == (512, 640, 3, 3)
    assert {k.split(".")[1] for k in shapes if k.startswith("residual.")} == {"0", "1", "2", "3"}
    assert shapes["residual.3.block.3.weight"] == (512, 512, 3, 3)
    assert shapes["upsample4.1.weight"] == (32, 64, 3, 3) and shapes["img.0.weight"] == (3, 32, 3, 3)
    assert all(k.startswith("STAGE1_G.") for k in g2 if k.startswith("STAGE1"))
    d1 = {k: tuple(v.shape) for k, v in meta("StageIDiscriminator").state_dict().items()}
    assert d1["encode_img.8.weight"] == (512, 256, 4, 4) and "encode_img.9.running_mean" in d1
    assert d1["get_cond_logits.outlogits.0.weight"] == (512, 640, 3, 3)
    assert d1["get_cond_logits.outlogits.3.weight"] == (1, 512, 4, 4)
    assert not any(k.startswith("get_uncond_logits") for k in d1)
    d2 = {k: tuple(v.shape) for k, v in meta("StageIIDiscriminator").state_dict().items()}
    assert d2["encode_img.14.weight"] == (2048, 1024, 4, 4) and d2["encode_img.20.weight"] == (512, 1024, 3, 3)
    assert d2["get_uncond_logits.outlogits.0.weight"] == (1, 512, 4, 4)


def test_registered_and_buildable_from_plain_kwargs() -> None:
    for name in ("StageIGenerator", "StageIDiscriminator", "StageIIGenerator", "StageIIDiscriminator"):
        assert name in ARCHS
    g2 = build_arch("StageIIGenerator", stage1=TINY_G1, gf=4, r_num=1, up_factor=2)
    assert isinstance(g2.STAGE1_G, StageIGenerator) and g2.image_size == 32 and g2.c_dim == 6


def test_conditioning_augmentation_samples_from_its_generator() -> None:
    ca = CANet(t_dim=10, c_dim=4)
    t = torch.randn(3, 10)
    c1, mu, logvar = ca(t, torch.Generator().manual_seed(7))
    c2, _, _ = ca(t, torch.Generator().manual_seed(7))
    assert c1.shape == mu.shape == logvar.shape == (3, 4)
    assert torch.equal(c1, c2)
    eps = torch.randn((3, 4), generator=torch.Generator().manual_seed(7))
    torch.testing.assert_close(c1, mu + torch.exp(0.5 * logvar) * eps)
    assert (mu >= 0).all() and (logvar >= 0).all()  # the release's ReLU before the split
    assert not torch.equal(ca(t, torch.Generator().manual_seed(8))[0], c1)
    with pytest.raises(ValueError, match=r"\(N, 10\)"):
        ca(torch.randn(3, 9))


def test_kl_loss_zero_at_the_prior_positive_elsewhere_and_closed_form() -> None:
    zeros = torch.zeros(4, 8)
    assert kl_loss(zeros, zeros).item() == 0.0 and kl_loss(zeros, zeros, "batchmean").item() == 0.0
    g = torch.Generator().manual_seed(0)
    mu, logvar = torch.randn(4, 8, generator=g), torch.randn(4, 8, generator=g)
    ref = kl_divergence(Normal(mu, torch.exp(0.5 * logvar)), Normal(0.0, 1.0))  # per element
    torch.testing.assert_close(kl_loss(mu, logvar), ref.mean())
    torch.testing.assert_close(kl_loss(mu, logvar, "batchmean"), ref.sum(1).mean())
    assert kl_loss(mu, logvar) > 0
    assert kl_loss(torch.full((2, 3), 0.5), zeros[:2, :3]).item() == pytest.approx(0.125)  # mu^2 / 2
    with pytest.raises(ValueError, match="reduction"):
        kl_loss(mu, logvar, "sum")


@pytest.mark.parametrize("size", [8, 16, 32])
def test_stage1_generator_tiny_sizes(size: int) -> None:
    g = StageIGenerator(**{**TINY_G1, "image_size": size}).eval()
    fake, mu, logvar = g(torch.randn(2, 12), torch.randn(2, 5), torch.Generator().manual_seed(0))
    assert fake.shape == (2, 3, size, size) and mu.shape == logvar.shape == (2, 6)
    assert fake.abs().max() <= 1
    n_up = {8: 1, 16: 2, 32: 3}[size]
    assert hasattr(g, f"upsample{n_up}") and not hasattr(g, f"upsample{n_up + 1}")


def test_stage1_generator_default_size_and_input_checks() -> None:
    g = StageIGenerator(gf=4).eval()  # released layout (four up-blocks to 64 x 64) at a small width
    fake, _, _ = g(torch.randn(1, 1024), torch.randn(1, 100))
    assert fake.shape == (1, 3, 64, 64)
    with pytest.raises(ValueError, match="noise"):
        g(torch.randn(2, 1024), torch.randn(2, 99))
    with pytest.raises(ValueError, match="power of two"):
        StageIGenerator(image_size=48)
    with pytest.raises(ValueError, match="channels"):
        StageIGenerator(gf=1)  # 8 channels cannot halve four times


def test_stage2_generator_keeps_stage1_frozen() -> None:
    g2 = StageIIGenerator(stage1=TINY_G1, gf=4, r_num=2, up_factor=2).train()
    assert not g2.STAGE1_G.training and g2.training
    assert all(not p.requires_grad for p in g2.STAGE1_G.parameters())
    before = g2.STAGE1_G.fc[1].running_mean.clone()
    s1, fake, mu, logvar = g2(torch.randn(3, 12), torch.randn(3, 5))
    assert s1.shape == (3, 3, 16, 16) and fake.shape == (3, 3, 32, 32) and mu.shape == logvar.shape == (3, 6)
    (fake.mean() + kl_loss(mu, logvar)).backward()
    assert torch.equal(before, g2.STAGE1_G.fc[1].running_mean)  # eval mode: statistics untouched
    assert all(p.grad is None for p in g2.STAGE1_G.parameters())
    assert g2.ca_net.fc.weight.grad is not None and g2.encoder[0].weight.grad.abs().sum() > 0
    released = StageIIGenerator(stage1=TINY_G1, gf=4, r_num=1, up_factor=2, stage1_train_mode=True).train()
    assert released.STAGE1_G.training


def test_stage2_generator_default_layout_output_size() -> None:
    g2 = StageIIGenerator(stage1={"gf": 2}, gf=8, r_num=1).eval()  # 64 -> 256, four up-blocks
    s1, fake, _, _ = g2(torch.randn(1, 1024), torch.randn(1, 100))
    assert s1.shape == (1, 3, 64, 64) and fake.shape == (1, 3, 256, 256)
    assert g2.image_size == 256 and hasattr(g2, "upsample4") and not hasattr(g2, "upsample5")


@pytest.mark.parametrize("size", [16, 32, 128])
def test_image_encoder_ends_at_8df_by_4x4(size: int) -> None:
    enc = image_encoder(size, df=2)
    assert enc(torch.zeros(1, 3, size, size)).shape == (1, 16, 4, 4)


def test_discriminator_logits_shapes_and_conditioning() -> None:
    d1 = StageIDiscriminator(df=2, c_dim=6, image_size=16).eval()
    feats = d1(torch.rand(4, 3, 16, 16) * 2 - 1)
    assert feats.shape == (4, 16, 4, 4) and d1.get_uncond_logits is None
    c = torch.randn(4, 6)
    logits = d1.get_cond_logits(feats, c)
    assert logits.shape == (4,)
    assert not torch.allclose(logits, d1.get_cond_logits(feats, c.flip(0)))  # the text matters
    with pytest.raises(ValueError, match="condition"):
        d1.get_cond_logits(feats)
    with pytest.raises(ValueError, match="expected images"):
        d1(torch.zeros(1, 3, 32, 32))
    assert StageIDiscriminator(df=2, c_dim=6, image_size=16, uncond=True).get_uncond_logits(feats).shape == (4,)
    d2 = StageIIDiscriminator(df=2, c_dim=6, image_size=32).eval()
    feats = d2(torch.zeros(2, 3, 32, 32))
    assert d2.get_cond_logits(feats, c[:2]).shape == (2,) and d2.get_uncond_logits(feats).shape == (2,)
    assert meta("StageIIDiscriminator").image_size == 256
