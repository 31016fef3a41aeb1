"""The ESRGAN recipe and its commands: 2-step smoke runs of every shipped config, the paper's loss
terms and weights, samples and validation, `img2img interpolate` and `img2img finetune`."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
import yaml
from PIL import Image

from img2img.cli import main
from img2img.commands.finetune import build_config
from img2img.errors import ConfigError
from img2img.train import Trainer
from img2img.train.config import load_config

REPO = Path(__file__).resolve().parents[1]
ESRGAN_CONFIGS = sorted((REPO / "configs" / "esrgan").glob("*.yaml"))
TINY_G = {"arch": "RRDBNet", "nf": 8, "nb": 1, "gc": 4, "scale": 4}


pytestmark = pytest.mark.usefixtures("one_thread")  # conftest: tiny convs run faster on one thread


@pytest.fixture(scope="module")
def images(tmp_path_factory: pytest.TempPathFactory) -> Path:
    rng = np.random.default_rng(3)
    folder = tmp_path_factory.mktemp("hr")
    for i in range(4):
        img = np.kron(rng.random((10, 10, 3)), np.ones((16, 16, 1))) * 0.8 + rng.random((160, 160, 3)) * 0.2
        Image.fromarray((img * 255).astype(np.uint8)).save(folder / f"{i}.png")
    return folder


def tiny_overrides(config: Path, out: Path, images: Path) -> list[str]:
    """Shrink a shipped config to a 2-step CPU run on `images`, keeping its losses and discriminator."""
    raw = yaml.safe_load(config.read_text())
    d = raw["model"].get("D")
    patch = 128 if d and d["arch"] == "VGGStyleDiscriminator" else 64
    out_list = [
        f"train.out_dir={out}",
        "train.steps=2",
        "train.batch_size=2",
        "train.num_workers=0",
        "train.progress=false",
        "train.log_every=1",
        "train.sample_every=2",
        "train.resume=null",
        "train.init_from={}",
        f"data.hr_dirs=[{images}]",
        f"data.patch_size={patch}",
        f"model.G={json.dumps(TINY_G)}",
        f"val.hr_dir={images}",
        "val.max_images=1",
        "val.max_size=64",
    ]
    if d:
        out_list += ["model.D.nf=8", "loss.allow_random_vgg=true"]
    return out_list


@pytest.mark.parametrize("config", ESRGAN_CONFIGS, ids=lambda p: p.name)
def test_shipped_config_trains_two_steps(config: Path, tmp_path: Path, images: Path) -> None:
    cfg = load_config(config, tiny_overrides(config, tmp_path / "run", images))
    result = Trainer(cfg).fit()
    assert result.step == 2 and all(np.isfinite(v) for v in result.losses.values())
    loss = cfg.spec.loss
    expected = {"G/l1"} | ({"G/vgg"} if loss.perceptual else set())
    expected |= {"G/gan", "D/gan"} if cfg.spec.model.D else set()
    assert set(result.losses) == expected
    assert (tmp_path / "run" / "samples" / "step_00000002.png").is_file()
    card = json.loads(result.exported[0].with_suffix(".json").read_text())
    assert card["metrics"]["psnr_y"] > 0 and card["training"]["stage"] == ("gan" if cfg.spec.model.D else "psnr")
    if cfg.spec.loss.perceptual:
        assert card["training"]["perceptual_vgg"].startswith("random-init")


@pytest.mark.parametrize(("pixel", "warned"), [("1e-2", True), ("1.0", False)])
def test_untrained_vgg_with_a_small_pixel_weight_is_warned(pixel: str, warned: bool) -> None:
    from img2img.losses import vgg19_cache_path
    from img2img.recipes import RECIPES

    if vgg19_cache_path().is_file():
        pytest.skip(reason="ImageNet VGG19 weights are installed here")
    over = [f"model.G={json.dumps(TINY_G)}", "model.D.nf=8", "loss.allow_random_vgg=true", "data.hr_dirs=[x]"]
    cfg = load_config(REPO / "configs/esrgan/gan_x4.yaml", [*over, f"loss.pixel={pixel}"])
    recipe = RECIPES["esrgan"](cfg.spec, seed=0)
    recipe.aux_modules()
    assert any("untrained VGG19 features" in n for n in recipe.notes) is warned  # the engine prints them


def gan_recipe():
    from img2img.recipes import RECIPES

    cfg = load_config(
        REPO / "configs/esrgan/gan_x4.yaml",
        [f"model.G={json.dumps(TINY_G)}", "model.D.nf=8", "loss.allow_random_vgg=true", "data.hr_dirs=[x]"],
    )
    recipe = RECIPES["esrgan"](cfg.spec, seed=0)
    torch.manual_seed(0)
    nets = recipe.build_networks()
    recipe.aux_modules()
    return recipe, nets


def test_gan_stage_losses_are_the_papers() -> None:
    from img2img.losses import GANLoss

    recipe, nets = gan_recipe()
    assert [(p.name, p.networks, p.lr) for p in recipe.phases()] == [("G", ["G"], 1e-4), ("D", ["D"], 1e-4)]
    batch = {"lr": torch.rand(2, 3, 32, 32), "hr": torch.rand(2, 3, 128, 128)}
    nets["D"].eval()  # fixed BatchNorm statistics so the recomputation below sees the same D
    scratch: dict = {}
    terms = recipe.losses("G", batch, nets, scratch)
    assert set(terms) == {"l1", "vgg", "gan"}
    sr = scratch["sr"]
    assert terms["l1"].item() == pytest.approx(1e-2 * F.l1_loss(sr, batch["hr"]).item(), rel=1e-5)
    rel = GANLoss("relativistic")
    want_gan = 5e-3 * rel.g_loss(nets["D"](sr), nets["D"](batch["hr"])).item()
    assert terms["gan"].item() == pytest.approx(want_gan, rel=1e-5)
    assert terms["vgg"].item() == pytest.approx(recipe.vgg(sr, batch["hr"]).item(), rel=1e-5)
    d_terms = recipe.losses("D", batch, nets, scratch)
    assert set(d_terms) == {"gan"}
    want_d = rel.d_loss(nets["D"](batch["hr"]), nets["D"](sr.detach())).item()
    assert d_terms["gan"].item() == pytest.approx(want_d, rel=1e-5)
    # The D term reaches D only: G's output was detached.
    d_terms["gan"].backward()
    assert all(p.grad is None for p in nets["G"].parameters())


def test_samples_and_validation(images: Path) -> None:
    from img2img.eval.metrics import psnr
    from img2img.io.resize import imresize

    recipe, nets = gan_recipe()
    batch = {"lr": torch.rand(3, 3, 32, 32), "hr": torch.rand(3, 3, 128, 128)}
    rows = recipe.sample_images(batch, nets)
    assert len(rows) == 3 and all(t.shape == (3, 128, 128) for row in rows for t in row)
    recipe.cfg.val.hr_dir, recipe.cfg.val.max_images, recipe.cfg.val.max_size = str(images), 1, 0
    g = nets["G"].eval()
    metrics = recipe.validate(nets, torch.device("cpu"))
    hr = np.asarray(Image.open(sorted(images.iterdir())[0]), dtype=np.float32) / 255
    lr = np.clip(imresize(hr, 0.25), 0, 1).astype(np.float32)
    sr = g(torch.from_numpy(lr.transpose(2, 0, 1))[None]).clamp(0, 1)[0].permute(1, 2, 0).detach().numpy()
    assert metrics["psnr_y"] == pytest.approx(psnr(sr, hr, crop_border=4, y_channel=True), abs=1e-3)
    assert metrics["val_images"] == 1 and 0 < metrics["ssim_y"] <= 1


def save_tiny(path: Path, seed: int, **kw) -> Path:
    from img2img.archs import RRDBNet
    from img2img.weights.format import Card, save_weights

    torch.manual_seed(seed)
    kwargs = {k: v for k, v in {**TINY_G, **kw}.items() if k != "arch"}
    card = Card(name=path.stem, arch="RRDBNet", arch_kwargs=kwargs, task="upscale", scale=4, source=f"seed {seed}")
    return save_weights(path, RRDBNet(**kwargs), card)


def test_interpolate_command(tmp_path: Path) -> None:
    from safetensors.torch import load_file

    a, b = save_tiny(tmp_path / "a.safetensors", 0), save_tiny(tmp_path / "b.safetensors", 1)
    out = tmp_path / "c.safetensors"
    assert main(["interpolate", str(a), str(b), "--alpha", "0.8", "--out", str(out)]) == 0
    ta, tb, tc = (load_file(str(p)) for p in (a, b, out))
    for k in ta:
        assert torch.allclose(tc[k], 0.2 * ta[k] + 0.8 * tb[k], atol=1e-6)
    card = json.loads(out.with_suffix(".json").read_text())
    record = card["training"]["interpolation"]
    assert record["alpha"] == 0.8 and record["a"]["path"] == str(a) and record["b"]["source"] == "seed 1"
    assert card["arch"] == "RRDBNet" and card["metrics"] == {}
    from img2img.infer.model import load

    assert load(out).run_tensor(torch.rand(1, 3, 4, 4)).shape == (1, 3, 16, 16)
    other = save_tiny(tmp_path / "d.safetensors", 2, nb=2)
    assert main(["interpolate", str(a), str(other), "--alpha", "0.5", "--out", str(tmp_path / "e.safetensors")]) == 2
    assert main(["interpolate", str(a), str(b), "--alpha", "1.5", "--out", str(tmp_path / "f.safetensors")]) == 2
    assert not (tmp_path / "e.safetensors").exists() and not (tmp_path / "f.safetensors").exists()


def test_finetune_dry_run_takes_arch_and_data(tmp_path: Path, images: Path, capsys: pytest.CaptureFixture) -> None:
    w = save_tiny(tmp_path / "w.safetensors", 0)
    assert main(["finetune", "--weights", str(w), "--data", str(images), "--dry-run", "train.steps=7"]) == 0
    cfg = yaml.safe_load(capsys.readouterr().out)
    assert cfg["model"]["G"]["nb"] == 1 and cfg["model"]["G"]["arch"] == "RRDBNet"
    assert cfg["train"]["init_from"] == {"G": str(w)} and cfg["train"]["steps"] == 7
    assert cfg["data"]["hr_dirs"] == [str(images)] and cfg["data"]["lr_dirs"] is None
    assert cfg["train"]["out_dir"] == "runs/finetune_w"
    paired = tmp_path / "pairs"
    (paired / "HR").mkdir(parents=True)
    (paired / "LR").mkdir()
    assert main(["finetune", "--weights", str(w), "--data", str(paired), "--dry-run"]) == 0
    cfg = yaml.safe_load(capsys.readouterr().out)
    assert cfg["data"]["hr_dirs"] == [str(paired / "HR")] and cfg["data"]["lr_dirs"] == [str(paired / "LR")]
    assert cfg["data"]["degradation"] == "bicubic"


def test_finetune_without_vgg_weights_says_what_to_do(tmp_path: Path, images: Path) -> None:
    from img2img.losses import vgg19_cache_path

    if vgg19_cache_path().is_file():
        pytest.skip(reason="ImageNet VGG19 weights are installed here")
    w = save_tiny(tmp_path / "w.safetensors", 0)
    args = ["finetune", "--weights", str(w), "--data", str(images), "--out-dir", str(tmp_path / "run")]
    with pytest.raises(ConfigError, match="loss.vgg_weights / loss.allow_random_vgg: .*VGG19"):
        Trainer(build_config(finetune_parser().parse_args([*args[1:], "data.patch_size=64"])))
    assert main([*args, "data.patch_size=64"]) == 2
    assert not (tmp_path / "run" / "checkpoints").exists()


def finetune_parser():
    import argparse

    from img2img.commands.finetune import add_arguments

    p = argparse.ArgumentParser()
    add_arguments(p)
    return p


def test_finetune_catalog_model(tmp_path: Path, images: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("IMG2IMG_HOME", str(tmp_path / "home"))
    from img2img.weights.catalog import resolve_weights
    from img2img.weights.format import load_weights

    want, _ = load_weights(resolve_weights("realesr-animevideov3"))  # the release ships in a dependency
    run = tmp_path / "run"
    args = ["finetune", "--weights", "realesr-animevideov3", "--data", str(images), "--out-dir", str(run)]
    args += ["train.steps=1", "train.batch_size=1", "train.num_workers=0", "train.progress=false"]
    args += [
        "data.patch_size=64",
        "model.D.nf=8",
        "loss.allow_random_vgg=true",
        "optim.lr_G=1e-12",
        "train.resume=null",
    ]
    assert main(args) == 0
    from img2img.train.checkpoint import list_checkpoints, load_state

    state = load_state(list_checkpoints(run)[0])
    got = state["networks"]["G"]
    assert all(torch.allclose(got[k], want[k].float(), atol=1e-5) for k in want)
    card = json.loads((run / "weights" / "run.json").read_text())
    assert (
        card["arch"] == "SRVGGNetCompact"
        and card["training"]["config"]["train"]["init_from"]["G"] == "realesr-animevideov3"
    )
