"""Draw the Translate tab's example: a facade label map in the colours of the CMP facades labels
(a jet-like palette), made from rectangles by this script, so it carries no data set content.

Run: python docs/make_translate_examples.py
"""

from pathlib import Path

import cv2
import numpy as np

OUT = Path(__file__).resolve().parent.parent / "img2img" / "app" / "examples" / "translate"
# RGB colours as they appear in the facades label maps (measured as the most frequent label colours).
BACKGROUND, WALL, WINDOW = (0, 0, 216), (0, 56, 248), (0, 120, 248)
SILL, CORNICE, DOOR, SHOP = (40, 248, 232), (248, 88, 8), (168, 8, 8), (200, 248, 56)


def facade(size: int = 256) -> np.ndarray:
    img = np.zeros((size, size, 3), np.uint8)
    img[:] = BACKGROUND
    img[24:, 16 : size - 16] = WALL
    img[40:48, 16 : size - 16] = CORNICE  # a band under the roof line
    for row in range(3):  # three storeys of four windows with sills
        top = 60 + row * 50
        for col in range(4):
            left = 32 + col * 52
            img[top : top + 30, left : left + 28] = WINDOW
            img[top + 30 : top + 34, left - 2 : left + 30] = SILL
    img[210:, 16 : size - 16] = SHOP  # shop front on the ground floor
    img[212:, 112:144] = DOOR
    return img


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(OUT / "facade_labels.png"), facade()[..., ::-1])


if __name__ == "__main__":
    main()
