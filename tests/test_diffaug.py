"""Differentiable augmentation of discriminator inputs (kornia): gradients reach the generator, each sample
draws its own transform, a pix2pix input/output pair keeps one colour change, and every GAN recipe
shows D augmented images when `loss.diffaugment` is set (and refuses it where it cannot apply)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

pytest.importorskip("kornia")

from img2img.errors import ConfigError  # noqa: E402
from img2img.recipes.diffaug import DiffAugment  # noqa: E402
from img2img.train import Trainer  # noqa: E402
from img2img.train.config import load_config  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
ALL = ["color", "translation", "cutout"]


def smooth_batch(n: int, c: int = 3, size: int = 32) -> torch.Tensor:
    yy, xx = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
    img = torch.stack([0.5 + 0.4 * torch.sin((xx + 2 * yy) * (0.1 + 0.05 * k)) for k in range(c)])
    return img.float().expand(n, c, size, size).clone()


def test_gradients_flow_through_every_policy_and_shapes_are_kept() -> None:
    torch.manual_seed(0)
    x = smooth_batch(4).requires_grad_(True)
    y = DiffAugment(ALL)(x)
    assert y.shape == x.shape and y.dtype == x.dtype
    y.square().sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    assert not torch.allclose(y, x)


def test_each_sample_draws_its_own_transform_and_values_stay_in_range() -> None:
    torch.manual_seed(1)
    x = smooth_batch(6) * 2 - 1  # the translation recipes' [-1, 1]
    y = DiffAugment(["translation", "cutout"], (-1.0, 1.0))(x)
    assert y.min() >= -1 and y.max() <= 1
    assert len({tuple(yi.flatten()[::97].tolist()) for yi in y}) > 1  # not one transform for the batch


def test_a_conditional_pair_gets_one_colour_change() -> None:
    torch.manual_seed(2)
    img = smooth_batch(4)
    y = DiffAugment(["color"])(torch.cat([img, img], 1))
    assert torch.allclose(y[:, :3], y[:, 3:], atol=1e-6)  # input and output of a pair stay consistent
    assert not torch.allclose(y[:, :3], img, atol=1e-3)


def test_bf16_activations_come_back_as_bf16() -> None:
    y = DiffAugment(["translation"])(smooth_batch(2).bfloat16())
    assert y.dtype == torch.bfloat16


def test_no_policy_is_the_identity_and_unknown_policies_are_refused() -> None:
    aug = DiffAugment([])
    x = smooth_batch(1)
    assert not aug and aug(x) is x
    with pytest.raises(ConfigError, match="unknown DiffAugment policy \\['blur'\\]"):
        DiffAugment(["blur"])


def test_config_errors_name_the_key(translation_runs, tmp_path: Path, facades_like: Path) -> None:  # noqa: F811
    base = translation_runs.pix2pix_overrides(tmp_path, facades_like)
    with pytest.raises(ConfigError, match="loss.diffaugment"):
        load_config(REPO / "configs/pix2pix/small_facades.yaml", [*base, "loss.diffaugment=[blur]"])
    with pytest.raises(ConfigError, match="loss.diffaugment augments what the discriminator sees"):
        load_config(REPO / "configs/pix2pix/small_facades_l1.yaml", [*base, "loss.diffaugment=[translation]"])
    with pytest.raises(ConfigError, match="'color' needs RGB"):
        load_config(
            REPO / "configs/pix2pix/small_facades.yaml",
            [*base, "loss.diffaugment=[color]", "data.in_channels=1", "model.G.in_ch=1", "model.D.in_ch=4"],
        )


def d_inputs(recipe, nets, phase: str, batch: dict) -> list[torch.Tensor]:
    """What every discriminator receives while the recipe computes one phase's losses."""
    seen: list[torch.Tensor] = []
    hooks = [
        net.register_forward_pre_hook(lambda _m, args: seen.append(args[0].detach().clone()))
        for name, net in nets.items()
        if name.startswith("D")
    ]
    try:
        scratch: dict = {}
        if phase == "D":
            recipe.losses("G", batch, nets, scratch)
            seen.clear()
        recipe.losses(phase, batch, nets, scratch)
    finally:
        for h in hooks:
            h.remove()
    return seen


def test_pix2pix_shows_its_discriminator_augmented_pairs(translation_runs, tmp_path: Path, facades_like: Path) -> None:  # noqa: F811
    over = [
        *translation_runs.pix2pix_overrides(tmp_path, facades_like),
        "model.D.ndf=4",
        "loss.diffaugment=[translation,cutout]",
    ]
    recipe, nets = translation_runs.recipe_and_nets("pix2pix/small_facades.yaml", over)
    a, b = smooth_batch(2) * 2 - 1, smooth_batch(2).flip(-1) * 2 - 1
    real, _fake = d_inputs(recipe, nets, "D", {"A": a, "B": b})
    assert real.shape == (2, 6, 32, 32) and not torch.allclose(real, torch.cat([a, b], 1))
    # Turned off, D sees the plain pair.
    plain, pnets = translation_runs.recipe_and_nets("pix2pix/small_facades.yaml", over[:-1])
    real, _ = d_inputs(plain, pnets, "D", {"A": a, "B": b})
    assert torch.equal(real, torch.cat([a, b], 1))


def test_cyclegan_and_esrgan_show_their_discriminators_augmented_images(
    translation_runs, tmp_path: Path, domains: Path
) -> None:  # noqa: F811
    recipe, nets = translation_runs.recipe_and_nets(
        "cyclegan/small_horse2zebra.yaml",
        [*translation_runs.cyclegan_overrides(tmp_path, domains), "loss.diffaugment=[cutout]"],
    )
    a, b = smooth_batch(1) * 2 - 1, smooth_batch(1).flip(-2) * 2 - 1
    seen = d_inputs(recipe, nets, "D", {"A": a, "B": b})
    assert len(seen) == 4 and not torch.allclose(seen[0], a)  # D_A's real image came augmented
    tiny_g = {"arch": "RRDBNet", "nf": 8, "nb": 1, "gc": 4, "scale": 4}
    recipe, nets = translation_runs.recipe_and_nets(
        "esrgan/small_gan_x4_novgg.yaml",
        [f"model.G={json.dumps(tiny_g)}", "model.D.nf=8", "data.hr_dirs=[x]", "loss.diffaugment=[color,cutout]"],
    )
    hr = smooth_batch(2, size=128)
    seen = d_inputs(recipe, nets, "G", {"lr": torch.nn.functional.avg_pool2d(hr, 4), "hr": hr})
    assert len(seen) == 2 and not torch.allclose(seen[1], hr)  # fake, then real, both augmented


@pytest.mark.parametrize("config", ["pix2pix/small_facades.yaml", "cyclegan/small_horse2zebra.yaml"])
def test_training_with_diffaugment_runs_and_records_it(
    translation_runs,
    config: str,
    tmp_path: Path,
    facades_like: Path,  # noqa: F811
    domains: Path,  # noqa: F811
) -> None:
    if config.startswith("pix2pix"):
        over = [*translation_runs.pix2pix_overrides(tmp_path / "run", facades_like), "model.D.ndf=4"]
    else:
        over = translation_runs.cyclegan_overrides(tmp_path / "run", domains)
    cfg = load_config(REPO / "configs" / config, [*over, "loss.diffaugment=[color,translation,cutout]"])
    result = Trainer(cfg).fit()
    assert result.step == 2 and all(np.isfinite(v) for v in result.losses.values())
    card = json.loads(result.exported[0].with_suffix(".json").read_text())
    assert card["training"]["config"]["loss"]["diffaugment"] == ALL
