"""pix2pix and CycleGAN on the shared engine: every shipped config trains 2 steps, the loss terms are
the papers', the L1-only baseline has no discriminator, the image pool behaves and resumes, and an
interrupted CycleGAN run continues exactly as an uninterrupted one."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from img2img.errors import ConfigError
from img2img.recipes.cyclegan import ImagePool
from img2img.train import Trainer
from img2img.train.config import load_config

REPO = Path(__file__).resolve().parent.parent
PIX2PIX_CONFIGS = sorted((REPO / "configs" / "pix2pix").glob("*.yaml"))
CYCLEGAN_CONFIGS = sorted((REPO / "configs" / "cyclegan").glob("*.yaml"))
TINY_UNET = {"arch": "UNetGenerator", "num_downs": 5, "ngf": 4, "norm": "batch", "use_dropout": True}
TINY_RESNET = {"arch": "ResnetGenerator", "ngf": 4, "n_blocks": 1, "norm": "instance"}


@pytest.mark.parametrize("config", PIX2PIX_CONFIGS, ids=lambda p: p.name)
def test_pix2pix_config_trains_two_steps(translation_runs, config: Path, tmp_path: Path, facades_like: Path) -> None:
    overrides = translation_runs.pix2pix_overrides(tmp_path / "run", facades_like)
    raw_d = load_config(config).spec.model.D
    if raw_d is not None:
        overrides.append("model.D.ndf=4")
    cfg = load_config(config, overrides)
    result = Trainer(cfg).fit()
    assert result.step == 2 and all(np.isfinite(v) for v in result.losses.values())
    expected = {"G/gan", "G/l1", "D/gan"} if raw_d is not None else {"G/l1"}
    assert set(result.losses) == expected
    assert {"l1", "psnr", "ssim"} <= set(result.metrics) and result.metrics["val_images"] == 2
    assert (tmp_path / "run" / "samples" / "step_00000002.png").is_file()
    [weights] = result.exported
    card = json.loads(weights.with_suffix(".json").read_text())
    assert card["task"] == "translate" and card["value_range"] == [-1.0, 1.0]
    assert card["extra"]["maps"] == cfg.spec.data.direction == "BtoA"
    assert card["extra"]["direction"] == "facade label map → photo"
    assert card["metrics"]["psnr"] == pytest.approx(result.metrics["psnr"])
    assert card["training"]["baseline"] is (raw_d is None)


@pytest.mark.parametrize("config", CYCLEGAN_CONFIGS, ids=lambda p: p.name)
def test_cyclegan_config_trains_two_steps(translation_runs, config: Path, tmp_path: Path, domains: Path) -> None:
    cfg = load_config(config, translation_runs.cyclegan_overrides(tmp_path / "run", domains))
    result = Trainer(cfg).fit()
    terms = {"G/gan_AB", "G/gan_BA", "G/cycle_A", "G/cycle_B", "G/idt_A", "G/idt_B", "D/gan_A", "D/gan_B"}
    assert set(result.losses) == terms and all(np.isfinite(v) for v in result.losses.values())
    assert result.metrics["A_images"] == 2 and 0 < result.metrics["A_cycle_l1"] < 1
    names = sorted(p.stem for p in result.exported)
    assert names == ["run_G_AB", "run_G_BA"]
    cards = {p.stem: json.loads(p.with_suffix(".json").read_text()) for p in result.exported}
    assert cards["run_G_AB"]["extra"]["maps"] == "AtoB" and cards["run_G_BA"]["extra"]["maps"] == "BtoA"
    assert cards["run_G_AB"]["extra"]["direction"] == "horse → zebra"
    assert cards["run_G_BA"]["extra"]["direction"] == "zebra → horse"


def test_pix2pix_losses_are_the_papers(translation_runs, tmp_path: Path, facades_like: Path) -> None:
    recipe, nets = translation_runs.recipe_and_nets(
        "pix2pix/small_facades.yaml", translation_runs.pix2pix_overrides(tmp_path, facades_like)
    )
    a, b = torch.rand(1, 3, 32, 32) * 2 - 1, torch.rand(1, 3, 32, 32) * 2 - 1
    scratch: dict = {}
    g_terms = recipe.losses("G", {"A": a, "B": b}, nets, scratch)
    fake = scratch["fake"]
    assert g_terms["l1"].item() == pytest.approx(100 * F.l1_loss(fake, b).item(), rel=1e-5)
    d_fake = nets["D"](torch.cat([a, fake], 1))  # the D judges the (input, output) pair: 6 channels
    assert g_terms["gan"].item() == pytest.approx(
        F.binary_cross_entropy_with_logits(d_fake, torch.ones_like(d_fake)).item(), rel=1e-5
    )
    d_terms = recipe.losses("D", {"A": a, "B": b}, nets, scratch)
    real, fk = nets["D"](torch.cat([a, b], 1)), nets["D"](torch.cat([a, fake.detach()], 1))
    bce = F.binary_cross_entropy_with_logits
    expected = 0.5 * (bce(real, torch.ones_like(real)) + bce(fk, torch.zeros_like(fk)))  # halved
    assert d_terms["gan"].item() == pytest.approx(expected.item(), rel=1e-5)
    assert [p.betas for p in recipe.phases()] == [(0.5, 0.999)] * 2
    assert [p.lr for p in recipe.phases()] == [2e-4, 2e-4]


def test_cyclegan_losses_are_the_papers(translation_runs, tmp_path: Path, domains: Path) -> None:
    recipe, nets = translation_runs.recipe_and_nets(
        "cyclegan/small_horse2zebra.yaml", translation_runs.cyclegan_overrides(tmp_path, domains)
    )
    a, b = torch.rand(1, 3, 32, 32) * 2 - 1, torch.rand(1, 3, 32, 32) * 2 - 1
    t = recipe.losses("G", {"A": a, "B": b}, nets, {})
    fake_b = nets["G_AB"](a)
    assert t["cycle_A"].item() == pytest.approx(10 * F.l1_loss(nets["G_BA"](fake_b), a).item(), rel=1e-4)
    assert t["idt_B"].item() == pytest.approx(0.5 * 10 * F.l1_loss(nets["G_AB"](b), b).item(), rel=1e-4)
    d = nets["D_B"](fake_b)
    assert t["gan_AB"].item() == pytest.approx(((d - 1) ** 2).mean().item(), rel=1e-4)  # LSGAN
    bad = translation_runs.cyclegan_overrides(tmp_path, domains) + ["model.D.in_ch=6"]
    with pytest.raises(ConfigError, match="model.D.in_ch"):
        load_config(REPO / "configs/cyclegan/small_horse2zebra.yaml", bad)


def test_pix2pix_config_errors_name_the_keys(translation_runs, tmp_path: Path, facades_like: Path) -> None:
    base = translation_runs.pix2pix_overrides(tmp_path, facades_like)
    cfg = REPO / "configs/pix2pix/small_facades.yaml"
    with pytest.raises(ConfigError, match="model.D.in_ch"):
        load_config(cfg, [*base, "model.D.in_ch=3"])
    with pytest.raises(ConfigError, match="loss.gan"):
        load_config(cfg, [*base, "model.D=null"])
    with pytest.raises(ConfigError, match="crop_size"):
        load_config(cfg, [*base, "data.crop_size=36", "data.load_size=40"])


def test_image_pool_fills_then_swaps_half_the_time() -> None:
    pool = ImagePool(4, seed=0)
    first = torch.arange(4.0).view(4, 1, 1, 1)
    assert torch.equal(pool.query(first), first)  # filling: every image passes through and is kept
    swapped = 0
    for i in range(200):
        new = torch.full((1, 1, 1, 1), 100.0 + i)
        out = pool.query(new)
        swapped += int(out.item() != new.item())
    assert 70 < swapped < 130  # about half come from the history
    state = pool.state_dict()
    other = ImagePool(4, seed=99)
    other.load_state_dict(state)
    probe = torch.full((1, 1, 1, 1), -1.0)
    assert torch.equal(pool.query(probe), other.query(probe.clone()))  # same history, same draws
    assert ImagePool(0, seed=0).query(first) is first


def test_interrupted_cyclegan_run_resumes_exactly(translation_runs, tmp_path: Path, domains: Path) -> None:
    """4 straight steps vs 2 steps, stop, resume to 4: the same weights, since networks, optimizers,
    image pools (recipe state), data order and RNG states all come back."""
    cfg_path = REPO / "configs/cyclegan/small_horse2zebra.yaml"

    def run(out: Path, steps: int, resume: str | None) -> dict:
        o = translation_runs.cyclegan_overrides(out, domains) + [
            f"train.steps={steps}",
            "train.ckpt_every=2",
            "optim.pool_size=2",
        ]
        o.append("train.schedule.kind=constant")  # a linear decay depends on train.steps
        if resume:
            o.append(f"train.resume={resume}")
        Trainer(load_config(cfg_path, o)).fit()
        return torch.load(sorted((out / "checkpoints").glob("step_*.pt"))[-1], weights_only=True)

    straight = run(tmp_path / "a", 4, None)
    run(tmp_path / "b", 2, None)
    resumed = run(tmp_path / "b", 4, "auto")
    assert resumed["step"] == straight["step"] == 4
    assert len(straight["recipe"]["pools"]["A"]["images"]) == 2
    for net in ("G_AB", "G_BA", "D_A", "D_B"):
        for k, v in straight["networks"][net].items():
            torch.testing.assert_close(resumed["networks"][net][k], v, rtol=1e-4, atol=1e-5, msg=f"{net}.{k}")
    for dom in "AB":
        for x, y in zip(
            straight["recipe"]["pools"][dom]["images"], resumed["recipe"]["pools"][dom]["images"], strict=True
        ):
            torch.testing.assert_close(x, y, rtol=1e-4, atol=1e-5)


def test_pix2pix_fine_tunes_from_a_released_generator(translation_runs, tmp_path: Path, facades_like: Path) -> None:
    """`train.init_from.G` takes a released junyanz `.pth` (bare state dict) and starts from its weights."""
    from img2img.archs import UNetGenerator

    torch.manual_seed(5)
    released = UNetGenerator(num_downs=5, ngf=4)
    torch.save(released.state_dict(), tmp_path / "latest_net_G.pth")
    o = translation_runs.pix2pix_overrides(tmp_path / "run", facades_like) + [
        "model.D.ndf=4", f"train.init_from.G={tmp_path / 'latest_net_G.pth'}", "train.steps=1",
    ]  # fmt: skip
    trainer = Trainer(load_config(REPO / "configs/pix2pix/small_facades.yaml", o))
    trainer._start()
    for k, v in released.state_dict().items():
        torch.testing.assert_close(trainer.nets["G"].state_dict()[k], v, msg=k)
    wrong = translation_runs.pix2pix_overrides(tmp_path / "run2", facades_like) + [
        "model.D.ndf=4", f"train.init_from.G={tmp_path / 'latest_net_G.pth'}", 'model.G.ngf=8',
    ]  # fmt: skip
    with pytest.raises(Exception, match="init_from.G"):
        Trainer(load_config(REPO / "configs/pix2pix/small_facades.yaml", wrong))._start()
