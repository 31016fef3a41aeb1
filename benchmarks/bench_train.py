"""Training step time of pix2pix (unet_256, batch 1, 256x256), CycleGAN (resnet_9blocks, 256x256), SPADE
(configs/spade/small_facades.yaml, 128x128), StackGAN Stage I (configs/stackgan/shapes_stage1.yaml, batch
32, 64x64) and the ESRGAN PSNR stage (configs/esrgan/small_psnr_x4.yaml, batch 16, 128 px HR crops) on
this machine's CPU, through the real engine (`Trainer`): plain fp32 with contiguous (NCHW) tensors,
channels_last (the default on CPU until these numbers showed it slower for training), and bf16
autocast in either layout, and torch.compile of every network (`train.compile`, its first step, which
compiles, is the untimed warm-up). Each variant runs
in the same process on the same synthetic data; the median of the timed steps is reported. The data
are loaded in the main process (num_workers 0) and timed apart from the step: `load_s`, the median
time to make one batch, is the most that loading in DataLoader workers beside the step can save.
Prints a table and writes benchmarks/results/train.json.

Run: python benchmarks/bench_train.py [--quick] [--steps N]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
from machine import describe, headline

HERE = Path(__file__).parent
REPO = HERE.parent
VARIANTS = {  # name -> config overrides
    "fp32 NCHW": ["train.memory_format=contiguous", "train.amp=off", "train.fused_adam=false"],
    "fp32 fused Adam": ["train.memory_format=contiguous", "train.amp=off"],
    "fp32 compiled": ["train.memory_format=contiguous", "train.amp=off", "train.compile=true"],
    "channels_last": ["train.memory_format=channels_last", "train.amp=off"],
    "bf16 CL": ["train.memory_format=channels_last", "train.amp=bf16"],
    "bf16 NCHW": ["train.memory_format=contiguous", "train.amp=bf16"],
}


def make_data(root: Path, size: int) -> None:
    from img2img.io.images import write_image

    rng = np.random.default_rng(0)
    for sub in ("aligned", "trainA", "trainB"):
        (root / sub).mkdir(parents=True)
    for i in range(4):
        img = rng.random((size, size, 3), dtype=np.float32)
        write_image(root / "aligned" / f"{i}.png", np.concatenate([img, 1 - img], axis=1))
        write_image(root / "trainA" / f"{i}.png", img)
        write_image(root / "trainB" / f"{i}.png", 1 - img)


def make_shapes_encoder(root: Path) -> Path:
    """A procedural shapes set and a text encoder trained for a few steps on it (Stage I needs one)."""
    from img2img.data.shapes import make_shapes
    from img2img.train import Trainer
    from img2img.train.config import load_config

    make_shapes(root / "shapes", 96, seed=0, size=64)
    out = root / "text_encoder"
    cfg = load_config(REPO / "configs" / "stackgan" / "shapes_text_encoder.yaml", [
        f"data.root={root / 'shapes'}", f"train.out_dir={out}", "train.steps=2", "train.batch_size=8",
        "train.progress=false", "train.resume=null", "train.device=cpu",
    ])  # fmt: skip
    Trainer(cfg).fit()
    return out


def step_times(
    config: str, overrides: list[str], steps: int, warmup: int
) -> tuple[list[float], list[float], list[float]]:
    """Seconds per optimisation step (all phases) of the engine on this config: the timed steps, the
    warm-up steps before them, and the seconds each timed step's batch took to load."""
    from img2img.train import Trainer
    from img2img.train.config import load_config

    trainer = Trainer(load_config(REPO / "configs" / config, overrides))
    trainer._start()
    data = trainer._batches()
    times, loads = [], []
    for i in range(warmup + steps):
        t = time.perf_counter()
        batch = next(data)
        loads.append(time.perf_counter() - t)
        t = time.perf_counter()
        scratch = {"step": i}
        for phase in trainer.phases:
            trainer._run_phase(phase, batch, scratch)
        times.append(time.perf_counter() - t)
    return times[warmup:], times[:warmup], loads[warmup:]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="one timed step per variant (smoke run)")
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--only", default="", help="comma-separated words: run the jobs whose name has one (e.g. spade)")
    ap.add_argument(
        "--variants",
        default="",
        help="comma-separated variant names to run (default: all; 'fp32 NCHW' always runs, as the reference)",
    )
    ap.add_argument("--out", default=str(HERE / "results" / "train.json"))
    args = ap.parse_args()
    picked = {v.strip() for v in args.variants.split(",") if v.strip()}
    variants = {k: v for k, v in VARIANTS.items() if not picked or k in picked or k == "fp32 NCHW"}
    size, steps, rounds = (256, 1, 1) if args.quick else (256, args.steps, 2)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        make_data(root, size)
        common = [
            f"train.out_dir={root / 'run'}", "train.num_workers=0", "train.progress=false", "train.device=cpu",
            "train.resume=null", "train.batch_size=1", f"data.load_size={size}", f"data.crop_size={size}",
        ]  # fmt: skip
        encoder = make_shapes_encoder(root)
        small = [f"train.out_dir={root / 'run'}", "train.num_workers=0", "train.progress=false", "train.device=cpu",
                 "train.resume=null"]  # fmt: skip
        jobs = {
            "pix2pix unet_256": ("pix2pix/facades.yaml", [*common, f"data.root={root / 'aligned'}",
                                                          "data.direction=AtoB"]),
            "cyclegan resnet_9blocks": ("cyclegan/horse2zebra.yaml", [*common, f"data.root={root}"]),
            "spade small_facades 128": ("spade/small_facades.yaml", [*small, f"data.root={root / 'aligned'}",
                                        "val.root=null"]),
            "stackgan stage1 shapes 64": ("stackgan/shapes_stage1.yaml", [*small, f"data.root={root / 'shapes'}",
                                          f"text_encoder={encoder}"]),
            "esrgan small_psnr_x4 128": ("esrgan/small_psnr_x4.yaml", [*small, f"data.hr_dirs=[{root / 'trainA'}]",
                                         "data.patch_size=128", "data.repeat=8", "val.hr_dir=null"]),
        }  # fmt: skip
        wanted = [w for w in args.only.split(",") if w]
        jobs = {k: v for k, v in jobs.items() if not wanted or any(w in k for w in wanted)}
        for job, (config, extra) in jobs.items():
            # Interleave the variants round by round so a busy machine skews them alike.
            times: dict[str, list[float]] = {v: [] for v in variants}
            first: dict[str, list[float]] = {v: [] for v in variants}
            loads: dict[str, list[float]] = {v: [] for v in variants}
            for _ in range(rounds):
                for v, o in variants.items():
                    timed, warm, load = step_times(config, [*extra, *o], steps, warmup=1)
                    times[v] += timed
                    first[v] += warm
                    loads[v] += load
            med = {v: statistics.median(t) for v, t in times.items()}
            base = med["fp32 NCHW"]
            for v in variants:
                side = int(job.rsplit(" ", 1)[-1]) if job.rsplit(" ", 1)[-1].isdigit() else size
                rows.append({"model": job, "variant": v, "size": side, "step_s": med[v], "vs_fp32_nchw": base / med[v],
                             "steps_timed": len(times[v]), "first_step_s": first[v],
                             "load_s": statistics.median(loads[v])})  # fmt: skip
    info = describe()
    print(f"\nimg2img training step time on {headline(info)}")
    hdr = f"{'model':26} {'variant':15} {'size':>5} {'s/step':>8} {'speed-up':>9} {'load s':>7}"
    print(hdr + "\n" + "-" * len(hdr))
    for r in rows:
        print(
            f"{r['model']:26} {r['variant']:15} {r['size']:>5} {r['step_s']:>8.3f} {r['vs_fp32_nchw']:>8.2f}x "
            f"{r['load_s']:>7.3f}"
        )
    result = {**info, "rows": rows, "quick": args.quick}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(f"\nwrote {args.out}")


if __name__ == "__main__":
    os.environ.setdefault("OMP_NUM_THREADS", str(os.cpu_count() or 1))
    main()
