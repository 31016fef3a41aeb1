"""`img2img synthesize` and `img2img generate` on tiny real models: label maps matched with instance
maps by stem, colour label maps through the palette, bad ids failing their file only, prompt lists with
{index}/{prompt}/{sample} names, seeds reproducible, no silent overwrite, exit codes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from img2img.cli import main
from img2img.io.images import read_image
from img2img.io.labels import colourise


def write_ids(path: Path, ids: np.ndarray) -> None:
    Image.fromarray(ids.astype(np.uint8)).save(path)


def test_synthesize_folders_colour_maps_and_bad_ids(tmp_path: Path, tiny_labels_model, tiny_labels, capsys) -> None:
    weights, _ = tiny_labels_model
    labels = tmp_path / "labels"
    labels.mkdir()
    ids = np.zeros((12, 20), np.int64)
    ids[:, 10:] = 2
    write_ids(labels / "a.png", ids)
    Image.fromarray(colourise(ids, tiny_labels.spec.palette)).save(labels / "b.png")  # the same map in colour
    bad = ids.copy()
    bad[0, 0] = 9
    write_ids(labels / "c.png", bad)
    out = tmp_path / "out"
    assert main(["synthesize", str(labels), str(out), "--weights", str(weights), "--quiet"]) == 1
    err = capsys.readouterr().err
    assert "1 file(s) failed" in err and "c.png" in err and "label id 9" in err
    a, b = read_image(out / "a.png").rgb, read_image(out / "b.png").rgb
    assert a.shape == (12, 20, 3) and np.array_equal(a, b)  # colour map read through the palette = ids
    assert main(["synthesize", str(labels / "a.png"), str(out), "--weights", str(weights)]) == 1  # exists
    assert "--overwrite" in capsys.readouterr().err


def test_synthesize_matches_instances_by_stem(tmp_path: Path, tiny_labels) -> None:
    from img2img.archs import build_arch
    from img2img.io.labels import LabelSpec
    from img2img.weights.format import save_weights

    spec = LabelSpec(label_nc=3, instance=True)
    kw = {**tiny_labels.g_kw, "in_ch": spec.semantic_nc}
    card = tiny_labels.card()
    card.inputs, card.arch_kwargs = spec.to_dict(), kw
    weights = save_weights(tmp_path / "inst.safetensors", build_arch("ResnetGenerator", **kw), card)
    labels, inst = tmp_path / "labels", tmp_path / "inst"
    labels.mkdir(), inst.mkdir()
    write_ids(labels / "x_gtFine_labelIds.png", np.ones((8, 8)))
    Image.fromarray(np.full((8, 8), 1000, np.uint16)).save(inst / "x_gtFine_instanceIds.png")
    write_ids(labels / "y_gtFine_labelIds.png", np.ones((8, 8)))  # no instance map: fails alone
    args = ["synthesize", str(labels), str(tmp_path / "o"), "--weights", str(weights), "--instances", str(inst)]
    assert main([*args, "--quiet"]) == 1
    assert (tmp_path / "o" / "x_gtFine_labelIds.png").is_file() and not (
        tmp_path / "o" / "y_gtFine_labelIds.png"
    ).exists()


def test_generate_names_seeds_and_unknown_words(tmp_path: Path, tiny_text_model, capsys) -> None:
    prompts = tmp_path / "p.txt"
    prompts.write_text("# shapes\na red circle on a blue background\na green square on a purple background\n")
    out = tmp_path / "out"
    assert main(["generate", str(out), "--weights", str(tiny_text_model), "--prompts", str(prompts), "-n", "2"]) == 0
    names = sorted(p.name for p in out.iterdir())
    assert names == [
        "000_a-red-circle-on-a-blue-background_0.png", "000_a-red-circle-on-a-blue-background_1.png",
        "001_a-green-square-on-a-purple-background_0.png", "001_a-green-square-on-a-purple-background_1.png",
    ]  # fmt: skip
    captured = capsys.readouterr()
    assert "purple" in captured.err and "4 done" in captured.out
    first = read_image(out / names[0]).rgb
    assert first.shape == (32, 32, 3)
    again = tmp_path / "again"
    one = ["generate", str(again), "--weights", str(tiny_text_model), "--text", "a red circle on a blue background"]
    assert main([*one, "--name", "{prompt}_{seed}", "--stage", "2"]) == 0
    assert np.array_equal(read_image(again / "a-red-circle-on-a-blue-background_0.png").rgb, first)
    assert main([*one, "--name", "{prompt}_{seed}"]) == 1  # exists: never overwritten silently
    assert main([*one, "--stage", "1", "--name", "s1", "--overwrite"]) == 0
    assert read_image(again / "s1.png").rgb.shape == (16, 16, 3)
    assert main(["generate", str(again), "--weights", str(tiny_text_model), "--prompts", str(tmp_path / "none")]) == 2
