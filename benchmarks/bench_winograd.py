"""The fp32 CPU forward of the RRDB models with the dense blocks by Winograd F(4x4, 3x3)
(`img2img.archs.winograd`, the default there for wide blocks), against the same network with torch's
direct (oneDNN) convolutions in NCHW and channels_last. conv_first, conv_body and the upsampling tail
are oneDNN convolutions in every column.

    python benchmarks/bench_winograd.py [--models realesrgan-x4plus,...] [--sizes 72x72,120x125]

Prints a table (forward seconds, speed against NCHW and channels_last, PSNR of the Winograd output
against the direct one) and writes benchmarks/results/winograd.json.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import torch
from machine import describe, headline

HERE = Path(__file__).parent


def forward(net: torch.nn.Module, x: torch.Tensor, winograd: bool) -> torch.Tensor:
    net.winograd = winograd
    try:
        return net(x)
    finally:
        net.winograd = True


def timed(fn, repeats: int) -> float:
    fn()  # warm-up: oneDNN primitives, allocator
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return best


def measure(net: torch.nn.Module, x: torch.Tensor, repeats: int) -> dict:
    with torch.inference_mode():
        net.to(memory_format=torch.contiguous_format)
        t_nchw = timed(lambda: forward(net, x, False), repeats)
        net.to(memory_format=torch.channels_last)
        xc = x.contiguous(memory_format=torch.channels_last)
        t_cl = timed(lambda: forward(net, xc, False), repeats)
        t_w = timed(lambda: forward(net, xc, True), repeats)
        ref, got = forward(net, xc, False).clamp(0, 1), forward(net, xc, True).clamp(0, 1)
        mse = float(((ref - got) ** 2).mean())
    return {
        "nchw_s": t_nchw, "channels_last_s": t_cl, "winograd_s": t_w, "winograd_vs_nchw": t_nchw / t_w,
        "winograd_vs_channels_last": t_cl / t_w, "psnr_vs_direct_db": 10 * math.log10(1 / max(mse, 1e-20)),
        "max_abs_vs_direct": float((ref - got).abs().max()),
    }  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default="realesrgan-x4plus,realesrgan-x4plus-anime,esrgan-small-x4")
    ap.add_argument("--sizes", default="72x72,120x125", help="input WxH list (Set5 / Set14 x4 LR sizes)")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--out", default=str(HERE / "results" / "winograd.json"))
    args = ap.parse_args()
    from img2img.weights.catalog import resolve_weights
    from img2img.weights.format import load_bundle

    rows = []
    torch.manual_seed(0)
    for name in args.models.split(","):
        nets, card = load_bundle(resolve_weights(name))
        if card.arch != "RRDBNet" or card.scale != 4:
            raise SystemExit(f"{name} is not an RRDBNet x4 model")
        net = nets[""].eval().requires_grad_(False)
        for size in args.sizes.split(","):
            w, h = (int(v) for v in size.split("x"))
            row = measure(net, torch.rand(1, 3, h, w), args.repeats)
            rows.append({"model": name, "input": f"{w}x{h}", **row})
    info = {**describe(), "threads": torch.get_num_threads()}
    print(f"\nRRDB forward, dense blocks by Winograd F(4x4,3x3), on {headline(info)}")
    print(f"{'model':24} {'input':>8} {'NCHW':>8} {'CL':>8} {'Winograd':>9} {'vs NCHW':>8} {'vs CL':>6} {'PSNR':>8}")
    for r in rows:
        print(
            f"{r['model']:24} {r['input']:>8} {r['nchw_s']:7.3f}s {r['channels_last_s']:7.3f}s {r['winograd_s']:8.3f}s "
            f"{r['winograd_vs_nchw']:7.2f}x {r['winograd_vs_channels_last']:5.2f}x {r['psnr_vs_direct_db']:6.1f}dB"
        )
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps({**info, "when": time.strftime("%Y-%m-%d"), "rows": rows}, indent=2) + "\n")
    print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()
