"""`img2img finetune --weights W --data DIR`: continue training any exported or released model on your
own data with one command. The recipe, architecture, scale and direction come from W's card (and its
training config, for our own weights); the data layout is checked against the task."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

HELP = "Fine-tune a model (SR, pix2pix, CycleGAN, SPADE, ...) from its weights on your own data."

_EPILOG = """examples:
  img2img finetune --weights realesrgan-x4plus --data photos/                 # HR images (LR made on the fly)
  img2img finetune --weights weights/mine.safetensors --data pairs/           # pairs/hr + pairs/lr
  img2img finetune --weights pix2pix-facades-small --data my_pairs/ train.steps=500
  img2img finetune --weights cyclegan-horse2zebra-small_G_AB --data domains/  # domains/trainA + trainB
  img2img finetune --weights weights/spade-mine.safetensors --data scenes/    # labels/ + images/ (+ instances/)
data layouts: upscale: HR images, hr/ + lr/ or --lr; paired translation (pix2pix): side-by-side A|B
images (DIR or DIR/train) or A/ + B/ matched by name; unpaired (CycleGAN): trainA/ + trainB/ or A/ + B/;
label map -> photo (SPADE): labels/ + images/ (+ instances/) (or train_label/ + train_img/ (+ train_inst/))
matched by scene name, or side-by-side photo|colour-label images.
The run starts from our weights' own training config (hyperparameters kept) or, for released weights,
the family's shipped config (--config to choose another); key=value overrides apply last.
SR without ImageNet VGG19 weights: add loss.vgg_weights=PATH, or loss.perceptual=0, or
loss.allow_random_vgg=true (untrained features; recorded in the card)."""


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.formatter_class = argparse.RawDescriptionHelpFormatter
    p.epilog = _EPILOG
    p.add_argument("--weights", required=True, help="starting weights: catalog name or file")
    p.add_argument("--data", type=Path, required=True, help="your training data (layouts below)")
    p.add_argument("--lr", type=Path, help="SR only: the matching low-resolution folder (paired data)")
    p.add_argument("--config", type=Path, help="base config (default: the weights' own, else the family's)")
    p.add_argument("--out-dir", help="run folder (default runs/finetune_<weights name>)")
    p.add_argument("--dry-run", action="store_true", help="print the resolved config (YAML) and exit")
    p.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="dotted overrides, e.g. train.steps=500")


def recipe_for(card: Any) -> str:
    """Which recipe trained (or would train) a model: its card's record, its family, or its task."""
    from img2img.errors import ConfigError
    from img2img.recipes import RECIPES

    name = card.training.get("recipe") or card.extra.get("family")
    if name is None:
        name = {"upscale": "esrgan"}.get(card.task)
    if name not in RECIPES:
        raise ConfigError(f"{card.name}: cannot tell which recipe trains a {card.task} model ({name!r}); use --config")
    return name


def build_config(args: argparse.Namespace) -> Any:
    """The fine-tuning run config: base config, then the recipe's plan for these weights and data."""
    from img2img.config import apply_overrides, read_yaml
    from img2img.errors import ConfigError
    from img2img.recipes import RECIPES
    from img2img.resources import config_path
    from img2img.train.config import from_dict
    from img2img.weights.catalog import cyclegan_partner, load_any, maps_direction

    _, card, path = load_any(args.weights)
    name = recipe_for(card)
    recipe = RECIPES[name]
    if args.config is not None:
        raw = read_yaml(args.config)
    elif isinstance(card.training.get("config"), dict):
        raw = dict(card.training["config"])  # our weights: the same hyperparameters as their run
    elif recipe.finetune_config:
        raw = read_yaml(config_path(recipe.finetune_config))
    else:
        raise ConfigError(f"{card.name}: no training config in its card; give --config")
    if raw.get("recipe") != name:
        raise ConfigError(f"the config trains {raw.get('recipe')!r}, but {card.name} is a {name} model")
    options = {"lr": args.lr, "path": path, "partner": cyclegan_partner(Path(path)),
               "maps": maps_direction(Path(path).stem, card)}  # fmt: skip
    recipe.finetune(raw, card, str(args.weights), args.data, options)
    train = raw.setdefault("train", {})
    train["out_dir"] = args.out_dir or f"runs/finetune_{Path(str(args.weights)).stem}"
    return from_dict(apply_overrides(raw, args.overrides))


def run(args: argparse.Namespace) -> int:
    import sys

    from img2img.commands.train import fit

    cfg = build_config(args)
    if args.dry_run:
        sys.stdout.write(cfg.to_yaml())
        return 0
    return fit(cfg)
