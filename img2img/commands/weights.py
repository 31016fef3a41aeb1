"""`img2img weights list|pull`: the weights usable by name (as `img2img models`), and the one explicit
way to download released pix2pix / CycleGAN generators (checked, converted, cached)."""

from __future__ import annotations

import argparse
import sys

from img2img.commands import models

HELP = "list usable weights, or pull a released pix2pix / CycleGAN generator by name"

_EPILOG = """examples:
  img2img weights list --task translate
  img2img weights pull --list                          # the published pix2pix / CycleGAN names
  img2img weights pull pix2pix-facades_label2photo
  img2img weights pull cyclegan-horse2zebra --mirror http://127.0.0.1:8000/models
  img2img translate horses/ zebras/ --model cyclegan-horse2zebra
downloads happen only here; files are checked by SHA-256 (pinned, --sha256, or recorded on the first pull)."""


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.formatter_class = argparse.RawDescriptionHelpFormatter
    p.epilog = _EPILOG
    sub = p.add_subparsers(dest="action", metavar="ACTION", required=True)
    ls = sub.add_parser("list", help=models.HELP)
    models.add_arguments(ls)
    pl = sub.add_parser("pull", help="download, check and convert a released generator")
    pl.add_argument("name", nargs="?", help="e.g. pix2pix-facades_label2photo or cyclegan-horse2zebra")
    pl.add_argument("--list", action="store_true", help="show the names that can be pulled")
    pl.add_argument("--mirror", help="base URL serving FAMILY/NAME.pth instead of the original hosts")
    pl.add_argument("--sha256", help="expected SHA-256 of the downloaded file")
    pl.add_argument("--force", action="store_true", help="download again even if converted weights exist")


def run(args: argparse.Namespace) -> int:
    if args.action == "list":
        return models.run(args)
    from img2img.errors import ConfigError
    from img2img.weights.pull import PUBLISHED, pull

    if args.list or not args.name:
        if not args.list:
            raise ConfigError("give a NAME to pull (or --list to see them)")
        for key, pub in PUBLISHED.items():
            print(f"{key:40s} {pub.description}")
        return 0
    bar = None

    def progress(done: int, total: int | None) -> None:
        nonlocal bar
        if bar is None:
            from tqdm import tqdm

            bar = tqdm(total=total, unit="B", unit_scale=True, desc=args.name, file=sys.stderr, leave=False)
        bar.update(done - bar.n)

    try:
        path = pull(args.name, mirror=args.mirror, sha256=args.sha256, force=args.force, progress=progress)
    finally:
        if bar is not None:
            bar.close()
    print(f"{args.name}: {path}")
    return 0
