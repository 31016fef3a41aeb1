"""What every batch command shares (upscale, translate, synthesize, generate): the input/output and
engine flags, this rank's device under torchrun, the tile progress bar, and the run itself (load the
model once, run every job through `infer.batch.run_jobs`, print the report, return the exit code)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from img2img.errors import ConfigError


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


RUNTIMES = ("torch", "compile", "onnxruntime")  # img2img.infer.image.ENGINES, without importing torch for --help


def add_runtime_argument(p: argparse.ArgumentParser) -> None:
    """`--engine` (and its shorthand `--compile`) of image -> image commands (upscale, translate)."""
    p.add_argument(
        "--engine",
        default="torch",
        choices=RUNTIMES,
        help="compile: torch with the network compiled by torch.compile on first use, the code cached in "
        "$IMG2IMG_HOME/compile (needs a C++ compiler); onnxruntime: fp32 on the CPU through an ONNX export of "
        "the model, made on first use and cached in $IMG2IMG_HOME/onnx (needs img2img[onnx]). The README says "
        "when each is faster",
    )
    p.add_argument("--compile", dest="engine", action="store_const", const="compile", help="= --engine compile")


def rank_device(requested: str, world: int, local_rank: int) -> str:
    """Under torchrun each rank takes its own GPU (cuda:LOCAL_RANK): the device spec for this rank."""
    if world == 1 or requested not in ("auto", "cuda"):
        return requested
    from img2img.devices import resolve_device

    return str(resolve_device(requested, local_rank=local_rank))


class TileBar:
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


def batch_options(args: argparse.Namespace, inputs: list[Path], output: Path) -> Any:
    """BatchOptions from the shared file flags."""
    from img2img.infer import batch

    return batch.BatchOptions(
        inputs=inputs, output=output, recursive=getattr(args, "recursive", False), name_template=args.name,
        ext=args.ext, overwrite=args.overwrite, skip_existing=args.skip_existing, quality=args.quality,
        animated=getattr(args, "animated", "error"), max_pixels=getattr(args, "max_pixels", None),
    )  # fmt: skip


def progress_mode(args: argparse.Namespace) -> bool | str:
    return False if args.quiet else ("always" if args.progress else True)


def status_log(msg: str) -> None:
    from tqdm import tqdm

    tqdm.write(msg, file=sys.stderr)


def announce(args: argparse.Namespace, model: Any, rank: int) -> None:
    """One line on stderr saying which model runs where and at which precision (unless --quiet)."""
    if not args.quiet and rank == 0:
        why = " (auto)" if args.precision == "auto" else ""
        from img2img.infer.model import runtime_label

        print(f"{model.card.name} on {model.device}, {model.precision}{why}{runtime_label(model)}", file=sys.stderr)


def finish(args: argparse.Namespace, verb: str, report: Any, output: Path, rank: int, world: int) -> int:
    """Print the notes, the failure table and the summary line; the exit code of the run."""
    from img2img.infer import batch

    for line in batch.report_lines(report, rank=rank, world=world, quiet=args.quiet):
        print(line, file=sys.stderr)
    if not args.quiet:
        print(f"{verb}: " + batch.summary_line(report, output, rank=rank, world=world))
    return report.exit_code


def run_files(
    args: argparse.Namespace,
    verb: str,
    load: Callable[[str], Any],
    apply: Callable[[Any, Any, Any], Any],
    *,
    scale: Callable[[Any], Any],
) -> int:
    """The batch run of the image -> image commands: check the paths, load the model for this rank's
    device, run `apply(model, image, tile_progress, dtype)` on every file, report, and return the exit code.
    `dtype` is the sample type the result is stored in (uint16 for 16-bit inputs, else uint8): the model
    makes those samples band by band, so a large output is never held in float32."""
    import numpy as np

    from img2img.devices import launcher_env
    from img2img.infer import batch

    if len(args.paths) < 2:
        raise ConfigError(f"give at least one input and then the output folder: img2img {verb} INPUT... OUTPUT")
    rank, world, local_rank = launcher_env()
    opts = batch_options(args, [Path(p) for p in args.paths[:-1]], Path(args.paths[-1]))
    batch.validate_inputs(opts)  # usage errors before the (slower) model load
    model = load(rank_device(args.device, world, local_rank))
    announce(args, model, rank)
    opts.template_fields = {"scale": scale(model), "model": model.card.name}
    progress = progress_mode(args)
    bars = batch.progress_enabled(progress)

    def process(img: Any) -> tuple[np.ndarray, dict]:
        if img.samples is not None:  # 8-bit without alpha: the model converts tile by tile (less memory)
            x = img.samples
        else:
            x = img.rgb if img.alpha is None else np.concatenate([img.rgb, img.alpha[..., None]], axis=2)
        tiles = TileBar(bars, Path(img.path).name)
        seen = len(model.notes)  # the model notes fp16 reruns and out-of-memory tile retries
        try:
            out = apply(model, x, tiles, np.uint16 if img.bit_depth == 16 else np.uint8)
        finally:
            tiles.close()
        return out, {"notes": list(model.notes[seen:])}

    report = batch.run_batch(opts, process, rank=rank, world=world, progress=progress, log=status_log)
    return finish(args, verb, report, opts.output, rank, world)
