"""Captioned images for text-to-image training, in four layouts:

- `shapes`: a `make_shapes` folder (`img2img data shapes`), one split of it; content = the
  (shape, colour, background) combination;
- `coco`: COCO caption JSON (`annotations`, default `annotations/captions_train2017.json`) and an image
  folder (`images`, default `train2017`); entries whose image file is absent are ignored; content = image;
- `cub`: CUB-style folders, `images/<class>/<image>.jpg` with `text/<class>/<image>.txt` (one caption a
  line); content = class (the released StackGAN's mismatched pairs come from other classes);
- `plain`: `image.jpg` beside `image.txt` (one caption a line), recursively; content = image.

Every sample gives the image in [-1, 1], one caption drawn per step (reproducible from seed, epoch and
index), its token ids, and a mismatched caption drawn from a sample of *different content*, for the
matching-aware discriminator (real image + mismatched text -> fake)."""

from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F

from img2img.data.base import SeededDataset, read_rgb
from img2img.errors import ConfigError
from img2img.text import Tokenizer

Layout = Literal["shapes", "coco", "cub", "plain"]


@dataclass
class CaptionDataConfig:
    root: str = "data/shapes"
    layout: Layout = "shapes"
    split: str = "train"  # shapes: train | test_seen | test_unseen
    images: str | None = None  # coco: image folder under root (default train2017); cub: default images
    annotations: str | None = None  # coco: caption JSON under root (default annotations/captions_train2017.json)
    size: int = 0  # training side; 0 = the model's
    load_size: int = 0  # resize the shorter side to this, then random-crop `size`; 0 = size
    flip: bool = False  # random horizontal flips (mirror-symmetric captions only)
    max_images: int | None = None  # first N images (by name), for quick runs


@dataclass
class Record:
    path: Path
    captions: list[str]
    content: str  # two records with the same content may share captions (never a mismatched pair)
    labels: tuple[int, ...] = ()  # shapes: (shape, colour, background)


def _lines(path: Path) -> list[str]:
    try:
        return [ln.strip() for ln in path.read_text(encoding="utf-8", errors="replace").splitlines() if ln.strip()]
    except OSError as e:
        raise ConfigError(f"{path}: cannot read the captions ({e})") from e


def _shapes(root: Path, split: str) -> list[Record]:
    from img2img.data.shapes import ShapesCaptionDataset

    ds = ShapesCaptionDataset(root, split=split)
    return [
        Record(root / f"{name}.png", caps, "/".join(map(str, label)), label)
        for name, caps, label in zip(ds.names, ds.captions, ds.labels, strict=True)
    ]


def _coco(root: Path, images: str | None, annotations: str | None) -> list[Record]:
    ann = root / (annotations or "annotations/captions_train2017.json")
    folder = root / (images or "train2017")
    if not ann.is_file():
        raise ConfigError(f"data.annotations: COCO caption file {ann} not found")
    if not folder.is_dir():
        raise ConfigError(f"data.images: COCO image folder {folder} not found")
    try:
        d = json.loads(ann.read_text(encoding="utf-8"))
        files = {int(im["id"]): im["file_name"] for im in d["images"]}
        caps: dict[int, list[str]] = defaultdict(list)
        for a in d["annotations"]:
            caps[int(a["image_id"])].append(str(a["caption"]).strip())
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise ConfigError(f"{ann}: not a COCO caption file (images + annotations with image_id, caption): {e}") from e
    present = {p.name for p in folder.iterdir()}
    return [
        Record(folder / files[i], [c for c in caps[i] if c], f"coco:{i}")
        for i in sorted(files)
        if files[i] in present and any(caps[i])
    ]


def _cub(root: Path, images: str | None) -> list[Record]:
    folder, text = root / (images or "images"), root / "text"
    if not folder.is_dir() or not text.is_dir():
        raise ConfigError(f"data.root: a CUB-style layout needs {folder} and {text} (text/<class>/<image>.txt)")
    out = []
    for txt in sorted(text.glob("*/*.txt")):
        cls = txt.parent.name
        img = next((p for p in sorted((folder / cls).glob(txt.stem + ".*")) if p.suffix.lower() != ".txt"), None)
        lines = _lines(txt)
        if img is not None and lines:
            out.append(Record(img, lines, f"class:{cls}"))
    return out


def _plain(root: Path) -> list[Record]:
    from img2img.io.files import image_files

    out = []
    for img in image_files(root, recursive=True):
        txt = img.with_suffix(".txt")
        if txt.is_file():
            lines = _lines(txt)
            if lines:
                out.append(Record(img, lines, f"image:{img.relative_to(root)}"))
    return out


def caption_records(cfg: CaptionDataConfig) -> list[Record]:
    """The (image, captions, content) records of a config, sorted by image path; ConfigError when none."""
    root = Path(cfg.root).expanduser()
    if min(cfg.size, cfg.load_size) < 0 or (cfg.max_images is not None and cfg.max_images < 1):
        raise ConfigError("data.size and data.load_size must be >= 0 and data.max_images >= 1")
    if not root.is_dir():
        hint = " (make it with `img2img data shapes DIR --n N`)" if cfg.layout == "shapes" else ""
        raise ConfigError(f"data.root: {root} is not a folder{hint}")
    if cfg.layout == "shapes":
        records = _shapes(root, cfg.split)
    elif cfg.layout == "coco":
        records = _coco(root, cfg.images, cfg.annotations)
    elif cfg.layout == "cub":
        records = _cub(root, cfg.images)
    else:
        records = _plain(root)
    records.sort(key=lambda r: str(r.path))
    if cfg.max_images:
        records = records[: cfg.max_images]
    if not records:
        raise ConfigError(f"data.root: no captioned images found in {root} for layout {cfg.layout!r}")
    return records


def build_tokenizer(cfg: CaptionDataConfig, min_count: int = 1, max_len: int = 32) -> Tokenizer:
    """The vocabulary of the training captions (every caption of every image)."""
    return Tokenizer.build((c for r in caption_records(cfg) for c in r.captions), min_count=min_count, max_len=max_len)


class CaptionDataset(SeededDataset):
    """Samples: `image` (3, size, size) in [-1, 1]; `ids` (max_len,) right-padded token ids and `length`
    of one caption drawn per step; `wrong_ids` / `wrong_length` of a caption of another content; `content`
    (int index of the content) and, for shapes, `labels` (shape, colour, background). None for an
    unreadable image (the engine skips and counts it)."""

    def __init__(self, cfg: CaptionDataConfig, tokenizer: Tokenizer, size: int, seed: int = 0) -> None:
        super().__init__(seed)
        if size < 8:
            raise ConfigError(f"data.size must be >= 8, got {size}")
        self.cfg, self.tokenizer, self.size = cfg, tokenizer, int(size)
        self.load_size = cfg.load_size or self.size
        if self.load_size < self.size:
            raise ConfigError(f"data.load_size ({self.load_size}) must be >= the training size ({self.size})")
        self.records = caption_records(cfg)
        contents = sorted({r.content for r in self.records})
        if len(contents) < 2:
            raise ConfigError(
                "data: every image has the same content, so no mismatched caption exists for the matching-aware "
                "discriminator; use data with at least two different contents"
            )
        index = {c: i for i, c in enumerate(contents)}
        self.content = np.array([index[r.content] for r in self.records])
        self.contents = contents

    def __len__(self) -> int:
        return len(self.records)

    def _tokens(self, caption: str) -> tuple[torch.Tensor, int]:
        e = self.tokenizer.encode(caption)
        ids = torch.zeros(self.tokenizer.max_len, dtype=torch.int64)
        ids[: len(e.ids)] = torch.tensor(e.ids, dtype=torch.int64)
        return ids, max(1, len(e.ids))

    def load_image(self, index: int, rng: np.random.Generator | None = None) -> torch.Tensor | None:
        rgb = read_rgb(self.records[index].path)
        if rgb is None:
            return None
        x = torch.from_numpy(np.ascontiguousarray(rgb.transpose(2, 0, 1)))[None]
        h, w = x.shape[-2:]
        s = self.load_size / min(h, w)
        th, tw = max(self.load_size, round(h * s)), max(self.load_size, round(w * s))
        if (th, tw) != (h, w):
            x = F.interpolate(x, size=(th, tw), mode="bilinear", antialias=True, align_corners=False)
        if rng is None:
            top, left = (th - self.size) // 2, (tw - self.size) // 2
        else:
            top, left = int(rng.integers(th - self.size + 1)), int(rng.integers(tw - self.size + 1))
        x = x[0, :, top : top + self.size, left : left + self.size]
        if rng is not None and self.cfg.flip and rng.random() < 0.5:
            x = x.flip(-1)
        return (x * 2 - 1).clamp(-1, 1).contiguous()

    def wrong_index(self, index: int, rng: np.random.Generator) -> int:
        """A random sample whose content differs from sample `index`'s."""
        while True:
            j = int(rng.integers(len(self.records)))
            if self.content[j] != self.content[index]:
                return j

    def __getitem__(self, index: int) -> dict[str, Any] | None:
        rng = self.rng(index)
        image = self.load_image(index, rng)
        if image is None:
            return None
        rec = self.records[index]
        ids, length = self._tokens(rec.captions[int(rng.integers(len(rec.captions)))])
        wrong = self.records[self.wrong_index(index, rng)]
        wrong_ids, wrong_length = self._tokens(wrong.captions[int(rng.integers(len(wrong.captions)))])
        out = {
            "image": image, "ids": ids, "length": length, "wrong_ids": wrong_ids, "wrong_length": wrong_length,
            "content": int(self.content[index]),
        }  # fmt: skip
        if rec.labels:
            out["labels"] = torch.tensor(rec.labels, dtype=torch.int64)
        return out

    def describe(self) -> dict[str, Any]:
        c = self.cfg
        return {"layout": c.layout, "root": c.root, "split": c.split, "images": len(self.records),
                "contents": len(self.contents), "size": self.size, "load_size": self.load_size,
                "flip": c.flip}  # fmt: skip
