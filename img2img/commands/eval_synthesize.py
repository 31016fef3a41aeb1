"""`img2img eval synthesize`: L1 / PSNR / SSIM (RGB) of a label map -> photo model (SPADE) against the photos
of paired label maps: side-by-side photo|colour-label images (facades) or labels/ + images/ (+ instances/)
folders matched by scene name. The same protocol as the recipe's validation and `eval translate`: pairs
resized to SIZE x SIZE (labels nearest, photos bicubic), outputs and targets quantised to 8 bits."""

from __future__ import annotations

import argparse
from pathlib import Path

from img2img.errors import Img2ImgError

HELP = "label map -> photo (SPADE): L1/PSNR/SSIM (+ LPIPS) against the paired photos"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--weights", required=True, help="a catalog name, .safetensors or released NVlabs .pth")
    p.add_argument("--data", type=Path, help="photo|label images, or a folder with labels/ + images/")
    p.add_argument("--layout", choices=["aligned", "folders"], help="default: folders when DATA has labels/")
    p.add_argument("--label-side", choices=["left", "right"], help="aligned: the label half (default right)")
    p.add_argument("--size", type=int, help="resize pairs to SIZE x SIZE first (default 0 = as they are)")
    p.add_argument("--max-images", type=int, help="only the first N pairs (by name)")
    p.add_argument("--seed", type=int, default=0, help="style z ~ N(0, I) from this seed (models with a style)")
    p.add_argument(
        "--style-from-target", action="store_true",
        help="style from each target photo through the encoder E (an upper bound, not a fair test)",
    )  # fmt: skip
    p.add_argument("--json", type=Path, help="write per-image and mean results, with the protocol, here")
    p.add_argument("--save-images", type=Path, metavar="DIR", help="save the 8-bit outputs as DIR/<name>.png")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --json file and --save-images")
    p.add_argument("--precision", default="fp32", choices=["auto", "fp32", "bf16", "fp16"])
    p.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N | mps")
    p.add_argument("--record", metavar="KEY", help="also store the mean scores in the card under metrics.KEY")
    from img2img.commands.evaluate import add_config_argument

    add_config_argument(p, "spade")
    from img2img.commands.evaluate import add_lpips_arguments

    add_lpips_arguments(p)


def run(args: argparse.Namespace) -> int:
    import cv2
    import numpy as np

    from img2img.commands.evaluate import (
        PairedScores,
        _check_outputs,
        _record,
        _write_json,
        data_from_config,
        lpips_net,
        lpips_note,
    )  # fmt: skip
    from img2img.data.labels import LabelDataConfig, label_items, read_pair
    from img2img.devices import resolve_device
    from img2img.infer.model import load
    from img2img.io.labels import read_instance_map

    data_from_config(args, "synthesize")
    if args.size < 0 or (args.max_images is not None and args.max_images < 1):
        raise Img2ImgError("--size must be >= 0 and --max-images >= 1")
    lp, lp_info = lpips_net(args, resolve_device(args.device))
    model = load(args.weights, device=args.device, precision=args.precision)
    if model.task != "synthesize":
        other = {"upscale": "sr", "translate": "translate", "generate": "shapes or eval dist"}.get(model.task, "dist")
        raise Img2ImgError(
            f"{model.card.name} is a {model.task} model, not label map -> photo; use `img2img eval {other}`"
        )
    if args.style_from_target and model.encoder is None:
        raise Img2ImgError(f"{model.card.name} has no style encoder: --style-from-target needs one")
    spec = model.spec
    layout = args.layout or ("folders" if (args.data / "labels").is_dir() else "aligned")
    cfg = LabelDataConfig(
        root=str(args.data), layout=layout, label_side=args.label_side, label_nc=spec.label_nc, dontcare=spec.dontcare,
        instance=spec.instance, palette=[list(c) for c in spec.palette] or None, classes=list(spec.classes),
        max_dataset_size=args.max_images, load_size=max(args.size, 1), crop_size=max(args.size, 1),
    )  # fmt: skip
    items = label_items(cfg)
    names = [item.key.replace("/", "_") for item in items]
    _check_outputs(args, names)
    style = "style of each target (E)" if args.style_from_target else f"style seed {args.seed}"
    print(f"{model.card.name} on {args.data} ({layout}, {len(items)} pairs, {style})")
    table = PairedScores(args, names, lp, lp_info)
    for item, name in zip(items, names, strict=True):
        pair = read_pair(item, cfg, spec)
        if pair is None:
            table.skip(name)
            continue
        ids, photo = pair
        inst = read_instance_map(item.instance) if item.instance is not None else None
        if args.size:
            size = (args.size, args.size)
            ids = cv2.resize(ids.astype(np.int32), size, interpolation=cv2.INTER_NEAREST)
            photo = np.clip(cv2.resize(photo.astype(np.float32), size, interpolation=cv2.INTER_CUBIC), 0, 1)
            if inst is not None:
                inst = cv2.resize(inst.astype(np.int32), size, interpolation=cv2.INTER_NEAREST)
        out = model(ids, instances=inst, style=photo if args.style_from_target else None, seed=args.seed)
        table.add(name, out, photo)
    mean, rows = table.mean(), table.rows
    protocol = (
        f"{args.data} ({layout}), " + (f"resized to {args.size}x{args.size} (labels nearest, photos bicubic), "
                                       if args.size else "") + f"{style}; outputs and targets quantised to 8 bits; "
        "L1 = mean |output - target| on [0, 1]; PSNR/SSIM RGB" + lpips_note(lp_info)
    )  # fmt: skip
    if args.json is not None:
        _write_json(args.json, {"weights": args.weights, "data": str(args.data), "layout": layout, "size": args.size,
                                "seed": args.seed, "style_from_target": args.style_from_target, "mean": mean,
                                "protocol": protocol, "images": rows}
                    | ({"lpips_weights": lp_info.to_dict()} if lp_info else {}))  # fmt: skip
        print(f"wrote {args.json}")
    if args.record:
        _record(args, mean, protocol, len(rows))
    return 0
