"""`img2img weights list|pull`: the weights usable by name (as `img2img models`), and the one explicit
way to download released pix2pix / CycleGAN generators (checked, converted, cached)."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from img2img.commands import models

HELP = "list usable weights, or pull a released pix2pix / CycleGAN generator (or the FID Inception weights) by name"

_EPILOG = """examples:
  img2img weights list --task translate
  img2img weights pull --list                          # the published pix2pix / CycleGAN names
  img2img weights pull pix2pix-facades_label2photo
  img2img weights pull cyclegan-horse2zebra --mirror http://127.0.0.1:8000/models
  img2img weights pull inception-fid                   # the FID Inception-v3 weights for eval dist
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
        print(f"{INCEPTION:40s} FID Inception-v3 weights for `img2img eval dist` (sha256-checked)")
        return 0
    bar = None

    def progress(done: int, total: int | None) -> None:
        nonlocal bar
        if bar is None:
            from tqdm import tqdm

            bar = tqdm(total=total, unit="B", unit_scale=True, desc=args.name, file=sys.stderr, leave=False)
        bar.update(done - bar.n)

    try:
        if args.name == INCEPTION:
            path = pull_inception(args, progress)
        else:
            path = pull(args.name, mirror=args.mirror, sha256=args.sha256, force=args.force, progress=progress)
    finally:
        if bar is not None:
            bar.close()
    print(f"{args.name}: {path}")
    return 0


INCEPTION = "inception-fid"


def pull_inception(args: argparse.Namespace, progress) -> Path:
    """The FID Inception-v3 weights into $IMG2IMG_HOME/weights/, where `eval dist` finds them: streamed,
    sha256-checked against the published file (or --sha256), then loaded without unpickling code."""
    from img2img.errors import WeightsError
    from img2img.eval.inception import (
        FID_WEIGHTS_FILE,
        FID_WEIGHTS_SHA256,
        FID_WEIGHTS_URL,
        default_weights_path,
        load_fid_inception,
    )
    from img2img.weights.pull import MIRROR_ENV, download

    target = default_weights_path()
    expected = (args.sha256 or FID_WEIGHTS_SHA256).lower()
    if target.is_file() and not args.force:
        return target
    mirror = args.mirror or os.environ.get(MIRROR_ENV)
    url = f"{mirror.rstrip('/')}/{FID_WEIGHTS_FILE}" if mirror else FID_WEIGHTS_URL
    part = target.with_name(f".{target.name}.pulled")
    try:
        digest = download(url, part, progress=progress)
        if digest != expected:
            raise WeightsError(f"{url}: SHA-256 {digest} is not that of {FID_WEIGHTS_FILE} ({expected}); deleted")
        load_fid_inception(part, sha256=expected)  # the tensors fit FID Inception-v3 (weights_only load)
        os.replace(part, target)
    finally:
        part.unlink(missing_ok=True)
    return target
