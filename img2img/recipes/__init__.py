"""Training methods, one file each; `RECIPES` maps the `recipe:` name in a config to its class."""

from __future__ import annotations

from img2img.recipes.base import Phase, Recipe
from img2img.recipes.cyclegan import CycleGANRecipe
from img2img.recipes.esrgan import ESRGANRecipe
from img2img.recipes.pix2pix import Pix2PixRecipe
from img2img.recipes.spade import SPADERecipe
from img2img.recipes.stackgan import StackGANRecipe
from img2img.recipes.text_encoder import TextEncoderRecipe

RECIPES: dict[str, type[Recipe]] = {
    "esrgan": ESRGANRecipe,
    "pix2pix": Pix2PixRecipe,
    "cyclegan": CycleGANRecipe,
    "text_encoder": TextEncoderRecipe,
    "stackgan": StackGANRecipe,
    "spade": SPADERecipe,
}

__all__ = ["RECIPES", "Phase", "Recipe"]
