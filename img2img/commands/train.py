"""`img2img train CONFIG [key=value ...]`: train any recipe from a YAML config, on one process or under
`torchrun` (multi-GPU, multi-node, or several CPU processes with gloo)."""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from img2img.train.config import RunConfig

HELP = "Train a model from a YAML config (configs/<family>/<name>.yaml)."

_EPILOG = """examples:
  img2img train configs/esrgan/small_psnr_x4.yaml
  img2img train configs/esrgan/small_psnr_x4.yaml train.batch_size=8 model.G.nb=2 --dry-run
  img2img train configs/esrgan/small_gan_x4.yaml train.init_from.G=weights/my_psnr.safetensors
  torchrun --nproc-per-node 2 -m img2img train configs/esrgan/psnr_x4.yaml
paths inside configs are relative to the current directory.
overrides are dotted keys with YAML values: train.steps=100  data.hr_dirs=[a,b]  model.D=null"""


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.formatter_class = argparse.RawDescriptionHelpFormatter
    p.epilog = _EPILOG
    p.add_argument("config", help="YAML config file")
    p.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="dotted overrides, e.g. train.steps=100")
    p.add_argument("--dry-run", action="store_true", help="print the resolved config (YAML) and exit")
    p.add_argument("--resume", metavar="auto|PATH", help="continue from the newest checkpoint or a given one")
    p.add_argument(
        "--overwrite", action="store_true", help="replace an earlier run in train.out_dir (= train.overwrite=true)"
    )


def run(args: argparse.Namespace) -> int:
    from img2img.train.config import load_config

    overrides = list(args.overrides)
    if args.resume:
        overrides.append(f"train.resume={args.resume}")
    if args.overwrite:
        overrides.append("train.overwrite=true")
    cfg = load_config(args.config, overrides)
    if args.dry_run:
        sys.stdout.write(cfg.to_yaml())
        return 0
    return fit(cfg)


def fit(cfg: RunConfig) -> int:
    """Run the engine and print where the results went (main process only)."""
    import os

    from img2img.train import Trainer

    result = Trainer(cfg).fit()
    if os.environ.get("RANK", "0") == "0":
        print(f"trained {result.step} steps; checkpoint {result.checkpoint}")
        for path in result.exported:
            print(f"weights: {path}")
        if result.metrics:
            print("validation: " + "  ".join(f"{k} {v:.4g}" for k, v in result.metrics.items()))
    return 0
