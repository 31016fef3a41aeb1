"""`img2img upscale INPUT... OUTPUT`: super-resolve images and folders with an ESRGAN-family model,
file by file (a bad file never stops the run), sharded across `torchrun` ranks."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from img2img.commands.common import add_engine_arguments, add_file_arguments, add_runtime_argument, run_files
from img2img.errors import ConfigError

HELP = "Upscale images or folders of images with a super-resolution model (Real-ESRGAN, ESRGAN)."
DEFAULT_MODEL = "realesr-animevideov3"

_EPILOG = """examples:
  img2img upscale photo.jpg out/
  img2img upscale photos/ out/ --recursive --name "{name}_x{scale}" --ext png
  img2img upscale photos/ out/ --model realesrgan-x4plus --outscale 2
  torchrun --nproc-per-node 2 -m img2img upscale photos/ out/   # shard files across processes
exit status: 0 all done, 1 some files failed (listed on stderr), 2 usage or model error, 130 Ctrl-C"""


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_file_arguments(p, _EPILOG)
    src = p.add_mutually_exclusive_group()
    src.add_argument(
        "--model", help=f"catalog model name (default {DEFAULT_MODEL}; realesrgan-x4plus for full quality)"
    )
    src.add_argument("--weights", type=Path, help="our .safetensors or a released .pth / ncnn .param file")
    p.add_argument("--outscale", type=float, help="final scale (e.g. 2 with a x4 model); default: the model's scale")
    p.add_argument(
        "--alpha",
        default="model",
        choices=["model", "bicubic", "none"],
        help="how to upscale an alpha channel (none drops it)",
    )
    add_engine_arguments(p)
    add_runtime_argument(p)


def _load_model(args: argparse.Namespace, device: str) -> Any:
    from img2img.infer.model import load

    name = str(args.weights) if args.weights is not None else (args.model or DEFAULT_MODEL)
    model = load(
        name, device=device, precision=args.precision, tile=args.tile, tile_overlap=args.tile_overlap,
        ensemble=args.ensemble, engine=args.engine,
    )  # fmt: skip
    if model.task != "upscale":
        raise ConfigError(
            f"{model.card.name} is a {model.task} model, not an upscaler; run it with `img2img {model.task}`"
        )
    return model


def run(args: argparse.Namespace) -> int:
    if args.outscale is not None and args.outscale <= 0:
        raise ConfigError(f"--outscale must be positive, not {args.outscale}")

    def load(device: str) -> Any:
        return _load_model(args, device)

    def apply(model: Any, x: Any, tiles: Any, dtype: Any) -> Any:
        return model(x, alpha_mode=args.alpha, outscale=args.outscale, progress=tiles, dtype=dtype)

    return run_files(args, "upscale", load, apply, scale=lambda m: args.outscale or m.scale)
