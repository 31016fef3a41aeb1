"""`img2img eval synthesize`: a label map -> photo model scored against paired photos, on side-by-side
photo|colour-label images and on labels/ + images/ folders, with the same numbers as the Model gives."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from img2img.cli import main
from img2img.eval.metrics import translation_metrics
from img2img.infer.model import load
from img2img.io.labels import colourise


def pairs(spec, n: int, side: int = 32) -> list[tuple[np.ndarray, np.ndarray]]:
    rng = np.random.default_rng(0)
    out = []
    for _ in range(n):
        ids = np.zeros((side, side), np.int64)
        ids[side // 2 :] = 1
        ids[rng.integers(0, side // 2) :, : side // 3] = 2
        photo = rng.random((side, side, 3)).astype(np.float32)
        out.append((ids, photo))
    return out


def test_aligned_pairs_score_like_the_model_and_write_json(tiny_labels_model, tmp_path, capsys) -> None:
    path, _ = tiny_labels_model
    model = load(path, device="cpu")
    data = tmp_path / "val"
    data.mkdir()
    want = []
    for i, (ids, photo) in enumerate(pairs(model.spec, 3)):
        photo8 = (photo * 255).round().astype(np.uint8)
        Image.fromarray(np.concatenate([photo8, colourise(ids, model.spec.palette)], axis=1)).save(data / f"{i}.png")
        want.append(translation_metrics(model(ids, seed=0), photo8.astype(np.float32) / 255))
    report = tmp_path / "r.json"
    assert main(["eval", "synthesize", "--weights", str(path), "--data", str(data), "--json", str(report)]) == 0
    got = json.loads(report.read_text())
    assert got["layout"] == "aligned" and len(got["images"]) == 3
    for row, m in zip(got["images"], want, strict=True):
        assert row["l1"] == pytest.approx(m["l1"], abs=1e-6) and row["psnr"] == pytest.approx(m["psnr"], abs=1e-4)
    assert "mean" in capsys.readouterr().out
    assert main(["eval", "synthesize", "--weights", str(path), "--data", str(data), "--json", str(report)]) == 2
    assert "already exists" in capsys.readouterr().err  # no silent overwrite


def test_folders_with_id_pngs_and_resizing(tiny_labels_model, tmp_path, capsys) -> None:
    path, _ = tiny_labels_model
    model = load(path, device="cpu")
    for sub in ("labels", "images"):
        (tmp_path / "d" / sub).mkdir(parents=True)
    for i, (ids, photo) in enumerate(pairs(model.spec, 2, side=48)):
        Image.fromarray(ids.astype(np.uint8)).save(tmp_path / "d" / "labels" / f"s{i}.png")
        Image.fromarray((photo * 255).round().astype(np.uint8)).save(tmp_path / "d" / "images" / f"s{i}.png")
    args = ["eval", "synthesize", "--weights", str(path), "--data", str(tmp_path / "d"), "--size", "32",
            "--save-images", str(tmp_path / "out")]  # fmt: skip
    assert main(args) == 0
    assert "folders, 2 pairs" in capsys.readouterr().out
    saved = sorted((tmp_path / "out").glob("*.png"))
    assert len(saved) == 2 and Image.open(saved[0]).size == (32, 32)


def test_refuses_other_tasks_and_bad_ids(tiny_labels_model, tmp_path, capsys) -> None:
    path, _ = tiny_labels_model
    assert main(["eval", "synthesize", "--weights", "esrgan-small-x4", "--data", str(tmp_path)]) == 2
    assert "is a upscale model, not label map -> photo; use `img2img eval sr`" in capsys.readouterr().err
    for sub in ("labels", "images"):
        (tmp_path / "d" / sub).mkdir(parents=True)
    Image.fromarray(np.full((16, 16), 7, np.uint8)).save(tmp_path / "d" / "labels" / "a.png")
    Image.fromarray(np.zeros((16, 16, 3), np.uint8)).save(tmp_path / "d" / "images" / "a.png")
    assert main(["eval", "synthesize", "--weights", str(path), "--data", str(tmp_path / "d")]) == 2
    err = capsys.readouterr().err
    assert "a.png" in err and "7" in err
