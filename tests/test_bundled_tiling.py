"""Every bundled model (and the default release) either tiles exactly (tiled = untiled within 1/255) or
refuses tiles because tiling would change its output (per-image statistics, image-wide receptive field)
and then runs whole images, also on inputs larger than the automatic tile cap."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

import img2img
from img2img.errors import Img2ImgError
from img2img.weights.catalog import bundled_dir
from img2img.weights.format import read_card

# Tiling is an image -> image matter: label-map and text models run whole (tests/test_task_models.py).
BUNDLED = sorted(p.stem for p in bundled_dir().glob("*.safetensors") if read_card(p).kind == "image")
WHOLE_ONLY = {"pix2pix-facades-small", "cyclegan-horse2zebra-small_G_AB", "cyclegan-horse2zebra-small_G_BA"}


def smooth_image(h: int, w: int) -> np.ndarray:
    rng = np.random.default_rng(0)
    return cv2.resize(rng.random((24, 28, 3)).astype(np.float32), (w, h), interpolation=cv2.INTER_CUBIC).clip(0, 1)


def test_the_bundled_weights_are_all_covered() -> None:
    assert set(BUNDLED) >= WHOLE_ONLY and len(BUNDLED) >= 5


@pytest.mark.parametrize("name", [*BUNDLED, "realesr-animevideov3"])
def test_tiled_equals_untiled_or_tiles_are_refused(name: str) -> None:
    image = smooth_image(150, 170)
    whole = img2img.load(name, device="cpu", tile=0)(image)
    if name in WHOLE_ONLY:
        with pytest.raises(Img2ImgError, match="runs whole images"):
            img2img.load(name, device="cpu", tile=64)
        model = img2img.load(name, device="cpu")
        assert model.whole_images and model._pick_tile(1, 4000, 4000, None) == 0  # never tiled automatically
        np.testing.assert_array_equal(model(image), whole)
    else:
        tiled = img2img.load(name, device="cpu", tile=64)(image)
        assert np.abs(tiled - whole).max() <= 1 / 255
