"""Inference speed and memory of `img2img upscale` on this machine's CPU.

For each model: output megapixels per second of (a) a naive fp32 NCHW whole-image forward of the
same weights, (b) our default path (`img2img.load(name)`), (c) bf16; the PSNR between bf16 and
fp32 outputs; and the peak RSS of a default-path run on a 2000x1500 input (each in a fresh process).
Prints a table and writes benchmarks/results/upscale.json.

Run: python benchmarks/bench_upscale.py [--quick]
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch
from machine import describe, headline

HERE = Path(__file__).parent
# (name, square input side) of the speed runs. RRDB is ~30x heavier per pixel; channels_last pays off
# on its dense blocks only once the feature maps are large, so it is timed at two sizes.
RUNS = [
    ("realesr-animevideov3", 256),
    ("realesrgan-x4plus", 96),
    ("realesrgan-x4plus", 256),
    ("realesrgan-x4plus-anime", 256),
    ("esrgan-small-x4", 256),
]


def test_image(h: int, w: int) -> np.ndarray:
    """A deterministic natural-ish image: a photo from scikit-image resized, else smooth noise."""
    try:
        import cv2
        import skimage.data

        img = skimage.data.astronaut().astype(np.float32) / 255.0
        return cv2.resize(img, (w, h), interpolation=cv2.INTER_AREA)
    except ImportError:
        rng = np.random.default_rng(0)
        return rng.random((h, w, 3), dtype=np.float32)


def timed(fns: dict, repeats: int) -> tuple[dict, dict]:
    """Best-of-N seconds per variant, interleaving the variants so a busy machine skews them alike."""
    outs = {k: fn() for k, fn in fns.items()}  # warm-up (oneDNN primitive creation, allocator)
    best = dict.fromkeys(fns, float("inf"))
    for _ in range(repeats):
        for k, fn in fns.items():
            t = time.perf_counter()
            outs[k] = fn()
            best[k] = min(best[k], time.perf_counter() - t)
    return best, outs


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((np.clip(a, 0, 1).astype(np.float64) - np.clip(b, 0, 1)) ** 2))
    return float("inf") if mse == 0 else 10 * np.log10(1.0 / mse)


def speed(name: str, side: int, repeats: int) -> dict:
    import img2img

    img = test_image(side, side)
    model = img2img.load(name, device="cpu", precision="fp32")
    net = model.net
    x = torch.from_numpy(img).permute(2, 0, 1)[None].contiguous()

    naive_net = copy.deepcopy(net).to(memory_format=torch.contiguous_format)
    naive_net.winograd = False  # direct convolutions, as the original code runs them

    def naive():
        with torch.no_grad():
            return naive_net(x).clamp(0, 1)[0].permute(1, 2, 0).numpy()

    default = img2img.load(name, device="cpu")
    bf16 = img2img.load(name, device="cpu", precision="bf16")
    t, out = timed({"naive": naive, "default": lambda: default(img), "bf16": lambda: bf16(img)}, repeats)
    t_naive, t_default, t_bf16 = t["naive"], t["default"], t["bf16"]
    out_naive, out_default, out_bf16 = out["naive"], out["default"], out["bf16"]
    out_mp = (side * model.scale) ** 2 / 1e6
    return {
        "model": name,
        "input": f"{side}x{side}",
        "params_M": round(sum(p.numel() for p in net.parameters()) / 1e6, 2),
        "default_precision": default.precision,
        "naive_fp32_mp_s": out_mp / t_naive,
        "default_mp_s": out_mp / t_default,
        "bf16_mp_s": out_mp / t_bf16,
        "default_vs_naive": t_naive / t_default,
        "bf16_vs_naive": t_naive / t_bf16,
        "psnr_default_vs_naive_db": psnr(out_default, out_naive),
        "psnr_bf16_vs_fp32_db": psnr(out_bf16, out_default),
    }


def peak_rss_child(name: str, h: int, w: int, precision: str) -> dict:
    """Run one default-path upscale of an h x w image in a fresh interpreter; report its peak RSS."""
    code = (
        "import resource, sys, time, numpy as np, img2img\n"
        f"sys.path.insert(0, {str(HERE)!r}); from bench_upscale import test_image\n"
        f"img = test_image({h}, {w}); m = img2img.load({name!r}, device='cpu', precision={precision!r})\n"
        "t = time.perf_counter(); out = m(img); dt = time.perf_counter() - t\n"
        "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, dt, out.shape[0], out.shape[1], m.tile)\n"
    )
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    rss_kb, dt, oh, ow, tile = res.stdout.split()[-5:]
    out_bytes_f32 = int(oh) * int(ow) * 3 * 4
    return {
        "model": name,
        "input": f"{w}x{h}",
        "precision": precision,
        "tile": tile,
        "seconds": float(dt),
        "peak_rss_mb": int(rss_kb) / 1024,
        "output_float32_mb": out_bytes_f32 / 2**20,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="smaller inputs and one repeat (smoke run)")
    ap.add_argument("--out", default=str(HERE / "results" / "upscale.json"))
    args = ap.parse_args()
    repeats = 1 if args.quick else 3
    rows = [speed(n, s // (2 if args.quick else 1), repeats) for n, s in RUNS]
    h, w = (375, 500) if args.quick else (1500, 2000)
    mem = [peak_rss_child("realesr-animevideov3", h, w, "auto")]
    info = describe()
    print(f"\nimg2img upscale on {headline(info)}")
    cols = ("naive fp32", "default", "bf16", "def/naive", "bf16/naive", "bf16 PSNR")
    hdr = f"{'model':22} {'input':>8} " + " ".join(f"{c:>11}" for c in cols)
    print(hdr + "\n" + "-" * len(hdr))
    for r in rows:
        cells = [f"{r[k]:.3f} MP/s" for k in ("naive_fp32_mp_s", "default_mp_s", "bf16_mp_s")]
        cells += [f"{r['default_vs_naive']:.2f}x", f"{r['bf16_vs_naive']:.2f}x", f"{r['psnr_bf16_vs_fp32_db']:.1f} dB"]
        print(f"{r['model']:22} {r['input']:>8} " + " ".join(f"{c:>11}" for c in cells))
    for m in mem:
        print(
            f"\npeak RSS, {m['model']} {m['input']} ({m['precision']}, tile {m['tile']}): {m['peak_rss_mb']:.0f} MB"
            f" in {m['seconds']:.1f} s (the x4 output alone is {m['output_float32_mb']:.0f} MB as float32)"
        )
    result = {
        **info,
        "speed": rows,
        "memory": mem,
        "quick": args.quick,
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(f"\nwrote {args.out}")


if __name__ == "__main__":
    os.environ.setdefault("OMP_NUM_THREADS", str(os.cpu_count() or 1))
    main()
