"""`img2img interpolate A B --alpha 0.8 --out C.safetensors`: ESRGAN network interpolation (Wang et al.
2018, Sec. 3.4), theta = (1 - alpha) * theta_A + alpha * theta_B, between two weights of one arch, e.g.
a PSNR-oriented model (A) and its GAN fine-tune (B) to trade fidelity against texture."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

HELP = "Blend two weights of the same architecture: (1-alpha)*A + alpha*B."


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("a", metavar="A", help="weights at alpha=0 (file or catalog name)")
    p.add_argument("b", metavar="B", help="weights at alpha=1 (file or catalog name)")
    p.add_argument("--alpha", type=float, required=True, help="0 = A, 1 = B (ESRGAN uses 0.8)")
    p.add_argument("--out", type=Path, required=True, help="output .safetensors (card written beside it)")
    p.add_argument("--overwrite", action="store_true", help="replace --out (and its card) if it exists")


def interpolate(sd_a: dict[str, Any], sd_b: dict[str, Any], alpha: float) -> dict[str, Any]:
    """Blend float tensors in float32; integer buffers (e.g. BatchNorm counters) come from A."""
    import torch

    from img2img.errors import WeightsError

    if set(sd_a) != set(sd_b):
        diff = sorted(set(sd_a) ^ set(sd_b))
        raise WeightsError(f"A and B hold different tensors (e.g. {diff[:3]}); they must share one arch")
    out = {}
    for k, a in sd_a.items():
        b = sd_b[k]
        if a.shape != b.shape:
            raise WeightsError(f"{k}: shape {tuple(a.shape)} in A vs {tuple(b.shape)} in B")
        if torch.is_floating_point(a):
            out[k] = torch.lerp(a.float(), b.float(), alpha)
        else:
            out[k] = a.clone()
    return out


def run(args: argparse.Namespace) -> int:
    import dataclasses

    from img2img.errors import ConfigError, WeightsError
    from img2img.weights.format import save_weights

    if not 0.0 <= args.alpha <= 1.0:
        raise ConfigError(f"--alpha must be between 0 (A) and 1 (B), got {args.alpha}")
    if args.out.suffix != ".safetensors":
        raise ConfigError(f"--out must end in .safetensors, got {args.out.name}")
    from img2img.io.fileio import refuse_existing
    from img2img.weights.format import card_path

    refuse_existing([args.out, card_path(args.out)], overwrite=args.overwrite)
    from img2img.weights.catalog import load_any

    sd_a, card_a, path_a = load_any(args.a)
    sd_b, card_b, path_b = load_any(args.b)
    if (card_a.arch, card_a.arch_kwargs) != (card_b.arch, card_b.arch_kwargs):
        raise WeightsError(
            f"A is {card_a.arch}({card_a.arch_kwargs}) but B is {card_b.arch}({card_b.arch_kwargs}); "
            "interpolation needs two weights of the same architecture"
        )
    if (card_a.task, card_a.scale) != (card_b.task, card_b.scale):
        raise WeightsError(f"A is {card_a.task} x{card_a.scale} but B is {card_b.task} x{card_b.scale}")
    blended = interpolate(sd_a, sd_b, args.alpha)

    def describe(card: Any, path: str) -> dict[str, Any]:
        return {"name": card.name, "path": path, "source": card.source, "metrics": card.metrics}

    record = {"alpha": args.alpha, "a": describe(card_a, path_a), "b": describe(card_b, path_b)}
    same_license = card_a.license == card_b.license
    card = dataclasses.replace(
        card_a,
        name=args.out.stem,
        source="network interpolation by img2img",
        description=f"(1 - {args.alpha:g}) * {card_a.name} + {args.alpha:g} * {card_b.name}",
        training={"interpolation": record},
        metrics={},  # not measured: blending changes every number
        license=card_a.license if same_license else f"A: {card_a.license}; B: {card_b.license}",
    )
    written = save_weights(args.out, blended, card)
    print(f"wrote {written}: (1 - {args.alpha:g}) * {path_a} + {args.alpha:g} * {path_b}")
    return 0
