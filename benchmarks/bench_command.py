"""Whole-command wall time of `img2img upscale` on a folder of real images against the reference pipeline as
users run it (the Real-ESRGAN inference script's way: cv2 decode, fp32 NCHW whole-image forward, clamp,
round, cv2 encode, one process for the folder), against the same loop on onnxruntime with our ONNX
export, and against `--compile` (its first run, which compiles into an empty cache, timed apart). Every
variant is a fresh process (torch import and model loading included), run alternately `--repeats` times;
the best time of each is kept, and ratios are taken within this one run.

Prints a table and writes benchmarks/results/command.json.
Run: python benchmarks/bench_command.py [--models realesr-animevideov3,realesrgan-x4plus] [--images DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from machine import describe, headline

HERE = Path(__file__).parent
REPO = HERE.parent
DATA = Path(os.environ.get("IMG2IMG_DATA", REPO.parent / "shared" / "data"))

# The reference: what a user of the original release runs for a folder (same weights, same network math).
REFERENCE = r"""
import sys, glob, os
import cv2, numpy as np, torch
from safetensors.torch import load_file
from img2img.archs import build_arch
from img2img.weights.format import read_card
weights, src, dst = sys.argv[1:4]
card = read_card(weights)
net = build_arch(card.arch, **card.arch_kwargs)
net.load_state_dict(load_file(weights))
net.eval()
net.winograd = False  # the original code's direct convolutions (our RRDBNet's CPU Winograd path is ours)
os.makedirs(dst, exist_ok=True)
for path in sorted(glob.glob(os.path.join(src, "*"))):
    img = cv2.imread(path, cv2.IMREAD_COLOR)
    if img is None:
        continue
    x = torch.from_numpy(cv2.cvtColor(img, cv2.COLOR_BGR2RGB).astype(np.float32) / 255.0).permute(2, 0, 1)[None]
    with torch.no_grad():
        y = net(x).clamp_(0, 1)[0].permute(1, 2, 0).numpy()
    out = (y * 255.0).round().astype(np.uint8)
    cv2.imwrite(os.path.join(dst, os.path.splitext(os.path.basename(path))[0] + ".png"),
                cv2.cvtColor(out, cv2.COLOR_RGB2BGR))
"""

ONNX_LOOP = r"""
import sys, glob, os
import cv2, numpy as np, onnxruntime as ort
model, src, dst, threads = sys.argv[1:5]
opt = ort.SessionOptions(); opt.intra_op_num_threads = int(threads)
s = ort.InferenceSession(model, opt, providers=["CPUExecutionProvider"])
os.makedirs(dst, exist_ok=True)
for path in sorted(glob.glob(os.path.join(src, "*"))):
    img = cv2.imread(path, cv2.IMREAD_COLOR)
    if img is None:
        continue
    x = (cv2.cvtColor(img, cv2.COLOR_BGR2RGB).astype(np.float32) / 255.0).transpose(2, 0, 1)[None]
    y = s.run(None, {"image": np.ascontiguousarray(x)})[0][0].transpose(1, 2, 0)
    out = (y * 255.0).round().astype(np.uint8)
    cv2.imwrite(os.path.join(dst, os.path.splitext(os.path.basename(path))[0] + ".png"),
                cv2.cvtColor(out, cv2.COLOR_RGB2BGR))
"""


def default_images(tmp: Path) -> Path:
    """Set5 and Set14 x4 LR images (real photos) in one folder."""
    out = tmp / "images"
    out.mkdir()
    for name in ("Set5", "Set14"):
        for p in sorted((DATA / "sr" / name / "image_SRF_4").glob("*_LR.png")):
            shutil.copy(p, out / f"{name}_{p.name}")
    if not any(out.iterdir()):
        raise SystemExit(f"no Set5/Set14 images under {DATA}/sr; pass --images DIR")
    return out


def run(cmd: list[str], env: dict) -> float:
    t = time.perf_counter()
    subprocess.run(cmd, check=True, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    return time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default="realesr-animevideov3,realesrgan-x4plus")
    ap.add_argument("--images", type=Path, help="folder of input images (default: Set5 + Set14 x4 LR)")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=int(os.environ.get("OMP_NUM_THREADS", "0")) or os.cpu_count())
    ap.add_argument("--no-onnx", dest="onnx", action="store_false")
    ap.add_argument("--no-compile", dest="compile", action="store_false")
    ap.add_argument("--out", default=str(HERE / "results" / "command.json"))
    args = ap.parse_args()
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads), "PYTHONPATH": str(REPO)}
    rows = []
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        images = args.images or default_images(tmp)
        n = sum(1 for _ in images.iterdir())
        for name in args.models.split(","):
            from img2img.weights.catalog import resolve_weights

            weights = resolve_weights(name)  # converted once, outside the timing
            variants = {
                "reference": [sys.executable, "-c", REFERENCE, str(weights), str(images), str(tmp / "ref")],
                "img2img": [sys.executable, "-m", "img2img", "upscale", str(images), str(tmp / "ours"), "--model",
                            name, "--overwrite", "--quiet"],
                "img2img --tile 0": [sys.executable, "-m", "img2img", "upscale", str(images), str(tmp / "ours0"),
                                     "--model", name, "--overwrite", "--quiet", "--tile", "0"],
            }  # fmt: skip
            first_runs = {}
            if args.compile:
                key = "img2img --compile"
                variants[key] = [sys.executable, "-m", "img2img", "upscale", str(images), str(tmp / "ours_c"),
                                 "--model", name, "--overwrite", "--quiet", "--compile"]  # fmt: skip
                # The first run compiles into an empty cache (this run's own): timed on its own.
                env["TORCHINDUCTOR_CACHE_DIR"] = str(tmp / f"compile-{name}")
                first_runs[key] = run(variants[key], env)
            if args.onnx:
                variants["img2img --engine onnxruntime"] = [
                    sys.executable, "-m", "img2img", "upscale", str(images), str(tmp / "ours_ort"), "--model", name,
                    "--overwrite", "--quiet", "--engine", "onnxruntime",
                ]  # fmt: skip
                # The engine exports the model on its first use (cached in $IMG2IMG_HOME/onnx): not timed.
                subprocess.run(variants["img2img --engine onnxruntime"], check=True, env=env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
                onnx_path = tmp / f"{name}.onnx"
                subprocess.run([sys.executable, "-m", "img2img", "onnx", name, str(onnx_path)], check=True, env=env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
                variants["onnxruntime loop"] = [sys.executable, "-c", ONNX_LOOP, str(onnx_path), str(images),
                                                str(tmp / "onnx"), str(args.threads)]  # fmt: skip
            best = dict.fromkeys(variants, float("inf"))
            for _ in range(args.repeats):
                for key, cmd in variants.items():
                    best[key] = min(best[key], run(cmd, env))
            ref = best["reference"]
            rows.append({"model": name, "images": n, "seconds": best,
                         "speed_vs_reference": {k: ref / v for k, v in best.items()},
                         "first_run_seconds": first_runs})  # fmt: skip
    info = {**describe(), "threads": args.threads}
    print(f"\nwhole command on {headline(info)}, {rows[0]['images'] if rows else 0} images, best of {args.repeats}")
    for r in rows:
        print(f"\n{r['model']}")
        for k, v in r["seconds"].items():
            print(f"  {k:30} {v:7.2f} s   {r['speed_vs_reference'][k]:.2f}x the reference")
        for k, v in r["first_run_seconds"].items():
            print(f"  {k + ' (first run)':30} {v:7.2f} s   compiling, with an empty cache")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps({**info, "rows": rows, "repeats": args.repeats}, indent=2) + "\n")
    print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()
