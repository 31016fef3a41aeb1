"""`img2img finetune` for every family from a card: pix2pix and CycleGAN demos fine-tune on a user's
folder with one command (architecture, direction and both CycleGAN generators from the weights), the
data layout is checked against the task, and the first step starts from the given weights."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from img2img.cli import main
from img2img.errors import ConfigError
from img2img.io.images import write_image
from img2img.train.checkpoint import list_checkpoints, load_state
from img2img.weights.catalog import bundled_dir
from img2img.weights.format import load_weights

FAST = ["train.steps=1", "train.num_workers=0", "train.progress=false", "train.device=cpu", "train.log_every=1",
        "train.sample_every=0", "train.batch_size=1"]  # fmt: skip


def images(folder: Path, n: int, w: int, h: int, seed: int = 0) -> Path:
    folder.mkdir(parents=True)
    rng = np.random.default_rng(seed)
    for i in range(n):
        write_image(folder / f"{i}.png", rng.random((h, w, 3)).astype(np.float32))
    return folder


def dry_run(capsys, *args: str) -> dict:
    assert main(["finetune", *args, "--dry-run"]) == 0
    return yaml.safe_load(capsys.readouterr().out)


def test_pix2pix_finetunes_from_its_card_on_aligned_or_folder_pairs(tmp_path: Path, capsys) -> None:
    aligned = images(tmp_path / "pairs", 2, 256, 128)
    cfg = dry_run(capsys, "--weights", "pix2pix-facades-small", "--data", str(aligned))
    assert cfg["recipe"] == "pix2pix" and cfg["model"]["G"]["ngf"] == 16 and cfg["model"]["G"]["num_downs"] == 7
    assert cfg["data"]["layout"] == "aligned" and cfg["data"]["root"] == str(aligned)
    assert cfg["data"]["direction"] == "BtoA"  # as the weights were trained: labels (B) -> photo (A)
    assert cfg["train"]["init_from"] == {"G": "pix2pix-facades-small"} and cfg["val"]["root"] is None
    folders = tmp_path / "ab"
    images(folders / "A", 2, 128, 128), images(folders / "B", 2, 128, 128, 1)
    cfg = dry_run(capsys, "--weights", "pix2pix-facades-small", "--data", str(folders))
    assert cfg["data"]["layout"] == "folders" and cfg["data"]["dir_A"] == str(folders / "A")
    run = tmp_path / "run"
    args = ["finetune", "--weights", "pix2pix-facades-small", "--data", str(aligned), "--out-dir", str(run), *FAST]
    assert main([*args, "data.load_size=143", "data.crop_size=128"]) == 0
    state = load_state(list_checkpoints(run)[-1])
    start, _ = load_weights(bundled_dir() / "pix2pix-facades-small.safetensors")
    g = state["networks"]["G"]
    moved = max(float((g[k].float() - v.float()).abs().max()) for k, v in start.items() if k.endswith(".weight"))
    assert 0 < moved < 0.05  # one small Adam step away from the bundled weights, not a fresh init


def test_cyclegan_finetunes_both_generators_of_the_pair(tmp_path: Path, capsys) -> None:
    data = tmp_path / "domains"
    images(data / "trainA", 2, 96, 96), images(data / "trainB", 2, 96, 96, 1)
    for given in ("cyclegan-horse2zebra-small_G_AB", "cyclegan-horse2zebra-small_G_BA"):
        cfg = dry_run(capsys, "--weights", given, "--data", str(data))
        init = cfg["train"]["init_from"]
        assert cfg["recipe"] == "cyclegan" and cfg["data"]["dir_A"] == str(data / "trainA")
        assert Path(init["G_AB"]).stem.endswith("_G_AB") and Path(init["G_BA"]).stem.endswith("_G_BA")
    run = tmp_path / "run"
    args = ["finetune", "--weights", "cyclegan-horse2zebra-small_G_AB", "--data", str(data), "--out-dir", str(run)]
    assert main([*args, *FAST, "data.load_size=100", "data.crop_size=96"]) == 0
    state = load_state(list_checkpoints(run)[-1])
    start, _ = load_weights(bundled_dir() / "cyclegan-horse2zebra-small_G_BA.safetensors")
    k = next(iter(start))
    assert torch.allclose(state["networks"]["G_BA"][k].float(), start[k].float(), atol=0.05)


@pytest.mark.parametrize(
    "weights, layout, message",
    [
        ("pix2pix-facades-small", "unpaired", "trainA/ \\+ trainB/ is the unpaired layout"),
        ("cyclegan-horse2zebra-small_G_AB", "empty", "trainA/ \\+ trainB/ or A/ \\+ B/"),
        ("esrgan-small-x4", "empty", "no images"),
    ],
)
def test_a_data_layout_that_does_not_fit_the_task_is_refused(tmp_path: Path, weights, layout, message) -> None:
    from img2img.commands.finetune import add_arguments, build_config

    data = tmp_path / "d"
    data.mkdir()
    if layout == "unpaired":
        images(data / "trainA", 1, 32, 32), images(data / "trainB", 1, 32, 32)
    import argparse

    p = argparse.ArgumentParser()
    add_arguments(p)
    with pytest.raises(ConfigError, match=message):
        build_config(p.parse_args(["--weights", weights, "--data", str(data)]))


def test_a_lone_cyclegan_generator_needs_its_partner(tmp_path: Path) -> None:
    import shutil

    lone = tmp_path / "mine_G_AB.safetensors"
    shutil.copy(bundled_dir() / "cyclegan-horse2zebra-small_G_AB.safetensors", lone)
    data = tmp_path / "d"
    images(data / "trainA", 1, 32, 32), images(data / "trainB", 1, 32, 32)
    assert main(["finetune", "--weights", str(lone), "--data", str(data), "--dry-run"]) == 2


def test_text_models_are_refused_with_what_finetune_covers(tmp_path: Path, capsys) -> None:
    """StackGAN bundles train through `img2img train` and the stackgan configs; finetune says so."""
    data = images(tmp_path / "captioned", 2, 64, 64)
    assert main(["finetune", "--weights", "stackgan-shapes-small", "--data", str(data), "--dry-run"]) == 2
    err = capsys.readouterr().err
    assert "covers esrgan, pix2pix, cyclegan and spade" in err and "img2img train" in err
