"""`img2img generate OUTPUT --model|--weights W --text "..." | --prompts FILE | --embeddings FILE.npy`:
text -> images with a StackGAN-style model, with the output rules of the batch commands (no silent
overwrite, per-job failures, torchrun sharding). File names carry the prompt index, a slug and the sample."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from img2img.commands.common import announce, batch_options, finish, progress_mode, rank_device, status_log
from img2img.errors import ConfigError

HELP = "Generate images from text prompts (StackGAN): Stage I and Stage II."

_EPILOG = """examples:
  img2img generate out/ --model stackgan-shapes-small --text "a red circle on a blue background" -n 4
  img2img generate out/ --model stackgan-shapes-small --prompts prompts.txt --stage 1
  img2img generate out/ --weights netG_epoch_600.pth --embeddings captions.npy   # released StackGAN
names: --name template with {index} {prompt} {sample} {seed} (default "{index:03d}_{prompt}_{sample}");
sample k of every prompt uses seed + k, so the same seed gives the same images.
--prompts FILE: one prompt per line ('#' starts a comment). --embeddings FILE.npy: one row per prompt
(read with allow_pickle=False), for models without a text encoder.
words the model's vocabulary lacks are named in a note; they do not stop the run.
exit status: 0 all done, 1 some prompts failed (listed on stderr), 2 usage or model error, 130 Ctrl-C"""


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.formatter_class = argparse.RawDescriptionHelpFormatter
    p.epilog = _EPILOG
    p.add_argument("output", type=Path, metavar="OUTPUT", help="output folder")
    src = p.add_mutually_exclusive_group()
    src.add_argument("--model", help="catalog name (see `img2img models --task generate`)")
    src.add_argument("--weights", type=Path, help="our .safetensors or a released StackGAN generator .pth")
    what = p.add_mutually_exclusive_group(required=True)
    what.add_argument("--text", action="append", metavar="PROMPT", help="a prompt (repeat for several)")
    what.add_argument("--prompts", type=Path, metavar="FILE", help="a text file, one prompt per line")
    what.add_argument("--embeddings", type=Path, metavar="FILE", help="a .npy of text embeddings, one row each")
    p.add_argument("-n", type=int, default=1, dest="samples", help="images per prompt (default 1)")
    p.add_argument("--seed", type=int, default=0, help="sample k uses seed + k (default 0)")
    p.add_argument("--stage", type=int, choices=[1, 2], help="which stage's images (default: the model's last)")
    p.add_argument("--name", default="{index:03d}_{prompt}_{sample}", help="output name template")
    p.add_argument("--ext", default="auto", choices=["auto", "png", "jpg", "webp", "tif"], help="auto = png")
    p.add_argument("--quality", type=int, default=95, help="JPEG/WebP quality 1-100 (default 95)")
    exist = p.add_mutually_exclusive_group()
    exist.add_argument("--overwrite", action="store_true", help="replace existing outputs")
    exist.add_argument("--skip-existing", action="store_true", help="leave existing outputs alone")
    p.add_argument("--precision", default="auto", choices=["auto", "fp32", "bf16", "fp16"])
    p.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N | mps")
    p.add_argument("--quiet", action="store_true", help="no progress bars, notes or summary (failures still listed)")
    p.add_argument("--progress", action="store_true", help="show progress bars even when stderr is not a terminal")


def run(args: argparse.Namespace) -> int:
    import numpy as np

    from img2img.devices import launcher_env
    from img2img.infer import batch, jobs
    from img2img.infer.model import load

    name = str(args.weights) if args.weights is not None else args.model
    if name is None:
        from img2img.weights.catalog import list_weights

        names = sorted(i.name for i in list_weights() if i.task == "generate")
        raise ConfigError("give --model NAME or --weights FILE; text models here: " + (", ".join(names) or "none"))
    embeddings = None
    if args.embeddings is not None:
        from img2img.text import load_embeddings

        embeddings = load_embeddings(args.embeddings)
        prompts = [f"embedding {i}" for i in range(len(embeddings))]
    else:
        prompts = list(args.text) if args.text else jobs.read_prompts(args.prompts)
    rank, world, local_rank = launcher_env()
    opts = batch_options(args, [], args.output)
    opts.job_fields = {"index": 0, "prompt": "x", "sample": 0, "seed": 0}
    todo = jobs.prompt_jobs(opts, prompts, samples=args.samples, seed=args.seed)
    model = load(name, device=rank_device(args.device, world, local_rank), precision=args.precision)
    announce(args, model, rank)
    if model.task != "generate":
        raise ConfigError(f"{model.card.name} is a {model.task} model; run it with `img2img {model.task}`")
    opts.template_fields = {"model": model.card.name}
    told: set[int] = set()

    def process(job: Any) -> tuple[np.ndarray, dict]:
        i, seed = job.values["index"], job.values["seed"]
        if embeddings is not None:
            (result,) = model(embeddings=embeddings[i : i + 1], seed=seed, stage=args.stage)
        else:
            (result,) = model(job.values["text"], seed=seed, stage=args.stage)
        notes = []
        if result.unknown_words and i not in told:  # once per prompt, not per sample
            told.add(i)
            notes.append(f"words not in the model's vocabulary (read as unknown): {', '.join(result.unknown_words)}")
        return result.images[0], {"notes": notes}

    report = batch.run_jobs(opts, todo, process, rank=rank, world=world, progress=progress_mode(args), log=status_log)
    return finish(args, "generate", report, opts.output, rank, world)
