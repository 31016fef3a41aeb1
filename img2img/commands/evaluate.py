"""`img2img eval sr --weights W --data DIR`: PSNR/SSIM of a super-resolution model (or the MATLAB
bicubic baseline) on Set5/Set14-style benchmarks, with the protocol the SR papers use."""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

from img2img.errors import Img2ImgError

HELP = (
    "Evaluate a model: eval sr (PSNR/SSIM on Y), eval translate and eval synthesize (L1/PSNR/SSIM/LPIPS vs targets), "
    "eval dist (FID, KID...), eval shapes (text -> image attributes)."
)

_EPILOG = """examples:
  img2img eval sr --weights bicubic --data data/sr/Set5 --scale 4
  img2img eval sr --weights realesr-animevideov3 --data data/sr/Set14 --json set14.json
  img2img eval sr --weights my.safetensors --data val/ --save-images out/   # val/ = lr/ + hr/ or HR only
  img2img eval translate --weights pix2pix-facades-small --data facades/val --size 128   # BtoA, from its card
  img2img eval translate --weights pix2pix-facades_label2photo --data facades/val --direction BtoA --train-mode
  img2img eval translate --weights pix2pix-facades-small --data facades/val --size 128 --lpips
sr data layouts: image_SRF_<scale>/ folders (Set5 root), *_LR/*_HR files in one folder, lr/ + hr/ folders
matched by file name, or a folder of HR images (LR made with MATLAB bicubic imresize).
translate data: side-by-side A|B images, or A/ + B/ folders matched by name (--layout folders);
--direction BtoA feeds B and compares with A (default: the direction in the model's card).
--train-mode: dropout on, batch statistics (released pix2pix).
--lpips (translate, synthesize): LPIPS, AlexNet v0.1, from two local files (never downloaded):
torchvision's alexnet-owt-7be5be79.pth and lpips' weights/v0.1/alex.pth, as --lpips-backbone / --lpips-linear
or in $IMG2IMG_HOME/weights/ (the linear layers also from an installed lpips package).
exit status: 0 done, 2 usage, data or model error"""


def add_arguments(p: argparse.ArgumentParser) -> None:
    from img2img.commands import eval_dist, eval_shapes, eval_synthesize

    p.formatter_class = argparse.RawDescriptionHelpFormatter
    p.epilog = _EPILOG
    tasks = p.add_subparsers(dest="task", metavar="TASK", required=True)
    for task, text in (("sr", "super-resolution: PSNR/SSIM on Y, MATLAB protocol"),
                       ("translate", "paired translation: L1/PSNR/SSIM against targets")):  # fmt: skip
        sub = tasks.add_parser(task, help=text, description=text)
        sub.formatter_class = argparse.RawDescriptionHelpFormatter
        sub.epilog = _EPILOG
        _add_paired_arguments(sub, task)
        if task == "translate":
            add_lpips_arguments(sub)
    syn = tasks.add_parser("synthesize", help=eval_synthesize.HELP, description=eval_synthesize.HELP)
    eval_synthesize.add_arguments(syn)
    syn.set_defaults(_task_run=eval_synthesize.run)
    dist = tasks.add_parser("dist", help=eval_dist.HELP, description=eval_dist.HELP)
    eval_dist.add_arguments(dist)
    dist.set_defaults(_task_run=eval_dist.run)
    shapes = tasks.add_parser("shapes", help=eval_shapes.HELP, description=eval_shapes.HELP)
    eval_shapes.add_arguments(shapes)
    shapes.set_defaults(_task_run=eval_shapes.run)


def _add_paired_arguments(p: argparse.ArgumentParser, task: str) -> None:
    p.add_argument(
        "--weights", required=True, help="'bicubic' (baseline), a catalog name, .safetensors or released .pth"
    )
    p.add_argument("--data", required=task == "sr", type=Path, help="benchmark folder (see layouts below)")
    p.add_argument("--scale", type=int, help="upscale factor (default: the model's; 4 for bicubic)")
    p.add_argument("--json", type=Path, help="write per-image and mean results, with the protocol, here")
    p.add_argument("--save-images", type=Path, metavar="DIR", help="save the 8-bit outputs as DIR/<name>.png")
    p.add_argument(
        "--overwrite", action="store_true", help="replace an existing --json file and images in --save-images"
    )
    p.add_argument("--tile", type=int, help="tile size in input pixels (0 = whole image; default: automatic)")
    p.add_argument(
        "--precision",
        default="fp32",
        choices=["auto", "fp32", "bf16", "fp16"],
        help="default fp32, the faithful one",
    )
    p.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N | mps")
    p.add_argument(
        "--ensemble", action="store_true", help="x8 self-ensemble: mean over the 8 flips/transposes (8x slower)"
    )
    p.add_argument(
        "--record", metavar="KEY", help="also store the mean scores in the weights' card under metrics.KEY (our files)"
    )
    t = p.add_argument_group("translate")
    t.add_argument(
        "--direction", choices=["AtoB", "BtoA"], help="which half is the input (default: the way the model was trained)"
    )
    t.add_argument("--layout", choices=["aligned", "folders"], help="A|B images (default) or A/ B/")
    t.add_argument("--size", type=int, help="resize pairs to SIZE x SIZE first (default 0 = as they are)")
    t.add_argument("--max-images", type=int, help="only the first N pairs (by name)")
    t.add_argument("--train-mode", action="store_true", help="dropout on + batch statistics (released pix2pix)")
    if task == "translate":
        add_config_argument(t, "pix2pix")


def add_config_argument(p: argparse.ArgumentParser | argparse._ArgumentGroup, recipe: str) -> None:
    p.add_argument(
        "--config", type=Path, metavar="RUN.yaml",
        help=f"a {recipe} training config: its validation data (val.root, data.layout, the size it validates at, "
        "val.max_images and the direction or label side) for what is not given here",
    )  # fmt: skip


def data_from_config(args: argparse.Namespace, task: str) -> None:
    """Fill --data, --layout, --size, --max-images and --direction (translate) / --label-side (synthesize) that
    were not given from the validation data of the `--config` training config, then the plain defaults."""
    config = getattr(args, "config", None)
    if config is not None:
        from img2img.train.config import load_config

        cfg = load_config(config)
        recipe = {"translate": "pix2pix", "synthesize": "spade"}[task]
        if cfg.recipe != recipe:
            raise Img2ImgError(f"{config} is a {cfg.recipe} config; eval {task} takes a {recipe} config")
        spec = cfg.spec
        if not spec.val.root:
            raise Img2ImgError(f"{config} has no val.root: it names no validation data")
        picks = {"data": Path(spec.val.root), "layout": spec.data.layout, "max_images": spec.val.max_images,
                 "size": spec.val.size or spec.data.crop_size}  # fmt: skip
        picks.update(
            {"direction": spec.data.direction} if task == "translate" else {"label_side": spec.data.label_side}
        )
        for key, value in picks.items():
            if getattr(args, key) is None:
                setattr(args, key, value)
        if task == "translate" and spec.val.train_mode:
            args.train_mode = True
    if args.data is None:
        raise Img2ImgError("give --data DIR, or --config RUN.yaml for a training config's validation data")
    args.size = 0 if args.size is None else args.size
    if task == "translate":
        args.layout = args.layout or "aligned"
    else:
        args.label_side = args.label_side or "right"


def add_lpips_arguments(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("LPIPS (AlexNet, v0.1; two local files, never downloaded)")
    g.add_argument("--lpips", action="store_true", help="also score LPIPS (lower = perceptually closer)")
    g.add_argument(
        "--lpips-backbone",
        type=Path,
        metavar="FILE",
        help="torchvision's alexnet-owt-7be5be79.pth (default: $IMG2IMG_HOME/weights/; implies --lpips)",
    )
    g.add_argument("--lpips-linear", type=Path, metavar="FILE",
                   help="lpips' weights/v0.1/alex.pth (default: $IMG2IMG_HOME/weights/ or an installed lpips "
                   "package; implies --lpips)")  # fmt: skip


def lpips_net(args: argparse.Namespace, device):
    """The LPIPS network and its weights' description when asked for (else (None, None)), loaded before any
    work so missing files are refused first."""
    if not (args.lpips or args.lpips_backbone or args.lpips_linear):
        return None, None
    from img2img.eval.lpips import find_weights, load_lpips

    net, info = load_lpips(*find_weights(args.lpips_backbone, args.lpips_linear))
    return net.to(device), info


def lpips_note(info) -> str:
    if info is None:
        return ""
    text = "; LPIPS AlexNet v0.1 on the 8-bit images scaled to [-1, 1]"
    return text if info.published else text + " (not the released weights: not comparable with published LPIPS)"


def _trained_direction(card) -> str:
    """The way a translation model was trained (its card's `maps`), so data is fed the right way round."""
    maps = card.extra.get("maps")
    return maps if maps in ("AtoB", "BtoA") else "AtoB"


def _check_outputs(args: argparse.Namespace, names: list[str]) -> None:
    """Refuse, before any work, to overwrite files the user did not ask us to replace."""
    if args.json is not None:
        from img2img.io.fileio import refuse_existing

        if args.json.exists() and args.json.suffix.lower() != ".json":
            raise Img2ImgError(f"--json {args.json} exists and is not a .json file; not overwriting it")
        refuse_existing([args.json], overwrite=args.overwrite)
    if args.save_images is not None and not args.overwrite:
        if args.save_images.exists() and not args.save_images.is_dir():
            raise Img2ImgError(f"--save-images {args.save_images} is a file, not a folder")
        taken = [n for n in names if (args.save_images / f"{n}.png").exists()]
        if taken:
            raise Img2ImgError(
                f"{args.save_images / (taken[0] + '.png')} and {len(taken) - 1} more already exist; "
                "choose another --save-images folder or pass --overwrite"
            )


def _write_json(path: Path, data: dict) -> None:
    from img2img.io.fileio import atomic_write_text

    atomic_write_text(path, json.dumps(data, indent=2) + "\n")  # an interrupted run never leaves half a report


def _record(args: argparse.Namespace, mean: dict[str, float], protocol: object, count: int) -> None:
    """Write the mean scores into the card (JSON and safetensors header) of the evaluated file."""
    entry = {**{k: round(v, 4) for k, v in mean.items()}, "images": count, "protocol": protocol}
    record_in_card(args.weights, args.record, entry)


def record_in_card(weights: str | Path, key: str, entry: dict) -> None:
    """`entry` as metrics.KEY in the card (JSON and safetensors header) of our weights file."""
    from img2img.weights.format import load_weights, save_weights

    path = Path(weights)
    sd, card = load_weights(path)
    card.metrics[key] = entry
    save_weights(path, sd, card)
    print(f"recorded metrics.{key} in {path}")


def _fmt(v: float, digits: int) -> str:
    return f"{v:.{digits}f}" if math.isfinite(v) else "inf"


def run(args: argparse.Namespace) -> int:
    if getattr(args, "_task_run", None) is not None:  # eval synthesize, dist, shapes
        return args._task_run(args)
    if args.record and not (args.weights.endswith(".safetensors") and Path(args.weights).is_file()):
        raise Img2ImgError(f"--record needs our .safetensors file as --weights, not {args.weights!r}")
    if args.task == "translate":
        return run_translate(args)
    from img2img.eval.sr import BicubicUpscaler, ModelUpscaler, discover_sr_dataset, evaluate_sr

    if args.scale is not None and args.scale < 1:
        raise Img2ImgError(f"--scale must be a positive whole number, not {args.scale}")
    if args.weights.lower() == "bicubic":
        upscaler = BicubicUpscaler(args.scale or 4)
    else:
        from img2img.infer.model import load

        model = load(args.weights, device=args.device, precision=args.precision, tile=args.tile, ensemble=args.ensemble)
        upscaler = ModelUpscaler(model)
        if args.scale is not None and args.scale != upscaler.scale:
            raise Img2ImgError(
                f"{upscaler.name} upscales x{upscaler.scale}; drop --scale or pass --scale {upscaler.scale}"
            )
    dataset = discover_sr_dataset(args.data, upscaler.scale)
    _check_outputs(args, [p.name for p in dataset.pairs])

    width = max([len(p.name) for p in dataset.pairs] + [5])
    print(f"{upscaler.name} x{dataset.scale} on {dataset.root} ({dataset.layout}, {len(dataset.pairs)} images)")
    print(f"{'image':<{width}}  {'PSNR':>8}  {'SSIM':>7}")

    def row(score) -> None:
        print(f"{score.name:<{width}}  {_fmt(score.psnr, 3):>8}  {_fmt(score.ssim, 4):>7}", flush=True)

    result = evaluate_sr(upscaler, dataset, save_dir=args.save_images, on_image=row)
    print(f"{'mean':<{width}}  {_fmt(result.mean_psnr, 3):>8}  {_fmt(result.mean_ssim, 4):>7}")
    print(f"(Y channel, {dataset.scale}-pixel border cropped, 8-bit output)")
    if args.json is not None:
        report = result.to_dict()
        report["weights"] = args.weights
        _write_json(args.json, report)
        print(f"wrote {args.json}")
    if args.record:
        mean = {"psnr_y": result.mean_psnr, "ssim_y": result.mean_ssim}
        _record(args, mean, {"data": str(dataset.root), **result.protocol()}, len(result.images))
    return 0


class PairedScores:
    """The per-image table, mean and saved outputs of a paired evaluation (eval translate, eval synthesize):
    L1 / PSNR / SSIM on RGB (+ LPIPS with `lp`), one printed row per image."""

    def __init__(self, args: argparse.Namespace, names: list[str], lp: object = None, lp_info: object = None) -> None:
        self.args, self.lp, self.lp_info, self.rows = args, lp, lp_info, []
        self.width = max([len(n) for n in names] + [5])
        print(f"{'image':<{self.width}}  {'L1':>7}  {'PSNR':>7}  {'SSIM':>7}" + ("   LPIPS" if lp is not None else ""))

    def skip(self, name: str) -> None:
        print(f"{name:<{self.width}}  unreadable, skipped")

    def _line(self, name: str, m: dict[str, float]) -> str:
        tail = f"  {m['lpips']:>6.4f}" if self.lp is not None else ""
        return f"{name:<{self.width}}  {m['l1']:>7.4f}  {_fmt(m['psnr'], 2):>7}  {m['ssim']:>7.4f}{tail}"

    def add(self, name: str, out, target) -> None:
        """Score `out` against `target` (HxWx3 float in [0, 1]) and save `out` if asked."""
        from img2img.eval.metrics import translation_metrics

        m = translation_metrics(out, target)
        if self.lp is not None:
            from img2img.eval.lpips import image_distance

            m["lpips"] = image_distance(self.lp, out, target)
        self.rows.append({"name": name, **m})
        print(self._line(name, m), flush=True)
        if self.args.save_images is not None:
            from img2img.io.images import write_image

            self.args.save_images.mkdir(parents=True, exist_ok=True)
            write_image(self.args.save_images / f"{name}.png", out)

    def mean(self) -> dict[str, float]:
        """The means, printed with the protocol line; an error when no pair was readable."""
        if not self.rows:
            raise Img2ImgError(f"no readable pairs in {self.args.data}")
        keys = ("l1", "psnr", "ssim") + (("lpips",) if self.lp is not None else ())
        mean = {k: sum(r[k] for r in self.rows) / len(self.rows) for k in keys}
        print(self._line("mean", mean))
        note = lpips_note(self.lp_info)
        print(f"(RGB; outputs and targets quantised to 8 bits; L1 = mean |output - target| on [0, 1]{note})")
        return mean


def run_translate(args: argparse.Namespace) -> int:
    """L1 / PSNR / SSIM (RGB) of a translation model's outputs against the paired targets."""
    import numpy as np

    from img2img.data.paired import PairedDataConfig, PairedDataset
    from img2img.infer.model import load

    if args.weights.lower() == "bicubic" or args.scale is not None:
        raise Img2ImgError("eval translate takes translation --weights and no --scale")
    data_from_config(args, "translate")
    if args.size < 0 or (args.max_images is not None and args.max_images < 1):
        raise Img2ImgError("--size must be >= 0 and --max-images >= 1")
    from img2img.devices import resolve_device

    lp, lp_info = lpips_net(args, resolve_device(args.device))
    model = load(
        args.weights, device=args.device, precision=args.precision, tile=args.tile, train_mode=args.train_mode,
        ensemble=args.ensemble,
    )  # fmt: skip
    if model.task != "translate":
        raise Img2ImgError(f"{model.card.name} is a {model.task} model; use `img2img eval {model.task}`")
    args.direction = args.direction or _trained_direction(model.card)
    prep = dict(preprocess="resize_and_crop", load_size=args.size, crop_size=args.size) if args.size else dict(
        preprocess="none", size_multiple=1
    )  # fmt: skip
    data = PairedDataset(PairedDataConfig(
        root=str(args.data), layout=args.layout, direction=args.direction, flip=False,
        max_dataset_size=args.max_images, in_channels=model.in_channels, out_channels=model.out_channels, **prep,
    ))  # fmt: skip
    names = [item.key.replace("/", "_") for item in data.items]
    _check_outputs(args, names)
    mode = "train mode (dropout, batch statistics)" if args.train_mode else "eval mode"
    print(f"{model.card.name} on {args.data} ({args.layout}, {args.direction}, {len(data)} pairs, {mode})")
    table = PairedScores(args, names, lp, lp_info)
    for i, name in enumerate(names):
        sample = data[i]
        if sample is None:
            table.skip(name)
            continue
        x, target = [((sample[k].permute(1, 2, 0).numpy() + 1) / 2).clip(0, 1) for k in ("A", "B")]
        out = model(x)
        out = out if out.ndim == 3 else out[..., None]
        out3, target3 = [a if a.shape[2] == 3 else np.repeat(a, 3, 2) for a in (out, target)]
        table.add(name, out3, target3)
    mean, rows = table.mean(), table.rows
    if args.json is not None:
        report = {"weights": args.weights, "data": str(args.data), "direction": args.direction, "size": args.size,
                  "train_mode": args.train_mode, "mean": mean, "images": rows}  # fmt: skip
        if lp_info is not None:
            report["lpips_weights"] = lp_info.to_dict()
        _write_json(args.json, report)
        print(f"wrote {args.json}")
    if args.record:
        protocol = (
            f"{args.data} ({args.layout}, {args.direction}), "
            + (f"resized to {args.size}x{args.size}, " if args.size else "")
            + f"{mode}; outputs and targets quantised to 8 bits; L1 = mean |output - target| on [0, 1]; PSNR/SSIM RGB"
            + lpips_note(lp_info)
        )
        _record(args, mean, protocol, len(rows))
    return 0
