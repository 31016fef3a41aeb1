"""The `img2img` command line. Each sub-command lives in `img2img/commands/<name>.py` and exposes
`HELP`, `add_arguments(parser)` and `run(args) -> int`; those modules import heavy (training)
code only inside `run`, so `img2img --help` and inference stay light."""

from __future__ import annotations

import argparse
import importlib
import sys

from img2img.errors import Img2ImgError

# sub-command name -> module (one line per command; aliases point at the same module)
COMMANDS: dict[str, str] = {
    "upscale": "img2img.commands.upscale",
    "translate": "img2img.commands.translate",
    "synthesize": "img2img.commands.synthesize",
    "generate": "img2img.commands.generate",
    "convert": "img2img.commands.convert",
    "models": "img2img.commands.models",
    "weights": "img2img.commands.weights",
    "app": "img2img.commands.app",
    "eval": "img2img.commands.evaluate",
    "train": "img2img.commands.train",
    "export": "img2img.commands.export",
    "onnx": "img2img.commands.onnx",
    "interpolate": "img2img.commands.interpolate",
    "finetune": "img2img.commands.finetune",
    "data": "img2img.commands.data",
}


def build_parser() -> argparse.ArgumentParser:
    from img2img import __version__

    parser = argparse.ArgumentParser(prog="img2img", description="Image-to-image translation and super-resolution.")
    parser.add_argument("--version", action="version", version=f"img2img {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, modname in COMMANDS.items():
        mod = importlib.import_module(modname)
        p = sub.add_parser(name, help=mod.HELP, description=mod.HELP)
        mod.add_arguments(p)
        p.set_defaults(_run=mod.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "_run", None):
        parser.print_help()
        return 2
    try:
        return int(args._run(args) or 0)
    except Img2ImgError as e:
        print(f"img2img: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("img2img: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
