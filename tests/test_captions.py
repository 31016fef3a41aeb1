"""Captioned image layouts for text -> image training: shapes, COCO caption JSON, CUB-style folders,
plain image + .txt; captions drawn per step; mismatched captions always of other content."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from img2img.data.captions import CaptionDataConfig, CaptionDataset, build_tokenizer, caption_records
from img2img.data.shapes import make_shapes
from img2img.errors import ConfigError
from img2img.io.images import write_image
from img2img.text import split_words


def _img(path: Path, seed: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    write_image(path, np.random.default_rng(seed).random((20, 28, 3)).astype(np.float32))


def test_shapes_layout_gives_tokens_and_other_content_mismatches(tmp_path: Path) -> None:
    make_shapes(tmp_path, 40, size=16)
    cfg = CaptionDataConfig(root=str(tmp_path), layout="shapes")
    tok = build_tokenizer(cfg, max_len=12)
    data = CaptionDataset(cfg, tok, size=16, seed=0)
    s = data[0]
    assert s["image"].shape == (3, 16, 16) and -1 <= float(s["image"].min()) <= float(s["image"].max()) <= 1
    assert s["ids"].shape == (12,) and 1 <= s["length"] <= 12
    for i in range(len(data)):
        item = data[i]
        j = data.wrong_index(i, np.random.default_rng(i))
        assert data.content[j] != data.content[i]
        words = [" ".join(split_words(c)) for c in data.records[i].captions]
        assert tok.decode(item["ids"][: item["length"]].tolist()) in words
    seen = {tuple(data[0]["ids"].tolist())}
    for epoch in range(1, 6):
        data.set_epoch(epoch)
        seen.add(tuple(data[0]["ids"].tolist()))
    assert len(seen) > 1  # a caption drawn per step


def test_cub_layout_pairs_text_folders_with_images(tmp_path: Path) -> None:
    for cls in ("001.Albatross", "002.Auklet"):
        for k in range(2):
            _img(tmp_path / "images" / cls / f"{cls}_{k}.jpg", k)
            (tmp_path / "text" / cls).mkdir(parents=True, exist_ok=True)
            (tmp_path / "text" / cls / f"{cls}_{k}.txt").write_text(f"a bird number {k}\nthis bird is {cls[4:]}\n")
    cfg = CaptionDataConfig(root=str(tmp_path), layout="cub", size=16)
    recs = caption_records(cfg)
    assert len(recs) == 4 and {r.content for r in recs} == {"class:001.Albatross", "class:002.Auklet"}
    data = CaptionDataset(cfg, build_tokenizer(cfg), size=16)
    rng = np.random.default_rng(0)
    assert all(recs[data.wrong_index(0, rng)].content != recs[0].content for _ in range(10))


def test_plain_layout_and_its_errors(tmp_path: Path) -> None:
    _img(tmp_path / "a.png", 0)
    (tmp_path / "a.txt").write_text("a red thing\n")
    _img(tmp_path / "sub" / "b.jpg", 1)
    (tmp_path / "sub" / "b.txt").write_text("a blue thing\n\n")
    _img(tmp_path / "c.png", 2)  # no caption: ignored
    cfg = CaptionDataConfig(root=str(tmp_path), layout="plain", size=16)
    assert [r.captions for r in caption_records(cfg)] == [["a red thing"], ["a blue thing"]]
    tok = build_tokenizer(cfg)
    assert tok.encode("a green thing").unknown == ["green"]
    (tmp_path / "sub" / "b.txt").unlink()
    with pytest.raises(ConfigError, match="same content"):
        CaptionDataset(cfg, tok, size=16)
    with pytest.raises(ConfigError, match="not a folder"):
        caption_records(CaptionDataConfig(root=str(tmp_path / "missing"), layout="plain"))


def test_coco_layout_reads_the_caption_json(data_root: Path) -> None:
    root = data_root / "coco_mini_captions"
    if not root.is_dir():
        pytest.skip(reason=f"coco_mini_captions not found under {data_root} (IMG2IMG_DATA)")
    cfg = CaptionDataConfig(root=str(root), layout="coco", size=32, load_size=38, flip=True)
    recs = caption_records(cfg)
    assert len(recs) == 80 and all(len(r.captions) >= 5 for r in recs)
    data = CaptionDataset(cfg, build_tokenizer(cfg), size=32)
    assert data[0]["image"].shape == (3, 32, 32)
    val = CaptionDataConfig(root=str(root), layout="coco", images="val2017",
                            annotations="annotations/captions_val2017_full.json")  # fmt: skip
    assert len(caption_records(val)) == 159  # only the entries whose image is present
