"""eval shapes: the attribute classifier learns the real procedural images (checked on held-out real
ones), a generator that draws what it is asked scores high and one that ignores the prompt scores near
chance, and the CLI writes its JSON without overwriting."""

from __future__ import annotations

import json
import types
from pathlib import Path

import numpy as np
import pytest
import torch
from stackgan_helpers import make_data, stage1, text_encoder

from img2img.cli import main
from img2img.data.shapes import COLOUR_NAMES, SHAPES, ShapesCaptionDataset, draw_shape, make_shapes
from img2img.eval.shapes import CLASSIFIER_SIZE, accuracies, chance, evaluate_generated, predict, train_classifier


@pytest.fixture(scope="module")
def real(tmp_path_factory) -> types.SimpleNamespace:
    root = tmp_path_factory.mktemp("shapes") / "s"
    make_shapes(root, 400, size=32)

    def load(split):
        d = ShapesCaptionDataset(root, split=split, size=CLASSIFIER_SIZE)
        return torch.stack([d.load_image(i) for i in range(len(d))]), torch.tensor(d.labels)

    x, y = load("train")
    clf = train_classifier(x, y, steps=150, seed=0)
    return types.SimpleNamespace(root=root, clf=clf, unseen=load("test_unseen"))


class Drawer:
    """Draws the asked-for shape (`obey`) or always a red circle on black (ignores the prompt)."""

    def __init__(self, obey: bool) -> None:
        self.obey = obey

    def __call__(self, prompts, n=1, seed=0, stage=None):
        out = []
        for p in prompts:
            w = p.split()
            shape, colour, bg = (w[2], w[1], w[5]) if self.obey else ("circle", "red", "black")
            imgs = [np.asarray(draw_shape(shape, colour, bg, (6, 6, 24, 24), 32, True), np.float32) / 255] * n
            out.append(types.SimpleNamespace(images=imgs, unknown_words=[]))
        return out


def test_classifier_is_accurate_on_held_out_real_images(real) -> None:
    acc = accuracies(predict(real.clf, real.unseen[0]), real.unseen[1])
    assert acc["colour"] > 0.9 and acc["background"] > 0.9 and acc["shape"] > 0.6


def test_obeying_generator_scores_high_ignoring_one_near_chance(real) -> None:
    combos = [(s, c, b) for s in range(3) for c in range(6) for b in range(6) if b != c][::7]
    prompts = [f"a {COLOUR_NAMES[c]} {SHAPES[s]} on a {COLOUR_NAMES[b]} background" for s, c, b in combos]
    labels = torch.tensor(combos)
    good = evaluate_generated(real.clf, Drawer(True), prompts, labels, n=1)
    bad = evaluate_generated(real.clf, Drawer(False), prompts, labels, n=1)
    assert good["colour"] > 0.8 and good["background"] > 0.8
    assert bad["colour"] < 3 * chance()["colour"] and bad["all"] < good["all"]


def test_eval_shapes_cli_writes_json_per_stage(tmp_path: Path, capsys) -> None:
    data = make_data(tmp_path / "d", n=60)
    text_encoder(data, tmp_path / "te")
    s1 = stage1(data, tmp_path / "te", tmp_path / "s1")
    out = tmp_path / "r.json"
    args = ["eval", "shapes", "--weights", str(s1.exported[0]), "--data", str(data), "-n", "1",
            "--classifier-steps", "5", "--json", str(out)]  # fmt: skip
    assert main(args) == 0
    r = json.loads(out.read_text())
    assert set(r["stages"]) == {"1"} and {"seen", "unseen"} <= set(r["stages"]["1"])
    assert r["chance"]["shape"] == pytest.approx(1 / 3) and "real_accuracy" in r["classifier"]
    assert "stage 1 unseen" in capsys.readouterr().out
    assert main(args) == 2  # no silent overwrite
    assert main([*args, "--overwrite"]) == 0
