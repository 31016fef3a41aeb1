"""`img2img translate INPUT... OUTPUT --model|--weights W [--direction AtoB|BtoA]`: run a pix2pix or
CycleGAN generator over images and folders, with the same batch behaviour as `upscale`. Images of any
size come back the same size (reflect-padded to the generator's multiple, then cropped)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from img2img.commands.common import add_engine_arguments, add_file_arguments, add_runtime_argument, run_files
from img2img.errors import ConfigError, WeightsError

HELP = "Translate images or folders with a pix2pix / CycleGAN generator (labels -> photo, horse <-> zebra, ...)."

_EPILOG = """examples:
  img2img translate labels/ out/ --model pix2pix-facades-small
  img2img translate horses/ out/ --model cyclegan-horse2zebra-small              # horse -> zebra
  img2img translate zebras/ out/ --model cyclegan-horse2zebra-small --direction BtoA
  img2img translate in/ out/ --weights latest_net_G_A.pth --direction BtoA   # uses latest_net_G_B.pth
  img2img translate labels/ out/ --weights facades_label2photo.pth --train-mode
--direction names the way through a CycleGAN pair (A -> B or B -> A, as the training data named them);
the partner file is found beside the given one (..._G_AB/_G_BA, or released ..._G_A/_G_B).
--train-mode runs dropout and batch norm as in training, the way the released pix2pix results were made
(eval mode is the default); it processes whole images, never tiles.
exit status: 0 all done, 1 some files failed (listed on stderr), 2 usage or model error, 130 Ctrl-C"""


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_file_arguments(p, _EPILOG)
    src = p.add_mutually_exclusive_group()
    src.add_argument("--model", help="catalog name (see `img2img models`); a CycleGAN pair by its base name")
    src.add_argument("--weights", type=Path, help="our .safetensors or a released pix2pix/CycleGAN .pth generator")
    p.add_argument("--direction", choices=["AtoB", "BtoA"], help="which way to translate (CycleGAN pairs)")
    p.add_argument("--train-mode", action="store_true", help="dropout on + batch statistics (released pix2pix)")
    p.add_argument(
        "--alpha",
        default="bicubic",
        choices=["bicubic", "none"],
        help="carry an alpha channel over resized, or drop it",
    )
    add_engine_arguments(p)
    add_runtime_argument(p)


def resolve(name: str, direction: str | None) -> str:
    """The catalog name or file that maps `direction`: the name itself, its CycleGAN partner, or for a
    pair's base name `NAME_G_AB` / `NAME_G_BA`."""
    from img2img.weights.catalog import cyclegan_partner, maps_direction, resolve_weights
    from img2img.weights.format import read_card

    path = Path(name).expanduser()
    if not path.is_file():  # a catalog name; a CycleGAN pair is listed as NAME_G_AB + NAME_G_BA
        try:
            path = resolve_weights(name)
        except WeightsError:
            pair = f"{name}_G_BA" if direction == "BtoA" else f"{name}_G_AB"
            try:
                return str(resolve_weights(pair))
            except WeightsError:
                raise WeightsError(f"no translation weights named {name!r} or {pair!r}; see `img2img models`") from None
    card = read_card(path) if path.suffix == ".safetensors" else None
    maps = maps_direction(path.stem, card)
    if direction is None or maps is None or maps == direction:
        return str(path)
    partner = cyclegan_partner(path)
    if partner is not None and partner.is_file():
        return str(partner)
    what = f"{card.extra.get('direction')}, " if card is not None and card.extra.get("direction") else ""
    raise ConfigError(
        f"{path.name} maps {maps} ({what}trained that way)"
        + (f"; its partner {partner.name} for {direction} is not beside it" if partner else "; it has no reverse")
    )


def run(args: argparse.Namespace) -> int:
    from img2img.infer.model import load
    from img2img.weights.catalog import list_weights

    name = str(args.weights) if args.weights is not None else args.model
    if name is None:
        names = sorted({i.name for i in list_weights() if i.task == "translate"})
        raise ConfigError(
            "give --model NAME or --weights FILE; translation models here: " + (", ".join(names) or "none yet")
        )

    def load_model(device: str) -> Any:
        model = load(
            resolve(name, args.direction), device=device, precision=args.precision, tile=args.tile,
            tile_overlap=args.tile_overlap, train_mode=args.train_mode, ensemble=args.ensemble, engine=args.engine,
        )  # fmt: skip
        if model.task != "translate":
            raise ConfigError(f"{model.card.name} is a {model.task} model; run it with `img2img {model.task}`")
        return model

    def apply(model: Any, x: Any, tiles: Any, dtype: Any) -> Any:
        return model(x, alpha_mode=args.alpha, progress=tiles, dtype=dtype)

    return run_files(args, "translate", load_model, apply, scale=lambda m: 1)
