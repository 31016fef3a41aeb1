"""`img2img synthesize LABELS... OUTPUT --model|--weights W`: label maps -> photos with a SPADE-style
model, with the batch behaviour of `upscale` (folders, name templates, skip/overwrite, per-file
failures, torchrun sharding). Instance maps and style images are matched to label maps by stem."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from img2img.commands.common import (
    add_file_arguments,
    announce,
    batch_options,
    finish,
    progress_mode,
    rank_device,
    status_log,
)
from img2img.errors import ConfigError

HELP = "Synthesize photos from label maps (SPADE / GauGAN): id PNGs or colour label maps."

_EPILOG = """examples:
  img2img synthesize labels/ out/ --model spade-facades-small
  img2img synthesize scene_labelIds.png out/ --weights 200_net_G.pth --instances inst/
  img2img synthesize labels/ out/ --model M --style photo.jpg            # in that photo's style
  img2img synthesize labels/ out/ --model M -n 4 --seed 7 --name "{name}_s{seed}"   # 4 styles each
label maps: 8/16-bit id PNGs (one class id per pixel) or palette PNGs (indices = ids), or colour label
maps in the model's palette (mapped to the nearest class colour). An id outside the model's classes
fails that file, naming the id and the allowed range.
--instances DIR / --style DIR: matched to each label map by stem (x_labelIds.png <-> x_instanceIds.png);
--style FILE: one style for all. Without a style image, models with a style latent draw it from --seed.
exit status: 0 all done, 1 some files failed (listed on stderr), 2 usage or model error, 130 Ctrl-C"""


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_file_arguments(p, _EPILOG)
    src = p.add_mutually_exclusive_group()
    src.add_argument("--model", help="catalog name (see `img2img models --task synthesize`)")
    src.add_argument("--weights", type=Path, help="our .safetensors or a released NVlabs SPADE *_net_G.pth")
    p.add_argument("--instances", type=Path, metavar="DIR", help="instance maps (16-bit ids), matched by stem")
    p.add_argument("--style", type=Path, metavar="IMG|DIR", help="style image(s) for models with a style encoder")
    p.add_argument("--seed", type=int, default=0, help="seed of the style latent (sample k uses seed + k)")
    p.add_argument("-n", type=int, default=1, dest="samples", help="outputs per label map (different seeds)")
    p.add_argument("--precision", default="auto", choices=["auto", "fp32", "bf16", "fp16"])
    p.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N | mps")
    p.add_argument("--max-pixels", type=int, help="refuse label maps with more pixels than this")
    p.add_argument("--quiet", action="store_true", help="no progress bars, notes or summary (failures still listed)")
    p.add_argument("--progress", action="store_true", help="show progress bars even when stderr is not a terminal")


def run(args: argparse.Namespace) -> int:
    import numpy as np

    from img2img.devices import launcher_env
    from img2img.infer import batch, jobs
    from img2img.infer.model import load
    from img2img.io.images import read_image
    from img2img.io.labels import read_instance_map, read_label_map

    if len(args.paths) < 2:
        raise ConfigError("give at least one label map and then the output folder: img2img synthesize LABELS... OUT")
    name = str(args.weights) if args.weights is not None else args.model
    if name is None:
        from img2img.weights.catalog import list_weights

        names = sorted(i.name for i in list_weights() if i.task == "synthesize")
        raise ConfigError("give --model NAME or --weights FILE; synthesis models here: " + (", ".join(names) or "none"))
    rank, world, local_rank = launcher_env()
    opts = batch_options(args, [Path(p) for p in args.paths[:-1]], Path(args.paths[-1]))
    if args.samples > 1 and "{seed}" not in opts.name_template and "{sample}" not in opts.name_template:
        opts.name_template += "_s{seed}"  # several outputs per label map need names of their own
    opts.job_fields = {"seed": 0, "sample": 0, "index": 0}
    batch.validate_inputs(opts)
    todo, notes = jobs.label_jobs(
        opts, instances=args.instances, style=args.style, samples=args.samples, seed=args.seed
    )
    model = load(name, device=rank_device(args.device, world, local_rank), precision=args.precision)
    announce(args, model, rank)
    if model.task != "synthesize":
        raise ConfigError(f"{model.card.name} is a {model.task} model; run it with `img2img {model.task}`")

    def process(job: Any) -> tuple[np.ndarray, dict]:
        if "missing" in job.values:
            raise ConfigError(job.values["missing"])
        ids = read_label_map(job.inputs["labels"], model.spec, max_pixels=args.max_pixels)
        inst = read_instance_map(job.inputs["instances"]) if "instances" in job.inputs else None
        style = read_image(job.inputs["style"], max_pixels=args.max_pixels).rgb if "style" in job.inputs else None
        if style is not None and style.shape[2] == 1:
            style = np.repeat(style, 3, axis=2)
        seen = len(model.notes)
        out = model(ids, instances=inst, style=style, seed=job.values["seed"])
        return out, {"notes": list(model.notes[seen:])}

    report = batch.run_jobs(opts, todo, process, notes=notes, rank=rank, world=world, progress=progress_mode(args),
                            log=status_log)  # fmt: skip
    return finish(args, "synthesize", report, opts.output, rank, world)
