"""Training methods, one file each; `RECIPES` maps the `recipe:` name in a config to its class."""

from __future__ import annotations

from img2img.recipes.base import Phase, Recipe
from img2img.recipes.esrgan import ESRGANRecipe

RECIPES: dict[str, type[Recipe]] = {
    "esrgan": ESRGANRecipe,
}

__all__ = ["RECIPES", "Phase", "Recipe"]
