"""Procedural captioned shapes: determinism, captions and pixels agreeing with attributes.json, held-out
combinations kept out of training, and the caption dataset's samples and errors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import DataLoader

from img2img.data.shapes import (
    COLOUR_NAMES,
    COLOURS,
    SHAPES,
    ShapesCaptionDataset,
    held_out_combinations,
    make_shapes,
)
from img2img.errors import ConfigError, ImageError

SEED0_HELD_OUT = [
    ("circle", "black", "red"), ("circle", "black", "yellow"), ("circle", "red", "green"),
    ("circle", "red", "yellow"), ("square", "black", "white"), ("square", "yellow", "red"),
    ("triangle", "green", "white"), ("triangle", "white", "green"), ("triangle", "yellow", "white"),
]  # fmt: skip


@pytest.fixture(scope="module")
def shapes(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("shapes")
    make_shapes(root, n=240, seed=0, size=32)
    return root


def load(root: Path, name: str) -> dict:
    return json.loads((root / name).read_text())


def parse_caption(caption: str) -> tuple[str, str, str]:
    """(shape, colour, background) read back from a caption: the background colour is the colour word
    right before "background", the shape's colour is the other colour word, the shape its only noun."""
    words = caption.replace(",", " ").split()
    colours = [w for w in words if w in COLOUR_NAMES]
    shapes = [w for w in words if w in SHAPES]
    background = words[words.index("background") - 1]
    assert len(colours) == 2 and len(shapes) == 1 and background in colours, caption
    return shapes[0], next(c for c in colours if c != background), background


def test_same_seed_same_bytes_other_seed_other_data(tmp_path) -> None:
    a, b, c = tmp_path / "a", tmp_path / "b", tmp_path / "c"
    for folder, seed in ((a, 3), (b, 3), (c, 4)):
        make_shapes(folder, n=12, seed=seed, size=16)
    files = sorted(p.name for p in a.iterdir())
    assert len(files) == 12 * 2 + 2 and files == sorted(p.name for p in b.iterdir())
    assert all((a / f).read_bytes() == (b / f).read_bytes() for f in files)
    assert (a / "attributes.json").read_bytes() != (c / "attributes.json").read_bytes()


def test_captions_describe_the_attributes(shapes: Path) -> None:
    images = load(shapes, "attributes.json")["images"]
    assert len(images) == 240
    phrasings = set()
    for name, a in images.items():
        lines = (shapes / f"{name}.txt").read_text().splitlines()
        truth = (a["shape"], a["colour"], a["background"])
        assert len(lines) == 5 and len(set(lines)) == 5 and a["colour"] != a["background"]
        assert lines[0] == f"a {a['colour']} {a['shape']} on a {a['background']} background"
        assert all(parse_caption(line) == truth for line in lines)
        slots = {a["colour"]: "C", a["background"]: "B", a["shape"]: "S"}
        phrasings.update(" ".join(slots.get(w, w) for w in line.replace(",", " ,").split()) for line in lines)
    assert len(phrasings) == 8  # every phrasing is used


def test_pixels_match_the_attributes(shapes: Path) -> None:
    images = load(shapes, "attributes.json")["images"]
    for name, a in list(images.items())[:60]:
        pix = np.asarray(Image.open(shapes / f"{name}.png"))
        assert pix.shape == (32, 32, 3) and pix.dtype == np.uint8
        x0, y0, x1, y1 = a["bbox"]
        cx, cy = (x0 + x1) / 2, (y0 + 2 * y1) / 3  # inside all three shapes (the triangle's centroid)
        assert tuple(pix[int(cy), int(cx)]) == COLOURS[a["colour"]], name
        assert tuple(pix[0, 0]) == tuple(pix[31, 31]) == COLOURS[a["background"]], name
        assert 0.35 * 32 <= x1 - x0 <= 0.75 * 32 and x0 >= 1 and y1 <= 31


def test_held_out_combinations_never_reach_training(shapes: Path) -> None:
    split, images = load(shapes, "split.json"), load(shapes, "attributes.json")["images"]
    held = {(h["shape"], h["colour"], h["background"]) for h in split["held_out"]}
    assert sorted(held) == SEED0_HELD_OUT == held_out_combinations(0)
    combo = {n: (a["shape"], a["colour"], a["background"]) for n, a in images.items()}
    train, seen, unseen = split["train"], split["test_seen"], split["test_unseen"]
    assert sorted(train + seen + unseen) == sorted(images) and len(set(train + seen + unseen)) == 240
    assert unseen and all(combo[n] in held for n in unseen)
    assert all(combo[n] not in held for n in train + seen) and len(seen) == round(0.1 * (240 - len(unseen)))
    train_combos = {combo[n] for n in train}
    for s, c, b in held:  # every pair of a held-out triple is seen in training with another third attribute
        assert any(t[:2] == (s, c) for t in train_combos) and any(t[1:] == (c, b) for t in train_combos)
        assert any((t[0], t[2]) == (s, b) for t in train_combos)
    assert held_out_combinations(0) != held_out_combinations(1)
    assert len(held_out_combinations(5, n_holdout=20)) == 20
    with pytest.raises(ConfigError, match="n_holdout"):
        held_out_combinations(0, n_holdout=40)


def test_make_shapes_refuses_to_mix_with_other_files(tmp_path) -> None:
    make_shapes(tmp_path / "d", n=6, seed=0, size=16)
    with pytest.raises(ConfigError, match="not empty"):
        make_shapes(tmp_path / "d", n=3, seed=0, size=16)
    make_shapes(tmp_path / "d", n=3, seed=0, size=16, overwrite=True)
    assert sorted(p.name for p in (tmp_path / "d").glob("*.png")) == ["00000.png", "00001.png", "00002.png"]
    (tmp_path / "e").mkdir()
    (tmp_path / "e" / "notes.md").write_text("mine")
    with pytest.raises(ConfigError, match="notes.md"):
        make_shapes(tmp_path / "e", n=3, overwrite=True)


def test_dataset_samples(shapes: Path) -> None:
    ds = ShapesCaptionDataset(shapes, "train", size=16, seed=1)
    images = load(shapes, "attributes.json")["images"]
    assert len(ds) == len(load(shapes, "split.json")["train"])
    s = ds[3]
    a = images[s["name"]]
    assert s["image"].shape == (3, 16, 16) and s["image"].dtype == torch.float32
    assert s["image"].min() >= -1 and s["image"].max() <= 1
    assert (SHAPES[s["shape"]], COLOUR_NAMES[s["colour"]], COLOUR_NAMES[s["background"]]) == (
        a["shape"], a["colour"], a["background"],
    )  # fmt: skip
    assert s["caption"] == (shapes / f"{s['name']}.txt").read_text().splitlines()[s["caption_index"]]
    full = ShapesCaptionDataset(shapes, "train", size=32)[3]["image"]
    corner = torch.tensor(COLOURS[a["background"]], dtype=torch.float32) / 127.5 - 1
    torch.testing.assert_close(full[:, 0, 0], corner)
    assert ds[3]["caption"] == s["caption"]  # same seed, epoch and index
    picks = [ds[i]["caption_index"] for i in range(20)]
    ds.set_epoch(1)
    assert [ds[i]["caption_index"] for i in range(20)] != picks and len(set(picks)) > 1
    batch = next(iter(DataLoader(ds, batch_size=4)))
    assert batch["image"].shape == (4, 3, 16, 16) and len(batch["caption"]) == 4 and batch["shape"].shape == (4,)
    assert len(ShapesCaptionDataset(shapes, "test_unseen")) == len(load(shapes, "split.json")["test_unseen"])


def test_dataset_errors_name_the_file(tmp_path) -> None:
    root = tmp_path / "s"
    make_shapes(root, n=8, seed=0, size=16, test_fraction=0.0)
    name = load(root, "split.json")["train"][0]
    (root / f"{name}.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")
    ds = ShapesCaptionDataset(root, "train")
    with pytest.raises(ImageError, match=f"{name}.png"):
        ds[0]
    (root / f"{name}.txt").write_text("\n\n")
    with pytest.raises(ConfigError, match=f"{name}.txt: no captions"):
        ShapesCaptionDataset(root, "train")
    with pytest.raises(ConfigError, match="split must be one of"):
        ShapesCaptionDataset(root, "val")
    (root / "split.json").unlink()
    with pytest.raises(ConfigError, match="make_shapes"):
        ShapesCaptionDataset(root)
