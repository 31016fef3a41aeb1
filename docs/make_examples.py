"""Regenerate the example images from scikit-image's bundled public-domain/CC0 samples.

Run: python docs/make_examples.py  (needs scikit-image, installed with the [dev] extra)
"""

from pathlib import Path

import cv2
import numpy as np
import skimage.data as sk

HERE = Path(__file__).resolve().parent.parent / "examples"


def shrink(img: np.ndarray, width: int) -> np.ndarray:
    h, w = img.shape[:2]
    return cv2.resize(img, (width, round(h * width / w)), interpolation=cv2.INTER_AREA)


def main() -> None:
    # Colour photos, downscaled so the x4 demo runs in seconds on a laptop CPU.
    cv2.imwrite(str(HERE / "astronaut.png"), shrink(sk.astronaut(), 128)[..., ::-1])
    cv2.imwrite(str(HERE / "chelsea.jpg"), shrink(sk.chelsea(), 150)[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, 92])
    # A 16-bit greyscale photo: the output keeps 16 bits and one channel.
    cam = shrink(sk.camera(), 96).astype(np.uint16) * 257
    cv2.imwrite(str(HERE / "camera_16bit_grey.png"), cam)
    # An RGBA image with a transparent background: the alpha channel is upscaled too.
    coffee = shrink(sk.coffee(), 120)
    h, w = coffee.shape[:2]
    yy, xx = np.mgrid[:h, :w]
    inside = ((yy - h / 2) / (h * 0.45)) ** 2 + ((xx - w / 2) / (w * 0.45)) ** 2 <= 1.0
    alpha = (inside * 255).astype(np.uint8)
    cv2.imwrite(str(HERE / "coffee_alpha.png"), np.dstack([coffee[..., ::-1], alpha]))


if __name__ == "__main__":
    main()
