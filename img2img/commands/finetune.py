"""`img2img finetune --weights W --data DIR`: adapt existing SR weights (a catalog name such as
`realesrgan-x4plus`, our .safetensors, or a released .pth) to your own images with the ESRGAN GAN
recipe (configs/esrgan/finetune_x4.yaml). The generator's arch and scale come from W's card."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

HELP = "Fine-tune SR weights on your own HR (or paired LR/HR) images."

_EPILOG = """examples:
  img2img finetune --weights realesrgan-x4plus --data photos/
  img2img finetune --weights weights/mine.safetensors --data pairs/   # pairs/hr + pairs/lr
  img2img finetune --weights realesr-animevideov3 --data hr/ --lr lr/ train.steps=500
without ImageNet VGG19 weights add loss.vgg_weights=PATH, or loss.perceptual=0 (L1 + GAN only), or
loss.allow_random_vgg=true (untrained features; recorded in the card)."""


def default_config() -> Path:
    from img2img.resources import config_path

    return config_path("esrgan/finetune_x4")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.formatter_class = argparse.RawDescriptionHelpFormatter
    p.epilog = _EPILOG
    p.add_argument("--weights", required=True, help="starting weights: catalog name or file")
    p.add_argument("--data", type=Path, required=True, help="HR image folder, or a folder with hr/ and lr/")
    p.add_argument("--lr", type=Path, help="matching low-resolution folder (paired data)")
    p.add_argument("--config", type=Path, help="base config (default configs/esrgan/finetune_x4.yaml)")
    p.add_argument("--out-dir", help="run folder (default runs/finetune_<weights name>)")
    p.add_argument("--dry-run", action="store_true", help="print the resolved config (YAML) and exit")
    p.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="dotted overrides, e.g. train.steps=500")


def _subfolder(root: Path, name: str) -> Path | None:
    for child in root.iterdir() if root.is_dir() else []:
        if child.is_dir() and child.name.lower() == name:
            return child
    return None


def data_dirs(data: Path, lr: Path | None) -> tuple[Path, Path | None]:
    """(HR folder, LR folder or None); `DIR/hr` + `DIR/lr` means paired data."""
    from img2img.errors import ConfigError

    if not data.is_dir():
        raise ConfigError(f"--data {data}: not a folder")
    if lr is not None:
        if not lr.is_dir():
            raise ConfigError(f"--lr {lr}: not a folder")
        return data, lr
    hr_sub, lr_sub = _subfolder(data, "hr"), _subfolder(data, "lr")
    if hr_sub and lr_sub:
        return hr_sub, lr_sub
    return data, None


def build_config(args: argparse.Namespace) -> Any:
    """The finetune config with the generator, scale, data and init taken from the arguments."""
    from img2img.config import apply_overrides, read_yaml
    from img2img.errors import ConfigError
    from img2img.train.config import from_dict
    from img2img.weights.catalog import load_any

    base = args.config or default_config()
    if not base.is_file():
        raise ConfigError(f"finetune config not found: {base}; pass --config configs/esrgan/finetune_x4.yaml")
    _, card, _ = load_any(args.weights)
    if card.task != "upscale":
        raise ConfigError(f"--weights {args.weights}: a {card.task} model; finetune needs super-resolution weights")
    hr, lr = data_dirs(args.data, args.lr)
    raw = read_yaml(base)
    raw["model"] = {**raw.get("model", {}), "G": {"arch": card.arch, **card.arch_kwargs}}
    data = raw.setdefault("data", {})
    data.update({"hr_dirs": [str(hr)], "lr_dirs": [str(lr)] if lr else None, "scale": int(card.scale)})
    if lr:
        data["degradation"] = "bicubic"  # unused with paired files, but must be the default
    train = raw.setdefault("train", {})
    train["init_from"] = {**(train.get("init_from") or {}), "G": str(args.weights)}
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
