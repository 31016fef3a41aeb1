"""`img2img data shapes OUT --n N --seed S --size PX`: write the procedural captioned shapes set (plain
circles, squares and triangles on plain backgrounds, several captions per image, some colour-shape-
background combinations held out of training) that text-to-image models are trained and measured on."""

from __future__ import annotations

import argparse
from pathlib import Path

HELP = "Make training data: data shapes (procedural captioned shapes with held-out combinations)."

_EPILOG = """examples:
  img2img data shapes data/shapes --n 12000 --seed 0 --size 128
  img2img data shapes data/shapes_tiny --n 200 --size 32 --holdout 9 --test-fraction 0.1
the folder gets NNNNN.png + NNNNN.txt (captions, one per line), attributes.json (shape, colours, box per
image) and split.json (train / test_seen / test_unseen, and the held-out combinations).
an existing non-empty folder is refused unless --overwrite (which replaces only files this command made).
exit status: 0 done, 2 usage or data error"""


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.formatter_class = argparse.RawDescriptionHelpFormatter
    p.epilog = _EPILOG
    kinds = p.add_subparsers(dest="kind", metavar="KIND", required=True)
    s = kinds.add_parser("shapes", help="captioned shapes with known ground truth", description=HELP)
    s.formatter_class = argparse.RawDescriptionHelpFormatter
    s.epilog = _EPILOG
    s.add_argument("output", type=Path, metavar="OUT", help="output folder (new or empty)")
    s.add_argument("--n", type=int, required=True, help="number of images")
    s.add_argument("--seed", type=int, default=0, help="drawing seed; also picks the held-out combinations")
    s.add_argument("--size", type=int, default=64, help="image side in pixels (default 64)")
    s.add_argument("--captions", type=int, default=5, help="captions per image (default 5)")
    s.add_argument("--holdout", type=int, default=9, help="combinations kept out of training (default 9 of 90)")
    s.add_argument("--test-fraction", type=float, default=0.1, help="seen-combination images kept for testing")
    s.add_argument("--overwrite", action="store_true", help="replace a previous shapes set in OUT")


def run(args: argparse.Namespace) -> int:
    from img2img.data.shapes import make_shapes
    from img2img.errors import ConfigError

    if args.output.is_dir() and any(args.output.iterdir()) and not args.overwrite:
        raise ConfigError(f"{args.output} is not empty; choose a new folder or pass --overwrite")
    split = make_shapes(
        args.output, args.n, seed=args.seed, size=args.size, n_captions=args.captions, n_holdout=args.holdout,
        test_fraction=args.test_fraction, overwrite=args.overwrite,
    )  # fmt: skip
    held = ", ".join(f"{h['colour']} {h['shape']} on {h['background']}" for h in split["held_out"])
    print(
        f"wrote {args.n} images of {args.size} px to {args.output}: train {len(split['train'])}, "
        f"test_seen {len(split['test_seen'])}, test_unseen {len(split['test_unseen'])}; held out: {held or 'none'}"
    )
    return 0
