"""SPADE / GauGAN networks: the SPADE norm (normalise, then modulate by the nearest-resized label map),
residual-block shortcuts, generator sizes for normal/more/most and the VAE path, the style encoder, the
multiscale discriminator, and parameter counts of the released configuration."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from img2img.archs import ARCHS, build_arch
from img2img.archs.spade import (
    SPADE,
    ConvEncoder,
    MultiscaleDiscriminator,
    SPADEGenerator,
    SPADEResnetBlock,
    reparameterize,
)

TINY = {"ngf": 4, "hidden": 8}


def one_hot_blocks(n: int, classes: int, h: int, w: int, block: int = 8, seed: int = 0) -> torch.Tensor:
    """One-hot label maps made of random `block` x `block` squares: sharp class edges everywhere."""
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(0, classes, (n, h // block + 1, w // block + 1), generator=g)
    ids = ids.repeat_interleave(block, 1).repeat_interleave(block, 2)[:, :h, :w]
    return F.one_hot(ids, classes).permute(0, 3, 1, 2).float()


# ---------------------------------------------------------------- SPADE


def test_spade_output_shape_and_dependence_on_labels() -> None:
    torch.manual_seed(0)
    norm = SPADE(6, 4, hidden=8).eval()
    x = torch.randn(2, 6, 8, 8)
    seg_a, seg_b = one_hot_blocks(2, 4, 32, 32, seed=1), one_hot_blocks(2, 4, 32, 32, seed=2)
    out_a = norm(x, seg_a)
    assert out_a.shape == x.shape
    assert torch.equal(out_a, norm(x, seg_a))
    assert (out_a - norm(x, seg_b)).abs().max() > 1e-3  # γ and β come from the label map
    names = {k for k, _ in norm.named_parameters()}
    assert names == {f"{m}.{p}" for m in ("mlp_shared.0", "mlp_gamma", "mlp_beta") for p in ("weight", "bias")}


@pytest.mark.parametrize("param_free", ["batch", "instance", "syncbatch"])
def test_spade_normalises_without_affine_then_modulates(param_free: str) -> None:
    torch.manual_seed(0)
    norm = SPADE(5, 3, hidden=8, param_free=param_free).train()
    with torch.no_grad():  # constant γ = 0.5 and β = -0.25 everywhere
        for conv, bias in ((norm.mlp_gamma, 0.5), (norm.mlp_beta, -0.25)):
            conv.weight.zero_()
            conv.bias.fill_(bias)
    x = torch.randn(4, 5, 6, 7) * 3 + 2
    x_hat = (norm(x, one_hot_blocks(4, 3, 12, 14)) + 0.25) / 1.5
    dims = (0, 2, 3) if param_free != "instance" else (2, 3)  # batch: per channel; instance: per image too
    assert x_hat.mean(dims).abs().max() < 1e-5
    assert (x_hat.var(dims, unbiased=False) - 1).abs().max() < 1e-3
    assert not any(p.shape == (5,) for p in norm.param_free_norm.parameters())  # no learned affine


def test_label_map_stays_one_hot_at_every_layer() -> None:
    """The label map reaches each layer by nearest resizing: every pixel still holds exactly one class,
    and it equals subsampling the map, so no interpolation mixes classes at the sharp edges."""
    torch.manual_seed(0)
    net = SPADEGenerator(5, **TINY).eval()
    seg = one_hot_blocks(1, 5, 64, 96, block=3)  # edges off the 2**k grid
    seen: list[torch.Tensor] = []
    for m in net.modules():
        if isinstance(m, SPADE):
            m.mlp_shared.register_forward_pre_hook(lambda _m, args: seen.append(args[0]))
    net.fc.register_forward_pre_hook(lambda _m, args: seen.append(args[0]))
    with torch.no_grad():
        net(seg)
    assert {t.shape[-1] for t in seen} == {3, 6, 12, 24, 48, 96}
    for resized in seen:
        assert set(resized.unique().tolist()) == {0.0, 1.0}
        assert torch.equal(resized.sum(1), torch.ones_like(resized[:, 0]))
        step = 96 // resized.shape[-1]
        assert torch.equal(resized, seg[..., ::step, ::step])


# ---------------------------------------------------------------- residual block


def test_block_learns_a_shortcut_only_when_widths_differ() -> None:
    torch.manual_seed(0)
    same, wider, narrower = (SPADEResnetBlock(a, b, 3, hidden=8).eval() for a, b in ((8, 8), (4, 8), (8, 4)))
    assert not hasattr(same, "conv_s") and not hasattr(same, "norm_s")
    assert wider.conv_s.weight_orig.shape == (8, 4, 1, 1) and wider.conv_s.bias is None
    assert narrower.conv_0.weight_orig.shape == (4, 8, 3, 3)  # middle width min(fin, fout)
    assert narrower.norm_1.mlp_gamma.weight.shape[0] == 4 and narrower.norm_s.mlp_gamma.weight.shape[0] == 8
    keys = set(narrower.state_dict())
    assert {"conv_0.weight_orig", "conv_0.weight_u", "conv_0.weight_v", "conv_0.bias"} <= keys
    assert "conv_0.weight" in SPADEResnetBlock(8, 4, 3, spectral=False).state_dict()
    seg, x = one_hot_blocks(2, 3, 16, 16), torch.randn(2, 8, 16, 16)
    same, narrower = (SPADEResnetBlock(8, fout, 3, spectral=False, hidden=8).eval() for fout in (8, 4))
    for block in (same, narrower):  # silence the residual branch: what is left is the shortcut
        with torch.no_grad():
            block.conv_1.weight.zero_()
            block.conv_1.bias.zero_()
    assert torch.equal(same(x, seg), x)
    assert narrower(x, seg).shape == (2, 4, 16, 16) and narrower(x, seg).abs().sum() > 0


# ---------------------------------------------------------------- generator


@pytest.mark.parametrize(
    "mode, size",
    [("normal", (64, 96)), ("normal", (32, 32)), ("more", (64, 128)), ("most", (128, 128))],
)
def test_generator_output_has_the_input_size(mode: str, size: tuple[int, int]) -> None:
    torch.manual_seed(0)
    net = SPADEGenerator(5, num_upsampling_layers=mode, **TINY).eval()
    assert net.size_multiple == {"normal": 32, "more": 64, "most": 128}[mode]
    assert hasattr(net, "up_4") == (mode == "most")
    with torch.no_grad():
        out = net(one_hot_blocks(2, 5, *size))
    assert out.shape == (2, 3, *size)
    assert out.abs().max() <= 1 and out.std() > 0


def test_generator_rejects_sizes_off_the_grid_and_wrong_channels() -> None:
    net = SPADEGenerator(5, **TINY)
    with pytest.raises(ValueError, match=r"multiples of 32, got 48x70; pad .* to 64x96"):
        net(one_hot_blocks(1, 5, 48, 70))
    with pytest.raises(ValueError, match="N x 5 x H x W"):
        net(one_hot_blocks(1, 4, 32, 32))


def test_vae_generator_seeded_z_is_reproducible_and_z_matters() -> None:
    torch.manual_seed(0)
    net = SPADEGenerator(5, use_vae=True, z_dim=8, crop_size=64, aspect_ratio=2.0, **TINY).eval()
    assert net.output_size == (32, 64) and net.size_multiple == 1
    seg = one_hot_blocks(2, 5, 40, 24)  # any label size: SPADE resizes it to every layer
    with torch.no_grad():
        a = net(seg, generator=torch.Generator().manual_seed(1))
        b = net(seg, generator=torch.Generator().manual_seed(1))
        c = net(seg, generator=torch.Generator().manual_seed(2))
        z = torch.randn(2, 8, generator=torch.Generator().manual_seed(1))
        d = net(seg, z)
    assert a.shape == (2, 3, 32, 64)
    assert torch.equal(a, b) and torch.equal(a, d)
    assert (a - c).abs().max() > 1e-3


# ---------------------------------------------------------------- encoder and discriminator


def test_encoder_shapes_and_reparameterize() -> None:
    torch.manual_seed(0)
    enc = ConvEncoder(ndf=4, z_dim=16).eval()
    mu, logvar = enc(torch.rand(2, 3, 100, 80) * 2 - 1)  # resized to 256 x 256 first
    assert mu.shape == logvar.shape == (2, 16)
    assert enc.n_layers == 6 and "layer6.0.weight_orig" in enc.state_dict()
    small = ConvEncoder(ndf=4, z_dim=16, crop_size=128)
    assert small.n_layers == 5 and small.fc_mu.in_features == 32 * 8 * 8
    assert small(torch.rand(1, 3, 64, 64))[0].shape == (1, 16)
    g = lambda: torch.Generator().manual_seed(3)  # noqa: E731
    assert torch.equal(reparameterize(mu, logvar, g()), reparameterize(mu, logvar, g()))
    sure = reparameterize(mu, torch.full_like(logvar, -40.0), g())  # std ~ 2e-9
    assert torch.allclose(sure, mu, atol=1e-6)


def test_multiscale_discriminator_features_per_scale() -> None:
    torch.manual_seed(0)
    D = MultiscaleDiscriminator(8, num_D=3, n_layers=4, ndf=4).eval()
    x = torch.randn(2, 8, 64, 64)
    out = D(x)
    assert len(out) == 3 and all(len(feats) == 5 for feats in out)
    assert all([f.shape[1] for f in feats] == [4, 8, 16, 32, 1] for feats in out)
    assert [feats[0].shape[-1] for feats in out] == [33, 17, 9]  # each scale sees half the previous size
    half = D.downsample(x)
    assert half.shape[-2:] == (32, 32)
    assert torch.equal(out[1][-1], D.discriminator_1(half)[-1])
    flat = MultiscaleDiscriminator.downsample(torch.full((1, 1, 9, 9), 0.7))  # padding is not averaged in
    assert torch.allclose(flat, torch.full((1, 1, 5, 5), 0.7))
    D.get_intermediate_features = False
    logits_only = D(x)
    assert [len(f) for f in logits_only] == [1, 1, 1] and torch.equal(logits_only[2][0], out[2][-1])


# ---------------------------------------------------------------- released sizes


def _conv(cin: int, cout: int, k: int, bias: bool = True) -> int:
    return cout * cin * k * k + (cout if bias else 0)


def _block(fin: int, fout: int, label: int) -> int:
    spade = lambda c: _conv(label, 128, 3) + 2 * _conv(128, c, 3)  # noqa: E731
    mid = min(fin, fout)
    n = _conv(fin, mid, 3) + _conv(mid, fout, 3) + spade(fin) + spade(mid)
    return n + (_conv(fin, fout, 1, bias=False) + spade(fin) if fin != fout else 0)


def test_parameter_counts_of_the_released_configuration() -> None:
    """COCO-Stuff (semantic_nc 184, ngf 64), its 2-scale discriminator on label + image, and the encoder."""
    label, w = 184, [1024, 1024, 1024, 1024, 512, 256, 128, 64]
    # fc; head_0, G_middle_0, G_middle_1 (1024 -> 1024) and up_0..up_3 (-> 512, 256, 128, 64); conv_img.
    blocks = sum(_block(a, b, label) for a, b in zip(w, w[1:], strict=False))
    generator = _conv(label, 1024, 3) + blocks + _conv(64, 3, 3)
    widths = [label + 3, 64, 128, 256, 512]
    per_d = _conv(widths[0], 64, 4) + sum(
        _conv(a, b, 4, bias=False) for a, b in zip(widths[1:], widths[2:], strict=False)
    )
    per_d += _conv(512, 1, 4)
    enc_w = [3, 64, 128, 256, 512, 512, 512]
    encoder = sum(_conv(a, b, 3, bias=False) for a, b in zip(enc_w, enc_w[1:], strict=False)) + 2 * (
        512 * 16 * 256 + 256
    )
    with torch.device("meta"):
        nets = (SPADEGenerator(label), MultiscaleDiscriminator(label + 3), ConvEncoder())
    counts = [sum(p.numel() for p in net.parameters()) for net in nets]
    assert counts == [generator, 2 * per_d, encoder]
    assert 97e6 < counts[0] < 98e6


def test_registered_in_archs() -> None:
    assert ARCHS["SPADEGenerator"] is SPADEGenerator
    assert ARCHS["ConvEncoder"] is ConvEncoder and ARCHS["MultiscaleDiscriminator"] is MultiscaleDiscriminator
    assert isinstance(build_arch("SPADEGenerator", label_nc=3, ngf=2, hidden=4), SPADEGenerator)
