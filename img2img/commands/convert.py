"""`img2img convert IN OUT.safetensors`: a released checkpoint (.pth/.pt/.ckpt/.bin/.safetensors, or
ncnn .param with its .bin) -> our weights format with a card; prints what was detected."""

from __future__ import annotations

import argparse
from pathlib import Path

from img2img.errors import WeightsError

HELP = "convert a released checkpoint (ESRGAN/Real-ESRGAN .pth, ncnn .param, ...) to img2img weights"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("input", type=Path, help="released weights: .pth/.pt/.ckpt/.bin/.safetensors or ncnn .param")
    p.add_argument("output", type=Path, help="where to write OUT.safetensors (a card OUT.json goes beside it)")
    p.add_argument("--name", help="model name stored in the card (default: the output file's stem)")
    p.add_argument(
        "--act",
        choices=("relu", "lrelu"),
        help="activation of a compact (SRVGGNetCompact) model whose file has no PReLU weights",
    )
    p.add_argument("--overwrite", "--force", dest="overwrite", action="store_true", help="replace OUT if it exists")


def run(args: argparse.Namespace) -> int:
    from img2img.weights.convert import convert_file, count_params
    from img2img.weights.format import card_path, save_weights

    src, out = Path(args.input), Path(args.output)
    if out.suffix != ".safetensors":
        raise WeightsError(f"output must end in .safetensors, got {out.name}")
    if not src.exists():
        raise WeightsError(f"input not found: {src}")
    if out.resolve() == src.resolve():
        raise WeightsError("output and input are the same file; choose another output path")
    from img2img.io.fileio import refuse_existing

    refuse_existing([out, card_path(out)], overwrite=args.overwrite)
    from img2img.weights.probe import record_precision

    sd, card = convert_file(src, name=args.name or out.stem, act=args.act)
    card = record_precision(sd, card)
    kwargs = ", ".join(f"{k}={v}" for k, v in card.arch_kwargs.items())
    print(f"detected: {card.extra.get('converted_from') or card.arch}")
    print(f"  arch:   {card.arch}({kwargs})")
    print(f"  task:   {card.task} x{card.scale}, input multiple of {card.size_multiple}")
    print(f"  params: {count_params(sd) / 1e6:.2f} M")
    if "precision" in card.extra:
        print(f"  bf16:   {card.extra['precision']['bf16_psnr_db']:.1f} dB PSNR against fp32 on a probe image")
    if "outscale" in card.extra:
        print(f"  note:   the release resizes the x{card.scale} output to x{card.extra['outscale']:g} afterwards")
    save_weights(out, sd, card)
    print(f"wrote {out} and {card_path(out).name}")
    return 0
