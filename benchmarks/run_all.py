"""Run every benchmark of the project, one after another (never two at once: they would skew each other),
and collect their results into benchmarks/results/all.json and a Markdown table, benchmarks/results/all.md,
headed by the machine they ran on (CPU, its vector / bf16 instruction sets, threads).

Run: python benchmarks/run_all.py [--quick] [--skip app,command] [--reuse upscale,command]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

from machine import describe, headline

HERE = Path(__file__).parent
RESULTS = HERE / "results"
BENCHES = {  # name -> (script, quick arguments)
    "upscale": ("bench_upscale.py", ["--quick"]),
    "command": ("bench_command.py", ["--repeats", "1", "--models", "realesr-animevideov3"]),
    # quick: no CycleGAN resnet_9blocks, whose emulated-bf16 steps take minutes on AVX2-only CPUs
    "train": ("bench_train.py", ["--quick", "--only", "pix2pix,spade,stackgan"]),
    "memory": ("bench_memory.py", ["--quick"]),
    "int8": ("bench_int8.py", ["--models", "realesr-animevideov3,esrgan-small-x4"]),
    "app": ("bench_app.py", ["--repeats", "2"]),
    "eval": ("bench_eval.py", ["--max-images", "16"]),
}


def markdown(header: list[str], rows: list[list[str]]) -> list[str]:
    """A markdown table: the header, its rule, one line per row of cells."""
    return [" | ".join(["", *header, ""]).strip(), " | ".join(["", *["---"] * len(header), ""]).strip()] + [
        " | ".join(["", *cells, ""]).strip() for cells in rows
    ]


def table(name: str, data: dict) -> list[str]:
    """Markdown lines for one benchmark's result."""
    lines = [f"### {name}", ""]
    if name == "upscale":
        lines += markdown(
            ["model", "input", "naive fp32 MP/s", "default MP/s", "bf16 MP/s", "bf16 PSNR"],
            [[r["model"], r["input"], f"{r['naive_fp32_mp_s']:.3f}",
              f"{r['default_mp_s']:.3f} ({r['default_vs_naive']:.2f}x)",
              f"{r['bf16_mp_s']:.3f} ({r['bf16_vs_naive']:.2f}x)", f"{r['psnr_bf16_vs_fp32_db']:.1f} dB"]
             for r in data["speed"]],
        )  # fmt: skip
        lines += [f"\nPeak RSS {m['model']} {m['input']}: {m['peak_rss_mb']:.0f} MB" for m in data.get("memory", [])]
    elif name == "command":
        lines += markdown(
            ["model", "variant", "seconds", "vs reference"],
            [[r["model"], k, f"{v:.2f}", f"{r['speed_vs_reference'][k]:.2f}x"]
             for r in data["rows"] for k, v in r["seconds"].items()],
        )  # fmt: skip
    elif name == "memory":
        lines += markdown(
            ["model", "input", "runtime MiB", "peak MiB", "above runtime", "uint8 output", "ratio", "s"],
            [[r["model"], r["input"], f"{r['runtime_peak_mib']:.0f}", f"{r['peak_mib']:.0f}",
              f"{r['above_runtime_mib']:.0f}", f"{r['uint8_output_mib']:.0f}", f"{r['above_runtime_vs_output']:.2f}x",
              f"{r['seconds']:.1f}"] for r in data["rows"]],
        )  # fmt: skip
    elif name == "int8":
        lines += markdown(
            ["model", "input", "config", "torch s", "onnxruntime fp32 s", "int8 s", "int8 vs best", "PSNR vs fp32"],
            [[r["model"], r["input"], r["config"], f"{r['torch_fp32_s']:.3f}", f"{r['onnxruntime_fp32_s']:.3f}",
              f"{r['int8_s']:.3f}", f"{r['int8_vs_best_other']:.2f}x", f"{r['psnr_int8_vs_fp32_db']:.1f} dB"]
             for r in data["rows"]],
        )  # fmt: skip
    elif name == "train":
        lines += markdown(
            ["model", "variant", "size", "s/step", "vs fp32 NCHW"],
            [[r["model"], r["variant"], str(r["size"]), f"{r['step_s']:.3f}", f"{r['vs_fp32_nchw']:.2f}x"]
             for r in data["rows"]],
        )  # fmt: skip
    elif name == "app":
        lines += markdown(
            ["model", "input", "in-process s", "HTTP API s"],
            [[r["model"], r["input"], f"{r['direct_s']:.3f}", f"{r['http_api_s']:.3f}"] for r in data["rows"]],
        )
    elif name == "eval":
        lines += markdown(
            ["extractor", "preprocessing", "images/s"],
            [[r["extractor"], r["preprocess"], f"{r['images_per_s']:.1f}"] for r in data["rows"]],
        )
    return [*lines, ""]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="each benchmark's smoke settings")
    ap.add_argument("--skip", default="", help="comma-separated benchmark names to leave out")
    ap.add_argument("--reuse", default="", help="comma-separated names whose existing result is collected, not rerun")
    args = ap.parse_args()
    skip = {s for s in args.skip.split(",") if s}
    info = describe()
    collected, failed = {}, {}
    for name, (script, quick) in BENCHES.items():
        if name in skip:
            continue
        out = RESULTS / (f"{name}_quick.json" if args.quick else f"{name}.json")
        if name in args.reuse.split(",") and out.is_file():
            print(f"== {name}: collected from {out}", flush=True)
            collected[name] = json.loads(out.read_text())
            continue
        cmd = [sys.executable, str(HERE / script), "--out", str(out), *(quick if args.quick else [])]
        print(f"== {name}: {' '.join(cmd[1:])}", flush=True)
        done = subprocess.run(cmd, cwd=HERE)
        if done.returncode:
            failed[name] = done.returncode
            continue
        collected[name] = json.loads(out.read_text())
    RESULTS.mkdir(parents=True, exist_ok=True)
    stem = "all_quick" if args.quick else "all"
    (RESULTS / f"{stem}.json").write_text(json.dumps({**info, "results": collected, "failed": failed}, indent=2) + "\n")
    lines = [f"# img2img benchmarks on {headline(info)}", "", f"torch {info['torch']}, {info['cores']} cores", ""]
    for name, data in collected.items():
        lines += table(name, data)
    if failed:
        lines += [f"Failed: {', '.join(f'{k} (exit {v})' for k, v in failed.items())}", ""]
    (RESULTS / f"{stem}.md").write_text("\n".join(lines))
    print("\n".join(lines))
    print(f"wrote {RESULTS / (stem + '.json')} and {RESULTS / (stem + '.md')}")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
