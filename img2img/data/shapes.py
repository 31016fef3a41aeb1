"""Captioned shapes with known ground truth, for text-to-image models (StackGAN, Zhang et al. 2017):
one plain circle, square or triangle of a saturated colour on a plain background of another colour,
several captions per image, and a split that keeps some colour-shape-background combinations out of
training so that composition can be measured on combinations never seen together."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageDraw

from img2img.data.base import SeededDataset
from img2img.errors import ConfigError, ImageError
from img2img.io.fileio import atomic_write_text

SHAPES = ("circle", "square", "triangle")
COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (255, 0, 0),
    "green": (0, 255, 0),
    "blue": (0, 0, 255),
    "yellow": (255, 255, 0),
    "white": (255, 255, 255),
    "black": (0, 0, 0),
}
COLOUR_NAMES = tuple(COLOURS)
# Every template names the background colour right before the word "background"; the first is always used.
TEMPLATES = (
    "a {colour} {shape} on a {background} background",
    "a {colour} {shape} against a {background} background",
    "a {background} background with a {colour} {shape}",
    "there is a {colour} {shape} on a plain {background} background",
    "a {shape} that is {colour}, on a {background} background",
    "a single {colour} {shape} in front of a {background} background",
    "a {background} background behind a {colour} {shape}",
    "a {colour} coloured {shape} over a {background} background",
)
FORMAT = "img2img.shapes"
SPLITS = ("train", "test_seen", "test_unseen")
SIZE_RANGE = (0.35, 0.75)  # shape side (bounding box) as a fraction of the image side
SUPERSAMPLE = 4  # anti-aliasing: draw this many times larger, then average down
_STEM = re.compile(r"^\d{5}\.(png|txt)$")

Combination = tuple[str, str, str]  # (shape, colour, background)


def combinations() -> list[Combination]:
    """All 90 (shape, colour, background) triples with colour != background, in a fixed order."""
    return [(s, c, b) for s in SHAPES for c in COLOUR_NAMES for b in COLOUR_NAMES if b != c]


def held_out_combinations(seed: int, n_holdout: int = 9) -> list[Combination]:
    """`n_holdout` triples kept out of training, chosen from the seed alone (not from n or size).

    Triples are drawn in a seeded random order and accepted while every (shape, colour),
    (shape, background) and (colour, background) pair keeps at least two training triples, so each
    held-out triple is new only as a whole: all three of its pairs are still seen in training.
    Seed 0 holds out circle black/red, circle black/yellow, circle red/green, circle red/yellow,
    square black/white, square yellow/red, triangle green/white, triangle white/green and triangle
    yellow/white (shape colour/background colour); `split.json` lists them for any seed.
    """
    if not 0 <= n_holdout <= 30:
        raise ConfigError(f"n_holdout must be in 0..30 (of 90 combinations), got {n_holdout}")
    pairs = ((0, 1), (0, 2), (1, 2))
    seen: dict[tuple, int] = {}
    for combo in combinations():
        for a, b in pairs:
            seen[(a, b, combo[a], combo[b])] = seen.get((a, b, combo[a], combo[b]), 0) + 1
    order = np.random.default_rng([seed, 1]).permutation(len(combinations()))
    held: list[Combination] = []
    for i in order:
        combo = combinations()[i]
        keys = [(a, b, combo[a], combo[b]) for a, b in pairs]
        if len(held) < n_holdout and all(seen[k] > 2 for k in keys):
            held.append(combo)
            for k in keys:
                seen[k] -= 1
    if len(held) < n_holdout:
        raise ConfigError(f"cannot hold out {n_holdout} combinations and still see every pair twice")
    return sorted(held)


def captions_for(shape: str, colour: str, background: str, n: int, rng: np.random.Generator) -> list[str]:
    """The canonical caption first, then n - 1 other phrasings in a random order."""
    others = rng.permutation(np.arange(1, len(TEMPLATES)))[: n - 1]
    return [TEMPLATES[i].format(shape=shape, colour=colour, background=background) for i in [0, *others]]


def draw_shape(
    shape: str, colour: str, background: str, box: tuple[float, float, float, float], size: int, antialias: bool
) -> Image.Image:
    """An RGB image of side `size`; `box` = (x0, y0, x1, y1) in pixels, upright triangle."""
    k = SUPERSAMPLE if antialias else 1
    img = Image.new("RGB", (size * k, size * k), COLOURS[background])
    x0, y0, x1, y1 = (v * k for v in box)
    draw = ImageDraw.Draw(img)
    if shape == "circle":
        draw.ellipse((x0, y0, x1, y1), fill=COLOURS[colour])
    elif shape == "square":
        draw.rectangle((x0, y0, x1, y1), fill=COLOURS[colour])
    else:
        draw.polygon([((x0 + x1) / 2, y0), (x0, y1), (x1, y1)], fill=COLOURS[colour])
    return img.resize((size, size), Image.Resampling.BOX) if k > 1 else img


def _prepare(out: Path, overwrite: bool) -> None:
    out.mkdir(parents=True, exist_ok=True)
    ours = [p for p in out.iterdir() if _STEM.match(p.name) or p.name in ("attributes.json", "split.json")]
    others = [p for p in out.iterdir() if p not in ours]
    if (ours or others) and not overwrite:
        raise ConfigError(f"{out} is not empty; choose a new folder or pass overwrite=True")
    if others:
        raise ConfigError(f"{out} holds files not made by make_shapes (e.g. {others[0].name}); use an empty folder")
    for p in ours:
        p.unlink()


def split_by_combination(
    images: dict[str, dict[str, Any]], held: set[Combination], test_fraction: float, rng: np.random.Generator
) -> dict[str, Any]:
    """Images of held-out triples -> test_unseen; a `test_fraction` of the others -> test_seen; the rest train."""
    unseen = [s for s, a in images.items() if (a["shape"], a["colour"], a["background"]) in held]
    seen = [s for s in images if s not in set(unseen)]
    n_test = int(round(test_fraction * len(seen)))
    test_seen = sorted(seen[j] for j in rng.permutation(len(seen))[:n_test])
    return {
        "held_out": [dict(zip(("shape", "colour", "background"), c, strict=True)) for c in sorted(held)],
        "rule": "held-out (shape, colour, background) triples appear only in test_unseen; each of their "
        "pairs is seen in train with another third attribute",
        "train": sorted(set(seen) - set(test_seen)),
        "test_seen": test_seen,
        "test_unseen": unseen,
    }


def make_shapes(
    out_dir: str | Path,
    n: int,
    seed: int = 0,
    size: int = 64,
    n_captions: int = 5,
    n_holdout: int = 9,
    test_fraction: float = 0.1,
    antialias: bool = True,
    overwrite: bool = False,
) -> dict[str, Any]:
    """Write `n` images `NNNNN.png` with captions `NNNNN.txt` (one per line), `attributes.json` and
    `split.json` into `out_dir`; return the split. Identical files for identical arguments.

    Each image draws a (shape, colour, background) triple uniformly from `combinations()`, a side
    uniform in SIZE_RANGE x size and a position keeping the shape inside. `split.json` lists the
    held-out triples (`held_out_combinations(seed, n_holdout)`), `test_unseen` (every image of a
    held-out triple), `test_seen` (a `test_fraction` of the others) and `train` (the rest).
    """
    if not 1 <= n <= 100_000:
        raise ConfigError(f"n must be in 1..100000 (five-digit file names), got {n}")
    if size < 8:
        raise ConfigError(f"size must be >= 8 pixels, got {size}")
    if not 1 <= n_captions <= len(TEMPLATES):
        raise ConfigError(f"n_captions must be in 1..{len(TEMPLATES)}, got {n_captions}")
    if not 0 <= test_fraction < 1:
        raise ConfigError(f"test_fraction must be in [0, 1), got {test_fraction}")
    out = Path(out_dir)
    _prepare(out, overwrite)
    held = set(held_out_combinations(seed, n_holdout))
    rng = np.random.default_rng([seed, 0])
    combos, images = combinations(), {}
    for i in range(n):
        shape, colour, background = combos[int(rng.integers(len(combos)))]
        side = rng.uniform(*SIZE_RANGE) * size
        x0, y0 = rng.uniform(1, size - 1 - side, size=2)  # one pixel of margin on every side
        box = (float(x0), float(y0), float(x0 + side), float(y0 + side))
        stem = f"{i:05d}"
        draw_shape(shape, colour, background, box, size, antialias).save(out / f"{stem}.png")
        lines = captions_for(shape, colour, background, n_captions, rng)
        (out / f"{stem}.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
        bbox = [round(v, 3) for v in box]
        images[stem] = {"shape": shape, "colour": colour, "background": background, "bbox": bbox}
    split = {"format": FORMAT, "seed": seed, **split_by_combination(images, held, test_fraction, rng)}
    attributes = {"format": FORMAT, "seed": seed, "size": size, "colours": COLOURS, "images": images}
    # Written last and whole: a set cut short has no split.json and is not taken for a finished one.
    atomic_write_text(out / "attributes.json", json.dumps(attributes, indent=1) + "\n")
    atomic_write_text(out / "split.json", json.dumps(split, indent=1) + "\n")
    return split


def _read_json(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise ConfigError(f"{path} not found: make the dataset with img2img.data.shapes.make_shapes first")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ConfigError(f"{path}: cannot read it as JSON ({e})") from e
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise ConfigError(f"{path}: not a shapes dataset file (format {FORMAT!r} expected)")
    return data


def _read_captions(path: Path) -> list[str]:
    try:
        lines = [ln.strip() for ln in path.read_text(encoding="utf-8").splitlines()]
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"{path}: cannot read the captions ({e})") from e
    lines = [ln for ln in lines if ln]
    if not lines:
        raise ConfigError(f"{path}: no captions (one per line expected)")
    return lines


class ShapesCaptionDataset(SeededDataset):
    """Samples of one split of a `make_shapes` folder: `image` (3, size, size) float in [-1, 1] (resized
    with antialiased bilinear when `size` differs from the stored size), `caption` drawn per step from
    the image's captions (reproducible from seed, epoch and index), `caption_index`, the integer labels
    `shape` (index in SHAPES), `colour` and `background` (indices in COLOUR_NAMES), and `name`.

    Missing or malformed metadata raises ConfigError; an unreadable image raises ImageError naming it.
    """

    def __init__(self, root: str | Path, split: str = "train", size: int = 64, seed: int = 0) -> None:
        super().__init__(seed)
        if split not in SPLITS:
            raise ConfigError(f"split must be one of {SPLITS}, not {split!r}")
        if size < 1:
            raise ConfigError(f"size must be positive, got {size}")
        self.root, self.split, self.size = Path(root), split, int(size)
        attributes = _read_json(self.root / "attributes.json")["images"]
        names = _read_json(self.root / "split.json").get(split)
        if not isinstance(names, list):
            raise ConfigError(f"{self.root / 'split.json'}: no list for split {split!r}")
        self.names: list[str] = names
        self.labels: list[tuple[int, int, int]] = []
        self.captions: list[list[str]] = []
        for name in names:
            a = attributes.get(name) if isinstance(attributes, dict) else None
            try:
                label = (SHAPES.index(a["shape"]), COLOUR_NAMES.index(a["colour"]), COLOUR_NAMES.index(a["background"]))
            except (TypeError, KeyError, ValueError):
                where = self.root / "attributes.json"
                raise ConfigError(f"{where}: missing or unknown attributes for {name!r}") from None
            self.labels.append(label)
            self.captions.append(_read_captions(self.root / f"{name}.txt"))

    def __len__(self) -> int:
        return len(self.names)

    def load_image(self, index: int) -> torch.Tensor:
        """(3, size, size) in [-1, 1]."""
        from img2img.io.images import read_image

        path = self.root / f"{self.names[index]}.png"
        try:
            rgb = read_image(path).rgb
        except OSError as e:
            raise ImageError(f"{path}: cannot read the image ({e})") from e
        x = torch.from_numpy(np.ascontiguousarray(rgb.transpose(2, 0, 1), dtype=np.float32))
        x = x.expand(3, -1, -1) if x.shape[0] == 1 else x[:3]
        if x.shape[1:] != (self.size, self.size):
            x = F.interpolate(x[None], size=(self.size, self.size), mode="bilinear", antialias=True)[0]
        return (x * 2 - 1).clamp(-1, 1)

    def __getitem__(self, index: int) -> dict[str, Any]:
        captions = self.captions[index]
        k = int(self.rng(index).integers(len(captions)))
        shape, colour, background = self.labels[index]
        return {
            "image": self.load_image(index),
            "caption": captions[k],
            "caption_index": k,
            "shape": shape,
            "colour": colour,
            "background": background,
            "name": self.names[index],
        }
