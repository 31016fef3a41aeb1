"""Nothing is lost by accident: training afresh into a folder holding an earlier run is refused (naming
train.resume=auto, a new train.out_dir and train.overwrite), and export, interpolate --out, eval --json and
convert refuse to replace existing files unless given --overwrite; writes are atomic."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from img2img.cli import main
from img2img.errors import ConfigError, OutputExistsError
from img2img.io.fileio import atomic_target, atomic_write_text, refuse_existing

REPO = Path(__file__).resolve().parents[1]
SMALL_CFG = REPO / "configs" / "esrgan" / "small_psnr_x4.yaml"
SMALL = REPO / "weights" / "esrgan-small-x4.safetensors"


pytestmark = pytest.mark.usefixtures("one_thread")  # conftest: tiny convs run faster on one thread


def _images(folder: Path, n: int = 4) -> Path:
    rng = np.random.default_rng(0)
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        Image.fromarray((rng.random((40, 40, 3)) * 255).astype(np.uint8)).save(folder / f"{i}.png")
    return folder


def _cfg(tmp_path: Path, *extra: str):
    from img2img.train.config import load_config

    return load_config(
        SMALL_CFG,
        [
            f"train.out_dir={tmp_path / 'run'}", "train.steps=2", "train.batch_size=2", "train.num_workers=0",
            "train.progress=false", "train.log_every=1", "train.sample_every=0", "train.ckpt_every=1",
            "train.resume=null", f"data.hr_dirs=[{_images(tmp_path / 'hr')}]", "data.patch_size=32",
            "data.repeat=1", "model.G={arch: RRDBNet, nf: 8, nb: 1, gc: 4, scale: 4}", "val.hr_dir=null", *extra,
        ],
    )  # fmt: skip


def _snapshot(run: Path) -> dict[str, bytes]:
    return {str(p.relative_to(run)): p.read_bytes() for p in sorted(run.rglob("*")) if p.is_file()}


def test_training_afresh_into_an_earlier_run_is_refused(tmp_path: Path) -> None:
    from img2img.train import Trainer

    run = tmp_path / "run"
    Trainer(_cfg(tmp_path)).fit()
    before = _snapshot(run)
    assert any(k.startswith("checkpoints/") for k in before) and "stats.jsonl" in before
    with pytest.raises(ConfigError) as e:
        Trainer(_cfg(tmp_path, "train.steps=3"))
    msg = str(e.value)
    assert "train.resume=auto" in msg and "train.out_dir" in msg and "train.overwrite=true" in msg
    assert _snapshot(run) == before  # nothing deleted, replaced or appended
    # Resuming is allowed and continues the same run.
    Trainer(_cfg(tmp_path, "train.steps=3", "train.resume=auto")).fit()
    steps = [json.loads(line)["step"] for line in (run / "stats.jsonl").read_text().splitlines() if "step" in line]
    assert steps == sorted(steps) and max(steps) == 3
    # Asked to overwrite: the earlier run is replaced, and its stats start again.
    Trainer(_cfg(tmp_path, "train.steps=2", "train.overwrite=true")).fit()
    steps = [json.loads(line)["step"] for line in (run / "stats.jsonl").read_text().splitlines() if "step" in line]
    assert max(steps) == 2 and steps == sorted(steps)
    assert sorted(p.name for p in (run / "checkpoints").glob("*.pt")) == ["step_00000001.pt", "step_00000002.pt"]


def test_the_train_command_refuses_and_overwrites_on_request(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    args = [f"train.out_dir={tmp_path / 'run'}", "train.steps=1", "train.batch_size=2", "train.num_workers=0",
            "train.progress=false", "train.sample_every=0", "train.resume=null",
            f"data.hr_dirs=[{_images(tmp_path / 'hr')}]", "data.patch_size=32",
            "model.G={arch: RRDBNet, nf: 8, nb: 1, gc: 4, scale: 4}", "val.hr_dir=null"]  # fmt: skip
    assert main(["train", str(SMALL_CFG), *args]) == 0
    capsys.readouterr()
    assert main(["train", str(SMALL_CFG), *args]) == 2
    assert "holds an earlier run" in capsys.readouterr().err
    assert main(["train", str(SMALL_CFG), *args, "--overwrite"]) == 0


def test_a_folder_without_a_run_is_fine(tmp_path: Path) -> None:
    from img2img.train.checkpoint import earlier_run

    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "notes.txt").write_text("mine")
    assert earlier_run(tmp_path / "run") == []


def _tiny_run(tmp_path: Path) -> Path:
    from img2img.train import Trainer

    Trainer(_cfg(tmp_path)).fit()
    return tmp_path / "run"


def test_export_refuses_to_overwrite(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    run = _tiny_run(tmp_path)
    out = tmp_path / "w"
    assert main(["export", str(run), "--name", "m", "--out", str(out)]) == 0
    stamp = (out / "m.safetensors").read_bytes()
    capsys.readouterr()
    assert main(["export", str(run), "--name", "m", "--out", str(out), "--no-ema"]) == 2
    err = capsys.readouterr().err
    assert "already exists" in err and "--overwrite" in err
    assert (out / "m.safetensors").read_bytes() == stamp
    assert main(["export", str(run), "--name", "m", "--out", str(out), "--no-ema", "--overwrite"]) == 0
    assert (out / "m.safetensors").read_bytes() != stamp


def test_interpolate_refuses_to_overwrite(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "c.safetensors"
    out.write_bytes(b"precious")
    assert main(["interpolate", str(SMALL), str(SMALL), "--alpha", "0.5", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "already exists" in err and "--overwrite" in err and out.read_bytes() == b"precious"
    assert main(["interpolate", str(SMALL), str(SMALL), "--alpha", "0.5", "--out", str(out), "--overwrite"]) == 0
    assert out.read_bytes() != b"precious" and out.with_suffix(".json").is_file()
    card_only = tmp_path / "d.safetensors"
    card_only.with_suffix(".json").write_text("{}")  # the card beside it counts too
    assert main(["interpolate", str(SMALL), str(SMALL), "--alpha", "0.5", "--out", str(card_only)]) == 2
    assert not card_only.exists()


def test_eval_json_refuses_to_overwrite(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    data = _images(tmp_path / "d", n=1)
    report = tmp_path / "r.json"
    report.write_text('{"keep": true}')
    assert main(["eval", "sr", "--weights", "bicubic", "--data", str(data), "--json", str(report)]) == 2
    err = capsys.readouterr().err
    assert "already exists" in err and "--overwrite" in err and json.loads(report.read_text()) == {"keep": True}
    assert main(["eval", "sr", "--weights", "bicubic", "--data", str(data), "--json", str(report), "--overwrite"]) == 0
    assert "images" in json.loads(report.read_text())


def test_eval_dist_json_refuses_to_overwrite(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    report = tmp_path / "r.json"
    report.write_text("{}")
    a = _images(tmp_path / "a", n=2)
    assert main(["eval", "dist", "--real", str(a), "--fake", str(a), "--json", str(report)]) == 2
    assert "already exists" in capsys.readouterr().err and report.read_text() == "{}"


def test_convert_uses_the_same_flag(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from safetensors.torch import load_file, save_file

    src = tmp_path / "bare.safetensors"
    save_file(load_file(str(SMALL)), str(src))
    out = tmp_path / "out.safetensors"
    shutil.copy(SMALL, out)
    before = out.read_bytes()
    assert main(["convert", str(src), str(out)]) == 2
    assert "pass --overwrite" in capsys.readouterr().err and out.read_bytes() == before
    assert main(["convert", str(src), str(out), "--overwrite"]) == 0


def test_the_helper(tmp_path: Path) -> None:
    target = tmp_path / "a" / "b.txt"
    refuse_existing([target], overwrite=False)
    atomic_write_text(target, "one")
    with pytest.raises(OutputExistsError, match="already exists; choose another name or pass --overwrite"):
        refuse_existing([target], overwrite=False)
    refuse_existing([target], overwrite=True)
    with pytest.raises(OutputExistsError, match="is a folder"):
        refuse_existing([tmp_path / "a"], overwrite=True)
    with pytest.raises(RuntimeError), atomic_target(target) as tmp:  # an interrupted write: old file kept
        tmp.write_text("half")
        raise RuntimeError
    assert target.read_text() == "one" and os.listdir(target.parent) == ["b.txt"]
