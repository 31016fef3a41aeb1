"""Make the README's sample grids from held-out images with the bundled translation weights.

  python docs/make_grids.py [--data ../shared/data]

pix2pix facades (validation pairs): label map | pix2pix | L1-only baseline (--baseline) | ground truth.
CycleGAN horse2zebra (test split): horse | -> zebra | -> back, and zebra | -> horse | -> back.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent


def load_half(path: Path, right: bool, size: int) -> np.ndarray:
    import cv2

    from img2img.io.images import read_image

    img = read_image(path).rgb
    half = img.shape[1] // 2
    img = img[:, half:] if right else img[:, :half]
    return cv2.resize(img, (size, size), interpolation=cv2.INTER_AREA)


def load_photo(path: Path, size: int) -> np.ndarray:
    import cv2

    from img2img.io.images import read_image

    img = read_image(path).rgb
    img = np.repeat(img, 3, axis=2) if img.shape[2] == 1 else img
    return cv2.resize(img, (size, size), interpolation=cv2.INTER_AREA)


def grid(rows: list[list[np.ndarray]], pad: int = 4) -> np.ndarray:
    h, w = rows[0][0].shape[:2]
    cols = max(len(r) for r in rows)
    out = np.ones((len(rows) * (h + pad) + pad, cols * (w + pad) + pad, 3), np.float32)
    for i, r in enumerate(rows):
        for j, im in enumerate(r):
            out[pad + i * (h + pad) : pad + i * (h + pad) + h, pad + j * (w + pad) : pad + j * (w + pad) + w] = im
    return out


def main() -> None:
    import img2img
    from img2img.io.images import write_image

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=Path(os.environ.get("IMG2IMG_DATA", REPO.parent / "shared" / "data")))
    ap.add_argument("--baseline", type=Path, help="L1-only pix2pix weights to show beside the GAN model")
    args = ap.parse_args()
    weights = REPO / "weights"
    size = 128
    if (weights / "pix2pix-facades-small.safetensors").is_file():
        g = img2img.load(weights / "pix2pix-facades-small.safetensors", device="cpu")
        b = img2img.load(args.baseline, device="cpu") if args.baseline else None
        rows = []
        for name in ("1", "2", "5", "17"):
            path = args.data / "facades" / "val" / f"{name}.jpg"
            label, photo = load_half(path, True, size), load_half(path, False, size)
            rows.append([label, g(label), *([b(label)] if b else []), photo])
        write_image(REPO / "docs" / "pix2pix_facades.png", grid(rows))
    ab = weights / "cyclegan-horse2zebra-small_G_AB.safetensors"
    ba = weights / "cyclegan-horse2zebra-small_G_BA.safetensors"
    if ab.is_file() and ba.is_file():
        g_ab, g_ba = img2img.load(ab, device="cpu"), img2img.load(ba, device="cpu")
        rows = []
        for folder, fwd, back in (("testA", g_ab, g_ba), ("testB", g_ba, g_ab)):
            for path in sorted((args.data / "horse2zebra" / folder).glob("*.jpg"))[:3]:
                x = load_photo(path, size)
                y = fwd(x)
                rows.append([x, y, back(y)])
        write_image(REPO / "docs" / "cyclegan_horse2zebra.png", grid(rows))


if __name__ == "__main__":
    main()
