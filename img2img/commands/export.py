"""`img2img export RUN_OR_CHECKPOINT --name NAME`: turn training state into shippable weights
(`NAME.safetensors` + card with arch, config, data, steps and the run's measured metrics)."""

from __future__ import annotations

import argparse
from pathlib import Path

HELP = "Export a training run or checkpoint as .safetensors weights with a card."


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("source", metavar="RUN_DIR_OR_CKPT", help="a run folder (newest checkpoint) or a .pt file")
    p.add_argument("--name", required=True, help="weights name: writes NAME.safetensors and NAME.json")
    p.add_argument("--out", type=Path, default=Path("weights"), help="output folder (default weights/)")
    p.add_argument(
        "--ema",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="export the EMA weights where the run kept them (default: yes)",
    )
    p.add_argument("--half", action="store_true", help="store float16 tensors (half the size; run in float32)")
    p.add_argument("--overwrite", action="store_true", help="replace existing NAME.safetensors / NAME.json")


def run(args: argparse.Namespace) -> int:
    from img2img.errors import ConfigError
    from img2img.train.checkpoint import ckpt_dir, export_weights, find_resume, load_state

    src = Path(args.source)
    if src.is_dir():
        found = find_resume(src)
        if found is None:
            raise ConfigError(f"{src}: no complete checkpoint in {ckpt_dir(src)}")
        path, state = found
    elif src.is_file():
        path, state = src, load_state(src)
    else:
        raise ConfigError(f"{src}: no such run folder or checkpoint file")
    for written in export_weights(
        state, args.name, args.out, use_ema=args.ema, source=str(path), half=args.half, overwrite=args.overwrite
    ):
        print(f"wrote {written} (+ {written.with_suffix('.json').name}) from {path}, step {state['step']}")
    return 0
