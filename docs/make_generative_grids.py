"""Make the README's grids of the bundled label-map and text models.

  python docs/make_generative_grids.py [--data ../shared/data]

SPADE facades (validation pairs): label map | pix2pix | SPADE, style of seed 1 | SPADE, style of seed 2 |
SPADE in the style of another facade's photo | ground truth.
StackGAN shapes: per prompt, Stage I (64 px, shown at 128) and Stage II (128 px) for two seeds; the last
prompts are combinations held out of training.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import numpy as np
from make_grids import grid, load_half

REPO = Path(__file__).resolve().parent.parent


def label_pair(path: Path, size: int, palette) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(ids, colour label map, photo) of a facades validation image resized to `size` (labels nearest)."""
    import cv2

    from img2img.io.images import read_image
    from img2img.io.labels import map_colours

    img = read_image(path).rgb
    half = img.shape[1] // 2
    colour = cv2.resize(img[:, half:], (size, size), interpolation=cv2.INTER_NEAREST)
    ids = map_colours(np.rint(colour * 255).astype(np.uint8), palette)
    return ids, colour, load_half(path, False, size)


def main() -> None:
    import cv2

    import img2img
    from img2img.io.images import write_image
    from img2img.io.labels import colourise

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=Path(os.environ.get("IMG2IMG_DATA", REPO.parent / "shared" / "data")))
    args = ap.parse_args()
    weights, size = REPO / "weights", 128
    spade_path = weights / "spade-facades-small.safetensors"
    if spade_path.is_file():
        spade = img2img.load(spade_path, device="cpu")
        pix2pix = img2img.load(weights / "pix2pix-facades-small.safetensors", device="cpu")
        style_photo = load_half(args.data / "facades" / "val" / "50.jpg", False, size)
        rows = []
        for name in ("1", "2", "5", "17"):
            ids, colour, photo = label_pair(args.data / "facades" / "val" / f"{name}.jpg", size, spade.spec.palette)
            shown = colourise(ids, spade.spec.palette).astype(np.float32) / 255
            styled = [spade(ids, seed=s) for s in (1, 2)]
            if spade.encoder is not None:
                styled.append(spade(ids, style=style_photo))
            rows.append([shown, pix2pix(colour), *styled, photo])
        write_image(REPO / "docs" / "spade_facades.png", grid(rows))
    stackgan_path = weights / "stackgan-shapes-small.safetensors"
    if stackgan_path.is_file():
        model = img2img.load(stackgan_path, device="cpu")
        prompts = list(model.card.extra.get("grid_prompts") or model.card.extra.get("prompts") or [])[:6]
        rows = []
        for prompt in prompts:
            row = []
            for seed in (0, 1):
                (one,) = model(prompt, seed=seed, stage=1)
                (two,) = model(prompt, seed=seed, stage=2)
                big = cv2.resize(one.images[0], (two.images[0].shape[1], two.images[0].shape[0]),
                                 interpolation=cv2.INTER_NEAREST)  # fmt: skip
                row += [big, two.images[0]]
            rows.append(row)
            print(prompt)
        write_image(REPO / "docs" / "stackgan_shapes.png", grid(rows))


if __name__ == "__main__":
    main()
