"""Run configs: every shipped YAML loads; unknown keys, wrong types and bad values fail with the full
key path (and a suggestion); dotted overrides; `img2img train --dry-run` prints a config that reloads."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from img2img.cli import main
from img2img.config import apply_overrides
from img2img.errors import ConfigError
from img2img.train.config import RunConfig, from_dict, load_config

REPO = Path(__file__).resolve().parents[1]
CONFIGS = sorted((REPO / "configs").glob("*/*.yaml"))
SMALL = REPO / "configs" / "esrgan" / "small_psnr_x4.yaml"


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_shipped_configs_load(path: Path) -> None:
    cfg = load_config(path)
    assert isinstance(cfg, RunConfig)
    assert cfg.train.steps > 0 and cfg.train.out_dir.startswith("runs/")


def test_esrgan_configs_follow_the_paper() -> None:
    psnr = load_config(REPO / "configs/esrgan/psnr_x4.yaml")
    assert psnr.spec.model.D is None and psnr.spec.loss.pixel == 1.0 and psnr.spec.loss.gan == 0
    assert psnr.spec.optim.lr_G == 2e-4 and psnr.train.schedule.milestones[0] == 200_000
    gan = load_config(REPO / "configs/esrgan/gan_x4.yaml")
    loss = gan.spec.loss
    assert (loss.pixel, loss.perceptual, loss.gan, loss.gan_kind) == (1e-2, 1.0, 5e-3, "relativistic")
    assert loss.perceptual_layers == {"conv5_4": 1.0} and not loss.allow_random_vgg
    assert gan.train.init_from == {"G": "runs/esrgan_psnr_x4"}
    assert gan.spec.model.D.arch == "VGGStyleDiscriminator" and gan.spec.data.patch_size == 128


@pytest.mark.parametrize(
    "override, message",
    [
        ("train.bach_size=8", "train.bach_size: unknown key; did you mean train.batch_size?"),
        ("train.ema.decya=0.5", "train.ema.decya: unknown key; did you mean train.ema.decay?"),
        ("lossx.pixel=1", "lossx: unknown key; did you mean loss?"),
        ("train.steps=-5", "train.steps: must be > 0, got -5"),
        ("train.steps=abc", "train.steps: expected int, got str 'abc'"),
        ("train.amp=fp32", "train.amp: 'fp32' is not one of auto, off, bf16, fp16"),
        ("train.schedule.kind=cosin", "did you mean cosine?"),
        ("train.ema.decay=1.5", "train.ema.decay: must be <= 1.0"),
        ("loss.pixel=.nan", "loss.pixel: must be a finite number"),
        ("optim.betas=[0.9]", "optim.betas: expected 2 values, got 1"),
        ("data.hr_dirs=5", "data.hr_dirs: expected a list"),
        ("model.G.nbb=2", "model.G.nbb: not an argument of RRDBNet; did you mean model.G.nb?"),
        ("model.G.arch=RRDBNett", "model.G.arch: unknown architecture 'RRDBNett'; did you mean RRDBNet?"),
        ("model.G.nb=two", "model.G.nb: expected int"),
        ("data.scale=2", "model.G.scale (4) and data.scale (2) must match"),
        ("loss.gan=0.1", "loss.gan > 0 needs a discriminator"),
        ("train.progress=1", "train.progress: expected bool"),
    ],
)
def test_bad_values_name_the_key(override: str, message: str) -> None:
    with pytest.raises(ConfigError) as e:
        load_config(SMALL, [override])
    assert message in str(e.value)


def test_vgg_discriminator_must_see_whole_patches() -> None:
    with pytest.raises(ConfigError, match=r"model.D.input_size \(128\) must equal data.patch_size \(64\)"):
        load_config(REPO / "configs/esrgan/gan_x4.yaml", ["data.patch_size=64"])


def test_overrides_are_yaml_values() -> None:
    cfg = load_config(
        SMALL,
        [
            "train.batch_size=8",
            "model.G.nb=2",
            "data.hr_dirs=[a, b]",
            "optim.lr_G=1e-4",  # YAML 1.1 reads this as a string; still a float here
            "train.steps=1e3",
            "train.init_from.G=runs/x",
            "train.resume=null",
        ],
    )
    assert cfg.train.batch_size == 8 and cfg.train.steps == 1000
    assert cfg.spec.model.G["nb"] == 2 and cfg.spec.model.G.kwargs["nf"] == 32
    assert cfg.spec.data.hr_dirs == ["a", "b"]
    assert cfg.spec.optim.lr_G == pytest.approx(1e-4) and isinstance(cfg.spec.optim.lr_G, float)
    assert cfg.train.init_from == {"G": "runs/x"} and cfg.train.resume is None


@pytest.mark.parametrize("bad", ["train.steps", "=3", "train..steps=3"])
def test_malformed_override(bad: str) -> None:
    with pytest.raises(ConfigError, match="must look like section.key=value"):
        apply_overrides({}, [bad])


def test_recipe_key_is_checked(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="recipe: required key is missing"):
        from_dict({"train": {}})
    with pytest.raises(ConfigError, match="did you mean esrgan"):
        from_dict({"recipe": "esrgn"})
    bad = tmp_path / "bad.yaml"
    bad.write_text("recipe: esrgan\ntrain: [1, 2]\n")
    with pytest.raises(ConfigError, match="train: expected a mapping"):
        load_config(bad)
    with pytest.raises(ConfigError, match="data: required key is missing"):
        from_dict({"recipe": "esrgan"})
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(tmp_path / "nope.yaml")


def test_resolved_config_round_trips() -> None:
    cfg = load_config(SMALL, ["model.G.nb=2"])
    again = from_dict(yaml.safe_load(cfg.to_yaml()))
    assert again.to_dict() == cfg.to_dict()
    assert again.spec.optim.betas == (0.9, 0.999)


def test_cli_dry_run_prints_resolved_yaml(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["train", str(SMALL), "train.batch_size=3", "model.G.nb=1", "--dry-run", "--resume", "runs/x"])
    assert code == 0
    out = yaml.safe_load(capsys.readouterr().out)
    assert out["train"]["batch_size"] == 3 and out["model"]["G"]["nb"] == 1
    assert out["train"]["resume"] == "runs/x"
    assert from_dict(out).train.batch_size == 3


def test_cli_reports_config_errors_in_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["train", str(SMALL), "train.bach_size=8", "--dry-run"]) == 2
    err = capsys.readouterr().err
    assert "train.bach_size: unknown key; did you mean train.batch_size?" in err
    assert "Traceback" not in err


def test_bare_off_in_yaml_means_the_option_off(tmp_path) -> None:
    """YAML reads `amp: off` as False; for a choice that has "off" it means just that."""
    from img2img.train.config import load_config

    cfg_path = tmp_path / "c.yaml"
    cfg_path.write_text("recipe: esrgan\ntrain: {amp: off}\ndata: {hr_dirs: [x]}\n")
    assert load_config(cfg_path).train.amp == "off"
    assert load_config(cfg_path, ["train.amp=off"]).train.amp == "off"
    with pytest.raises(ConfigError, match="train.amp"):
        load_config(cfg_path, ["train.amp=true"])
