"""Checkpoints: safe plain-container files, atomic saves that survive SIGKILL (also in the middle of a
save), `resume: auto` picking the newest complete checkpoint, identical losses after resume, keep_last,
`init_from`, and `img2img export`."""

from __future__ import annotations

import json
import logging
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from img2img.cli import main
from img2img.errors import ConfigError, WeightsError
from img2img.train import Trainer
from img2img.train.checkpoint import (
    CRASH_ENV,
    MANIFEST,
    find_resume,
    list_checkpoints,
    load_state,
    rng_state,
    set_rng_state,
)
from img2img.train.config import load_config

REPO = Path(__file__).resolve().parents[1]
SMALL = REPO / "configs" / "esrgan" / "small_psnr_x4.yaml"
DATA = Path(os.environ.get("IMG2IMG_DATA", REPO.parent / "shared" / "data"))


pytestmark = pytest.mark.usefixtures("one_thread")  # conftest: tiny convs run faster on one thread


@pytest.fixture
def images(tmp_path: Path) -> Path:
    rng = np.random.default_rng(1)
    folder = tmp_path / "hr"
    folder.mkdir()
    for i in range(6):
        img = np.kron(rng.random((6, 6, 3)), np.ones((8, 8, 1))) * 0.8 + rng.random((48, 48, 3)) * 0.2
        Image.fromarray((img * 255).astype(np.uint8)).save(folder / f"{i}.png")
    return folder


def overrides(run: Path, images: Path, *extra: str) -> list[str]:
    return [
        f"train.out_dir={run}",
        "train.steps=8",
        "train.batch_size=2",
        "train.num_workers=0",
        "train.progress=false",
        "train.log_every=1",
        "train.sample_every=0",
        "train.ckpt_every=2",
        "train.resume=auto",
        "train.schedule.milestones=[5]",
        f"data.hr_dirs=[{images}]",
        "data.patch_size=32",
        "model.G={arch: RRDBNet, nf: 8, nb: 1, gc: 4, scale: 4}",
        "val.hr_dir=null",
        *extra,
    ]


def cli(args: list[str], env: dict[str, str] | None = None) -> subprocess.Popen:
    full_env = {**os.environ, "OMP_NUM_THREADS": "1", **(env or {})}
    return subprocess.Popen(
        [sys.executable, "-m", "img2img", "train", str(SMALL), *args],
        cwd=REPO,
        env=full_env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def losses(run: Path) -> dict[int, float]:
    """Per-step G/l1 from stats.jsonl; a step logged twice (crash, then resume) keeps the later value."""
    out = {}
    for line in (run / "stats.jsonl").read_text().splitlines():
        rec = json.loads(line)
        if "loss" in rec:
            out[rec["step"]] = rec["loss"]["G/l1"]
    return out


def test_state_is_plain_containers_and_keep_last(tmp_path: Path, images: Path) -> None:
    run = tmp_path / "run"
    Trainer(
        load_config(SMALL, overrides(run, images, "train.steps=5", "train.ckpt_every=1", "train.keep_last=2"))
    ).fit()
    assert [p.name for p in list_checkpoints(run)] == ["step_00000005.pt", "step_00000004.pt"]
    manifest = json.loads((run / "checkpoints" / MANIFEST).read_text())
    assert manifest["latest"] == "step_00000005.pt" and manifest["checkpoints"] == [
        "step_00000004.pt",
        "step_00000005.pt",
    ]
    state = torch.load(run / "checkpoints" / "step_00000005.pt", weights_only=True)
    assert state["step"] == 5 and set(state["networks"]) == {"G"} and set(state["ema"]) == {"G"}
    assert {"optimizers", "scalers", "schedule", "recipe", "rng", "config", "data"} <= set(state)
    assert len(state["rng"]) == 1 and not list((run / "checkpoints").glob("*.tmp"))


def test_crash_during_save_then_resume_matches_uninterrupted(tmp_path: Path, images: Path) -> None:
    straight, crashed = tmp_path / "straight", tmp_path / "crashed"
    a = cli(overrides(straight, images))
    # SIGKILL after the 2nd checkpoint's temp file is written, before it is renamed.
    b = cli(overrides(crashed, images), env={CRASH_ENV: "2"})
    assert a.wait(timeout=120) == 0, a.stderr.read()
    assert b.wait(timeout=120) == -signal.SIGKILL
    folder = crashed / "checkpoints"
    assert (folder / "step_00000004.pt.tmp").is_file() and not (folder / "step_00000004.pt").exists()
    assert json.loads((folder / MANIFEST).read_text())["latest"] == "step_00000002.pt"

    c = cli(overrides(crashed, images))
    out, err = c.communicate(timeout=120)
    assert c.returncode == 0, err
    assert "resumed from" in err and "step_00000002.pt at step 2" in err
    assert not (folder / "step_00000004.pt.tmp").exists()
    ref, got = losses(straight), losses(crashed)
    assert sorted(got) == sorted(ref) == list(range(1, 9))
    np.testing.assert_allclose([got[s] for s in range(3, 9)], [ref[s] for s in range(3, 9)], rtol=1e-4)
    final = load_state(folder / "step_00000008.pt")["networks"]["G"]
    ref_final = load_state(straight / "checkpoints" / "step_00000008.pt")["networks"]["G"]
    assert all(torch.allclose(final[k], ref_final[k], atol=1e-5) for k in final)


def test_sigkill_at_a_random_moment_then_resume(tmp_path: Path, images: Path) -> None:
    run = tmp_path / "run"
    args = overrides(run, images, "train.steps=400", "train.ckpt_every=3", "train.num_workers=1")
    p = cli(args)
    deadline = time.time() + 90
    while not list_checkpoints(run) or int(list_checkpoints(run)[0].name[5:13]) < 6:
        assert p.poll() is None and time.time() < deadline, "training stopped before two checkpoints"
        time.sleep(0.05)
    time.sleep(random.uniform(0.0, 0.3))
    p.send_signal(signal.SIGKILL)
    p.wait(timeout=30)
    path, state = find_resume(run)
    assert state["step"] >= 6
    q = cli([*args, "train.steps=" + str(state["step"] + 4)])
    _, err = q.communicate(timeout=120)
    assert q.returncode == 0, err
    assert load_state(list_checkpoints(run)[0])["step"] == state["step"] + 4


def test_unloadable_latest_falls_back(tmp_path: Path, images: Path, caplog: pytest.LogCaptureFixture) -> None:
    run = tmp_path / "run"
    Trainer(load_config(SMALL, overrides(run, images, "train.steps=4"))).fit()
    latest = run / "checkpoints" / "step_00000004.pt"
    latest.write_bytes(latest.read_bytes()[:1000])  # a torn file the manifest still names
    with caplog.at_level(logging.WARNING):
        path, state = find_resume(run)
    assert path.name == "step_00000002.pt" and state["step"] == 2
    assert "step_00000004.pt" in caplog.text and "falling back" in caplog.text
    result = Trainer(load_config(SMALL, overrides(run, images, "train.steps=6"))).fit()
    assert result.step == 6


def test_newer_complete_file_than_manifest_wins(tmp_path: Path, images: Path) -> None:
    run = tmp_path / "run"
    Trainer(load_config(SMALL, overrides(run, images, "train.steps=4"))).fit()
    manifest = run / "checkpoints" / MANIFEST
    manifest.write_text(json.dumps({"latest": "step_00000002.pt", "step": 2}))  # crash before manifest update
    path, _ = find_resume(run)
    assert path.name == "step_00000004.pt"


def test_resume_from_explicit_path(tmp_path: Path, images: Path) -> None:
    run = tmp_path / "run"
    Trainer(load_config(SMALL, overrides(run, images, "train.steps=4"))).fit()
    ckpt = run / "checkpoints" / "step_00000002.pt"
    trainer = Trainer(
        load_config(SMALL, overrides(tmp_path / "other", images, f"train.resume={ckpt}", "train.steps=3"))
    )
    assert trainer.fit().step == 3
    with pytest.raises(ConfigError, match="does not exist"):
        Trainer(load_config(SMALL, overrides(run, images, f"train.resume={tmp_path / 'nope.pt'}"))).fit()


def test_rng_state_round_trip() -> None:
    state = rng_state()
    first = (random.random(), np.random.rand(), torch.rand(1).item())
    set_rng_state(state)
    assert (random.random(), np.random.rand(), torch.rand(1).item()) == first


def test_init_from_run_folder_and_arch_check(tmp_path: Path, images: Path) -> None:
    src = tmp_path / "src"
    Trainer(load_config(SMALL, overrides(src, images, "train.steps=2"))).fit()
    ema = load_state(src / "checkpoints" / "step_00000002.pt")["ema"]["G"]
    # A learning rate this small keeps the weights where init_from put them.
    res = Trainer(
        load_config(
            SMALL,
            overrides(
                tmp_path / "dst",
                images,
                f"train.init_from.G={src}",
                "optim.lr_G=1e-12",
                "train.steps=1",
                "train.resume=null",
            ),
        )
    ).fit()
    out = load_state(res.checkpoint)["networks"]["G"]
    assert all(torch.allclose(out[k], ema[k], atol=1e-6) for k in ema)
    bigger = overrides(tmp_path / "bad", images, f"train.init_from.G={src}", "model.G.nb=2", "train.resume=null")
    with pytest.raises(WeightsError, match="train.init_from.G: .* does not fit RRDBNet"):
        Trainer(load_config(SMALL, bigger)).fit()


def test_init_from_released_pth(tmp_path: Path, images: Path) -> None:
    pth = DATA / "weights_official" / "realesr-animevideov3.pth"
    if not pth.is_file():
        pytest.skip(reason=f"{pth} not present (set IMG2IMG_DATA)")
    from img2img.weights.convert import convert_file

    want, _ = convert_file(pth)
    g = "model.G={arch: SRVGGNetCompact, nf: 64, num_conv: 16, scale: 4, act: prelu}"
    cfg = load_config(
        SMALL, overrides(tmp_path / "run", images, g, f"train.init_from.G={pth}", "optim.lr_G=1e-12", "train.steps=1")
    )
    out = load_state(Trainer(cfg).fit().checkpoint)["networks"]["G"]
    assert all(torch.allclose(out[k], want[k].float(), atol=1e-6) for k in want)
    wrong = overrides(tmp_path / "x", images, f"train.init_from.G={pth}")  # RRDBNet configured
    with pytest.raises(WeightsError, match="holds a SRVGGNetCompact, but this network is a RRDBNet"):
        Trainer(load_config(SMALL, wrong)).fit()


def test_export_command(tmp_path: Path, images: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run = tmp_path / "run"
    val = ["val.hr_dir=" + str(images), "val.max_images=2"]
    Trainer(load_config(SMALL, overrides(run, images, "train.steps=3", *val))).fit()
    out = tmp_path / "weights"
    assert main(["export", str(run), "--name", "mine", "--out", str(out)]) == 0
    assert (
        main(["export", str(run / "checkpoints" / "step_00000003.pt"), "--name", "raw", "--out", str(out), "--no-ema"])
        == 0
    )
    assert "wrote" in capsys.readouterr().out
    card = json.loads((out / "mine.json").read_text())
    assert (card["arch"], card["task"], card["scale"], card["value_range"]) == ("RRDBNet", "upscale", 4, [0.0, 1.0])
    assert card["arch_kwargs"]["nb"] == 1 and card["training"]["steps"] == 3 and card["training"]["ema"]
    assert card["training"]["data"]["hr_dirs"] == [str(images)] and card["training"]["config"]["recipe"] == "esrgan"
    assert card["metrics"]["psnr_y"] > 0 and "PSNR/SSIM on Y" in card["metrics"]["protocol"]
    from safetensors.torch import load_file

    state = load_state(run / "checkpoints" / "step_00000003.pt")
    raw = load_file(str(out / "raw.safetensors"))
    assert all(torch.equal(raw[k], state["networks"]["G"][k]) for k in raw)
    from img2img.infer.model import load

    x = torch.rand(1, 3, 6, 6)
    full = load(out / "mine.safetensors", device="cpu").run_tensor(x)
    assert full.shape == (1, 3, 24, 24)
    assert card["training"]["wall_time_s"] > 0 and card["training"]["it_per_s"] > 0
    # --half: float16 tensors, half the file, nearly the same output
    assert main(["export", str(run), "--name", "small", "--out", str(out), "--half"]) == 0
    half = load_file(str(out / "small.safetensors"))
    assert {v.dtype for v in half.values() if v.is_floating_point()} == {torch.float16}
    assert (out / "small.safetensors").stat().st_size < 0.6 * (out / "mine.safetensors").stat().st_size
    assert json.loads((out / "small.json").read_text())["training"]["stored_dtype"] == "float16"
    assert (load(out / "small.safetensors", device="cpu").run_tensor(x) - full).abs().max() < 2e-3
    assert main(["export", str(tmp_path / "empty"), "--name", "x"]) == 2


def test_training_time_counts_each_step_once_across_resumes(tmp_path) -> None:
    import json

    from img2img.train.log import training_time

    stats = tmp_path / "stats.jsonl"
    rows = [
        {"step": 10, "it_per_s": 2.0},  # 5 s
        {"step": 20, "it_per_s": 1.0},  # logged, then the run was killed ...
        {"step": 20, "val": {"psnr": 1.0}},
        {"step": 20, "it_per_s": 0.5},  # ... and resumed from step 10: 20 s for the same 10 steps
        {"step": 30, "it_per_s": 1.0},  # 10 s
    ]
    stats.write_text("\n".join(json.dumps(r) for r in rows) + '\n{"step": 40, "it_per')
    t = training_time(stats)
    assert t == {"wall_time_s": 35.0, "it_per_s": round(30 / 35, 3), "steps_timed": 30.0}
    assert training_time(stats, up_to_step=10)["wall_time_s"] == 5.0
    assert training_time(tmp_path / "missing.jsonl") is None
