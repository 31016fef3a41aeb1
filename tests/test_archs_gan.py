"""pix2pix / CycleGAN networks: exact parameter counts of the released configurations, the released
key layout, output shapes, the U-Net skip and dropout behaviour, receptive fields, weight init."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from img2img.archs import ARCHS, build_arch
from img2img.archs.patchgan import PatchDiscriminator, PixelDiscriminator, patch_size
from img2img.archs.resnet import ResnetGenerator
from img2img.archs.unet import UNetGenerator
from img2img.errors import WeightsError
from img2img.layers import conv_bias, count_parameters, init_weights, norm_layer


def meta(name: str, **kw) -> nn.Module:
    with torch.device("meta"):  # shapes only: the full-size nets cost no memory or init time
        return build_arch(name, **kw)


def conv(cin: int, cout: int, k: int, bias: bool) -> int:
    return cin * cout * k * k + (cout if bias else 0)


def unet_count(in_ch: int, out_ch: int, num_downs: int, ngf: int = 64) -> int:
    """Batch-norm U-Net from its layer list (BN: 2 parameters per channel; no conv bias except the
    outermost up-conv). Outermost: conv in->ngf, ConvT 2ngf->out (+bias). Level with outer o, inner i:
    conv o->i, BN(i), ConvT 2i->o, BN(o). Innermost (8ngf, 8ngf): conv, ConvT i->o, BN(o) only."""
    total = conv(in_ch, ngf, 4, False) + conv(2 * ngf, out_ch, 4, True)
    widths = [(ngf, 2 * ngf), (2 * ngf, 4 * ngf), (4 * ngf, 8 * ngf)] + [(8 * ngf, 8 * ngf)] * (num_downs - 5)
    for o, i in widths:
        total += conv(o, i, 4, False) + 2 * i + conv(2 * i, o, 4, False) + 2 * o
    return total + conv(8 * ngf, 8 * ngf, 4, False) * 2 + 2 * 8 * ngf


def resnet_count(in_ch: int, out_ch: int, n_blocks: int, ngf: int = 64) -> int:
    """Instance-norm ResNet (no norm parameters, every conv biased): 7x7 in, two 3x3 s2 downs, n blocks
    of two 3x3 convs at 4ngf, two 3x3 ConvT ups, 7x7 out."""
    downs = conv(ngf, 2 * ngf, 3, True) + conv(2 * ngf, 4 * ngf, 3, True)
    ups = conv(4 * ngf, 2 * ngf, 3, True) + conv(2 * ngf, ngf, 3, True)
    blocks = n_blocks * 2 * conv(4 * ngf, 4 * ngf, 3, True)
    return conv(in_ch, ngf, 7, True) + downs + blocks + ups + conv(ngf, out_ch, 7, True)


def test_parameter_counts_of_the_released_configurations() -> None:
    # unet_256, batch norm, 3 -> 3. A figure of 54,414,787 has been quoted for it; the layer list above
    # gives 54,413,955 (the reference implementation prints "54.414 M", consistent with both). The
    # 832 extra would be biases that batch-normed convs do not have in the released layout.
    assert unet_count(3, 3, 8) == 54_413_955
    assert count_parameters(meta("UNetGenerator")) == 54_413_955
    assert count_parameters(meta("UNetGenerator", num_downs=7)) == unet_count(3, 3, 7) == 41_828_995
    assert resnet_count(3, 3, 9) == 11_378_179
    assert count_parameters(meta("ResnetGenerator")) == 11_378_179
    assert count_parameters(meta("ResnetGenerator", n_blocks=6)) == resnet_count(3, 3, 6) == 7_837_699
    # 70x70 PatchGAN for pix2pix (in = 3 + 3), batch norm: biased first/last convs, three BN convs
    # without bias. 2,769,601 (also quoted) is this plus 128 + 256 + 512 biases on the normed convs,
    # which batch norm makes redundant and the released files do not contain.
    d = conv(6, 64, 4, True) + conv(64, 128, 4, False) + 256 + conv(128, 256, 4, False) + 512
    d += conv(256, 512, 4, False) + 1024 + conv(512, 1, 4, True)
    assert d == 2_768_705
    assert count_parameters(meta("PatchDiscriminator", in_ch=6)) == 2_768_705
    # Instance norm: no norm parameters, every conv biased.
    assert count_parameters(meta("PatchDiscriminator", in_ch=3, norm="instance")) == (
        conv(3, 64, 4, True) + conv(64, 128, 4, True) + conv(128, 256, 4, True) + conv(256, 512, 4, True)
    ) + conv(512, 1, 4, True)


def _unet_level(k: int) -> str:
    return "model.model.1" + ".model.3" * (k - 1) + ".model."


def test_unet_256_key_layout_matches_the_released_files() -> None:
    sd = meta("UNetGenerator").state_dict()
    want = {
        "model.model.0.weight": (64, 3, 4, 4),
        "model.model.3.weight": (128, 3, 4, 4),
        "model.model.3.bias": (3,),
        _unet_level(1) + "1.weight": (128, 64, 4, 4),
        _unet_level(1) + "2.running_mean": (128,),
        _unet_level(1) + "5.weight": (256, 64, 4, 4),
        _unet_level(1) + "6.weight": (64,),
        _unet_level(3) + "1.weight": (512, 256, 4, 4),
        _unet_level(5) + "5.weight": (1024, 512, 4, 4),
        _unet_level(7) + "1.weight": (512, 512, 4, 4),  # innermost: conv, ReLU, ConvT, BN
        _unet_level(7) + "3.weight": (512, 512, 4, 4),
        _unet_level(7) + "4.running_var": (512,),
    }
    for key, shape in want.items():
        assert tuple(sd[key].shape) == shape, key
    assert "model.model.0.bias" not in sd and _unet_level(1) + "1.bias" not in sd
    assert not any(k.startswith(_unet_level(8)) for k in sd)  # exactly 8 levels
    inst = meta("UNetGenerator", num_downs=7, norm="instance").state_dict()
    assert "model.model.0.bias" in inst and _unet_level(6) + "3.bias" in inst
    assert not any("running" in k for k in inst)


@pytest.mark.parametrize("n_blocks,ups,last", [(9, (19, 22), 26), (6, (16, 19), 23)])
def test_resnet_key_layout_matches_the_released_files(n_blocks: int, ups: tuple, last: int) -> None:
    sd = meta("ResnetGenerator", n_blocks=n_blocks).state_dict()
    want = {"model.1.weight": (64, 3, 7, 7), "model.4.weight": (128, 64, 3, 3), "model.7.weight": (256, 128, 3, 3)}
    want |= {f"model.{10 + i}.conv_block.{j}.weight": (256, 256, 3, 3) for i in range(n_blocks) for j in (1, 5)}
    want |= {f"model.{ups[0]}.weight": (256, 128, 3, 3), f"model.{ups[1]}.weight": (128, 64, 3, 3)}
    want |= {f"model.{last}.weight": (3, 64, 7, 7)}
    assert {k: tuple(v.shape) for k, v in sd.items() if k.endswith("weight")} == want
    assert tuple(sd[f"model.{last}.bias"].shape) == (3,) and tuple(sd[f"model.{ups[0]}.bias"].shape) == (128,)
    assert len(sd) == 2 * len(want)  # instance norm: a bias per conv, nothing else
    dropped = meta("ResnetGenerator", n_blocks=n_blocks, use_dropout=True).state_dict()
    assert "model.10.conv_block.6.weight" in dropped and "model.10.conv_block.5.weight" not in dropped


def test_patchgan_key_layout_and_receptive_field() -> None:
    sd = meta("PatchDiscriminator", in_ch=6).state_dict()
    for key, shape in {"model.0.weight": (64, 6, 4, 4), "model.2.weight": (128, 64, 4, 4), "model.3.weight": (128,),
                       "model.8.weight": (512, 256, 4, 4), "model.9.running_mean": (512,),
                       "model.11.weight": (1, 512, 4, 4), "model.11.bias": (1,)}.items():  # fmt: skip
        assert tuple(sd[key].shape) == shape, key
    assert patch_size(3) == 70 and patch_size(1) == 16
    # Changing one input pixel changes exactly the logits whose 70x70 patch contains it.
    d = PatchDiscriminator(in_ch=1, ndf=4, norm="none").eval()
    x = torch.randn(1, 1, 128, 128, requires_grad=True)
    d(x)[0, 0, 6, 6].backward()
    rows = x.grad[0, 0].abs().sum(1).nonzero()
    assert int(rows.max() - rows.min() + 1) == 70


@pytest.mark.parametrize(
    "name,kw,size,out",
    [
        ("UNetGenerator", {"num_downs": 5, "ngf": 8}, 32, (2, 3, 32, 32)),
        ("UNetGenerator", {"num_downs": 7, "ngf": 4, "in_ch": 1, "norm": "instance"}, 128, (2, 3, 128, 128)),
        ("ResnetGenerator", {"ngf": 8, "n_blocks": 2, "out_ch": 1}, 36, (2, 1, 36, 36)),
        ("PatchDiscriminator", {"in_ch": 3, "ndf": 8}, 64, (2, 1, 6, 6)),
        ("PatchDiscriminator", {"in_ch": 3, "ndf": 8, "n_layers": 1}, 64, (2, 1, 30, 30)),
        ("PixelDiscriminator", {"in_ch": 3, "ndf": 8}, 20, (2, 1, 20, 20)),
    ],
)
def test_output_shapes_and_gradients(name: str, kw: dict, size: int, out: tuple) -> None:
    torch.manual_seed(0)
    net = build_arch(name, **kw)
    x = torch.rand(2, kw.get("in_ch", 3), size, size) * 2 - 1
    y = net(x)
    assert tuple(y.shape) == out
    y.square().mean().backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in net.parameters())
    if name != "PatchDiscriminator" and name != "PixelDiscriminator":
        assert y.abs().max() <= 1  # tanh output


def test_generators_refuse_sizes_they_cannot_reproduce() -> None:
    with pytest.raises(ValueError, match="multiples of 32"):
        UNetGenerator(num_downs=5, ngf=4)(torch.zeros(1, 3, 48, 64))
    with pytest.raises(ValueError, match="multiples of 4"):
        ResnetGenerator(ngf=4, n_blocks=1)(torch.zeros(1, 3, 30, 32))
    assert UNetGenerator(num_downs=8, ngf=4).size_multiple == 256
    assert UNetGenerator(num_downs=7, ngf=4).size_multiple == 128
    assert ResnetGenerator(ngf=4).size_multiple == 4


def test_unet_skip_carries_the_leaky_relu_of_its_input() -> None:
    # The released weights were trained with LeakyReLU(x), not x, as the skip half (see UNetSkipBlock).
    net = UNetGenerator(num_downs=5, ngf=4).eval()
    level1 = net.model.model[1]
    x = torch.randn(1, 4, 16, 16)
    with torch.no_grad():
        y = level1(x)
    assert y.shape == (1, 8, 16, 16)
    assert torch.equal(y[:, :4], F.leaky_relu(x, 0.2))
    assert x.min() < 0  # the caller's tensor is left untouched


def test_unet_dropout_sits_in_the_middle_levels_and_acts_only_in_train_mode() -> None:
    net = UNetGenerator(num_downs=8, ngf=2)
    assert sum(isinstance(m, nn.Dropout) for m in net.modules()) == 3  # unet_256: first 3 decoder stages
    assert sum(isinstance(m, nn.Dropout) for m in UNetGenerator(num_downs=7, ngf=2).modules()) == 2
    assert not any(isinstance(m, nn.Dropout) for m in UNetGenerator(ngf=2, use_dropout=False).modules())
    x = torch.rand(2, 3, 256, 256) * 2 - 1
    with torch.no_grad():
        net.eval()
        assert torch.equal(net(x), net(x))
        net.train()
        torch.manual_seed(0)
        a = net(x)
        torch.manual_seed(1)
        assert not torch.allclose(a, net(x))


@pytest.mark.parametrize("n_blocks", [1, 3])
def test_resnet_receptive_radius_is_measured(n_blocks: int) -> None:
    net = ResnetGenerator(in_ch=1, out_ch=1, ngf=2, n_blocks=n_blocks, norm="none").eval()
    x = torch.randn(1, 1, 128, 128, requires_grad=True)
    net(x)[0, 0, 64, 64].backward()
    cols = x.grad[0, 0].abs().sum(0).nonzero().flatten()
    assert int(64 - cols.min()) == int(cols.max() - 64) == net.receptive_radius == 8 * n_blocks + 10


def test_init_weights_normal() -> None:
    torch.manual_seed(0)
    net = init_weights(UNetGenerator(num_downs=6, ngf=16, norm="batch"), "normal", gain=0.02)
    w = torch.cat(
        [m.weight.detach().flatten() for m in net.modules() if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d))]
    )
    assert abs(float(w.mean())) < 1e-3 and abs(float(w.std()) - 0.02) < 1e-3
    bn = [m for m in net.modules() if isinstance(m, nn.BatchNorm2d)]
    g = torch.cat([m.weight.detach() for m in bn])
    assert abs(float(g.mean()) - 1) < 0.01 and abs(float(g.std()) - 0.02) < 0.01
    assert all(float(m.bias.detach().abs().max()) == 0 for m in bn)
    assert float(net.model.model[3].bias.detach().abs().max()) == 0
    for kind in ("xavier", "kaiming", "orthogonal"):
        init_weights(ResnetGenerator(ngf=4, n_blocks=1), kind)
    with pytest.raises(ValueError, match="normal"):
        init_weights(net, "uniform")


def test_norm_factory() -> None:
    assert isinstance(norm_layer("batch")(8), nn.BatchNorm2d) and not conv_bias("batch")
    inst = norm_layer("instance")(8)
    assert isinstance(inst, nn.InstanceNorm2d) and not inst.affine and not inst.track_running_stats
    assert conv_bias("instance") and isinstance(norm_layer("none")(8), nn.Identity)
    with pytest.raises(ValueError, match="batch"):
        norm_layer("group")


def test_registered_in_archs() -> None:
    assert ARCHS["UNetGenerator"] is UNetGenerator and ARCHS["ResnetGenerator"] is ResnetGenerator
    assert ARCHS["PatchDiscriminator"] is PatchDiscriminator and ARCHS["PixelDiscriminator"] is PixelDiscriminator
    with pytest.raises(WeightsError, match="bad arguments"):
        build_arch("UNetGenerator", n_downs=8)
    with pytest.raises(ValueError, match="num_downs >= 5"):
        build_arch("UNetGenerator", num_downs=4)
