"""`eval translate | synthesize --config RUN.yaml`: a training config's validation data (val.root, layout, the
size it validates at, val.max_images, direction / label side) stands in for the flags not given, and scores
exactly as the same flags typed out; configs of another family or without validation data are refused."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from img2img.cli import main

REPO = Path(__file__).resolve().parent.parent


def config(tmp_path: Path, shipped: str, val_root: Path, **val) -> Path:
    raw = yaml.safe_load((REPO / "configs" / shipped).read_text())
    raw["val"] = {**raw.get("val", {}), "root": str(val_root), "max_images": 2, **val}
    out = tmp_path / "run.yaml"
    out.write_text(yaml.safe_dump(raw))
    return out


def scores(tmp_path: Path, capsys, *argv: str) -> dict:
    out = tmp_path / "report.json"
    out.unlink(missing_ok=True)
    assert main(["eval", *argv, "--device", "cpu", "--json", str(out)]) == 0, capsys.readouterr().err
    return json.loads(out.read_text())


@pytest.mark.parametrize(
    ("task", "shipped", "weights", "side"),
    [
        ("translate", "pix2pix/small_facades.yaml", "pix2pix-facades-small", ["--direction", "BtoA"]),
        ("synthesize", "spade/small_facades_vae.yaml", "spade-facades-small", ["--label-side", "right"]),
    ],
)
def test_eval_takes_the_validation_data_of_a_training_config(
    task, shipped, weights, side, facades_like, tmp_path, capsys
) -> None:
    run = config(tmp_path, shipped, facades_like / "val")
    model = [task, "--weights", weights]
    got = scores(tmp_path, capsys, *model, "--config", str(run))
    want = scores(tmp_path, capsys, *model, "--data", str(facades_like / "val"), "--size", "128",
                  "--max-images", "2", *side, "--layout", "aligned")  # fmt: skip
    assert got["mean"] == want["mean"] and len(got["images"]) == 2 and got["size"] == 128
    assert got["data"] == str(facades_like / "val")
    one = scores(tmp_path, capsys, *model, "--config", str(run), "--max-images", "1")  # a flag given wins
    assert len(one["images"]) == 1


def test_configs_that_cannot_serve_are_refused(facades_like, tmp_path, capsys) -> None:
    for argv, match in (
        (["translate", "--config", str(REPO / "configs" / "esrgan" / "small_psnr_x4.yaml")], "esrgan config"),
        (["synthesize", "--config", str(REPO / "configs" / "pix2pix" / "small_facades.yaml")], "takes a spade"),
        (["translate", "--config", str(config(tmp_path, "pix2pix/small_facades.yaml", facades_like, root=None))],
         "no val.root"),
        (["translate"], "give --data DIR, or --config"),
        (["synthesize"], "give --data DIR, or --config"),
    ):  # fmt: skip
        weights = "pix2pix-facades-small" if argv[0] == "translate" else "spade-facades-small"
        assert main(["eval", argv[0], "--weights", weights, *argv[1:]]) == 2
        assert match in capsys.readouterr().err
