"""Colour palettes of label-map datasets (class id -> RGB, with class names), and `derive_palette`, which
recovers the colours of a colour-coded label set from the files themselves.

CMP facades (Tyleček & Šára 2013, as shipped with pix2pix): the label half of every pair paints 12
classes in a jet-like colour ramp from dark blue to dark red. The colours below were derived from the
400 training label maps with `derive_palette` (JPEG noise removed by the median of each colour's
pixels). The class order is the CMP database's (1 background ... 12 shop, here ids 0..11), matched to
the ramp in order, and it checks out on the data: ids 3 (door) and 11 (shop) sit lowest in the images
(mean row 208 and 184 of 256), id 1 (facade) covers the most area (36 %), id 2 (window) is the next
wall-bound class (13 %), id 0 (background: sky, neighbours) borders the top and sides.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from img2img.errors import ConfigError
from img2img.io.labels import Palette

FACADES_CLASSES = ["background", "facade", "window", "door", "cornice", "sill", "balcony", "blind", "deco",
                   "molding", "pillar", "shop"]  # fmt: skip
FACADES_PALETTE: Palette = [
    (0, 0, 222),  # background
    (0, 48, 255),  # facade
    (2, 127, 255),  # window
    (2, 207, 255),  # door
    (35, 253, 226),  # cornice
    (113, 253, 148),  # sill
    (192, 255, 63),  # balcony
    (252, 240, 8),  # blind
    (255, 159, 3),  # deco
    (253, 80, 1),  # molding
    (247, 3, 4),  # pillar
    (174, 0, 1),  # shop
]

# name -> (palette, class names); a config's `data.palette` may name one of these.
PALETTES: dict[str, tuple[Palette, list[str]]] = {"facades": (FACADES_PALETTE, FACADES_CLASSES)}


def named_palette(name: str) -> tuple[Palette, list[str]]:
    if name not in PALETTES:
        raise ConfigError(f"data.palette: unknown palette {name!r}; known: {', '.join(PALETTES)} (or a list of RGB)")
    palette, classes = PALETTES[name]
    return list(palette), list(classes)


def derive_palette(images: Iterable[np.ndarray], n_colours: int, *, bin_size: int = 16,
                   min_distance: float = 48.0) -> Palette:  # fmt: skip
    """The `n_colours` colours of colour-coded label maps (HxWx3 uint8), despite JPEG noise.

    Colours are counted in `bin_size` bins; the most frequent bins at least `min_distance` (RGB) apart
    are the seeds, and each colour is the per-channel median of the pixels nearest to its seed (within
    `min_distance` / 2), so edge blur and ringing do not pull it. Returned in order of frequency."""
    counts: dict[tuple[int, int, int], int] = {}
    sample = []
    for img in images:
        px = np.asarray(img, dtype=np.uint8).reshape(-1, 3)
        bins, n = np.unique(px // bin_size, axis=0, return_counts=True)
        for b, k in zip(map(tuple, bins.tolist()), n.tolist(), strict=True):
            counts[b] = counts.get(b, 0) + k
        sample.append(px[:: max(1, len(px) // 4096)])
    if not counts:
        raise ConfigError("derive_palette: no label images")
    seeds: list[np.ndarray] = []
    for b, _ in sorted(counts.items(), key=lambda kv: -kv[1]):
        c = (np.asarray(b, dtype=np.float64) + 0.5) * bin_size
        if all(np.linalg.norm(c - s) >= min_distance for s in seeds):
            seeds.append(c)
        if len(seeds) == n_colours:
            break
    if len(seeds) < n_colours:
        raise ConfigError(f"derive_palette: found only {len(seeds)} distinct colours, not {n_colours}")
    pixels = np.concatenate(sample).astype(np.float64)
    centres = np.stack(seeds)
    d = ((pixels[:, None] - centres[None]) ** 2).sum(axis=2)
    nearest, dist = d.argmin(axis=1), np.sqrt(d.min(axis=1))
    out = []
    for k, seed in enumerate(centres):
        mine = pixels[(nearest == k) & (dist < min_distance / 2)]
        out.append(tuple(int(v) for v in np.rint(np.median(mine, axis=0) if len(mine) else seed)))
    return out
