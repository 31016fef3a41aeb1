"""GAN objectives, VGG19 perceptual loss (weights from a file, the cache, or refused), feature
matching and KL: values on hand-computed cases and where gradients may flow."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from img2img.errors import ConfigError, WeightsError
from img2img.losses import (
    GANLoss,
    PerceptualLoss,
    feature_matching_loss,
    kl_loss,
    vgg19_features,
    vgg19_layer_index,
)


def softplus(x: float) -> float:
    return math.log1p(math.exp(x))


def t(*v: float, grad: bool = False) -> torch.Tensor:
    return torch.tensor(v, requires_grad=grad)


# ---------------------------------------------------------------- GAN losses


def test_unknown_kind_is_a_config_error():
    with pytest.raises(ConfigError, match="wgan.*vanilla"):
        GANLoss("wgan")


def test_vanilla_matches_binary_cross_entropy():
    real, fake = t(2.0, -1.0), t(0.5, 3.0)
    gan = GANLoss("vanilla")
    want_d = F.binary_cross_entropy(torch.sigmoid(real), torch.ones(2)) + F.binary_cross_entropy(
        torch.sigmoid(fake), torch.zeros(2)
    )
    assert gan.d_loss(real, fake).item() == pytest.approx(want_d.item(), rel=1e-6)
    assert gan.g_loss(fake).item() == pytest.approx((softplus(-0.5) + softplus(-3.0)) / 2, rel=1e-6)


def test_vanilla_is_finite_for_saturated_logits():
    gan = GANLoss("vanilla")
    assert gan.d_loss(t(200.0), t(-200.0)).item() == pytest.approx(0.0, abs=1e-6)
    assert gan.g_loss(t(-200.0)).item() == pytest.approx(200.0, rel=1e-6)


def test_lsgan_values():
    gan = GANLoss("lsgan")
    assert gan.d_loss(t(1.0, 0.0), t(0.5)).item() == pytest.approx(0.5 + 0.25)
    assert gan.g_loss(t(0.0, 2.0)).item() == pytest.approx(1.0)


def test_hinge_zero_when_margins_hold_and_linear_otherwise():
    gan = GANLoss("hinge")
    assert gan.d_loss(t(1.0, 3.0), t(-1.0, -5.0)).item() == 0.0
    # real 0.5 misses its margin by 0.5, fake 0 by 1: means over each set.
    assert gan.d_loss(t(0.5, 2.0), t(0.0, -2.0)).item() == pytest.approx(0.25 + 0.5)
    assert gan.g_loss(t(1.0, -3.0)).item() == pytest.approx(1.0)


def test_relativistic_matches_esrgan_equations():
    real, fake = t(1.0, 3.0), t(0.0, -2.0)  # E[C(real)] = 2, E[C(fake)] = -1
    gan = GANLoss("relativistic")
    # Eq. 1: -E log sigmoid(C(r) - E C(f)) - E log(1 - sigmoid(C(f) - E C(r)))
    want_d = (softplus(-2.0) + softplus(-4.0)) / 2 + (softplus(-2.0) + softplus(-4.0)) / 2
    assert gan.d_loss(real, fake).item() == pytest.approx(want_d, rel=1e-6)
    # Eq. 2: -E log(1 - sigmoid(C(r) - E C(f))) - E log sigmoid(C(f) - E C(r))
    want_g = (softplus(2.0) + softplus(4.0)) / 2 + (softplus(2.0) + softplus(4.0)) / 2
    assert gan.g_loss(fake, real).item() == pytest.approx(want_g, rel=1e-6)


def test_relativistic_generator_needs_real_logits():
    with pytest.raises(ValueError, match="real_logits"):
        GANLoss("relativistic").g_loss(t(0.0))


def test_relativistic_generator_treats_real_logits_as_constants():
    real, fake = t(1.0, 3.0, grad=True), t(0.0, -2.0, grad=True)
    GANLoss("relativistic").g_loss(fake, real).backward()
    assert real.grad is None
    assert fake.grad is not None and fake.grad.abs().sum() > 0


def test_relativistic_discriminator_gets_gradient_through_both_averages():
    real, fake = t(1.0, 3.0, grad=True), t(0.0, -2.0, grad=True)
    GANLoss("relativistic").d_loss(real, fake).backward()
    eps, base = 1e-3, GANLoss("relativistic").d_loss(t(1.0, 3.0), t(0.0, -2.0)).item()
    numeric = (GANLoss("relativistic").d_loss(t(1.0 + eps, 3.0), t(0.0, -2.0)).item() - base) / eps
    assert real.grad[0].item() == pytest.approx(numeric, rel=1e-2)
    assert fake.grad.abs().sum() > 0


def test_discriminator_step_on_detached_fakes_leaves_generator_untouched():
    torch.manual_seed(0)
    g, d = torch.nn.Linear(4, 4), torch.nn.Linear(4, 1)
    real, fake = torch.randn(3, 4), g(torch.randn(3, 4))
    GANLoss("relativistic").d_loss(d(real), d(fake.detach())).backward()
    assert all(p.grad is None for p in g.parameters())
    assert all(p.grad is not None for p in d.parameters())
    d.zero_grad()
    GANLoss("relativistic").g_loss(d(fake), d(real)).backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in g.parameters())


@pytest.mark.parametrize("kind", ["vanilla", "lsgan", "hinge", "relativistic"])
def test_multiscale_logits_are_averaged(kind):
    gan = GANLoss(kind)
    r1, r2, f1, f2 = (
        torch.randn(2, 1, 4, 4),
        torch.randn(2, 1, 2, 2),
        torch.randn(2, 1, 4, 4),
        torch.randn(2, 1, 2, 2),
    )
    want = (gan.d_loss(r1, f1) + gan.d_loss(r2, f2)) / 2
    assert gan.d_loss([r1, r2], [f1, f2]).item() == pytest.approx(want.item(), rel=1e-6)
    # A scale given as its feature list uses the last entry (the logits).
    feats = [[torch.randn(2, 8, 4, 4), f1], [torch.randn(2, 8, 2, 2), f2]]
    want_g = (gan.g_loss(f1, r1) + gan.g_loss(f2, r2)) / 2
    assert gan.g_loss(feats, [r1, r2]).item() == pytest.approx(want_g.item(), rel=1e-6)
    with pytest.raises(ValueError, match="1 real vs 2 fake"):
        gan.d_loss([r1], [f1, f2])


def test_low_precision_logits_give_float32_loss():
    loss = GANLoss("vanilla").d_loss(torch.full((4,), 3.0, dtype=torch.bfloat16), torch.zeros(4, dtype=torch.bfloat16))
    assert loss.dtype == torch.float32
    assert loss.item() == pytest.approx(softplus(-3.0) + softplus(0.0), rel=1e-3)


# ---------------------------------------------------------------- feature matching, KL


def test_feature_matching_sums_layers_and_averages_scales():
    real = [[torch.zeros(1, 2, 4, 4), torch.zeros(1, 3, 2, 2)], [torch.zeros(1, 2, 2, 2)]]
    fake = [[torch.full((1, 2, 4, 4), 1.0), torch.full((1, 3, 2, 2), -2.0)], [torch.full((1, 2, 2, 2), 0.5)]]
    assert feature_matching_loss(real, fake).item() == pytest.approx(((1.0 + 2.0) + 0.5) / 2)


def test_feature_matching_gradient_reaches_fake_features_only():
    real = [[torch.ones(1, 2, 2, 2, requires_grad=True)]]
    fake = [[torch.zeros(1, 2, 2, 2, requires_grad=True)]]
    feature_matching_loss(real, fake).backward()
    assert real[0][0].grad is None
    assert torch.allclose(fake[0][0].grad, torch.full((1, 2, 2, 2), -1 / 8))
    with pytest.raises(ValueError, match="scale 0"):
        feature_matching_loss(real, [[torch.zeros(1), torch.zeros(1)]])


def test_kl_loss_values():
    mu, logvar = torch.zeros(2, 3), torch.zeros(2, 3)
    assert kl_loss(mu, logvar).item() == 0.0
    mu = torch.tensor([[1.0, 0.0], [0.0, 0.0]])
    logvar = torch.tensor([[0.0, math.log(2.0)], [0.0, 0.0]])
    # Per element: 0.5 * (mu^2 + var - 1 - logvar): 0.5 and 0.5 * (1 - ln 2), the rest 0.
    total = 0.5 + 0.5 * (1 - math.log(2.0))
    assert kl_loss(mu, logvar).item() == pytest.approx(total / 2)
    assert kl_loss(mu, logvar, reduction="sum").item() == pytest.approx(total)
    assert kl_loss(mu, logvar, reduction="mean").item() == pytest.approx(total / 4)
    with pytest.raises(ValueError, match="reduction"):
        kl_loss(mu, logvar, reduction="max")


# ---------------------------------------------------------------- perceptual loss


@pytest.fixture
def empty_torch_home(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))
    return tmp_path / "torch_home"


@pytest.fixture(scope="module")
def random_vgg_state():
    torch.manual_seed(1)
    feats = vgg19_features()
    sd = {f"features.{k}": v for k, v in feats.state_dict().items()}
    sd["classifier.6.bias"] = torch.zeros(1000)  # full checkpoints carry the classifier too: ignored
    return sd


def reference_features(sd: dict, x: torch.Tensor, index: int) -> torch.Tensor:
    """torchvision's own VGG19 layout with the given weights, run up to `index` (pre-activation)."""
    from torchvision.models import vgg

    net = vgg.make_layers(vgg.cfgs["E"])
    net.load_state_dict({k[len("features.") :]: v for k, v in sd.items() if k.startswith("features.")})
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    with torch.no_grad():
        return net[: index + 1]((x - mean) / std)


def test_layer_layout_matches_torchvision():
    from torchvision.models import vgg

    ours = vgg19_features().state_dict()
    theirs = vgg.make_layers(vgg.cfgs["E"]).state_dict()
    assert {k: v.shape for k, v in ours.items()} == {k: v.shape for k, v in theirs.items()}
    index = vgg19_layer_index()
    assert (index["conv1_1"], index["conv2_2"], index["conv5_4"]) == (0, 7, 34)
    assert (index["relu1_1"], index["relu3_1"], index["relu5_1"]) == (1, 11, 29)  # SPADE's VGG taps
    assert len(index) == 32


def test_missing_weights_refused_with_instructions(empty_torch_home):
    with pytest.raises(ConfigError) as e:
        PerceptualLoss()
    msg = str(e.value)
    assert "vgg19-dcbb9e9d.pth" in msg and "weights_path" in msg and str(empty_torch_home) in msg
    with pytest.raises(ConfigError, match="not found"):
        PerceptualLoss(weights_path=empty_torch_home / "nope.pth")


def test_random_init_is_allowed_only_on_request(empty_torch_home):
    loss = PerceptualLoss(allow_random_init=True)
    assert loss.pretrained is False
    x = torch.rand(1, 3, 32, 32)
    assert loss(x, x).item() == 0.0
    assert loss(x, torch.rand(1, 3, 32, 32)).item() > 0


@pytest.mark.parametrize("suffix", [".pth", ".safetensors"])
def test_weights_file_is_loaded_and_used(tmp_path, empty_torch_home, random_vgg_state, suffix):
    path = tmp_path / f"vgg19{suffix}"
    if suffix == ".pth":
        torch.save(random_vgg_state, path)
    else:
        from safetensors.torch import save_file

        save_file(random_vgg_state, str(path))
    loss = PerceptualLoss(weights_path=path)
    assert loss.pretrained is True
    assert torch.equal(loss.features[34].weight, random_vgg_state["features.34.weight"])
    torch.manual_seed(2)
    fake, real = torch.rand(2, 3, 32, 32), torch.rand(2, 3, 32, 32)
    want = F.l1_loss(reference_features(random_vgg_state, fake, 34), reference_features(random_vgg_state, real, 34))
    assert loss(fake, real).item() == pytest.approx(want.item(), rel=1e-5)


def test_weights_found_in_torch_cache(empty_torch_home, random_vgg_state):
    cache = empty_torch_home / "hub" / "checkpoints"
    cache.mkdir(parents=True)
    torch.save(random_vgg_state, cache / "vgg19-dcbb9e9d.pth")
    loss = PerceptualLoss()
    assert loss.pretrained is True
    assert torch.equal(loss.features[0].weight, random_vgg_state["features.0.weight"])


def test_layer_weights_criterion_and_input_range(tmp_path, random_vgg_state):
    path = tmp_path / "vgg.pth"
    torch.save(random_vgg_state, path)
    torch.manual_seed(3)
    fake, real = torch.rand(1, 3, 16, 16), torch.rand(1, 3, 16, 16)
    loss = PerceptualLoss({"conv1_2": 0.5, "conv2_2": 2.0}, weights_path=path, criterion="l2")
    assert len(loss.features) == 8  # truncated right after conv2_2
    want = 0.5 * F.mse_loss(
        reference_features(random_vgg_state, fake, 2), reference_features(random_vgg_state, real, 2)
    )
    want += 2.0 * F.mse_loss(
        reference_features(random_vgg_state, fake, 7), reference_features(random_vgg_state, real, 7)
    )
    assert loss(fake, real).item() == pytest.approx(want.item(), rel=1e-5)
    signed = PerceptualLoss({"conv1_2": 0.5, "conv2_2": 2.0}, weights_path=path, criterion="l2", input_range=(-1, 1))
    assert signed(fake * 2 - 1, real * 2 - 1).item() == pytest.approx(want.item(), rel=1e-5)


def test_bad_settings_and_bad_files(tmp_path, random_vgg_state):
    with pytest.raises(ConfigError, match="conv6_1.*conv5_4"):
        PerceptualLoss({"conv6_1": 1.0}, allow_random_init=True)
    with pytest.raises(ConfigError, match="criterion"):
        PerceptualLoss(allow_random_init=True, criterion="huber")
    wrong = tmp_path / "wrong.pth"
    torch.save({"features.0.weight": torch.zeros(64, 3, 5, 5)}, wrong)
    with pytest.raises(WeightsError, match="not a torchvision VGG19"):
        PerceptualLoss(weights_path=wrong)
    garbage = tmp_path / "garbage.pth"
    garbage.write_bytes(b"not a checkpoint")
    with pytest.raises(WeightsError, match="cannot read"):
        PerceptualLoss(weights_path=garbage)


def test_frozen_gradients_reach_fake_only(empty_torch_home):
    loss = PerceptualLoss({"conv2_2": 1.0}, allow_random_init=True)
    loss.train()
    assert not loss.training and not any(p.requires_grad for p in loss.parameters())
    fake = torch.rand(1, 3, 16, 16, requires_grad=True)
    real = torch.rand(1, 3, 16, 16, requires_grad=True)
    loss(fake, real).backward()
    assert fake.grad is not None and fake.grad.abs().sum() > 0
    assert real.grad is None
    assert all(p.grad is None for p in loss.parameters())
