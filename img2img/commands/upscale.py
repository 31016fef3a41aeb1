"""`img2img upscale INPUT... OUTPUT`: super-resolve images and folders with an ESRGAN-family model,
file by file (a bad file never stops the run), sharded across `torchrun` ranks."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

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


def add_file_arguments(p: argparse.ArgumentParser, epilog: str) -> None:
    """Inputs, output naming and overwrite policy: the same for every batch command."""
    p.formatter_class = argparse.RawDescriptionHelpFormatter
    p.usage = "%(prog)s INPUT... OUTPUT [options]"
    p.epilog = epilog
    p.add_argument(
        "paths",
        nargs="+",
        metavar="INPUT... OUTPUT",
        help="image files and/or folders, then the output folder",
    )
    p.add_argument("--recursive", action="store_true", help="include subfolders, mirroring the tree under OUTPUT")
    p.add_argument(
        "--name", default="{name}", help="output name template: {name} {ext} {scale} {model} (default {name})"
    )
    p.add_argument(
        "--ext",
        default="auto",
        choices=["auto", "png", "jpg", "webp", "tif"],
        help="output format (auto keeps the input's where it can)",
    )
    p.add_argument("--quality", type=int, default=95, help="JPEG/WebP quality 1-100 (default 95)")
    exist = p.add_mutually_exclusive_group()
    exist.add_argument("--overwrite", action="store_true", help="replace existing outputs")
    exist.add_argument(
        "--skip-existing", action="store_true", help="leave existing outputs alone and skip those inputs"
    )


def add_engine_arguments(p: argparse.ArgumentParser) -> None:
    """Tiling, precision, device, input limits and output verbosity of the inference engine."""
    p.add_argument("--tile", type=int, help="tile size in input pixels (0 = whole image; default: automatic)")
    p.add_argument("--tile-overlap", type=int, help="overlap between tiles in input pixels")
    p.add_argument("--precision", default="auto", choices=["auto", "fp32", "bf16", "fp16"])
    p.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N | mps")
    p.add_argument("--ensemble", action="store_true", help="average the outputs for the 8 flips/transposes (8x slower)")
    p.add_argument(
        "--animated",
        default="error",
        choices=["error", "first"],
        help="animated inputs: fail, or use the first frame",
    )
    p.add_argument("--max-pixels", type=int, help="refuse inputs with more pixels than this")
    p.add_argument(
        "--quiet", action="store_true", help="no progress bars, notes or summary (failures are still listed)"
    )
    p.add_argument("--progress", action="store_true", help="show progress bars even when stderr is not a terminal")


def _device(requested: str, world: int, local_rank: int) -> str:
    """Under torchrun each rank takes its own GPU (cuda:LOCAL_RANK)."""
    if world == 1 or requested not in ("auto", "cuda"):
        return requested
    import torch

    if requested == "cuda" or torch.cuda.is_available():
        return f"cuda:{local_rank}"
    return requested


def _load_model(args: argparse.Namespace, device: str) -> Any:
    from img2img.infer.model import load

    name = str(args.weights) if args.weights is not None else (args.model or DEFAULT_MODEL)
    model = load(
        name, device=device, precision=args.precision, tile=args.tile, tile_overlap=args.tile_overlap,
        ensemble=args.ensemble,
    )  # fmt: skip
    if model.task != "upscale":
        raise ConfigError(
            f"{model.card.name} is a {model.task} model, not an upscaler; run it with `img2img {model.task}`"
        )
    return model


class _TileBar:
    """Inner progress bar over tiles, shown only for images split into several tiles."""

    def __init__(self, enabled: bool, name: str) -> None:
        self.enabled, self.name, self.bar = enabled, name, None

    def __call__(self, done: int, total: int) -> None:
        if not self.enabled or total <= 1:
            return
        if self.bar is None:
            from tqdm import tqdm

            self.bar = tqdm(total=total, desc=self.name, unit="tile", leave=False, file=sys.stderr, position=1)
        self.bar.update(done - self.bar.n)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def run(args: argparse.Namespace) -> int:
    if args.outscale is not None and args.outscale <= 0:
        raise ConfigError(f"--outscale must be positive, not {args.outscale}")

    def load(device: str) -> Any:
        return _load_model(args, device)

    def apply(model: Any, x: Any, tiles: Any) -> Any:
        return model(x, alpha_mode=args.alpha, outscale=args.outscale, progress=tiles)

    return run_files(args, "upscale", load, apply, scale=lambda m: args.outscale or m.scale)


def run_files(
    args: argparse.Namespace,
    verb: str,
    load: Callable[[str], Any],
    apply: Callable[[Any, Any, Any], Any],
    *,
    scale: Callable[[Any], Any],
) -> int:
    """The batch run shared by upscale / translate: check the paths, load the model for this rank's
    device, run `apply(model, image, tile_progress)` on every file, report, and return the exit code."""
    import numpy as np
    from tqdm import tqdm

    from img2img.infer import batch

    if len(args.paths) < 2:
        raise ConfigError(f"give at least one input and then the output folder: img2img {verb} INPUT... OUTPUT")
    rank, world, local_rank = batch.dist_env()
    opts = batch.BatchOptions(
        inputs=[Path(p) for p in args.paths[:-1]],
        output=Path(args.paths[-1]),
        recursive=args.recursive,
        name_template=args.name,
        ext=args.ext,
        overwrite=args.overwrite,
        skip_existing=args.skip_existing,
        quality=args.quality,
        animated=args.animated,
        max_pixels=args.max_pixels,
    )
    batch.validate_inputs(opts)  # usage errors before the (slower) model load
    model = load(_device(args.device, world, local_rank))
    opts.template_fields = {"scale": scale(model), "model": model.card.name}
    progress: bool | str = False if args.quiet else ("always" if args.progress else True)
    bars = batch.progress_enabled(progress)

    def process(img: Any) -> tuple[np.ndarray, dict]:
        x = img.rgb if img.alpha is None else np.concatenate([img.rgb, img.alpha[..., None]], axis=2)
        tiles = _TileBar(bars, Path(img.path).name)
        seen = len(model.notes)  # the model notes fp16 reruns and out-of-memory tile retries
        try:
            out = apply(model, x, tiles)
        finally:
            tiles.close()
        return out, {"notes": list(model.notes[seen:])}

    def log(msg: str) -> None:
        tqdm.write(msg, file=sys.stderr)

    report = batch.run_batch(opts, process, rank=rank, world=world, progress=progress, log=log)
    for line in batch.report_lines(report, rank=rank, world=world, quiet=args.quiet):
        print(line, file=sys.stderr)
    if not args.quiet:
        print(f"{verb}: " + batch.summary_line(report, opts.output, rank=rank, world=world))
    return report.exit_code
