"""`img2img onnx MODEL OUT.onnx`: export an image -> image model (upscale, translate) to ONNX with dynamic
height and width, checked against torch in onnxruntime on a probe image."""

from __future__ import annotations

import argparse
from pathlib import Path

from img2img.errors import Img2ImgError

HELP = "Export an upscale or translate model to ONNX (dynamic size), checked against torch in onnxruntime."

_EPILOG = """The graph takes N x C x H x W float32 in [0, 1] (H, W multiples of the model's size multiple) and
gives the result in [0, 1]; decoding, alpha, padding, tiling and quantising stay outside it (see
img2img.infer.onnx). Needs: pip install "img2img[onnx]".
examples:
  img2img onnx realesr-animevideov3 animevideov3.onnx
  img2img onnx weights/pix2pix-facades-small.safetensors facades.onnx --probe labels.png"""


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.epilog = _EPILOG
    p.formatter_class = argparse.RawDescriptionHelpFormatter
    p.add_argument("model", help="catalog name, our .safetensors, or a released checkpoint")
    p.add_argument("output", type=Path, help="OUT.onnx")
    p.add_argument("--probe", type=Path, help="image for the parity check (default: a fixed smooth random image)")
    p.add_argument("--no-check", dest="check", action="store_false", help="skip the onnxruntime parity check")
    p.add_argument("--opset", type=int, default=18, help="ONNX opset (default 18)")
    p.add_argument("--overwrite", "--force", dest="overwrite", action="store_true", help="replace OUT if it exists")


def run(args: argparse.Namespace) -> int:
    from img2img.infer.model import load
    from img2img.infer.onnx import export_onnx
    from img2img.io.images import read_image

    out = Path(args.output)
    if out.suffix != ".onnx":
        raise Img2ImgError(f"output must end in .onnx, got {out.name}")
    from img2img.io.fileio import refuse_existing

    refuse_existing([out], overwrite=args.overwrite)
    probe = read_image(args.probe).rgb if args.probe else None
    model = load(args.model, device="cpu", precision="fp32", tile=0)
    report = export_onnx(model, out, probe=probe, check=args.check, opset=args.opset)
    print(f"wrote {report.path}: {model.card.name} ({model.card.arch}), x{report.scale}, H and W multiples of "
          f"{report.size_multiple}")  # fmt: skip
    if report.max_abs_diff is not None:
        shape = "x".join(map(str, report.input_shape[2:]))
        print(f"parity: max |onnxruntime - torch| = {report.max_abs_diff:.2e} on a {shape} probe")
    return 0
